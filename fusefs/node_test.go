package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// Node-level tests: the file system's nodes driven directly, without a
// kernel mount (fs.NewNodeFS attaches them to go-fuse's inode tree).

func newTestFS(t *testing.T, r *snapshot.Repo, o Options) *FS {
	t.Helper()
	f, err := New(context.Background(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	fs.NewNodeFS(f.Root(), &fs.Options{})
	return f
}

func lookup(t *testing.T, parent fs.InodeEmbedder, names ...string) fs.InodeEmbedder {
	t.Helper()
	n := parent
	for _, name := range names {
		l, ok := n.(fs.NodeLookuper)
		if !ok {
			t.Fatalf("%T cannot look up %q", n, name)
		}
		var out fuse.EntryOut
		ch, errno := l.Lookup(context.Background(), name, &out)
		if errno != 0 {
			t.Fatalf("lookup %q: %v", name, errno)
		}
		if out.Attr.Ino != ch.StableAttr().Ino {
			t.Errorf("lookup %q: attr ino %d, inode %d", name, out.Attr.Ino, ch.StableAttr().Ino)
		}
		n = ch.Operations()
	}
	return n
}

func readAll(t *testing.T, n fs.InodeEmbedder, size int) []byte {
	t.Helper()
	buf := make([]byte, size+100)
	res, errno := n.(fs.NodeReader).Read(context.Background(), nil, buf, 0)
	if errno != 0 {
		t.Fatalf("read: %v", errno)
	}
	b, _ := res.Bytes(nil)
	return b
}

func TestNodesLayoutAndReads(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	content := indextest.RandomBytes(7, 9<<20+333) // many chunks
	indextest.WriteFile(t, filepath.Join(src, "d", "big"), content)
	indextest.WriteFile(t, filepath.Join(src, "small"), []byte("small"))
	if err := os.Symlink("d/big", filepath.Join(src, "ln")); err != nil {
		t.Fatal(err)
	}
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	name := FolderName(m.Created(), time.UTC)

	if got, errno := lookup(t, f.Root(), "latest").(fs.NodeReadlinker).Readlink(context.Background()); errno != 0 || string(got) != "snapshots/"+name {
		t.Errorf("latest -> %q (%v)", got, errno)
	}
	big := lookup(t, f.Root(), "snapshots", name, "d", "big")
	if got := readAll(t, big, len(content)); !bytes.Equal(got, content) {
		t.Fatalf("big read whole: %d bytes, differs", len(got))
	}
	// Reads at any offset and length, across chunk boundaries, match.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		off := rng.IntN(len(content) + 10)
		n := rng.IntN(300 << 10)
		buf := make([]byte, n)
		res, errno := big.(fs.NodeReader).Read(context.Background(), nil, buf, int64(off))
		if errno != 0 {
			t.Fatalf("read %d+%d: %v", off, n, errno)
		}
		got, _ := res.Bytes(nil)
		want := content[min(off, len(content)):min(off+n, len(content))]
		if !bytes.Equal(got, want) {
			t.Fatalf("read %d+%d: %d bytes, want %d, content differs", off, n, len(got), len(want))
		}
	}
	if ln, errno := lookup(t, f.Root(), "by-id", m.BackupID, "ln").(fs.NodeReadlinker).Readlink(context.Background()); errno != 0 || string(ln) != "d/big" {
		t.Errorf("symlink: %q %v", ln, errno)
	}
	// The same file through snapshots/, by-id/ and history/ is one inode;
	// the same directory through two views is two.
	a := lookup(t, f.Root(), "snapshots", name, "small").(*fileNode)
	b := lookup(t, f.Root(), "by-id", m.BackupID, "small").(*fileNode)
	h := lookup(t, f.Root(), "history", "small", name).(*fileNode)
	if a.ino != b.ino || a.ino != h.ino {
		t.Errorf("one file, inodes %d %d %d", a.ino, b.ino, h.ino)
	}
	d1 := lookup(t, f.Root(), "snapshots", name, "d").(*treeDir)
	d2 := lookup(t, f.Root(), "by-id", m.BackupID, "d").(*treeDir)
	if d1.ino == d2.ino {
		t.Errorf("a directory in two views shares inode %d", d1.ino)
	}
	// Missing names: ENOENT.
	var out fuse.EntryOut
	if _, errno := lookup(t, f.Root(), "snapshots", name).(fs.NodeLookuper).Lookup(context.Background(), "nope", &out); errno != syscall.ENOENT {
		t.Errorf("missing entry: %v", errno)
	}
	if _, errno := lookup(t, f.Root(), "snapshots").(fs.NodeLookuper).Lookup(context.Background(), "1999-01-01_00-00-00", &out); errno != syscall.ENOENT {
		t.Errorf("missing snapshot: %v", errno)
	}
	// Writing is refused at open.
	if _, _, errno := a.Open(context.Background(), syscall.O_RDWR); errno != syscall.EROFS {
		t.Errorf("open for writing: %v", errno)
	}
}

// TestHistoryNamesUnique: a path that was a file and then a directory
// whose children are named like the file's version (its date folder, and
// that name with .version) lists each name once, and the version stays
// reachable under a longer name.
func TestHistoryNamesUnique(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "x"), []byte("file-version"))
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	name := FolderName(m.Created(), time.UTC)
	if err := os.Remove(filepath.Join(src, "x")); err != nil {
		t.Fatal(err)
	}
	indextest.WriteFile(t, filepath.Join(src, "x", name), []byte("a"))
	indextest.WriteFile(t, filepath.Join(src, "x", name+".version"), []byte("b"))
	if _, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src}); err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	h := lookup(t, f.Root(), "history", "x").(*histDir)
	ents, errno := h.entries(context.Background())
	if errno != 0 {
		t.Fatal(errno)
	}
	seen := map[string]bool{}
	version := ""
	for _, e := range ents {
		if seen[e.name] {
			t.Fatalf("history/x lists %q twice: %v", e.name, ents)
		}
		seen[e.name] = true
		if !e.dir {
			version = e.name
		}
	}
	if version != name+".version.version" {
		t.Fatalf("the file's version is named %q, want %q", version, name+".version.version")
	}
	if got := readAll(t, lookup(t, f.Root(), "history", "x", version), 12); string(got) != "file-version" {
		t.Fatalf("the version reads %q", got)
	}
}

