package snapshot_test

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// TestXattrsAcrossIncrementalBackups: extended attributes are stored; a
// file the next backup trusts (same inode, size, mtime and ctime) keeps them
// without a listxattr, and setting one moves the ctime, so the backup after
// that reads the file's attributes, and content, again.
func TestXattrsAcrossIncrementalBackups(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := fltSource(t, map[string][]byte{"tagged.txt": fltText(61, 4<<10), "plain.txt": fltText(62, 4<<10)})
	tagged := filepath.Join(src, "tagged.txt")
	if err := unix.Setxattr(tagged, "user.origin", []byte("first"), 0); err != nil {
		t.Skipf("user extended attributes not supported here: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // past the racy window: the next backup trusts the files
	xattrs := func(m *snapshot.Manifest) string {
		t.Helper()
		n, err := r.FindNode(t.Context(), m, "tagged.txt")
		if err != nil {
			t.Fatal(err)
		}
		s := ""
		for _, x := range n.Xattrs {
			s += x.Name + "=" + string(x.Value) + ";"
		}
		return s
	}
	m1 := fltBackup(t, r, src)
	var reads readCounter
	m2 := fltBackup(t, r, src, func(o *snapshot.BackupOptions) { o.WrapReader = reads.wrap })
	if reads.get("tagged.txt") != 0 {
		t.Fatalf("unchanged tagged.txt read %d times by the incremental backup, want 0", reads.get("tagged.txt"))
	}
	for _, m := range []*snapshot.Manifest{m1, m2} {
		if got := xattrs(m); got != "user.origin=first;" {
			t.Fatalf("%s: xattrs %q, want user.origin=first", m.BackupID, got)
		}
	}
	if m1.RootHash != m2.RootHash {
		t.Fatalf("root hash moved with nothing changed: %s then %s", m1.RootHash, m2.RootHash)
	}

	if err := unix.Setxattr(tagged, "user.origin", []byte("second"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(tagged, "user.added", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	m3 := fltBackup(t, r, src)
	if got := xattrs(m3); got != "user.added=x;user.origin=second;" {
		t.Fatalf("after setxattr: xattrs %q, want user.added=x;user.origin=second", got)
	}
	if err := unix.Removexattr(tagged, "user.origin"); err != nil {
		t.Fatal(err)
	}
	m4 := fltBackup(t, r, src)
	if got := xattrs(m4); got != "user.added=x;" {
		t.Fatalf("after removexattr: xattrs %q, want user.added=x", got)
	}
}
