package snapshot_test

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// TestRecentFilesTrustedPastTheirTick: a file system that keeps sub-second
// timestamps (the test's temporary directory: ext4, tmpfs, …) stamps writes
// from a clock of a few ms, so a file last changed 300 ms before a backup
// is trusted by the next one (not read again), while one changed just
// before the backup's start is not: a write after the backup read it,
// within the same tick, would leave its timestamps as they were.
func TestRecentFilesTrustedPastTheirTick(t *testing.T) {
	// The backups' clock is pinned relative to the files' ctimes, so what
	// is judged is the window, not how fast this machine gets from the
	// write to the backup.
	var now atomic.Int64
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) {
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	now.Store(time.Now().UnixNano())
	src := fltSource(t, map[string][]byte{"settled.txt": fltText(51, 8<<10)})
	settled := ctimeOf(t, filepath.Join(src, "settled.txt"))
	if settled%1e9 == 0 {
		t.Skip("this file system keeps whole-second timestamps: the two-second window applies")
	}
	time.Sleep(300 * time.Millisecond)
	indextest.WriteFile(t, filepath.Join(src, "hot.txt"), fltText(52, 8<<10))
	hot := ctimeOf(t, filepath.Join(src, "hot.txt"))
	if hot-settled < int64(250*time.Millisecond) {
		t.Fatalf("hot.txt's ctime only %v after settled.txt's", time.Duration(hot-settled))
	}
	now.Store(hot + int64(50*time.Millisecond)) // the backup starts 50 ms after hot.txt was written
	m1 := fltBackup(t, r, src)
	for name, want := range map[string]bool{"settled.txt": false, "hot.txt": true} {
		n, err := r.FindNode(t.Context(), m1, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Flags&snapshot.FlagNoCache != 0; got != want {
			t.Errorf("%s: not to be trusted %v, want %v (mtime %d, ctime %d)", name, got, want, n.MTime, n.CTime)
		}
	}
	now.Add(int64(time.Second))
	var next readCounter
	m2 := fltBackup(t, r, src, func(o *snapshot.BackupOptions) { o.WrapReader = next.wrap })
	if m2.Parent != m1.BackupID || next.get("settled.txt") != 0 || next.get("hot.txt") != 1 {
		t.Fatalf("second backup (parent %q): settled.txt read %d times, hot.txt %d; want 0 and 1",
			m2.Parent, next.get("settled.txt"), next.get("hot.txt"))
	}
	fltCompare(t, src, fltRestore(t, r, m2))
}

// ctimeOf returns p's ctime in nanoseconds.
func ctimeOf(t *testing.T, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ctim.Nano()
}