// TestHistorySeparatesRoots: in a repository holding two source roots,
// the same path under each is two files: history/ names each version with
// its root and compares it only with its own root's versions (acceptance
// run 4: project B's README was shown as a newer version of project A's).
func TestHistorySeparatesRoots(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	base := t.TempDir()
	a, b := filepath.Join(base, "projA"), filepath.Join(base, "projB")
	indextest.WriteFile(t, filepath.Join(a, "README.md"), []byte("project A"))
	indextest.WriteFile(t, filepath.Join(b, "README.md"), []byte("project B"))
	var names []string
	for _, root := range []string{a, b, a} { // A unchanged the second time: one version
		m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, FolderName(m.Created(), time.UTC))
		time.Sleep(1100 * time.Millisecond) // folder names have seconds
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	ents, errno := lookup(t, f.Root(), "history", "README.md").(*histDir).entries(context.Background())
	if errno != 0 {
		t.Fatal(errno)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.name)
	}
	want := []string{names[0] + " (projA)", names[1] + " (projB)"}
	if !slices.Equal(got, want) {
		t.Fatalf("history/README.md lists %q, want %q", got, want)
	}
	if data := readAll(t, lookup(t, f.Root(), "history", "README.md", want[1]), 9); string(data) != "project B" {
		t.Fatalf("%s reads %q", want[1], data)
	}
}

func TestInoTableCollision(t *testing.T) {
	tab := newInoTable()
	ino, check := keyHash("a")
	tab.live[ino] = check + 1 // another key already holds a's number
	got := tab.acquire("a")
	if got == ino {
		t.Fatalf("a colliding key got the taken number %d", ino)
	}
	if tab.peek("a") != got || tab.acquire("a") != got {
		t.Errorf("the moved number is not stable: %d, peek %d", got, tab.peek("a"))
	}
	tab.release(ino)
	if tab.peek("a") != ino {
		t.Errorf("once the holder is gone a new lookup of a gets its own number again")
	}
	if n, _ := keyHash("x"); n < 2 {
		t.Errorf("reserved number %d", n)
	}
	// The same key always hashes the same (stable across remounts).
	if i1, _ := keyHash(contentKey(&snapInfo{id: "s1"}, "a/b")); i1 != func() uint64 { i, _ := keyHash("s\x00s1\x00a/b"); return i }() {
		t.Error("content key hash unstable")
	}
}

func TestVisible(t *testing.T) {
	filter := []string{"config", "data/app.json"}
	for _, c := range []struct {
		rel    string
		ok     bool
		deeper []string
	}{
		{"config", true, nil},
		{"config/a/b", true, nil},
		{"configx", false, nil},
		{"data", true, []string{"data/app.json"}},
		{"data/app.json", true, nil},
		{"data/other.db", false, nil},
		{"logs", false, nil},
	} {
		ok, deeper := visible(filter, c.rel)
		if ok != c.ok || !slices.Equal(deeper, c.deeper) {
			t.Errorf("visible(%q) = %v %q, want %v %q", c.rel, ok, deeper, c.ok, c.deeper)
		}
	}
	if ok, d := visible(nil, "anything"); !ok || d != nil {
		t.Error("no filter shows everything")
	}
}

