// Package fusefs mounts every snapshot of a repository read-only through
// FUSE (github.com/hanwen/go-fuse/v2), so a person browses their backups in
// the file manager and restores a file by dragging it out:
//
//	<mountpoint>/
//	  snapshots/2026-11-26_01-15-00/…   one folder per snapshot, local time, sorts by date
//	  latest -> snapshots/…             relative symlink, follows new snapshots
//	  by-id/<backup_id>/…
//	  by-unit/<unit>/<date>/…           the unit's paths in each snapshot that holds it
//	  history/<path>/<date>             every version of each file, oldest first
//	  README.txt
//
// Nodes are built lazily from the snapshot trees as the kernel looks them
// up and dropped when it forgets them. Content is read through one shared,
// byte-bounded cache of decoded chunks, each checked against its BLAKE3 id;
// a damaged chunk fails the read with EIO and writes an audit event, so
// reading through the mount is itself a verification. The package imports
// only snapshot (and go-fuse); cmd wires it to the repository and signals.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"

	"snapforge/snapshot"
)

// Kernel cache timeouts. Snapshot content never changes, so the kernel may
// keep names, attributes and pages for long; the top level changes when a
// snapshot lands and is asked again after a second.
const (
	contentTimeout = time.Hour
	topTimeout     = time.Second
)

// DefaultCacheBytes bounds the decoded-chunk cache.
const DefaultCacheBytes = 16 << 20

// mountGroups is how many decoded group frames (runs of small files and
// database pages, up to 1 MiB each) the mount's chunk reader keeps. A
// sequential read of a file of small chunks has the kernel's requests in
// flight (up to 1 MiB each) and the read-ahead's runs (readaheadBytes)
// touching several frames at once; with 4 kept, a 300 MB database read
// through the mount decoded each frame 3.5 times over (6 times for a
// database changed since an earlier snapshot), with 8 1.3 and 1.9 times.
const mountGroups = 8

// groupsFor is how many group frames the mount keeps within a budget of
// decoded data: mountGroups, or as many as take at most five eighths of a
// smaller budget, at least one. The default budget gives mountGroups frames
// (9.1 MiB) and the chunk cache the other 6.9 MiB.
func groupsFor(budget int64) int {
	return int(min(max(budget*5/8/snapshot.GroupFrameBytes(), 1), mountGroups))
}

// Options configure a mount.
type Options struct {
	// Units maps a profile unit to its paths (relative to the root, as in
	// profile.json), for by-unit/. nil: by-unit/ lists the units each
	// snapshot holds, unfiltered.
	Units map[string][]string
	// CacheBytes bounds the decoded-chunk cache; 0: DefaultCacheBytes.
	CacheBytes int64
	// Xattrs serves extended attributes (off: the kernel never asks).
	Xattrs bool
	// Location names snapshot folders in this time zone; nil: time.Local.
	Location *time.Location
	// AllowOther lets other users in (with default_permissions, so the
	// kernel checks each file's mode and owner as stored).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
	// Damaged, when set, hears of each damaged file once, as it is read
	// (the audit trail records it as well): the mount's terminal says so.
	Damaged func(snapshot, path string, err error)
}

// FS is the file system: the repository, the snapshot catalog, the chunk
// cache and the inode table.
type FS struct {
	repo   *snapshot.Repo
	opts   Options
	chunks *chunkCache
	cr     *snapshot.ChunkReader
	inos   *inoTable
	cat    atomic.Pointer[catalog]
	root   *rootNode
	catMu  sync.Mutex // serialises Refresh
	uid    uint32
	gid    uint32
	hole   snapshot.ID // id of a chunk of the chunker's maximum size, all zeros: a sparse file's hole
	mtime  time.Time   // of the top level: the newest snapshot's creation, then each change a refresh finds
	mtimeM sync.Mutex

	reported sync.Map // "snapshot\x00path" of damaged files already audited

	// life admits the work that reads the repository until Close. After a
	// lazy unmount the kernel may still send requests for open files when
	// the command stops anyway (a second Ctrl-C) and closes the repository.
	life *gate

	// noOpen: the kernel may skip OPEN and RELEASE (FUSE_NO_OPEN_SUPPORT).
	// Files here need no per-open state, so the first open answers ENOSYS
	// and from then on reading a small file costs one round trip, not four.
	noOpen atomic.Bool
}

// New returns the file system over repo; Refresh has been called once.
func New(ctx context.Context, repo *snapshot.Repo, o Options) (*FS, error) {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	cr := repo.NewChunkReader(64)
	cr.KeepGroups(groupsFor(o.CacheBytes))
	// The reader keeps decoded groups (runs of small files and pages) of
	// its own: they count inside the budget for decoded data.
	chunkBytes := o.CacheBytes
	lend := false
	if g := cr.GroupCacheBytes(); g <= chunkBytes*5/8 {
		chunkBytes -= g
		lend = true
	}
	f := &FS{repo: repo, opts: o, cr: cr, chunks: newChunkCache(cr, chunkBytes), inos: newInoTable(),
		uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		hole: repo.HoleID()}
	if lend {
		f.chunks.lend = cr.GroupCacheIdle
	}
	f.life = f.chunks.life
	f.root = &rootNode{}
	f.root.f, f.root.ino = f, 1
	if err := f.Refresh(ctx); err != nil {
		cr.Close()
		return nil, err
	}
	return f, nil
}

