package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// memLimit is a soft memory limit: the mount process's, and a backup's (with
// its own base). At rest it is base:
// a mount lives long and mostly serves reads, so its memory stays near what
// it uses instead of piling up garbage between collections. But the live
// heap may itself grow towards base: the kernel holds a node for every
// entry of a directory it listed (100,000 entries: some 60 MB of go-fuse
// inodes and ours). Under a fixed limit the collector would then run back
// to back, up to half the CPU (Go's cap), for as long as the kernel keeps
// them: 60 % of the mount's CPU while listing such a directory (issue 4).
// So after every collection the limit follows the live heap, a quarter of
// base above it (with many nodes held, above everything in use: see
// pinnedMany), and comes back to base once the kernel forgets the nodes and
// a collection finds them gone. While the owner runs a command for a client
// there is no limit at all (lift).
type memLimit struct {
	mu      sync.Mutex
	base    int64
	pinned  func() int // nodes the kernel holds (the mount); nil: none
	set     int64      // the limit in force while not lifted
	lifted  int        // commands running
	stopped bool
	live    []metrics.Sample
}

// startMemLimit sets the process's limit to base and keeps it as above
// until stop.
func startMemLimit(base int64) *memLimit {
	m := &memLimit{base: base, set: base, live: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}}
	debug.SetMemoryLimit(base)
	m.arm()
	return m
}

// gcSentinel is collected by every garbage collection that finds it
// unreachable: large enough not to share a tiny-allocator block with other
// objects, which would keep it alive.
type gcSentinel struct{ _ [64]byte }

// arm registers the check for after the next collection.
func (m *memLimit) arm() {
	runtime.AddCleanup(new(gcSentinel), func(m *memLimit) { m.afterGC() }, m)
}

// afterGC moves the limit to follow the live heap, and arms the next check.
func (m *memLimit) afterGC() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	metrics.Read(m.live)
	live, total, released := sampleBytes(m.live[0]), sampleBytes(m.live[1]), sampleBytes(m.live[2])
	m.set = m.target(live, total-released)
	if m.lifted == 0 {
		debug.SetMemoryLimit(m.set)
	}
	m.arm()
}

// pinnedMany is how many kernel-held nodes make the mount's live heap one
// that grows with them (a directory of tens of thousands of entries
// listed). Below it buffer churn dominates: headroom above everything in
// use let the pools of decoded-chunk buffers grow the heap to 150 MB while
// every file was read (issue 4 wants the mount under 100 MB).
const pinnedMany = 32 << 10

// pinnedBy makes the limit give real headroom while nodes() reports at
// least pinnedMany nodes held by the kernel.
func (m *memLimit) pinnedBy(nodes func() int) {
	m.mu.Lock()
	m.pinned = nodes
	m.mu.Unlock()
}

// sampleBytes returns a byte count sample's value (0 if unsupported).
func sampleBytes(s metrics.Sample) int64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(min(s.Value.Uint64(), math.MaxInt64/2))
}

// target is the limit after a collection that found live bytes of live
// heap and inUse bytes of memory in use in all.
func (m *memLimit) target(live, inUse int64) int64 {
	if m.pinned != nil && m.pinned() >= pinnedMany {
		// The limit counts all the process's memory, and beside the live
		// heap the runtime keeps 15-20 MB of its own (spans, metadata,
		// free pages): live + a quarter of base left 2-5 MB between
		// collections, 25 of them while 100,000 entries were listed, half
		// the mount's CPU. With that many nodes held the heap grows with
		// them: headroom above everything in use.
		return max(m.base, inUse+m.base/4)
	}
	return max(m.base, live+m.base/4)
}

// lift removes the limit until the returned function is called (by every
// caller of lift).
func (m *memLimit) lift() (done func()) {
	m.mu.Lock()
	if m.lifted++; m.lifted == 1 {
		debug.SetMemoryLimit(math.MaxInt64)
	}
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			if m.lifted--; m.lifted == 0 && !m.stopped {
				debug.SetMemoryLimit(m.set)
			}
			m.mu.Unlock()
		})
	}
}

// stop ends the checks and puts the limit back to none.
func (m *memLimit) stop() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	debug.SetMemoryLimit(math.MaxInt64)
}
