package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
	"snapforge/snapshot/audit"
)

// Result reports an in-place restore.
type Result struct {
	RestoreID  string    `json:"restore_id"`
	BackupID   string    `json:"backup_id"`
	Target     string    `json:"target"`
	Scope      string    `json:"scope"`
	Safety     []string  `json:"safety_snapshots"` // pinned snapshots of the replaced state
	Plan       *Plan     `json:"plan"`
	Stages     []Stage   `json:"stages"`
	Hooks      []HookRun `json:"hooks"`
	Files      int64     `json:"files"` // staged and swapped in
	Bytes      int64     `json:"bytes"`
	RolledBack bool      `json:"rolled_back"`
	Failure    string    `json:"failure,omitempty"`
	Warnings   []Problem `json:"warnings"`
}

// Stage is one step of the protocol as it ran.
type Stage struct {
	Name       string `json:"name"`
	Outcome    string `json:"outcome"` // ok, failed, skipped
	DurationMS int64  `json:"duration_ms"`
	Detail     string `json:"detail,omitempty"`
}

// RolledBackError reports a restore that failed after it began changing the
// live system and was rolled back: the live system is as it was.
type RolledBackError struct {
	Stage  string
	Cause  error
	Safety []string
}

func (e *RolledBackError) Error() string {
	return fmt.Sprintf("restore failed at %s: %v; rolled back: the live system is exactly as it was before (safety snapshot %s)", e.Stage, e.Cause, strings.Join(e.Safety, ", "))
}

func (e *RolledBackError) Unwrap() error { return e.Cause }

// CriticalError reports a rollback that could not finish. The journal is
// kept; the next snapforge start resumes the rollback. The safety snapshot
// holds everything the restore replaced.
type CriticalError struct {
	RestoreID string
	Journal   string
	Safety    []string
	Cause     error
}

func (e *CriticalError) Error() string {
	return fmt.Sprintf("CRITICAL: rollback of restore %s could not finish: %v. Nothing more was changed; the journal %s is kept and the next snapforge command resumes the rollback. Everything the restore replaced is in the pinned safety snapshot %s.",
		e.RestoreID, e.Cause, e.Journal, strings.Join(e.Safety, ", "))
}

func (e *CriticalError) Unwrap() error { return e.Cause }

// AbandonedError reports a restore that failed before its first swap step:
// the live system was never changed; the staging area is removed and the
// application started again if it was stopped.
type AbandonedError struct {
	Stage string
	Cause error
}

func (e *AbandonedError) Error() string {
	return fmt.Sprintf("%v; the restore stopped at %s, before changing anything: the live system is as it was", e.Cause, e.Stage)
}

func (e *AbandonedError) Unwrap() error { return e.Cause }

// IntegrityError reports staged data that did not match the snapshot, or a
// database that failed its integrity check, before anything was swapped.
type IntegrityError struct{ Msg string }

func (e *IntegrityError) Error() string { return e.Msg }

// runner carries one in-place restore through the protocol.
type runner struct {
	r        *snapshot.Repo
	m        *snapshot.Manifest
	o        Options
	p        *planner
	plan     *Plan
	res      *Result
	id       string
	staging  string // <target>/.snapforge-restore/<id>
	sfd      int    // <target>/.snapforge-restore, opened once (stagingDirFd) and held
	work     string // the staging area as /proc/self/fd/<sfd>/<id>: every use goes through sfd, so renaming or replacing .snapforge-restore meanwhile redirects nothing
	j        *journal
	stopped  bool // the stop hook ran and no start since
	started  bool
	after    *Plan     // the plan of the live tree right after the swap (empty)
	madeDirs []madeDir // parents the swap created, in creation order
	// actor names who acts in the stages' audit events (snapshot.WithActor
	// on Run's context: the client, when the owner process runs it).
	actor context.Context
}

