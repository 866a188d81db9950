package chunker

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// small are parameters that give many chunks on little data.
var small = Params{Min: 64, Avg: 256, Max: 1024}

// randomData returns n bytes from a ChaCha8 stream seeded with seed.
func randomData(n int, seed byte) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b) // never fails
	return b
}

var random64MiB = sync.OnceValue(func() []byte { return randomData(64<<20, 1) })

// mixedData returns n bytes that exercise every kind of cut: random
// stretches, zero runs longer than Max, runs of one byte value, and
// low-entropy text that rarely matches a mask.
func mixedData(n int, seed uint64, p Params) []byte {
	rng := rand.New(rand.NewPCG(seed, 0))
	var b bytes.Buffer
	for b.Len() < n {
		size := 1 + rng.IntN(3*p.Max)
		switch rng.IntN(4) {
		case 0:
			b.Write(randomData(size, byte(rng.Uint32())))
		case 1:
			b.Write(make([]byte, size))
		case 2:
			b.Write(bytes.Repeat([]byte{byte(rng.Uint32())}, size))
		case 3:
			for range size {
				b.WriteByte("ab "[rng.IntN(3)])
			}
		}
	}
	return b.Bytes()[:n]
}

// refCut is the package doc's pseudo-code transcribed as directly as
// possible: the window hash is recomputed from scratch at every candidate
// length, so it shares nothing with the optimised loop but the gear table.
func refCut(data []byte, p Params) int {
	n := len(data)
	if n <= p.Min {
		return n
	}
	n = min(n, p.Max)
	b := bits.Len(uint(p.Avg)) - 1
	for L := p.Min; L <= n; L++ {
		var h uint64
		for _, x := range data[L-64 : L] {
			h = h<<1 + gear[x]
		}
		maskBits := b - 2
		if L < p.Avg {
			maskBits = b + 2
		}
		if h>>(64-maskBits) == 0 { // top maskBits bits are zero
			return L
		}
	}
	return n
}

func refSplit(data []byte, p Params) [][]byte {
	var chunks [][]byte
	for len(data) > 0 {
		n := refCut(data, p)
		chunks = append(chunks, data[:n])
		data = data[n:]
	}
	return chunks
}

