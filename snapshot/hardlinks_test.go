package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// TestHardLinksKeptFromListing: listing the snapshots reads every manifest
// whole, and the hard-link counts found then answer HardLinks without
// reading the manifest again (the mount asks when it first shows a file:
// a manifest of 100,000 files is megabytes). The counts are right for a
// snapshot with hard links and nil for one without.
func TestHardLinksKeptFromListing(t *testing.T) {
	ctx := context.Background()
	r, dir := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "a"), []byte("linked"))
	for _, name := range []string{"b", "sub/c"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(src, "a"), filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	linked := rtBackup(t, r, snapshot.BackupOptions{Root: src})
	plain := t.TempDir()
	indextest.WriteFile(t, filepath.Join(plain, "x"), []byte("x"))
	single := rtBackup(t, r, snapshot.BackupOptions{Root: plain})

	// A fresh open: nothing cached from the backups.
	r.Close()
	r2, err := snapshot.Open(ctx, dir, indextest.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	list, err := r2.Snapshots(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("snapshots: %v, %d", err, len(list))
	}
	for _, id := range []string{linked.BackupID, single.BackupID} {
		p := filepath.Join(dir, "snapshots", id+".json")
		if err := os.Rename(p, p+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(p+".away", p)
	}
	links, err := r2.HardLinks(linked.BackupID)
	if err != nil {
		t.Fatalf("hard links after listing, manifest gone: %v", err)
	}
	first := ""
	for k := range links {
		first = k
	}
	if len(links) != 1 || links[first] != 3 {
		t.Fatalf("hard links %v, want one file with 3 names", links)
	}
	if links, err := r2.HardLinks(single.BackupID); err != nil || links != nil {
		t.Fatalf("snapshot without hard links: %v, %v", links, err)
	}
}
