package fusefs_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"snapforge/fusefs"
	"snapforge/fusefs/fusetest"
	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// mount mounts r at a new directory and unmounts it when the test ends.
func mount(t *testing.T, r *snapshot.Repo, o fusefs.Options) (*fusefs.Mount, string) {
	t.Helper()
	fusetest.RequireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := fusefs.New(context.Background(), r, o)
	if err != nil {
		t.Fatalf("new file system: %v", err)
	}
	m, err := fusefs.Start(context.Background(), f, dir)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if _, err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		m.Wait()
		f.Close()
	})
	return m, dir
}

// sourceTree builds a tree with every kind of entry the mount must show
// faithfully.
func sourceTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	w := func(rel string, data []byte, mode os.FileMode) {
		p := filepath.Join(src, rel)
		indextest.WriteFile(t, p, data)
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	w("a.txt", []byte("hello\n"), 0o644)
	w("secret", []byte("root only\n"), 0o600)
	w("dir/big.bin", indextest.RandomBytes(1, 5<<20+12345), 0o644) // several chunks
	w("dir/empty", nil, 0o640)
	w("dir/sub/deep/file", []byte("deep"), 0o755)
	w("weird/new\nline", []byte("newline name"), 0o644)
	w("weird/bad\xffutf8", []byte("invalid utf-8 name"), 0o644)
	w("weird/spaces and ümlauts", []byte("x"), 0o644)
	// FAULTS D6: names that must round-trip byte for byte and never collapse.
	w("weird/caf\u00e9", []byte("NFC"), 0o644)
	w("weird/cafe\u0301", []byte("NFD"), 0o644)
	w("weird/bad\xfeutf8", []byte("another invalid name"), 0o644)
	w("weird/tab\tback\\slash", []byte("t"), 0o644)
	w("weird/-leading 'quotes\" <script>", []byte("s"), 0o644)
	w("weird/"+strings.Repeat("n", 255), []byte("255-byte name"), 0o644)
	must(t, os.MkdirAll(filepath.Join(src, "emptydir"), 0o700))
	must(t, os.Symlink("../a.txt", filepath.Join(src, "dir/link")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(src, "dangling")))
	// FAULTS D11: a loop and a link to / are links, never followed.
	must(t, os.Symlink("loop-b", filepath.Join(src, "loop-a")))
	must(t, os.Symlink("loop-a", filepath.Join(src, "loop-b")))
	must(t, os.Symlink("/", filepath.Join(src, "to-root")))
	must(t, os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "dir/hard")))
	must(t, syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	must(t, err)
	must(t, sparse.Truncate(64<<20))
	_, err = sparse.WriteAt([]byte("middle"), 32<<20)
	must(t, err)
	must(t, sparse.Close())
	w("private/key.txt", []byte("behind a 0700 directory\n"), 0o644)
	must(t, os.Chmod(filepath.Join(src, "private"), 0o700))
	if os.Geteuid() == 0 {
		must(t, os.Lchown(filepath.Join(src, "secret"), 1234, 5678))
		must(t, os.Lchown(filepath.Join(src, "dir/link"), 4321, 8765))
		// No permission bits at all (as root, the backup reads them).
		w("nomode", []byte("mode 000\n"), 0)
		w("closed/inside", []byte("in a directory of mode 000\n"), 0o644)
		must(t, os.Chmod(filepath.Join(src, "closed"), 0))
	}
	must(t, os.Chmod(src, 0o755))
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	must(t, os.Chtimes(filepath.Join(src, "dir/empty"), old, old))
	must(t, unix.Lutimes(filepath.Join(src, "dir/link"), []unix.Timeval{{Sec: 1e9}, {Sec: 1e9}}))
	return src
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func backup(t *testing.T, r *snapshot.Repo, src string, mod ...func(*snapshot.BackupOptions)) *snapshot.Manifest {
	t.Helper()
	o := snapshot.BackupOptions{Root: src}
	for _, f := range mod {
		f(&o)
	}
	m, err := r.Backup(context.Background(), o)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return m
}

// TestMountFaithful: a snapshot folder equals its source (types, modes,
// owners, sizes, mtimes, content, link targets, hard links, names of any
// bytes, empty directories, sparse files), and the BLAKE3 of every file read
// through the mount is the manifest's (what b3sum prints).
func TestMountFaithful(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := sourceTree(t)
	// The source root's own mode, owner and mtime: the snapshot folder's.
	must(t, os.Chmod(src, 0o750))
	if os.Geteuid() == 0 {
		must(t, os.Lchown(src, 4321, 8765))
	}
	rootTime := time.Date(2003, 4, 5, 6, 7, 8, 9, time.UTC)
	must(t, os.Chtimes(src, rootTime, rootTime))
	m := backup(t, r, src)
	_, dir := mount(t, r, fusefs.Options{})

	snapDir := filepath.Join(dir, "snapshots", fusefs.FolderName(m.Created(), time.Local))
	indextest.CompareDigests(t, indextest.Digest(t, src, nil), indextest.Digest(t, snapDir, nil))
	indextest.CompareDigests(t, indextest.Digest(t, src, nil), indextest.Digest(t, filepath.Join(dir, "latest")+"/", nil))
	var rs, rm unix.Stat_t
	must(t, unix.Lstat(src, &rs))
	must(t, unix.Stat(snapDir, &rm))
	if rm.Mode != rs.Mode || rm.Uid != rs.Uid || rm.Gid != rs.Gid || rm.Mtim != rs.Mtim {
		t.Errorf("snapshot folder: mode %o uid %d gid %d mtime %v; the source root's: %o %d %d %v", rm.Mode, rm.Uid, rm.Gid, rm.Mtim, rs.Mode, rs.Uid, rs.Gid, rs.Mtim)
	}
	if os.Geteuid() == 0 {
		var st unix.Stat_t
		for _, rel := range []string{"nomode", "closed"} {
			must(t, unix.Lstat(filepath.Join(snapDir, rel), &st))
			if st.Mode&0o7777 != 0 {
				t.Errorf("%s: mode %o through the mount, want no permission bits, as stored", rel, st.Mode&0o7777)
			}
		}
	}

	// Owners as stored (Digest compares modes, not owners).
	if os.Geteuid() == 0 {
		for rel, want := range map[string][2]uint32{"secret": {1234, 5678}, "dir/link": {4321, 8765}} {
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(snapDir, rel), &st))
			if st.Uid != want[0] || st.Gid != want[1] {
				t.Errorf("%s: uid/gid %d/%d, want %d/%d", rel, st.Uid, st.Gid, want[0], want[1])
			}
		}
	}
	// Hard links share an inode number and count their names.
	var a, h unix.Stat_t
	must(t, unix.Stat(filepath.Join(snapDir, "a.txt"), &a))
	must(t, unix.Stat(filepath.Join(snapDir, "dir/hard"), &h))
	if a.Ino != h.Ino || a.Nlink != 2 || h.Nlink != 2 {
		t.Errorf("hard links: inodes %d and %d, links %d and %d; want one inode with 2 links", a.Ino, h.Ino, a.Nlink, h.Nlink)
	}
	// Sparse: the hole reads as zeros, the data where it was.
	b, err := os.ReadFile(filepath.Join(snapDir, "sparse"))
	must(t, err)
	if len(b) != 64<<20 || string(b[32<<20:32<<20+6]) != "middle" || bytes.ContainsFunc(b[:32<<20], func(r rune) bool { return r != 0 }) {
		t.Errorf("sparse file read wrong (len %d)", len(b))
	}
	// And it looks sparse: few blocks, and SEEK_DATA/SEEK_HOLE find the
	// data around "middle" (so cp, tar -S, rsync --sparse keep the holes).
	sf, err := os.Open(filepath.Join(snapDir, "sparse"))
	must(t, err)
	defer sf.Close()
	var sst unix.Stat_t
	must(t, unix.Fstat(int(sf.Fd()), &sst))
	data, derr := unix.Seek(int(sf.Fd()), 0, unix.SEEK_DATA)
	hole, herr := unix.Seek(int(sf.Fd()), data, unix.SEEK_HOLE)
	_, eerr := unix.Seek(int(sf.Fd()), hole+(16<<20), unix.SEEK_DATA) // past the data: holes to the end
	if sst.Blocks*512 > 16<<20 || derr != nil || herr != nil || data <= 0 || data > 32<<20 || hole <= 32<<20 || hole > 48<<20 || eerr != unix.ENXIO {
		t.Errorf("sparse file: %d blocks, SEEK_DATA %d (%v), SEEK_HOLE %d (%v), SEEK_DATA past it %v; want a few MiB of data around 32 MiB", sst.Blocks, data, derr, hole, herr, eerr)
	}

	// Every file's BLAKE3 through the mount is the manifest's.
	full, err := r.LoadManifest(m.BackupID)
	must(t, err)
	checked := 0
	for _, it := range full.Items {
		if it.Type != "file" && it.Type != "hardlink" {
			continue
		}
		f, err := os.Open(filepath.Join(snapDir, it.RawPath()))
		must(t, err)
		hh := blake3.New()
		_, err = io.Copy(hh, f)
		f.Close()
		must(t, err)
		if got := hex.EncodeToString(hh.Sum(nil)); got != it.Blake3 {
			t.Errorf("%s: BLAKE3 through the mount %s, manifest %s", it.Path, got, it.Blake3)
		}
		checked++
	}
	if checked < 8 {
		t.Fatalf("checked only %d files", checked)
	}
	// And with the independent tool, where installed.
	if b3, err := exec.LookPath("b3sum"); err == nil {
		out, err := exec.Command(b3, "--no-names", filepath.Join(snapDir, "dir/big.bin")).Output()
		must(t, err)
		for _, it := range full.Items {
			if it.Path == "dir/big.bin" && strings.TrimSpace(string(out)) != it.Blake3 {
				t.Errorf("b3sum through the mount: %s, manifest %s", out, it.Blake3)
			}
		}
	}
}

