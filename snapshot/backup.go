package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"

	"snapforge/snapshot/audit"
	blake3 "snapforge/snapshot/b3"
	"snapforge/snapshot/chunker"
	"snapforge/snapshot/pack"
	"snapforge/snapshot/sqlitecap"
)

// Strategies.
const (
	StrategyFull         = "full"
	StrategyIncremental  = "incremental"
	StrategyDifferential = "differential"
)

// BackupOptions configure one backup. Root is required.
type BackupOptions struct {
	Strategy string // full, incremental (default) or differential
	Root     string // absolute source root
	// Paths select parts of Root (slash-separated, relative; a trailing '/'
	// is allowed). Empty: everything.
	Paths []string
	// SQLite lists paths (files or directories, as Paths) whose SQLite
	// databases are captured through SQLite's online backup.
	SQLite   []string
	Exclude  []string // glob patterns on relative paths; "**" spans directories
	Includes []string // unit names recorded in the manifest; default ["."]
	// UnitPaths are the included units' paths, recorded in the manifest.
	UnitPaths map[string][]string
	Excludes  []string // unit names left out, recorded in the manifest
	Tags      []string
	// Location is the time zone of the backup id's date and time (the
	// user's, who may be a client of the owner); nil: this process's.
	Location *time.Location
	Name     string // backup id prefix; default "snap"
	Host     string
	// OneFileSystem keeps the walk on Root's filesystem.
	OneFileSystem bool
	// ReadConcurrency is the number of files read at once; default 2 (more
	// rarely helps on one disk and would starve the compressors on 2 cores).
	ReadConcurrency int
	Live            *Live // nil: not reported
	// WrapReader lets tests inject read faults into source files. nil: none.
	WrapReader func(relPath string, r io.Reader) io.Reader
	// BeforeOpen is called with a file's relative path after it was listed
	// and before it is opened, so tests can race it (FAULTS D2, D3). nil: none.
	BeforeOpen func(relPath string)
}

// cleanRels normalises selection paths to slash-separated relative paths
// without leading or trailing slashes ("" is the whole root).
func cleanRels(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strings.Trim(path.Clean("/"+p), "/")
	}
	return out
}

