package fusefs

import (
	"context"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"snapforge/snapshot"
)

// Views. A directory's inode key holds its view, so the same snapshot
// folder reached through snapshots/, by-id/ and by-unit/ is three distinct
// directories (the kernel allows a directory one name). Files, symlinks and
// special files use the snapshots view's key wherever they are seen: one
// inode, shared page cache, like hard links.
const (
	viewSnapshots = "s"
	viewByID      = "i"
	viewUnit      = "u:" // + unit name
)

func contentKey(s *snapInfo, rel string) string { return "s\x00" + s.id + "\x00" + rel }

func dirKey(view string, s *snapInfo, rel string) string {
	return "d\x00" + view + "\x00" + s.id + "\x00" + rel
}

// node is what every node embeds: the inode, the file system, and the
// number it holds in the inode table.
type node struct {
	fs.Inode
	f   *FS
	ino uint64
}

var _ = (fs.NodeAccesser)((*node)(nil))
var _ = (fs.NodeStatfser)((*node)(nil))

// Statfs answers df and statvfs: the size of the file system that holds
// the repository (what the snapshots take up lives there), nothing free (a
// read-only file system has no room to give), and names of up to 255
// bytes. Without it every field is 0: df showed a 0-byte disk, and
// pathconf(_PC_NAME_MAX), which programs size name buffers by, said 0.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st unix.Statfs_t
	if err := unix.Statfs(n.f.repo.Path(), &st); err != nil {
		return fs.ToErrno(err)
	}
	*out = fuse.StatfsOut{}
	out.Blocks = st.Blocks
	out.Bsize = uint32(st.Bsize)
	out.Frsize = uint32(st.Frsize)
	out.Files = uint64(n.f.inos.len())
	out.NameLen = 255
	return 0
}

// Access answers access(2), and the kernel's check before a chdir, which
// it asks of the file system only without default_permissions: without
// --allow-other, when nobody but the mount's owner reaches the mount. The
// owner may read and enter everything, whatever owner and mode were
// stored (they hold the repository the bytes come from: a snapshot of
// another uid's 0700 folder, mounted from a copy of the repository, must
// not be shut to them). Nothing may be written.
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&unix.W_OK != 0 {
		return syscall.EROFS
	}
	return 0
}

var _ = (fs.NodeOnForgetter)((*node)(nil))

// OnForget frees the inode number once the kernel has forgotten the node.
func (n *node) OnForget() {
	if n.ino > 1 {
		n.f.inos.release(n.ino)
	}
}

// newChild returns the inode for ops, which holds key's number.
func (f *FS) newChild(ctx context.Context, parent *fs.Inode, ops fs.InodeEmbedder, base *node, mode uint32, key string) *fs.Inode {
	base.f = f
	base.ino = f.inos.acquire(key)
	return parent.NewInode(ctx, ops, fs.StableAttr{Mode: mode, Ino: base.ino})
}

// dirAttr fills the attributes of a synthetic directory.
func (f *FS) dirAttr(a *fuse.Attr, ino uint64, mtime time.Time) {
	a.Ino = ino
	a.Mode = fuse.S_IFDIR | 0o555
	a.Nlink = 1 // unknown: find must not skip subdirectories by counting links
	a.Uid, a.Gid = f.uid, f.gid
	a.Size = 4096
	a.Blksize = 4096
	a.SetTimes(&mtime, &mtime, &mtime)
}

// shortEntry marks a top-level answer: asked again after topTimeout.
func shortEntry(out *fuse.EntryOut) {
	out.SetEntryTimeout(topTimeout)
	out.SetAttrTimeout(topTimeout)
}

// noNegative keeps the kernel from remembering a missing top-level name
// (a snapshot may land there any moment).
func noNegative(out *fuse.EntryOut) syscall.Errno {
	out.SetEntryTimeout(time.Millisecond)
	return syscall.ENOENT
}

// rootNode is the mount's root.
type rootNode struct {
	node
}

var _ = (fs.NodeLookuper)((*rootNode)(nil))
var _ = (fs.NodeReaddirer)((*rootNode)(nil))
var _ = (fs.NodeGetattrer)((*rootNode)(nil))

