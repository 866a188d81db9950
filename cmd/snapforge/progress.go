package main

import (
	"fmt"
	"time"

	"snapforge/snapshot"
)

// showProgress renders live counters on a terminal every 250 ms until the
// returned stop function is called. Off a terminal, or with --json, it
// prints nothing.
func (a *app) showProgress(live *snapshot.Live) (stop func()) {
	if !a.tty || a.json {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(a.stderr, "\r\033[K")
				return
			case <-t.C:
				s := live.Read()
				eta := "…"
				if s.ETA > 0 {
					eta = s.ETA.Round(time.Second).String()
				}
				fmt.Fprintf(a.stderr, "\r\033[K%s: %d/%d files, %s/%s, %s/s, ETA %s",
					s.Phase, s.FilesDone, s.FilesTotal, humanBytes(s.BytesDone), humanBytes(s.BytesTotal),
					humanBytes(int64(s.BytesPerSec)), eta)
			}
		}
	}()
	return func() { close(done); <-finished }
}