// TestMountLayout: the top level, folder names (collisions get a suffix),
// latest, by-id, by-unit and history.
func TestMountLayout(t *testing.T) {
	clock := time.Date(2026, 11, 26, 1, 15, 0, 0, time.UTC)
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) { o.Now = func() time.Time { return clock } })
	src := sourceTree(t)
	m1 := backup(t, r, src, func(o *snapshot.BackupOptions) { o.Paths = []string{"a.txt", "dir/"}; o.Includes = []string{"config"} })
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("second version\n"))
	m2 := backup(t, r, src) // same second: a suffix
	clock = clock.Add(time.Hour)
	m3 := backup(t, r, src) // a.txt unchanged since m2
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("hello\n"))
	clock = clock.Add(time.Hour)
	m4 := backup(t, r, src) // back to the first content: a change again

	_, dir := mount(t, r, fusefs.Options{Location: time.UTC, Units: map[string][]string{"config": {"a.txt"}}})
	names := func(p string) []string { t.Helper(); return dirNames(t, filepath.Join(dir, p)) }
	eq := func(what string, got, want []string) {
		t.Helper()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: got %q, want %q", what, got, want)
		}
	}
	eq("top level", names(""), []string{"README.txt", "by-id", "by-unit", "history", "latest", "snapshots"})
	d1, d2, d3, d4 := "2026-11-26_01-15-00", "2026-11-26_01-15-00_002", "2026-11-26_02-15-00", "2026-11-26_03-15-00"
	eq("snapshots", names("snapshots"), []string{d1, d2, d3, d4})
	eq("by-id", names("by-id"), []string{m1.BackupID, m2.BackupID, m3.BackupID, m4.BackupID})
	if target, err := os.Readlink(filepath.Join(dir, "latest")); err != nil || target != "snapshots/"+d4 {
		t.Errorf("latest -> %q (%v), want snapshots/%s", target, err, d4)
	}
	eq("by-unit", names("by-unit"), []string{"config"})
	eq("by-unit/config", names("by-unit/config"), []string{d1})
	eq("by-unit/config/<date>", names("by-unit/config/"+d1), []string{"a.txt"}) // dir/ is in the snapshot but not in the unit
	eq("snapshot 1", names("snapshots/"+d1), []string{"a.txt", "dir"})
	eq("history", names("history"), names("snapshots/"+d4))
	eq("history of a.txt", names("history/a.txt"), []string{d1, d2, d4})
	eq("history of an unchanged file", names("history/dir/sub/deep/file"), []string{d1})
	for d, want := range map[string]string{d1: "hello\n", d2: "second version\n", d4: "hello\n"} {
		b, err := os.ReadFile(filepath.Join(dir, "history/a.txt", d))
		if err != nil || string(b) != want {
			t.Errorf("history/a.txt/%s = %q (%v), want %q", d, b, err, want)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "by-id", m2.BackupID, "a.txt"))
	if err != nil || string(b) != "second version\n" {
		t.Errorf("by-id/%s/a.txt = %q (%v)", m2.BackupID, b, err)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.txt"))
	if err != nil || !bytes.Contains(readme, []byte("read-only")) || !bytes.Contains(readme, []byte("restore")) {
		t.Errorf("README.txt: %q (%v)", readme, err)
	}
}

