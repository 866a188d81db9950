package restore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
)

// PlanVersion is the recovery plan format (docs/schemas/recovery-plan.schema.json).
const PlanVersion = 1

// Plan is a recovery plan: what an in-place restore will do, shown before it
// runs. It is computed from the snapshot and the live tree as they are; the
// restore computes it again after the stop hook, so what runs is what the
// quiet application's files call for.
type Plan struct {
	Version         int             `json:"plan_version"`
	CreatedUTC      string          `json:"created_utc"`
	BackupID        string          `json:"backup_id"`
	SnapshotCreated string          `json:"snapshot_created_utc"`
	RootHash        string          `json:"root_hash"`
	Target          string          `json:"target"`
	InPlace         bool            `json:"in_place"`
	Scope           Scope           `json:"scope"`
	KeepExtra       bool            `json:"keep_extra"`
	Actions         []Action        `json:"actions"`
	Hooks           *snapshot.Hooks `json:"hooks"`
	Checks          []Check         `json:"checks"`
	Space           Space           `json:"space"`
	Warnings        []Problem       `json:"warnings"`
	Errors          []Problem       `json:"errors"` // any error: the restore refuses to run
	Summary         Summary         `json:"summary"`

	// Not in JSON: what the protocol needs about the live tree.
	live     map[string]liveInfo // by action path: the entry as the plan saw it
	sqlite   []string            // in-scope database paths of the snapshot
	sidecars map[string]bool     // their -wal, -shm, -journal present when planned
	jsons    []string            // in-scope .json files of the snapshot
	nodes    map[string]*snapshot.Node
	// dirs are the in-scope directories the live tree and the snapshot
	// both have, kept in place: the swap's renames move their mtimes,
	// which are set back to the snapshot's after it.
	dirs map[string]keptDir
}

// keptDir is an in-scope directory kept in place: its snapshot node, and
// the live inode the plan saw (its times before the swap are journaled:
// journalDirTimes).
type keptDir struct {
	n   *snapshot.Node
	ino uint64
}

// Action is one change to the live tree. A directory created or replaced
// carries its whole subtree (Files, Size); one removed takes its subtree
// with it.
type Action struct {
	Op        string `json:"op"` // create, replace, remove, update (metadata only)
	Path      string `json:"path"`
	PathB64   string `json:"path_b64,omitempty"`
	Type      string `json:"type"`             // the snapshot's entry (create, replace, update) or the live one (remove)
	Size      int64  `json:"size"`             // bytes staged (create, replace)
	Files     int64  `json:"files"`            // regular files staged (create, replace)
	Blake3    string `json:"blake3,omitempty"` // the snapshot's file hash
	Target    string `json:"target,omitempty"` // the snapshot's symlink target
	TargetB64 string `json:"target_b64,omitempty"`
	Current   *Entry `json:"current,omitempty"`
	Reason    string `json:"reason"`

	raw string
}

// Entry is a live entry that an action replaces or removes.
type Entry struct {
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	Blake3    string `json:"blake3,omitempty"` // read when its size matched the snapshot's
	Target    string `json:"target,omitempty"` // symlink target
	TargetB64 string `json:"target_b64,omitempty"`
	Mode      string `json:"mode"`
	Files     int64  `json:"files,omitempty"` // a directory: the files inside (Size: their bytes)
}

// Check is a built-in or profile check of the smoke test.
type Check struct {
	Kind     string `json:"kind"` // blake3, sqlite_integrity, json, command
	Path     string `json:"path,omitempty"`
	Command  string `json:"command,omitempty"`
	TimeoutS int    `json:"timeout_s,omitempty"`
	What     string `json:"what"`
}

// Space is the free space the restore needs on the target's filesystem.
type Space struct {
	StageBytes  int64 `json:"stage_bytes"`  // new content written to the staging area
	SafetyBytes int64 `json:"safety_bytes"` // at most this much for the safety snapshot (before dedup and compression)
	NeededBytes int64 `json:"needed_bytes"` // on the target's filesystem, with a margin
	FreeBytes   int64 `json:"free_bytes"`
	OK          bool  `json:"ok"`
}

// Problem names a path (or none) and what is wrong.
type Problem struct {
	Path    string `json:"path,omitempty"`
	PathB64 string `json:"path_b64,omitempty"`
	Problem string `json:"problem"`
}

// Summary counts the plan's actions.
type Summary struct {
	Create    int   `json:"create"`
	Replace   int   `json:"replace"`
	Remove    int   `json:"remove"`
	Update    int   `json:"update"`
	Unchanged int64 `json:"unchanged"` // entries already equal to the snapshot
	Bytes     int64 `json:"bytes"`     // staged
}

// liveInfo is the live entry at an action's path when planned.
type liveInfo struct {
	exists bool
	st     unix.Stat_t
}

// marginBytes is kept free on the target's filesystem beyond what the
// restore needs, so the application does not start on a full disk.
const marginBytes = 64 << 20

