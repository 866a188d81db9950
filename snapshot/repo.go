package snapshot

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"snapforge/snapshot/audit"
	"snapforge/snapshot/chunker"
)

// FormatVersion is the repository format this build reads and writes.
const FormatVersion = 1

// EngineVersion is recorded in every manifest.
const EngineVersion = "1.0"

// Version is snapforge's release, recorded in manifests as wf_version.
const Version = "0.1.0"

// Errors callers match.
var (
	// ErrIndexMissing reports a repository whose index directory is gone.
	ErrIndexMissing = errors.New("index missing: the repository's snapshots are intact, rebuild the index with `snapforge repair index`")
	// ErrNotRepository reports a path without snapforge.json.
	ErrNotRepository = errors.New("not a snapforge repository")
)

// Config is snapforge.json.
type Config struct {
	FormatVersion int            `json:"format_version"`
	RepositoryID  string         `json:"repository_id"`
	CreatedUTC    string         `json:"created_utc"`
	Chunker       chunker.Params `json:"chunker"`
	Compression   string         `json:"compression"`
	Encryption    string         `json:"encryption"`
	Features      []string       `json:"features,omitempty"` // mandatory features; any unknown one is refused
	// SQLiteChunk is the size of the fixed, page-aligned chunks SQLite
	// database files are cut into (chunker.SQLiteChunkSize). 0, as in
	// repositories created before it existed: databases are cut by content
	// like any file. Optional, not a feature: a reader that ignores it still
	// reads every snapshot, it only deduplicates databases less well.
	SQLiteChunk int `json:"sqlite_chunk,omitempty"`
}

// RepoMismatchError reports an index that belongs to another repository (FAULTS A14).
type RepoMismatchError struct{ Repo, Index string }

func (e *RepoMismatchError) Error() string {
	return fmt.Sprintf("repository id %s does not match its index (%s): the directory was swapped or the index belongs to another repository; rebuild it with `snapforge repair index`", e.Repo, e.Index)
}

// VersionError reports a repository written by a newer or unknown format (FAULTS A13).
type VersionError struct {
	Have    int
	Feature string
}

func (e *VersionError) Error() string {
	if e.Feature != "" {
		return fmt.Sprintf("repository needs feature %q that this snapforge does not know: upgrade the tool", e.Feature)
	}
	return fmt.Sprintf("repository format version %d is not supported by this snapforge (knows %d): upgrade the tool", e.Have, FormatVersion)
}

// IndexOpener opens (or, with create, creates) the index in dir. cmd supplies
// the Badger implementation.
type IndexOpener func(dir string, create bool) (Index, error)

// Options configure a Repo. The zero value is not usable: OpenIndex is required.
type Options struct {
	OpenIndex IndexOpener
	Logger    *slog.Logger     // nil: discard
	Now       func() time.Time // nil: time.Now
	Actor     string           // who acts, for the audit trail; default "cli"
	Command   string           // recorded in the owner lock
	// Hook is called at named crash points (tests SIGKILL there). nil: none.
	Hook func(point string)
	// WrapPackFile lets tests inject write or fsync faults into pack and
	// manifest files. nil: none.
	WrapPackFile func(f WriteFile) WriteFile
	// AllowMissingIndex opens a repository whose index is gone (repair).
	AllowMissingIndex bool
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Actor == "" {
		o.Actor = "cli"
	}
	if o.Hook == nil {
		o.Hook = func(string) {}
	}
	if o.WrapPackFile == nil {
		o.WrapPackFile = func(f WriteFile) WriteFile { return f }
	}
	return o
}

// WriteFile is a file the repository writes and syncs.
type WriteFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
	Name() string
}

