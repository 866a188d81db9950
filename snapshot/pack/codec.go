package pack

import (
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Compression thresholds: zstd is kept only when it saves at least
// 1/minSavingDiv of the raw size and at least minSaving bytes. Smaller wins do
// not pay for the decode work on every read.
const (
	minSaving    = 64
	minSavingDiv = 32
)

// Blobs and groups are compressed by frameEncoders: klauspost's pure-Go
// zstd (goEncoders), or, in a build with cgo, the reference C zstd
// (encoders_cgo.go), which compresses the same data to smaller frames in
// less time (database pages 2.2×, small files 1.5×, logs 1.2× faster). Every frame is read back by klauspost's decoder,
// written in Go: bytes from the repository, which may be damaged or
// crafted, never reach C code. Both encoders write the content size into
// the frame header (Decode checks it) and no checksum (the caller checks
// BLAKE3 of the plaintext).
type frameEncoder interface {
	// encode returns one zstd frame of src, built in dst's backing array
	// when its capacity is at least bound(len(src)).
	encode(dst, src []byte) []byte
	bound(n int) int
}

// Effort is how hard the encoder works on a frame. EffortFast trades some
// ratio for speed, and pays on data whose matches are mostly short and
// near (a database's pages, logs) but not on data with long repeats far
// apart (a folder of similar source files): the caller chooses per stream
// of blobs by trying both now and then (snapshot's levelPick).
type Effort uint8

const (
	EffortDefault Effort = iota // the C library's level 3 (zstd's default)
	EffortFast                  // the C library's level 2; the Go build's fastest level
	efforts
)

// blobEncoders compress large blobs one by one (Compress), groupEncoders
// groups of small ones (CompressGroup), by Effort; Encoders names them.
var blobEncoders, groupEncoders, encoderName = pickEncoders()

// FastDiffers reports whether EffortFast is another encoder than
// EffortDefault for groups (group) or single blobs: in a build without
// cgo single blobs are at the fastest level either way, and trying both
// would compress twice for nothing.
func FastDiffers(group bool) bool {
	if group {
		return groupEncoders[EffortFast] != groupEncoders[EffortDefault]
	}
	return blobEncoders[EffortFast] != blobEncoders[EffortDefault]
}

// Encoders names the zstd encoder this build compresses with.
func Encoders() string { return encoderName }

// goEncoder is klauspost's encoder at one level. EncodeAll is safe for
// concurrent use and keeps an internal pool of GOMAXPROCS encoder states,
// created on first use. Each state keeps a history of twice the window, so
// the window is 512 KiB rather than the default 8 MiB: 1 MiB instead of 16
// MiB per core. The ratio measured the same on 4 MiB inputs at 1 MiB, and
// the benchmark repository the same at 512 KiB (1297.12 MB against 1297.19
// MB).
type goEncoder struct{ e *zstd.Encoder }

func newGoEncoder(level zstd.EncoderLevel) goEncoder {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithWindowSize(512<<10),
		zstd.WithEncoderCRC(false),
	)
	if err != nil {
		panic("pack: zstd encoder options: " + err.Error()) // constant options: a programming error
	}
	return goEncoder{e}
}

func (g goEncoder) encode(dst, src []byte) []byte {
	if n := g.e.MaxEncodedSize(len(src)); cap(dst) < n {
		dst = make([]byte, 0, n) // room for the worst case: EncodeAll never reallocates
	}
	return g.e.EncodeAll(src, dst[:0])
}

func (g goEncoder) bound(n int) int { return g.e.MaxEncodedSize(n) }

// goEncoders are the pure-Go encoders: large blobs at the fastest level;
// groups of small blobs at the default level: such blobs are the
// compressible kind (database pages, small text files), and together they
// are about a tenth of a backup's bytes, so the better ratio costs little
// time where it saves the most (benchmark data: 436 MB of blobs under 256
// KiB, 192 MB stored one by one at the fastest level, 169 MB in 1 MiB
// groups at it, 156 MB at default).
var goEncoders = sync.OnceValues(func() (blob, group goEncoder) {
	return newGoEncoder(zstd.SpeedFastest), newGoEncoder(zstd.SpeedDefault)
})

// probeEncoder compresses the probe's samples (incompressible): the
// pure-Go encoder at the fastest level whatever compresses the blobs, a
// fixed measure of what a blob's bytes look like.
func probeEncoder() *zstd.Encoder {
	b, _ := goEncoders()
	return b.e
}