// Run restores snapshot m into the live system in place, in this order: a
// plan; a pinned safety snapshot of everything the plan replaces, removes or
// changes; the stop hook; the plan again on the quiet system; staging
// through no-follow descriptors on the target's filesystem; verification
// of the staged files (BLAKE3, SQLite integrity); the journaled swap; the
// start hook; the smoke test (built-in checks and the profile's command);
// commit. Any failure after the first swap step rolls back to the old
// state. A run killed at any point is rolled back by Recover.
func Run(ctx context.Context, r *snapshot.Repo, m *snapshot.Manifest, o Options) (res *Result, err error) {
	o, err = o.withDefaults(r, m)
	if err != nil {
		return nil, err
	}
	res = &Result{BackupID: m.BackupID, Target: o.Target, Scope: o.Scope.Name, Safety: []string{}, Stages: []Stage{}, Hooks: []HookRun{}, Warnings: []Problem{}}
	params := map[string]any{"backup_id": m.BackupID, "target": audit.Escape([]byte(o.Target)), "scope": o.Scope.Name, "in_place": true}
	defer func() {
		outcome := "ok"
		if err != nil {
			outcome = snapshot.FailedOutcome(err)
		}
		params["restore_id"] = res.RestoreID
		params["rolled_back"] = res.RolledBack
		r.AuditAs(ctx, "restore", params, outcome)
	}()
	if err := checkTarget(o.Target, r.Path()); err != nil {
		return res, err
	}
	if fi, err := os.Stat(o.Target); err != nil || !fi.IsDir() {
		return res, fmt.Errorf("restore: the live root %s does not exist or is not a directory; restore into a new directory with --target DIR (without --in-place)", o.Target)
	}
	lockPath := o.Target
	if real, err := filepath.EvalSymlinks(o.Target); err == nil {
		lockPath = real // the same directory under any name (FAULTS E16)
	}
	unlock, err := lockTarget(lockPath)
	if err != nil {
		return res, err
	}
	defer unlock()
	// A restore of this target that was killed is finished first.
	if _, err := recoverTarget(ctx, r, o.Target, o); err != nil {
		return res, err
	}

	ru := &runner{r: r, m: m, o: o, res: res, actor: ctx, p: &planner{r: r, m: m, o: o, scope: o.Scope, hashes: map[string]hashed{}, verified: map[uint64]hashed{}}}
	ru.id = newRestoreID()
	res.RestoreID = ru.id
	o.Live.WalkDone.Store(true)
	if err := ru.stage("plan", func() (string, error) {
		var err error
		ru.plan, err = ru.p.build(ctx)
		if err != nil {
			return "", err
		}
		res.Plan = ru.plan
		s := ru.plan.Summary
		return fmt.Sprintf("%d to create, %d to replace, %d to remove, %d to update, %d unchanged", s.Create, s.Replace, s.Remove, s.Update, s.Unchanged), ru.plan.Err()
	}); err != nil {
		return res, err
	}
	res.Warnings = append(res.Warnings, ru.plan.Warnings...)
	if len(ru.plan.Actions) == 0 {
		fmt.Fprintf(o.Log, "the live system already equals snapshot %s in scope %s; nothing to do\n", m.BackupID, o.Scope.Name)
		return res, nil
	}

	defer func() { // whatever happens, the held descriptor goes (cleanup closes it sooner)
		if ru.work != "" {
			unix.Close(ru.sfd)
			ru.work = ""
		}
	}()
	if err := ru.begin(); err != nil {
		ru.cleanup()
		return res, err
	}
	defer ru.j.close()
	o.Hook("restore-journal")

	// Everything up to the first swap step is abandoned, not rolled back.
	if err := ru.prepare(ctx); err != nil {
		ru.abandon(ctx, err)
		return res, &AbandonedError{Stage: ru.res.Stages[len(ru.res.Stages)-1].Name, Cause: err}
	}
	if err := ru.swap(ctx); err != nil {
		return res, ru.rollback(ctx, "swap", err)
	}
	// Checked before the application starts: once it runs, it may rightly
	// write to its logs and database.
	if err := ru.stage("check", func() (string, error) { return ru.checkSwapped(ctx) }); err != nil {
		return res, ru.rollback(ctx, "check", err)
	}
	if o.Hooks != nil && o.Hooks.Start != "" {
		if err := ru.stage("start hook", func() (string, error) { return "", ru.hook(ctx, "start", o.Hooks.Start) }); err != nil {
			return res, ru.rollback(ctx, "start hook", err)
		}
	}
	if o.NoSmoke {
		ru.res.Stages = append(ru.res.Stages, Stage{Name: "smoke test", Outcome: "skipped", Detail: "--no-smoke"})
	} else if err := ru.stage("smoke test", func() (string, error) { return ru.smoke(ctx) }); err != nil {
		return res, ru.rollback(ctx, "smoke test", err)
	}
	if err := ru.stage("commit", func() (string, error) {
		if err := ru.j.add(record{T: recCommit}); err != nil {
			return "", err
		}
		o.Hook("restore-committed")
		return "", nil
	}); err != nil {
		return res, ru.rollback(ctx, "commit", err)
	}
	ru.cleanup()
	return res, nil
}