type planner struct {
	r       *snapshot.Repo
	m       *snapshot.Manifest
	o       Options
	scope   Scope
	plan    *Plan
	rootFd  int
	rootDev uint64
	repoDev uint64
	repoIno uint64
	hashes  map[string]hashed // live hashes by path, reused when the stat matches
	// verified holds the staged files read back and checked before the
	// swap, by inode: after the rename (which changes only ctime) the check
	// of the swapped scope knows them without reading them a third time.
	verified map[uint64]hashed
	links    []linkPair
	links1   map[string]uint32 // the snapshot's hard-link groups: names per first name (HardLinks)
	repoRel  string            // the repository's path inside the target, "" when outside
	touched  map[string]bool   // paths created or replaced (subtrees included)
}

type hashed struct {
	size, mtime, ctime int64
	ino, dev           uint64
	sum                snapshot.ID
}

type linkPair struct{ link, target string }

// NewPlan computes the recovery plan for restoring m into o.Target (the
// live root) within o.Scope. It reads the live tree (hashing files whose
// size matches the snapshot's) and changes nothing.
func NewPlan(ctx context.Context, r *snapshot.Repo, m *snapshot.Manifest, o Options) (*Plan, error) {
	o, err := o.withDefaults(r, m)
	if err != nil {
		return nil, err
	}
	p := &planner{r: r, m: m, o: o, scope: o.Scope, hashes: map[string]hashed{}}
	return p.build(ctx)
}

func (p *planner) build(ctx context.Context) (*Plan, error) {
	o := p.o
	p.links, p.touched = nil, map[string]bool{}
	p.plan = &Plan{
		Version:         PlanVersion,
		CreatedUTC:      time.Now().UTC().Format(time.RFC3339),
		BackupID:        p.m.BackupID,
		SnapshotCreated: p.m.CreatedUTC,
		RootHash:        p.m.RootHash,
		Target:          o.Target,
		InPlace:         true,
		Scope:           o.Scope,
		KeepExtra:       o.KeepExtra,
		Actions:         []Action{},
		Hooks:           o.Hooks,
		Checks:          []Check{},
		Warnings:        []Problem{},
		Errors:          []Problem{},
		live:            map[string]liveInfo{},
		nodes:           map[string]*snapshot.Node{},
		dirs:            map[string]keptDir{},
	}
	if err := checkTarget(o.Target, p.r.Path()); err != nil {
		return nil, err
	}
	fd, err := openRoot(o.Target)
	if err != nil {
		return nil, fmt.Errorf("restore: live root %s: %w (restore elsewhere with --target DIR)", o.Target, err)
	}
	defer unix.Close(fd)
	p.rootFd = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	p.rootDev = st.Dev
	if unix.Stat(p.r.Path(), &st) == nil {
		p.repoDev, p.repoIno = st.Dev, st.Ino
	}
	p.repoRel = ""
	if rt, err := filepath.EvalSymlinks(o.Target); err == nil {
		if rr, err := filepath.EvalSymlinks(p.r.Path()); err == nil && strings.HasPrefix(rr, rt+"/") {
			p.repoRel = filepath.ToSlash(rr[len(rt)+1:])
		}
	}
	if p.m.Source.Root != "" && p.m.Source.Root != o.Target {
		p.warn("", fmt.Sprintf("the snapshot was taken of %s; restoring it into %s", p.m.Source.Root, o.Target))
	}
	tid, err := p.m.TreeID()
	if err != nil {
		return nil, err
	}
	top, err := p.r.LoadTree(ctx, tid)
	if err != nil {
		return nil, fmt.Errorf("restore: read snapshot %s: %w", p.m.BackupID, err)
	}
	if err := p.dir(ctx, "", top, fd, false); err != nil {
		return nil, err
	}
	p.linkGroups()
	p.companions()
	sort.SliceStable(p.plan.Actions, func(i, j int) bool { return p.plan.Actions[i].raw < p.plan.Actions[j].raw })
	p.checks()
	p.plan.sidecars = map[string]bool{}
	for _, db := range p.plan.sqlite {
		dir, name := splitRel(db)
		if fd, err := openDirAt(p.rootFd, dir); err == nil {
			for _, suf := range []string{"-wal", "-shm", "-journal"} {
				if _, err := lstatAt(fd, name+suf); err == nil {
					p.plan.sidecars[db+suf] = true
				}
			}
			unix.Close(fd)
		}
	}
	p.preflight(ctx)
	return p.plan, nil
}