// TestByUnitFollowsTheSnapshot: by-unit/<unit>/<date>/ shows the unit's
// paths as the snapshot recorded them, whatever profile.json says today; a
// snapshot whose unit neither its manifest nor the profile describes is not
// shown under the unit, where it used to be shown whole (a unit renamed in
// the profile exposed every file of its old snapshots; acceptance run 3).
func TestByUnitFollowsTheSnapshot(t *testing.T) {
	clock := time.Date(2026, 11, 26, 1, 15, 0, 0, time.UTC)
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) { o.Now = func() time.Time { return clock } })
	src := sourceTree(t)
	backup(t, r, src, func(o *snapshot.BackupOptions) {
		o.Paths = []string{"a.txt", "dir/"}
		o.Includes = []string{"config", "data"}
		o.UnitPaths = map[string][]string{"config": {"a.txt"}, "data": {"dir/"}}
	})
	clock = clock.Add(time.Hour)
	backup(t, r, src, func(o *snapshot.BackupOptions) { o.Includes = []string{"keys"} }) // recorded no paths
	// Today's profile: config moved to dir/, keys renamed.
	_, dir := mount(t, r, fusefs.Options{Location: time.UTC, Units: map[string][]string{"config": {"dir"}, "secrets": {"a.txt"}}})
	names := func(p string) string { t.Helper(); return strings.Join(dirNames(t, filepath.Join(dir, p)), "|") }
	d1 := "2026-11-26_01-15-00"
	for p, want := range map[string]string{
		"by-unit":              "config|data|secrets",
		"by-unit/config":       d1,
		"by-unit/config/" + d1: "a.txt", // as recorded, not the profile's dir/
		"by-unit/data/" + d1:   "dir",
		"by-unit/secrets":      "", // the renamed unit's old snapshot is not shown whole
	} {
		if got := names(p); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "by-unit", "keys")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("by-unit/keys, a unit no manifest or profile describes: %v", err)
	}
}

// TestMountReadOnly: every kind of write fails with EROFS, and the mount
// carries ro,nosuid,nodev.
func TestMountReadOnly(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := sourceTree(t)
	backup(t, r, src)
	_, dir := mount(t, r, fusefs.Options{})
	snap := filepath.Join(dir, "latest") + "/"
	tries := map[string]error{
		"create":   os.WriteFile(snap+"new", []byte("x"), 0o644),
		"truncate": os.Truncate(snap+"a.txt", 0),
		"remove":   os.Remove(snap + "a.txt"),
		"mkdir":    os.Mkdir(snap+"newdir", 0o755),
		"rename":   os.Rename(snap+"a.txt", snap+"b.txt"),
		"chmod":    os.Chmod(snap+"a.txt", 0o777),
		"symlink":  os.Symlink("x", snap+"newlink"),
		"top":      os.Mkdir(filepath.Join(dir, "snapshots", "new"), 0o755),
		"readme":   os.WriteFile(filepath.Join(dir, "README.txt"), nil, 0o644),
	}
	f, err := os.OpenFile(snap+"a.txt", os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	tries["open for writing"] = err
	for what, err := range tries {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", what, err)
		}
	}
	opts := mountOptions(t, dir)
	for _, o := range []string{"ro", "nosuid", "nodev"} {
		if !opts[o] {
			t.Errorf("mount options %v lack %s", opts, o)
		}
	}
	if b, _ := os.ReadFile(snap + "a.txt"); string(b) != "hello\n" {
		t.Errorf("a.txt changed: %q", b)
	}
	// statvfs (df, pathconf): the repository's file system's size,
	// nothing free, names up to 255 bytes; the same inside a snapshot.
	var repoFS unix.Statfs_t
	must(t, unix.Statfs(r.Path(), &repoFS))
	for _, p := range []string{dir, snap, snap + "a.txt"} {
		var st unix.Statfs_t
		must(t, unix.Statfs(p, &st))
		if st.Blocks != repoFS.Blocks || st.Bsize != repoFS.Bsize || st.Bfree != 0 || st.Bavail != 0 || st.Namelen != 255 || st.Files == 0 {
			t.Errorf("statfs %s: blocks %d of %d bytes, free %d/%d, files %d, names %d; want the repository's %d blocks of %d, none free, names 255",
				p, st.Blocks, st.Bsize, st.Bfree, st.Bavail, st.Files, st.Namelen, repoFS.Blocks, repoFS.Bsize)
		}
	}
}