// stage runs one protocol stage: progress, timing, the audit event.
func (ru *runner) stage(name string, fn func() (string, error)) error {
	l := ru.o.Live
	l.FilesDone.Store(0)
	l.BytesDone.Store(0)
	l.FilesTotal.Store(ru.m.Stats.Files) // stages that know better set their own
	l.BytesTotal.Store(ru.m.Stats.Bytes)
	l.Start(name)
	fmt.Fprintf(ru.o.Log, "restore: %s\n", name)
	start := time.Now()
	detail, err := fn()
	st := Stage{Name: name, Outcome: "ok", DurationMS: time.Since(start).Milliseconds(), Detail: detail}
	if err != nil {
		st.Outcome = "failed"
		if st.Detail == "" {
			st.Detail = err.Error()
		}
	}
	ru.res.Stages = append(ru.res.Stages, st)
	params := map[string]any{"restore_id": ru.id, "backup_id": ru.m.BackupID, "stage": name, "duration_ms": st.DurationMS}
	if detail != "" {
		params["detail"] = detail
	}
	outcome := "ok"
	if err != nil {
		outcome = snapshot.FailedOutcome(err)
	}
	ru.r.AuditAs(ru.actor, "restore_"+strings.ReplaceAll(name, " ", "_"), params, outcome)
	return err
}

// begin creates the staging area, the journal and the repository's pointer
// to them, before anything else is written.
func (ru *runner) begin() error {
	ru.staging = filepath.Join(ru.o.Target, snapshot.StagingDir, ru.id)
	// The repository's record first: whatever exists of the staging area
	// after a kill is found from it (and nothing else is ever trusted).
	if err := writePointer(ru.r.Path(), pointer{RestoreID: ru.id, BackupID: ru.m.BackupID, Target: ru.o.Target, Staging: ru.staging,
		Started: time.Now().UTC().Format(time.RFC3339), PID: os.Getpid(), Hooks: ru.o.Hooks}); err != nil {
		return err
	}
	if err := ensureStagingDir(ru.o.Target); err != nil {
		return fmt.Errorf("restore: create staging area in %s: %w", ru.o.Target, err)
	}
	sfd, err := stagingDirFd(ru.o.Target)
	if err != nil {
		return fmt.Errorf("restore: create staging area in %s: %w", ru.o.Target, err)
	}
	ru.sfd, ru.work = sfd, stagingWork(sfd, ru.id)
	for _, d := range []string{ru.id, ru.id + "/old", ru.id + "/trash"} {
		if err := unix.Mkdirat(sfd, d, 0o700); err != nil {
			return fmt.Errorf("restore: create staging area %s: %w", ru.staging, err)
		}
	}
	j, err := createJournal(ru.work)
	if err != nil {
		return err
	}
	ru.j = j
	if err := syncPath(ru.work); err != nil {
		return err
	}
	if err := unix.Fsync(sfd); err != nil {
		return err
	}
	return j.add(record{T: recBegin, RestoreID: ru.id, BackupID: ru.m.BackupID, Target: ru.o.Target, Scope: ru.o.Scope.Name, Hooks: ru.o.Hooks})
}

