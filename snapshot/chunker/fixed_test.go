package chunker

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// fixedChunks reads every chunk of f, copying each.
func fixedChunks(t *testing.T, f *Fixed) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	for {
		c, err := f.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, append([]byte(nil), c...))
	}
}

func TestFixedBoundaries(t *testing.T) {
	const size = 4096
	for _, n := range []int{0, 1, size - 1, size, size + 1, 3 * size, fixedBuffer - 1, fixedBuffer, fixedBuffer + 5, 3*fixedBuffer + size/2} {
		data := randomData(n, byte(n))
		readers := map[string]func() io.Reader{
			"plain":    func() io.Reader { return bytes.NewReader(data) },
			"onebyte":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
			"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
			"dataerr":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
			"17-bytes": func() io.Reader { return &stutterReader{data: data, max: 17} },
		}
		for name, mk := range readers {
			if name == "onebyte" && n > 2*fixedBuffer {
				continue // slow and adds nothing over the smaller sizes
			}
			f := NewFixed(mk(), size)
			chunks, err := fixedChunks(t, f)
			if err != nil {
				t.Fatalf("n=%d %s: %v", n, name, err)
			}
			if want := (n + size - 1) / size; len(chunks) != want {
				t.Fatalf("n=%d %s: %d chunks, want %d", n, name, len(chunks), want)
			}
			for i, c := range chunks {
				lo, hi := i*size, min((i+1)*size, n)
				if !bytes.Equal(c, data[lo:hi]) {
					t.Fatalf("n=%d %s: chunk %d is not bytes [%d,%d)", n, name, i, lo, hi)
				}
			}
			// Reset reuses the chunker for another stream with the same result.
			f.Reset(bytes.NewReader(data))
			again, err := fixedChunks(t, f)
			if err != nil || len(again) != len(chunks) {
				t.Fatalf("n=%d %s: after Reset %d chunks, %v", n, name, len(again), err)
			}
		}
	}
}

// stutterReader returns at most max bytes per Read, with a zero-length read
// between every two reads.
type stutterReader struct {
	data []byte
	max  int
	odd  bool
}

func (r *stutterReader) Read(p []byte) (int, error) {
	r.odd = !r.odd
	if r.odd {
		return 0, nil
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.max)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestFixedReadError(t *testing.T) {
	boom := errors.New("boom")
	data := randomData(fixedBuffer+100, 3)
	f := NewFixed(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), 64<<10)
	chunks, err := fixedChunks(t, f)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	// The first buffer was full before the error: its chunks came out whole.
	if len(chunks) != fixedBuffer/(64<<10) {
		t.Fatalf("%d chunks before the error, want %d", len(chunks), fixedBuffer/(64<<10))
	}
	if _, err := f.Next(); !errors.Is(err, boom) {
		t.Fatalf("error not sticky: %v", err)
	}
	f.Reset(bytes.NewReader(data[:10]))
	if c, err := f.Next(); err != nil || len(c) != 10 {
		t.Fatalf("after Reset: %d bytes, %v", len(c), err)
	}
}

func TestFixedNoProgress(t *testing.T) {
	f := NewFixed(iotest.ErrReader(nil), MinFixed) // (0, nil) forever
	if _, err := f.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("error %v, want io.ErrNoProgress", err)
	}
}

func TestValidateFixed(t *testing.T) {
	for _, ok := range []int{512, 1024, 4096, DefaultSQLiteChunk, 65536, MaxFixed} {
		if err := ValidateFixed(ok); err != nil {
			t.Errorf("ValidateFixed(%d): %v", ok, err)
		}
	}
	for _, bad := range []int{0, -4096, 256, 511, 3000, 12288, 2 * MaxFixed} {
		if err := ValidateFixed(bad); err == nil {
			t.Errorf("ValidateFixed(%d) accepted", bad)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewFixed accepted an invalid size")
		}
	}()
	NewFixed(nil, 1000)
}

func TestSQLitePageSize(t *testing.T) {
	hdr := func(hi, lo byte) []byte {
		h := make([]byte, 100)
		copy(h, "SQLite format 3\x00")
		h[16], h[17] = hi, lo
		return h
	}
	cases := []struct {
		hdr        []byte
		page, size int // size with target 16 KiB
	}{
		{hdr(0x10, 0x00), 4096, 16384},
		{hdr(0x02, 0x00), 512, 16384},
		{hdr(0x40, 0x00), 16384, 16384},
		{hdr(0x80, 0x00), 32768, 32768},
		{hdr(0x00, 0x01), 65536, 65536}, // 1 means 65536
		{hdr(0x00, 0x00), 0, 0},
		{hdr(0x01, 0x00), 0, 0}, // 256: below the minimum
		{hdr(0x0f, 0xa0), 0, 0}, // 4000: not a power of two
		{hdr(0x10, 0x00)[:17], 0, 0},
		{append([]byte("SQLite format 2\x00"), 0x10, 0x00), 0, 0},
		{append([]byte("SQLite format 3\x00"), 0x10, 0x00), 4096, 16384}, // 18 bytes are enough
		{nil, 0, 0},
	}
	for i, c := range cases {
		if got := SQLitePageSize(c.hdr); got != c.page {
			t.Errorf("case %d: page size %d, want %d", i, got, c.page)
		}
		if got := SQLiteChunkSize(c.hdr, DefaultSQLiteChunk); got != c.size {
			t.Errorf("case %d: chunk size %d, want %d", i, got, c.size)
		}
	}
}