func TestFolderNames(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	if got := FolderName(time.Date(2026, 11, 26, 1, 15, 0, 0, time.UTC), loc); got != "2026-11-26_02-15-00" {
		t.Errorf("folder name %q", got)
	}
}

// TestChunkCache: chunks come back checked and intact, an evicted chunk a
// reader still holds is not recycled under it, the cache stays within its
// bound, and concurrent readers of one chunk all get its bytes.
func TestChunkCache(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	content := indextest.RandomBytes(3, 12<<20)
	indextest.WriteFile(t, filepath.Join(src, "f"), content)
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{})
	s := f.catalog().latest()
	n, err := f.findNode(context.Background(), s, "f")
	if err != nil || len(n.Chunks) < 4 {
		t.Fatalf("need a file of several chunks: %v, %d chunks (%s)", err, len(n.Chunks), m.BackupID)
	}
	cr := r.NewChunkReader(4)
	defer cr.Close()
	c := newChunkCache(cr, int64(n.Chunks[0].Size)+1) // room for about one chunk
	offs := []int{0}
	for _, ch := range n.Chunks {
		offs = append(offs, offs[len(offs)-1]+int(ch.Size))
	}
	held, releaseHeld, err := c.get(context.Background(), n.Chunks[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(n.Chunks); i++ {
		data, release, err := c.get(context.Background(), n.Chunks[i])
		if err != nil || !bytes.Equal(data, content[offs[i]:offs[i+1]]) {
			t.Fatalf("chunk %d: %v", i, err)
		}
		release()
	}
	if !bytes.Equal(held, content[:offs[1]]) {
		t.Fatal("a held chunk was overwritten after its eviction")
	}
	releaseHeld()
	// Evicted chunks' buffers are recycled whole, at their pool's size,
	// though a direct read leaves a chunk's bytes a little into its buffer.
	c.mu.Lock()
	if len(c.free) == 0 {
		t.Error("no buffer recycled after evictions")
	}
	for _, b := range c.free {
		g := snapshot.GetBuffer(cap(*b))
		if cap(*g) != cap(*b) {
			t.Errorf("recycled a buffer of %d bytes, not a pool's size (%d): a chunk's slice instead of its buffer", cap(*b), cap(*g))
		}
		snapshot.PutBuffer(g)
	}
	c.mu.Unlock()
	if used, chunks := c.stats(); chunks > 2 || used > int64(n.Chunks[0].Size)+int64(4<<20)+64<<10 {
		t.Errorf("cache holds %d chunks, %d bytes, over its bound", chunks, used)
	}
	done := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			data, release, err := c.get(context.Background(), n.Chunks[2])
			if err == nil {
				if !bytes.Equal(data, content[offs[2]:offs[3]]) {
					err = errors.New("wrong bytes")
				}
				release()
			}
			done <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Errorf("concurrent get: %v", err)
		}
	}
}

// TestInterruptedRequests: the kernel interrupts a request when the reader
// gets a signal (Go programs get many); an interrupted lookup or read must
// never turn into EIO or a damage report. (Found by the benchmark: an open
// failed with EIO under a Go walker.)
func TestInterruptedRequests(t *testing.T) {
	r, repoDir := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "d", "e", "f"), []byte("content"))
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	d := lookup(t, f.Root(), "snapshots", FolderName(m.Created(), time.UTC), "d")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out fuse.EntryOut
	ch, e := d.(fs.NodeLookuper).Lookup(ctx, "e", &out)
	if e != 0 {
		t.Fatalf("lookup with an interrupted request: %v, want it served", e)
	}
	ch2, e := ch.Operations().(fs.NodeLookuper).Lookup(ctx, "f", &out)
	if e != 0 {
		t.Fatalf("lookup: %v", e)
	}
	buf := make([]byte, 100)
	if _, e := ch2.Operations().(fs.NodeReader).Read(ctx, nil, buf, 0); e != 0 && e != syscall.EINTR {
		t.Errorf("interrupted read: %v, want data or EINTR", e)
	}
	if errno(context.Canceled) != syscall.EINTR || errno(fmt.Errorf("load tree x: %w", context.Canceled)) != syscall.EINTR {
		t.Error("a (wrapped) cancellation must map to EINTR")
	}
	trail, err := os.ReadFile(filepath.Join(repoDir, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(trail, []byte("mount_read")) {
		t.Errorf("an interruption was reported as damage:\n%s", trail)
	}
}

// TestReaddirInodesMatchLookup: the inode number a listing gives each
// entry is the one a lookup of it gives (ls -i, find and copiers compare
// d_ino with st_ino). history/ was listed under one key and looked up
// under another.
func TestReaddirInodesMatchLookup(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "d", "f"), []byte("f"))
	if err := os.Link(filepath.Join(src, "d", "f"), filepath.Join(src, "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d/f", filepath.Join(src, "ln")); err != nil {
		t.Fatal(err)
	}
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	name := FolderName(m.Created(), time.UTC)
	for _, dir := range [][]string{nil, {"snapshots"}, {"by-id"}, {"history"}, {"history", "d"}, {"history", "d", "f"},
		{"snapshots", name}, {"by-id", m.BackupID, "d"}} {
		d := f.Root()
		if dir != nil {
			d = lookup(t, f.Root(), dir...)
		}
		var ents []fuse.DirEntry
		if rd, ok := d.(fs.NodeReaddirer); ok {
			ds, errno := rd.Readdir(context.Background())
			if errno != 0 {
				t.Fatalf("readdir %q: %v", dir, errno)
			}
			for ds.HasNext() {
				e, _ := ds.Next()
				ents = append(ents, e)
			}
		} else {
			h, _, errno := d.(fs.NodeOpendirHandler).OpendirHandle(context.Background(), 0)
			if errno != 0 {
				t.Fatalf("opendir %q: %v", dir, errno)
			}
			for {
				e, _ := h.(fs.FileReaddirenter).Readdirent(context.Background())
				if e == nil {
					break
				}
				ents = append(ents, *e)
			}
		}
		if len(ents) == 0 {
			t.Fatalf("%q lists nothing", dir)
		}
		for _, e := range ents {
			var out fuse.EntryOut
			ch, errno := d.(fs.NodeLookuper).Lookup(context.Background(), e.Name, &out)
			if errno != 0 {
				t.Fatalf("lookup %q in %q: %v", e.Name, dir, errno)
			}
			if ino := ch.StableAttr().Ino; ino != e.Ino {
				t.Errorf("%q in %q: listed as inode %d, looked up as %d", e.Name, dir, e.Ino, ino)
			}
		}
	}
}

