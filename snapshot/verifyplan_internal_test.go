package snapshot

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestReadAheadPlan checks how the planner turns chunk locations into
// read-ahead ranges and costs: a group's other members cost nothing, a
// chunk right after (or near) the range grows it up to raMax, another pack
// or a jump starts a new range, bad packs are left out, every byte queued
// is some chunk's cost, and a full queue never blocks the planner.
func TestReadAheadPlan(t *testing.T) {
	p1, p2 := Hash([]byte("pack 1")), Hash([]byte("pack 2"))
	bad := Hash([]byte("bad"))
	ra := &readAhead{window: 1 << 30, ranges: make(chan raRange, 64)}
	loc := func(p ID, off, n int) Location { return Location{Pack: p, Offset: uint64(off), Stored: uint32(n)} }
	job := func(locs ...Location) *verifyJob {
		j := &verifyJob{looked: true, locs: locs, proof: &spanPlan{}}
		ra.plan(j, map[ID]string{bad: "is missing"})
		return j
	}
	const mb = 1 << 20
	j1 := job(
		loc(p1, 0, mb),         // new range
		loc(p1, mb, mb),        // grows it
		loc(p1, mb+mb/2, mb/4), // inside it: a group member
		loc(p1, 2*mb+4096, mb), // a small gap: grows it
		loc(p1, 3*mb+4096, mb), // would pass raMax: new range
		loc(bad, 0, mb),        // left out
		loc(p2, 0, mb),         // another pack
		loc(p2, 10*mb, mb),     // a jump
	)
	wantCosts := []int64{mb, mb, 0, mb + 4096, mb, 0, mb, mb}
	for i, c := range j1.costs {
		if c != wantCosts[i] {
			t.Fatalf("costs %v, want %v", j1.costs, wantCosts)
		}
	}
	if j1.cost != 6*mb+4096 || ra.queued != j1.cost {
		t.Fatalf("cost %d, queued %d, want %d", j1.cost, ra.queued, 6*mb+4096)
	}
	ra.done()
	var got []raRange
	for rg := range ra.ranges {
		got = append(got, rg)
	}
	want := []raRange{
		{p1, 0, 3*mb + 4096, 3*mb + 4096},
		{p1, 3*mb + 4096, mb, 4*mb + 4096},
		{p2, 0, mb, 5*mb + 4096},
		{p2, 10 * mb, mb, 6*mb + 4096},
	}
	if len(got) != len(want) {
		t.Fatalf("ranges %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("range %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	// A queue of one: the planner goes on without waiting, and what it
	// could not queue costs nothing.
	ra = &readAhead{window: 1 << 30, ranges: make(chan raRange, 1)}
	done := make(chan *verifyJob)
	go func() { done <- job(loc(p1, 0, mb), loc(p2, 0, mb), loc(p1, 8*mb, mb), loc(p2, 8*mb, mb)) }()
	select {
	case j := <-done:
		if j.cost != ra.queued || j.cost == 0 || j.cost == 4*mb {
			t.Fatalf("a full queue: cost %d (costs %v), queued %d", j.cost, j.costs, ra.queued)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the planner blocked on a full read-ahead queue")
	}
}

// TestReadAheadWindow asks for a real pack's pages and checks, with
// mincore, that the kernel read the ranges within the window ahead of what
// the workers consumed, and not the ones past it until they consume more;
// and that it ends once everything is consumed.
func TestReadAheadWindow(t *testing.T) {
	const mb = 1 << 20
	dir := t.TempDir()
	r := &Repo{path: dir}
	id := Hash([]byte("a pack"))
	p := r.packPath(id)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 32*mb)
	rand.NewChaCha8([32]byte{1}).Read(data)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Sync()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	mem, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	vec := make([]byte, len(data)/os.Getpagesize())
	resident := func(lo, hi int) int { // MiB of [lo, hi) MiB in the page cache
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		n := 0
		per := mb / os.Getpagesize()
		for i := lo * per; i < hi*per; i++ {
			n += int(vec[i] & 1)
		}
		return n / per
	}
	if n := resident(0, 32); n > 1 {
		t.Skipf("%d MiB of the file stay in the page cache after FADV_DONTNEED (file system %s): cannot watch the read-ahead", n, dir)
	}

	ra := &readAhead{r: r, window: 8 * mb, ranges: make(chan raRange, 64)}
	var locs []Location
	for off := 0; off < len(data); off += mb {
		locs = append(locs, Location{Pack: id, Offset: uint64(off), Stored: mb})
	}
	j := &verifyJob{looked: true, locs: locs, proof: &spanPlan{}}
	ra.plan(j, nil)
	ra.done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan struct{})
	go func() { ra.run(ctx); close(finished) }()

	waitFor := func(what string, lo, hi int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); resident(lo, hi) < hi-lo; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d MiB read ahead", what, resident(lo, hi), hi-lo)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Ranges of 4 MiB (raMax): those starting within 8 MiB of 0 are asked for.
	waitFor("the first window", 0, 12)
	time.Sleep(50 * time.Millisecond)
	if n := resident(12, 32); n != 0 {
		t.Fatalf("%d MiB past the window read ahead before anything was consumed", n)
	}
	ra.consumed.Add(16 * mb) // [12, 16) is skipped: the workers are past it
	waitFor("after 16 MiB consumed", 16, 28)
	time.Sleep(50 * time.Millisecond)
	if n := resident(28, 32); n != 0 {
		t.Fatalf("%d MiB past the window read ahead after 16 MiB consumed", n)
	}
	if n := resident(12, 16); n != 0 {
		t.Fatalf("%d MiB read ahead that the workers had consumed already", n)
	}
	ra.consumed.Add(16 * mb)
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the read-ahead did not finish once everything was consumed")
	}
}