// Getattr of the root.
func (r *rootNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.f.dirAttr(&out.Attr, 1, r.f.topMtime())
	out.SetTimeout(topTimeout)
	return 0
}

var topNames = []string{"README.txt", "by-id", "by-unit", "history", "latest", "snapshots"}

// Readdir lists the top level.
func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var ents []fuse.DirEntry
	for _, name := range topNames {
		mode := uint32(fuse.S_IFDIR)
		switch name {
		case "README.txt":
			mode = fuse.S_IFREG
		case "latest":
			if r.f.catalog().latest() == nil {
				continue
			}
			mode = fuse.S_IFLNK
		}
		ents = append(ents, fuse.DirEntry{Name: name, Mode: mode, Ino: r.f.inos.peek(topKey(name))})
	}
	return fs.NewListDirStream(ents), 0
}

// topKey is the inode key of a top-level entry; history/ is the history
// folder of the root path, "h\x00" like every history folder.
func topKey(name string) string {
	if name == "history" {
		return histKey("")
	}
	return "top\x00" + name
}

// histKey is the inode key of history/<rel>.
func histKey(rel string) string { return "h\x00" + rel }

// Lookup finds a top-level entry.
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := r.f
	key := topKey(name)
	shortEntry(out)
	switch name {
	case "README.txt":
		n := &staticFile{data: readme}
		ch := f.newChild(ctx, r.EmbeddedInode(), n, &n.node, fuse.S_IFREG, key)
		n.fill(&out.Attr, f)
		out.SetAttrTimeout(contentTimeout)
		return ch, 0
	case "latest":
		if f.catalog().latest() == nil {
			return nil, noNegative(out)
		}
		n := &latestNode{}
		ch := f.newChild(ctx, r.EmbeddedInode(), n, &n.node, fuse.S_IFLNK, key)
		n.fill(&out.Attr)
		return ch, 0
	case "snapshots", "by-id", "by-unit":
		n := &listNode{kind: name}
		ch := f.newChild(ctx, r.EmbeddedInode(), n, &n.node, fuse.S_IFDIR, key)
		f.dirAttr(&out.Attr, n.ino, f.topMtime())
		return ch, 0
	case "history":
		n := &histDir{}
		ch := f.newChild(ctx, r.EmbeddedInode(), n, &n.node, fuse.S_IFDIR, key)
		f.histAttr(&out.Attr, n.ino)
		return ch, 0
	}
	return nil, noNegative(out)
}

// listNode is snapshots/, by-id/, by-unit/ or by-unit/<unit>/.
type listNode struct {
	node
	kind string // "snapshots", "by-id", "by-unit", "unit"
	unit string
}

var _ = (fs.NodeLookuper)((*listNode)(nil))
var _ = (fs.NodeReaddirer)((*listNode)(nil))
var _ = (fs.NodeGetattrer)((*listNode)(nil))

// Getattr of a listing directory.
func (l *listNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.f.dirAttr(&out.Attr, l.ino, l.f.topMtime())
	out.SetTimeout(topTimeout)
	return 0
}

// damagedName is the note shown in snapshots/ for a snapshot whose
// manifest cannot be read: never silently left out.
func damagedName(id string) string { return id + ".DAMAGED.txt" }