// mountOptions returns the options /proc/self/mounts lists for dir.
func mountOptions(t *testing.T, dir string) map[string]bool {
	t.Helper()
	opts := fusetest.MountOptions(dir)
	if opts == nil {
		t.Fatalf("%s is not in /proc/self/mounts", dir)
	}
	return opts
}

// inodes returns the inode number of every path under root.
func inodes(t *testing.T, root string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out[p] = fi.Sys().(*syscall.Stat_t).Ino
		return nil
	})
	must(t, err)
	return out
}

// TestMountStableInodes: inode numbers are unique (hard links aside), and
// the same after a remount.
func TestMountStableInodes(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := sourceTree(t)
	backup(t, r, src)
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("v2"))
	backup(t, r, src)

	m, dir := mount(t, r, fusefs.Options{})
	first := inodes(t, dir)
	if len(first) < 40 {
		t.Fatalf("only %d paths under the mount", len(first))
	}
	byIno := map[uint64][]string{}
	for p, ino := range first {
		byIno[ino] = append(byIno[ino], p)
	}
	for ino, ps := range byIno {
		if len(ps) > 1 && !sameFile(t, ps) {
			sort.Strings(ps)
			t.Errorf("inode %d shared by different entries: %q", ino, ps)
		}
	}
	if _, err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	m.Wait()

	f, err := fusefs.New(context.Background(), r, fusefs.Options{})
	must(t, err)
	defer f.Close()
	m2, err := fusefs.Start(context.Background(), f, dir)
	must(t, err)
	defer func() { m2.Unmount(); m2.Wait() }()
	second := inodes(t, dir)
	if len(second) != len(first) {
		t.Errorf("%d paths after remount, %d before", len(second), len(first))
	}
	for p, ino := range first {
		if second[p] != ino {
			t.Errorf("%s: inode %d, after remount %d", p, ino, second[p])
		}
	}
}

// sameFile reports whether paths sharing an inode are one file of one
// snapshot (hard links, or the same file seen through by-id/, history/ …):
// never directories, and the same attributes and content.
func sameFile(t *testing.T, ps []string) bool {
	t.Helper()
	var first os.FileInfo
	var content []byte
	for _, p := range ps {
		fi, err := os.Lstat(p)
		must(t, err)
		if fi.IsDir() {
			return false
		}
		var b []byte
		if fi.Mode().IsRegular() {
			b, err = os.ReadFile(p)
			must(t, err)
		}
		if first == nil {
			first, content = fi, b
			continue
		}
		if fi.Mode() != first.Mode() || fi.Size() != first.Size() || !fi.ModTime().Equal(first.ModTime()) || !bytes.Equal(b, content) {
			return false
		}
	}
	return true
}

// TestMountDamagedChunk: a damaged chunk fails reads of its file with EIO
// and an audit event naming file and snapshot, while every other file
// stays readable (FAULTS A2/A3 seen through the mount).
func TestMountDamagedChunk(t *testing.T) {
	r, repoDir := indextest.NewRepo(t)
	src := sourceTree(t)
	m := backup(t, r, src)
	root, err := m.TreeID()
	must(t, err)
	dirT, err := r.LoadTree(context.Background(), root)
	must(t, err)
	d := dirT.Find("dir")
	sub, err := r.LoadTree(context.Background(), d.Subtree)
	must(t, err)
	big := sub.Find("big.bin")
	loc, err := r.Index().Lookup(context.Background(), big.Chunks[1].ID)
	must(t, err)
	pack := filepath.Join(repoDir, "packs", loc.Pack.String()[:2], loc.Pack.String()+".pack")
	pf, err := os.OpenFile(pack, os.O_RDWR, 0)
	must(t, err)
	one := []byte{0}
	_, err = pf.ReadAt(one, int64(loc.Offset)+int64(loc.Stored)/2)
	must(t, err)
	one[0] ^= 0xff
	_, err = pf.WriteAt(one, int64(loc.Offset)+int64(loc.Stored)/2)
	must(t, err)
	must(t, pf.Close())

	var mu sync.Mutex
	var heard []string
	_, dir := mount(t, r, fusefs.Options{Damaged: func(snap, path string, err error) {
		mu.Lock()
		heard = append(heard, snap+" "+path)
		mu.Unlock()
	}})
	snap := filepath.Join(dir, "latest") + "/"
	_, err = os.ReadFile(snap + "dir/big.bin")
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading the damaged file: %v, want EIO", err)
	}
	_, err = os.ReadFile(snap + "dir/big.bin") // again: reported once
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading the damaged file again: %v, want EIO", err)
	}
	mu.Lock()
	if len(heard) != 1 || heard[0] != m.BackupID+" dir/big.bin" {
		t.Errorf("damage reported to the mount's owner: %q, want once, naming the snapshot and file", heard)
	}
	mu.Unlock()
	// The first chunk is intact and still reads.
	f, err := os.Open(snap + "dir/big.bin")
	must(t, err)
	head := make([]byte, 4096)
	_, err = f.ReadAt(head, 0)
	f.Close()
	if err != nil || !bytes.Equal(head, indextest.RandomBytes(1, 5<<20+12345)[:4096]) {
		t.Errorf("the intact start of the damaged file: %v", err)
	}
	for _, other := range []string{"a.txt", "dir/sub/deep/file", "sparse", "dir/hard"} {
		if _, err := os.ReadFile(snap + other); err != nil {
			t.Errorf("%s should stay readable: %v", other, err)
		}
	}
	trail, err := os.ReadFile(filepath.Join(repoDir, "audit", "audit.jsonl"))
	must(t, err)
	var found bool
	for _, line := range strings.Split(string(trail), "\n") {
		if strings.Contains(line, `"mount_read"`) && strings.Contains(line, "dir/big.bin") && strings.Contains(line, m.BackupID) {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit event names the damaged file and snapshot:\n%s", trail)
	}
}