// Repo is an open repository. It holds the owner lock until Close. Methods
// are safe for concurrent use unless stated otherwise.
type Repo struct {
	path     string
	cfg      Config
	opts     Options
	idx      Index // nil while the index is missing (repair only)
	lock     *ownerLock
	audit    *audit.Log
	owner    *repoOwner // set when root works in another user's repository
	holeOnce sync.Once
	hole     ID // HoleID

	mu             sync.Mutex                   // guards the caches
	manifest       map[string]*Manifest         // full manifests loaded by LoadManifest
	headers        map[string]*Manifest         // Snapshots' entries: checked, items dropped
	links          map[string]map[string]uint32 // HardLinks of the manifests read whole (nil: none)
	stamps         map[string]fileStamp         // the manifest file each cached entry came from (stale.go)
	treeCache      map[ID]*Tree
	treeCacheNodes int // nodes held by treeCache

	badPacks map[ID]string // packs missing or truncated, found by recover; read-only after Open

	shares   sync.Mutex // guards refs
	refs     int        // extra holders from Share; Close releases one
	onCommit func(m *Manifest)
}

// Path returns the repository directory.
func (r *Repo) Path() string { return r.path }

// Config returns the repository configuration.
func (r *Repo) Config() Config { return r.cfg }

// Index returns the index in use, or nil while it is missing.
func (r *Repo) Index() Index { return r.idx }

func (r *Repo) dir(parts ...string) string {
	return filepath.Join(append([]string{r.path}, parts...)...)
}

// InitOptions configure Init.
type InitOptions struct {
	Chunker chunker.Params // zero: chunker.DefaultParams()
	Encrypt bool
}

// Init creates a repository at path (absent or an empty directory) and
// returns it open.
func Init(ctx context.Context, path string, io InitOptions, opts Options) (*Repo, error) {
	if io.Encrypt {
		return nil, errors.New("init: repository encryption at rest is not available in this version; create a plaintext repository (the default) and keep it on an encrypted disk")
	}
	p := io.Chunker
	if p == (chunker.Params{}) {
		p = chunker.DefaultParams()
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("init: chunker parameters: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	if ents, err := os.ReadDir(abs); err == nil && len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(abs, "snapforge.json")); err == nil {
			return nil, fmt.Errorf("init %s: a repository already exists there", abs)
		}
		return nil, fmt.Errorf("init %s: directory is not empty; choose a new or empty directory", abs)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init %s: %w", abs, err)
	}
	for _, d := range []string{"", "packs", "snapshots", "audit", "locks", "run", "tmp", "verify"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("init %s: %w", abs, err)
		}
	}
	cfg := Config{
		FormatVersion: FormatVersion,
		RepositoryID:  uuid.NewString(),
		CreatedUTC:    time.Now().UTC().Format(time.RFC3339),
		Chunker:       p,
		SQLiteChunk:   chunker.DefaultSQLiteChunk,
		Compression:   "zstd-auto",
		Encryption:    "none",
	}
	o := opts.withDefaults()
	lock, err := acquireLock(filepath.Join(abs, "locks"), o.Command)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, "snapforge.json")); err == nil {
		lock.release() // another init won the race
		return nil, fmt.Errorf("init %s: a repository already exists there", abs)
	}
	idx, err := o.OpenIndex(filepath.Join(abs, "index"), true)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("init %s: create index: %w", abs, err)
	}
	if err := idx.SetMeta(ctx, "repository_id", []byte(cfg.RepositoryID)); err != nil {
		idx.Close()
		lock.release()
		return nil, fmt.Errorf("init %s: %w", abs, err)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	// snapforge.json last: until it exists the directory is not a repository.
	if err := writeFileAtomic(filepath.Join(abs, "snapforge.json"), append(b, '\n'), o.WrapPackFile); err != nil {
		idx.Close()
		lock.release()
		return nil, fmt.Errorf("init %s: %w", abs, err)
	}
	r := &Repo{path: abs, cfg: cfg, opts: o, idx: idx, lock: lock, manifest: map[string]*Manifest{}, headers: map[string]*Manifest{}}
	if r.audit, err = audit.Open(r.dir("audit"), o.Now); err != nil {
		r.Close()
		return nil, fmt.Errorf("init %s: %w", abs, err)
	}
	r.Audit("init", map[string]any{"path": abs, "repository_id": cfg.RepositoryID,
		"chunker": p, "sqlite_chunk": cfg.SQLiteChunk}, "ok")
	return r, nil
}

