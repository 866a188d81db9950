package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
)

// swap carries out the plan's actions on the live tree, in path order (a
// parent before its children). Each step is journaled (fsynced) before it
// is taken:
//
//	create   rename staged entry to the free live path (RENAME_NOREPLACE)
//	replace  exchange staged and live entries (RENAME_EXCHANGE): the path is
//	         never absent, and the old entry lands in the staging area
//	remove   rename the live entry into the staging area (old/<n>)
//	update   set mode, owner and mtime; the old values are in the journal
//
// A missing parent directory is created first (and journaled). Nothing is
// ever written through a symlink: every directory is opened one name at a
// time with O_NOFOLLOW.
func (ru *runner) swap(ctx context.Context) error {
	return ru.stage("swap", func() (string, error) {
		root, err := openRoot(ru.o.Target)
		if err != nil {
			return "", err
		}
		defer unix.Close(root)
		stg, err := openRoot(ru.work)
		if err != nil {
			return "", err
		}
		defer unix.Close(stg)
		if err := ru.journalDirTimes(root); err != nil {
			return "", err
		}
		live := ru.o.Live
		live.FilesTotal.Store(int64(len(ru.plan.Actions)))
		live.FilesDone.Store(0)
		for k, i := range swapOrder(ru.plan.Actions) {
			a := ru.plan.Actions[i]
			if err := ctx.Err(); err != nil {
				return "", err
			}
			ru.o.Hook("restore-swap-" + strconv.Itoa(k))
			if err := ru.o.Fault("swap-" + strconv.Itoa(k)); err != nil {
				return "", fmt.Errorf("%s %s: %w", a.Op, a.Path, err)
			}
			if err := ru.step(root, stg, i, a); err != nil {
				return "", fmt.Errorf("%s %s: %w", a.Op, a.Path, err)
			}
			live.FilesDone.Add(1)
		}
		for i := len(ru.madeDirs) - 1; i >= 0; i-- { // deepest first
			d := ru.madeDirs[i]
			setMeta(root, d.rel, d.ino, ru.o.modeOf(d.n), d.n.UID, d.n.GID, d.n.MTime, d.n.MTime)
		}
		ru.setDirTimes(root)
		ru.o.Hook("restore-swap-" + strconv.Itoa(len(ru.plan.Actions)))
		if err := unix.Syncfs(root); err != nil {
			return "", fmt.Errorf("sync %s: %w", ru.o.Target, err)
		}
		if err := ru.j.add(record{T: recSwapped}); err != nil {
			return "", err
		}
		ru.o.Hook("restore-swapped")
		return fmt.Sprintf("%d steps", len(ru.plan.Actions)), nil
	})
}

// swapOrder returns the order of the swap steps: the plan's path order (a
// parent before its children), except that metadata updates of
// directories come last, deepest first — a directory that becomes
// read-only must not stop the entries below it from being swapped, nor
// (undone first) from being put back by a rollback.
func swapOrder(as []Action) []int {
	var order, dirs []int
	for i, a := range as {
		if a.Op == "update" && a.Type == "dir" {
			dirs = append(dirs, i)
			continue
		}
		order = append(order, i)
	}
	sort.SliceStable(dirs, func(x, y int) bool {
		return strings.Count(as[dirs[x]].raw, "/") > strings.Count(as[dirs[y]].raw, "/")
	})
	return append(order, dirs...)
}