// dir compares directory rel of the snapshot (tree, nil if absent) with the
// live one (fd, -1 if absent). sel says rel is inside the scope.
func (p *planner) dir(ctx context.Context, rel string, tree *snapshot.Tree, fd int, sel bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var live []string
	if fd >= 0 {
		var err error
		if live, err = readNames(fd); err != nil {
			return fmt.Errorf("restore: read live directory %s: %w", p.abs(rel), err)
		}
	}
	names := map[string]bool{}
	for _, n := range live {
		names[n] = true
	}
	if tree != nil {
		for _, n := range tree.Nodes {
			names[n.Name] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		crel := joinRel(rel, name)
		if rel == "" && name == snapshot.StagingDir {
			continue
		}
		csel := sel || p.scope.contains(crel)
		if p.scope.excluded(crel) {
			continue // the profile never backs it up, so a restore leaves it alone
		}
		if !csel && !p.scope.below(crel) {
			continue
		}
		var sn *snapshot.Node
		if tree != nil {
			sn = tree.Find(name)
		}
		var lst unix.Stat_t
		lexists := false
		if fd >= 0 && names[name] {
			st, err := lstatAt(fd, name)
			if err == nil {
				lst, lexists = st, true
			} else if err != unix.ENOENT {
				return fmt.Errorf("restore: stat %s: %w", p.abs(crel), err)
			}
		}
		if lexists && lst.Mode&unix.S_IFMT == unix.S_IFDIR && (lst.Dev != p.rootDev || (lst.Dev == p.repoDev && lst.Ino == p.repoIno)) {
			if lst.Dev == p.repoDev && lst.Ino == p.repoIno {
				continue // the repository itself
			}
			if sn != nil || csel {
				p.fail(crel, "another filesystem is mounted here; an in-place restore stays on the target's filesystem (unmount it, or restore it with --target)")
			}
			continue
		}
		if lexists && lst.Mode&unix.S_IFMT == unix.S_IFDIR && p.holdsRepo(crel) {
			// The repository lives below: never removed nor replaced; the
			// walk goes in to restore the rest.
			var sub *snapshot.Tree
			switch {
			case sn != nil && sn.Type == snapshot.TypeDir:
				var err error
				if sub, err = p.r.LoadTree(ctx, sn.Subtree); err != nil {
					return fmt.Errorf("restore: read snapshot %s at %s: %w", p.m.BackupID, snapshot.DisplayName(crel), err)
				}
			case sn != nil:
				p.fail(crel, "holds the repository, but the snapshot has a "+sn.Type.String()+" here; restore elsewhere with --target DIR")
				continue
			}
			cfd, err := unix.Openat(fd, name, dirFlags, 0)
			if err != nil {
				return fmt.Errorf("restore: open live directory %s: %w", p.abs(crel), err)
			}
			err = p.dir(ctx, crel, sub, cfd, csel)
			unix.Close(cfd)
			if err != nil {
				return err
			}
			continue
		}
		if !csel {
			// Only an ancestor of the scope: it must be a directory to go in.
			var sub *snapshot.Tree
			if sn != nil && sn.Type == snapshot.TypeDir {
				var err error
				if sub, err = p.r.LoadTree(ctx, sn.Subtree); err != nil {
					return fmt.Errorf("restore: read snapshot %s at %s: %w", p.m.BackupID, snapshot.DisplayName(crel), err)
				}
			}
			if sn != nil && sn.Type != snapshot.TypeDir {
				continue // nothing of the scope below a non-directory
			}
			cfd := -1
			if lexists {
				if lst.Mode&unix.S_IFMT != unix.S_IFDIR {
					if sub != nil && len(sub.Nodes) > 0 {
						what := typeOf(lst.Mode)
						if what == "symlink" {
							if t, err := readlinkAt(fd, name); err == nil {
								what += " to " + snapshot.DisplayName(t)
							}
						}
						p.fail(crel, fmt.Sprintf("parent is a %s in the live system, outside the restore scope; it is never followed or replaced (restore a scope that includes it, or move it away)", what))
					}
					continue
				}
				nfd, err := unix.Openat(fd, name, dirFlags, 0)
				if err != nil {
					return fmt.Errorf("restore: open live directory %s: %w", p.abs(crel), err)
				}
				cfd = nfd
			}
			err := p.dir(ctx, crel, sub, cfd, false)
			if cfd >= 0 {
				unix.Close(cfd)
			}
			if err != nil {
				return err
			}
			continue
		}
		if err := p.entry(ctx, fd, rel, name, sn, lst, lexists); err != nil {
			return err
		}
	}
	return nil
}

// entry compares one in-scope entry.
func (p *planner) entry(ctx context.Context, fd int, rel, name string, sn *snapshot.Node, lst unix.Stat_t, lexists bool) error {
	crel := joinRel(rel, name)
	if sn != nil && (sn.Type == snapshot.TypeFile || sn.Type == snapshot.TypeHardlink) {
		p.o.Live.FilesDone.Add(1)
	}
	switch {
	case sn == nil && !lexists:
		return nil
	case sn == nil:
		if lst.Mode&unix.S_IFMT == unix.S_IFSOCK {
			return nil // sockets are never backed up; a live one belongs to the application
		}
		if p.o.KeepExtra {
			p.warn(crel, "not in the snapshot; kept (--keep-extra)")
			return nil
		}
		if lst.Mode&unix.S_IFMT == unix.S_IFDIR && p.holdsExcluded(fd, name, crel) {
			// Files the profile excludes live below: keep the directory and
			// remove only the rest.
			cfd, err := unix.Openat(fd, name, dirFlags, 0)
			if err != nil {
				return fmt.Errorf("restore: open live directory %s: %w", p.abs(crel), err)
			}
			defer unix.Close(cfd)
			p.warn(crel, "not in the snapshot, but holds files the profile excludes; kept with them")
			return p.dir(ctx, crel, nil, cfd, true)
		}
		p.add(Action{Op: "remove", raw: crel, Type: typeOf(lst.Mode), Reason: "not in the snapshot"}, fd, name, lst, true)
		return nil
	case sn.Type == snapshot.TypeDevice && !p.o.special():
		if !lexists || typeOf(lst.Mode) != "device" || uint64(lst.Rdev) != sn.Rdev {
			p.warn(crel, "device node not restored (only as root and when special files are asked for, --special)")
			return nil
		}
	case !lexists:
		return p.stage(ctx, "create", crel, sn, fd, name, lst, false, "not in the live system")
	}
	if sn.Type == snapshot.TypeHardlink {
		p.links = append(p.links, linkPair{crel, sn.Target})
	}
	ltype := typeOf(lst.Mode)
	if ltype == "symlink" && sn.Type != snapshot.TypeSymlink {
		t, _ := readlinkAt(fd, name)
		p.warn(crel, "is a symlink now (to "+snapshot.DisplayName(t)+"); it is replaced, never followed")
	}
	if ltype == "dir" && sn.Type != snapshot.TypeDir && p.holdsExcluded(fd, name, crel) {
		p.fail(crel, "a directory holding files the profile excludes, a "+sn.Type.String()+" in the snapshot; move those files away first")
		return nil
	}
	switch sn.Type {
	case snapshot.TypeDir:
		if ltype != "dir" {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "a "+ltype+" in the live system, a directory in the snapshot")
		}
		if reason := p.metaDiffers(sn, lst); reason != "" {
			p.add(Action{Op: "update", raw: crel, Type: "dir", Reason: reason}, fd, name, lst, true)
		}
		p.plan.dirs[crel] = keptDir{sn, lst.Ino}
		sub, err := p.r.LoadTree(ctx, sn.Subtree)
		if err != nil {
			return fmt.Errorf("restore: read snapshot %s at %s: %w", p.m.BackupID, snapshot.DisplayName(crel), err)
		}
		cfd, err := unix.Openat(fd, name, dirFlags, 0)
		if err != nil {
			return fmt.Errorf("restore: open live directory %s: %w", p.abs(crel), err)
		}
		defer unix.Close(cfd)
		return p.dir(ctx, crel, sub, cfd, true)
	case snapshot.TypeFile, snapshot.TypeHardlink:
		p.noteFile(crel, sn)
		if ltype != "file" {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "a "+ltype+" in the live system, a file in the snapshot")
		}
		if lst.Size != sn.Size {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "content differs (size)")
		}
		if sn.Type == snapshot.TypeHardlink && p.scope.contains(sn.Target) && !p.sameInode(sn.Target, lst) {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "no longer a hard link of "+snapshot.DisplayName(sn.Target))
		}
		if sn.Type == snapshot.TypeFile && lst.Nlink > 1 && p.linkCount(crel) < int(lst.Nlink) {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "hard-linked in the live system beyond the snapshot's links")
		}
		sum := sn.Hash
		if !p.unchangedSinceBackup(sn, lst) {
			var err error
			if sum, err = p.hash(fd, name, crel, lst); err != nil {
				return fmt.Errorf("restore: read live file %s: %w", p.abs(crel), err)
			}
		}
		if sum != sn.Hash {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "content differs")
		}
		if sn.Flags&snapshot.FlagSQLite != 0 && p.pendingJournal(fd, name) {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "the live database has changes in its -wal or -journal")
		}
		if sn.Mode&0o6000 != 0 && !p.o.special() { // staged files get the same warning from staging
			p.warn(crel, "setuid/setgid bits not restored (only as root and when special files are asked for)")
		}
		if reason := p.metaDiffers(sn, lst); reason != "" {
			if lst.Nlink > 1 {
				// Metadata lives in the inode: changing it in place would
				// change the other names too, maybe outside the scope.
				return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, reason+" on a hard-linked inode; replaced, its other names untouched")
			}
			p.add(Action{Op: "update", raw: crel, Type: sn.Type.String(), Reason: reason}, fd, name, lst, true)
			return nil
		}
	case snapshot.TypeSymlink:
		if ltype != "symlink" {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "a "+ltype+" in the live system, a symlink in the snapshot")
		}
		t, err := readlinkAt(fd, name)
		if err != nil || t != sn.Target {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "symlink target differs")
		}
	case snapshot.TypeFIFO, snapshot.TypeDevice:
		if ltype != sn.Type.String() || (sn.Type == snapshot.TypeDevice && (uint64(lst.Rdev) != sn.Rdev || lst.Mode&unix.S_IFMT != sn.Mode&unix.S_IFMT)) {
			return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, "a "+ltype+" in the live system, a "+sn.Type.String()+" in the snapshot")
		}
		if reason := p.metaDiffers(sn, lst); reason != "" {
			if lst.Nlink > 1 {
				// Metadata lives in the inode: changing it in place would
				// change the other names too, maybe outside the scope.
				return p.stage(ctx, "replace", crel, sn, fd, name, lst, true, reason+" on a hard-linked inode; replaced, its other names untouched")
			}
			p.add(Action{Op: "update", raw: crel, Type: sn.Type.String(), Reason: reason}, fd, name, lst, true)
			return nil
		}
	}
	p.plan.Summary.Unchanged++
	return nil
}

