package chunker

import (
	"fmt"
	"io"
	"math/bits"
)

// Limits on Params, checked by Validate.
const (
	// minMin is the smallest allowed Params.Min: the hash window is 64 bytes
	// and must fit inside a chunk before the first cut test.
	minMin = 64
	// maxMax is the largest allowed Params.Max (64 MiB), which bounds the
	// chunker's buffer and the memory any single chunk can take.
	maxMax = 64 << 20
)

// Params bound chunk sizes. They are stored in the repository config and are
// part of the repository format: chunking the same data with other Params
// gives other chunks.
type Params struct {
	Min int `json:"min"` // smallest chunk except a stream's last; default 256 KiB
	Avg int `json:"avg"` // target average, a power of two; default 1 MiB
	Max int `json:"max"` // largest chunk; default 4 MiB
}

// DefaultParams returns the parameters new repositories use: Min 256 KiB,
// Avg 1 MiB, Max 4 MiB. Random data then averages a little over 1 MiB per
// chunk, few enough chunks to keep the index small and small enough for edits
// to cost little.
func DefaultParams() Params {
	return Params{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}
}

// Validate reports whether p can be used: 64 <= Min < Avg < Max <= 64 MiB
// and Avg is a power of two. The error names the first bad field.
func (p Params) Validate() error {
	switch {
	case p.Min < minMin:
		return fmt.Errorf("chunker: invalid params: min %d is below %d", p.Min, minMin)
	case p.Avg <= p.Min:
		return fmt.Errorf("chunker: invalid params: avg %d must be greater than min %d", p.Avg, p.Min)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: invalid params: avg %d is not a power of two", p.Avg)
	case p.Max <= p.Avg:
		return fmt.Errorf("chunker: invalid params: max %d must be greater than avg %d", p.Max, p.Avg)
	case p.Max > maxMax:
		return fmt.Errorf("chunker: invalid params: max %d is above %d", p.Max, maxMax)
	}
	return nil
}

// cutter holds Params in the form the cut loop uses.
type cutter struct {
	min, avg, max int
	maskS, maskL  uint64 // tested before and after avg
}

// newCutter panics if p is invalid: chunking with parameters other than the
// ones asked for would silently break deduplication.
func newCutter(p Params) cutter {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	b := bits.TrailingZeros(uint(p.Avg)) // log2(Avg); Avg is a power of two
	return cutter{
		min:   p.Min,
		avg:   p.Avg,
		max:   p.Max,
		maskS: ^uint64(0) << (64 - (b + 2)),
		maskL: ^uint64(0) << (64 - (b - 2)),
	}
}

// cut returns the length of the chunk at the front of data, where data holds
// either at least Max bytes or everything up to the end of the stream.
func (c *cutter) cut(data []byte) int {
	n, _ := c.boundary(data, &scanState{})
	return n
}

// scanState is how far the search for the boundary of the chunk at the
// front of a growing buffer has got: the bytes before pos are tested and h
// is the rolling hash after them (pos 0: nothing tested yet). A search
// resumed with it tests each byte once however the bytes arrive.
type scanState struct {
	pos int
	h   uint64
}

// boundary returns the length of the chunk at the front of data and whether
// a content boundary ends it, testing only the bytes st has not seen (data
// only grows between calls with the same st). A boundary found is final
// whatever follows data: the rolling hash at a position depends only on the
// 64 bytes before it. Without one the length is len(data) up to Max, which
// is the chunk only when data reaches Max or the end of the stream.
func (c *cutter) boundary(data []byte, st *scanState) (int, bool) {
	n := len(data)
	if n <= c.min {
		return n, false
	}
	n = min(n, c.max)
	if st.pos == 0 {
		var h uint64
		for _, b := range data[c.min-64 : c.min-1] {
			h = h<<1 + gear[b]
		}
		st.pos, st.h = c.min-1, h
	}
	// Candidate lengths L below avg test maskS: data indexes min-1 .. avg-2;
	// the byte at index i ends the candidate of length i+1.
	if normal := min(c.avg-1, n); st.pos < normal {
		i, h, ok := scan(data[st.pos:normal], st.h, c.maskS)
		if ok {
			return st.pos + i + 1, true
		}
		st.pos, st.h = normal, h
	}
	if st.pos < n {
		i, h, ok := scan(data[st.pos:n], st.h, c.maskL)
		if ok {
			return st.pos + i + 1, true
		}
		st.pos, st.h = n, h
	}
	return n, false
}

// scan rolls the hash h over data and returns the index of the first byte
// after which h&mask == 0. If there is none it returns ok == false and the
// hash after the last byte.
//
// This is the hot loop. It takes four bytes per step and keeps the
// loop-carried dependency at one shift-add (a single LEA on amd64) per two
// bytes: h2 = h<<2 + (g0<<1 + g1), where the bracket does not depend on h.
// The odd positions' hashes (h1, h3) are computed beside the chain for their
// tests. The slicing pattern leaves no bounds checks in the loop.
func scan(data []byte, h, mask uint64) (i int, hash uint64, ok bool) {
	d := data
	for len(d) >= 4 {
		g0, g1, g2, g3 := gear[d[0]], gear[d[1]], gear[d[2]], gear[d[3]]
		h1 := h<<1 + g0
		h2 := h<<2 + (g0<<1 + g1)
		h3 := h2<<1 + g2
		h4 := h2<<2 + (g2<<1 + g3)
		if h1&mask == 0 {
			return len(data) - len(d), h1, true
		}
		if h2&mask == 0 {
			return len(data) - len(d) + 1, h2, true
		}
		if h3&mask == 0 {
			return len(data) - len(d) + 2, h3, true
		}
		if h4&mask == 0 {
			return len(data) - len(d) + 3, h4, true
		}
		h = h4
		d = d[4:]
	}
	base := len(data) - len(d)
	for j, b := range d {
		h = h<<1 + gear[b]
		if h&mask == 0 {
			return base + j, h, true
		}
	}
	return 0, h, false
}