func (ru *runner) step(root, stg, i int, a Action) error {
	dir, name := splitRel(a.raw)
	if a.Op == "create" {
		if err := ru.ensureDir(root, dir); err != nil {
			return err
		}
	}
	ldir, err := openDirAt(root, dir)
	if err != nil {
		return err
	}
	defer unix.Close(ldir)
	switch a.Op {
	case "create", "replace":
		sdir, err := openDirAt(stg, joinRel("stage", dir))
		if err != nil {
			return fmt.Errorf("staged entry missing: %w", err)
		}
		defer unix.Close(sdir)
		sst, err := lstatAt(sdir, name)
		if err != nil {
			return fmt.Errorf("staged entry missing: %w", err)
		}
		staged := []byte(joinRel("stage", a.raw))
		lst, lerr := lstatAt(ldir, name)
		if lerr == nil {
			if err := ru.j.add(record{T: recExchange, Path: []byte(a.raw), Staged: staged, Dev: sst.Dev, NewIno: sst.Ino, OldIno: lst.Ino}); err != nil {
				return err
			}
			err := renameAt(sdir, name, ldir, name, unix.RENAME_EXCHANGE)
			if err == nil {
				return nil
			}
			if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) {
				return err
			}
			// No RENAME_EXCHANGE here: move the old entry out, then the new in.
			if err := ru.moveOut(ldir, stg, i, a.raw, name, lst.Ino); err != nil {
				return err
			}
		} else if lerr != unix.ENOENT {
			return lerr
		}
		if err := ru.j.add(record{T: recCreate, Path: []byte(a.raw), Staged: staged, Dev: sst.Dev, NewIno: sst.Ino}); err != nil {
			return err
		}
		return renameAt(sdir, name, ldir, name, unix.RENAME_NOREPLACE)
	case "remove":
		lst, err := lstatAt(ldir, name)
		if err == unix.ENOENT {
			return nil // gone already
		}
		if err != nil {
			return err
		}
		return ru.moveOut(ldir, stg, i, a.raw, name, lst.Ino)
	case "update":
		lst, err := lstatAt(ldir, name)
		if err != nil {
			return err
		}
		sn, err := ru.r.FindNode(context.Background(), ru.m, a.raw)
		if err != nil {
			return err
		}
		if err := ru.j.add(record{T: recMeta, Path: []byte(a.raw), Dev: lst.Dev, OldIno: lst.Ino, Mode: lst.Mode & 0o7777, UID: lst.Uid, GID: lst.Gid,
			MTime: lst.Mtim.Nano(), ATime: lst.Atim.Nano()}); err != nil {
			return err
		}
		if planned := ru.plan.live[a.raw].st; planned.Ino != lst.Ino || planned.Mode&unix.S_IFMT != lst.Mode&unix.S_IFMT {
			return fmt.Errorf("changed since it was planned (another entry is there now)")
		}
		// A setuid/setgid bit both live and in the snapshot stays, also
		// without --special: only bits the snapshot lacks are dropped.
		mode := ru.o.modeOf(sn) | (lst.Mode & sn.Mode & 0o6000)
		return setMeta(ldir, name, lst.Ino, mode, sn.UID, sn.GID, sn.MTime, sn.MTime)
	}
	return fmt.Errorf("unknown action %q", a.Op)
}

// moveOut renames live entry name (in ldir) into the staging area.
func (ru *runner) moveOut(ldir, stg, i int, rel, name string, ino uint64) error {
	old := "old/" + strconv.Itoa(i)
	if err := ru.j.add(record{T: recMove, Path: []byte(rel), Staged: []byte(old), OldIno: ino}); err != nil {
		return err
	}
	return renameAt(ldir, name, stg, old, unix.RENAME_NOREPLACE)
}

// ensureDir creates the missing directories of rel in the live tree, each
// journaled first, with the snapshot's metadata.
func (ru *runner) ensureDir(root int, rel string) error {
	if rel == "" {
		return nil
	}
	fd, err := unix.Openat(root, ".", dirFlags, 0)
	if err != nil {
		return err
	}
	cur := ""
	for _, name := range splitAll(rel) {
		cur = joinRel(cur, name)
		next, err := unix.Openat(fd, name, dirFlags, 0)
		if err == unix.ENOENT {
			if err := ru.j.add(record{T: recMkdir, Path: []byte(cur)}); err != nil {
				unix.Close(fd)
				return err
			}
			if err := asOwner(func() error { return unix.Mkdirat(fd, name, 0o700) }, fd); err != nil && err != unix.EEXIST {
				unix.Close(fd)
				return err
			}
			if sn, err := ru.r.FindNode(context.Background(), ru.m, cur); err == nil && sn != nil && sn.Type == snapshot.TypeDir {
				// Writable by its owner until every step is done; the
				// snapshot's mode and mtime are set after the last one.
				if st, err := lstatAt(fd, name); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
					setMeta(fd, name, st.Ino, ru.o.modeOf(sn)|0o700, sn.UID, sn.GID, sn.MTime, sn.MTime)
					ru.madeDirs = append(ru.madeDirs, madeDir{cur, sn, st.Ino})
				}
			}
			next, err = unix.Openat(fd, name, dirFlags, 0)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("directory %s: %w", snapshot.DisplayName(cur), err)
		}
		fd = next
	}
	unix.Close(fd)
	return nil
}

// madeDir is a directory the swap created as a missing parent.
type madeDir struct {
	rel string
	n   *snapshot.Node
	ino uint64
}

func splitAll(rel string) []string {
	var out []string
	for rel != "" {
		d, n := splitRel(rel)
		out = append([]string{n}, out...)
		rel = d
	}
	return out
}

// dirsTouched returns the directories of the live tree the swap renames in
// (the parents of its actions, but the target itself) and those it updates,
// each once, in plan order.
func (ru *runner) dirsTouched() []string {
	var out []string
	done := map[string]bool{}
	add := func(rel string) {
		if rel != "." && !done[rel] {
			done[rel] = true
			out = append(out, rel)
		}
	}
	for _, a := range ru.plan.Actions {
		add(path.Dir(a.raw))
		if a.Op == "update" {
			add(a.raw)
		}
	}
	return out
}

