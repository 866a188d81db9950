package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
	"snapforge/snapshot/audit"
)

// Recovered reports an unfinished restore that Recover brought to an end.
type Recovered struct {
	RestoreID string `json:"restore_id"`
	BackupID  string `json:"backup_id"`
	Target    string `json:"target"`
	Outcome   string `json:"outcome"` // "rolled back" or "finished" (it had committed)
	Steps     int    `json:"steps"`   // steps undone
}

// Recover finishes every restore of repository r that a kill, a crash or a
// failed rollback left unfinished: a committed one is cleaned up, any
// other is rolled back to the state before it began (stopping the
// application first if the journal says it runs, and starting it again
// after). It is safe to call at every start, and again after it failed.
//
// Only restores the repository recorded (restores/<id>.json, written before
// anything else) are acted on, with the target and hooks recorded there: a
// journal found in a live root is never trusted by itself, since whoever
// can write the live root could have planted it.
func Recover(ctx context.Context, r *snapshot.Repo, o Options) ([]Recovered, error) {
	ptrs, err := readPointers(r.Path())
	if err != nil || len(ptrs) == 0 {
		return nil, err
	}
	var out []Recovered
	for _, p := range ptrs {
		if p.untrusted != "" {
			out = append(out, Recovered{RestoreID: p.RestoreID, BackupID: p.BackupID, Target: p.Target,
				Outcome: "left alone, nothing changed: its record may not be acted on: " + p.untrusted})
			continue
		}
		if _, err := os.Stat(p.Target); errors.Is(err, fs.ErrNotExist) {
			out = append(out, Recovered{RestoreID: p.RestoreID, BackupID: p.BackupID, Target: p.Target,
				Outcome: "left alone: its live root is gone (" + filepath.Join(pointerDir(r.Path()), p.RestoreID+".json") + " is kept; remove it once the root is not coming back)"})
			continue
		}
		lockPath := p.Target
		if real, err := filepath.EvalSymlinks(p.Target); err == nil {
			lockPath = real
		}
		unlock, err := lockTarget(lockPath)
		if err != nil {
			return out, err
		}
		rec, err := finishOne(ctx, r, p, o)
		unlock()
		if rec != nil {
			out = append(out, *rec)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// recoverTarget finishes the repository's unfinished restores into target.
// The caller holds the target lock.
func recoverTarget(ctx context.Context, r *snapshot.Repo, target string, o Options) ([]Recovered, error) {
	ptrs, err := readPointers(r.Path())
	if err != nil {
		return nil, err
	}
	var out []Recovered
	for _, p := range ptrs {
		if p.Target != target && !sameDir(p.Target, target) {
			continue
		}
		if p.untrusted != "" {
			return out, fmt.Errorf("restore: the unfinished restore %s into %s must be finished first, and its record may not be acted on: %s", p.RestoreID, p.Target, p.untrusted)
		}
		rec, err := finishOne(ctx, r, p, o)
		if rec != nil {
			out = append(out, *rec)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// finishOne ends the restore that pointer p records.
func finishOne(ctx context.Context, r *snapshot.Repo, p pointer, o Options) (*Recovered, error) {
	o.Hook = orNoop(o.Hook)
	if o.Fault == nil {
		o.Fault = func(string) error { return nil }
	}
	staging := filepath.Join(p.Target, snapshot.StagingDir, p.RestoreID) // for messages
	if _, err := os.Stat(p.Target); errors.Is(err, fs.ErrNotExist) {
		return &Recovered{RestoreID: p.RestoreID, BackupID: p.BackupID, Target: p.Target,
			Outcome: "left alone: its live root is gone (" + filepath.Join(pointerDir(r.Path()), p.RestoreID+".json") + " is kept; remove it once the root is not coming back)"}, nil
	}
	sfd, err := stagingDirFd(p.Target)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			removePointer(r.Path(), p.RestoreID) // finished; only the pointer was left
			return nil, nil
		}
		return nil, fmt.Errorf("restore: unfinished restore %s into %s: %w", p.RestoreID, p.Target, err)
	}
	defer unix.Close(sfd)
	work := stagingWork(sfd, p.RestoreID)
	done := func() {
		removeStaging(sfd, p.Target, p.RestoreID)
		removePointer(r.Path(), p.RestoreID)
	}
	recs, valid, err := readJournal(work)
	if errors.Is(err, errNoHeader) || errors.Is(err, fs.ErrNotExist) {
		// Killed before the journal's first record: nothing was changed.
		done()
		return &Recovered{RestoreID: p.RestoreID, BackupID: p.BackupID, Target: p.Target, Outcome: "abandoned before it began"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore: %w; the live system may be mixed: inspect %s by hand", err, staging)
	}
	h := recs[0]
	if h.RestoreID != p.RestoreID || h.Target != p.Target {
		return nil, fmt.Errorf("restore: the journal in %s does not belong to restore %s into %s (the repository's record); inspect it by hand", staging, p.RestoreID, p.Target)
	}
	rec := &Recovered{RestoreID: p.RestoreID, BackupID: p.BackupID, Target: p.Target}
	f := &fixer{r: r, o: o, staging: work, recs: recs, valid: valid}
	f.o.Target, f.o.Hooks = p.Target, p.Hooks
	f.o.Scope.Name = h.Scope
	n, err := f.finish(ctx)
	rec.Steps = n
	rec.Outcome = "rolled back"
	if f.committed {
		rec.Outcome = "finished"
	}
	params := map[string]any{"restore_id": p.RestoreID, "backup_id": p.BackupID, "target": audit.Escape([]byte(p.Target)), "steps": n, "outcome": rec.Outcome}
	if err != nil {
		r.AuditAs(ctx, "restore_recover", params, "failed: "+err.Error())
		return rec, &CriticalError{RestoreID: p.RestoreID, Journal: filepath.Join(staging, journalName), Safety: f.safety(), Cause: err}
	}
	r.AuditAs(ctx, "restore_recover", params, "ok")
	done()
	return rec, nil
}

// sameDir reports whether two paths name the same existing directory.
func sameDir(a, b string) bool {
	var x, y unix.Stat_t
	return unix.Stat(a, &x) == nil && unix.Stat(b, &y) == nil && x.Dev == y.Dev && x.Ino == y.Ino
}

func orNoop(f func(string)) func(string) {
	if f == nil {
		return func(string) {}
	}
	return f
}

// fixer undoes a journal.
type fixer struct {
	r         *snapshot.Repo
	o         Options
	staging   string
	recs      []record
	valid     int64 // length of the journal's valid records
	j         *journal
	hooks     []HookRun
	committed bool
}

func (f *fixer) safety() []string {
	var ids []string
	for _, rec := range f.recs {
		if rec.T == recSafety {
			ids = append(ids, rec.Safety)
		}
	}
	return ids
}

// finish rolls back unless the journal committed. It returns the number of
// steps undone.
func (f *fixer) finish(ctx context.Context) (int, error) {
	state := "" // the application: "", "stopped" or "started"
	everStopped, undone := false, false
	for _, rec := range f.recs {
		switch rec.T {
		case recRolledBack:
			undone = true // every step is undone; the application may have run since
		case recCommit:
			f.committed = true
		case recStopped:
			state, everStopped = "stopped", true
		case recStarted:
			state = "started"
		}
	}
	if f.committed {
		return 0, nil
	}
	j, err := openJournal(f.staging, len(f.recs), f.valid)
	if err != nil {
		return 0, err
	}
	f.j = j
	defer j.close()
	hooks := f.o.Hooks
	if undone {
		// Killed after the rollback finished: only the start hook may be
		// missing. Undoing again could take files the application wrote.
		if state == "stopped" && hooks != nil && hooks.Start != "" {
			run, err := runHook(ctx, "start", hooks.Start, time.Duration(f.o.hookTimeoutS())*time.Second, f.o.Target, f.recs[0].BackupID, f.o.Scope.Name, f.o.logw())
			f.hooks = append(f.hooks, run)
			if err != nil {
				fmt.Fprintf(f.o.logw(), "restore: WARNING: the files are rolled back, but the start hook failed: %v\n", err)
			} else if err := j.add(record{T: recStarted}); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	// Stop the application first when it may run: after the start hook, or
	// when a kill may have cut the start hook short. Stop hooks are
	// expected to be idempotent (like `systemctl stop`).
	if (state == "started" || everStopped) && hooks != nil && hooks.Stop != "" {
		run, err := runHook(ctx, "stop", hooks.Stop, time.Duration(f.o.hookTimeoutS())*time.Second, f.o.Target, f.recs[0].BackupID, f.o.Scope.Name, f.o.logw())
		f.hooks = append(f.hooks, run)
		if err != nil {
			fmt.Fprintf(f.o.logw(), "restore: rollback: %v (rolling back anyway)\n", err)
		}
		if err := j.add(record{T: recStopped}); err != nil {
			fmt.Fprintf(f.o.logw(), "restore: rollback: %v (rolling back anyway)\n", err)
		}
	}
	n, err := f.undo(ctx)
	if err != nil {
		return n, err
	}
	if err := j.add(record{T: recRolledBack}); err != nil {
		// Undone all the same; without the record a later recovery undoes
		// again, which finds every step already undone.
		fmt.Fprintf(f.o.logw(), "restore: rollback done, but not recorded: %v\n", err)
	}
	f.o.Hook("restore-rolled-back")
	if everStopped && hooks != nil && hooks.Start != "" {
		run, err := runHook(ctx, "start", hooks.Start, time.Duration(f.o.hookTimeoutS())*time.Second, f.o.Target, f.recs[0].BackupID, f.o.Scope.Name, f.o.logw())
		f.hooks = append(f.hooks, run)
		if err != nil {
			// The files are back; the application did not come up. Say so
			// loudly, but the data is safe: not a critical error.
			fmt.Fprintf(f.o.logw(), "restore: WARNING: the files are rolled back, but the start hook failed: %v\n", err)
		} else if err := j.add(record{T: recStarted}); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (o Options) logw() interface{ Write([]byte) (int, error) } {
	if o.Log == nil {
		return discard{}
	}
	return o.Log
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// undo reverses every journaled step, newest first. Each reversal looks at
// the live path's inode to tell whether the step happened, so running undo
// again (after a kill during rollback) is harmless.
func (f *fixer) undo(ctx context.Context) (int, error) {
	root, err := openRoot(f.o.Target)
	if err != nil {
		return 0, err
	}
	defer unix.Close(root)
	stg, err := openRoot(f.staging)
	if err != nil {
		return 0, err
	}
	defer unix.Close(stg)
	n := 0
	for k := len(f.recs) - 1; k >= 0; k-- {
		rec := f.recs[k]
		switch rec.T {
		case recMkdir, recCreate, recExchange, recMove, recMeta:
		default:
			continue
		}
		f.o.Hook("restore-rollback-" + strconv.Itoa(n))
		if err := f.o.Fault("rollback-" + strconv.Itoa(n)); err != nil {
			return n, fmt.Errorf("undo %s of %s: %w", rec.T, snapshot.DisplayName(string(rec.Path)), err)
		}
		if err := f.undoOne(ctx, root, stg, rec); err != nil {
			return n, fmt.Errorf("undo %s of %s: %w", rec.T, snapshot.DisplayName(string(rec.Path)), err)
		}
		n++
	}
	f.dirTimesBack(root)
	if err := unix.Syncfs(root); err != nil {
		return n, err
	}
	return n, nil
}

// dirTimesBack sets the kept directories' times back to what the journal
// recorded before the swap, once every step is undone (the renames of the
// undo moved them again): only a directory that is still the one recorded.
// It is best effort, like setting them after the swap: the entries are what
// counts.
func (f *fixer) dirTimesBack(root int) {
	for _, rec := range f.recs {
		if rec.T == recDirTime {
			setDirTimesAt(root, string(rec.Path), rec.OldIno, unix.NsecToTimespec(rec.ATime), unix.NsecToTimespec(rec.MTime))
		}
	}
}

func (f *fixer) undoOne(ctx context.Context, root, stg int, rec record) error {
	rel := string(rec.Path)
	dir, name := splitRel(rel)
	ldir, err := openDirAt(root, dir)
	if err != nil {
		if errors.Is(err, unix.ENOENT) && (rec.T == recMkdir || rec.T == recCreate || rec.T == recMeta) {
			return nil // its parent was never made, or is already undone
		}
		return err
	}
	defer unix.Close(ldir)
	lst, lerr := lstatAt(ldir, name)
	here := func(ino uint64) bool { return lerr == nil && lst.Ino == ino }
	switch rec.T {
	case recMkdir:
		if lerr == nil && lst.Mode&unix.S_IFMT != unix.S_IFDIR {
			// The application put something else there after the swap; the
			// path was absent before the restore.
			return f.toTrash(ldir, stg, name, rec.Seq)
		}
		err := asOwner(func() error { return unix.Unlinkat(ldir, name, unix.AT_REMOVEDIR) }, ldir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err == unix.ENOTEMPTY || err == unix.EEXIST {
			// Something made after the swap (the application, once started)
			// lives there; it is not part of the old state.
			return f.toTrash(ldir, stg, name, rec.Seq)
		}
		return err
	case recCreate:
		if here(rec.NewIno) {
			return f.putBack(ldir, stg, name, string(rec.Staged), rec.Seq)
		}
		sdir, sname, serr := f.stagedAt(stg, string(rec.Staged))
		if serr == nil {
			defer unix.Close(sdir)
			if f.inoAt(sdir, sname) == rec.NewIno {
				return nil // the rename never happened
			}
		}
		if lerr == nil {
			// Created, then replaced by the application (it started): the
			// path was absent before the restore, so it goes to the trash.
			return f.toTrash(ldir, stg, name, rec.Seq)
		}
		return nil
	case recExchange:
		sdir, sname, serr := f.stagedAt(stg, string(rec.Staged))
		if serr == nil {
			defer unix.Close(sdir)
		}
		switch {
		case here(rec.OldIno):
			return nil // never exchanged, or already undone
		case here(rec.NewIno) && serr == nil && f.inoAt(sdir, sname) == rec.OldIno:
			return renameAt(sdir, sname, ldir, name, unix.RENAME_EXCHANGE)
		case serr == nil && f.inoAt(sdir, sname) == rec.OldIno:
			// Something else took the path after the swap: it goes to the
			// trash and the old entry comes back.
			if lerr == nil {
				if err := f.toTrash(ldir, stg, name, rec.Seq); err != nil {
					return err
				}
			}
			return renameAt(sdir, sname, ldir, name, unix.RENAME_NOREPLACE)
		case lerr == nil && !here(rec.NewIno) && serr == nil && f.inoAt(sdir, sname) == rec.NewIno:
			return nil // the exchange never happened; the path holds someone's entry
		default:
			// The old entry is not in the staging area: from the safety snapshot.
			if lerr == nil {
				if err := f.toTrash(ldir, stg, name, rec.Seq); err != nil {
					return err
				}
			}
			return f.fromSafety(ctx, stg, ldir, name, rel, rec.Seq)
		}
	case recMove:
		sdir, sname, serr := f.stagedAt(stg, string(rec.Staged))
		if serr == nil {
			defer unix.Close(sdir)
		}
		staged := serr == nil && f.inoAt(sdir, sname) == rec.OldIno
		switch {
		case here(rec.OldIno):
			return nil
		case staged:
			if lerr == nil {
				if err := f.toTrash(ldir, stg, name, rec.Seq); err != nil {
					return err
				}
			}
			return renameAt(sdir, sname, ldir, name, unix.RENAME_NOREPLACE)
		case lerr == nil:
			// Neither here nor staged, and something else holds the path:
			// the move never happened to this entry; leave it.
			return nil
		default:
			return f.fromSafety(ctx, stg, ldir, name, rel, rec.Seq)
		}
	case recMeta:
		if lerr != nil {
			return nil
		}
		if lst.Ino != rec.OldIno {
			return nil // another entry holds the name now; the changed one is not here
		}
		return setMeta(ldir, name, rec.OldIno, rec.Mode, rec.UID, rec.GID, rec.MTime, rec.ATime)
	}
	return nil
}

func (f *fixer) stagedAt(stg int, rel string) (int, string, error) {
	d, n := splitRel(rel)
	fd, err := openDirAt(stg, d)
	return fd, n, err
}

func (f *fixer) inoAt(dir int, name string) uint64 {
	st, err := lstatAt(dir, name)
	if err != nil {
		return 0
	}
	return st.Ino
}

// putBack moves a created entry back into the staging area.
func (f *fixer) putBack(ldir, stg int, name, staged string, seq int) error {
	sdir, sname, err := f.stagedAt(stg, staged)
	if err == nil {
		defer unix.Close(sdir)
		if err := renameAt(ldir, name, sdir, sname, unix.RENAME_NOREPLACE); err == nil {
			return nil
		}
	}
	return f.toTrash(ldir, stg, name, seq)
}

// toTrash moves a live entry into the staging area's trash.
func (f *fixer) toTrash(ldir, stg int, name string, seq int) error {
	unix.Mkdirat(stg, "trash", 0o700)
	return renameAt(ldir, name, stg, "trash/"+strconv.Itoa(seq)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), unix.RENAME_NOREPLACE)
}

// fromSafety restores rel from the newest safety snapshot that holds it,
// staged first and then renamed into place.
func (f *fixer) fromSafety(ctx context.Context, stg, ldir int, name, rel string, seq int) error {
	ids := f.safety()
	for i := len(ids) - 1; i >= 0; i-- {
		m, err := f.r.LoadManifest(ids[i])
		if err != nil {
			continue
		}
		if n, err := f.r.FindNode(ctx, m, rel); err != nil || n == nil {
			continue
		}
		sub := "safety-" + strconv.Itoa(seq)
		target := filepath.Join(f.staging, sub)
		os.RemoveAll(target)
		if _, err := f.r.Restore(ctx, m, snapshot.RestoreOptions{Target: target, Paths: []string{rel}, Special: true}); err != nil {
			return fmt.Errorf("from safety snapshot %s: %w", ids[i], err)
		}
		sdir, sname, err := f.stagedAt(stg, joinRel(sub, rel))
		if err != nil {
			return err
		}
		defer unix.Close(sdir)
		return renameAt(sdir, sname, ldir, name, unix.RENAME_NOREPLACE)
	}
	return fmt.Errorf("the old entry is neither in the staging area nor in a safety snapshot (%v)", ids)
}
