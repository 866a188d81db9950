package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
	"snapforge/snapshot/sqlitecap"
)

// verifyStaged reads back every staged file and compares its BLAKE3 with
// the snapshot's, checks every staged entry's type and link target, and runs
// PRAGMA integrity_check on staged databases (FAULTS E12). Nothing is
// swapped unless all of it holds.
func (ru *runner) verifyStaged(ctx context.Context) (string, error) {
	if err := ru.o.Fault("verify"); err != nil {
		return "", err
	}
	stg, err := openRoot(filepath.Join(ru.work, "stage"))
	if err != nil {
		if len(ru.plan.staged()) == 0 {
			return "nothing staged", nil
		}
		return "", err
	}
	defer unix.Close(stg)
	var files []fileCheck
	for _, a := range ru.plan.Actions {
		if a.Op != "create" && a.Op != "replace" {
			continue
		}
		sn := ru.plan.nodes[a.raw]
		if sn == nil {
			return "", fmt.Errorf("verify: no snapshot entry for %s", a.Path)
		}
		files = append(files, fileCheck{a.raw, sn})
		if sn.Type == snapshot.TypeDir {
			if err := ru.r.Walk(ctx, sn.Subtree, a.raw, func(rel string, n *snapshot.Node) error {
				files = append(files, fileCheck{rel, n})
				return nil
			}); err != nil {
				return "", err
			}
		}
	}
	bad, n, bytes := ru.checkStaged(ctx, stg, files)
	if len(bad) > 0 {
		return "", &IntegrityError{Msg: fmt.Sprintf("restore: %d staged entr(ies) do not match snapshot %s (first: %s); nothing was changed in the live system", len(bad), ru.m.BackupID, bad[0])}
	}
	dbs := 0
	for _, d := range ru.plan.sqlite {
		if !ru.plan.stagedHas(d) {
			continue
		}
		if err := checkDB(ctx, filepath.Join(ru.work, "stage", d)); err != nil {
			return "", &IntegrityError{Msg: fmt.Sprintf("restore: the snapshot's copy of database %s fails its integrity check: %v; nothing was changed in the live system", snapshot.DisplayName(d), err)}
		}
		dbs++
	}
	return fmt.Sprintf("%d entries, %d files (%s) match BLAKE3; %d database(s) pass integrity_check", len(files), n, humanBytes(bytes), dbs), nil
}

// stagedHas reports whether rel is inside a created or replaced entry.
func (pl *Plan) stagedHas(rel string) bool {
	for _, a := range pl.Actions {
		if (a.Op == "create" || a.Op == "replace") && (rel == a.raw || strings.HasPrefix(rel, a.raw+"/")) {
			return true
		}
	}
	return false
}

type fileCheck struct {
	rel string
	n   *snapshot.Node
}

// checkStaged compares staged entries under root with their snapshot
// nodes, the files' content by BLAKE3 in parallel, and remembers the files
// it read by inode (planner.verified). It returns the problems found, the
// files and bytes hashed.
func (ru *runner) checkStaged(ctx context.Context, root int, es []fileCheck) ([]string, int64, int64) {
	var mu sync.Mutex
	var bad []string
	var files, bytes int64
	report := func(rel, problem string) {
		mu.Lock()
		bad = append(bad, snapshot.DisplayName(rel)+": "+problem)
		mu.Unlock()
	}
	jobs := make(chan fileCheck)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range jobs {
				dir, name := splitRel(e.rel)
				fd, err := openDirAt(root, dir)
				if err != nil {
					report(e.rel, err.Error())
					continue
				}
				sum, st, err := hashAt(fd, name)
				unix.Close(fd)
				switch {
				case err != nil:
					report(e.rel, err.Error())
				case st.Size != e.n.Size || sum != e.n.Hash:
					report(e.rel, "content differs from the snapshot (BLAKE3 "+sum.String()+", want "+e.n.Hash.String()+")")
				default:
					mu.Lock()
					files++
					bytes += st.Size
					ru.p.verified[st.Ino] = hashed{size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), ino: st.Ino, dev: st.Dev, sum: sum}
					mu.Unlock()
					ru.o.Live.BytesDone.Add(st.Size)
					ru.o.Live.FilesDone.Add(1)
				}
			}
		}()
	}
	var total, totalBytes int64
	for _, e := range es {
		if e.n.Type == snapshot.TypeFile || e.n.Type == snapshot.TypeHardlink {
			total++
			totalBytes += e.n.Size
		}
	}
	ru.o.Live.FilesTotal.Store(total)
	ru.o.Live.BytesTotal.Store(totalBytes)
	ru.o.Live.FilesDone.Store(0)
	ru.o.Live.BytesDone.Store(0)
	for _, e := range es {
		if ctx.Err() != nil {
			break
		}
		switch e.n.Type {
		case snapshot.TypeFile, snapshot.TypeHardlink:
			jobs <- e
			continue
		}
		dir, name := splitRel(e.rel)
		fd, err := openDirAt(root, dir)
		if err != nil {
			report(e.rel, err.Error())
			continue
		}
		st, err := lstatAt(fd, name)
		switch {
		case errors.Is(err, unix.ENOENT) && e.n.Type == snapshot.TypeDevice && !(ru.o.Special && os.Geteuid() == 0):
			// not restored by rule (FAULTS E15); the warning says so
		case err != nil:
			report(e.rel, err.Error())
		case typeOf(st.Mode) != e.n.Type.String():
			report(e.rel, "is a "+typeOf(st.Mode)+", the snapshot has a "+e.n.Type.String())
		case e.n.Type == snapshot.TypeSymlink:
			if t, err := readlinkAt(fd, name); err != nil || t != e.n.Target {
				report(e.rel, "symlink target differs from the snapshot")
			}
		}
		unix.Close(fd)
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		bad = append(bad, ctx.Err().Error())
	}
	return bad, files, bytes
}

