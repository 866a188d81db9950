package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"snapforge/snapshot/audit"
	blake3 "snapforge/snapshot/b3"
)

// RestoreOptions configure a plain restore into a new or empty directory.
type RestoreOptions struct {
	Target  string   // directory to restore into; created if absent
	Include []string // patterns (MatchGlob) selecting paths and their subtrees; empty: everything
	// Paths select exact raw paths (any bytes, no pattern syntax) and their
	// subtrees; when set, Include is ignored. In-place restores stage
	// exactly the paths their plan replaces.
	Paths []string
	// Special restores device nodes and setuid/setgid bits. They are
	// restored only when Special is set and the process runs as root;
	// otherwise devices are skipped and the bits stripped, each with a
	// warning (FAULTS E15).
	Special bool
	Live    *Live
	Phase   string // the progress phase shown; default "restore"
}

// RestoreResult summarises a restore.
type RestoreResult struct {
	BackupID string    `json:"backup_id"`
	Target   string    `json:"target"`
	Files    int64     `json:"files"`
	Dirs     int64     `json:"dirs"`
	Links    int64     `json:"links"`
	Bytes    int64     `json:"bytes"`
	Reused   int64     `json:"reused"` // files already correct from an interrupted run
	Failed   []Warning `json:"failed,omitempty"`
	Warnings []Warning `json:"warnings,omitempty"`
}

// RestoreFailedError reports files that could not be restored because
// their stored data is damaged; everything else was restored.
type RestoreFailedError struct{ Failed []Warning }

func (e *RestoreFailedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d file(s) could not be restored:", len(e.Failed))
	for i, f := range e.Failed {
		if i == 10 {
			fmt.Fprintf(&b, " …")
			break
		}
		fmt.Fprintf(&b, " %s (%s);", f.Path, f.Problem)
	}
	return b.String()
}

// StagingDir is the directory, at the top of a live root, where an in-place
// restore stages files and keeps the replaced ones until it commits or rolls
// back (package restore). Backups never walk into it.
const StagingDir = ".snapforge-restore"

// markerName marks a target that a restore is filling; its presence with
// the same backup id lets an interrupted restore resume.
const markerName = ".snapforge-restore-in-progress"

type restoreMarker struct {
	BackupID string `json:"backup_id"`
	Started  string `json:"started_utc"`
}

type restorer struct {
	r      *Repo
	m      *Manifest
	o      RestoreOptions
	root   *os.Root
	pr     *packReader
	resume bool
	isRoot bool
	dirs   []dirMeta // walker only
	stack  []*dirHandle

	mu      sync.Mutex // guards res and made, shared with the workers
	res     RestoreResult
	made    map[string]bool // files restored in this run (hardlink targets)
	exact   map[string]bool // opts.Paths
	below   map[string]bool // directories holding one of opts.Paths
	written atomic.Int64    // bytes written, for early writeback
	kick    chan struct{}
}

// dirHandle is an open directory of the target. Files are created relative
// to it, one name at a time, so no path is resolved twice. The walker holds
// a reference while it is inside the directory and every queued file job
// holds one; the last release closes it.
type dirHandle struct {
	rel  string
	root *os.Root
	refs atomic.Int32
}

func (d *dirHandle) hold() *dirHandle { d.refs.Add(1); return d }

func (d *dirHandle) release() {
	if d.refs.Add(-1) == 0 {
		d.root.Close()
	}
}

// restoreJob is one regular file for a worker to restore.
type restoreJob struct {
	dir *dirHandle
	rel string
	n   *Node
}

// restoreWorkers restore files concurrently: small files wait on the disk
// more than on the CPU, big ones keep loading chunks ahead of the writer.
// Eight on 2 cores: the benchmark's full restore (cold, 6 interleaved
// pairs) 3.58-4.02 s, median 3.90, against 3.68-4.32 s, median 4.04, with
// four; restore's memory has no target, a backup's has.
func restoreWorkers() int { return min(max(8, 4*runtime.NumCPU()), 16) }

// writebackEvery is how many written bytes start a background syncfs, so
// the final sync (a restore is durable when it reports success) finds
// little left to write.
const writebackEvery = 64 << 20

type dirMeta struct {
	rel string
	n   *Node
}