// TestClosedFSLeavesRepoAlone: once Close has returned, requests still
// arriving (open files of a lazily unmounted mount whose command was
// stopped with a second Ctrl-C, just before the repository is closed)
// fail with EIO and never touch the repository: no pack is opened again,
// no tree is read, no snapshot list is read.
func TestClosedFSLeavesRepoAlone(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "d", "e", "f"), indextest.RandomBytes(5, 100<<10))
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(context.Background(), r, Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	fs.NewNodeFS(f.Root(), &fs.Options{})
	d := lookup(t, f.Root(), "snapshots", FolderName(m.Created(), time.UTC), "d")
	e := lookup(t, d, "e")
	file := lookup(t, e, "f")
	hist := lookup(t, f.Root(), "history")
	f.Close()

	if _, errno := file.(fs.NodeReader).Read(context.Background(), nil, make([]byte, 4096), 0); errno != syscall.EIO {
		t.Errorf("read after Close: %v, want EIO", errno)
	}
	var out fuse.EntryOut
	if _, errno := lookup(t, f.Root(), "by-id", m.BackupID).(fs.NodeLookuper).Lookup(context.Background(), "d", &out); errno != syscall.EIO {
		t.Errorf("lookup in an unread directory after Close: %v, want EIO", errno)
	}
	if _, errno := hist.(fs.NodeReaddirer).Readdir(context.Background()); errno != syscall.EIO {
		t.Errorf("history listing after Close: %v, want EIO", errno)
	}
	if err := f.Refresh(context.Background()); err == nil {
		t.Error("Refresh after Close succeeded, want an error")
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); strings.HasSuffix(l, ".pack") {
			t.Errorf("a pack is open after Close: %s", l)
		}
	}
}