// dirNames lists the names in dir, in the order the file system gives them.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestMountLatestFollows: a snapshot committed while mounted shows under
// snapshots/ and as latest within 2 seconds.
func TestMountLatestFollows(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := sourceTree(t)
	backup(t, r, src)
	_, dir := mount(t, r, fusefs.Options{})
	before, err := os.Readlink(filepath.Join(dir, "latest"))
	must(t, err)
	// Listed once: the kernel may keep the listings (it does when it
	// sends no OPENDIR); a new snapshot must still show in them.
	listed := func(d string) []string { t.Helper(); return dirNames(t, filepath.Join(dir, d)) }
	if got := listed("snapshots"); len(got) != 1 {
		t.Fatalf("snapshots/ lists %q, want one snapshot", got)
	}
	if got := listed("by-id"); len(got) != 1 {
		t.Fatalf("by-id/ lists %q, want one snapshot", got)
	}
	time.Sleep(1100 * time.Millisecond) // a new second: a new folder name
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("after mount\n"))
	m2 := backup(t, r, src)
	want := "snapshots/" + fusefs.FolderName(m2.Created(), time.Local)
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err := os.Readlink(filepath.Join(dir, "latest"))
		if err == nil && got == want && slices.Contains(listed("snapshots"), filepath.Base(want)) &&
			slices.Contains(listed("by-id"), m2.BackupID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("latest -> %q (%v) 2 s after the backup; was %q, want %q; snapshots/ lists %q, by-id/ %q",
				got, err, before, want, listed("snapshots"), listed("by-id"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dir, "latest", "a.txt"))
	if err != nil || string(b) != "after mount\n" {
		t.Errorf("latest/a.txt = %q (%v)", b, err)
	}
}

// TestMountBusyUnmount: unmounting while a file is open falls back to a
// lazy unmount; the open file keeps reading until closed.
func TestMountBusyUnmount(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := sourceTree(t)
	backup(t, r, src)
	fusetest.RequireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(dir, 0o755))
	f, err := fusefs.New(context.Background(), r, fusefs.Options{})
	must(t, err)
	defer f.Close()
	m, err := fusefs.Start(context.Background(), f, dir)
	must(t, err)
	open, err := os.Open(filepath.Join(dir, "latest", "dir", "big.bin"))
	must(t, err)
	lazy, err := m.Unmount()
	if err != nil || !lazy {
		open.Close()
		t.Fatalf("unmount with an open file: lazy=%v err=%v, want a lazy unmount", lazy, err)
	}
	if fusetest.Mounted(dir) {
		t.Error("still in the mount table after a lazy unmount")
	}
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(open, buf); err != nil || !bytes.Equal(buf, indextest.RandomBytes(1, 5<<20+12345)[:1<<20]) {
		t.Errorf("reading the open file after a lazy unmount: %v", err)
	}
	open.Close()
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop after the last file was closed")
	}
}

// TestMain runs a mount in a child process for TestMountStaleCleanup.
func TestMain(m *testing.M) {
	if spec := os.Getenv("FUSEFS_TEST_CHILD_MOUNT"); spec != "" {
		repo, dir, _ := strings.Cut(spec, "|")
		r, err := snapshot.Open(context.Background(), repo, indextest.Options())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		f, err := fusefs.New(context.Background(), r, fusefs.Options{})
		if err == nil {
			_, err = fusefs.Start(context.Background(), f, dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("mounted")
		select {} // until killed
	}
	os.Exit(m.Run())
}

// TestMountStaleCleanup: a mount left dead by a SIGKILLed owner
// ("transport endpoint is not connected") is detected and cleaned up by
// the next start, which then mounts and reads normally (FAULTS B6, G6).
func TestMountStaleCleanup(t *testing.T) {
	fusetest.RequireFUSE(t)
	r, repoDir := indextest.NewRepo(t)
	src := sourceTree(t)
	backup(t, r, src)
	must(t, r.Close())
	dir := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(dir, 0o755))

	exe, err := os.Executable()
	must(t, err)
	child := exec.Command(exe, "-test.run=^$")
	child.Env = append(os.Environ(), "FUSEFS_TEST_CHILD_MOUNT="+repoDir+"|"+dir)
	out, err := child.StdoutPipe()
	must(t, err)
	child.Stderr = os.Stderr
	must(t, child.Start())
	line := make([]byte, 8)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "mounted\n" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("child mount: %q %v", line, err)
	}
	must(t, child.Process.Kill())
	child.Wait()
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("after SIGKILL the mountpoint should be dead (ENOTCONN), got %v", err)
	}

	r2 := indextest.OpenRepo(t, repoDir) // the kernel released the dead owner's lock
	note, err := fusefs.PrepareMountpoint(dir, repoDir, []string{src})
	if err != nil || !strings.Contains(note, "dead mount") {
		t.Fatalf("PrepareMountpoint on a dead mount: note %q, err %v", note, err)
	}
	f, err := fusefs.New(context.Background(), r2, fusefs.Options{})
	must(t, err)
	defer f.Close()
	m, err := fusefs.Start(context.Background(), f, dir)
	must(t, err)
	defer func() { m.Unmount(); m.Wait() }()
	if b, err := os.ReadFile(filepath.Join(dir, "latest", "a.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("read after cleanup: %q %v", b, err)
	}
}