// Split cuts data into chunks in memory, with the same boundaries as a
// Chunker reading the same bytes. The chunks are subslices of data (nothing
// is copied); empty data gives no chunks. Split panics if p is invalid.
func Split(data []byte, p Params) [][]byte {
	c := newCutter(p)
	chunks := make([][]byte, 0, len(data)/p.Avg+1)
	for len(data) > 0 {
		n := c.cut(data)
		chunks = append(chunks, data[:n:n])
		data = data[n:]
	}
	return chunks
}

// maxEmptyReads is how many (0, nil) reads in a row make Next give up with
// io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

// Chunker cuts the stream from an io.Reader into content-defined chunks.
// It reads each chunk straight into a buffer: its own (Next) or the
// caller's (NextInto), which a backup then hands on to be compressed and
// stored without another copy. Only the bytes read past a boundary, at most
// one read's worth, are kept for the next chunk. A Chunker is not safe for
// concurrent use.
type Chunker struct {
	c     cutter
	r     io.Reader
	carry []byte // read past the last boundary: the next chunk's first bytes
	own   []byte // Next's buffer, grown as chunks need, up to Max
	eof   bool   // r has returned io.EOF
	err   error  // sticky read error
}

// ReadSize is the most a Chunker asks its reader for at a time: the bytes
// read past a boundary are copied once more, into the next chunk. A buffer
// given to NextInto with less room grows when it is full.
const ReadSize = 128 << 10

// New returns a chunker reading r; Reset lets a caller reuse it for another
// stream. New panics if p is invalid; check Params read from a repository
// config with Validate first.
func New(r io.Reader, p Params) *Chunker {
	return &Chunker{c: newCutter(p), r: r}
}

// Reset makes c read a new stream from r, keeping its buffers and Params.
// Chunks returned by Next before Reset become invalid.
func (c *Chunker) Reset(r io.Reader) {
	c.r = r
	c.carry = c.carry[:0]
	c.eof = false
	c.err = nil
}

// Next returns the next chunk. The slice points into c's buffer and is only
// valid until the next call to Next or Reset; copy it to keep it.
//
// After the last chunk Next returns nil, io.EOF (an empty stream has no
// chunks). If the reader fails, Next returns its error unwrapped, drops the
// chunks it had not yet returned, and returns the same error from then on.
func (c *Chunker) Next() ([]byte, error) {
	chunk, err := c.NextInto(c.own[:0], nil)
	if cap(chunk) > cap(c.own) {
		c.own = chunk[:0]
	}
	if err != nil {
		return nil, err
	}
	return chunk[:len(chunk):len(chunk)], nil
}

// NextInto is Next reading the chunk into dst, from its start, and
// returning it there. When dst is full before the chunk ends, grow is
// called with the bytes so far and a capacity (double the buffer's, at
// least what the chunk needs, at most Max) and must return a buffer of at
// least that capacity starting with those bytes (nil grow: a new slice).
// The chunk is the caller's: c keeps no reference to it. On io.EOF or an error the returned slice is empty but carries the
// buffer in use (grown or not), for the caller to reuse.
func (c *Chunker) NextInto(dst []byte, grow func(b []byte, n int) []byte) ([]byte, error) {
	if grow == nil {
		grow = func(b []byte, n int) []byte { return append(make([]byte, 0, n), b...) }
	}
	buf := dst[:0]
	if c.err != nil {
		return buf, c.err
	}
	if len(c.carry) > cap(buf) {
		buf = grow(buf, c.growTo(len(c.carry), cap(buf)))
	}
	buf = append(buf, c.carry...)
	c.carry = c.carry[:0]
	var st scanState
	empty := 0
	for {
		if n, ok := c.c.boundary(buf, &st); ok || len(buf) >= c.c.max || c.eof {
			if n == 0 {
				return buf[:0], io.EOF
			}
			c.carry = append(c.carry, buf[n:]...)
			return buf[:n], nil
		}
		// Fewer than Max bytes, no boundary among them, and more to come:
		// read into the room left, growing the buffer only once it is full.
		want := min(ReadSize, c.c.max-len(buf))
		if room := cap(buf) - len(buf); room == 0 {
			buf = grow(buf, c.growTo(len(buf)+want, cap(buf)))
		} else {
			want = min(want, room)
		}
		n, err := c.r.Read(buf[len(buf) : len(buf)+want])
		if n < 0 || n > want {
			c.err = fmt.Errorf("chunker: reader returned invalid count %d", n)
			return buf[:0], c.err
		}
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF: // io.Reader's contract: EOF itself, never wrapped
			c.eof = true // data returned with it was kept above
		case err != nil:
			c.err = err
			return buf[:0], err
		case n == 0:
			if empty++; empty >= maxEmptyReads {
				c.err = io.ErrNoProgress
				return buf[:0], c.err
			}
		default:
			empty = 0
		}
	}
}

// growTo is the capacity a full buffer of capacity has grows to when need
// bytes must fit: double, at least need, at most Max (the largest chunk;
// need never exceeds it), so a chunk moves at most a few times.
func (c *Chunker) growTo(need, capacity int) int {
	return max(need, min(2*capacity, c.c.max))
}