// TestChunkCacheEvictionOrder: over its budget the cache drops a chunk
// answered in full before one loaded ahead and not yet read, never a chunk
// a reader holds, and borrows the room of group frames the reader keeps
// none of (frames of small files it drops when a large chunk needs the
// room). Before, a sequential read through the mount, whose kernel keeps
// about ten 1 MiB requests in flight, loaded a model file's chunks 1.4
// times over.
func TestChunkCacheEvictionOrder(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	content := indextest.RandomBytes(5, 12<<20)
	indextest.WriteFile(t, filepath.Join(src, "big"), content)
	for i := range 8 { // small files, compressible: one group frame
		indextest.WriteFile(t, filepath.Join(src, "small", fmt.Sprint(i)), bytes.Repeat([]byte(fmt.Sprintf("line %d of a small file\n", i)), 800))
	}
	if _, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src}); err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{})
	s := f.catalog().latest()
	n, err := f.findNode(context.Background(), s, "big")
	if err != nil || len(n.Chunks) < 5 {
		t.Fatalf("need a file of several chunks: %v", err)
	}
	small, err := f.findNode(context.Background(), s, "small/0")
	if err != nil {
		t.Fatal(err)
	}
	cr := r.NewChunkReader(4)
	defer cr.Close()
	cr.KeepGroups(2)
	largest := 0
	for _, ch := range n.Chunks[:4] {
		largest = max(largest, snapshot.BufferSize(int(ch.Size)))
	}
	c := newChunkCache(cr, int64(2*largest)+int64(largest)/2) // two chunks and a half
	defer c.close()
	cached := func(ch snapshot.ChunkRef) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.m[ch.ID]
		return ok
	}
	load := func(ch snapshot.ChunkRef) {
		t.Helper()
		_, release, err := c.get(context.Background(), ch)
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	ch := n.Chunks
	load(ch[0])
	load(ch[1])
	c.spent(ch[1].ID, int(ch[1].Size)/2) // half of it answered: not spent yet
	load(ch[2])
	if cached(ch[0]) || !cached(ch[1]) || !cached(ch[2]) {
		t.Fatalf("with nothing read in full the least recently used goes: chunk 0 cached %v, 1 %v, 2 %v", cached(ch[0]), cached(ch[1]), cached(ch[2]))
	}
	load(ch[1])                                          // used again: more recent than chunk 2
	c.spent(ch[1].ID, int(ch[1].Size)-int(ch[1].Size)/2) // the rest: spent
	load(ch[3])
	if cached(ch[1]) || !cached(ch[2]) || !cached(ch[3]) {
		t.Fatalf("a chunk answered in full must go before one loaded and not read: chunk 1 cached %v, 2 %v, 3 %v", cached(ch[1]), cached(ch[2]), cached(ch[3]))
	}
	held, releaseHeld, err := c.get(context.Background(), ch[2])
	if err != nil {
		t.Fatal(err)
	}
	load(ch[4])
	load(ch[0])
	if !cached(ch[2]) {
		t.Fatal("a chunk a reader holds was dropped from the cache")
	}
	if !bytes.Equal(held, content[int(ch[0].Size)+int(ch[1].Size):][:ch[2].Size]) {
		t.Fatal("a held chunk's bytes changed")
	}
	releaseHeld()

	// Lending: a frame kept takes its room back; a large chunk's load
	// trims the frames nobody reads, and the cache may use their room.
	c.lend = cr.GroupCacheIdle
	if idle := cr.GroupCacheIdle(); idle != 2*snapshot.GroupFrameBytes() {
		t.Fatalf("no frame kept, %d bytes idle, want %d", idle, 2*snapshot.GroupFrameBytes())
	}
	load(small.Chunks[0])
	if idle := cr.GroupCacheIdle(); idle != snapshot.GroupFrameBytes() {
		t.Fatalf("one frame kept, %d bytes idle, want %d", idle, snapshot.GroupFrameBytes())
	}
	for _, x := range ch[:5] {
		load(x)
	}
	if idle := cr.GroupCacheIdle(); idle != 2*snapshot.GroupFrameBytes() {
		t.Fatalf("the frame was not trimmed for large chunks: %d bytes idle", idle)
	}
	if used, chunks := c.stats(); used > c.max+cr.GroupCacheIdle() || chunks < 3 {
		t.Fatalf("cache holds %d chunks, %d bytes: want more than its own budget's two, within budget and lent room (%d)", chunks, used, c.max+cr.GroupCacheIdle())
	}
}

// TestChunkCacheCraftedSize: a chunk size from a crafted tree (up to
// 4 GiB) must not be allocated before the load has checked the chunk; the
// load fails cleanly instead.
func TestChunkCacheCraftedSize(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	cr := r.NewChunkReader(4)
	defer cr.Close()
	c := newChunkCache(cr, 1<<20)
	defer c.close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := c.get(context.Background(), snapshot.ChunkRef{ID: snapshot.Hash([]byte("nowhere")), Size: 1<<32 - 1})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a chunk no pack holds loaded")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("loading a chunk that claims 4 GiB allocated %d MiB", grew>>20)
	}
}