// entries lists the directory: name -> snapshot (nil for a unit folder or
// a damaged note) in name order.
func (l *listNode) entries() []listEntry {
	c := l.f.catalog()
	var out []listEntry
	switch l.kind {
	case "snapshots":
		for _, s := range c.snaps {
			out = append(out, listEntry{name: s.name, snap: s})
		}
		for _, d := range c.damaged {
			out = append(out, listEntry{name: damagedName(d.BackupID), damaged: &d})
		}
	case "by-id":
		for _, s := range c.snaps {
			out = append(out, listEntry{name: s.id, snap: s})
		}
	case "by-unit":
		units := map[string]bool{}
		for u := range c.byUnit {
			units[u] = true
		}
		for u := range l.f.opts.Units {
			units[u] = true
		}
		for u := range units {
			out = append(out, listEntry{name: u})
		}
	case "unit":
		for _, s := range c.byUnit[l.unit] {
			out = append(out, listEntry{name: s.name, snap: s})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

type listEntry struct {
	name    string
	snap    *snapInfo
	damaged *snapshot.SnapshotEntry
}

func (l *listNode) view() string {
	switch l.kind {
	case "by-id":
		return viewByID
	case "unit":
		return viewUnit + l.unit
	}
	return viewSnapshots
}

// Readdir lists snapshots or units.
func (l *listNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents := l.entries()
	out := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		switch {
		case e.snap != nil:
			out = append(out, fuse.DirEntry{Name: e.name, Mode: fuse.S_IFDIR, Ino: l.f.inos.peek(dirKey(l.view(), e.snap, ""))})
		case e.damaged != nil:
			out = append(out, fuse.DirEntry{Name: e.name, Mode: fuse.S_IFREG, Ino: l.f.inos.peek("damaged\x00" + e.name)})
		default:
			out = append(out, fuse.DirEntry{Name: e.name, Mode: fuse.S_IFDIR, Ino: l.f.inos.peek("unit\x00" + e.name)})
		}
	}
	return fs.NewListDirStream(out), 0
}

// Lookup finds a snapshot folder, a unit folder or a damaged note.
func (l *listNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := l.f
	shortEntry(out)
	for _, e := range l.entries() {
		if e.name != name {
			continue
		}
		switch {
		case e.snap != nil:
			d := &treeDir{snap: e.snap, view: l.view(), subtree: e.snap.tree}
			if l.kind == "unit" {
				d.filter, _ = f.unitPaths(e.snap, l.unit) // known: listed under the unit only then
			}
			ch := f.newChild(ctx, l.EmbeddedInode(), d, &d.node, fuse.S_IFDIR, dirKey(d.view, e.snap, ""))
			d.fill(&out.Attr)
			out.SetAttrTimeout(contentTimeout)
			return ch, 0
		case e.damaged != nil:
			n := &staticFile{data: []byte("snapshot " + e.damaged.BackupID + " cannot be shown: " + e.damaged.Err.Error() +
				"\nIts manifest is damaged or unreadable. Run `snapforge verify` for details; other snapshots are unaffected.\n")}
			ch := f.newChild(ctx, l.EmbeddedInode(), n, &n.node, fuse.S_IFREG, "damaged\x00"+name)
			n.fill(&out.Attr, f)
			return ch, 0
		default:
			u := &listNode{kind: "unit", unit: name}
			ch := f.newChild(ctx, l.EmbeddedInode(), u, &u.node, fuse.S_IFDIR, "unit\x00"+name)
			f.dirAttr(&out.Attr, u.ino, f.topMtime())
			return ch, 0
		}
	}
	return nil, noNegative(out)
}

// treeDir is a directory inside a snapshot.
type treeDir struct {
	node
	snap    *snapInfo
	view    string
	rel     string // raw path from the snapshot root; "" for the root
	subtree snapshot.ID
	meta    *snapshot.Node // nil for the snapshot root
	// filter, when set, shows only these paths (cleaned, relative to the
	// snapshot root) and the directories leading to them: a unit's view.
	filter []string

	mu   sync.Mutex
	tree *snapshot.Tree
}

var _ = (fs.NodeLookuper)((*treeDir)(nil))
var _ = (fs.NodeOpendirHandler)((*treeDir)(nil))
var _ = (fs.NodeGetattrer)((*treeDir)(nil))
var _ = (fs.NodeGetxattrer)((*treeDir)(nil))
var _ = (fs.NodeListxattrer)((*treeDir)(nil))

func (d *treeDir) fill(a *fuse.Attr) {
	if d.meta == nil {
		d.f.rootAttr(a, d.snap, d.ino)
		return
	}
	fillAttr(a, d.meta, d.ino, 1)
}

// rootAttr fills the attributes of a snapshot's folder (its source root):
// the root's mode, owner and mtime as recorded. A snapshot that did not
// record them shows 0700 and the mount's owner: no other user (with
// --allow-other) sees more through the mount than the source may have let
// them.
func (f *FS) rootAttr(a *fuse.Attr, s *snapInfo, ino uint64) {
	f.dirAttr(a, ino, s.created)
	r := s.rootDir
	if r == nil {
		a.Mode = fuse.S_IFDIR | 0o700
		return
	}
	a.Mode = fuse.S_IFDIR | r.Mode&0o7777
	a.Uid, a.Gid = r.UID, r.GID
	t := time.Unix(0, r.MTime)
	a.SetTimes(&t, &t, &t)
}

// histAttr fills the attributes of a history/ folder. history/<path> shows
// the versions of a path from every snapshot, where the directories above
// it may have had other permissions than now: with --allow-other its
// folders are the mount owner's alone (0500), so history never opens a
// file to a user whom the directories of its snapshot kept out. Each
// version keeps its own stored mode and owner.
func (f *FS) histAttr(a *fuse.Attr, ino uint64) {
	f.dirAttr(a, ino, f.topMtime())
	if f.opts.AllowOther {
		a.Mode = fuse.S_IFDIR | 0o500
	}
}

// Getattr returns the directory's stored attributes.
func (d *treeDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fill(&out.Attr)
	out.SetTimeout(contentTimeout)
	return 0
}

// load returns the directory's tree, decoded once while the node lives.
func (d *treeDir) load(ctx context.Context) (*snapshot.Tree, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tree != nil {
		return d.tree, 0
	}
	if !d.f.life.enter() {
		return nil, syscall.EIO
	}
	defer d.f.life.leave()
	// Not cancelled with the request that asked first: others may wait for
	// the same directory, and the kernel interrupts requests whenever the
	// reader gets a signal (a Go program gets many).
	t, err := d.f.cr.LoadTree(context.WithoutCancel(ctx), d.subtree)
	if err != nil {
		d.f.reportDamage(d.snap, d.rel+"/", err)
		return nil, errno(err)
	}
	d.tree = t
	var subs []snapshot.ID
	for _, n := range t.Nodes {
		if n.Type == snapshot.TypeDir {
			if ok, _ := visible(d.filter, d.childRel(n.Name)); ok {
				subs = append(subs, n.Subtree)
			}
		}
	}
	d.f.chunks.prefetchTrees(subs)
	return t, 0
}

func (d *treeDir) childRel(name string) string {
	if d.rel == "" {
		return name
	}
	return d.rel + "/" + name
}

// visible reports whether rel is shown under the filter, and the filter
// for its children (nil once rel is inside a unit path).
func visible(filter []string, rel string) (bool, []string) {
	if filter == nil {
		return true, nil
	}
	var deeper []string
	for _, p := range filter {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true, nil
		}
		if strings.HasPrefix(p, rel+"/") {
			deeper = append(deeper, p)
		}
	}
	return deeper != nil, deeper
}

// OpendirHandle lists the directory once per open; the kernel may cache
// the listing (the content never changes).
func (d *treeDir) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	t, e := d.load(ctx)
	if e != 0 {
		return nil, 0, e
	}
	ents := make([]fuse.DirEntry, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		rel := d.childRel(n.Name)
		if ok, _ := visible(d.filter, rel); !ok {
			continue
		}
		var key string
		switch n.Type {
		case snapshot.TypeDir:
			key = dirKey(d.view, d.snap, rel)
		case snapshot.TypeHardlink:
			key = contentKey(d.snap, n.Target)
		default:
			key = contentKey(d.snap, rel)
		}
		ents = append(ents, fuse.DirEntry{Name: n.Name, Mode: typeBits(n), Ino: d.f.inos.peek(key)})
	}
	return &dirHandle{ents: ents}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// Lookup finds a child in the snapshot tree.
func (d *treeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	out.SetEntryTimeout(contentTimeout)
	out.SetAttrTimeout(contentTimeout)
	t, e := d.load(ctx)
	if e != 0 {
		return nil, e
	}
	n := t.Find(name)
	if n == nil {
		out.SetEntryTimeout(0) // cached as missing for the mount's negative timeout
		return nil, syscall.ENOENT
	}
	rel := d.childRel(name)
	ok, deeper := visible(d.filter, rel)
	if !ok {
		out.SetEntryTimeout(0)
		return nil, syscall.ENOENT
	}
	ch, e := d.f.snapChild(ctx, d.EmbeddedInode(), d.snap, d.view, rel, n, deeper, out)
	if fl, ok := ch.Operations().(*fileNode); ok && e == 0 && fl.next == nil {
		i := sort.Search(len(t.Nodes), func(i int) bool { return t.Nodes[i].Name >= name })
		fl.setNext(t.Nodes[i+1:])
	}
	return ch, e
}

// Getxattr returns a stored extended attribute (with --xattrs).
func (d *treeDir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(d.meta, attr, dest)
}

// Listxattr lists the stored extended attributes (with --xattrs).
func (d *treeDir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(d.meta, dest)
}

// snapChild makes the node for tree entry n at rel in snapshot s.
func (f *FS) snapChild(ctx context.Context, parent *fs.Inode, s *snapInfo, view, rel string, n *snapshot.Node, filter []string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	switch n.Type {
	case snapshot.TypeDir:
		d := &treeDir{snap: s, view: view, rel: rel, subtree: n.Subtree, meta: n, filter: filter}
		ch := f.newChild(ctx, parent, d, &d.node, fuse.S_IFDIR, dirKey(view, s, rel))
		d.fill(&out.Attr)
		return ch, 0
	case snapshot.TypeFile, snapshot.TypeHardlink:
		first := rel
		if n.Type == snapshot.TypeHardlink {
			first = n.Target
		}
		fl := &fileNode{snap: s, rel: first, meta: n}
		ch := f.newChild(ctx, parent, fl, &fl.node, fuse.S_IFREG, contentKey(s, first))
		if fn, ok := ch.Operations().(*fileNode); ok {
			fn.fill(&out.Attr)
		} else {
			fl.fill(&out.Attr)
		}
		return ch, 0
	case snapshot.TypeSymlink:
		l := &linkNode{meta: n}
		ch := f.newChild(ctx, parent, l, &l.node, fuse.S_IFLNK, contentKey(s, rel))
		fillAttr(&out.Attr, n, l.ino, 1)
		return ch, 0
	case snapshot.TypeFIFO, snapshot.TypeDevice:
		sp := &specialNode{meta: n}
		ch := f.newChild(ctx, parent, sp, &sp.node, typeBits(n), contentKey(s, rel))
		fillAttr(&out.Attr, n, sp.ino, 1)
		return ch, 0
	}
	return nil, syscall.EIO
}

// dirHandle serves a directory listing made at open.
type dirHandle struct {
	mu   sync.Mutex
	ents []fuse.DirEntry
	pos  int
}

var _ = (fs.FileReaddirenter)((*dirHandle)(nil))
var _ = (fs.FileSeekdirer)((*dirHandle)(nil))

// Readdirent returns the next entry; nil at the end.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pos >= len(h.ents) {
		return nil, 0
	}
	e := h.ents[h.pos]
	h.pos++
	e.Off = uint64(h.pos)
	return &e, 0
}