// prepare takes the safety snapshot, stops the application, plans again,
// stages and verifies. Nothing in the live tree changes here.
func (ru *runner) prepare(ctx context.Context) error {
	o := ru.o
	if err := ru.stage("safety snapshot", func() (string, error) { return ru.safety(ctx, ru.safetyPaths()) }); err != nil {
		return err
	}
	if o.Hooks != nil && o.Hooks.Stop != "" {
		if err := ru.stage("stop hook", func() (string, error) { return "", ru.hook(ctx, "stop", o.Hooks.Stop) }); err != nil {
			return err
		}
		// The application is down: plan again, so what runs matches the
		// files as the application left them. Paths that changed since the
		// safety snapshot get a second one.
		if err := ru.stage("plan again", func() (string, error) {
			before := ru.plan.live
			plan, err := ru.p.build(ctx)
			if err != nil {
				return "", err
			}
			ru.plan, ru.res.Plan = plan, plan
			if err := plan.Err(); err != nil {
				return "", err
			}
			var more []string
			for _, p := range plan.protected() {
				b, ok := before[p]
				a := plan.live[p]
				if !ok || b.exists != a.exists || b.st.Ino != a.st.Ino || b.st.Size != a.st.Size || b.st.Mtim != a.st.Mtim || b.st.Ctim != a.st.Ctim {
					more = append(more, p)
				}
			}
			if len(more) > 0 {
				if _, err := ru.safety(ctx, more); err != nil {
					return "", err
				}
				return fmt.Sprintf("%d path(s) changed while the application stopped; a second safety snapshot holds them", len(more)), nil
			}
			return "nothing changed since the plan", nil
		}); err != nil {
			return err
		}
	}
	o.Hook("restore-stopped")
	if err := ru.stage("stage", func() (string, error) { return ru.stageFiles(ctx) }); err != nil {
		return err
	}
	o.Hook("restore-staged")
	if err := ru.stage("verify", func() (string, error) { return ru.verifyStaged(ctx) }); err != nil {
		return err
	}
	o.Hook("restore-verified")
	return nil
}

// safetyPaths is what the safety snapshot holds: the whole scope (so
// restoring it in place, with the same scope, brings back exactly the state
// before the restore), or, for a scope of patterns, the units' paths and
// every path the plan replaces, removes or updates. nil is the whole root.
func (ru *runner) safetyPaths() []string {
	s := ru.o.Scope
	switch {
	case s.Whole:
		return nil
	case len(s.Include) == 0:
		return s.Paths
	}
	return append(append([]string{}, s.Paths...), ru.plan.protected()...)
}

// safety takes a pinned snapshot of paths (nil: the whole root) as they
// are now. Files unchanged since the last snapshot of the same units are
// not read again (an incremental backup).
func (ru *runner) safety(ctx context.Context, paths []string) (string, error) {
	dbs := ru.o.Scope.SQLite // captured through SQLite's online backup
	units := ru.o.Scope.Units
	if len(units) == 0 {
		units = []string{"."}
	}
	dbDirs := ru.dbDirTimes()
	sm, err := ru.r.Backup(ctx, snapshot.BackupOptions{
		Root: ru.o.Target, Paths: paths, SQLite: dbs, Exclude: ru.o.Scope.Exclude,
		Includes: units, UnitPaths: ru.o.Scope.UnitPaths, Tags: []string{snapshot.TagSafety, "pinned", "restore:" + ru.id}, Name: ru.o.Name,
		Location: ru.o.Location,
	})
	if err != nil {
		return "", fmt.Errorf("safety snapshot: %w", err)
	}
	if sm.Partial {
		return "", fmt.Errorf("safety snapshot %s is incomplete (%d problem(s), first: %s: %s); nothing was changed", sm.BackupID, len(sm.Warnings), firstPath(sm.Warnings), firstProblem(sm.Warnings))
	}
	ru.dropCaptureSidecars(dbDirs)
	ru.res.Safety = append(ru.res.Safety, sm.BackupID)
	if err := ru.j.add(record{T: recSafety, Safety: sm.BackupID}); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %d files, %s", sm.BackupID, sm.Stats.Files, humanBytes(sm.Stats.Bytes)), nil
}

// dropCaptureSidecars removes the empty -wal and the -shm that capturing a
// cleanly closed WAL database (a read-only connection) leaves beside it,
// when they were not there before the plan and no process holds the
// database: the live tree stays exactly as it was.
func (ru *runner) dropCaptureSidecars(dirs map[string]unix.Stat_t) {
	root, err := openRoot(ru.o.Target)
	if err != nil {
		return
	}
	defer unix.Close(root)
	defer func() {
		// Making and removing them moved their directories' times: put
		// those back as they were before the capture.
		for dir, was := range dirs {
			setDirTimesAt(root, dir, was.Ino, was.Atim, was.Mtim)
		}
	}()
	removed := map[string]bool{} // directories sidecars were removed from
	for _, db := range ru.plan.sqlite {
		var made []string
		for _, suf := range []string{"-wal", "-shm"} {
			if ru.plan.sidecars[db+suf] {
				continue
			}
			dir, name := splitRel(db + suf)
			fd, err := openDirAt(root, dir)
			if err != nil {
				continue
			}
			st, err := lstatAt(fd, name)
			unix.Close(fd)
			if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && (suf == "-shm" || st.Size == 0) {
				made = append(made, db+suf)
			}
		}
		if len(made) == 0 || len(openBy(root, append([]string{db}, made...))) > 0 {
			continue
		}
		for _, m := range made {
			dir, name := splitRel(m)
			if fd, err := openDirAt(root, dir); err == nil {
				if unix.Unlinkat(fd, name, 0) == nil {
					removed[path.Dir(m)] = true
				}
				unix.Close(fd)
			}
		}
	}
	for dir := range dirs {
		if !removed[dir] {
			delete(dirs, dir) // nothing made there, or made and kept: its times are the application's
		}
	}
}