// TestChunkCacheRecyclesRecentSizes: the free list keeps the buffers
// released last. Reading a database (16 KiB pages) fills it with small
// buffers; the model file read next must then get its 1 MiB buffers back
// from the list instead of allocating each anew (issue 4: with a list that
// kept its first buffers, every large chunk was a new allocation and the
// collector ran all the time).
func TestChunkCacheRecyclesRecentSizes(t *testing.T) {
	c := newChunkCache(nil, 16<<20)
	for i := 0; i < maxFree/(16<<10)+8; i++ { // more small buffers than the list holds
		c.mu.Lock()
		c.recycleLocked(snapshot.GetBuffer(16 << 10))
		c.mu.Unlock()
	}
	big := map[*[]byte]bool{}
	for i := 0; i < 4; i++ {
		b := snapshot.GetBuffer(1 << 20)
		big[b] = true
		c.mu.Lock()
		c.recycleLocked(b)
		c.mu.Unlock()
	}
	if c.freeBytes > maxFree {
		t.Fatalf("free list holds %d bytes, over its bound %d", c.freeBytes, maxFree)
	}
	runtime.GC() // empties the shared pools: a buffer that went there is gone
	runtime.GC()
	for i := 0; i < 4; i++ {
		c.mu.Lock()
		b := c.takeLocked(1<<20 + snapshot.DecodeSlack)
		c.mu.Unlock()
		if !big[b] {
			t.Fatalf("take %d of a 1 MiB buffer: a new buffer (cap %d), not one of the four just released", i, cap(*b))
		}
		delete(big, b)
	}
	c.mu.Lock()
	b := c.takeLocked(16 << 10)
	c.mu.Unlock()
	if cap(*b) < 16<<10 || cap(*b) > 2*(16<<10)+64<<10 {
		t.Fatalf("a 16 KiB take got a buffer of %d bytes", cap(*b))
	}
}

// TestReadaheadRuns: a file of 16 KiB chunks (a database) is read ahead in
// runs, each loaded in order by one goroutine: repeated calls (a reader's
// next requests) keep about readaheadBytes decoded ahead, every chunk
// checked and byte-exact, and not much more.
func TestReadaheadRuns(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	content := indextest.RandomBytes(9, 8<<20)
	copy(content, "SQLite format 3\x00")
	content[16], content[17] = 0x10, 0x00 // 4 KiB pages: cut into fixed chunks
	indextest.WriteFile(t, filepath.Join(src, "app.db"), content)
	if _, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src}); err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{})
	n, err := f.findNode(context.Background(), f.catalog().latest(), "app.db")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Chunks) < 256 || n.Chunks[1].Size > 64<<10 {
		t.Fatalf("want a file of small fixed chunks, got %d chunks of %d bytes", len(n.Chunks), n.Chunks[1].Size)
	}
	ahead := n.Chunks[1:]
	cached := func() (chunks, size int) {
		f.chunks.mu.Lock()
		defer f.chunks.mu.Unlock()
		for _, ch := range ahead {
			if _, ok := f.chunks.m[ch.ID]; ok {
				chunks++
				size += int(ch.Size)
			}
		}
		return chunks, size
	}
	for i := 0; i < 32; i++ {
		f.readahead(ahead)
		f.chunks.bgLoads.Wait()
	}
	chunks, size := cached()
	if size < readaheadBytes || size > readaheadBytes+runBytes {
		t.Fatalf("%d chunks (%d bytes) read ahead, want about %d bytes", chunks, size, readaheadBytes)
	}
	for k := 0; k < chunks; k++ { // the window is the next chunks, in order
		if _, ok := f.chunks.m[ahead[k].ID]; !ok {
			t.Fatalf("chunk %d of the window was skipped", k)
		}
	}
	off := int(n.Chunks[0].Size)
	for k := 0; k < chunks; k++ {
		data, release, err := f.chunks.get(context.Background(), ahead[k])
		if err != nil || !bytes.Equal(data, content[off:off+int(ahead[k].Size)]) {
			t.Fatalf("chunk %d read ahead: %v, or bytes differ from the source", k+1, err)
		}
		release()
		off += int(ahead[k].Size)
	}
}

// treeQueueIdle waits until the tree prefetch queue is drained and its
// workers have stopped.
func treeQueueIdle(t *testing.T, c *chunkCache) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		idle := len(c.trees) == 0 && c.treeWorkers == 0
		c.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the tree prefetch queue did not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestListingPrefetchesSubtrees: listing a directory loads its