// journalDirTimes records, before the first swap step, the times of the
// live directories the swap will rename in: undoing the steps puts their
// entries back but leaves the times of the renames, and a rollback, in
// process or by the next command after a kill, sets them back from here
// (recDirTime, after every step is undone).
func (ru *runner) journalDirTimes(root int) error {
	var recs []record
	for _, rel := range ru.dirsTouched() {
		dir, name := splitRel(rel)
		pfd, err := openDirAt(root, dir)
		if err != nil {
			continue // made by the swap, or the step meets it and says so
		}
		st, err := lstatAt(pfd, name)
		unix.Close(pfd)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		recs = append(recs, record{T: recDirTime, Path: []byte(rel), Dev: st.Dev, OldIno: st.Ino, MTime: st.Mtim.Nano(), ATime: st.Atim.Nano()})
	}
	return ru.j.addAll(recs)
}

// setDirTimes sets the mtime of each directory the swap changed inside
// (one it kept in place) to the snapshot's: the renames moved it, and the
// tree is to end as the snapshot has it (a restore into a new directory
// sets every directory's). A directory that cannot be set keeps the time of
// the swap; its content is what counts, and nothing else is touched.
func (ru *runner) setDirTimes(root int) {
	for _, rel := range ru.dirsTouched() {
		k, ok := ru.plan.dirs[rel]
		if !ok {
			continue // not in the scope, or made or replaced by the swap
		}
		t := unix.NsecToTimespec(k.n.MTime)
		setDirTimesAt(root, rel, k.ino, t, t)
	}
}

// setDirTimesAt sets the access and modification times of directory rel
// below root, when it is still inode ino (one put there since keeps its
// times). It is best effort: a directory's entries are what counts.
func setDirTimesAt(root int, rel string, ino uint64, atime, mtime unix.Timespec) {
	dir, name := splitRel(rel)
	pfd, err := openDirAt(root, dir)
	if err != nil {
		return
	}
	defer unix.Close(pfd)
	if st, err := lstatAt(pfd, name); err == nil && st.Ino == ino && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		unix.UtimesNanoAt(pfd, name, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	}
}

// setMeta sets owner (as root), mode (not on symlinks) and times of the
// entry rel below dir — only when it is still inode ino (0: any). The entry
// is opened with O_PATH|O_NOFOLLOW and changed through that descriptor
// (/proc/self/fd), so a symlink swapped in at its name is never followed
// and nothing outside the target is touched.
func setMeta(dir int, rel string, ino uint64, mode, uid, gid uint32, mtime, atime int64) error {
	d, name := splitRel(rel)
	pfd := dir
	if d != "" {
		var err error
		if pfd, err = openDirAt(dir, d); err != nil {
			return err
		}
		defer unix.Close(pfd)
	}
	fd, err := unix.Openat(pfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if ino != 0 && st.Ino != ino {
		return fmt.Errorf("%s changed since it was planned (another entry is there now); not touched", snapshot.DisplayName(rel))
	}
	symlink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	self := fmt.Sprintf("/proc/self/fd/%d", fd)
	var firstErr error
	if os.Geteuid() == 0 {
		if err := unix.Fchownat(fd, "", int(uid), int(gid), unix.AT_EMPTY_PATH); err != nil {
			firstErr = err
		}
	}
	if !symlink {
		if err := unix.Chmod(self, mode); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	if symlink {
		err = unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW) // the symlink itself; its inode was checked
	} else {
		err = unix.UtimesNanoAt(unix.AT_FDCWD, self, ts, 0)
	}
	if err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// rollback undoes a restore that failed after it began to swap: the
// application is stopped (if the start hook ran), every journaled step is
// undone, and the application is started again.
func (ru *runner) rollback(ctx context.Context, stage string, cause error) error {
	ru.res.RolledBack = true
	ru.res.Failure = fmt.Sprintf("%s: %v", stage, cause)
	ctx = context.WithoutCancel(ctx) // a cancelled restore still rolls back
	fmt.Fprintf(ru.o.Log, "restore: %s failed: %v; rolling back\n", stage, cause)
	err := ru.stage("rollback", func() (string, error) {
		if err := ru.j.add(record{T: recRollback, Reason: ru.res.Failure}); err != nil {
			// The undo is renames and needs no journal space; it goes on.
			fmt.Fprintf(ru.o.Log, "restore: rollback: %v (rolling back anyway)\n", err)
		}
		recs, valid, err := readJournal(ru.work)
		if err != nil {
			return "", err
		}
		ru.j.close()
		f := &fixer{r: ru.r, o: ru.o, staging: ru.work, recs: recs, valid: valid}
		n, err := f.finish(ctx)
		ru.res.Hooks = append(ru.res.Hooks, f.hooks...)
		return fmt.Sprintf("%d steps undone", n), err
	})
	if err != nil {
		ru.res.RolledBack = false
		return &CriticalError{RestoreID: ru.id, Journal: filepath.Join(ru.staging, journalName), Safety: ru.res.Safety, Cause: err}
	}
	ru.cleanup()
	return &RolledBackError{Stage: stage, Cause: cause, Safety: ru.res.Safety}
}