func (o BackupOptions) withDefaults() BackupOptions {
	o.Paths, o.SQLite = cleanRels(o.Paths), cleanRels(o.SQLite)
	if o.Strategy == "" {
		o.Strategy = StrategyIncremental
	}
	if o.ReadConcurrency <= 0 {
		o.ReadConcurrency = 2
	}
	if o.Name == "" {
		o.Name = "snap"
	}
	if len(o.Includes) == 0 {
		o.Includes = []string{"."}
	}
	if o.Excludes == nil {
		o.Excludes = []string{}
	}
	if o.Live == nil {
		o.Live = &Live{}
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	return o
}

// PackTargetSize is the size at which a pack is closed.
const PackTargetSize = 32 << 20

// retries of a file that changes while read (FAULTS D1).
const changeRetries = 3

// Timestamps this close to the backup's start are not trusted by the next
// incremental backup: a write after the backup read the file, within the
// same tick of the file system's clock as the write before it, would leave
// the timestamps as they were. A file whose timestamps are all whole
// seconds may live on a file system that keeps no more than that (ext3 and
// HFS+ keep seconds, FAT two): mtimeGranularity. One with a sub-second part
// lives on one that keeps them (ext4, XFS, Btrfs, tmpfs, NTFS: nanoseconds,
// exFAT: 10 ms), where Linux stamps writes from its coarse clock, one tick
// of at most 10 ms: fineGranularity, ten such ticks. (Before, every file
// had the two seconds: a file written shortly before a backup, the last
// ones a copy or an installer wrote, was read again by the next one.)
const (
	mtimeGranularity = 2 * time.Second
	fineGranularity  = 100 * time.Millisecond
)

// racyWindow returns how close to the backup's start n's timestamps may
// not be trusted (see mtimeGranularity).
func racyWindow(n *Node) time.Duration {
	if n.MTime%1e9 != 0 || n.CTime%1e9 != 0 {
		return fineGranularity
	}
	return mtimeGranularity
}

type fileJob struct {
	node   *Node
	abs    string
	rel    string
	sqlite bool
	st     unix.Stat_t
}

// linkName is a node of a hard-link group with its relative path.
type linkName struct {
	node *Node
	rel  string
}

// hardlink is a later name of a group whose content is the first name's.
type hardlink struct {
	linkName
	first *Node
}

type dirState struct {
	nodes []*Node
	subs  map[*Node]*dirState
}

type backup struct {
	r     *Repo
	o     BackupOptions
	start time.Time // Options.Now: the snapshot's time
	began time.Time // the real clock, for the duration (start may be a fake)

	repoDev, repoIno uint64
	rootDev          uint64
	rootDir          RootDir // the source root's own attributes, as the backup started
	skipMounts       map[string]bool

	jobs  chan *fileJob
	blobs chan blobJob
	packs chan packJob

	inflight *semaphore.Weighted // bytes of new blobs queued, compressing or waiting to be written (inflightMax)

	mu        sync.Mutex
	seen      map[ID]struct{}
	skipped   map[*Node]bool
	warnings  []Warning
	partial   bool
	hardlinks map[[2]uint64]linkName // first name of each hard-link group, by device and inode
	links     []hardlink             // the later names, in walk order

	newBytes atomic.Int64
	ahead    chan aheadFile // small files for the readahead workers (readahead.go)

}

// blobJob and packJob carry a new blob to the compressors and the pack
// writer. Their bytes are in a pooled buffer (buf, nil when not pooled),
// given back once the next stage is done with them: a backup moves all of
// its new bytes through these stages, and a buffer each would be that much
// garbage for the collector to find and the kernel to fault in again.
//
// A job with members is a group of small blobs (see groupMax): raw holds
// their plaintexts back to back. It becomes one frame (codec CodecGroup) or,
// when that saves too little, each member stored raw (codec CodecRaw).
type blobJob struct {
	id      ID
	kind    uint8
	raw     []byte
	buf     *[]byte     // holds raw
	members []pack.Blob // a group's members (ID, Kind, Raw); nil for one blob
	weight  int64       // held of backup.inflight until written
	probed  bool        // found not Incompressible already: not probed again
	pick    *levelPick  // the stream's choice of effort; nil: the default
}

type packJob struct {
	id      ID
	kind    uint8
	codec   uint8
	stored  []byte
	raw     uint32
	buf     *[]byte // holds stored
	members []pack.Blob
	weight  int64
}

// inflightMax bounds the bytes of new blobs between the file readers and
// the pack writer: queued, being compressed, compressed and waiting. The
// queues are counted in jobs, and a job may be a 16 KiB page or a 4 MiB
// chunk; the bytes are what the backup's memory is made of.
const inflightMax = 8 << 20

// compressJob compresses j for the pack writer. The frame is built in a
// scratch buffer with room for the worst case, then copied into one of its
// own size: what waits in the writer's queue is the compressed size, not
// the worst case (a database's 1 MiB group is about 400 KiB stored).
func compressJob(j blobJob) packJob {
	scratch := getBuf(pack.CompressBound(len(j.raw)))
	defer putBuf(scratch)
	e, trial := j.pick.next()
	stored, codec := compressAt((*scratch)[:0], &j, e, j.probed)
	if e == pack.EffortFast && codec == pack.CodecRaw {
		// The fast frame saved too little to be kept, where the default
		// one may not: a stream judged fast loses no more than its frames'
		// difference, never a whole job's saving.
		stored, codec = compressAt((*scratch)[:0], &j, pack.EffortDefault, j.probed)
	}
	if trial && codec != pack.CodecRaw && pack.FastDiffers(j.members != nil) {
		alt := getBuf(pack.CompressBound(len(j.raw)))
		fast, fc := compressAt((*alt)[:0], &j, pack.EffortFast, true)
		n := len(fast)
		if fc == pack.CodecRaw {
			n = 0
		}
		j.pick.judge(len(stored), n)
		putBuf(alt)
	}
	pj := packJob{id: j.id, kind: j.kind, codec: codec, raw: uint32(len(j.raw)), members: j.members, weight: j.weight}
	if codec == pack.CodecRaw {
		pj.stored, pj.buf = j.raw, j.buf // stored is raw itself
		return pj
	}
	putBuf(j.buf)
	pj.buf = getBuf(len(stored))
	pj.stored = append((*pj.buf)[:0], stored...)
	*pj.buf = pj.stored
	return pj
}

// Backup takes a snapshot and returns its manifest. A snapshot with files
// that could not be read is still committed, with Partial set and the
// files listed in Warnings. On error nothing is committed.
// ValidStrategy reports whether s names a backup strategy.
func ValidStrategy(s string) error {
	switch s {
	case StrategyFull, StrategyIncremental, StrategyDifferential:
		return nil
	}
	return fmt.Errorf("unknown strategy %q (use full, incremental or differential)", s)
}

func (r *Repo) Backup(ctx context.Context, opts BackupOptions) (m *Manifest, err error) {
	if err := r.errIfNoIndex(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	params := map[string]any{"root": audit.Escape([]byte(o.Root)), "strategy": o.Strategy, "units": o.Includes}
	defer func() {
		if err != nil {
			r.AuditAs(ctx, "backup", params, FailedOutcome(err))
		}
	}()
	if err := ValidStrategy(o.Strategy); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", o.Root, err)
	}
	o.Root = root
	params["root"] = audit.Escape([]byte(root))
	var rootSt unix.Stat_t
	if err := unix.Stat(root, &rootSt); err != nil {
		return nil, fmt.Errorf("backup: source %s: %w", root, err)
	}
	if rootSt.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("backup: source %s is not a directory", root)
	}
	if within(root, r.path) {
		return nil, fmt.Errorf("backup: source %s is inside the repository %s; refusing to back up the repository into itself", root, r.path)
	}
	mounts := ownMounts()
	if real, err := filepath.EvalSymlinks(root); err == nil {
		for mp := range mounts {
			if within(real, mp) {
				return nil, fmt.Errorf("backup: source %s is inside the snapforge mount at %s, a read-only view of snapshots already in a repository; back up the original files instead (or restore what you need first)", root, mp)
			}
		}
	}
	var repoSt unix.Stat_t
	if err := unix.Stat(r.path, &repoSt); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	b := &backup{r: r, o: o, start: r.opts.Now(), began: time.Now(),
		repoDev: repoSt.Dev, repoIno: repoSt.Ino, rootDev: rootSt.Dev,
		rootDir:    RootDir{Mode: rootSt.Mode & 0o7777, UID: rootSt.Uid, GID: rootSt.Gid, MTime: rootSt.Mtim.Nano()},
		skipMounts: mounts,
		seen:       map[ID]struct{}{}, skipped: map[*Node]bool{},
		hardlinks: map[[2]uint64]linkName{},
	}
	for _, rel := range o.Paths {
		if _, err := os.Lstat(filepath.Join(root, rel)); errors.Is(err, fs.ErrNotExist) {
			b.warn(rel, "selected path does not exist in the source", false)
		}
	}
	parent, strategy, err := b.findParent(ctx)
	if err != nil {
		return nil, err
	}
	o.Live.start("backup")
	m, err = b.run(ctx, parent, strategy)
	if err != nil {
		return nil, err
	}
	outcome := "ok"
	if m.Partial {
		outcome = fmt.Sprintf("partial: %d files skipped", len(m.Warnings))
	}
	params["backup_id"] = m.BackupID
	params["root_hash"] = m.RootHash
	params["files"] = m.Stats.Files
	params["bytes"] = m.Stats.Bytes
	params["new_bytes"] = m.Stats.NewBytes
	params["strategy"] = m.Strategy
	params["warnings"] = len(m.Warnings)
	if _, aerr := r.AuditAs(ctx, "backup", params, outcome); aerr != nil {
		r.opts.Logger.Warn("snapshot committed but its audit event failed", "snapshot", m.BackupID, "err", aerr)
	}
	if r.onCommit != nil {
		r.onCommit(m)
	}
	return m, nil
}