// Root returns the root node, for fs.Mount or a node-level test.
func (f *FS) Root() fs.InodeEmbedder { return f.root }

// Close waits for the requests and background loads reading the
// repository, and releases the open packs; requests still arriving (open
// files of a lazy unmount) then fail with EIO without touching the
// repository. Call it before the repository is closed.
func (f *FS) Close() {
	f.life.close()
	f.chunks.close()
	f.cr.Close()
}

// errClosed is the error of work refused after Close.
var errClosed = errors.New("the mount is shutting down")

// gate admits work until close, which then waits for the work inside.
// Entering never blocks, so work may nest.
type gate struct {
	mu     sync.Mutex
	idle   sync.Cond
	closed bool
	n      int
}

func newGate() *gate {
	g := &gate{}
	g.idle.L = &g.mu
	return g
}

// enter reports whether the work may go on; then leave must follow.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 {
		g.idle.Broadcast()
	}
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for g.n > 0 {
		g.idle.Wait()
	}
}

// catalog is the set of snapshots shown, rebuilt by Refresh.
type catalog struct {
	snaps   []*snapInfo            // good snapshots, oldest first
	byName  map[string]*snapInfo   // snapshots/ folder name
	byID    map[string]*snapInfo   // backup id
	byUnit  map[string][]*snapInfo // unit -> snapshots holding it, oldest first
	damaged []snapshot.SnapshotEntry
}

// snapInfo is one snapshot as the mount shows it.
type snapInfo struct {
	id      string
	name    string // folder name: local date and time, suffix on collision
	created time.Time
	tree    snapshot.ID
	units   []string
	// unitPaths are the units' paths the manifest recorded (nil in
	// snapshots taken before it did).
	unitPaths map[string][]string
	root      string            // the source root backed up (history/ tells roots apart)
	rootDir   *snapshot.RootDir // the source root's attributes; nil when not recorded
	safety    bool              // a safety snapshot (tagged "safety"): latest only when alone

	linksOnce sync.Once
	links     map[string]uint32 // raw path of a hard-linked file's first name -> number of names
}

// FolderName is the snapshots/ folder name for t: local date and time
// without colons, so names sort chronologically and are valid everywhere.
func FolderName(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("2006-01-02_15-04-05")
}

// Refresh re-reads the list of snapshots; new ones appear under
// snapshots/, by-id/, by-unit/ and as latest. Snapshots already shown keep
// their folder name (and so their nodes and inode numbers).
func (f *FS) Refresh(ctx context.Context) error {
	if !f.life.enter() {
		return errClosed
	}
	defer f.life.leave()
	f.catMu.Lock()
	defer f.catMu.Unlock()
	list, err := f.repo.Snapshots(ctx)
	if err != nil {
		return err
	}
	old := f.cat.Load()
	c := &catalog{byName: map[string]*snapInfo{}, byID: map[string]*snapInfo{}, byUnit: map[string][]*snapInfo{}}
	for _, e := range list {
		if e.Err != nil || e.Manifest == nil {
			c.damaged = append(c.damaged, e)
			continue
		}
		m := e.Manifest
		tree, err := m.TreeID()
		if err != nil {
			c.damaged = append(c.damaged, snapshot.SnapshotEntry{BackupID: e.BackupID, Err: err})
			continue
		}
		var s *snapInfo
		if old != nil && old.byID[e.BackupID] != nil {
			s = old.byID[e.BackupID]
		} else {
			s = &snapInfo{id: e.BackupID, created: m.Created(), tree: tree, units: m.Includes, unitPaths: m.UnitPaths,
				root: m.Source.Root, rootDir: m.Source.RootDir, safety: m.IsSafety()}
		}
		c.snaps = append(c.snaps, s)
		c.byID[s.id] = s
		for _, u := range s.units {
			if _, known := f.unitPaths(s, u); u != "." && known {
				c.byUnit[u] = append(c.byUnit[u], s)
			}
		}
	}
	// Names: the date, with _002, _003 … for snapshots of the same second
	// (three digits, so that names sort as the snapshots were taken), in
	// list order (oldest first), so a name never moves to another snapshot
	// as later ones arrive.
	taken := map[string]bool{}
	for _, s := range c.snaps {
		if s.name == "" {
			base := FolderName(s.created, f.opts.Location)
			name := base
			for i := 2; taken[name] || nameUsedElsewhere(old, name, s); i++ {
				name = fmt.Sprintf("%s_%03d", base, i)
			}
			s.name = name
		}
		taken[s.name] = true
		c.byName[s.name] = s
	}
	f.cat.Store(c)
	if old == nil || !old.same(c) {
		// The top level's listings change: so does their mtime, which
		// tells the kernel to drop what it cached of them. The first
		// catalog's is its newest snapshot's creation, so the time
		// stays put across remounts of an unchanged repository.
		// (An empty repository's: when it was created.)
		t, _ := time.Parse(time.RFC3339, f.repo.Config().CreatedUTC)
		if n := len(c.snaps); n > 0 {
			t = c.snaps[n-1].created // the newest of any kind
		}
		if old != nil {
			// Now, but always later than before (a clock set back, or a
			// snapshot dated ahead), so the kernel sees a change.
			for _, u := range []time.Time{time.Now(), f.topMtime().Add(time.Nanosecond)} {
				if u.After(t) {
					t = u
				}
			}
		}
		f.mtimeM.Lock()
		f.mtime = t
		f.mtimeM.Unlock()
	}
	if old != nil && old.latest() != c.latest() {
		// The kernel caches link targets: make it ask for latest's again.
		if ch := f.root.GetChild("latest"); ch != nil {
			ch.NotifyContent(0, 0)
		}
		f.root.NotifyEntry("latest")
	}
	return nil
}

