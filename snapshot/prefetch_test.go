package snapshot_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// TestPrefetchTree: a tree is loaded ahead once (then it is cached), a tree
// too large for the cache is not decoded ahead for nothing, and ids that
// are not trees, or not stored at all, load nothing; each prefetched tree
// is the tree LoadTree returns.
func TestPrefetchTree(t *testing.T) {
	ctx := context.Background()
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "small", "a"), []byte("a"))
	indextest.WriteFile(t, filepath.Join(src, "small", "sub", "b"), []byte("b"))
	indextest.WriteFile(t, filepath.Join(src, "data"), indextest.RandomBytes(3, 300<<10))
	// Enough long names that the tree's encoding is above 256 KiB.
	big := filepath.Join(src, "big")
	if err := os.MkdirAll(big, 0o755); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 200)
	for i := range 1500 {
		if err := os.WriteFile(filepath.Join(big, fmt.Sprintf("%s-%04d", long, i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	node := func(rel string) *snapshot.Node {
		t.Helper()
		n, err := r.FindNode(ctx, m, rel)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	small, sub, bigDir, data := node("small"), node("small/sub"), node("big"), node("data")

	cr := r.NewChunkReader(4)
	defer cr.Close()
	if !cr.PrefetchTree(ctx, sub.Subtree) {
		t.Fatalf("small/sub: not loaded ahead")
	}
	if cr.PrefetchTree(ctx, sub.Subtree) {
		t.Fatalf("small/sub: loaded ahead twice (not cached)")
	}
	if cr.PrefetchTree(ctx, bigDir.Subtree) {
		t.Fatalf("big: a tree above the prefetch bound was loaded ahead")
	}
	bt, err := cr.LoadTree(ctx, bigDir.Subtree) // still loads when needed
	if err != nil || len(bt.Nodes) != 1500 {
		t.Fatalf("big: %v, %d nodes", err, len(bt.Nodes))
	}
	if cr.PrefetchTree(ctx, data.Chunks[0].ID) {
		t.Fatalf("a data chunk was loaded as a tree")
	}
	var unknown snapshot.ID
	unknown[0] = 1
	if cr.PrefetchTree(ctx, unknown) {
		t.Fatalf("an id no pack holds was loaded")
	}
	// small was not prefetched: the first LoadTree decodes it, and the
	// cache then serves the same tree to a prefetch and a load.
	t1, err := cr.LoadTree(ctx, small.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if cr.PrefetchTree(ctx, small.Subtree) {
		t.Fatalf("small: loaded ahead after LoadTree cached it")
	}
	t2, err := cr.LoadTree(ctx, small.Subtree)
	if err != nil || t1 != t2 {
		t.Fatalf("small: the second load is not the cached tree (%v)", err)
	}
	if len(t1.Nodes) != 2 || t1.Nodes[0].Name != "a" || t1.Nodes[1].Name != "sub" {
		t.Fatalf("small: nodes %v", t1.Nodes)
	}
}