// dbDirTimes returns, by path, the directories holding the scope's
// databases as they are before the safety snapshot captures them.
func (ru *runner) dbDirTimes() map[string]unix.Stat_t {
	root, err := openRoot(ru.o.Target)
	if err != nil {
		return nil
	}
	defer unix.Close(root)
	out := map[string]unix.Stat_t{}
	for _, db := range ru.plan.sqlite {
		rel := path.Dir(db)
		if rel == "." {
			continue // the target's own times are not kept (the staging area is made in it)
		}
		d, name := splitRel(rel)
		if fd, err := openDirAt(root, d); err == nil {
			if st, err := lstatAt(fd, name); err == nil {
				out[rel] = st
			}
			unix.Close(fd)
		}
	}
	return out
}

func firstPath(ws []snapshot.Warning) string {
	if len(ws) == 0 {
		return ""
	}
	return ws[0].Path
}

func firstProblem(ws []snapshot.Warning) string {
	if len(ws) == 0 {
		return ""
	}
	return ws[0].Problem
}

// hook runs a profile hook and journals the application's state.
func (ru *runner) hook(ctx context.Context, kind, command string) error {
	run, err := runHook(ctx, kind, command, time.Duration(ru.o.hookTimeoutS())*time.Second, ru.o.Target, ru.m.BackupID, ru.o.Scope.Name, ru.o.Log)
	ru.res.Hooks = append(ru.res.Hooks, run)
	switch kind {
	case "stop":
		ru.stopped, ru.started = true, false
		if jerr := ru.j.add(record{T: recStopped}); jerr != nil && err == nil {
			err = jerr
		}
	case "start":
		if err == nil {
			ru.stopped, ru.started = false, true
			if jerr := ru.j.add(record{T: recStarted}); jerr != nil {
				err = jerr
			}
		}
	}
	return err
}

// stageFiles restores the plan's new entries into the staging area with the
// snapshot engine's restore: every chunk is checked before it is written,
// each file lands under a temporary name first, nothing is followed.
func (ru *runner) stageFiles(ctx context.Context) (string, error) {
	if err := ru.o.Fault("stage"); err != nil {
		return "", err
	}
	paths := ru.plan.staged()
	if len(paths) == 0 {
		return "nothing to stage", nil
	}
	live := ru.o.Live
	live.FilesTotal.Store(0)
	live.BytesTotal.Store(ru.plan.Space.StageBytes)
	live.FilesDone.Store(0)
	live.BytesDone.Store(0)
	live.WalkDone.Store(true)
	rr, err := ru.r.Restore(ctx, ru.m, snapshot.RestoreOptions{Target: filepath.Join(ru.work, "stage"), Paths: paths, Special: ru.o.Special, Live: live, Phase: "stage"})
	if err != nil {
		var fe *snapshot.RestoreFailedError
		if errors.As(err, &fe) {
			return "", &IntegrityError{Msg: "restore: the snapshot's data is damaged; nothing was changed in the live system: " + fe.Error()}
		}
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			return "", fmt.Errorf("restore: no space left on the live root's filesystem while staging (%w); nothing was changed and the staged files are removed", err)
		}
		return "", err
	}
	ru.res.Files, ru.res.Bytes = rr.Files, rr.Bytes
	for _, w := range rr.Warnings {
		ru.res.Warnings = append(ru.res.Warnings, Problem{Path: w.Path, PathB64: w.PathB64, Problem: w.Problem})
	}
	return fmt.Sprintf("%d files, %s", rr.Files, humanBytes(rr.Bytes)), nil
}

