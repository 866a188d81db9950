// Package pack owns the pack file format and blob compression.
//
// A pack is an immutable file holding many blobs (file content chunks and
// encoded trees) back to back, followed by a trailer that lists them. The
// trailer alone is enough to rebuild the chunk-location index: it names every
// blob, its kind, its codec, where its stored bytes are and how long they are
// stored and decoded.
//
// This package must never import snapforge/snapshot (snapshot imports it), nor
// anything above it. It knows nothing of indexes, trees or repositories.
//
// # Byte format (version 2)
//
// All integers are little-endian. Offsets are from the start of the file.
//
//	pack    = header blob* trailer footer
//	header  = "SFPK" version:u8=2 reserved:[3]u8=0             8 bytes, at offset 0
//	blob    = the stored bytes, with no framing of their own   Stored bytes each
//	trailer = count:u32 entry*count                            4 + 50*count bytes
//	entry   = id:[32]u8 kind:u8 codec:u8 offset:u64 stored:u32 raw:u32   50 bytes
//	footer  = length:u32 checksum:[16]u8 "SFPT"                24 bytes, at size-24
//
// The fields mean:
//
//   - version is 2, or 1 for packs written before groups (no codec 2); any
//     other value is rejected, and so are non-zero reserved bytes.
//   - The blob area runs from offset 8 to the start of the trailer. Blobs are
//     laid out in trailer order, exactly back to back: the first blob starts at
//     offset 8, each next one where the previous one ends, and the last one ends
//     where the trailer starts. Blobs of zero stored bytes are allowed.
//   - id is the BLAKE3-256 hash of the blob's raw (plaintext) bytes.
//   - kind is 0 (data: a file content chunk) or 1 (tree: an encoded directory).
//   - codec is 0 (raw: the stored bytes are the plaintext, so stored == raw),
//     1 (zstd: the stored bytes are zstd frames that decode to exactly raw bytes)
//     or 2 (group member, below).
//   - A group is a run of consecutive codec-2 entries with the same offset
//     and stored length: one zstd frame, stored once, that decodes to the
//     members' plaintexts back to back in trailer order. A member's place in
//     it (Blob.GroupOff) and the frame's plaintext length (Blob.GroupRaw, at
//     most MaxBlobSize) follow from the members' raw lengths; they are not
//     stored. For the back-to-back rule below a group counts as one blob.
//   - stored and raw are at most MaxBlobSize (64 MiB).
//   - length is the trailer length in bytes, 4 + 50*count.
//   - checksum is the first 16 bytes of BLAKE3-256 over the trailer (the count
//     and every entry; not the footer).
//   - The pack id is BLAKE3-256 over the whole file, the value b3sum prints for it.
//
// The smallest pack (no blobs) is 36 bytes. A reader finds the footer in the
// last 24 bytes, checks its magic and length against the file size, reads the
// trailer, checks its count against its length and its checksum, then checks
// every entry (kind, codec, sizes, offsets). Anything amiss is reported as an
// error wrapping ErrCorrupt; a missing footer magic, the usual sign of a pack
// cut short, says the pack is truncated or its trailer is damaged.
//
// ReadTrailer allocates only after the lengths it is about to allocate for have
// been checked against the file size and against the count at the start of the
// trailer, so a damaged length field cannot make it allocate more than the
// pack holds.
//
// # Compression
//
// CompressGroup compresses a group's plaintexts as one frame, kept under
// the same rule as Compress. Compress stores a blob as zstd (no zstd
// checksum: the caller checks BLAKE3) only when that saves at least 1/32 of
// its size and at least 64 bytes; otherwise the blob is stored raw. The
// encoder is the C library at level 3 in a build with cgo (2 at EffortFast,
// which the caller asks for where that compresses nearly as well), else the Go one
// (Encoders); the decoder is always the Go one. A blob of 64 KiB or more whose samples
// (16 of 1 KiB, spread over it) save less than 1/64 is stored raw without
// compressing the whole (see incompressible). Decode bounds zstd decoding by the
// recorded raw length: a frame that declares another content size is rejected
// before decoding, the output buffer is limited to raw bytes, and the decoder
// never accepts a window or output above MaxBlobSize, so a decompression bomb
// fails fast with bounded memory. Decode does not check the hash; a valid frame
// with the wrong content decodes fine and the caller must compare BLAKE3 of the
// result with the blob's id before using it.
package pack