// Seekdir moves to the entry after offset off.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off > uint64(len(h.ents)) {
		return syscall.EINVAL
	}
	h.pos = int(off)
	return 0
}

// typeBits returns the S_IFMT bits of a tree entry.
func typeBits(n *snapshot.Node) uint32 {
	switch n.Type {
	case snapshot.TypeDir:
		return fuse.S_IFDIR
	case snapshot.TypeSymlink:
		return fuse.S_IFLNK
	case snapshot.TypeFIFO:
		return fuse.S_IFIFO
	case snapshot.TypeDevice:
		return n.Mode & syscall.S_IFMT
	}
	return fuse.S_IFREG
}

// fillAttr sets a's fields from a tree entry, as stored.
func fillAttr(a *fuse.Attr, n *snapshot.Node, ino uint64, nlink uint32) {
	a.Ino = ino
	a.Mode = typeBits(n) | n.Mode&0o7777
	a.Uid, a.Gid = n.UID, n.GID
	a.Nlink = nlink
	a.Blksize = 128 << 10 // copiers size their buffers by it
	switch n.Type {
	case snapshot.TypeFile, snapshot.TypeHardlink:
		a.Size = uint64(n.Size)
	case snapshot.TypeSymlink:
		a.Size = uint64(len(n.Target))
	case snapshot.TypeDir:
		a.Size = 4096
	case snapshot.TypeDevice:
		a.Rdev = uint32(n.Rdev)
	}
	a.Blocks = (a.Size + 511) / 512
	t := time.Unix(0, n.MTime)
	a.SetTimes(&t, &t, &t)
}