// ReadConfig reads and checks snapforge.json at path.
func ReadConfig(path string) (Config, error) {
	var cfg Config
	b, err := os.ReadFile(filepath.Join(path, "snapforge.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("%s: %w (no snapforge.json; create one with `snapforge init`)", path, ErrNotRepository)
	}
	if err != nil {
		return cfg, fmt.Errorf("read repository config: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("%s/snapforge.json is damaged (%v); restore it from a copy of the repository", path, err)
	}
	if cfg.FormatVersion != FormatVersion {
		return cfg, &VersionError{Have: cfg.FormatVersion}
	}
	for _, f := range cfg.Features {
		return cfg, &VersionError{Have: cfg.FormatVersion, Feature: f}
	}
	if cfg.Encryption != "none" {
		return cfg, &VersionError{Have: cfg.FormatVersion, Feature: "encryption=" + cfg.Encryption}
	}
	if err := cfg.Chunker.Validate(); err != nil {
		return cfg, fmt.Errorf("%s/snapforge.json: chunker parameters: %w", path, err)
	}
	if cfg.SQLiteChunk != 0 {
		if err := chunker.ValidateFixed(cfg.SQLiteChunk); err != nil {
			return cfg, fmt.Errorf("%s/snapforge.json: sqlite_chunk: %w", path, err)
		}
	}
	if _, err := uuid.Parse(cfg.RepositoryID); err != nil {
		return cfg, fmt.Errorf("%s/snapforge.json: repository_id %q is not a UUID", path, cfg.RepositoryID)
	}
	return cfg, nil
}

// Open opens the repository at path, taking the owner lock, and runs startup
// recovery (see Recover).
func Open(ctx context.Context, path string, opts Options) (*Repo, error) {
	o := opts.withDefaults()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", path, err)
	}
	cfg, err := ReadConfig(abs)
	if err != nil {
		return nil, err
	}
	lock, err := acquireLock(filepath.Join(abs, "locks"), o.Command)
	if err != nil {
		return nil, err
	}
	r := &Repo{path: abs, cfg: cfg, opts: o, lock: lock, manifest: map[string]*Manifest{}, headers: map[string]*Manifest{}}
	if r.owner = foreignOwner(abs); r.owner != nil {
		r.owner.giveBack(abs) // what a root run killed midway left behind
	}
	if err := r.openIndex(ctx); err != nil {
		lock.release()
		return nil, err
	}
	if r.audit, err = audit.Open(r.dir("audit"), o.Now); err != nil {
		r.Close()
		return nil, auditOpenError(err)
	}
	if r.idx != nil {
		if err := r.recover(ctx); err != nil {
			r.Close()
			return nil, err
		}
	}
	r.recoverAuditEvent()
	return r, nil
}

// repoOwner is the owner of a repository that root works in but another
// user owns. Every open writes to the repository (the index's log files,
// the audit trail, the lock, packs, manifests): what root creates there
// that user could not open again, and their next command would fail on a
// permission error in the index. So what root created is handed to the
// repository's owner when root closes it, and at the next open by root
// after one that was killed midway.
type repoOwner struct{ uid, gid int }

// foreignOwner returns the owner of repo when we are root and it is not;
// nil otherwise.
func foreignOwner(repo string) *repoOwner {
	if os.Geteuid() != 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(repo, &st); err != nil || st.Uid == 0 {
		return nil
	}
	return &repoOwner{int(st.Uid), int(st.Gid)}
}

// giveBack hands every file and directory under repo that root owns to o.
// A file system that keeps no owners (vfat mounted uid=…) refuses, and its
// files are the user's already.
func (o *repoOwner) giveBack(repo string) {
	filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		var st unix.Stat_t
		if err == nil && unix.Lstat(p, &st) == nil && st.Uid == 0 {
			unix.Lchown(p, o.uid, o.gid)
		}
		return nil
	})
}

