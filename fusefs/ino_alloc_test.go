package fusefs

import "testing"

// TestKeyHashAllocates: naming an inode allocates nothing (a directory of
// 100,000 entries names each of them twice while it is listed).
func TestKeyHashAllocates(t *testing.T) {
	key := contentKey(&snapInfo{id: "snap-2026-11-29-120000"}, "some/dir/file-00001.txt")
	if n := testing.AllocsPerRun(100, func() { keyHash(key) }); n != 0 {
		t.Fatalf("keyHash allocates %.0f times", n)
	}
}