// linkNode is a symbolic link as stored.
type linkNode struct {
	node
	meta *snapshot.Node
}

var _ = (fs.NodeReadlinker)((*linkNode)(nil))
var _ = (fs.NodeGetattrer)((*linkNode)(nil))

// Readlink returns the stored target, byte for byte.
func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.meta.Target), 0
}

// Getattr returns the link's stored attributes.
func (l *linkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, l.meta, l.ino, 1)
	out.SetTimeout(contentTimeout)
	return 0
}

// specialNode is a FIFO or device node (attributes only; the kernel
// handles opening them).
type specialNode struct {
	node
	meta *snapshot.Node
}

var _ = (fs.NodeGetattrer)((*specialNode)(nil))

// Getattr returns the stored attributes.
func (s *specialNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, s.meta, s.ino, 1)
	out.SetTimeout(contentTimeout)
	return 0
}

// latestNode is the latest -> snapshots/<newest> symlink.
type latestNode struct {
	node
}

var _ = (fs.NodeReadlinker)((*latestNode)(nil))
var _ = (fs.NodeGetattrer)((*latestNode)(nil))

func (l *latestNode) target() string {
	s := l.f.catalog().latest()
	if s == nil {
		return "snapshots"
	}
	return "snapshots/" + s.name
}

func (l *latestNode) fill(a *fuse.Attr) {
	t := l.f.topMtime()
	a.Ino = l.ino
	a.Mode = fuse.S_IFLNK | 0o777
	a.Nlink = 1
	a.Uid, a.Gid = l.f.uid, l.f.gid
	a.Size = uint64(len(l.target()))
	a.SetTimes(&t, &t, &t)
}