// Restore writes snapshot m into opts.Target, which must be absent, empty,
// or an interrupted restore of the same snapshot. Symlinks are never
// followed and nothing is written outside the target. Each file is written
// under a temporary name, checked against its BLAKE3 and then renamed, so
// a file at its final name is always complete.
func (r *Repo) Restore(ctx context.Context, m *Manifest, opts RestoreOptions) (res *RestoreResult, err error) {
	if err := r.errIfNoIndex(); err != nil {
		return nil, err
	}
	if opts.Live == nil {
		opts.Live = &Live{}
	}
	target, err := filepath.Abs(opts.Target)
	if err != nil {
		return nil, fmt.Errorf("restore: target %s: %w", opts.Target, err)
	}
	params := map[string]any{"backup_id": m.BackupID, "target": audit.Escape([]byte(target)), "include": opts.Include}
	defer func() {
		outcome := "ok"
		if err != nil {
			outcome = FailedOutcome(err)
		}
		r.AuditAs(ctx, "restore", params, outcome)
	}()
	if within(target, r.path) || within(r.path, target) {
		return nil, fmt.Errorf("restore: target %s overlaps the repository %s; choose another directory", target, r.path)
	}
	if target == "/" {
		return nil, errors.New("restore: refusing to restore into /; choose a new or empty directory")
	}
	rs := &restorer{r: r, m: m, o: opts, made: map[string]bool{}, isRoot: os.Geteuid() == 0}
	if len(opts.Paths) > 0 {
		rs.exact, rs.below = map[string]bool{}, map[string]bool{}
		for _, p := range opts.Paths {
			p = strings.Trim(p, "/")
			rs.exact[p] = true
			for d := path.Dir(p); d != "."; d = path.Dir(d) {
				rs.below[d] = true
			}
			rs.below[""] = true
		}
	}
	rs.res.BackupID, rs.res.Target = m.BackupID, target
	if err := rs.prepareTarget(target); err != nil {
		return nil, err
	}
	rs.root, err = os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("restore: open target %s: %w", target, err)
	}
	defer rs.root.Close()
	rs.pr = r.newPackReader(64)
	rs.pr.direct = true // packs are read once: no page cache for them (see directMin)
	// Each worker may be reading from a group of its own, and a large file's
	// chunks are loaded ahead: with the default four decoded groups kept, the
	// benchmark's restore decoded 663 groups (690 MB) for 464 distinct; with
	// two per worker, 469.
	rs.pr.groups.keep(2 * restoreWorkers())
	defer rs.pr.Close()
	if rs.resume {
		rs.sweepTemps(".")
	}
	if opts.Phase == "" {
		opts.Phase = "restore"
	}
	opts.Live.start(opts.Phase)
	tree, err := m.TreeID()
	if err != nil {
		return nil, err
	}
	top, err := rs.root.OpenRoot(".")
	if err != nil {
		return nil, fmt.Errorf("restore: open target %s: %w", target, err)
	}
	rs.stack = []*dirHandle{{rel: ".", root: top}}
	rs.stack[0].refs.Store(1)
	defer func() {
		for len(rs.stack) > 0 {
			rs.pop()
		}
	}()

	flushed := make(chan struct{})
	rs.kick = make(chan struct{}, 1)
	go func() { // early writeback; errors surface in the final sync
		defer close(flushed)
		tf, err := os.Open(target)
		for range rs.kick {
			if err == nil {
				unix.Syncfs(int(tf.Fd()))
			}
		}
		if err == nil {
			tf.Close()
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan restoreJob, 64)
	for range restoreWorkers() {
		g.Go(func() error {
			for j := range jobs {
				err := ctx.Err() // the caller's, between files
				if err == nil {
					err = rs.restoreFile(gctx, j.dir, path.Base(j.rel), j.rel, j.n)
				}
				j.dir.release()
				if err != nil {
					for j := range jobs { // drain so the walker never blocks
						j.dir.release()
					}
					return err
				}
			}
			return nil
		})
	}
	var links, ancestors []dirMeta
	walkErr := r.Walk(gctx, tree, "", func(rel string, n *Node) error {
		if rs.resume && n.Type == TypeDir {
			rs.reopenDir(rel) // a killed run may have applied a read-only mode already
		}
		if !rs.selected(rel) {
			if n.Type == TypeDir && rs.hasSelectedBelow(rel) {
				ancestors = append(ancestors, dirMeta{rel, n})
				return nil
			}
			if n.Type == TypeDir {
				return SkipDir
			}
			return nil
		}
		if n.Type == TypeHardlink {
			links = append(links, dirMeta{rel, n})
			return nil
		}
		if n.Type != TypeFile {
			return rs.restoreNode(gctx, rel, n)
		}
		d, err := rs.dirOf(rel)
		if err != nil {
			return err
		}
		select {
		case jobs <- restoreJob{dir: d.hold(), rel: rel, n: n}:
			return nil
		case <-gctx.Done():
			d.release()
			return gctx.Err()
		}
	})
	close(jobs)
	err = g.Wait()
	close(rs.kick)
	<-flushed
	if err == nil && walkErr != nil {
		err = walkErr
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("restore %s: %w", m.BackupID, err)
	}
	for len(rs.stack) > 1 {
		rs.pop()
	}
	for _, l := range links {
		if err := rs.restoreHardlink(ctx, l.rel, l.n); err != nil {
			return nil, err
		}
	}
	// Parents created only to hold a selection get their snapshot metadata too.
	for _, d := range ancestors {
		if fi, err := rs.root.Lstat(d.rel); err == nil && fi.IsDir() {
			rs.dirs = append(rs.dirs, d)
		}
	}
	// Directory metadata last, deepest first, so writing inside them does
	// not change their mtimes and read-only modes do not block the restore.
	sort.SliceStable(rs.dirs, func(i, j int) bool { return strings.Count(rs.dirs[i].rel, "/") > strings.Count(rs.dirs[j].rel, "/") })
	for _, d := range rs.dirs {
		rs.applyMeta(d.rel, d.n)
	}
	byPath := func(ws []Warning) {
		sort.SliceStable(ws, func(i, j int) bool { return ws[i].Path < ws[j].Path })
	}
	byPath(rs.res.Failed) // workers finish in any order
	byPath(rs.res.Warnings)
	if err := syncFS(target); err != nil {
		return nil, fmt.Errorf("restore: sync %s: %w", target, err)
	}
	if len(rs.res.Failed) > 0 {
		params["failed"] = len(rs.res.Failed)
		return &rs.res, &RestoreFailedError{Failed: rs.res.Failed}
	}
	if err := os.Remove(filepath.Join(target, markerName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("restore: remove marker: %w", err)
	}
	params["files"] = rs.res.Files
	params["bytes"] = rs.res.Bytes
	params["reused"] = rs.res.Reused
	return &rs.res, nil
}

func (rs *restorer) prepareTarget(target string) error {
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("restore: create target %s: %w", target, err)
	}
	fi, err := os.Lstat(target)
	if err != nil {
		return fmt.Errorf("restore: target %s: %w", target, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("restore: target %s is not a directory", target)
	}
	names, err := readDirNames(target)
	if err != nil {
		return fmt.Errorf("restore: read target %s: %w", target, err)
	}
	marker := filepath.Join(target, markerName)
	if len(names) > 0 {
		b, err := os.ReadFile(marker)
		var mk restoreMarker
		if err != nil || json.Unmarshal(b, &mk) != nil {
			return fmt.Errorf("restore: target %s is not empty; restore into a new or empty directory (restoring over live files is `restore --in-place`)", target)
		}
		if mk.BackupID != rs.m.BackupID {
			return fmt.Errorf("restore: target %s holds an interrupted restore of snapshot %s; finish it with that snapshot or choose an empty directory", target, mk.BackupID)
		}
		rs.resume = true
		return nil
	}
	b, _ := json.Marshal(restoreMarker{BackupID: rs.m.BackupID, Started: time.Now().UTC().Format(time.RFC3339)})
	return writeFileAtomic(marker, b, nil)
}

// selected reports whether rel or one of its ancestors matches an include
// (or is one of the exact paths).
func (rs *restorer) selected(rel string) bool {
	if rs.exact != nil {
		for p := rel; ; p = path.Dir(p) {
			if rs.exact[p] {
				return true
			}
			if !strings.Contains(p, "/") {
				return false
			}
		}
	}
	return Included(rs.o.Include, rel)
}

// hasSelectedBelow reports whether an include pattern may select something
// inside directory rel.
func (rs *restorer) hasSelectedBelow(rel string) bool {
	if rs.below != nil {
		return rs.below[rel]
	}
	return IncludedBelow(rs.o.Include, rel)
}

// IncludedBelow reports whether one of the include patterns may select
// something inside directory rel (so a walk must enter it).
func IncludedBelow(patterns []string, rel string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, pat := range patterns {
		// Like MatchGlob: a pattern without '/' (a trailing one aside)
		// matches at any depth; a leading '/' anchors it at the root.
		if !strings.Contains(strings.TrimRight(pat, "/"), "/") {
			return true
		}
		pat = strings.Trim(pat, "/")
		if strings.HasPrefix(pat, "**") {
			return true // matches at any depth
		}
		segs := strings.Split(pat, "/")
		rsegs := strings.Split(rel, "/")
		ok := len(rsegs) < len(segs)
		for i, s := range rsegs {
			if i >= len(segs) {
				break // the pattern ends above rel
			}
			if s2 := segs[i]; s2 == "**" {
				ok = true // "**" spans any depth below
				break
			} else if m, _ := path.Match(s2, s); !m {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// dirOf returns the open directory that holds rel, creating and opening
// the directories on the way that are not open yet (the parents of a
// selection). The walker visits in pre-order, so the open directories form
// a stack along the current path; leaving a directory releases it.
func (rs *restorer) dirOf(rel string) (*dirHandle, error) {
	parent := path.Dir(rel)
	for len(rs.stack) > 1 {
		top := rs.stack[len(rs.stack)-1].rel
		if parent == top || strings.HasPrefix(parent, top+"/") {
			break
		}
		rs.pop()
	}
	top := rs.stack[len(rs.stack)-1]
	if top.rel == parent {
		return top, nil
	}
	rest := parent
	if top.rel != "." {
		rest = strings.TrimPrefix(parent, top.rel+"/")
	}
	for _, name := range strings.Split(rest, "/") {
		d, err := rs.openDir(rs.stack[len(rs.stack)-1], name)
		if err != nil {
			return nil, err
		}
		rs.stack = append(rs.stack, d)
	}
	return rs.stack[len(rs.stack)-1], nil
}

// openDir makes directory name in parent (if absent) and opens it.
func (rs *restorer) openDir(parent *dirHandle, name string) (*dirHandle, error) {
	rel := name
	if parent.rel != "." {
		rel = parent.rel + "/" + name
	}
	if err := parent.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("restore: create directory %s: %w", DisplayName(rel), err)
	}
	root, err := parent.root.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("restore: open directory %s: %w", DisplayName(rel), err)
	}
	d := &dirHandle{rel: rel, root: root}
	d.refs.Store(1) // the walker's
	return d, nil
}

func (rs *restorer) pop() {
	rs.stack[len(rs.stack)-1].release()
	rs.stack = rs.stack[:len(rs.stack)-1]
}

func (rs *restorer) warn(rel, problem string) {
	p, b64 := pathFields(rel)
	rs.mu.Lock()
	rs.res.Warnings = append(rs.res.Warnings, Warning{Path: p, PathB64: b64, Problem: problem})
	rs.mu.Unlock()
}

func (rs *restorer) restoreNode(ctx context.Context, rel string, n *Node) error {
	parent, err := rs.dirOf(rel)
	if err != nil {
		return err
	}
	switch n.Type {
	case TypeDir:
		if rs.resume {
			if fi, err := rs.root.Lstat(rel); err == nil && !fi.IsDir() {
				if err := rs.root.Remove(rel); err != nil {
					return fmt.Errorf("restore: replace %s: %w", DisplayName(rel), err)
				}
			}
		}
		d, err := rs.openDir(parent, path.Base(rel))
		if err != nil {
			return err
		}
		rs.stack = append(rs.stack, d)
		if rs.resume {
			rs.sweepTemps(rel)
		}
		rs.dirs = append(rs.dirs, dirMeta{rel, n})
		rs.res.Dirs++
	case TypeFile:
		return rs.restoreFile(ctx, parent, path.Base(rel), rel, n)
	case TypeSymlink:
		if cur, err := rs.root.Readlink(rel); err == nil && cur == n.Target {
			rs.res.Links++
			return nil
		}
		rs.root.Remove(rel)
		// Root.Symlink creates the link itself; it is never followed (FAULTS D11, E2).
		if err := rs.root.Symlink(n.Target, rel); err != nil {
			return fmt.Errorf("restore: symlink %s: %w", DisplayName(rel), err)
		}
		rs.applyMeta(rel, n)
		rs.res.Links++
	case TypeFIFO, TypeDevice:
		if n.Type == TypeDevice && !(rs.o.Special && rs.isRoot) {
			rs.warn(rel, "device node not restored (only as root and when special files are asked for)")
			return nil
		}
		rs.root.Remove(rel)
		err := rs.atDir(rel, func(dfd int, name string) error {
			if n.Type == TypeFIFO {
				return unix.Mkfifoat(dfd, name, n.Mode&0o7777)
			}
			return unix.Mknodat(dfd, name, n.Mode, int(n.Rdev))
		})
		if err != nil {
			if n.Type == TypeDevice {
				rs.warn(rel, "device node not created: "+errText(err))
				return nil
			}
			return fmt.Errorf("restore: create fifo %s: %w", DisplayName(rel), err)
		}
		rs.applyMeta(rel, n)
	}
	return nil
}

// reopenDir makes a directory that an interrupted run already finished
// owner-accessible again; its snapshot mode is applied again at the end.
func (rs *restorer) reopenDir(rel string) {
	if fi, err := rs.root.Lstat(rel); err == nil && fi.IsDir() && fi.Mode().Perm()&0o700 != 0o700 {
		rs.root.Chmod(rel, fi.Mode().Perm()|0o700)
	}
}

// atDir calls fn with an open descriptor of rel's parent and rel's last
// name, resolving the parent inside the root.
func (rs *restorer) atDir(rel string, fn func(dfd int, name string) error) error {
	dir := path.Dir(rel)
	d, err := rs.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), path.Base(rel))
}

func randName() string {
	var b [8]byte
	rand.Read(b[:])
	return ".sfr-" + hex.EncodeToString(b[:])
}

// sweepTemps removes the temporary files (randName) that a killed run left
// in dir. It runs before dir's entries are restored, so a snapshot entry
// that happens to have such a name is restored afterwards.
func (rs *restorer) sweepTemps(dir string) {
	d, err := rs.root.Open(dir)
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		if len(name) == len(".sfr-")+16 && strings.HasPrefix(name, ".sfr-") {
			if _, err := hex.DecodeString(name[len(".sfr-"):]); err == nil {
				rs.root.Remove(path.Join(dir, name))
			}
		}
	}
}

