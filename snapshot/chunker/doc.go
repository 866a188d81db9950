// Package chunker splits byte streams into chunks: content-defined chunks
// ([Chunker]) for every file, and fixed, page-aligned chunks ([Fixed]) for
// SQLite databases, which change in place one page at a time (see
// [SQLiteChunkSize]).
//
// It owns the chunk boundary algorithm and nothing else: it does not hash,
// compress or store chunks, and it imports no other snapforge package (it sits
// under snapshot and must never import anything above it). Chunk boundaries are
// part of the repository format: the same bytes with the same [Params] must cut
// at the same places in every release, or deduplication against older
// snapshots silently stops working. Changing anything described below is a
// format change.
//
// # Algorithm
//
// The chunker belongs to the FastCDC family: a gear rolling hash, cut-point
// skipping below Min, and normalized chunking with two masks (level 2).
//
// The gear table holds 256 uint64 values drawn, in order, from splitmix64
// seeded with 0x736e6170666f7267 ("snapforg" in ASCII):
//
//	state := 0x736e6170666f7267
//	for i := 0; i < 256; i++ {
//		state += 0x9e3779b97f4a7c15
//		z := state
//		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
//		z = (z ^ z>>27) * 0x94d049bb133111eb
//		gear[i] = z ^ z>>31
//	}
//
// The hash at a position is the gear hash of the 64 bytes that end there,
// hash = hash<<1 + gear[b] for each byte b; older bytes have been shifted out
// of the 64-bit word, so the hash depends on that window alone. With
// bits = log2(Avg), maskS is the top bits+2 bits of a uint64 and maskL the top
// bits-2 bits: before Avg a cut is four times less likely than 1/Avg, after it
// four times more likely, which narrows the chunk size distribution around Avg.
// Using the top bits makes every one of them depend on the whole window.
//
// The cut point of the chunk starting at the front of data is:
//
//	cut(data):
//		n := len(data)
//		if n <= Min { return n }       // short tail: one chunk
//		if n > Max { n = Max }
//		h := hash of data[Min-64 : Min-1]   // warm-up, no test
//		for L := Min; L <= n; L++ {         // L = candidate chunk length
//			h = h<<1 + gear[data[L-1]]      // h is now the hash of data[L-64:L]
//			mask := maskL
//			if L < Avg { mask = maskS }
//			if h&mask == 0 { return L }
//		}
//		return n                            // no content boundary: Max, or end of data
//
// A stream is cut by applying cut to the remaining bytes until none remain.
// The inner loop is unrolled but gives exactly these boundaries; the tests
// check it against a direct transcription of the pseudo-code.
//
// Consequences worth knowing:
//
//   - Every chunk is between Min and Max bytes long, except the last chunk of
//     a stream, which may be shorter than Min. A stream of at most Min bytes
//     (a small file) is exactly one chunk; an empty stream has no chunks.
//   - Whether a boundary falls at a position depends only on the 64 bytes
//     before it and the distance from the start of the chunk. Once two streams
//     share a boundary followed by the same bytes, they are cut identically
//     from there on; after an edit the boundaries usually realign within a
//     chunk or two.
//   - Runs of zero bytes: the hash of 64 zero bytes is 0xcf7a0f8e3f6dda3e,
//     whose top bit is set, so it matches no mask for any valid Params. Inside
//     a long zero run no content boundary exists; the run is cut into Max-sized
//     chunks counted from the last boundary before it (which may fall in the
//     first 63 bytes of the run, where the window still sees earlier data). Equal
//     zero runs preceded by the same boundary therefore give equal chunks.
//
// # Reading
//
// A [Chunker] reads each chunk into the buffer that will hold it (its own for
// [Chunker.Next], the caller's for [Chunker.NextInto]), at most 128 KiB at a
// time and never beyond Max bytes, testing each new byte once: the search
// for the boundary resumes where the last read left it. A boundary found is
// final (the hash looks back 64 bytes only); the bytes read past it start
// the next chunk. Short reads and data returned together with io.EOF are
// tolerated, so the boundaries are those of [Split] on the whole stream
// whatever the reader's read sizes.
package chunker
