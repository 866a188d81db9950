package fusefs

import (
	"context"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"snapforge/snapshot"
)

// histDir is history/<path>: the union, over all snapshots, of the
// directory's children (each again a history folder), plus, where <path>
// is a file (or symlink, or special file) in some snapshot, one entry per
// version named by the date folder of the snapshot where it first
// appeared. A version is new when its type, content, link target or mode
// differs from the previous version seen (a file absent from a snapshot in
// between, e.g. one that backed up other units, is not a change), so an
// unchanged file appears once and A→B→A shows three versions.
//
// A repository may hold snapshots of several source roots (`backup PATH` of
// two directories): a path under one is another file than the same path
// under the other. Versions are then told apart by root, each compared only
// with the previous version of its own root, and named "<date> (<root>)",
// <root> the root's last element (its whole path, slashes as "_", where two
// roots share one).
type histDir struct {
	node
	rel string

	mu   sync.Mutex
	cat  *catalog // the catalog ents were computed for
	ents []histEntry
}

type histEntry struct {
	name string
	dir  bool
	snap *snapInfo      // version: the snapshot it first appeared in
	meta *snapshot.Node // version: the entry as stored
	rel  string         // version: the path in that snapshot
}

var _ = (fs.NodeLookuper)((*histDir)(nil))
var _ = (fs.NodeReaddirer)((*histDir)(nil))
var _ = (fs.NodeGetattrer)((*histDir)(nil))

// Getattr of a history folder.
func (h *histDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	h.f.histAttr(&out.Attr, h.ino)
	out.SetTimeout(topTimeout)
	return 0
}

// entries computes the folder's content for the current catalog.
func (h *histDir) entries(ctx context.Context) ([]histEntry, syscall.Errno) {
	c := h.f.catalog()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cat == c {
		return h.ents, 0
	}
	if !h.f.life.enter() {
		return nil, syscall.EIO
	}
	defer h.f.life.leave()
	ctx = context.WithoutCancel(ctx) // shared work; see treeDir.load
	children := map[string]bool{}
	seenTree := map[snapshot.ID]bool{}
	var versions []histEntry
	prev := map[string]*snapshot.Node{} // by root
	labels := rootLabels(c.snaps)
	for _, s := range c.snaps {
		n, err := h.f.findNode(ctx, s, h.rel)
		if err != nil {
			continue // absent from this snapshot (or its tree is damaged: its own folder says so)
		}
		if n.Type == snapshot.TypeDir {
			if seenTree[n.Subtree] {
				continue
			}
			seenTree[n.Subtree] = true
			t, err := h.f.cr.LoadTree(ctx, n.Subtree)
			if err != nil {
				h.f.reportDamage(s, h.rel+"/", err)
				continue
			}
			for _, ch := range t.Nodes {
				children[ch.Name] = true
			}
			continue
		}
		if p := prev[s.root]; p != nil && sameVersion(p, n) {
			continue
		}
		prev[s.root] = n
		name := s.name
		if labels != nil {
			name += " (" + labels[s.root] + ")"
		}
		versions = append(versions, histEntry{name: name, snap: s, meta: n, rel: h.rel})
	}
	ents := make([]histEntry, 0, len(children)+len(versions))
	for name := range children {
		ents = append(ents, histEntry{name: name, dir: true})
	}
	for _, v := range versions {
		// A child named like a date: keep both, the version's name
		// lengthened until no child has it (a child may be named
		// DATE.version too: acceptance run 4 found two entries of one name
		// and the version out of reach).
		for children[v.name] {
			v.name += ".version"
		}
		ents = append(ents, v)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
	h.cat, h.ents = c, ents
	return ents, 0
}

// rootLabels names each source root of snaps for history/'s version names,
// or returns nil when there is only one.
func rootLabels(snaps []*snapInfo) map[string]string {
	byBase := map[string][]string{}
	for _, s := range snaps {
		b := filepath.Base(s.root)
		if !slices.Contains(byBase[b], s.root) {
			byBase[b] = append(byBase[b], s.root)
		}
	}
	if len(byBase) == 1 && len(byBase[filepath.Base(snaps[0].root)]) == 1 {
		return nil
	}
	labels := map[string]string{}
	for b, roots := range byBase {
		for _, r := range roots {
			labels[r] = b
			if len(roots) > 1 {
				labels[r] = strings.ReplaceAll(strings.TrimPrefix(r, "/"), "/", "_")
			}
		}
	}
	return labels
}

// sameVersion reports whether two stored entries of one path are the same
// version.
func sameVersion(a, b *snapshot.Node) bool {
	ta, tb := a.Type, b.Type
	if ta == snapshot.TypeHardlink {
		ta = snapshot.TypeFile
	}
	if tb == snapshot.TypeHardlink {
		tb = snapshot.TypeFile
	}
	if ta != tb || a.Mode != b.Mode {
		return false
	}
	switch ta {
	case snapshot.TypeFile:
		return a.Hash == b.Hash && a.Size == b.Size
	case snapshot.TypeSymlink:
		return a.Target == b.Target
	}
	return a.Rdev == b.Rdev
}

// findNode returns the entry at rel in snapshot s (the root: a synthetic
// directory).
func (f *FS) findNode(ctx context.Context, s *snapInfo, rel string) (*snapshot.Node, error) {
	return f.cr.FindNode(ctx, s.tree, rel)
}

func (h *histDir) childRel(name string) string {
	if h.rel == "" {
		return name
	}
	return h.rel + "/" + name
}

func versionKey(e histEntry) (string, uint32) {
	if e.meta.Type == snapshot.TypeHardlink {
		return contentKey(e.snap, e.meta.Target), fuse.S_IFREG
	}
	return contentKey(e.snap, e.rel), typeBits(e.meta)
}

// Readdir lists children and versions.
func (h *histDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents, e := h.entries(ctx)
	if e != 0 {
		return nil, e
	}
	out := make([]fuse.DirEntry, 0, len(ents))
	for _, en := range ents {
		if en.dir {
			out = append(out, fuse.DirEntry{Name: en.name, Mode: fuse.S_IFDIR, Ino: h.f.inos.peek(histKey(h.childRel(en.name)))})
			continue
		}
		key, mode := versionKey(en)
		out = append(out, fuse.DirEntry{Name: en.name, Mode: mode, Ino: h.f.inos.peek(key)})
	}
	return fs.NewListDirStream(out), 0
}

// Lookup finds a child folder or a version.
func (h *histDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ents, e := h.entries(ctx)
	if e != 0 {
		return nil, e
	}
	i := sort.Search(len(ents), func(i int) bool { return ents[i].name >= name })
	if i == len(ents) || ents[i].name != name {
		return nil, noNegative(out)
	}
	en := ents[i]
	if en.dir {
		shortEntry(out)
		d := &histDir{rel: h.childRel(name)}
		ch := h.f.newChild(ctx, h.EmbeddedInode(), d, &d.node, fuse.S_IFDIR, histKey(d.rel))
		h.f.histAttr(&out.Attr, d.ino)
		return ch, 0
	}
	out.SetEntryTimeout(topTimeout)
	out.SetAttrTimeout(contentTimeout)
	return h.f.snapChild(ctx, h.EmbeddedInode(), en.snap, viewSnapshots, en.rel, en.meta, nil, out)
}