// TestPrepareMountpointRefuses: mountpoints inside the repository or a
// backed-up root, non-empty, missing or not directories are refused with
// a message naming the reason.
func TestPrepareMountpointRefuses(t *testing.T) {
	_, repoDir := indextest.NewRepo(t)
	src := t.TempDir()
	must(t, os.Mkdir(filepath.Join(src, "inside"), 0o755))
	must(t, os.Mkdir(filepath.Join(repoDir, "mnt"), 0o755))
	full := t.TempDir()
	indextest.WriteFile(t, filepath.Join(full, "x"), []byte("x"))
	file := filepath.Join(t.TempDir(), "file")
	indextest.WriteFile(t, file, nil)
	for dir, want := range map[string]string{
		filepath.Join(repoDir, "mnt"):      "inside the repository",
		filepath.Join(src, "inside"):       "backed up",
		full:                               "not empty",
		filepath.Join(t.TempDir(), "nope"): "does not exist",
		file:                               "not a directory",
	} {
		_, err := fusefs.PrepareMountpoint(dir, repoDir, []string{src})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("PrepareMountpoint(%s) = %v, want an error saying %q", dir, err, want)
		}
	}
	ok := t.TempDir()
	if _, err := fusefs.PrepareMountpoint(ok, repoDir, []string{src}); err != nil {
		t.Errorf("an empty directory elsewhere: %v", err)
	}
	// A whole-system backup ("/") contains everything; its walk skips our
	// mounts, so it does not make every mountpoint unusable.
	if _, err := fusefs.PrepareMountpoint(ok, repoDir, []string{"/", src}); err != nil {
		t.Errorf("with a backup of / among the sources: %v", err)
	}
}

// TestMountAllowOther: allow_other comes only with default_permissions.
func TestMountAllowOther(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("allow_other needs root (or user_allow_other in /etc/fuse.conf)")
	}
	r, _ := indextest.NewRepo(t)
	backup(t, r, sourceTree(t))
	// A mountpoint other users can reach (t.TempDir is private to root).
	parent, err := os.MkdirTemp("", "sf-allow-other-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(parent) })
	must(t, os.Chmod(parent, 0o755))
	dir := filepath.Join(parent, "mnt")
	must(t, os.Mkdir(dir, 0o755))
	f, err := fusefs.New(context.Background(), r, fusefs.Options{AllowOther: true})
	must(t, err)
	m, err := fusefs.Start(context.Background(), f, dir)
	must(t, err)
	t.Cleanup(func() { m.Unmount(); m.Wait(); f.Close() })
	opts := mountOptions(t, dir)
	if !opts["allow_other"] || !opts["default_permissions"] {
		t.Errorf("mount options %v: want allow_other with default_permissions", opts)
	}
	// As another user, the root-only file stays unreadable.
	cmd := exec.Command("cat", filepath.Join(dir, "latest", "secret"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("nobody read the 0600 file through the mount: %q", out)
	}
	nobody := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		return cmd
	}
	if out, err := nobody("cat", filepath.Join(dir, "latest", "a.txt")).CombinedOutput(); err != nil || string(out) != "hello\n" {
		t.Errorf("nobody reading a 0644 file: %q %v", out, err)
	}
	// Nor a file of mode 000, one in a directory of mode 000, one in a
	// 0700 directory, or any version of it under history/.
	for _, rel := range []string{"latest/nomode", "latest/closed/inside", "latest/private/key.txt"} {
		if out, err := nobody("cat", filepath.Join(dir, rel)).CombinedOutput(); err == nil {
			t.Errorf("nobody read %s through the mount: %q", rel, out)
		}
	}
	versions, err := os.ReadDir(filepath.Join(dir, "history", "private", "key.txt"))
	if err != nil || len(versions) != 1 {
		t.Fatalf("history of private/key.txt: %v, %v", versions, err)
	}
	if out, err := nobody("cat", filepath.Join(dir, "history", "private", "key.txt", versions[0].Name())).CombinedOutput(); err == nil {
		t.Errorf("nobody read private/key.txt through history/: %q", out)
	}
	// A snapshot of a 0700 root: its folder keeps nobody out.
	closed := filepath.Join(t.TempDir(), "closed-root")
	indextest.WriteFile(t, filepath.Join(closed, "open.txt"), []byte("0644 under a 0700 root\n"))
	must(t, os.Chmod(closed, 0o700))
	backup(t, r, closed)
	must(t, m.Refresh(context.Background()))
	if out, err := os.ReadFile(filepath.Join(dir, "latest", "open.txt")); err != nil || string(out) != "0644 under a 0700 root\n" {
		t.Fatalf("the owner reading the new snapshot: %q %v", out, err)
	}
	if out, err := nobody("cat", filepath.Join(dir, "latest", "open.txt")).CombinedOutput(); err == nil {
		t.Errorf("nobody read a file under a 0700 source root through the mount: %q", out)
	}
}