// checkDB runs integrity_check on a database without leaving companions
// it created behind (a staged WAL database would otherwise carry an empty
// -wal and -shm into the live tree).
func checkDB(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("is a %s, not the database file", fi.Mode().Type())
	}
	had := map[string]bool{}
	for _, s := range []string{"-wal", "-shm"} {
		if _, err := os.Lstat(path + s); err == nil {
			had[s] = true
		}
	}
	var dir unix.Stat_t
	dirErr := unix.Lstat(filepath.Dir(path), &dir)
	err = sqlitecap.Check(ctx, path)
	var made []string
	for _, s := range []string{"-wal", "-shm"} {
		if !had[s] {
			if fi, e := os.Lstat(path + s); e == nil && fi.Mode().IsRegular() && (s == "-shm" || fi.Size() == 0) {
				made = append(made, path+s)
			}
		}
	}
	// Removed only while no process holds the database: an application
	// that opened it meanwhile keeps its WAL index.
	if len(made) > 0 && !heldOpen(append([]string{path}, made...)) {
		for _, m := range made {
			os.Remove(m)
		}
		// Making and removing them moved the directory's times: put them
		// back (the directory the check saw only).
		var now unix.Stat_t
		if d := filepath.Dir(path); dirErr == nil && unix.Lstat(d, &now) == nil && now.Ino == dir.Ino && now.Dev == dir.Dev {
			unix.UtimesNano(d, []unix.Timespec{dir.Atim, dir.Mtim})
		}
	}
	return err
}

// checkSwapped runs right after the swap, before the start hook: the
// scope must now equal the snapshot — a fresh plan of the live tree finds
// nothing to do (every type, link target and mode; every file's BLAKE3:
// files swapped in are known by inode from verify, which read them back,
// the rest are hashed), and no database has a stale companion.
func (ru *runner) checkSwapped(ctx context.Context) (string, error) {
	if err := ru.o.Fault("check"); err != nil {
		return "", err
	}
	p := &planner{r: ru.r, m: ru.m, o: ru.o, scope: ru.o.Scope, hashes: ru.p.hashes, verified: ru.p.verified}
	after, err := p.build(ctx)
	if err != nil {
		return "", fmt.Errorf("check the restored scope: %w", err)
	}
	var diffs []string
	for _, a := range after.Actions {
		diffs = append(diffs, a.Op+" "+a.Path+" ("+a.Reason+")")
	}
	if len(diffs) > 0 {
		return "", fmt.Errorf("the live scope differs from snapshot %s after the swap: %s", ru.m.BackupID, strings.Join(first(diffs, 5), "; "))
	}
	ru.after = after
	return fmt.Sprintf("the scope equals the snapshot (%d entries compared)", after.Summary.Unchanged), nil
}

// smoke is the smoke test after the start hook: databases of the scope
// pass integrity_check, JSON files parse, and the profile's smoke command
// exits 0 within its timeout.
func (ru *runner) smoke(ctx context.Context) (string, error) {
	if err := ru.o.Fault("smoke"); err != nil {
		return "", err
	}
	ru.o.Hook("restore-smoke")
	after := ru.after
	root, err := openRoot(ru.o.Target)
	if err != nil {
		return "", err
	}
	defer unix.Close(root)
	for _, d := range after.sqlite {
		if err := checkDB(ctx, filepath.Join(ru.o.Target, d)); err != nil {
			return "", fmt.Errorf("database %s: %w", snapshot.DisplayName(d), err)
		}
	}
	for _, jf := range after.jsons {
		if err := checkJSON(root, jf); err != nil {
			return "", fmt.Errorf("%s: %w", snapshot.DisplayName(jf), err)
		}
	}
	detail := fmt.Sprintf("%d database(s) pass integrity_check; %d JSON file(s) parse", len(after.sqlite), len(after.jsons))
	if h := ru.o.Hooks; h != nil && h.Smoke != "" {
		if err := ru.hook(ctx, "smoke", h.Smoke); err != nil {
			return detail, err
		}
		detail += "; smoke command passed"
	}
	return detail, nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// checkJSON parses a live JSON file, opened without following symlinks.
func checkJSON(root int, rel string) error {
	dir, name := splitRel(rel)
	fd, err := openDirAt(root, dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ffd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(ffd), name)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return err
	}
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		return fmt.Errorf("does not parse as JSON: %v", err)
	}
	return nil
}
