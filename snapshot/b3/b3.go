// Package b3 computes BLAKE3-256, unkeyed: the hash behind every chunk id,
// whole-file hash and pack name of a repository, and what `b3sum` prints.
//
// It exists for speed. Its Merkle tree is built here, over the compression
// functions of lukechampine.com/blake3/guts, which hash 16 chunks (16 KiB)
// at once with AVX-512 where the CPU has it (8 with AVX2, else portable Go).
// github.com/zeebo/blake3, used before and still used by the tests as an
// independent implementation to check against, has no AVX-512 path: on the
// 2-core AVX-512 VM this project is measured on, one core hashes 4.1 GB/s of
// 16 KiB or 512 KiB inputs here against zeebo's 2.5 and 3.0 GB/s, and
// BLAKE3 is a sixth of a backup's CPU (three passes over new data: chunk
// ids, whole-file hashes, pack names), a third of verify's and of reading
// a large file through the mount. lukechampine.com/blake3's own Hasher
// spreads one large input over goroutines, which costs more than it gains
// where every core is already busy, and allocates: this one uses a single
// goroutine and allocates nothing.
//
// Inputs under 16 KiB go to zeebo's Sum256, which is faster there: a 16-lane
// pass costs the same for 2 KiB as for 16 KiB.
//
// Which is faster for large inputs depends on the CPU: on an AMD EPYC with
// AVX-512 (which runs 512-bit operations as two 256-bit halves), zeebo's
// AVX2 code hashes 4.1 GB/s a core against 3.5 GB/s here. So the first large
// hash times both on 256 KiB (a fraction of a millisecond) and, where zeebo
// is more than 5 % faster, Sum256 and every Hasher not declared to use the
// span functions (Spans, OnSubtree) hash through zeebo. The hashes are
// the same either way; SNAPFORGE_BLAKE3=zeebo or =tree fixes the choice.
package b3

import (
	"fmt"
	"math"
	"math/bits"
	"os"
	"sync"
	"time"
	"unsafe"

	zeebo "github.com/zeebo/blake3"
	"lukechampine.com/blake3/guts"
)

const (
	// Size is the length of a hash in bytes.
	Size = 32
	// bufSize is what one compression pass takes: MaxSIMD chunks.
	bufSize   = guts.MaxSIMD * guts.ChunkSize
	bufChunks = guts.MaxSIMD
	// smallMax: shorter inputs are hashed by zeebo's Sum256 (see the
	// package comment). BenchmarkSum256, one core: 8 KiB in 3.8 µs by
	// zeebo against 7.1 µs here, 16 KiB (a database's chunk) in 6.7 µs
	// against 4.1 µs.
	smallMax = bufSize

	// SubtreeSize is the span of the chaining values Hasher reports to
	// OnSubtree and takes in AddSubtree: 16 KiB, one compression pass.
	SubtreeSize = bufSize
)

// CV is the chaining value of a subtree of BLAKE3's Merkle tree: what the
// tree's parent nodes are computed from. Two inputs that agree on an
// aligned SubtreeSize span have the same CV for it, wherever else they
// differ, so a changed file's hash can be computed again from the CVs of
// its unchanged spans and the bytes of the changed ones.
type CV [8]uint32

// Hasher computes the BLAKE3-256 of what is written to it. The zero value
// is ready to use. It is not safe for concurrent use.
type Hasher struct {
	// stack holds the chaining values of complete subtrees of bufChunks<<i
	// chunks, one per bit set in count; count is the number of full
	// buffers hashed so far.
	stack [64][8]uint32
	count uint64
	buf   [bufSize]byte // bytes not yet hashed: always hashed last, as the tree's right edge
	n     int
	onSub func(i uint64, cv CV) // see OnSubtree
	// mode is how this input is hashed, decided by the first call that
	// adds to it: modeTree, or modeZeebo through z.
	mode uint8
	z    *zeebo.Hasher
}

const (
	modeUnset = iota
	modeTree
	modeZeebo
)

// zeeboFaster reports whether zeebo's hasher is the one for large inputs
// on this CPU (see the package comment). A variable for the tests.
var zeeboFaster = func() bool { return choice().zeebo }