// same reports whether c shows what o shows: the same snapshots, damaged
// ones included, under the same names.
func (o *catalog) same(c *catalog) bool {
	if len(o.snaps) != len(c.snaps) || len(o.damaged) != len(c.damaged) {
		return false
	}
	for i, s := range o.snaps {
		if c.snaps[i] != s {
			return false
		}
	}
	for i, d := range o.damaged {
		if c.damaged[i].BackupID != d.BackupID {
			return false
		}
	}
	return true
}

// nameUsedElsewhere reports whether the previous catalog gave name to
// another snapshot (one since removed keeps its name reserved until the
// kernel has had a chance to forget it; simplest is never to reuse it).
func nameUsedElsewhere(old *catalog, name string, s *snapInfo) bool {
	if old == nil {
		return false
	}
	o := old.byName[name]
	return o != nil && o != s
}

func (f *FS) catalog() *catalog { return f.cat.Load() }

// LiveNodes returns how many nodes the kernel currently knows (each holds
// an inode number): it falls back when the kernel forgets them.
func (f *FS) LiveNodes() int { return f.inos.len() }

// Snapshots returns how many snapshots are shown.
func (f *FS) Snapshots() int { return len(f.catalog().snaps) }

func (f *FS) topMtime() time.Time {
	f.mtimeM.Lock()
	defer f.mtimeM.Unlock()
	return f.mtime
}

// latest returns the newest snapshot, or nil: as for the CLI's "latest",
// the newest regular one, a safety snapshot (taken before an in-place
// restore, often of one unit) only when there is no other.
func (c *catalog) latest() *snapInfo {
	for i := len(c.snaps) - 1; i >= 0; i-- {
		if !c.snaps[i].safety {
			return c.snaps[i]
		}
	}
	if len(c.snaps) == 0 {
		return nil
	}
	return c.snaps[len(c.snaps)-1]
}

// hardLinks returns the number of names of the hard-linked file whose
// first name is rel in s (0: not hard-linked).
func (f *FS) hardLinks(s *snapInfo, rel string) uint32 {
	if !f.life.enter() {
		return 0
	}
	defer f.life.leave()
	s.linksOnce.Do(func() {
		links, err := f.repo.HardLinks(s.id)
		if err == nil {
			s.links = links
		}
	})
	return s.links[rel]
}

// unitPaths returns the cleaned paths of unit in snapshot s (nil: the whole
// root): those its manifest recorded, else those of the profile's unit of
// that name (snapshots taken before manifests recorded them). known is
// false when neither names them: such a snapshot is not shown under the
// unit, rather than shown whole (a unit renamed in profile.json showed
// every file of its old snapshots, the guarded keys included).
func (f *FS) unitPaths(s *snapInfo, unit string) (paths []string, known bool) {
	ps, ok := s.unitPaths[unit]
	if !ok {
		ps, ok = f.opts.Units[unit]
	}
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		p = strings.Trim(filepath.ToSlash(filepath.Clean(p)), "/")
		if p == "." || p == "" {
			return nil, true // the whole root
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out, true
}

// reportDamage writes one audit event per damaged file and snapshot. Only
// integrity failures (a chunk that does not match its id, a missing pack)
// are damage; an interrupted or failed read of a sound repository is not.
func (f *FS) reportDamage(s *snapInfo, rel string, err error) {
	if !snapshot.IsIntegrity(err) {
		return
	}
	if !f.life.enter() {
		return
	}
	defer f.life.leave()
	key := s.id + "\x00" + rel
	if _, dup := f.reported.LoadOrStore(key, true); dup {
		return
	}
	f.repo.Audit("mount_read", map[string]any{"snapshot": s.id, "path": snapshot.DisplayName(rel), "error": err.Error()},
		"failed: damaged data; the file reads as an I/O error, other files stay readable; run `snapforge verify --read-data`")
	if f.opts.Damaged != nil {
		f.opts.Damaged(s.id, snapshot.DisplayName(rel), err)
	}
}

// errno maps a read error to the errno the reader sees: EINTR for an
// interrupted request (the kernel interrupts a request when the reader gets
// a signal; it retries), EIO for everything else.
func errno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	}
	return syscall.EIO
}