// findParent picks the snapshot whose metadata the strategy trusts.
func (b *backup) findParent(ctx context.Context) (*Manifest, string, error) {
	if b.o.Strategy == StrategyFull {
		return nil, StrategyFull, nil
	}
	list, err := b.r.Snapshots(ctx)
	if err != nil {
		return nil, "", err
	}
	scope := strings.Join(sortedCopy(b.o.Includes), ",")
	for i := len(list) - 1; i >= 0; i-- {
		m := list[i].Manifest
		if m == nil || m.Source.Root != b.o.Root || strings.Join(sortedCopy(m.Includes), ",") != scope {
			continue
		}
		if b.o.Strategy == StrategyDifferential && m.Strategy != StrategyFull {
			continue
		}
		return m, b.o.Strategy, nil
	}
	return nil, StrategyFull, nil // nothing to trust: a full read, recorded as such
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func (b *backup) warn(rel, problem string, partial bool) {
	p, b64 := pathFields(rel)
	b.mu.Lock()
	b.warnings = append(b.warnings, Warning{Path: p, PathB64: b64, Problem: problem})
	if partial {
		b.partial = true
	}
	b.mu.Unlock()
	b.r.opts.Logger.Warn("backup", "path", DisplayName(rel), "problem", problem)
}

func (b *backup) skip(n *Node) {
	b.mu.Lock()
	b.skipped[n] = true
	b.mu.Unlock()
}

func (b *backup) run(ctx context.Context, parent *Manifest, strategy string) (*Manifest, error) {
	g, ctx := errgroup.WithContext(ctx)
	b.jobs = make(chan *fileJob, 64)
	b.inflight = semaphore.NewWeighted(inflightMax)
	b.blobs = make(chan blobJob, 4)
	b.packs = make(chan packJob, 4)

	// Stage 3: one pack writer.
	pw := &packWriter{r: b.r, written: func(n int64) { b.inflight.Release(n) }}
	g.Go(func() error { return pw.run(ctx, b.packs) })
	// Stage 2: compressors.
	var cg sync.WaitGroup
	for i := 0; i < runtime.NumCPU(); i++ {
		cg.Add(1)
		g.Go(func() error {
			defer cg.Done()
			for j := range b.blobs {
				select {
				case b.packs <- compressJob(j):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}
	// Stage 1: file readers.
	var rg sync.WaitGroup
	for i := 0; i < b.o.ReadConcurrency; i++ {
		rg.Add(1)
		g.Go(func() error {
			defer rg.Done()
			ch := &chunkers{cdc: chunker.New(nil, b.r.cfg.Chunker)}
			defer ch.close()
			for j := range b.jobs {
				if err := b.saveFile(ctx, ch, j); err != nil {
					putBuf(ch.group.buf)
					return err
				}
			}
			if len(ch.group.members) == 0 {
				putBuf(ch.group.buf)
				return nil
			}
			return b.queue(ctx, ch.group.take())
		})
	}
	// Totals for progress come from a separate metadata-only scan, so the
	// ETA is known long before the bounded walk below reaches the end.
	scanCtx, stopScan := context.WithCancel(ctx)
	scanDone := make(chan struct{})
	defer func() { stopScan(); <-scanDone }()
	go func() {
		defer close(scanDone)
		b.scan(scanCtx, b.o.Root, "")
		if scanCtx.Err() == nil {
			b.o.Live.WalkDone.Store(true)
		}
	}()
	// Stage 0 and the end: walk, then trees once every file is in.
	var tree ID
	var items []Item
	var stats Stats
	g.Go(func() error {
		defer func() {
			close(b.blobs)
			cg.Wait() // no compressor may send after packs is closed
			close(b.packs)
		}()
		var rootTree *Tree
		if parent != nil {
			id, err := parent.TreeID()
			if err == nil {
				rootTree, err = b.r.loadTree(ctx, id, false)
			}
			if err != nil {
				b.r.opts.Logger.Warn("parent snapshot unreadable; reading everything", "parent", parent.BackupID, "err", err)
				rootTree = nil
			}
		}
		stopAhead := b.startReadahead(ctx)
		root, werr := b.walkDir(ctx, b.o.Root, "", rootTree)
		close(b.jobs)
		stopAhead()
		rg.Wait()
		if werr != nil {
			return werr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.fillHardlinks()
		var err error
		items = []Item{}
		tree, err = b.storeTree(ctx, root, "", &items, &stats)
		return err
	})
	if err := g.Wait(); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return nil, fmt.Errorf("backup failed: no space left on device (repo at %s); nothing was committed, free space and run the backup again: %w", b.r.path, err)
		}
		return nil, fmt.Errorf("backup failed, nothing was committed: %w", err)
	}
	sort.SliceStable(b.warnings, func(i, j int) bool { return b.warnings[i].Path < b.warnings[j].Path })
	stats.NewBytes = b.newBytes.Load()
	stats.DurationMS = time.Since(b.began).Milliseconds()
	m := &Manifest{
		BackupID:   b.r.newBackupID(b.o.Name, b.idTime()),
		CreatedUTC: b.start.UTC().Format(time.RFC3339),
		Strategy:   strategy,
		Source:     Source{Host: b.o.Host, Root: b.o.Root, RootDir: &b.rootDir},
		Includes:   b.o.Includes,
		UnitPaths:  b.o.UnitPaths,
		Excludes:   b.o.Excludes,
		Tags:       b.o.Tags,
		Tree:       tree.String(),
		Items:      items,
		Stats:      stats,
		Partial:    b.partial,
		Warnings:   b.warnings,
		WFVersion:  Version,
		EngineVer:  EngineVersion,
		Governance: Governance{LocalFirst: true, UIPresence: true},
	}
	if parent != nil {
		m.Parent = parent.BackupID
	}
	m.RootHash = RootHash(items)
	h := b.r.audit.Head()
	m.AuditHead, m.AuditSeq = h.Hash, h.Seq
	b.r.opts.Hook("index-committed")
	if err := b.r.writeManifest(m); err != nil {
		return nil, err
	}
	b.r.opts.Hook("manifest-committed")
	return m, nil
}

// newBackupID returns prefix-YYYY-MM-DD-HHMMSS (local time), with a -N
// suffix if taken.
// idTime is the backup's start in the zone its id is written in.
func (b *backup) idTime() time.Time {
	if b.o.Location != nil {
		return b.start.In(b.o.Location)
	}
	return b.start
}

func (r *Repo) newBackupID(prefix string, t time.Time) string {
	base := prefix + "-" + t.Format("2006-01-02-150405")
	id := base
	for n := 2; ; n++ {
		if _, err := os.Lstat(r.manifestPath(id)); errors.Is(err, fs.ErrNotExist) {
			return id
		}
		id = fmt.Sprintf("%s-%d", base, n)
	}
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// ownMounts lists snapforge FUSE mount points (never walked).
func ownMounts() map[string]bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return map[string]bool{}
	}
	defer f.Close()
	return parseOwnMounts(f)
}

// parseOwnMounts reads mountinfo lines and returns the snapforge mounts'
// points: ours by type (fuse.snapforge) or by source (snapforge:REPO), not
// anything else with "snapforge" in its name (an LVM volume, an NFS export).
func parseOwnMounts(r io.Reader) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+2 < len(fields) && len(fields) > 4 &&
				(fields[i+1] == "fuse.snapforge" || strings.HasPrefix(fields[i+2], "snapforge:")) {
				out[UnescapeMount(fields[4])] = true
			}
		}
	}
	return out
}

