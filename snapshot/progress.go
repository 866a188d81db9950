package snapshot

import (
	"sync/atomic"
	"time"
)

// Live holds an operation's counters. The engine updates them atomically;
// an edge (cmd, server) polls them to render progress. The zero value is
// ready to use.
type Live struct {
	FilesTotal atomic.Int64 // files found so far (final once WalkDone)
	BytesTotal atomic.Int64 // bytes found so far (final once WalkDone)
	FilesDone  atomic.Int64
	BytesDone  atomic.Int64
	NewBytes   atomic.Int64
	WalkDone   atomic.Bool
	Phase      atomic.Value // string: what is being done
	started    atomic.Int64 // unix nanoseconds
}

// Start names a new phase and restarts the clock its rate is measured by.
func (l *Live) Start(phase string) { l.start(phase) }

func (l *Live) start(phase string) {
	if l == nil {
		return
	}
	l.started.Store(time.Now().UnixNano())
	l.Phase.Store(phase)
}

// Snapshot is a point-in-time copy of Live for rendering.
type LiveSnapshot struct {
	Phase                          string
	FilesTotal, BytesTotal         int64
	FilesDone, BytesDone, NewBytes int64
	WalkDone                       bool
	Elapsed                        time.Duration
	BytesPerSec                    float64
	ETA                            time.Duration // 0 when unknown
}

// Read returns the current counters with rate and ETA derived.
func (l *Live) Read() LiveSnapshot {
	s := LiveSnapshot{
		FilesTotal: l.FilesTotal.Load(), BytesTotal: l.BytesTotal.Load(),
		FilesDone: l.FilesDone.Load(), BytesDone: l.BytesDone.Load(), NewBytes: l.NewBytes.Load(),
		WalkDone: l.WalkDone.Load(),
	}
	if p, ok := l.Phase.Load().(string); ok {
		s.Phase = p
	}
	if st := l.started.Load(); st != 0 {
		s.Elapsed = time.Since(time.Unix(0, st))
	}
	if sec := s.Elapsed.Seconds(); sec > 0.2 {
		s.BytesPerSec = float64(s.BytesDone) / sec
		if s.WalkDone && s.BytesPerSec > 0 && s.BytesTotal > s.BytesDone {
			s.ETA = time.Duration(float64(s.BytesTotal-s.BytesDone) / s.BytesPerSec * float64(time.Second))
		}
	}
	return s
}
