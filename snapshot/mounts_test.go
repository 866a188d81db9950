package snapshot_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// mount mounts fstype at dir for the test's life (root only).
func mount(t *testing.T, fstype, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a filesystem inside the source needs root; skipped")
	}
	if out, err := exec.Command("mount", "-t", fstype, fstype, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s at %s: %v: %s", fstype, dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func itemPaths(m *snapshot.Manifest) map[string]bool {
	out := map[string]bool{}
	for _, it := range m.Items {
		out[it.RawPath()] = true
	}
	return out
}

// TestOneFileSystemAndPseudoFS: a /proc-like filesystem inside the source is
// never walked (FAULTS D15); another real filesystem is walked unless
// OneFileSystem is set, which keeps its mount point as an empty directory
// (FAULTS D16).
func TestOneFileSystemAndPseudoFS(t *testing.T) {
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "top.txt"), []byte("top"))
	for _, d := range []string{"proc", "other"} {
		if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(t, "proc", filepath.Join(src, "proc"))
	mount(t, "tmpfs", filepath.Join(src, "other"))
	indextest.WriteFile(t, filepath.Join(src, "other", "inner.txt"), []byte("on another filesystem"))

	r, _ := indextest.NewRepo(t)
	ctx := context.Background()
	all, err := r.Backup(ctx, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull})
	if err != nil {
		t.Fatal(err)
	}
	got := itemPaths(all)
	if !got["top.txt"] || !got["other/inner.txt"] {
		t.Errorf("without OneFileSystem the backup must cross into the tmpfs: items %v", got)
	}
	for p := range got {
		if p == "proc" || len(p) > 5 && p[:5] == "proc/" {
			t.Errorf("the proc filesystem was walked: item %q", p)
		}
	}
	one, err := r.Backup(ctx, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull, OneFileSystem: true})
	if err != nil {
		t.Fatal(err)
	}
	got = itemPaths(one)
	if !got["top.txt"] || !got["other"] {
		t.Errorf("with OneFileSystem the mount point stays as a directory: items %v", got)
	}
	if got["other/inner.txt"] {
		t.Errorf("with OneFileSystem the backup crossed into another filesystem: items %v", got)
	}
}