// UnescapeMount undoes the octal escapes of a path in /proc/self/mounts or
// mountinfo (\040 for a space, \012 for a newline, \134 for a backslash).
func UnescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pseudo filesystems never walked (FAULTS D15).
var pseudoFS = map[int64]string{
	0x9fa0: "proc", 0x62656572: "sysfs", 0x1cd1: "devpts", 0x27e0eb: "cgroup", 0x63677270: "cgroup2",
	0x64626720: "debugfs", 0x73636673: "securityfs", 0x74726163: "tracefs", 0xcafe4a11: "bpf",
	0x6e736673: "nsfs", 0x42494e4d: "binfmt_misc", 0x67596969: "rpc_pipefs",
}

// scope answers whether rel is selected (whole subtree) or only an ancestor
// of a selection (descend, keep only selected children).
func (b *backup) scope(rel string) (full, ancestor bool) {
	if len(b.o.Paths) == 0 {
		return true, false
	}
	for _, p := range b.o.Paths {
		if p == "" || rel == p || strings.HasPrefix(rel, p+"/") {
			return true, false
		}
		if rel == "" || strings.HasPrefix(p, rel+"/") {
			ancestor = true
		}
	}
	return false, ancestor
}

func (b *backup) inSQLite(rel string) bool {
	for _, p := range b.o.SQLite {
		if p == "" || rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

func (b *backup) excluded(rel string) bool {
	for _, pat := range b.o.Exclude {
		if MatchGlob(pat, rel) {
			return true
		}
	}
	return false
}

// walkDir lists one directory (entries in name-byte order) and queues its
// files; subdirectories are walked depth-first.
func (b *backup) walkDir(ctx context.Context, abs, rel string, prev *Tree) (*dirState, error) {
	ds := &dirState{subs: map[*Node]*dirState{}}
	if ctx.Err() != nil {
		return ds, ctx.Err()
	}
	names, err := readDirNames(abs)
	if err != nil {
		if rel == "" {
			return nil, fmt.Errorf("backup: read source root %s: %w", abs, err)
		}
		b.warn(rel, "directory unreadable, its contents are not in this snapshot: "+errText(err), true)
		return ds, nil
	}
	present := map[string]bool{}
	for _, n := range names {
		present[n] = true
	}
	for _, name := range names {
		crel := name
		if rel != "" {
			crel = rel + "/" + name
		}
		full, anc := b.scope(crel)
		if !full && !anc {
			continue
		}
		if b.excluded(crel) || crel == StagingDir {
			continue // StagingDir: an in-place restore's work area, never data
		}
		cabs := filepath.Join(abs, name)
		var st unix.Stat_t
		if err := unix.Lstat(cabs, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				b.warn(crel, "vanished before it could be read", false) // FAULTS D2
				continue
			}
			if errors.Is(err, unix.ENAMETOOLONG) {
				b.warn(crel, fmt.Sprintf("not backed up, nor anything below it: its path is longer than this system allows (%d bytes, PATH_MAX); move it higher up the tree to back it up", len(cabs)), true)
				continue
			}
			b.warn(crel, "cannot stat: "+errText(err), true)
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && !full {
			continue // an ancestor keeps only selected children
		}
		sqlite := b.inSQLite(crel)
		if base, ok := sqliteSidecarOf(crel, name, present); ok && b.inSQLite(base) {
			continue // -wal/-shm/-journal: the online backup already holds their content
		}
		n := nodeFromStat(name, &st)
		reusedFile := false // a plain file, filled from the parent's node
		var pn *Node
		if prev != nil {
			pn = prev.Find(name)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if st.Dev == b.repoDev && st.Ino == b.repoIno {
				continue // the repository itself (FAULTS D15)
			}
			if b.skipMounts[cabs] {
				continue // our own FUSE mount
			}
			descend := true
			if st.Dev != b.rootDev {
				var sfs unix.Statfs_t
				if unix.Statfs(cabs, &sfs) == nil {
					if _, ok := pseudoFS[int64(sfs.Type)]; ok {
						continue // /proc-like (FAULTS D15)
					}
				}
				if b.o.OneFileSystem {
					descend = false // keep the mount point as an empty directory
				}
			}
			var sub *dirState
			if descend {
				var ptree *Tree
				if pn != nil && pn.Type == TypeDir {
					ptree, _ = b.r.loadTree(ctx, pn.Subtree, false) // unreadable parent tree: re-read
				}
				sub, err = b.walkDir(ctx, cabs, crel, ptree)
				if err != nil {
					return ds, err
				}
			} else {
				sub = &dirState{subs: map[*Node]*dirState{}}
			}
			ds.subs[n] = sub
		case unix.S_IFREG:
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if first, ok := b.hardlinks[key]; ok {
					n.Type = TypeHardlink
					n.Target = first.rel
					b.links = append(b.links, hardlink{linkName{n, crel}, first.node})
					ds.nodes = append(ds.nodes, n)
					continue
				}
				b.hardlinks[key] = linkName{n, crel}
			}
			reused := false
			if sqlite {
				reused = b.reuseSQLite(ctx, n, pn, cabs, &st)
			} else {
				reused = b.reuse(ctx, n, pn)
				reusedFile = reused
			}
			if reused {
				b.o.Live.FilesDone.Add(1)
				b.o.Live.BytesDone.Add(st.Size)
			} else {
				j := &fileJob{node: n, abs: cabs, rel: crel, sqlite: sqlite, st: st}
				if !sqlite {
					b.offerReadahead(cabs, st.Size)
				}
				select {
				case b.jobs <- j:
				case <-ctx.Done():
					return ds, ctx.Err()
				}
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(cabs)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					b.warn(crel, "vanished before it could be read", false)
				} else {
					b.warn(crel, "cannot read link: "+errText(err), true)
				}
				continue
			}
			n.Target = target
			n.Size = int64(len(target))
		case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
			// metadata only; a FIFO is never opened (FAULTS D12)
		case unix.S_IFSOCK:
			b.warn(crel, "socket not backed up (sockets cannot be restored)", false)
			continue
		}
		switch {
		case reusedFile:
			// Setting or removing an extended attribute moves the ctime:
			// with the inode and ctime the parent saw, they are the ones
			// it read (one listxattr per file less).
			n.Xattrs = pn.Xattrs
		case n.Type != TypeHardlink:
			n.Xattrs = readXattrs(cabs)
		}
		ds.nodes = append(ds.nodes, n)
	}
	return ds, nil
}