// lengths returns the chunk lengths, for compact comparisons.
func lengths(chunks [][]byte) []int {
	ls := make([]int, len(chunks))
	for i, c := range chunks {
		ls[i] = len(c)
	}
	return ls
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkChunks fails t unless chunks re-join to data and respect p's bounds.
func checkChunks(t testing.TB, data []byte, chunks [][]byte, p Params) {
	t.Helper()
	if !bytes.Equal(bytes.Join(chunks, nil), data) {
		t.Fatalf("chunks do not re-join to the input (%d bytes, %d chunks)", len(data), len(chunks))
	}
	for i, c := range chunks {
		last := i == len(chunks)-1
		if len(c) == 0 || len(c) > p.Max || (!last && len(c) < p.Min) {
			t.Fatalf("chunk %d of %d has %d bytes, want %d..%d (last: 1..%d)", i, len(chunks), len(c), p.Min, p.Max, p.Max)
		}
	}
}

// readAll chunks r with New/Next and returns copies of the chunks.
func readAll(t testing.TB, r io.Reader, p Params) [][]byte {
	t.Helper()
	return readAllWith(t, New(r, p))
}

func readAllWith(t testing.TB, c *Chunker) [][]byte {
	t.Helper()
	var chunks [][]byte
	for {
		chunk, err := c.Next()
		if err == io.EOF {
			if chunk != nil {
				t.Fatalf("Next returned %d bytes with io.EOF", len(chunk))
			}
			if _, err := c.Next(); err != io.EOF {
				t.Fatalf("Next after io.EOF: err = %v, want io.EOF", err)
			}
			return chunks
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		chunks = append(chunks, bytes.Clone(chunk))
	}
}

func TestSplitRejoinsAndRespectsBounds(t *testing.T) {
	for _, p := range []Params{small, {Min: 1000, Avg: 4096, Max: 5000}, DefaultParams()} {
		for _, data := range [][]byte{
			randomData(3<<20, 2),
			mixedData(3<<20, 3, p),
			make([]byte, 3<<20),
		} {
			chunks := Split(data, p)
			checkChunks(t, data, chunks, p)
			if len(chunks) < len(data)/p.Max {
				t.Errorf("%+v: %d chunks for %d bytes", p, len(chunks), len(data))
			}
		}
	}
}

func TestSplitMatchesReference(t *testing.T) {
	for _, p := range []Params{
		small,
		{Min: 64, Avg: 128, Max: 129}, // smallest Avg, Max barely above it
		{Min: 100, Avg: 512, Max: 3000},
		{Min: 2000, Avg: 4096, Max: 20000},
	} {
		for seed := range uint64(3) {
			data := mixedData(128<<10, seed, p)
			want := lengths(refSplit(data, p))
			got := lengths(Split(data, p))
			if !equalInts(got, want) {
				t.Fatalf("%+v seed %d: Split gives %d chunks, reference %d; first lengths %v, want %v",
					p, seed, len(got), len(want), got[:min(8, len(got))], want[:min(8, len(want))])
			}
		}
	}
}

func TestSmallInputsAreOneChunk(t *testing.T) {
	p := DefaultParams()
	if got := Split(nil, p); len(got) != 0 {
		t.Errorf("Split(nil) = %d chunks, want 0", len(got))
	}
	if got := readAll(t, bytes.NewReader(nil), p); len(got) != 0 {
		t.Errorf("Next on an empty stream gave %d chunks, want 0", len(got))
	}
	for _, n := range []int{1, 63, 64, p.Min - 1, p.Min} {
		data := randomData(n, 4)
		if got := Split(data, p); len(got) != 1 || len(got[0]) != n {
			t.Errorf("Split of %d bytes: lengths %v, want [%d]", n, lengths(got), n)
		}
	}
}

func TestZeroRunsCutAtMax(t *testing.T) {
	var h uint64
	for range 64 {
		h = h<<1 + gear[0]
	}
	if h != 0xcf7a0f8e3f6dda3e {
		t.Fatalf("hash of 64 zero bytes = %#x, the package doc says 0xcf7a0f8e3f6dda3e", h)
	}
	for _, p := range []Params{small, {Min: 64, Avg: 128, Max: 200}, DefaultParams()} {
		data := make([]byte, 5*p.Max+17)
		got := lengths(Split(data, p))
		want := []int{p.Max, p.Max, p.Max, p.Max, p.Max, 17}
		if !equalInts(got, want) {
			t.Errorf("%+v: zero run lengths %v, want %v", p, got, want)
		}
	}
	// A zero run inside random data: once the window holds only zeros there
	// is no boundary, so the run's chunks are Max long until it ends.
	p := small
	data := append(randomData(5000, 5), make([]byte, 10*p.Max)...)
	data = append(data, randomData(5000, 6)...)
	var pos int
	for _, c := range Split(data, p) {
		if pos >= 5000+64 && pos+len(c) <= 5000+10*p.Max && len(c) != p.Max {
			t.Errorf("chunk at %d inside the zero run has %d bytes, want %d", pos, len(c), p.Max)
		}
		pos += len(c)
	}
}

// shortReader returns between 0 and max bytes per Read, at random.
type shortReader struct {
	r   io.Reader
	rng *rand.Rand
	max int
}

func (s *shortReader) Read(p []byte) (int, error) {
	n := s.rng.IntN(s.max + 1) // sometimes 0, nil: allowed, if discouraged
	return s.r.Read(p[:min(n, len(p))])
}

func TestChunkerMatchesSplit(t *testing.T) {
	type readerFunc func(data []byte) io.Reader
	readers := map[string]readerFunc{
		"whole":   func(d []byte) io.Reader { return bytes.NewReader(d) },
		"onebyte": func(d []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(d)) },
		"dataerr": func(d []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(d)) },
		"half":    func(d []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(d)) },
		"short7": func(d []byte) io.Reader {
			return iotest.DataErrReader(&shortReader{bytes.NewReader(d), rand.New(rand.NewPCG(7, 7)), 7})
		},
		"short4k": func(d []byte) io.Reader {
			return &shortReader{bytes.NewReader(d), rand.New(rand.NewPCG(8, 8)), 4096}
		},
		"short3M": func(d []byte) io.Reader {
			return iotest.DataErrReader(&shortReader{bytes.NewReader(d), rand.New(rand.NewPCG(9, 9)), 3 << 20})
		},
	}
	cases := []struct {
		p    Params
		data []byte
	}{
		{small, mixedData(200<<10, 10, small)},
		{small, randomData(small.Max*2+1, 11)},
		{small, randomData(small.Min+1, 12)},
		{DefaultParams(), mixedData(9<<20, 13, DefaultParams())}, // refills the 8 MiB buffer
	}
	for name, newReader := range readers {
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				if (name == "onebyte" || name == "short7") && len(tc.data) > 1<<20 {
					continue // millions of reads: slow under -race
				}
				want := lengths(Split(tc.data, tc.p))
				chunks := readAll(t, newReader(tc.data), tc.p)
				checkChunks(t, tc.data, chunks, tc.p)
				if got := lengths(chunks); !equalInts(got, want) {
					t.Fatalf("%+v, %d bytes: Next gives %d chunks, Split %d", tc.p, len(tc.data), len(got), len(want))
				}
			}
		})
	}
}

