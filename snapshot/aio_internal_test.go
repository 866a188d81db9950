package snapshot

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAIOContext reads blocks of a file opened with O_DIRECT through a
// native AIO context: the bytes must be the file's, a short read must come
// back at the end of the file, a second read may not be submitted while one
// is in flight, and close must wait for a read still in flight.
func TestAIOContext(t *testing.T) {
	a, err := newAIOContext()
	if err != nil {
		t.Skipf("no native AIO here (%v): backups read ahead on a goroutine", err)
	}
	p := filepath.Join(t.TempDir(), "f")
	data := make([]byte, 3*directBlock+5000)
	rand.NewChaCha8([32]byte{7}).Read(data)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Skipf("this file system refuses O_DIRECT (%v)", err)
	}
	defer f.Close()
	bufs := newDirectBuffers()
	if _, err := a.wait(); err == nil {
		t.Fatal("wait with no read in flight did not fail")
	}
	var got []byte
	for off := int64(0); ; off += directBlock {
		if err := a.submit(int(f.Fd()), bufs[0], off); err != nil {
			t.Fatalf("submit at %d: %v", off, err)
		}
		if err := a.submit(int(f.Fd()), bufs[1], off); err == nil {
			t.Fatal("a second read was submitted while one was in flight")
		}
		n, err := a.wait()
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		got = append(got, bufs[0][:n]...)
		if n < directBlock {
			if n != 5000 {
				t.Fatalf("last read: %d bytes, want 5000", n)
			}
			break
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes through AIO that differ from the file's %d", len(got), len(data))
	}
	clear(bufs[0])
	if err := a.submit(int(f.Fd()), bufs[0], 0); err != nil {
		t.Fatal(err)
	}
	a.close() // with the read in flight: waits for it
	if a.pending != nil || !a.dead {
		t.Fatal("close left the read in flight, or the context alive")
	}
	if !bytes.Equal(bufs[0], data[:directBlock]) {
		t.Fatal("close returned before the read in flight had filled its buffer")
	}
	if err := a.submit(int(f.Fd()), bufs[0], 0); err == nil {
		t.Fatal("a closed context took a read")
	}
}
