package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// limitNow returns the process's soft memory limit.
func limitNow() int64 { return debug.SetMemoryLimit(-1) }

// waitLimit collects until the limit satisfies ok (the check runs after a
// collection, in a cleanup goroutine), or fails after a few seconds.
func waitLimit(t *testing.T, what string, ok func(int64) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(limitNow()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the limit is %d MiB", what, limitNow()>>20)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// startTestLimit starts a limit of base for a test, skipping it when
// GOMEMLIMIT is set (the test changes the process's limit).
func startTestLimit(t *testing.T, base int64) *memLimit {
	t.Helper()
	if old := limitNow(); old != math.MaxInt64 {
		t.Skipf("GOMEMLIMIT is set (%d): the test changes the process's limit", old)
	}
	m := startMemLimit(base)
	t.Cleanup(m.stop)
	return m
}

// holdHeap returns n MiB of live heap, each page touched.
func holdHeap(n int) [][]byte {
	held := make([][]byte, 0, n)
	for range n {
		b := make([]byte, 1<<20)
		b[0] = 1
		held = append(held, b)
	}
	return held
}

// TestMemLimitFollowsLiveHeap: the mount's limit is base while the live
// heap is small, rises above a live heap that outgrows it (the kernel
// holding 100,000 nodes) so the collector does not run back to back, comes
// back to base when that heap is gone, and is off while the owner runs a
// command (lift), whatever the collections find meanwhile.
func TestMemLimitFollowsLiveHeap(t *testing.T) {
	const base = 64 << 20
	m := startTestLimit(t, base)
	if got := limitNow(); got != base {
		t.Fatalf("limit %d at start, want base %d", got, base)
	}

	held := holdHeap(192)
	waitLimit(t, "with 192 MiB live", func(l int64) bool { return l >= 192<<20+base/4 })
	if l := limitNow(); l > 192<<20+base/4+64<<20 {
		t.Fatalf("with 192 MiB live the limit is %d MiB: more headroom than the live heap needs", l>>20)
	}

	done := m.lift()
	if l := limitNow(); l != math.MaxInt64 {
		t.Fatalf("lifted: limit %d", l)
	}
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if l := limitNow(); l != math.MaxInt64 {
		t.Fatalf("a collection while lifted set the limit to %d MiB", l>>20)
	}
	done2 := m.lift() // two commands at once
	done()
	done() // twice: no effect
	if l := limitNow(); l != math.MaxInt64 {
		t.Fatalf("limit %d MiB while a second command still runs", l>>20)
	}
	done2()
	if l := limitNow(); l == math.MaxInt64 || l < base {
		t.Fatalf("limit %d after the last command, want the one in force before", l)
	}

	clear(held) // the kernel forgets the nodes
	waitLimit(t, "after the live heap is gone", func(l int64) bool { return l == base })

	m.stop()
	if l := limitNow(); l != math.MaxInt64 {
		t.Fatalf("limit %d after stop, want none", l)
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if l := limitNow(); l != math.MaxInt64 {
		t.Fatalf("a collection after stop set the limit to %d", l)
	}
}

// TestMemLimitPinnedNodes: while the kernel holds many nodes (a huge
// directory listed through the mount), the headroom is real: the limit is
// above everything in use after a collection (live heap plus the runtime's
// own memory) by a quarter of base, not above the live heap alone; with
// few nodes it follows the live heap as before.
func TestMemLimitPinnedNodes(t *testing.T) {
	const base = 64 << 20
	m := startTestLimit(t, base)
	var nodes atomic.Int64
	m.pinnedBy(func() int { return int(nodes.Load()) })

	held := holdHeap(128)
	waitLimit(t, "few nodes, 128 MiB live", func(l int64) bool { return l >= 128<<20+base/4 })
	few := limitNow()
	nodes.Store(pinnedMany)
	inUse := func() int64 {
		s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(s)
		return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
	}
	waitLimit(t, "many nodes", func(l int64) bool { return l > few && l >= inUse()+base/4-8<<20 })
	if l := limitNow(); l > inUse()+base/4+64<<20 {
		t.Fatalf("many nodes: limit %d MiB, in use %d MiB: more headroom than asked", l>>20, inUse()>>20)
	}
	nodes.Store(pinnedMany - 1)
	waitLimit(t, "few nodes again", func(l int64) bool { return l <= few+4<<20 })
	runtime.KeepAlive(held)
}