func TestReset(t *testing.T) {
	a, b := mixedData(50<<10, 14, small), randomData(70<<10, 15)
	c := New(bytes.NewReader(a), small)
	if _, err := c.Next(); err != nil { // leave a half-read stream behind
		t.Fatal(err)
	}
	c.Reset(bytes.NewReader(b))
	if got, want := lengths(readAllWith(t, c)), lengths(Split(b, small)); !equalInts(got, want) {
		t.Fatalf("after Reset: %d chunks, want %d", len(got), len(want))
	}
	c.Reset(iotest.ErrReader(errors.New("boom")))
	if _, err := c.Next(); err == nil {
		t.Fatal("Next on a failing reader: no error")
	}
	c.Reset(bytes.NewReader(a)) // clears the sticky error
	if got, want := lengths(readAllWith(t, c)), lengths(Split(a, small)); !equalInts(got, want) {
		t.Fatalf("after Reset from an error: %d chunks, want %d", len(got), len(want))
	}
}

func TestReadErrorIsReturned(t *testing.T) {
	errDisk := errors.New("disk on fire")
	data := randomData(10<<20, 16)
	p := DefaultParams()
	for _, after := range []int{0, 1, p.Max - 1, 5 << 20} {
		r := io.MultiReader(bytes.NewReader(data[:after]), iotest.ErrReader(errDisk))
		c := New(r, p)
		var got int
		var err error
		for {
			var chunk []byte
			chunk, err = c.Next()
			if err != nil {
				break
			}
			got += len(chunk)
		}
		if !errors.Is(err, errDisk) {
			t.Fatalf("error after %d bytes: Next returned %v, want %v", after, err, errDisk)
		}
		if got > after {
			t.Fatalf("error after %d bytes: %d bytes returned as chunks", after, got)
		}
		if _, err2 := c.Next(); !errors.Is(err2, errDisk) {
			t.Fatalf("Next after the error returned %v, want it again", err2)
		}
	}
}

// zeroReader returns 0, nil forever.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestNoProgress(t *testing.T) {
	if _, err := New(zeroReader{}, small).Next(); err != io.ErrNoProgress {
		t.Fatalf("Next on a reader that never returns data: %v, want io.ErrNoProgress", err)
	}
}