// scan counts the files and bytes the walk will meet, for progress only.
func (b *backup) scan(ctx context.Context, abs, rel string) {
	names, err := readDirNames(abs)
	if err != nil {
		return
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		crel := name
		if rel != "" {
			crel = rel + "/" + name
		}
		full, anc := b.scope(crel)
		if (!full && !anc) || b.excluded(crel) || crel == StagingDir {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(abs, name), &st) != nil {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if (st.Dev == b.repoDev && st.Ino == b.repoIno) || (b.o.OneFileSystem && st.Dev != b.rootDev) {
				continue
			}
			b.scan(ctx, filepath.Join(abs, name), crel)
		case unix.S_IFREG:
			if full {
				b.o.Live.FilesTotal.Add(1)
				b.o.Live.BytesTotal.Add(st.Size)
			}
		}
	}
}

// sqliteSidecarOf reports whether name is a -wal, -shm or -journal file
// beside a database in the same directory, and returns the database's path.
func sqliteSidecarOf(rel, name string, present map[string]bool) (string, bool) {
	for _, suf := range []string{"-wal", "-shm", "-journal"} {
		if base := strings.TrimSuffix(name, suf); base != name && present[base] {
			return strings.TrimSuffix(rel, suf), true
		}
	}
	return "", false
}

// readDirNames returns the names in dir sorted by bytes.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

func nodeFromStat(name string, st *unix.Stat_t) *Node {
	n := &Node{
		Name:  name,
		Mode:  st.Mode & 0o7777,
		UID:   st.Uid,
		GID:   st.Gid,
		MTime: st.Mtim.Nano(),
		CTime: st.Ctim.Nano(),
		Inode: st.Ino,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		n.Type = TypeDir
	case unix.S_IFREG:
		n.Type = TypeFile
		n.Size = st.Size
	case unix.S_IFLNK:
		n.Type = TypeSymlink
	case unix.S_IFIFO:
		n.Type = TypeFIFO
	case unix.S_IFCHR, unix.S_IFBLK:
		n.Type = TypeDevice
		n.Mode |= st.Mode & unix.S_IFMT
		n.Rdev = st.Rdev
	}
	return n
}