// choice is made once: by SNAPFORGE_BLAKE3 when it says zeebo or tree,
// else by timing both.
var choice = sync.OnceValue(func() (c struct{ zeebo, forced bool }) {
	switch os.Getenv("SNAPFORGE_BLAKE3") {
	case "zeebo":
		c.zeebo, c.forced = true, true
		return c
	case "tree":
		c.forced = true
		return c
	}
	buf := make([]byte, 256<<10)
	tz, tt := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for range 5 {
		start := time.Now()
		zeebo.Sum256(buf)
		tz = min(tz, time.Since(start))
		start = time.Now()
		treeSum256(buf)
		tt = min(tt, time.Since(start))
	}
	c.zeebo = tz*20 < tt*19
	return c
})

// EnvError reports a SNAPFORGE_BLAKE3 that is set but neither zeebo nor
// tree (it is then ignored, and the faster is measured).
func EnvError() error {
	if v, ok := os.LookupEnv("SNAPFORGE_BLAKE3"); ok && v != "zeebo" && v != "tree" {
		return fmt.Errorf("SNAPFORGE_BLAKE3=%q: want zeebo or tree, or leave it unset to use the faster on this CPU", v)
	}
	return nil
}

// Implementation names what hashes plain inputs of 16 KiB and more on this
// CPU (deciding it, if no hash has yet).
func Implementation() string {
	why := "the faster here"
	if choice().forced {
		why = "chosen by SNAPFORGE_BLAKE3"
	}
	if zeeboFaster() {
		return "BLAKE3 by github.com/zeebo/blake3 (" + why + "); span proofs by the tree over lukechampine.com/blake3/guts"
	}
	return "BLAKE3 by the tree over lukechampine.com/blake3/guts (" + why + ")"
}

// start decides how the input is hashed, on the first call adding to it.
func (h *Hasher) start() {
	if h.mode != modeUnset {
		return
	}
	h.mode = modeTree
	if zeeboFaster() {
		h.mode = modeZeebo
		if h.z == nil {
			h.z = zeebo.New()
		} else {
			h.z.Reset()
		}
	}
}

// New returns a new Hasher.
func New() *Hasher { return &Hasher{} }

var pool = sync.Pool{New: func() any { return New() }}

// Get returns a reset Hasher from a pool: a Hasher is 18 KiB, and a backup
// or restore hashes every file. Put it back when done.
func Get() *Hasher {
	h := pool.Get().(*Hasher)
	h.Reset()
	return h
}

// Put returns h, which must not be used after, to the pool.
func Put(h *Hasher) {
	h.onSub = nil // nothing it refers to is kept alive by the pool
	pool.Put(h)
}

// Reset forgets everything written, and the OnSubtree function.
func (h *Hasher) Reset() { h.count, h.n, h.onSub, h.mode = 0, 0, nil, modeUnset }

// OnSubtree has f called with the CV of each SubtreeSize span of the input
// as it is hashed: span i covers bytes [i*SubtreeSize, (i+1)*SubtreeSize).
// Spans given to AddSubtree are not reported, nor is the input's last
// span, which is only hashed by Sum256 (as the tree's right edge, with the
// root). f runs inside Write. Set it before anything is written; it
// implies Spans.
func (h *Hasher) OnSubtree(f func(i uint64, cv CV)) {
	h.Spans()
	h.onSub = f
}

// Spans declares, before anything is written, that the input will be
// hashed with the span functions (AddSubtree after bytes were written, or
// OnSubtree): it is then hashed by this package's tree, whatever is faster
// on the CPU. It panics after input was written without it.
func (h *Hasher) Spans() {
	switch h.mode {
	case modeUnset:
		h.mode = modeTree
	case modeZeebo:
		panic("b3: span functions after input was written without Spans")
	}
}

// AddSubtree adds the next SubtreeSize bytes of the input by their CV
// instead of the bytes, which must not be the input's end: more must be
// written before Sum256. Everything written so far must be a whole number
// of spans; it panics otherwise.
func (h *Hasher) AddSubtree(cv CV) {
	h.Spans()
	switch h.n {
	case 0:
	case bufSize: // held back in case it was the last: it is not
		h.push(&h.buf)
		h.n = 0
	default:
		panic("b3: AddSubtree after input that is not a whole number of 16 KiB spans")
	}
	h.merge(cv)
}

// Size returns Size.
func (h *Hasher) Size() int { return Size }

// BlockSize returns BLAKE3's block size, 64 bytes, for hash.Hash (as
// zeebo/blake3 and lukechampine.com/blake3 do: HMAC pads keys to it).
func (h *Hasher) BlockSize() int { return guts.BlockSize }