func chunkSet(chunks [][]byte) map[[32]byte]bool {
	s := make(map[[32]byte]bool, len(chunks))
	for _, c := range chunks {
		s[sha256.Sum256(c)] = true
	}
	return s
}

// TestResync edits 16 MiB of random data in the middle and checks that only
// the chunks around the edit change.
func TestResync(t *testing.T) {
	orig := randomData(16<<20, 17)
	k := 8<<20 + 12345
	block := randomData(3<<20+777, 18) // several chunks' worth: shifts chunk indexes
	edits := []struct {
		name string
		mod  []byte
		end  int // where the edited bytes end in mod
	}{
		{"insert", append(append(bytes.Clone(orig[:k]), "hello"...), orig[k:]...), k + 5},
		{"delete", append(bytes.Clone(orig[:k]), orig[k+3:]...), k},
		{"change", append(append(bytes.Clone(orig[:k]), 1, 2, 3, 4), orig[k+4:]...), k + 4},
		{"insert-block", append(append(bytes.Clone(orig[:k]), block...), orig[k:]...), k + len(block)},
	}
	for _, p := range []Params{DefaultParams(), small} {
		have := chunkSet(Split(orig, p))
		for _, e := range edits {
			if p == small && e.name != "insert-block" {
				continue // small params add nothing for short edits
			}
			t.Run(fmt.Sprintf("%s/avg=%d", e.name, p.Avg), func(t *testing.T) {
				modChunks := Split(e.mod, p)
				var pos, fresh, freshAfter int
				for _, c := range modChunks {
					if !have[sha256.Sum256(c)] {
						fresh++
						if pos+len(c) <= k {
							t.Errorf("chunk at %d ends before the edit at %d but is new", pos, k)
						}
						if pos >= e.end {
							freshAfter++
						}
					}
					pos += len(c)
				}
				// The chunks holding the edit are new; at random positions
				// the next one or two may be too, before the boundaries
				// realign.
				if freshAfter > 2 {
					t.Errorf("%d chunks starting after the edit are new, want at most 2", freshAfter)
				}
				if shared := len(modChunks) - fresh; shared < len(modChunks)*3/4 {
					t.Errorf("only %d of %d chunks are shared", shared, len(modChunks))
				}
				t.Logf("%d of %d chunks new, %d after the edit", fresh, len(modChunks), freshAfter)
			})
		}
	}
}

func TestAverageChunkSize(t *testing.T) {
	for _, p := range []Params{DefaultParams(), {Min: 1024, Avg: 4096, Max: 16384}, small} {
		data := random64MiB()
		if p != DefaultParams() {
			data = data[:8<<20] // thousands of chunks already
		}
		chunks := Split(data, p)
		avg := len(data) / len(chunks)
		t.Logf("%+v: %d chunks, average %d bytes (%.2f x Avg)", p, len(chunks), avg, float64(avg)/float64(p.Avg))
		if avg < p.Avg/2 || avg > 2*p.Avg {
			t.Errorf("%+v: average chunk %d bytes, want %d..%d", p, avg, p.Avg/2, 2*p.Avg)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		p    Params
		want string // substring of the error; "" for valid
	}{
		{DefaultParams(), ""},
		{small, ""},
		{Params{Min: 64, Avg: 128, Max: 129}, ""},
		{Params{Min: 64, Avg: 32 << 20, Max: 64 << 20}, ""},
		{Params{}, "min 0"},
		{Params{Min: 63, Avg: 256, Max: 1024}, "min 63"},
		{Params{Min: -1, Avg: 256, Max: 1024}, "min -1"},
		{Params{Min: 256, Avg: 256, Max: 1024}, "avg 256 must be greater than min"},
		{Params{Min: 100, Avg: 300, Max: 1024}, "avg 300 is not a power of two"},
		{Params{Min: 64, Avg: 256, Max: 256}, "max 256 must be greater than avg"},
		{Params{Min: 64, Avg: 256, Max: 100}, "max 100"},
		{Params{Min: 64, Avg: 1 << 20, Max: 64<<20 + 1}, "max 67108865 is above"},
		{Params{Min: 1 << 20, Avg: 64 << 20, Max: 128 << 20}, "max 134217728 is above"},
	}
	for _, tc := range tests {
		err := tc.p.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.p, err)
		case tc.want != "" && err == nil:
			t.Errorf("%+v: no error, want one containing %q", tc.p, tc.want)
		case err != nil && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%+v: error %q, want one containing %q", tc.p, err, tc.want)
		case err != nil && err.Error() != strings.ToLower(err.Error()):
			t.Errorf("%+v: error %q is not lowercase", tc.p, err)
		}
	}
}

func TestInvalidParamsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"New":   func() { New(bytes.NewReader(nil), Params{}) },
		"Split": func() { Split(nil, Params{Min: 64, Avg: 100, Max: 200}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with invalid params did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestParamsJSON(t *testing.T) {
	b, err := json.Marshal(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"min":262144,"avg":1048576,"max":4194304}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var p Params
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p != DefaultParams() {
		t.Errorf("round trip gives %+v, want %+v", p, DefaultParams())
	}
}

// TestBoundariesAreStable pins the gear table and the boundaries of fixed
// data. If it fails, chunking has changed and existing repositories would stop
// deduplicating: fix the code, do not update the constants.
func TestBoundariesAreStable(t *testing.T) {
	if gear[0] != 0x3085f071c09225c2 || gear[1] != 0x01fad200d4c0e9eb || gear[255] != 0x2d890aa1807f246a {
		t.Fatalf("gear table changed: gear[0]=%#x gear[1]=%#x gear[255]=%#x", gear[0], gear[1], gear[255])
	}
	// Data from splitmix64 too, so it cannot change with the Go release.
	state := uint64(42)
	data := make([]byte, 12<<20)
	for i := 0; i < len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], splitmix64(&state))
	}
	copy(data[2<<20:], make([]byte, 5<<20)) // a long zero run
	for _, tc := range []struct {
		p      Params
		chunks int
		sum    string // sha256 of the chunk lengths as little-endian uint32s
	}{
		{DefaultParams(), 8, "a271a2c1aea8fbafae343bcb63549510ae4e41210cfcdd9a857c03d1b8a7d017"},
		{small, 30346, "c9d86be88e6b6d083ed7c210a6df76311217ee20d8de219df79ee5ff87fc41da"},
	} {
		chunks := Split(data, tc.p)
		h := sha256.New()
		for _, c := range chunks {
			_ = binary.Write(h, binary.LittleEndian, uint32(len(c)))
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if len(chunks) != tc.chunks || sum != tc.sum {
			t.Errorf("%+v: %d chunks with lengths hash %s, want %d and %s", tc.p, len(chunks), sum, tc.chunks, tc.sum)
		}
	}
}

