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
// So after every collection the limit follows the live heap with the
// headroom the collector keeps anyway (GOGC 50: half the live heap), and
// comes back to base once the kernel forgets the nodes and a collection
// finds them gone. While the owner runs a command for a client there is no
// limit at all (lift).
type memLimit struct {
	mu      sync.Mutex
	base    int64
	set     int64 // the limit in force while not lifted
	lifted  int   // commands running
	stopped bool
	live    []metrics.Sample
}

// startMemLimit sets the process's limit to base and keeps it as above
// until stop.
func startMemLimit(base int64) *memLimit {
	m := &memLimit{base: base, set: base, live: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
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
	var live int64
	if v := m.live[0].Value; v.Kind() == metrics.KindUint64 {
		live = int64(min(v.Uint64(), math.MaxInt64/2))
	}
	m.set = m.target(live)
	if m.lifted == 0 {
		debug.SetMemoryLimit(m.set)
	}
	m.arm()
}

// target is the limit for a live heap of live bytes.
func (m *memLimit) target(live int64) int64 { return max(m.base, live+m.base/4) }

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