func readXattrs(p string) []Xattr {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz <= 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	var out []Xattr
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vs, err := unix.Lgetxattr(p, name, nil)
		if err != nil || vs < 0 {
			continue
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		out = append(out, Xattr{Name: name, Value: v[:vs]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// reuse fills n from the parent's node when the strategy may trust it:
// same size, mtime, ctime and inode, not flagged, and every chunk still
// stored in a sound pack.
func (b *backup) reuse(ctx context.Context, n, pn *Node) bool {
	// A database stored through the online backup holds a copy, not the
	// file's own bytes (and its CTime is a fingerprint): see reuseSQLite.
	if pn == nil || pn.Type != TypeFile || pn.Flags&(FlagNoCache|FlagSQLite) != 0 ||
		pn.Size != n.Size || pn.MTime != n.MTime || pn.CTime != n.CTime || pn.Inode != n.Inode {
		return false
	}
	if !b.chunksStored(ctx, pn.Chunks) {
		return false
	}
	n.Chunks, n.Hash = pn.Chunks, pn.Hash
	b.noteCache(n)
	return true
}

// chunksStored reports whether every chunk is stored in a sound pack.
func (b *backup) chunksStored(ctx context.Context, refs []ChunkRef) bool {
	stored := true
	err := b.r.idx.LookupEach(ctx, refs, func(_ int, loc Location, err error) bool {
		stored = err == nil && b.r.usable(loc)
		return stored
	})
	return err == nil && stored
}

// reuseSQLite fills n, a database of a sqlite unit, from the parent's node
// instead of capturing it again, when the database file and its -wal and
// -journal are as they were before the parent's capture (sqliteState), the
// node is not flagged and every chunk is still stored in a sound pack.
//
// Why this is safe. What any new reader of a database sees is determined by
// the bytes of the main file and of its -wal (WAL mode) or -journal (a hot
// journal is rolled back first; Capture refuses one). The -shm is only an
// index of the -wal that SQLite rebuilds from it, and it changes on every
// read, so it is left out. sqliteState fingerprints size, mtime, ctime and
// inode of the database file, the values the incremental strategy already
// trusts for plain files (ctime cannot be set from user space, so even a tool
// that restores mtime is noticed), and size, mtime and inode of the side
// files: SQLite running as root fchowns a -wal or -journal to the database's
// owner whenever it opens one, Capture included, which moves its ctime and
// nothing else. Every write to them moves their mtime; only a tool that
// rewrites a -wal in place and then sets its mtime back would go unseen,
// and SQLite never does. The fingerprint is taken before the copy
// starts: a change between it and the copy is in the copy and changes the
// values the next backup sees, so the next backup captures again; a change
// within the same timestamp tick as that stat leaves the values alone, but
// then they are within mtimeGranularity of the backup's start and the node
// is flagged FlagNoCache, as noteCache does for plain files. So if all three
// are unchanged now, the files hold the bytes they held when the parent
// copied them, the database holds the same content, and the parent's copy is
// a consistent copy of it. A side file that is absent and one that is empty
// hold no frames and no journal, and count as the same state: opening a WAL
// database that no one has open (as Capture does) leaves an empty -wal
// behind, and it must not cost a second capture. Going from empty to
// non-empty and back empty takes a checkpoint or a rollback, which writes
// the main file, so the main file's values change.
func (b *backup) reuseSQLite(ctx context.Context, n, pn *Node, abs string, st *unix.Stat_t) bool {
	if pn == nil || pn.Type != TypeFile || pn.Flags&FlagSQLite == 0 || pn.Flags&FlagNoCache != 0 ||
		pn.MTime != n.MTime || pn.Inode != n.Inode {
		return false
	}
	fp, newest, ok := sqliteState(abs, st)
	if !ok || fp != pn.CTime || !b.chunksStored(ctx, pn.Chunks) {
		return false
	}
	n.Size, n.Chunks, n.Hash, n.CTime = pn.Size, pn.Chunks, pn.Hash, fp
	n.Flags |= FlagSQLite
	if newest >= b.start.Add(-mtimeGranularity).UnixNano() {
		n.Flags |= FlagNoCache
	}
	return true
}

// sqliteState fingerprints a database file whose lstat is st and its -wal
// and -journal (absent or empty side files count alike): the first 8 bytes of
// BLAKE3 over their type, size, mtime, inode, and the database file's ctime
// (see reuseSQLite for why not the side files'). A FlagSQLite node keeps it
// as its CTime, which is only for change detection. newest is the latest of
// the times that count; ok is false when a side file cannot be examined.
func sqliteState(abs string, st *unix.Stat_t) (fp, newest int64, ok bool) {
	h := blake3.Get()
	defer blake3.Put(h)
	h.WriteString("snapforge sqlite state 1\n")
	add := func(st *unix.Stat_t, ctime int64) {
		var b [40]byte
		binary.LittleEndian.PutUint64(b[0:], uint64(st.Mode&unix.S_IFMT))
		binary.LittleEndian.PutUint64(b[8:], uint64(st.Size))
		binary.LittleEndian.PutUint64(b[16:], uint64(st.Mtim.Nano()))
		binary.LittleEndian.PutUint64(b[24:], uint64(ctime))
		binary.LittleEndian.PutUint64(b[32:], st.Ino)
		h.Write(b[:])
		newest = max(newest, st.Mtim.Nano(), ctime)
	}
	add(st, st.Ctim.Nano())
	for _, suf := range []string{"-wal", "-journal"} {
		var side unix.Stat_t
		err := unix.Lstat(abs+suf, &side)
		switch {
		case errors.Is(err, unix.ENOENT) || (err == nil && side.Mode&unix.S_IFMT == unix.S_IFREG && side.Size == 0):
			h.Write([]byte{0}) // no frames, no journal
		case err != nil:
			return 0, 0, false
		default:
			h.Write([]byte{1})
			add(&side, 0)
		}
	}
	return int64(binary.LittleEndian.Uint64(h.Sum(nil))), newest, true
}

// noteCache flags files whose timestamps are too recent to be trusted later.
func (b *backup) noteCache(n *Node) {
	limit := b.start.Add(-racyWindow(n)).UnixNano()
	if n.MTime >= limit || n.CTime >= limit {
		n.Flags |= FlagNoCache
	}
}

// saveFile reads one file, chunking and hashing it in one pass.
func (b *backup) saveFile(ctx context.Context, ch *chunkers, j *fileJob) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	n := j.node
	if j.sqlite {
		ok, err := sqlitecap.IsSQLite(j.abs)
		if err == nil && ok {
			return b.saveSQLite(ctx, ch, j)
		}
	}
	if b.o.BeforeOpen != nil {
		b.o.BeforeOpen(j.rel)
	}
	f, err := os.OpenFile(j.abs, sourceOpenFlags, 0)
	if err != nil {
		b.skip(n)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			b.warn(j.rel, "vanished before it could be read", false) // FAULTS D2
		case errors.Is(err, unix.ELOOP):
			b.warn(j.rel, "changed type during backup (now a symlink), refusing to archive", true)
		default:
			b.warn(j.rel, "unreadable: "+errText(err), true) // FAULTS D4
		}
		b.o.Live.FilesDone.Add(1)
		return nil
	}
	defer f.Close()
	var before unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &before); err != nil {
		b.skip(n)
		b.warn(j.rel, "cannot stat: "+errText(err), true)
		return nil
	}
	if before.Mode&unix.S_IFMT != unix.S_IFREG || before.Ino != j.st.Ino || before.Dev != j.st.Dev {
		b.skip(n)
		b.warn(j.rel, "changed type during backup, refusing to archive", true) // FAULTS D3
		return nil
	}
	src := b.chunkerFor(ch, f) // reads the header through the page cache, before O_DIRECT is set below
	// Direct or not is decided once, by the size at open: a file that
	// grows past directFileMin or shrinks below it while read is read
	// again the same way (the reader is set up for this file only once).
	direct := before.Size >= directFileMin
	for attempt := 0; ; attempt++ {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			b.skip(n)
			b.warn(j.rel, "read error: "+errText(err), true)
			return nil
		}
		var r io.Reader = f
		if direct {
			if ch.dbufs[0] == nil {
				ch.dbufs = newDirectBuffers()
				ch.aio, _ = newAIOContext() // nil where there is none: reads go on a goroutine
			}
			if attempt == 0 {
				ch.dr.reset(f, ch.dbufs, ch.aio)
				defer ch.dr.drain() // before f is closed (deferred earlier, so run later)
			} else {
				ch.dr.rewind()
			}
			r = &ch.dr
		}
		if b.o.WrapReader != nil {
			r = b.o.WrapReader(j.rel, r)
		}
		size, err := b.chunkStream(ctx, src, &ch.group, r, n, before.Size)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if isRepoError(err) {
				return err
			}
			b.skip(n)
			b.warn(j.rel, "read error, file not in this snapshot: "+errText(err), true) // FAULTS C7
			return nil
		}
		var after unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &after); err != nil {
			b.skip(n)
			b.warn(j.rel, "cannot stat: "+errText(err), true)
			return nil
		}
		if size == after.Size && after.Size == before.Size && after.Mtim == before.Mtim && after.Ctim == before.Ctim {
			n.Size, n.MTime, n.CTime = size, after.Mtim.Nano(), after.Ctim.Nano()
			break
		}
		// FAULTS D1: changed while read.
		if attempt+1 >= changeRetries {
			n.Size, n.MTime, n.CTime = size, after.Mtim.Nano(), after.Ctim.Nano()
			n.Flags |= FlagChanged | FlagNoCache
			b.warn(j.rel, fmt.Sprintf("changed during backup (%d reads); stored as last read, not trusted by the next incremental backup", attempt+1), false)
			break
		}
		before = after
	}
	b.noteCache(n)
	b.o.Live.FilesDone.Add(1)
	return nil
}

// sourceOpenFlags open a file of the backup's source: O_NOFOLLOW|O_NONBLOCK,
// so a file swapped for a symlink or FIFO after lstat is neither followed
// nor waited on (FAULTS D3).
const sourceOpenFlags = os.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

// repoError marks failures on the repository side (not the source's).
type repoError struct{ err error }

func (e *repoError) Error() string { return e.err.Error() }
func (e *repoError) Unwrap() error { return e.err }

func isRepoError(err error) bool {
	var re *repoError
	return errors.As(err, &re)
}

