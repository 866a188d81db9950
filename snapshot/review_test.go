package snapshot_test

// Regression tests for bugs found in review.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// A hard-link group whose first name vanishes before it is read must not
// silently drop the other names, which still exist: they are either stored
// or reported, and the snapshot is then partial.
func TestReviewHardlinkFirstNameVanishes(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	a, b := filepath.Join(src, "a"), filepath.Join(src, "b")
	if err := os.WriteFile(a, []byte("precious content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, b); err != nil {
		t.Fatal(err)
	}
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull,
		BeforeOpen: func(rel string) {
			if rel == "a" {
				os.Remove(a)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range m.Items {
		if it.Path == "b" {
			return // stored: fine
		}
	}
	warned := false
	for _, w := range m.Warnings {
		if w.Path == "b" {
			warned = true
		}
	}
	if !m.Partial || !warned {
		t.Fatalf("existing hard link b was left out silently: partial %v, warnings %+v, items %+v", m.Partial, m.Warnings, m.Items)
	}
}

// A restore killed after the directory metadata was applied (read-only
// directories) but before the marker was removed must resume: re-running it
// may not fail on the read-only directories it made itself.
func TestReviewResumeIntoReadOnlyDirs(t *testing.T) {
	if os.Geteuid() == 0 {
		reviewRerunAsNobody(t) // root ignores directory permissions
		return
	}
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	ro := filepath.Join(src, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(ro, "f"), filepath.Join(ro, "g")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(ro, "p"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) })
	if _, err := r.Restore(context.Background(), m, snapshot.RestoreOptions{Target: dst}); err != nil {
		t.Fatal(err)
	}
	// The state of a run killed just before it removed its marker.
	b, _ := json.Marshal(map[string]string{"backup_id": m.BackupID, "started_utc": time.Now().UTC().Format(time.RFC3339)})
	if err := os.WriteFile(filepath.Join(dst, ".snapforge-restore-in-progress"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Restore(context.Background(), m, snapshot.RestoreOptions{Target: dst}); err != nil {
		t.Fatalf("resumed restore: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dst, "ro"))
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("ro after resume: %v %v, want mode 0555", fi.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(dst, ".snapforge-restore-in-progress")); err == nil {
		t.Fatal("marker left after a completed resume")
	}
}

// reviewRerunAsNobody runs the calling test again in a copy of the test
// binary as uid/gid 65534, for checks that permissions must really deny.
func reviewRerunAsNobody(t *testing.T) {
	t.Helper()
	base, err := os.MkdirTemp("", "snapforge-review-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	exe := indextest.ExecutableCopy(t, base, "snapshot.test")
	cmd := exec.Command(exe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Dir = base
	cmd.Env = append(os.Environ(), "TMPDIR="+base, "HOME="+base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
}

// An ambiguous SNAP prefix must say how to pick one.
func TestReviewAmbiguousSnapMessage(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.Resolve(context.Background(), "snap")
	if err == nil || !strings.Contains(err.Error(), "ambiguous") || !strings.Contains(err.Error(), "snapforge snapshots") {
		t.Fatalf("ambiguous prefix: %v", err)
	}
}

// An include pattern with "**" in the middle selects matches at any depth;
// the restore may not skip the directories that lead to them.
func TestReviewIncludeDoubleStarInMiddle(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	for _, p := range []string{"a/x", "a/b/x", "a/b/c/x", "a/b/c/d/x", "a/b/c/y"} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	if _, err := r.Restore(context.Background(), m, snapshot.RestoreOptions{Target: dst, Include: []string{"a/**/x"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/x", "a/b/x", "a/b/c/x", "a/b/c/d/x"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(b) != p {
			t.Errorf("%s matches a/**/x but was not restored: %v", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, "a/b/c/y")); err == nil {
		t.Errorf("a/b/c/y does not match a/**/x but was restored")
	}
}