// restoreFile writes file rel (called name in directory dir) under a
// temporary name, checks its content, sets its metadata and renames it into
// place. A file with a damaged chunk is reported and left out; the
// temporary file is removed (FAULTS A1). Workers call it concurrently.
func (rs *restorer) restoreFile(ctx context.Context, dir *dirHandle, name, rel string, n *Node) error {
	if rs.resume && rs.alreadyCorrect(dir, name, n) {
		rs.mu.Lock()
		rs.res.Reused++
		rs.res.Files++
		rs.made[rel] = true
		rs.mu.Unlock()
		rs.o.Live.FilesDone.Add(1)
		return nil
	}
	tmp := randName()
	f, err := dir.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("restore: create %s: %w", DisplayName(rel), err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			dir.root.Remove(tmp)
		}
	}()
	if err := rs.writeContent(ctx, f, n); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if IsIntegrity(err) {
			p, b64 := pathFields(rel)
			rs.mu.Lock()
			rs.res.Failed = append(rs.res.Failed, Warning{Path: p, PathB64: b64, Problem: err.Error()})
			rs.mu.Unlock()
			return nil
		}
		return fmt.Errorf("restore: write %s: %w", DisplayName(rel), err)
	}
	if rs.isRoot {
		if err := f.Chown(int(n.UID), int(n.GID)); err != nil {
			rs.warn(rel, "owner not restored: "+errText(err))
		}
	}
	if err := f.Chmod(fs.FileMode(n.Mode & 0o777)); err != nil {
		return fmt.Errorf("restore: chmod %s: %w", DisplayName(rel), err)
	}
	if n.Mode&0o7000 != 0 {
		if err := unix.Fchmod(int(f.Fd()), rs.modeBits(rel, n)); err != nil {
			rs.warn(rel, "special mode bits not restored: "+errText(err))
		}
	}
	for _, x := range n.Xattrs {
		if err := unix.Fsetxattr(int(f.Fd()), x.Name, x.Value, 0); err != nil {
			rs.warn(rel, "xattr "+x.Name+" not restored: "+errText(err))
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore: close %s: %w", DisplayName(rel), err)
	}
	ok = true
	mt := time.Unix(0, n.MTime)
	if err := dir.root.Chtimes(tmp, mt, mt); err != nil {
		dir.root.Remove(tmp)
		return fmt.Errorf("restore: set mtime of %s: %w", DisplayName(rel), err)
	}
	if rs.resume { // a fresh target holds nothing to replace
		if fi, err := dir.root.Lstat(name); err == nil && fi.IsDir() {
			dir.root.RemoveAll(name)
		}
	}
	if err := dir.root.Rename(tmp, name); err != nil {
		dir.root.Remove(tmp)
		return fmt.Errorf("restore: rename %s: %w", DisplayName(rel), err)
	}
	rs.mu.Lock()
	rs.made[rel] = true
	rs.res.Files++
	rs.res.Bytes += n.Size
	rs.mu.Unlock()
	rs.o.Live.FilesDone.Add(1)
	if w := rs.written.Add(n.Size); w/writebackEvery != (w-n.Size)/writebackEvery {
		select {
		case rs.kick <- struct{}{}:
		default: // one is running; it will catch these bytes too
		}
	}
	return nil
}