// subdirectories' trees ahead, each once, and a listing that finds them
// cached loads nothing again; their listings are those of the snapshot.
// Closing the file system while trees are queued stops the workers (run
// with -race).
func TestListingPrefetchesSubtrees(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	for i := range 5 {
		indextest.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d", i), "sub", "f"), []byte{byte(i)})
	}
	indextest.WriteFile(t, filepath.Join(src, "top"), []byte("top"))
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	snap := lookup(t, f.Root(), "snapshots", FolderName(m.Created(), time.UTC)).(*treeDir)
	if _, _, errno := snap.OpendirHandle(context.Background(), 0); errno != 0 {
		t.Fatal(errno)
	}
	treeQueueIdle(t, f.chunks)
	if got := f.chunks.treesAhead.Load(); got != 5 {
		t.Fatalf("listing the snapshot loaded %d trees ahead, want its 5 directories'", got)
	}
	for i := range 5 {
		d := lookup(t, snap, fmt.Sprintf("d%d", i)).(*treeDir)
		h, _, errno := d.OpendirHandle(context.Background(), 0)
		if errno != 0 {
			t.Fatal(errno)
		}
		if ents := h.(*dirHandle).ents; len(ents) != 1 || ents[0].Name != "sub" {
			t.Fatalf("d%d lists %v", i, ents)
		}
	}
	treeQueueIdle(t, f.chunks)
	if got := f.chunks.treesAhead.Load(); got != 10 {
		t.Fatalf("after listing d0..d4, %d trees loaded ahead, want 10 (each sub once)", got)
	}
	if _, _, errno := snap.OpendirHandle(context.Background(), 0); errno != 0 {
		t.Fatal(errno)
	}
	treeQueueIdle(t, f.chunks)
	if got := f.chunks.treesAhead.Load(); got != 10 {
		t.Fatalf("listing again loaded %d trees ahead, want none (cached)", got-10)
	}

	// A long queue, then Close: the workers stop, nothing is read after.
	ids := make([]snapshot.ID, treeQueueMax)
	for i := range ids {
		ids[i][0], ids[i][1] = byte(i), byte(i>>8) // not stored: each a lookup
	}
	f.chunks.prefetchTrees(ids)
	f.Close()
	f.chunks.mu.Lock()
	left, workers := len(f.chunks.trees), f.chunks.treeWorkers
	f.chunks.mu.Unlock()
	if left != 0 || workers != 0 {
		t.Fatalf("after Close: %d trees queued, %d workers", left, workers)
	}
	f.chunks.prefetchTrees(ids[:1])
	if f.chunks.treeWorkers != 0 {
		t.Fatal("a worker started after Close")
	}
}

// TestDecodedBudget: the decoded group frames the chunk reader keeps
// count inside the mount's budget for decoded data, at their real size:
// mountGroups of them, or as many as take at most 5/8 of a smaller budget;
// a budget too small for one goes to the chunk cache whole (one frame on
// top).
func TestDecodedBudget(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	frame := snapshot.GroupFrameBytes()
	if frame < 1<<20 || frame > 5<<20/4 {
		t.Fatalf("a decoded frame takes %d bytes; want 1 MiB and a little", frame)
	}
	for _, c := range []struct {
		budget int64
		groups int
		shared bool
	}{
		{DefaultCacheBytes, mountGroups, true},
		{64 << 20, mountGroups, true},
		{(mountGroups*frame*8 + 4) / 5, mountGroups, true},
		{(mountGroups*frame*8+4)/5 - 8, mountGroups - 1, true},
		{8 << 20, 4, true},
		{(frame*8 + 4) / 5, 1, true},
		{(frame*8+4)/5 - 8, 1, false},
		{1 << 20, 1, false},
	} {
		f := newTestFS(t, r, Options{CacheBytes: c.budget})
		g := f.cr.GroupCacheBytes()
		if g != int64(c.groups)*frame {
			t.Errorf("budget %d: %d bytes of frames kept, want %d frames of %d", c.budget, g, c.groups, frame)
		}
		want := c.budget
		if c.shared {
			want -= g
		}
		if f.chunks.max != want {
			t.Errorf("budget %d: chunk cache %d, want %d", c.budget, f.chunks.max, want)
		}
	}
}

// TestAccess: without --allow-other the kernel asks the file system for
// access(2) and before a chdir; the mount's owner may read and enter
// anything, whatever mode and owner were stored, and nobody may write.
func TestAccess(t *testing.T) {
	n := &node{}
	for _, c := range []struct {
		mask uint32
		want syscall.Errno
	}{
		{unix.R_OK, 0}, {unix.X_OK, 0}, {unix.R_OK | unix.X_OK, 0}, {unix.F_OK, 0},
		{unix.W_OK, syscall.EROFS}, {unix.R_OK | unix.W_OK, syscall.EROFS},
	} {
		if got := n.Access(context.Background(), c.mask); got != c.want {
			t.Errorf("access mask %#o: %v, want %v", c.mask, got, c.want)
		}
	}
}

