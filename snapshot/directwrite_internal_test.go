package snapshot

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDirectWriter writes files of sizes around the block and the depth of
// writes in flight, in pieces of random length, one writer reused from
// file to file: each file must hold exactly the bytes written, its last
// partial block included, and O_DIRECT must be set while blocks go out.
func TestDirectWriter(t *testing.T) {
	w, err := newDirectWriter()
	if err != nil {
		t.Skipf("no native AIO here (%v): packs are written through the page cache", err)
	}
	defer w.close()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{0, 1, directAlign - 1, directBlock - 1, directBlock, directBlock + 1,
		directWriteDepth * directBlock, (directWriteDepth+1)*directBlock + 12345, 11*directBlock + 777} {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)}).Read(data)
		p := filepath.Join(dir, "pack")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if !w.reset(f) {
			f.Close()
			t.Skip("O_DIRECT refused on the test's file system: packs are written through the page cache")
		}
		flags, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if flags&unix.O_DIRECT == 0 {
			t.Fatal("reset did not set O_DIRECT")
		}
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(3*directBlock/2))
			if n, err := w.Write(rest[:k]); err != nil || n != k {
				t.Fatalf("%d bytes: Write of %d: %d, %v", size, k, n, err)
			}
			rest = rest[k:]
		}
		if err := w.flush(); err != nil {
			t.Fatalf("%d bytes: flush: %v", size, err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes written directly: read back %d bytes (%v), equal %v", size, len(got), err, bytes.Equal(got, data))
		}
	}
}

// TestDirectWriterFull: on a file system that fills up in the last block,
// whose direct write comes back short, that write is finished through the
// page cache, which fails with ENOSPC: flush must not report the pack
// complete. Every later call returns the failure (FAULTS C1 runs a whole
// backup onto a full disk).
func TestDirectWriterFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a small tmpfs to fill")
	}
	w, err := newDirectWriter()
	if err != nil {
		t.Skipf("no native AIO here (%v)", err)
	}
	defer w.close()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2900k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	f, err := os.Create(filepath.Join(dir, "pack"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !w.reset(f) {
		t.Skip("this tmpfs refuses O_DIRECT")
	}
	block := bytes.Repeat([]byte{7}, directBlock)
	for i := 0; i < 3; i++ { // the third does not fit whole
		if _, err := w.Write(block); err != nil {
			t.Fatalf("block %d: %v; want the failure from flush, where the blocks in flight are collected", i, err)
		}
	}
	ferr := w.flush()
	if !errors.Is(ferr, unix.ENOSPC) {
		t.Fatalf("3 MiB onto a 2.8 MiB file system: flush says %v, want ENOSPC", ferr)
	}
	if _, err := w.Write([]byte{1}); err != ferr {
		t.Fatalf("a write after the failure: %v, want the failure again", err)
	}
}