// TestMountBigDirectory: a directory of 100,000 entries lists completely
// and correctly, its entries stat and read, and the nodes built for the
// listing are dropped once the kernel forgets them (memory falls back).
func TestMountBigDirectory(t *testing.T) {
	fusetest.RequireFUSE(t)
	const n = 100_000
	src := filepath.Join(t.TempDir(), "src")
	big := filepath.Join(src, "big")
	must(t, os.MkdirAll(big, 0o755))
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("f%06d", i)
		var data []byte
		if i%1000 == 0 || i == n-1 { // a few with content (the rest empty keeps the backup quick under -race)
			data = []byte(name)
		}
		if err := os.WriteFile(filepath.Join(big, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := indextest.NewRepo(t)
	start := time.Now()
	snap := backup(t, r, src)
	t.Logf("backup of %d files: %v", n, time.Since(start))
	m, dir := mount(t, r, fusefs.Options{})
	before := m.FS().LiveNodes()
	list := func() {
		t.Helper()
		d, err := os.Open(filepath.Join(dir, "latest", "big"))
		must(t, err)
		ents, err := d.ReadDir(-1)
		d.Close()
		must(t, err)
		if len(ents) != n {
			t.Fatalf("listed %d entries, want %d", len(ents), n)
		}
		for i, e := range ents {
			if want := fmt.Sprintf("f%06d", i); e.Name() != want {
				t.Fatalf("entry %d is %q, want %q (sorted by name)", i, e.Name(), want)
			}
		}
	}

	start = time.Now()

	// ls -l: READDIRPLUS, one lookup per entry.
	list()
	for _, i := range []int{0, 4000, 4711, n - 1} {
		name := fmt.Sprintf("f%06d", i)
		want := name
		if i == 4711 {
			want = ""
		}
		b, err := os.ReadFile(filepath.Join(dir, "latest", "big", name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v)", name, b, err)
		}
	}
	t.Logf("listing through the mount: %v", time.Since(start))
	listed := m.FS().LiveNodes()
	if listed < n/2 {
		// Without them the check below could not fail: nothing to forget.
		t.Fatalf("only %d live nodes after listing %d entries (the kernel did not keep the READDIRPLUS entries)", listed, n)
	}
	if os.Geteuid() != 0 {
		t.Skip("dropping the kernel's caches to see memory fall back needs root")
	}
	// A listing left unfinished: the kernel sends no OPENDIR (where it
	// can do without), so the handle serving the listing is kept for its
	// next request; nothing releases it but the end of a listing, the
	// bound, or the kernel forgetting the directory, as here. (go-fuse
	// drops a forgotten node's table entry: a handle still kept would make
	// its later release panic.) Another view of the directory: the kernel
	// keeps the listing of latest/big.
	opendir, _ := m.DirHandles()
	d, err := os.Open(filepath.Join(dir, "by-id", snap.BackupID, "big"))
	must(t, err)
	first, err := d.ReadDir(10)
	d.Close()
	must(t, err)
	if len(first) != 10 || first[0].Name() != "f000000" || first[9].Name() != "f000009" {
		t.Fatalf("first entries: %v", first)
	}
	if _, kept := m.DirHandles(); !opendir && kept != 1 {
		t.Fatalf("%d directory handles kept after an unfinished listing, want 1", kept)
	}
	// The kernel forgets the entries; go-fuse drops the nodes and our
	// inode table shrinks with them, and the kept handle goes with its
	// directory (the directory's FORGET may come after its entries').
	deadline := time.Now().Add(20 * time.Second)
	for {
		must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0o200))
		_, kept := m.DirHandles()
		if m.FS().LiveNodes() < before+100 && kept == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live nodes: %d before listing, %d after, still %d and %d directory handles kept after dropping the kernel's caches", before, listed, m.FS().LiveNodes(), kept)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("live nodes: %d before listing, %d after, %d after the kernel forgot them", before, listed, m.FS().LiveNodes())
	list() // a directory forgotten (its kept handle with it) lists again in full
}

// TestMountStaleIndexEntry (FAULTS A8): an index entry pointing at the
// wrong offset makes the read fail with EIO; the wrong bytes are never
// returned.
func TestMountStaleIndexEntry(t *testing.T) {
	r, repoDir := indextest.NewRepo(t)
	src := sourceTree(t)
	m := backup(t, r, src)
	ctx := context.Background()
	root, err := m.TreeID()
	must(t, err)
	top, err := r.LoadTree(ctx, root)
	must(t, err)
	sub, err := r.LoadTree(ctx, top.Find("dir").Subtree)
	must(t, err)
	big := sub.Find("big.bin")
	c0, c1 := big.Chunks[0].ID, big.Chunks[1].ID
	l0, err := r.Index().Lookup(ctx, c0)
	must(t, err)
	l1, err := r.Index().Lookup(ctx, c1)
	must(t, err)
	if l0.Pack != l1.Pack {
		t.Skip("the two chunks landed in different packs")
	}
	fi, err := os.Stat(filepath.Join(repoDir, "packs", l1.Pack.String()[:2], l1.Pack.String()+".pack"))
	must(t, err)
	// Chunk 1's entry now points at chunk 0's bytes: a stale offset.
	must(t, r.Index().AddPack(ctx, l1.Pack, fi.Size(), []snapshot.PackBlob{{ID: c1, Location: l0}}))

	_, dir := mount(t, r, fusefs.Options{})
	f, err := os.Open(filepath.Join(dir, "latest", "dir", "big.bin"))
	must(t, err)
	defer f.Close()
	buf := make([]byte, int(big.Chunks[1].Size))
	_, err = f.ReadAt(buf, int64(big.Chunks[0].Size))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading the chunk behind a stale index entry: %v, want EIO", err)
	}
	if _, err := os.ReadFile(filepath.Join(dir, "latest", "a.txt")); err != nil {
		t.Errorf("other files stay readable: %v", err)
	}
}