// TestTopLevelTimes: the top level's folders (the root, snapshots/,
// by-id/, history/ and the folders in it, README.txt, latest) carry the
// newest snapshot's creation time, so an unchanged repository shows the
// same times at every mount (a copy of history/ with `rsync -a` stays
// unchanged). A refresh that finds nothing new keeps them; one that finds
// a new snapshot moves them forward, which tells the kernel its cached
// listings are stale.
func TestTopLevelTimes(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "d", "f"), []byte("one"))
	// An empty repository's top level: when the repository was created.
	created, err := time.Parse(time.RFC3339, r.Config().CreatedUTC)
	if err != nil {
		t.Fatal(err)
	}
	var a fuse.AttrOut
	if newTestFS(t, r, Options{Location: time.UTC}).Root().(fs.NodeGetattrer).Getattr(context.Background(), nil, &a); int64(a.Mtime) != created.Unix() {
		t.Errorf("an empty repository's top level is dated %v, want its creation %v", time.Unix(int64(a.Mtime), 0), created)
	}
	m1, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	times := func(f *FS) map[string]int64 {
		t.Helper()
		out := map[string]int64{}
		for _, p := range [][]string{{}, {"snapshots"}, {"by-id"}, {"history"}, {"history", "d"}, {"README.txt"}, {"latest"}} {
			n := fs.InodeEmbedder(f.Root())
			if len(p) > 0 {
				n = lookup(t, f.Root(), p...)
			}
			var a fuse.AttrOut
			if errno := n.(fs.NodeGetattrer).Getattr(context.Background(), nil, &a); errno != 0 {
				t.Fatalf("getattr /%s: %v", strings.Join(p, "/"), errno)
			}
			out["/"+strings.Join(p, "/")] = int64(a.Mtime)*1e9 + int64(a.Mtimensec)
		}
		return out
	}
	want := func(what string, got map[string]int64, ns int64) {
		t.Helper()
		for p, v := range got {
			if v != ns {
				t.Errorf("%s: mtime of %s is %v, want %v", what, p, time.Unix(0, v), time.Unix(0, ns))
			}
		}
	}
	f1 := newTestFS(t, r, Options{Location: time.UTC})
	first := times(f1)
	want("first mount", first, m1.Created().UnixNano())
	time.Sleep(10 * time.Millisecond)
	if err := f1.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	want("a refresh that found nothing new", times(f1), m1.Created().UnixNano())
	f2 := newTestFS(t, r, Options{Location: time.UTC})
	want("a second mount", times(f2), m1.Created().UnixNano())

	indextest.WriteFile(t, filepath.Join(src, "d", "f"), []byte("two"))
	m2, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := f1.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	moved := times(f1)
	ns := moved["/"]
	want("after a new snapshot", moved, ns)
	if ns < before.UnixNano() || ns <= m1.Created().UnixNano() {
		t.Errorf("after a new snapshot the top level's mtime is %v; want it moved forward, to the refresh (after %v)", time.Unix(0, ns), before)
	}
	f3 := newTestFS(t, r, Options{Location: time.UTC})
	want("a mount after the new snapshot", times(f3), m2.Created().UnixNano())
}

// TestLatestSkipsSafety: latest is the newest regular snapshot, as for the
// CLI: a safety snapshot taken before an in-place restore (often of one
// unit) is latest only when it is the only snapshot.
func TestLatestSkipsSafety(t *testing.T) {
	ctx := context.Background()
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "f"), []byte("one"))
	safetyOnly, err := r.Backup(ctx, snapshot.BackupOptions{Root: src, Tags: []string{"safety", "pinned"}})
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	target := func() string {
		t.Helper()
		got, errno := lookup(t, f.Root(), "latest").(fs.NodeReadlinker).Readlink(ctx)
		if errno != 0 {
			t.Fatalf("readlink latest: %v", errno)
		}
		return string(got)
	}
	if got, want := target(), "snapshots/"+FolderName(safetyOnly.Created(), time.UTC); got != want {
		t.Errorf("with only a safety snapshot, latest -> %s, want %s", got, want)
	}
	time.Sleep(1100 * time.Millisecond) // folder names have seconds
	regular, err := r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := r.Backup(ctx, snapshot.BackupOptions{Root: src, Tags: []string{"safety", "pinned"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := target(), "snapshots/"+FolderName(regular.Created(), time.UTC); got != want {
		t.Errorf("latest -> %s, want the newest regular snapshot %s", got, want)
	}
}

// TestFolderNamesSortAsTaken: snapshots taken within the same second get
// suffixes that keep the folder names in the order the snapshots were
// taken (_002 … _012, where _2 … _12 sorted _10 before _2), so `ls
// snapshots | tail -1` is the newest.
func TestFolderNamesSortAsTaken(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2026, 11, 29, 23, 20, 26, 0, time.UTC)
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) {
		o.Now = func() time.Time { // 12 backups within one second
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(time.Millisecond)
			return now
		}
	})
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "f"), []byte("x"))
	for range 12 {
		if _, err := r.Backup(ctx, snapshot.BackupOptions{Root: src}); err != nil {
			t.Fatal(err)
		}
	}
	f := newTestFS(t, r, Options{Location: time.UTC})
	var names []string
	for _, s := range f.catalog().snaps {
		names = append(names, s.name)
	}
	want := []string{"2026-11-29_23-20-26"}
	for i := 2; i <= 12; i++ {
		want = append(want, fmt.Sprintf("2026-11-29_23-20-26_%03d", i))
	}
	if !slices.Equal(names, want) {
		t.Errorf("folder names in the order taken %q, want %q", names, want)
	}
	if !slices.IsSorted(names) {
		t.Errorf("folder names in the order taken %q do not sort that way", names)
	}
}