// stage adds a create or replace of crel from snapshot node sn; a directory
// brings its whole subtree.
func (p *planner) stage(ctx context.Context, op, crel string, sn *snapshot.Node, fd int, name string, lst unix.Stat_t, lexists bool, reason string) error {
	a := Action{Op: op, raw: crel, Type: sn.Type.String(), Reason: reason}
	switch sn.Type {
	case snapshot.TypeFile, snapshot.TypeHardlink:
		a.Size, a.Files, a.Blake3 = sn.Size, 1, sn.Hash.String()
		p.noteFile(crel, sn)
		if sn.Type == snapshot.TypeHardlink {
			p.links = append(p.links, linkPair{crel, sn.Target})
		}
	case snapshot.TypeSymlink:
		a.Target, a.TargetB64 = snapshot.PathFields(sn.Target)
	case snapshot.TypeDir:
		err := p.r.Walk(ctx, sn.Subtree, crel, func(rel string, n *snapshot.Node) error {
			p.touched[rel] = true
			switch n.Type {
			case snapshot.TypeFile, snapshot.TypeHardlink:
				a.Files++
				a.Size += n.Size
				p.noteFile(rel, n)
				if n.Type == snapshot.TypeHardlink {
					p.links = append(p.links, linkPair{rel, n.Target})
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("restore: read snapshot %s at %s: %w", p.m.BackupID, snapshot.DisplayName(crel), err)
		}
	}
	p.touched[crel] = true
	p.plan.nodes[crel] = sn
	p.add(a, fd, name, lst, lexists)
	return nil
}

// noteFile remembers in-scope files the smoke test checks beyond hashes.
func (p *planner) noteFile(rel string, n *snapshot.Node) {
	if n.Flags&snapshot.FlagSQLite != 0 || p.scope.isSQLite(rel) {
		p.plan.sqlite = append(p.plan.sqlite, rel)
	}
	if strings.HasSuffix(rel, ".json") && p.scope.isConfig(rel) {
		p.plan.jsons = append(p.plan.jsons, rel)
	}
}

func (p *planner) add(a Action, fd int, name string, lst unix.Stat_t, lexists bool) {
	a.Path, a.PathB64 = snapshot.PathFields(a.raw)
	if lexists {
		e := &Entry{Type: typeOf(lst.Mode), Mode: fmt.Sprintf("%04o", lst.Mode&0o7777)}
		if e.Type == "file" {
			e.Size = lst.Size
			if h, ok := p.hashes[a.raw]; ok && h.ino == lst.Ino && h.size == lst.Size {
				e.Blake3 = h.sum.String()
			}
		}
		if e.Type == "symlink" {
			t, _ := readlinkAt(fd, name)
			e.Target, e.TargetB64 = snapshot.PathFields(t)
		}
		if e.Type == "dir" && a.Op != "update" {
			files, bytes, mount := treeSize(fd, name, p.rootDev, a.raw)
			e.Size, e.Files = bytes, files
			if mount != "" {
				p.fail(mount, "a filesystem is mounted here, inside a directory the restore would "+a.Op+"; unmount it first")
			}
		}
		if a.Op != "update" || e.Type != "dir" {
			a.Current = e
		}
	}
	p.plan.live[a.raw] = liveInfo{exists: lexists, st: lst}
	switch a.Op {
	case "create":
		p.plan.Summary.Create++
	case "replace":
		p.plan.Summary.Replace++
	case "remove":
		p.plan.Summary.Remove++
	case "update":
		p.plan.Summary.Update++
	}
	p.plan.Summary.Bytes += a.Size
	p.plan.Actions = append(p.plan.Actions, a)
}

// metaDiffers says which metadata of a live entry differs from the node
// (owners only as root, who alone can set them).
func (p *planner) metaDiffers(sn *snapshot.Node, lst unix.Stat_t) string {
	var d []string
	if m := lst.Mode & 0o7777; m != sn.Mode&0o7777 && m != p.o.modeOf(sn) {
		d = append(d, "mode") // a live setuid bit the snapshot has too is left alone
	}
	if os.Geteuid() == 0 && (lst.Uid != sn.UID || lst.Gid != sn.GID) {
		d = append(d, "owner")
	}
	if sn.Type != snapshot.TypeDir && lst.Mtim.Nano() != sn.MTime {
		d = append(d, "mtime")
	}
	switch len(d) {
	case 0:
		return ""
	case 1:
		return d[0] + " differs"
	}
	return strings.Join(d, ", ") + " differ"
}

// hash returns the BLAKE3 of a live file, reusing an earlier reading when
// the file's status is unchanged.
func (p *planner) hash(fd int, name, rel string, lst unix.Stat_t) (snapshot.ID, error) {
	if h, ok := p.hashes[rel]; ok && h.ino == lst.Ino && h.size == lst.Size && h.mtime == lst.Mtim.Nano() && h.ctime == lst.Ctim.Nano() {
		return h.sum, nil
	}
	if h, ok := p.verified[lst.Ino]; ok && h.dev == lst.Dev && h.size == lst.Size && h.mtime == lst.Mtim.Nano() {
		return h.sum, nil
	}
	sum, st, err := hashAt(fd, name)
	if err != nil {
		return sum, err
	}
	p.hashes[rel] = hashed{size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), ino: st.Ino, sum: sum}
	p.o.Live.BytesDone.Add(st.Size)
	return sum, nil
}

// unchangedSinceBackup reports whether a live file is the very file the
// snapshot read — same root, inode, size, mtime and ctime, and the backup
// trusted them (FlagNoCache unset) — the test an incremental backup uses to
// skip reading it. Such a file is not read again. A database's CTime is a
// fingerprint, never equal, so databases are always read.
func (p *planner) unchangedSinceBackup(sn *snapshot.Node, lst unix.Stat_t) bool {
	return p.m.Source.Root == p.o.Target && sn.Flags&(snapshot.FlagNoCache|snapshot.FlagSQLite|snapshot.FlagChanged) == 0 &&
		sn.Type == snapshot.TypeFile && sn.Inode == lst.Ino && sn.Size == lst.Size && sn.MTime == lst.Mtim.Nano() && sn.CTime == lst.Ctim.Nano()
}

// holdsRepo reports whether the repository lies inside live path rel.
func (p *planner) holdsRepo(rel string) bool {
	return p.repoRel != "" && strings.HasPrefix(p.repoRel+"/", rel+"/")
}

// holdsExcluded reports whether live directory name (at rel) holds an
// entry the profile excludes.
func (p *planner) holdsExcluded(dir int, name, rel string) bool {
	if len(p.scope.Exclude) == 0 {
		return false
	}
	fd, err := unix.Openat(dir, name, dirFlags, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	names, _ := readNames(fd)
	for _, n := range names {
		crel := joinRel(rel, n)
		if p.scope.excluded(crel) {
			return true
		}
		if st, err := lstatAt(fd, n); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == p.rootDev && p.holdsExcluded(fd, n, crel) {
			return true
		}
	}
	return false
}

// linkCount returns how many names the snapshot gives the file at rel (1
// when it is not hard-linked).
func (p *planner) linkCount(rel string) int {
	if p.links1 == nil {
		p.links1, _ = p.r.HardLinks(p.m.BackupID)
		if p.links1 == nil {
			p.links1 = map[string]uint32{}
		}
	}
	if n := p.links1[rel]; n > 0 {
		return int(n)
	}
	return 1
}

// sameInode reports whether live path rel is the inode lst describes.
func (p *planner) sameInode(rel string, lst unix.Stat_t) bool {
	dir, name := splitRel(rel)
	fd, err := openDirAt(p.rootFd, dir)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	st, err := lstatAt(fd, name)
	return err == nil && st.Dev == lst.Dev && st.Ino == lst.Ino
}

// pendingJournal reports a live database whose -wal holds frames or whose
// rollback journal exists: its content is not just the main file's.
func (p *planner) pendingJournal(fd int, name string) bool {
	if st, err := lstatAt(fd, name+"-wal"); err == nil && st.Size > 0 {
		return true
	}
	_, err := lstatAt(fd, name+"-journal")
	return err == nil
}

// linkGroups makes a hard link group change as one: when any name of a
// group in the scope is created or replaced, all its names are, so they
// come back linked to one new inode rather than split.
func (p *planner) linkGroups() {
	for changed := true; changed; {
		changed = false
		for _, l := range p.links {
			a, b := p.touched[l.link], p.touched[l.target]
			if a == b {
				continue
			}
			other := l.target
			if b {
				other = l.link
			}
			if !p.scope.contains(other) || p.hasAction(other) {
				continue
			}
			if p.forceReplace(other) {
				changed = true
			}
		}
	}
}

func (p *planner) hasAction(rel string) bool {
	for _, a := range p.plan.Actions {
		if a.raw == rel && a.Op != "update" {
			return true
		}
	}
	return false
}

// forceReplace turns an unchanged (or metadata-only) file into a replace.
func (p *planner) forceReplace(rel string) bool {
	sn, err := p.r.FindNode(context.Background(), p.m, rel)
	if err != nil || sn == nil {
		return false
	}
	dir, name := splitRel(rel)
	fd, err := openDirAt(p.rootFd, dir)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	lst, err := lstatAt(fd, name)
	for i, a := range p.plan.Actions {
		if a.raw == rel && a.Op == "update" {
			p.plan.Actions = append(p.plan.Actions[:i], p.plan.Actions[i+1:]...)
			p.plan.Summary.Update--
			p.plan.Summary.Unchanged++
			break
		}
	}
	p.plan.Summary.Unchanged--
	p.stage(context.Background(), "replace", rel, sn, fd, name, lst, err == nil, "its hard link group changes")
	return true
}

// companions removes the -wal, -shm and -journal files beside every
// database the plan creates or replaces: a new database never opens with
// the old one's journal (FAULTS E11). They go even with --keep-extra.
func (p *planner) companions() {
	var add []Action
	for _, a := range p.plan.Actions {
		if (a.Op != "create" && a.Op != "replace") || !p.isDB(a.raw) {
			continue
		}
		dir, name := splitRel(a.raw)
		fd, err := openDirAt(p.rootFd, dir)
		if err != nil {
			continue
		}
		for _, suf := range []string{"-wal", "-shm", "-journal"} {
			c := a.raw + suf
			if p.hasAction(c) {
				continue
			}
			if sn, _ := p.r.FindNode(context.Background(), p.m, c); sn != nil {
				continue // the snapshot has one of its own (a plain file backup)
			}
			if lst, err := lstatAt(fd, name+suf); err == nil {
				add = append(add, Action{Op: "remove", raw: c, Type: typeOf(lst.Mode), Reason: "SQLite companion of " + snapshot.DisplayName(a.raw) + "; a restored database never keeps the old one's"})
				p.plan.live[c] = liveInfo{exists: true, st: lst}
				add[len(add)-1].Path, add[len(add)-1].PathB64 = snapshot.PathFields(c)
				add[len(add)-1].Current = &Entry{Type: typeOf(lst.Mode), Size: lst.Size, Mode: fmt.Sprintf("%04o", lst.Mode&0o7777)}
			}
		}
		unix.Close(fd)
	}
	for _, a := range add {
		p.plan.Summary.Remove++
		p.plan.Actions = append(p.plan.Actions, a)
	}
}

// isDB reports whether rel is a database of the snapshot (captured through
// SQLite's online backup, or in a unit marked sqlite).
func (p *planner) isDB(rel string) bool {
	for _, d := range p.plan.sqlite {
		if d == rel {
			return true
		}
	}
	return false
}

// checks lists the smoke test's checks.
func (p *planner) checks() {
	pl := p.plan
	pl.Checks = append(pl.Checks, Check{Kind: "blake3", What: "every file of the scope has the snapshot's BLAKE3 and every entry its type and link target"})
	sort.Strings(pl.sqlite)
	pl.sqlite = dedup(pl.sqlite)
	sort.Strings(pl.jsons)
	pl.jsons = dedup(pl.jsons)
	for _, d := range pl.sqlite {
		c := Check{Kind: "sqlite_integrity", What: "PRAGMA integrity_check says ok"}
		c.Path, _ = snapshot.PathFields(d)
		pl.Checks = append(pl.Checks, c)
	}
	for _, j := range pl.jsons {
		c := Check{Kind: "json", What: "parses as JSON"}
		c.Path, _ = snapshot.PathFields(j)
		pl.Checks = append(pl.Checks, c)
	}
	if h := p.o.Hooks; h != nil && h.Smoke != "" {
		pl.Checks = append(pl.Checks, Check{Kind: "command", Command: h.Smoke, TimeoutS: p.o.hookTimeoutS(), What: "the profile's smoke test exits 0 in time"})
	}
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// preflight finds what would stop the restore before anything changes:
// space, a read-only or immutable target, databases held open.
func (p *planner) preflight(ctx context.Context) {
	pl := p.plan
	for _, a := range pl.Actions {
		if a.Op == "create" || a.Op == "replace" {
			pl.Space.StageBytes += a.Size
		}
		if a.Op == "replace" || a.Op == "remove" {
			if a.Current != nil && (a.Current.Type == "file" || a.Current.Type == "dir") {
				pl.Space.SafetyBytes += a.Current.Size
			}
		}
	}
	var sfs, rfs unix.Statfs_t
	if err := unix.Fstatfs(p.rootFd, &sfs); err == nil {
		pl.Space.FreeBytes = int64(sfs.Bavail) * sfs.Bsize
		pl.Space.NeededBytes = pl.Space.StageBytes + marginBytes
		if unix.Statfs(p.r.Path(), &rfs) == nil && rfs.Fsid == sfs.Fsid {
			pl.Space.NeededBytes += pl.Space.SafetyBytes
		}
		if sfs.Flags&unix.ST_RDONLY != 0 {
			p.fail("", "the live root "+p.o.Target+" is on a read-only filesystem; remount it read-write first")
		}
	}
	pl.Space.OK = pl.Space.FreeBytes >= pl.Space.NeededBytes
	if len(pl.Actions) > 0 && !pl.Space.OK {
		safety := ""
		if pl.Space.NeededBytes > pl.Space.StageBytes+marginBytes {
			safety = ", safety snapshot up to " + humanBytes(pl.Space.SafetyBytes) + " (the repository is on the same filesystem)"
		}
		p.fail("", fmt.Sprintf("not enough free space on the live root's filesystem: the restore needs %s (staged files %s%s, margin %s), %s is free; free some space first",
			humanBytes(pl.Space.NeededBytes), humanBytes(pl.Space.StageBytes), safety, humanBytes(marginBytes), humanBytes(pl.Space.FreeBytes)))
	}
	if len(pl.Actions) > 0 && unix.Faccessat(p.rootFd, ".", unix.W_OK, unix.AT_EACCESS) != nil {
		p.fail("", "the live root "+p.o.Target+" is not writable by this user")
	}
	// chattr +i / +a on an entry to swap or its directory makes renames fail.
	seen := map[string]bool{}
	for _, a := range pl.Actions {
		dir, name := splitRel(a.raw)
		fd, err := openDirAt(p.rootFd, dir)
		if err != nil {
			continue // created on the way
		}
		if !seen[dir] && immutable(fd, "") {
			p.fail(dir, "directory is immutable or append-only (chattr +i/+a); clear the flag first")
		}
		seen[dir] = true
		if a.Op != "create" && immutable(fd, name) {
			p.fail(a.raw, "is immutable or append-only (chattr +i/+a); clear the flag first")
		}
		unix.Close(fd)
	}
	// Open databases and files in use.
	var watch []string
	for _, a := range pl.Actions {
		if a.Op == "replace" || a.Op == "remove" {
			watch = append(watch, a.raw)
		}
	}
	holders := openBy(p.rootFd, watch)
	hasStop := p.o.Hooks != nil && p.o.Hooks.Stop != ""
	for _, rel := range sortedKeys(holders) {
		who := describeHolders(holders[rel])
		db := p.isDB(rel) || p.isDB(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(rel, "-wal"), "-shm"), "-journal"))
		switch {
		case db && !hasStop:
			p.fail(rel, "the database is open by "+who+"; stop the application first, or configure a stop hook in the profile (hooks.stop)")
		case db:
			p.warn(rel, "the database is open by "+who+"; the stop hook runs before anything changes")
		default:
			p.warn(rel, "in use by "+who+"; it is replaced by a rename, so that process keeps the old file until it reopens it")
		}
	}
}

func (p *planner) warn(rel, problem string) {
	w := Problem{Problem: problem}
	if rel != "" {
		w.Path, w.PathB64 = snapshot.PathFields(rel)
	}
	p.plan.Warnings = append(p.plan.Warnings, w)
}

func (p *planner) fail(rel, problem string) {
	w := Problem{Problem: problem}
	if rel != "" {
		w.Path, w.PathB64 = snapshot.PathFields(rel)
	}
	p.plan.Errors = append(p.plan.Errors, w)
}

func (p *planner) abs(rel string) string {
	return snapshot.DisplayName(path.Join(p.o.Target, rel))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// staged returns the paths the staging restore writes.
func (pl *Plan) staged() []string {
	var out []string
	for _, a := range pl.Actions {
		if a.Op == "create" || a.Op == "replace" {
			out = append(out, a.raw)
		}
	}
	return out
}

// protected returns the paths the safety snapshot must hold: everything
// the plan replaces, removes or changes.
func (pl *Plan) protected() []string {
	var out []string
	for _, a := range pl.Actions {
		if a.Op != "create" {
			out = append(out, a.raw)
		}
	}
	return out
}

// Err returns the plan's blocking problems as one error, nil when it can run.
func (pl *Plan) Err() error {
	if len(pl.Errors) == 0 {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "restore: the recovery plan cannot run (nothing was changed):")
	for _, e := range pl.Errors {
		if e.Path != "" {
			fmt.Fprintf(&b, "\n  %s: %s", e.Path, e.Problem)
		} else {
			fmt.Fprintf(&b, "\n  %s", e.Problem)
		}
	}
	return &PlanError{Msg: b.String(), Problems: pl.Errors}
}

// PlanError is a plan that refuses to run.
type PlanError struct {
	Msg      string
	Problems []Problem
}

func (e *PlanError) Error() string { return e.Msg }

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