func (r *Repo) openIndex(ctx context.Context) error {
	dir := r.dir("index")
	present, err := indexPresent(dir)
	if err != nil {
		// There, perhaps, but not readable: not "missing" (a rebuild
		// would fail the same way, or replace a sound index).
		return fmt.Errorf("open index %s: %w; check its owner and permissions", dir, err)
	}
	if !present {
		if r.opts.AllowMissingIndex {
			return nil
		}
		return fmt.Errorf("%s: %w", r.path, ErrIndexMissing)
	}
	idx, err := r.opts.OpenIndex(dir, false)
	if err != nil {
		if r.opts.AllowMissingIndex {
			r.opts.Logger.Warn("index unusable, will rebuild", "err", err)
			return nil
		}
		return fmt.Errorf("open index: %w (if it is damaged, rebuild it with `snapforge repair index`)", err)
	}
	id, err := idx.Meta(ctx, "repository_id")
	if err != nil || string(id) != r.cfg.RepositoryID {
		idx.Close()
		if r.opts.AllowMissingIndex {
			return nil
		}
		have := string(id)
		if err != nil {
			have = "none recorded"
		}
		return &RepoMismatchError{Repo: r.cfg.RepositoryID, Index: have}
	}
	r.idx = idx
	return nil
}

// indexPresent reports whether dir holds a database (any MANIFEST file);
// err when that cannot be told (not readable).
func indexPresent(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, "MANIFEST"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Close releases the index, the audit trail and the owner lock.
func (r *Repo) Close() error {
	r.shares.Lock()
	if r.refs > 0 {
		r.refs--
		r.shares.Unlock()
		return nil
	}
	r.shares.Unlock()
	var errs []error
	if r.idx != nil {
		errs = append(errs, r.idx.Close())
		r.idx = nil
	}
	if r.audit != nil {
		errs = append(errs, r.audit.Close())
		r.audit = nil
	}
	if r.owner != nil && r.lock != nil {
		r.owner.giveBack(r.path) // still holding the lock: nobody else is inside
	}
	if r.lock != nil {
		r.lock.release()
		r.lock = nil
	}
	return errors.Join(errs...)
}

// HoleID is the id of a chunk of the chunker's maximum size, all zeros:
// how a backup stores a hole of a sparse file (and any such run of zeros),
// one chunk for them all.
func (r *Repo) HoleID() ID {
	r.holeOnce.Do(func() { r.hole = Hash(make([]byte, r.cfg.Chunker.Max)) })
	return r.hole
}

// Share returns r for one more holder: the owner process lends its open
// repository to the commands it serves, and each command's Close then
// releases its share instead of the repository.
func (r *Repo) Share() *Repo {
	r.shares.Lock()
	r.refs++
	r.shares.Unlock()
	return r
}

// OnCommit registers fn to be called after each snapshot is committed (its
// manifest durable and its audit event written), for an owner process that
// shows snapshots as they land (the FUSE mount). Set it before the
// repository is shared; fn must not block.
func (r *Repo) OnCommit(fn func(m *Manifest)) { r.onCommit = fn }

// Audit appends one event to the trail. A failure to audit is logged, and
// returned so that callers that must not proceed can stop.
func (r *Repo) Audit(op string, params map[string]any, outcome string) (audit.Event, error) {
	return r.AuditAs(context.Background(), op, params, outcome)
}

type actorKey struct{}

// WithActor returns ctx naming who acts, for the audit events of the
// operations run with it: the owner process runs each client's command
// with the client named, not itself (its repository is shared, so the
// actor cannot be the repository's).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// AuditAs is Audit by the actor ctx names (WithActor), else the
// repository's (Options.Actor).
func (r *Repo) AuditAs(ctx context.Context, op string, params map[string]any, outcome string) (audit.Event, error) {
	ev, err := r.audit.Append(audit.Event{Actor: r.actorOf(ctx), Op: op, Params: params, Outcome: outcome})
	if err != nil {
		r.opts.Logger.Error("audit append failed", "op", op, "err", err)
	}
	return ev, err
}

// FailedOutcome is the audit outcome of an operation that ended with err:
// "interrupted" when it was cancelled (Ctrl-C, SIGTERM, a client gone),
// else "failed: " and the error.
func FailedOutcome(err error) string {
	if errors.Is(err, context.Canceled) {
		return "interrupted (cancelled before it finished)"
	}
	return "failed: " + err.Error()
}

// auditOpenError says why the audit trail cannot be used.
func auditOpenError(err error) error {
	if errors.Is(err, audit.ErrDamaged) {
		return fmt.Errorf("the audit trail is damaged or was altered (%w); see `snapforge audit verify`, then record that you have seen it with `snapforge audit acknowledge` to continue", err)
	}
	return fmt.Errorf("open audit trail: %w", err)
}

// CheckAudit checks the audit trail again, as Open does, for a Repo held
// open long (the mount's owner checks before each client's command): a
// trail damaged or altered since refuses the command as Open would refuse
// it now, and a trail a failed write left unusable (a full disk) is opened
// again and repaired, so commands are audited again once the cause is
// gone. When it was opened again, a backup committed while the trail could
// not be written gets its event back (the recovered event Open appends);
// not otherwise, since a backup running now may be between its commit and
// its event.
func (r *Repo) CheckAudit() error {
	reopened, err := r.audit.Check()
	if err != nil {
		return auditOpenError(err)
	}
	if reopened {
		r.recoverAuditEvent()
	}
	return nil
}

// AcknowledgeAudit records, through this Repo's open trail, that its
// damage has been seen (audit.Acknowledge), as the actor ctx names.
func (r *Repo) AcknowledgeAudit(ctx context.Context) (audit.Event, error) {
	return r.audit.Acknowledge(r.actorOf(ctx))
}

// actorOf is the actor ctx names (WithActor), else the repository's
// (Options.Actor).
func (r *Repo) actorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return r.opts.Actor
}