// CompressGroup compresses the plaintexts of a group's members, back to
// back in raw, as one zstd frame (see CodecGroup), built in dst's backing
// array when its capacity allows (CompressBound). ok is false when the
// frame would not save at least 1/32 of len(raw) and 64 bytes: the members
// are then better stored raw, each on its own.
func CompressGroup(dst, raw []byte) (stored []byte, ok bool) {
	return CompressGroupAt(dst, raw, EffortDefault)
}

// CompressGroupAt is CompressGroup at effort e.
func CompressGroupAt(dst, raw []byte, e Effort) (stored []byte, ok bool) {
	if len(raw) <= minSaving {
		return nil, false
	}
	out := groupEncoders[e].encode(dst, raw)
	saved := len(raw) - len(out)
	if saved < minSaving || saved < len(raw)/minSavingDiv {
		return nil, false
	}
	return out, true
}

// decoder is shared likewise: DecodeAll is safe for concurrent use. Window and
// output are capped at MaxBlobSize for every frame; Decode caps each call at
// the blob's raw length through the capacity of the buffer it passes.
var decoder = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(MaxBlobSize),
		zstd.WithDecoderMaxWindow(MaxBlobSize),
		zstd.WithDecodeAllCapLimit(true), // never decode more than cap(dst)-len(dst)
	)
	if err != nil {
		panic("pack: zstd decoder options: " + err.Error())
	}
	return d
})

// Compress returns the bytes to store for raw and their codec. It compresses
// at EffortDefault and keeps the result only when it saves at
// least 1/32 of len(raw) and at least 64 bytes; otherwise it returns raw itself
// (not a copy) with CodecRaw. The zstd output is built in dst's backing array
// when its capacity allows for the worst case (a little over len(raw)), else
// in a new buffer. To reuse the output buffer, keep stored only when codec is
// CodecZstd: with CodecRaw it is raw. Compress is safe for concurrent use.
//
// A blob of probeMin bytes or more is first probed (incompressible): when
// samples spread over it do not compress, it is stored raw without
// compressing the whole.
func Compress(dst, raw []byte) (stored []byte, codec uint8) {
	return CompressAt(dst, raw, EffortDefault)
}

// CompressAt is Compress at effort e.
func CompressAt(dst, raw []byte, e Effort) (stored []byte, codec uint8) {
	if Incompressible(raw) {
		return raw, CodecRaw
	}
	return CompressProbedAt(dst, raw, e)
}

// CompressProbed is Compress without the probe, for raw its caller found
// not Incompressible already.
func CompressProbed(dst, raw []byte) (stored []byte, codec uint8) {
	return CompressProbedAt(dst, raw, EffortDefault)
}

// CompressProbedAt is CompressProbed at effort e.
func CompressProbedAt(dst, raw []byte, e Effort) (stored []byte, codec uint8) {
	if len(raw) <= minSaving { // the frame header alone eats the saving
		return raw, CodecRaw
	}
	out := blobEncoders[e].encode(dst, raw)
	saved := len(raw) - len(out)
	if saved < minSaving || saved < len(raw)/minSavingDiv {
		return raw, CodecRaw
	}
	return out, CodecZstd
}

// The probe of a large blob (see incompressible): probeSamples pieces of
// probeSample bytes each, evenly spread, each compressed on its own.
//
// Large blobs are mostly chunks of large files, and many large files do not
// compress at all (models, media, archives, encrypted data): compressing a
// 1 MiB chunk of random bytes at the fastest level only to throw the result
// away costs about 0.6 ms of CPU with the data coming from memory (the
// reference dataset's 1 GB of models: 0.6 s of a backup's 3.5 s of CPU),
// the probe some 15 µs. A piece of 1 KiB is enough for zstd to find what
// text, logs, database pages, records that repeat and sparse runs of zeros
// look like. The pieces are compressed one by one, not joined: after a run
// of random bytes the fastest level checks fewer and fewer positions for a
// match, and would miss compressible pieces that come after random ones.
// What the probe cannot see is a chunk that is random except for a region
// narrower than the gap between samples (1/16 of it), or data whose repeats
// are further apart than a piece: such a chunk is stored raw, as it would
// have been had the whole compressed by less than 1/minSavingDiv.
const (
	probeMin     = 64 << 10
	probeSamples = 16
	probeSample  = 1 << 10
)

// probeOverhead is what a probe piece that does not compress grows by: the
// frame and block headers around its bytes stored as they are.
var probeOverhead = sync.OnceValue(func() int {
	piece := make([]byte, probeSample)
	x := uint32(2463534242)
	for i := range piece { // xorshift: bytes zstd cannot shorten
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		piece[i] = byte(x)
	}
	return len(probeEncoder().EncodeAll(piece, nil)) - probeSample
})

var probeBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 2*probeSample)
	return &b
}}