// chunkSource cuts a stream into chunks: a content-defined chunker.Chunker,
// or a chunker.Fixed for SQLite databases.
type chunkSource interface {
	Reset(r io.Reader)
	Next() ([]byte, error)
}

// chunkers are one file reader's chunkers, reused from file to file.
type chunkers struct {
	cdc   *chunker.Chunker
	fixed map[int]*chunker.Fixed // by chunk size, made when first needed
	dr    directReader           // for large files (directFileMin)
	dbufs [2][]byte              // its buffers, made when first needed
	aio   *aioContext            // its reads' AIO context, made with dbufs; closed by close
	group grouper                // small blobs waiting for their group to fill
}

// close releases what the chunkers hold outside the heap.
func (ch *chunkers) close() {
	ch.dr.drain()
	if ch.aio != nil {
		ch.aio.close()
		ch.aio = nil
	}
}

// chunkerFor returns the chunker for file f: fixed chunks aligned to its
// pages when f starts with a SQLite header and the repository cuts databases
// so (Config.SQLiteChunk; see chunker.SQLiteChunkSize), content-defined
// chunks otherwise. The choice decides deduplication only, never what is
// stored: a header that changes while the file is read does no harm.
func (b *backup) chunkerFor(ch *chunkers, f io.ReaderAt) chunkSource {
	if b.r.cfg.SQLiteChunk == 0 {
		return ch.cdc
	}
	var hdr [chunker.SQLiteHeaderLen]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return ch.cdc // shorter than a header, or unreadable: the stream read will say
	}
	size := chunker.SQLiteChunkSize(hdr[:], b.r.cfg.SQLiteChunk)
	if size == 0 {
		return ch.cdc
	}
	if ch.fixed[size] == nil {
		if ch.fixed == nil {
			ch.fixed = map[int]*chunker.Fixed{}
		}
		ch.fixed[size] = chunker.NewFixed(nil, size)
	}
	return ch.fixed[size]
}

// chunkStream chunks r into n, storing new chunks; it returns the bytes read.
// For files larger than one chunk, the whole-file hash runs on a second
// goroutine while this one names the chunk, so a single big file keeps two
// cores busy; the chunk buffer is reused only after both are done with it.
func (b *backup) chunkStream(ctx context.Context, ch chunkSource, g *grouper, r io.Reader, n *Node, sizeHint int64) (int64, error) {
	ch.Reset(r)
	var pick *levelPick // the stream this file's new blobs are compressed as (nil: the default effort)
	if sizeHint >= pickFileMin {
		pick = &levelPick{}
	}
	h := blake3.Get()
	defer blake3.Put(h) // deferred first: runs after the hashing goroutine below is done
	var fileHash chan []byte
	var hashed chan struct{}
	if sizeHint > int64(b.r.cfg.Chunker.Min) {
		fileHash, hashed = make(chan []byte), make(chan struct{})
		go func() {
			for d := range fileHash {
				h.Write(d)
				hashed <- struct{}{}
			}
			close(hashed)
		}()
		defer func() {
			if fileHash != nil {
				close(fileHash)
				<-hashed
			}
		}()
	}
	// A content-defined chunk is read into a buffer of ours, which a new
	// chunk takes on to the compressors and the pack (see storeBlob): its
	// bytes are copied from the file's pages or direct-read blocks once.
	cdc, _ := ch.(*chunker.Chunker)
	var buf *[]byte
	grow := func(old []byte, n int) []byte {
		nb := getBuf(n)
		out := append((*nb)[:0], old...)
		putBuf(buf)
		buf = nb
		return out
	}
	defer func() { putBuf(buf) }()
	var refs []ChunkRef
	var size int64
	first := true
	for {
		var data []byte
		var err error
		if cdc != nil {
			if buf == nil {
				buf = getBuf(chunkBufStart(b.r.cfg.Chunker, sizeHint))
			}
			data, err = cdc.NextInto((*buf)[:0], grow)
		} else {
			data, err = ch.Next()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return size, err
		}
		if first {
			b.r.opts.Hook("chunking")
		}
		var id ID
		switch {
		case fileHash != nil:
			fileHash <- data
			id = b.chunkID(data)
			<-hashed
		case first:
			// A small file: its first chunk's id is the whole-file hash so
			// far, so its bytes are hashed once. Both are plain BLAKE3-256
			// (chunkID is unkeyed: this format has no encrypted mode); a
			// keyed id would need its own hash here.
			h.Write(data)
			copy(id[:], h.Sum(nil))
		default:
			h.Write(data)
			id = b.chunkID(data)
		}
		first = false
		refs = append(refs, ChunkRef{ID: id, Size: uint32(len(data))})
		size += int64(len(data))
		b.o.Live.BytesDone.Add(int64(len(data)))
		taken, err := b.storeBlob(ctx, id, KindData, data, g, buf, pick)
		if taken {
			buf = nil
		}
		if err != nil {
			return size, &repoError{err}
		}
	}
	if fileHash != nil {
		close(fileHash)
		<-hashed
		fileHash = nil
	}
	n.Chunks = refs
	copy(n.Hash[:], h.Sum(nil))
	return size, nil
}

// chunkBufStart is the buffer a content-defined chunk is first read into:
// room for most chunks of a large file (they cluster around Avg), so few
// grow, and no more than a small file needs. A chunk that outgrows it is
// moved once or twice (the chunker doubles it, up to Max).
func chunkBufStart(p chunker.Params, sizeHint int64) int {
	return int(min(max(sizeHint+1, chunker.ReadSize), int64(p.Avg+p.Avg/2)))
}

// chunkID names a chunk. Maximum-size runs of zeros (holes of sparse files)
// are common and all share one precomputed id.
func (b *backup) chunkID(data []byte) ID {
	if len(data) == b.r.cfg.Chunker.Max && data[0] == 0 && data[len(data)-1] == 0 && allZero(data) {
		return b.r.HoleID()
	}
	return Hash(data)
}