// Readlink returns the relative path of the newest snapshot's folder.
func (l *latestNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.target()), 0
}

// Getattr of the link.
func (l *latestNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.fill(&out.Attr)
	out.SetTimeout(topTimeout)
	return 0
}

// staticFile is a small generated file (README.txt, damaged notes).
type staticFile struct {
	node
	data []byte
}

var _ = (fs.NodeOpener)((*staticFile)(nil))
var _ = (fs.NodeReader)((*staticFile)(nil))
var _ = (fs.NodeGetattrer)((*staticFile)(nil))

func (s *staticFile) fill(a *fuse.Attr, f *FS) {
	t := f.topMtime()
	a.Ino = s.ino
	a.Mode = fuse.S_IFREG | 0o444
	a.Nlink = 1
	a.Uid, a.Gid = f.uid, f.gid
	a.Size = uint64(len(s.data))
	a.Blocks = (a.Size + 511) / 512
	a.SetTimes(&t, &t, &t)
}

// Getattr of the file.
func (s *staticFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s.fill(&out.Attr, s.f)
	return 0
}

// Open refuses writing.
func (s *staticFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return openReadOnly(s.f, flags)
}

// Flush: see fileNode.Flush.
func (s *staticFile) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// Read returns the bytes at off.
func (s *staticFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(s.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(s.data[off:min(int64(len(s.data)), off+int64(len(dest)))]), 0
}

func getxattr(n *snapshot.Node, attr string, dest []byte) (uint32, syscall.Errno) {
	if n == nil {
		return 0, syscall.ENODATA
	}
	for _, x := range n.Xattrs {
		if x.Name == attr {
			if len(dest) == 0 {
				return uint32(len(x.Value)), 0
			}
			if len(dest) < len(x.Value) {
				return uint32(len(x.Value)), syscall.ERANGE
			}
			return uint32(copy(dest, x.Value)), 0
		}
	}
	return 0, syscall.ENODATA
}

func listxattr(n *snapshot.Node, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	if n != nil {
		for _, x := range n.Xattrs {
			b = append(append(b, x.Name...), 0)
		}
	}
	if len(dest) == 0 {
		return uint32(len(b)), 0
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}
