package snapshot

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident returns how many of the file's pages are in the page cache, and
// how many pages it has.
func resident(t *testing.T, p string) (in, pages int) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	// x/sys has no wrapper for mincore(2) on Linux.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore %s: %v", p, errno)
	}
	for _, v := range vec {
		in += int(v & 1)
	}
	return in, len(vec)
}

// evict writes the file's pages back and drops them from the page cache.
// It skips the test where the file system keeps them anyway (tmpfs).
func evict(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if in, _ := resident(t, p); in != 0 {
		t.Skipf("the file system of %s keeps %d pages in memory after POSIX_FADV_DONTNEED (tmpfs?): readahead cannot be observed here", p, in)
	}
}

// TestReadaheadFillsPageCache: a small file offered to the readahead
// workers is in the page cache afterwards, without anyone reading it; a
// large one (read directly by the backup) is not offered.
func TestReadaheadFillsPageCache(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	large := filepath.Join(dir, "large")
	rng := rand.New(rand.NewPCG(7, 7))
	data := make([]byte, directFileMin)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(small, data[:300<<10], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(large, data, 0o600); err != nil {
		t.Fatal(err)
	}
	evict(t, small)
	evict(t, large)

	b := &backup{}
	stop := b.startReadahead(context.Background())
	b.offerReadahead(large, directFileMin)
	b.offerReadahead(small, 300<<10)
	stop() // the workers have issued every readahead offered

	// The kernel reads asynchronously: wait for it (not a timing claim,
	// just an upper bound for a 300 KiB read).
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, pages := resident(t, small)
		if in == pages {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pages of the small file in the page cache 10 s after its readahead", in, pages)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if in, pages := resident(t, large); in != 0 {
		t.Errorf("%d of %d pages of the large file in the page cache: files of directFileMin bytes must not be read ahead", in, pages)
	}
}

// TestOfferReadaheadNeverWaits: with the workers stuck, the walk goes on;
// what does not fit the queue is simply not read ahead.
func TestOfferReadaheadNeverWaits(t *testing.T) {
	b := &backup{ahead: make(chan aheadFile, readaheadQueue)}
	b.offerReadahead("/empty", 0)
	b.offerReadahead("/large", directFileMin)
	if len(b.ahead) != 0 {
		t.Fatalf("an empty or a large file was offered: %v", <-b.ahead)
	}
	done := make(chan struct{})
	go func() {
		for i := range 3 * readaheadQueue {
			b.offerReadahead(fmt.Sprintf("/f%d", i), 100)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("offerReadahead blocked on a full queue")
	}
	if len(b.ahead) != readaheadQueue {
		t.Fatalf("%d files queued, want the queue's %d", len(b.ahead), readaheadQueue)
	}
	if first := <-b.ahead; first != (aheadFile{"/f0", 100}) {
		t.Fatalf("first queued %v, want /f0 of 100 bytes", first)
	}
	var nb backup
	nb.offerReadahead("/x", 100) // no workers started: nothing to do, no panic
	stop := nb.startReadahead(t.Context())
	stop()
	nb.offerReadahead("/x", 100) // stopped: nothing to do, no panic
}