// storeBlob queues blob id for packing unless it is already stored or in
// flight. A small data blob goes into g's group (nil g: every blob on its
// own, as trees are). data is only borrowed: it is copied before queueing,
// unless own (from getBuf) holds it: then a blob queued on its own takes
// own with it, no copy, and taken reports that (the caller needs another
// buffer; on an error own may have been taken too). pick is the stream the
// blob is compressed as (nil: at the default effort).
func (b *backup) storeBlob(ctx context.Context, id ID, kind uint8, data []byte, g *grouper, own *[]byte, pick *levelPick) (taken bool, err error) {
	b.mu.Lock()
	_, dup := b.seen[id]
	b.seen[id] = struct{}{}
	b.mu.Unlock()
	if dup {
		return false, nil
	}
	loc, err := b.r.idx.Lookup(ctx, id)
	if err == nil && b.r.usable(loc) {
		return false, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("look up chunk %s: %w", id.Short(), err)
	}
	b.newBytes.Add(int64(len(data)))
	b.o.Live.NewBytes.Add(int64(len(data)))
	if g != nil && kind == KindData && len(data) < groupMax {
		if j, full := g.add(id, data, pick); full {
			return false, b.queue(ctx, j)
		}
		return false, nil
	}
	j := blobJob{id: id, kind: kind, weight: min(int64(len(data)), inflightMax), pick: pick}
	if own != nil {
		j.weight = min(int64(cap(*own)), inflightMax) // it goes on as it is: it weighs what it holds
	}
	// A copy is made only once the bytes in flight allow: a reader waiting
	// for the compressors holds no new buffer meanwhile.
	if err := b.inflight.Acquire(ctx, j.weight); err != nil {
		return false, err
	}
	if own != nil {
		*own = data
		j.buf, j.raw = own, data
	} else {
		j.buf = getBuf(len(data))
		j.raw = append((*j.buf)[:0], data...)
		*j.buf = j.raw
	}
	if kind == KindData && pack.Incompressible(j.raw) {
		// Stored as it is (a model's weights, media, archives): probed here,
		// it goes straight to the pack writer. Through a compressor it
		// waited for one to be scheduled while both cores were busy, only
		// to be probed (a trace of the models' backup: each compressor
		// waited 1.2 s for a core to run 0.1 s).
		pj := packJob{id: id, kind: kind, codec: pack.CodecRaw, stored: j.raw, raw: uint32(len(j.raw)), buf: j.buf, weight: j.weight}
		return own != nil, handOn(ctx, b.packs, pj, pj.buf)
	}
	j.probed = kind == KindData
	return own != nil, b.send(ctx, j)
}

// queue hands j (a group, its buffer already filled) to the compressors
// once the bytes in flight allow.
func (b *backup) queue(ctx context.Context, j blobJob) error {
	j.weight = min(int64(len(j.raw)), inflightMax)
	if err := b.inflight.Acquire(ctx, j.weight); err != nil {
		putBuf(j.buf)
		return err
	}
	return b.send(ctx, j)
}

// send hands j, its bytes counted in flight, to the compressors.
func (b *backup) send(ctx context.Context, j blobJob) error {
	return handOn(ctx, b.blobs, j, j.buf)
}

// handOn sends v, whose bytes buf holds, on ch; if ctx ends first, buf goes
// back to the pool.
func handOn[T any](ctx context.Context, ch chan<- T, v T, buf *[]byte) error {
	select {
	case ch <- v:
		return nil
	case <-ctx.Done():
		putBuf(buf)
		return ctx.Err()
	}
}

// saveSQLite stores one read snapshot of a live database, streamed page by
// page from SQLite without a scratch copy, after integrity_check of that same
// snapshot passed (FAULTS D19). A database that fails the check is left out
// with a warning; chunks of it already stored stay unreferenced.
func (b *backup) saveSQLite(ctx context.Context, ch *chunkers, j *fileJob) error {
	// Before the snapshot starts (see reuseSQLite); j.st is the walk's lstat.
	fp, newest, fpOK := sqliteState(j.abs, &j.st)
	failed := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.skip(j.node)
		b.warn(j.rel, "live SQLite capture failed, database not in this snapshot: "+errText(err), true)
		b.o.Live.FilesDone.Add(1)
		return nil
	}
	snap, err := sqlitecap.Open(ctx, j.abs, sqlitecap.Options{})
	if err != nil {
		return failed(err)
	}
	defer snap.Close()
	size, err := b.chunkStream(ctx, b.chunkerFor(ch, bytes.NewReader(snap.Header())), &ch.group, snap, j.node, snap.Size())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isRepoError(err) {
			return err
		}
		return failed(err) // FAULTS C7: the database could not be read
	}
	if size != snap.Size() {
		return failed(fmt.Errorf("read %d bytes of a %d-byte snapshot", size, snap.Size()))
	}
	if err := snap.Check(ctx); err != nil {
		return failed(err)
	}
	snap.Close() // the application's writers need not wait for the tree
	j.node.Size = size
	j.node.CTime = fp
	j.node.Flags |= FlagSQLite
	if !fpOK || newest >= b.start.Add(-mtimeGranularity).UnixNano() {
		j.node.Flags |= FlagNoCache
	}
	b.o.Live.FilesDone.Add(1)
	return nil
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// fillHardlinks copies content references from each link group's first
// name, after all files are read.
func (b *backup) fillHardlinks() {
	for _, l := range b.links {
		n, first, rel := l.node, l.first, l.rel
		if b.skipped[first] {
			// This name may still exist: say so, never drop it silently.
			b.skipped[n] = true
			if _, err := os.Lstat(filepath.Join(b.o.Root, rel)); errors.Is(err, fs.ErrNotExist) {
				b.warn(rel, "vanished before it could be read", false)
			} else {
				b.warn(rel, "hard link to "+DisplayName(n.Target)+", which could not be read; not in this snapshot", true)
			}
			continue
		}
		n.Size, n.Chunks, n.Hash = first.Size, first.Chunks, first.Hash
	}
}

// storeTree encodes ds bottom-up, appending manifest items and counting.
func (b *backup) storeTree(ctx context.Context, ds *dirState, rel string, items *[]Item, st *Stats) (ID, error) {
	t := &Tree{}
	for _, n := range ds.nodes {
		if b.skipped[n] {
			continue
		}
		crel := n.Name
		if rel != "" {
			crel = rel + "/" + n.Name
		}
		*items = append(*items, NewItem(crel, n))
		switch n.Type {
		case TypeDir:
			id, err := b.storeTree(ctx, ds.subs[n], crel, items, st)
			if err != nil {
				return ID{}, err
			}
			n.Subtree = id
			st.Dirs++
		case TypeFile, TypeHardlink:
			st.Files++
			st.Bytes += n.Size
		}
		t.Nodes = append(t.Nodes, n)
	}
	enc, err := t.Encode()
	if err != nil {
		return ID{}, err
	}
	id := Hash(enc)
	if _, err := b.storeBlob(ctx, id, KindTree, enc, nil, nil, nil); err != nil {
		return ID{}, err
	}
	return id, nil
}