// writeContent writes n's chunks into f, leaving all-zero chunks as holes
// (sparse files stay sparse, FAULTS D9). Every chunk is checked against its
// hash before it is written (streamContent).
func (rs *restorer) writeContent(ctx context.Context, f *os.File, n *Node) error {
	err := rs.r.streamContent(ctx, rs.pr, n, checkChunks, nil, func(data []byte, off int64) error {
		rs.o.Live.BytesDone.Add(int64(len(data)))
		return writeSparse(f, data, off)
	})
	if err != nil {
		return err
	}
	return f.Truncate(n.Size)
}

// sparseBlock is the granularity at which zero runs become holes.
const sparseBlock = 4096

// writeSparse writes data at off, leaving file-system-block-aligned runs of
// zeros as holes (the file is truncated to its full size afterwards).
func writeSparse(f *os.File, data []byte, off int64) error {
	start := -1 // start of the pending non-zero run in data
	for i := 0; i < len(data); {
		// Blocks aligned to the file offset, so holes can be punched.
		end := i + sparseBlock - int((off+int64(i))%sparseBlock)
		if end > len(data) {
			end = len(data)
		}
		zero := allZero(data[i:end])
		if !zero && start < 0 {
			start = i
		}
		if zero && start >= 0 {
			if _, err := f.WriteAt(data[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
		i = end
	}
	if start >= 0 {
		if _, err := f.WriteAt(data[start:], off+int64(start)); err != nil {
			return err
		}
	}
	return nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// alreadyCorrect reports whether an interrupted restore already wrote rel
// completely: same size and mtime, and the same BLAKE3.
func (rs *restorer) alreadyCorrect(dir *dirHandle, name string, n *Node) bool {
	fi, err := dir.root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != n.Size || fi.ModTime().UnixNano() != n.MTime {
		return false
	}
	f, err := dir.root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	h := blake3.Get()
	defer blake3.Put(h)
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	var sum ID
	copy(sum[:], h.Sum(nil))
	return sum == n.Hash
}

// restoreHardlink links rel to its group's first name when that was
// restored here; otherwise it restores the content as a file. A link never
// points outside the target (FAULTS D10).
func (rs *restorer) restoreHardlink(ctx context.Context, rel string, n *Node) error {
	dir, err := rs.dirOf(rel)
	if err != nil {
		return err
	}
	if rs.made[n.Target] {
		if fi, err := rs.root.Lstat(n.Target); err == nil && fi.Mode().IsRegular() {
			rs.root.Remove(rel)
			if err := rs.root.Link(n.Target, rel); err != nil {
				return fmt.Errorf("restore: hard link %s: %w", DisplayName(rel), err)
			}
			rs.res.Links++
			return nil
		}
	}
	fn := *n
	fn.Type = TypeFile
	return rs.restoreFile(ctx, dir, path.Base(rel), rel, &fn)
}

// modeBits returns the permission bits to apply to rel: setuid and setgid
// only when special files were asked for and we are root; otherwise they
// are stripped with a warning (FAULTS E15). The sticky bit always stays.
func (rs *restorer) modeBits(rel string, n *Node) uint32 {
	m := n.Mode & 0o7777
	if m&0o6000 != 0 && n.Type != TypeDir && !(rs.o.Special && rs.isRoot) {
		rs.warn(rel, "setuid/setgid bits not restored (only as root and when special files are asked for)")
		m &^= 0o6000
	}
	return m
}

// applyMeta sets owner, mode and mtime without following symlinks; failures
// are warnings.
func (rs *restorer) applyMeta(rel string, n *Node) {
	err := rs.atDir(rel, func(dfd int, name string) error {
		if rs.isRoot {
			if err := unix.Fchownat(dfd, name, int(n.UID), int(n.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
				rs.warn(rel, "owner not restored: "+errText(err))
			}
		}
		if n.Type != TypeSymlink {
			if err := unix.Fchmodat(dfd, name, rs.modeBits(rel, n), 0); err != nil {
				return err
			}
		}
		ts := []unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
		return unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		rs.warn(rel, "metadata not restored: "+errText(err))
	}
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