// AuditHead returns the newest audit head.
func (r *Repo) AuditHead() audit.Head { return r.audit.Head() }

// errIfNoIndex guards operations that need the index.
func (r *Repo) errIfNoIndex() error {
	if r.idx == nil {
		return fmt.Errorf("%s: %w", r.path, ErrIndexMissing)
	}
	return nil
}

// writeFileAtomic writes data to a temp file beside name, fsyncs it, renames
// it over name and fsyncs the directory. wrap (nil: none) injects faults.
func writeFileAtomic(name string, data []byte, wrap func(WriteFile) WriteFile) error {
	return writeFileAtomicFunc(name, wrap, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeFileAtomicFunc is writeFileAtomic with the content written by fill
// (through a buffer), for files too large to build in memory first.
func writeFileAtomicFunc(name string, wrap func(WriteFile) WriteFile, fill func(io.Writer) error) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	var wf WriteFile = f
	if wrap != nil {
		wf = wrap(f)
	}
	ok := false
	defer func() {
		if !ok {
			wf.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(wf, 256<<10)
	if err := fill(bw); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := wf.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := wf.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	ok = true
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// packPath returns the path of pack id.
func (r *Repo) packPath(id ID) string {
	s := id.String()
	return filepath.Join(r.path, "packs", s[:2], s+".pack")
}

// isHiddenTemp reports names of our temporary files.
func isHiddenTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}