// Write adds p. It never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	h.start()
	if h.mode == modeZeebo {
		return h.z.Write(p)
	}
	total := len(p)
	if h.n > 0 || len(p) <= bufSize {
		c := copy(h.buf[h.n:], p)
		h.n += c
		p = p[c:]
		if len(p) == 0 {
			return total, nil // a full buffer waits: it may be the last
		}
		h.push(&h.buf)
		h.n = 0
	}
	// Whole buffers straight from p, the last (possibly full) one kept back.
	for len(p) > bufSize {
		h.push((*[bufSize]byte)(p))
		p = p[bufSize:]
	}
	h.n = copy(h.buf[:], p)
	return total, nil
}

// WriteMid adds p, which is not the end of the input (more will be
// written, or added by AddSubtree, before Sum256). Unlike Write, which
// keeps a last whole span back in case it ends the input, it hashes every
// whole span of p straight from p: a caller writing 16 KiB pieces (a
// database's pages) has none copied.
func (h *Hasher) WriteMid(p []byte) {
	h.start()
	if h.mode == modeZeebo {
		h.z.Write(p)
		return
	}
	if h.n > 0 {
		c := copy(h.buf[h.n:], p)
		h.n += c
		p = p[c:]
		if h.n < bufSize {
			return
		}
		h.push(&h.buf)
		h.n = 0
	}
	for len(p) >= bufSize {
		h.push((*[bufSize]byte)(p))
		p = p[bufSize:]
	}
	h.n = copy(h.buf[:], p)
}

// WriteString adds s. It never fails.
func (h *Hasher) WriteString(s string) (int, error) {
	return h.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// push hashes one full buffer, known not to be the input's end, and merges
// the subtrees it completes.
func (h *Hasher) push(buf *[bufSize]byte) {
	cv := guts.ChainingValue(guts.CompressBuffer(buf, bufSize, &guts.IV, h.count*bufChunks, 0))
	if h.onSub != nil {
		h.onSub(h.count, cv)
	}
	h.merge(cv)
}

// merge adds the CV of the next span to the tree, merging the subtrees it
// completes.
func (h *Hasher) merge(cv CV) {
	i := 0
	for ; h.count&(1<<i) != 0; i++ {
		cv = guts.ChainingValue(guts.ParentNode(h.stack[i], cv, &guts.IV, 0))
	}
	h.stack[i] = cv
	h.count++
}

// Sum appends the hash of everything written to b. It does not change the
// state.
func (h *Hasher) Sum(b []byte) []byte {
	s := h.Sum256()
	return append(b, s[:]...)
}

// Sum256 returns the hash of everything written.
func (h *Hasher) Sum256() [Size]byte {
	if h.mode == modeZeebo {
		var out [Size]byte
		h.z.Sum(out[:0])
		return out
	}
	if h.n == 0 && h.count > 0 {
		panic("b3: Sum256 right after AddSubtree or WriteMid: the input's last bytes must be written by Write")
	}
	if h.count == 0 && h.n < smallMax {
		return zeebo.Sum256(h.buf[:h.n])
	}
	return h.root(&h.buf, h.n)
}

// root returns the hash of the input whose last n bytes are in buf (all of
// them, n > 0, unless the input is empty) and the rest on the stack.
func (h *Hasher) root(buf *[bufSize]byte, n int) [Size]byte {
	// The bytes in buf are the tree's rightmost subtree; the stack's
	// subtrees join it from the smallest up.
	node := guts.CompressBuffer(buf, n, &guts.IV, h.count*bufChunks, 0)
	for i := 0; i < bits.Len64(h.count); i++ {
		if h.count&(1<<i) != 0 {
			node = guts.ParentNode(h.stack[i], guts.ChainingValue(node), &guts.IV, 0)
		}
	}
	node.Flags |= guts.FlagRoot
	words := guts.CompressNode(node)
	var out [Size]byte
	for i, w := range words[:8] {
		out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
	}
	return out
}

// Sum256 returns the hash of p.
func Sum256(p []byte) [Size]byte {
	if len(p) < smallMax || zeeboFaster() {
		return zeebo.Sum256(p)
	}
	return treeSum256(p)
}

// treeSum256 is Sum256 through this package's tree, for p of at least
// smallMax bytes.
func treeSum256(p []byte) [Size]byte {
	var h Hasher
	for len(p) > bufSize {
		h.push((*[bufSize]byte)(p))
		p = p[bufSize:]
	}
	if len(p) == bufSize { // a database page group: no copy
		return h.root((*[bufSize]byte)(p), bufSize)
	}
	h.n = copy(h.buf[:], p)
	return h.root(&h.buf, h.n)
}