// BenchmarkChunker reads a stream through a Chunker: into its own buffer
// (Next), and into a buffer of the caller's, reused, as a backup does
// (NextInto).
func BenchmarkChunker(b *testing.B) {
	data := random64MiB()
	buf := make([]byte, 0, DefaultParams().Max)
	for name, next := range map[string]func(c *Chunker) error{
		"Next":     func(c *Chunker) error { _, err := c.Next(); return err },
		"NextInto": func(c *Chunker) error { _, err := c.NextInto(buf, nil); return err },
	} {
		b.Run(name, func(b *testing.B) {
			r := bytes.NewReader(data)
			c := New(r, DefaultParams())
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				r.Reset(data)
				c.Reset(r)
				for {
					if err := next(c); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func BenchmarkSplit(b *testing.B) {
	data := random64MiB()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		Split(data, DefaultParams())
	}
}

// nextIntoAll chunks r with NextInto into buffers of initial capacity
// start, scribbling over each chunk once it is copied (the chunker must
// keep no reference to it), and checks every growth request.
func nextIntoAll(t testing.TB, r io.Reader, p Params, start int) (chunks [][]byte, grows int) {
	t.Helper()
	c := New(r, p)
	var owned []byte // the buffer the last grow returned
	grow := func(b []byte, n int) []byte {
		grows++
		if n <= cap(b) || n > p.Max {
			t.Fatalf("grow(%d bytes, cap %d) to %d: not needed, or above Max %d", len(b), cap(b), n, p.Max)
		}
		owned = make([]byte, len(b), n)
		copy(owned, b)
		return owned
	}
	for {
		dst := make([]byte, 0, start)
		owned = nil
		chunk, err := c.NextInto(dst, grow)
		if err == io.EOF {
			if len(chunk) != 0 {
				t.Fatalf("NextInto returned %d bytes with io.EOF", len(chunk))
			}
			return chunks, grows
		}
		if err != nil {
			t.Fatalf("NextInto: %v", err)
		}
		home := dst
		if owned != nil {
			home = owned
		}
		if len(chunk) == 0 || &chunk[:1][0] != &home[:1][0] {
			t.Fatalf("chunk %d (%d bytes) is not in the caller's buffer", len(chunks), len(chunk))
		}
		chunks = append(chunks, bytes.Clone(chunk))
		for i := range chunk {
			chunk[i] ^= 0xff
		}
	}
}

// TestNextIntoMatchesSplit: chunks read into the caller's buffers, from
// readers of every read size and starting with buffers too small or large
// enough, are those of Split; growth is asked for only when the buffer is
// full and never beyond Max, and Next's own buffer never outgrows Max.
func TestNextIntoMatchesSplit(t *testing.T) {
	p := DefaultParams()
	data := mixedData(9<<20, 16, p)
	want := lengths(Split(data, p))
	for _, start := range []int{0, 1, 64 << 10, p.Avg, p.Max} {
		for name, r := range map[string]func() io.Reader{
			"whole":   func() io.Reader { return bytes.NewReader(data) },
			"half":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
			"short4k": func() io.Reader { return &shortReader{bytes.NewReader(data), rand.New(rand.NewPCG(2, 3)), 4096} },
			"dataerr": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
		} {
			chunks, grows := nextIntoAll(t, r(), p, start)
			checkChunks(t, data, chunks, p)
			if got := lengths(chunks); !equalInts(got, want) {
				t.Fatalf("start %d, %s: NextInto gives %d chunks, Split %d", start, name, len(got), len(want))
			}
			if start >= p.Max && grows != 0 {
				t.Fatalf("start %d, %s: %d growths with room for Max", start, name, grows)
			}
		}
	}
	c := New(bytes.NewReader(data), p)
	got := lengths(readAllWith(t, c))
	if !equalInts(got, want) {
		t.Fatalf("Next gives %d chunks, Split %d", len(got), len(want))
	}
	if cap(c.own) > p.Max || cap(c.carry) > ReadSize {
		t.Fatalf("Next's buffer %d bytes (Max %d), carry %d (a read %d)", cap(c.own), p.Max, cap(c.carry), ReadSize)
	}
}

// TestNextIntoError: a read error is returned unwrapped, with no chunk,
// and stays; the chunks before it were whole.
func TestNextIntoError(t *testing.T) {
	p := small
	data := randomData(p.Max*3, 17)
	boom := errors.New("boom")
	c := New(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), p)
	var total int
	for {
		chunk, err := c.NextInto(nil, nil)
		if err != nil {
			if err != boom || len(chunk) != 0 {
				t.Fatalf("err %v with %d bytes, want boom with none", err, len(chunk))
			}
			break
		}
		if !bytes.Equal(chunk, data[total:total+len(chunk)]) {
			t.Fatalf("chunk at %d differs from the stream", total)
		}
		total += len(chunk)
	}
	if total > len(data) {
		t.Fatalf("%d bytes returned, the stream had %d", total, len(data))
	}
	if _, err := c.NextInto(nil, nil); err != boom {
		t.Fatalf("after the error: %v, want it again", err)
	}
}