// TestMountXattrs: stored extended attributes are served with --xattrs,
// and not asked for at all without it.
func TestMountXattrs(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "tagged"), []byte("x"))
	if err := unix.Lsetxattr(filepath.Join(src, "tagged"), "user.snapforge.test", []byte("value-1"), 0); err != nil {
		t.Skipf("the test directory's filesystem does not take user xattrs: %v", err)
	}
	r, _ := indextest.NewRepo(t)
	backup(t, r, src)
	_, dir := mount(t, r, fusefs.Options{Xattrs: true})
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(dir, "latest", "tagged"), "user.snapforge.test", buf)
	if err != nil || string(buf[:n]) != "value-1" {
		t.Errorf("getxattr with --xattrs: %q %v", buf[:n], err)
	}
	n, err = unix.Llistxattr(filepath.Join(dir, "latest", "tagged"), buf)
	if err != nil || !strings.Contains(string(buf[:n]), "user.snapforge.test") {
		t.Errorf("listxattr with --xattrs: %q %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "latest", "tagged"), "user.other", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("a missing attribute: %v, want ENODATA", err)
	}

	_, plain := mount(t, r, fusefs.Options{})
	if _, err := unix.Lgetxattr(filepath.Join(plain, "latest", "tagged"), "user.snapforge.test", buf); err == nil {
		t.Error("without --xattrs the attributes should not be served")
	}
}

// TestMountUnmountedOutside: unmounted from outside (fusermount3 -u,
// umount), Wait returns so the command can say so and exit; the poller of
// the snapshot list used to keep it waiting forever.
func TestMountUnmountedOutside(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	backup(t, r, sourceTree(t))
	fusetest.RequireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(dir, 0o755))
	f, err := fusefs.New(context.Background(), r, fusefs.Options{})
	must(t, err)
	m, err := fusefs.Start(context.Background(), f, dir)
	must(t, err)
	if _, err := os.ReadFile(filepath.Join(dir, "latest", "a.txt")); err != nil {
		t.Errorf("read through the mount: %v", err)
	}
	var uerr error
	if os.Geteuid() == 0 {
		uerr = unix.Unmount(dir, 0)
	} else {
		uerr = exec.Command("fusermount3", "-u", dir).Run()
	}
	if uerr != nil {
		m.Unmount()
		m.Wait()
		f.Close()
		t.Fatalf("unmount from outside: %v", uerr)
	}
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return 10 s after the file system was unmounted from outside")
	}
	f.Close()
}

// TestMountMovedUnmount: the mountpoint's parent is renamed while mounted;
// Unmount finds the mount where it is now (by its device number) and
// unmounts it there, saying where (Dir). By the old path it failed and left
// a dead mount that the next start could not find.
func TestMountMovedUnmount(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := sourceTree(t)
	backup(t, r, src)
	fusetest.RequireFUSE(t)
	base := t.TempDir()
	dir := filepath.Join(base, "parent", "mnt")
	must(t, os.MkdirAll(dir, 0o755))
	f, err := fusefs.New(context.Background(), r, fusefs.Options{})
	must(t, err)
	defer f.Close()
	m, err := fusefs.Start(context.Background(), f, dir)
	must(t, err)
	moved := filepath.Join(base, "moved", "mnt")
	must(t, os.Rename(filepath.Join(base, "parent"), filepath.Join(base, "moved")))
	t.Cleanup(func() {
		if fusetest.Mounted(moved) {
			unix.Unmount(moved, unix.MNT_DETACH)
		}
	})
	if b, err := os.ReadFile(filepath.Join(moved, "latest", "a.txt")); err != nil || string(b) != "hello\n" {
		t.Fatalf("reading through the moved mountpoint: %q, %v", b, err)
	}
	lazy, err := m.Unmount()
	if err != nil || lazy {
		t.Fatalf("unmount after the mountpoint moved: lazy=%v err=%v", lazy, err)
	}
	m.Wait()
	if m.Dir != moved {
		t.Errorf("Dir after the unmount %q, want where it was: %q", m.Dir, moved)
	}
	if fusetest.Mounted(moved) || fusetest.Mounted(dir) {
		t.Errorf("still mounted: %v at %s, %v at %s", fusetest.Mounted(moved), moved, fusetest.Mounted(dir), dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(moved, &st); err != nil {
		t.Errorf("the moved mountpoint is not a plain directory again: %v", err)
	}
}

// TestMountThroughSymlinkUnmount: a mountpoint named through a symlink
// (/home -> /var/home) has not moved: Unmount unmounts it where it is and
// keeps Dir as given.
func TestMountThroughSymlinkUnmount(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	backup(t, r, sourceTree(t))
	fusetest.RequireFUSE(t)
	base := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(base, "real", "mnt"), 0o755))
	must(t, os.Symlink("real", filepath.Join(base, "link")))
	dir := filepath.Join(base, "link", "mnt")
	f, err := fusefs.New(context.Background(), r, fusefs.Options{})
	must(t, err)
	defer f.Close()
	m, err := fusefs.Start(context.Background(), f, dir)
	must(t, err)
	lazy, err := m.Unmount()
	if err != nil || lazy {
		t.Fatalf("unmount: lazy=%v err=%v", lazy, err)
	}
	m.Wait()
	if m.Dir != dir {
		t.Errorf("Dir after the unmount %q, want %q as given", m.Dir, dir)
	}
	if fusetest.Mounted(filepath.Join(base, "real", "mnt")) {
		t.Error("still mounted")
	}
}
