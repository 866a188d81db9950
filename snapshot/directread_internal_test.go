package snapshot

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDirectReader reads files of sizes around the block and alignment
// boundaries through a directReader, with reads of odd sizes: every byte
// must come back in order, the descriptor must really be O_DIRECT, and a
// file read again (rewind) must come back whole. With a buffer the file
// system refuses for direct reads (misaligned), the reader goes on through
// the page cache: same bytes, O_DIRECT off.
//
// It runs twice: reads ahead on a goroutine, then submitted to a native AIO
// context, which must then have taken every direct read ahead.
func TestDirectReader(t *testing.T) {
	t.Run("goroutine", func(t *testing.T) { testDirectReader(t, nil) })
	t.Run("aio", func(t *testing.T) {
		a, err := newAIOContext()
		if err != nil {
			t.Skipf("no native AIO here (%v): backups read ahead on a goroutine", err)
		}
		defer a.close()
		testDirectReader(t, a)
	})
}

func testDirectReader(t *testing.T, a *aioContext) {
	dir := t.TempDir()
	bufs := newDirectBuffers()
	for _, size := range []int{0, 1, 4095, 4096, directBlock, directBlock + 1, 3*directBlock + 12345} {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)}).Read(data)
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var d directReader
		direct := d.reset(f, bufs, a)
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if direct != (flags&unix.O_DIRECT != 0) {
			t.Fatalf("size %d: direct %v but the descriptor's flags are %#o", size, direct, flags)
		}
		if !direct {
			t.Logf("this file system refuses O_DIRECT: reading through the page cache")
		}
		before := 0
		if a != nil {
			before = a.reads
		}
		for round := range 2 {
			got := readOdd(t, &d)
			if !bytes.Equal(got, data) {
				t.Fatalf("size %d, round %d: %d bytes read, want the file's %d", size, round, len(got), size)
			}
			d.rewind()
		}
		d.drain()
		f.Close()
		// Each round reads every block after the first one ahead, and the
		// end of the file (an empty read) when the size is a whole number
		// of blocks; rewind submits the first block again.
		if want := 2 * (size / directBlock); a != nil && direct && a.reads-before < want {
			t.Fatalf("size %d: %d reads submitted to the AIO context, want at least %d", size, a.reads-before, want)
		}

		if size < 2*directAlign {
			continue
		}
		f, err = os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var m directReader
		odd := newDirectBuffers()
		odd[0], odd[1] = odd[0][1:directBlock-directAlign], odd[1][1:directBlock-directAlign] // misaligned: refused when direct
		wasDirect := m.reset(f, odd, a)
		if got := readOdd(t, &m); !bytes.Equal(got, data) {
			t.Fatalf("size %d, misaligned buffer: %d bytes read, want the file's %d", size, len(got), size)
		}
		flags, _ = unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if wasDirect && (m.direct || flags&unix.O_DIRECT != 0) {
			t.Fatalf("size %d: a refused direct read left direct reads on (%v, flags %#o)", size, m.direct, flags)
		}
		m.drain()
		f.Close()
	}
}

// readOdd reads r to its end in reads of varying odd sizes.
func readOdd(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var out []byte
	p := make([]byte, 300_007)
	for i := 1; ; i++ {
		n, err := r.Read(p[:1+(i*7919)%len(p)])
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