// abandon undoes a restore that failed before its first swap step: the
// live tree was never touched. The application is started again if it was
// stopped.
func (ru *runner) abandon(ctx context.Context, cause error) {
	fmt.Fprintf(ru.o.Log, "restore: abandoned before the swap; removing the staging area\n")
	if ru.stopped && ru.o.Hooks != nil && ru.o.Hooks.Start != "" {
		ru.hook(context.WithoutCancel(ctx), "start", ru.o.Hooks.Start)
	}
	ru.cleanup()
}

// cleanup removes the staging area (staged and replaced entries) and the
// repository's pointer; the restore is over.
func (ru *runner) cleanup() {
	ru.j.close()
	if ru.work != "" {
		removeStaging(ru.sfd, ru.o.Target, ru.id)
		unix.Close(ru.sfd)
		ru.work = ""
	}
	if ru.id != "" {
		removePointer(ru.r.Path(), ru.id)
	}
}

func newRestoreID() string {
	var b [4]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// stagingWork names restore id's staging area through the held descriptor
// of the staging directory.
func stagingWork(sfd int, id string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", sfd, id) }

// removeStaging deletes restore id's staging area below the staging
// directory sfd (stagingDirFd of target) and, when it was the last, the
// staging directory itself. It works through descriptors: it never follows
// a symlink nor enters another filesystem.
func removeStaging(sfd int, target, id string) error {
	var st unix.Stat_t
	unix.Fstat(sfd, &st)
	err := removeAt(sfd, id, st.Dev, filepath.Join(target, snapshot.StagingDir, id))
	if root, rerr := openRoot(target); rerr == nil {
		var cur unix.Stat_t
		// Only when the name still leads to our directory, and it is empty.
		if unix.Fstatat(root, snapshot.StagingDir, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil && cur.Dev == st.Dev && cur.Ino == st.Ino {
			unix.Unlinkat(root, snapshot.StagingDir, unix.AT_REMOVEDIR)
			unix.Fsync(root)
		}
		unix.Close(root)
	}
	return err
}

// ensureStagingDir makes <target>/<StagingDir> unless it exists, and
// checks it is ours (stagingDirFd).
func ensureStagingDir(target string) error {
	fd, err := openRoot(target)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Mkdirat(fd, snapshot.StagingDir, 0o700); err != nil && err != unix.EEXIST {
		return err
	}
	sfd, err := stagingDirFd(target)
	if err != nil {
		return err
	}
	return unix.Close(sfd)
}

// stagingDirFd opens <target>/<StagingDir> without following a symlink and
// only when it is a directory this user owns that nobody else may write: a
// staging directory planted in the live root (a symlink out of it, or one
// another user controls) is refused, never used nor cleaned.
func stagingDirFd(target string) (int, error) {
	root, err := openRoot(target)
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	fd, err := unix.Openat(root, snapshot.StagingDir, dirFlags, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return -1, fmt.Errorf("%s is not a directory (a symlink?); it is not snapforge's: move it away", filepath.Join(target, snapshot.StagingDir))
		}
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("%s belongs to uid %d with mode %04o; snapforge's staging directory is its own and writable only by it: move it away", filepath.Join(target, snapshot.StagingDir), st.Uid, st.Mode&0o7777)
	}
	return fd, nil
}

// lockTarget takes an exclusive lock on the target directory and shared
// locks on its ancestors, so two restores into the same or nested targets
// never run at once (FAULTS E16); the second is refused.
func lockTarget(target string) (func(), error) {
	var fds []int
	release := func() {
		for _, fd := range fds {
			unix.Flock(fd, unix.LOCK_UN)
			unix.Close(fd)
		}
	}
	for d := target; ; d = filepath.Dir(d) {
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			release()
			return nil, fmt.Errorf("restore: open %s: %w", d, err)
		}
		fds = append(fds, fd)
		how := unix.LOCK_SH
		if d == target {
			how = unix.LOCK_EX
		}
		if err := unix.Flock(fd, how|unix.LOCK_NB); err != nil {
			release()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("restore: another restore is running into %s (or into a directory that contains it or lies inside it); wait for it to finish", d)
			}
			return nil, fmt.Errorf("restore: lock %s: %w", d, err)
		}
		if d == "/" {
			break
		}
	}
	return release, nil
}