// Incompressible reports whether Compress would store raw as it is after
// probing it, without compressing anything else: raw is probeMin bytes or
// more and its samples do not compress (see incompressible). A caller can
// then skip handing raw to a compressor.
func Incompressible(raw []byte) bool {
	return len(raw) >= probeMin && incompressible(probeEncoder(), raw)
}

// incompressible reports whether the samples of raw (len(raw) >= probeMin)
// save less than 1/(2*minSavingDiv) of their size: half the saving Compress
// asks of a whole blob, so a blob near the line is still compressed whole.
func incompressible(enc *zstd.Encoder, raw []byte) bool {
	bp := probeBufs.Get().(*[]byte)
	defer probeBufs.Put(bp)
	step := (len(raw) - probeSample) / (probeSamples - 1)
	saved := 0
	for i := range probeSamples {
		off := i * step
		*bp = enc.EncodeAll(raw[off:off+probeSample], (*bp)[:0])
		saved += probeSample + probeOverhead() - len(*bp)
	}
	return saved < probeSamples*probeSample/(2*minSavingDiv)
}

// CompressBound is the capacity of a dst that Compress builds its output
// in, whatever raw holds: the zstd worst case for n bytes.
func CompressBound(n int) int {
	b := 0
	for e := range efforts {
		b = max(b, blobEncoders[e].bound(n), groupEncoders[e].bound(n))
	}
	return b
}

// DecodeSlack is the capacity beyond a blob's raw size that lets Decode use
// the decoder's fast copies, which move whole 16- and 32-byte blocks and so
// may write past the end of the output. Without it every block is decoded
// with exact copies: about half the speed on 16 KiB database pages
// (BenchmarkDecode). Callers that pass dst should size it raw+DecodeSlack.
const DecodeSlack = 64

// Decode returns the plaintext of a stored blob, appending into dst[:0] (a
// large enough dst is reused). The result is exactly raw bytes long or an
// error wrapping ErrCorrupt is returned, together with dst[:0].
//
// For CodecZstd decoding is bounded by raw: a frame whose header declares
// another content size is rejected before anything is decoded or allocated,
// the output may not grow past raw bytes, and windows above MaxBlobSize are
// refused. Whatever the frame claims, Decode allocates the raw-byte output
// (none if dst has the capacity; see DecodeSlack) and, for a frame without a declared size that
// overruns it, at most one reallocation of about 1.25 times raw plus a 128 KiB
// block before failing; the decoders' working state is fixed and shared.
// Decode is safe for concurrent use.
//
// Decode does not check the hash: a well-formed frame with the wrong content
// decodes without error. The caller must compare BLAKE3 of the result with the
// blob's id before using it.
func Decode(dst, stored []byte, codec uint8, raw uint32) ([]byte, error) {
	if raw > MaxBlobSize {
		return dst[:0], corrupt("decode blob: raw length %d above the %d maximum", raw, MaxBlobSize)
	}
	switch codec {
	case CodecRaw:
		if len(stored) != int(raw) {
			return dst[:0], corrupt("decode raw blob: %d stored bytes, want %d", len(stored), raw)
		}
		return append(dst[:0], stored...), nil
	case CodecZstd, CodecGroup: // a group's raw is its GroupRaw
		return decodeZstd(dst, stored, int(raw))
	default:
		return dst[:0], corrupt("decode blob: unknown codec %d", codec)
	}
}

func decodeZstd(dst, stored []byte, raw int) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(stored); err != nil {
		return dst[:0], corrupt("decode zstd blob: frame header: %w", err)
	}
	if h.Skippable {
		return dst[:0], corrupt("decode zstd blob: starts with a skippable frame")
	}
	if h.HasFCS && h.FrameContentSize != uint64(raw) {
		return dst[:0], corrupt("decode zstd blob: frame declares %d bytes, want %d", h.FrameContentSize, raw)
	}
	out := dst[:0]
	limit := raw + DecodeSlack
	switch {
	case cap(out) < raw:
		out = make([]byte, 0, limit)
	case cap(out) < limit:
		limit = raw // no room for the fast copies: decode with exact ones
	}
	// The capacity is the limit (WithDecodeAllCapLimit): raw bytes and the
	// slack at most; anything but exactly raw is refused below.
	res, err := decoder().DecodeAll(stored, out[:0:limit])
	if err != nil {
		return dst[:0], corrupt("decode zstd blob: %w", err)
	}
	if len(res) != raw {
		return dst[:0], corrupt("decode zstd blob: decoded %d bytes, want %d", len(res), raw)
	}
	if raw > 0 && &res[0] == &out[:1][0] {
		return out[:raw], nil // keep the caller's full capacity for reuse
	}
	return res, nil
}
