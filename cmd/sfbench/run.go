package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// runOptions configure runBench; main fills them from the flags.
type runOptions struct {
	Work           string  // everything the run writes goes here
	Dir            string  // pristine dataset; generated when absent ("" = under Work)
	Quick          bool    // preset: --scale 0.05
	Scale          float64 // of a generated dataset
	FilesScale     float64 // of a generated dataset
	Seed           uint64  // of the generator and the mutation
	Runs           int
	Tools          []string // nil: defaultTools (+ kopia)
	JSON           string   // report file, "" for none
	Snapforge      string   // binary; "" builds ./cmd/snapforge
	BorgEncryption string
	Keep           bool   // keep the last run's repositories and restores
	ReadBPS        string // --read-bps: limit reads from the work disk, "" for none
}

// Phases, in table order. Raw baselines are recorded in the column "raw".
const (
	phInitial  = "initial backup"
	phNoChange = "no-change backup"
	phMutated  = "mutated backup (~1 %)"
	phRestore  = "full restore"
	phFile     = "restore one small file"
	phVerify   = "verify all data"
	phRepo     = "repository size"
	phAdded    = "added by mutated backup"
	phRSS      = "peak RSS, initial backup"
	phCPU      = "CPU time, initial backup"
	phRead     = "cold read of the dataset"
	phCopySync = "copy made durable"

	rawCol      = "raw"
	rawCp       = "cp -a cold"
	rawCpSync   = "cp -a cold, then sync"
	rawLs       = "ls -lR cold"
	rawRead     = "cold read"
	rawRepoRead = "cold read of sf repo"
	rawData     = "of data"
	rawNew      = "of new data"
)

// rows maps each phase to its unit and raw baseline.
var rows = []struct{ phase, unit, raw string }{
	{phInitial, "s", rawCp},
	{phNoChange, "s", rawLs},
	{phMutated, "s", ""},
	{phRestore, "s", rawCp},
	{phFile, "s", ""},
	{phVerify, "s", rawRepoRead},
	{phRepo, "MB", rawData},
	{phAdded, "MB", rawNew},
	{phRSS, "MB", ""},
	{phCPU, "s", ""},
	{phRead, "s", rawRead},
	{phCopySync, "s", rawCpSync},
}

// bench is one invocation of `sfbench run`.
type bench struct {
	o       runOptions
	out     io.Writer // progress
	src     string    // pristine dataset
	small   string    // the file of the single-file restore, relative to src
	samples map[string]map[string][]float64
	checks  map[string][]string // restore check outcome per tool, per run
	notes   []string
	errs    []string
	noDrop  error      // why the page cache cannot be dropped
	limit   *readLimit // --read-bps, nil without
}

func runBench(ctx context.Context, o runOptions, stdout, stderr io.Writer) error {
	if o.Runs < 1 {
		return &usageError{"--runs must be at least 1"}
	}
	work, err := workDir(o.Work, "logs")
	if err != nil {
		return err
	}
	o.Work = work
	named := o.Dir == "" // the name records the parameters
	if named {
		o.Dir = filepath.Join(work, fmt.Sprintf("dataset-s%g-f%g-seed%d", o.Scale, o.FilesScale, o.Seed))
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return err
	}
	limit, stopLimit, err := startReadLimit(o.ReadBPS, stderr, work, o.Dir)
	if err != nil {
		return err
	}
	defer stopLimit()
	ds := Dataset{Dir: o.Dir, Scale: o.Scale, FilesScale: o.FilesScale, Seed: o.Seed}
	if _, err := os.Stat(o.Dir); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "generating dataset %s (scale %g, files-scale %g, seed %d)\n", o.Dir, o.Scale, o.FilesScale, o.Seed)
		tmp := o.Dir + ".partial" // an interrupted generation is never mistaken for a dataset
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		if _, err := Generate(ctx, GenOptions{Dir: tmp, Scale: o.Scale, FilesScale: o.FilesScale, Seed: o.Seed}); err != nil {
			return err
		}
		if err := os.Rename(tmp, o.Dir); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stderr, "using the existing dataset %s\n", o.Dir)
		if !named {
			ds.Scale, ds.FilesScale = 0, 0 // as it was generated: unknown
		}
	}
	tree, err := HashTree(o.Dir)
	if err != nil {
		return err
	}
	ds.Files, ds.Bytes, ds.Tree = tree.Files, tree.Bytes, tree.Root
	if o.Snapforge == "" {
		if o.Snapforge, err = buildSnapforge(ctx, work); err != nil {
			return err
		}
	}
	specs, err := resolveTools(ctx, o.Tools, o.Snapforge, o.BorgEncryption)
	if err != nil {
		return err
	}
	small, err := pickSmallFile(o.Dir)
	if err != nil {
		return err
	}
	b := &bench{o: o, out: stderr, src: o.Dir, small: small, limit: limit,
		samples: map[string]map[string][]float64{}, checks: map[string][]string{}}
	for run := 1; run <= o.Runs; run++ {
		if err := b.baselines(ctx, run, ds.Bytes); err != nil {
			return err
		}
		for k := range specs { // rotate the order so no tool always goes first
			spec := specs[(k+run-1)%len(specs)]
			if err := b.runTool(ctx, run, spec); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "run %d  %s: %v\n", run, spec.name, err)
				b.errs = append(b.errs, fmt.Sprintf("run %d: %s: %v", run, spec.name, err))
			}
		}
	}
	if !o.Keep {
		os.RemoveAll(filepath.Join(work, "live"))
	}
	rep := b.report(ds, specs)
	return emitReport(func() error { return rep.Render(stdout) }, rep, o.JSON, len(rep.Errors), work)
}

// buildSnapforge builds ./cmd/snapforge of the module in the working
// directory into work/bin.
func buildSnapforge(ctx context.Context, work string) (string, error) {
	bin := filepath.Join(work, "bin", "snapforge")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "snapforge/cmd/snapforge").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build snapforge (run sfbench inside the repository, or pass --snapforge BIN): %w\n%s", err, out)
	}
	return bin, nil
}

// pickSmallFile chooses the single-file restore's file: the middle one, in
// path order, of the source files between 1 and 16 kB. Mutate leaves it alone.
func pickSmallFile(root string) (string, error) {
	var cands []string
	err := filepath.WalkDir(filepath.Join(root, "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Size() >= 1000 && fi.Size() <= 16000 {
			rel, _ := filepath.Rel(root, p)
			cands = append(cands, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("no file of 1–16 kB under %s/src: is it a dataset made by sfbench gen?", root)
	}
	return cands[len(cands)/2], nil
}

func (b *bench) record(phase, col string, v float64) {
	if b.samples[phase] == nil {
		b.samples[phase] = map[string][]float64{}
	}
	b.samples[phase][col] = append(b.samples[phase][col], v)
}

func (b *bench) progress(run int, who, phase string, v float64, unit string) {
	fmt.Fprintf(b.out, "run %d  %-17s %-26s %9.2f %s\n", run, who, phase, v, unit)
}

// dropCaches writes back dirty pages and empties the page cache, dentries
// and inodes. Without root it warns once and the run goes on warm.
func (b *bench) dropCaches() {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil && b.noDrop == nil {
		b.noDrop = err
		fmt.Fprintf(b.out, "warning: cannot drop the page cache (%v); phases run with whatever is cached\n", err)
	}
}

// baselines times ls -lR and a read of every file of the pristine dataset,
// both cold.
func (b *bench) baselines(ctx context.Context, run int, dataBytes int64) error {
	b.record(phRepo, rawCol, float64(dataBytes)/1e6)
	b.dropCaches()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	ls := exec.CommandContext(ctx, "ls", "-lR", b.src)
	ls.Stdout = devnull
	m, err := measure(ls)
	if err != nil {
		return fmt.Errorf("ls -lR %s: %w", b.src, err)
	}
	b.record(phNoChange, rawCol, m.wall.Seconds())
	b.progress(run, "raw", rawLs, m.wall.Seconds(), "s")
	b.dropCaches()
	start := time.Now()
	if _, err := readAll(b.src); err != nil {
		return fmt.Errorf("cold read: %w", err)
	}
	d := time.Since(start).Seconds()
	b.record(phRead, rawCol, d)
	b.progress(run, "raw", rawRead, d, "s")
	return nil
}

// measurement is what wait4 tells about a finished child.
type measurement struct {
	wall   time.Duration
	cpu    time.Duration // user + system
	maxRSS int64         // bytes
}

func measure(cmd *exec.Cmd) (measurement, error) {
	start := time.Now()
	err := cmd.Run()
	m := measurement{wall: time.Since(start)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
			m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return m, err
}

// timed builds a tool's command, drops the page cache, runs the command and
// records its wall time under phase.
func (b *bench) timed(run int, name, phase string, t tool, build func() (*exec.Cmd, error)) (measurement, error) {
	cmd, err := build()
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w", phase, err)
	}
	b.dropCaches()
	m, err := measure(cmd)
	var ee *exec.ExitError
	if errors.As(err, &ee) && t.WarningExit(ee.ExitCode()) {
		b.notes = append(b.notes, fmt.Sprintf("run %d: %s: %s: exit %d, done with warnings (see its log)", run, name, phase, ee.ExitCode()))
		err = nil
	}
	if err != nil {
		return m, fmt.Errorf("%s: %s: %w", phase, strings.Join(cmd.Args, " "), err)
	}
	b.record(phase, name, m.wall.Seconds())
	b.progress(run, name, phase, m.wall.Seconds(), "s")
	return m, nil
}

// runTool takes one tool through every phase, from a fresh copy of the
// dataset and a fresh repository.
func (b *bench) runTool(ctx context.Context, run int, spec toolSpec) (err error) {
	w := b.o.Work
	live := filepath.Join(w, "live")
	repo := filepath.Join(w, "repos", spec.name)
	home := filepath.Join(w, "home", spec.name)
	restore := filepath.Join(w, "restore", spec.name)
	for _, d := range []string{live, repo, home, restore} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	for _, d := range []string{filepath.Dir(repo), home, filepath.Join(restore, "full"), filepath.Join(restore, "file")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if !b.o.Keep || run < b.o.Runs {
		defer func() {
			for _, d := range []string{repo, home, restore} {
				os.RemoveAll(d)
			}
		}()
	}
	logPath := filepath.Join(w, "logs", fmt.Sprintf("run%d-%s.log", run, spec.name))
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (output in %s)", err, logPath)
		}
	}()

	b.dropCaches()
	cp := exec.CommandContext(ctx, "cp", "-a", b.src, live)
	cp.Stdout, cp.Stderr = logf, logf
	m, err := measure(cp)
	if err != nil {
		return fmt.Errorf("cp -a: %w", err)
	}
	b.record(phInitial, rawCol, m.wall.Seconds())
	b.record(phRestore, rawCol, m.wall.Seconds())
	b.progress(run, spec.name, "(dataset copy) "+rawCp, m.wall.Seconds(), "s")
	// snapforge's backup and restore end durable (fsync, syncfs); cp -a
	// leaves the copy in the page cache. The time to write it back is the
	// baseline for a durable copy.
	ms, err := measure(exec.CommandContext(ctx, "sync"))
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	b.record(phCopySync, rawCol, m.wall.Seconds()+ms.wall.Seconds())

	t := spec.bind(toolPaths{repo: repo, src: live, home: home, log: logf})
	if err := t.Init(ctx); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	backup := func(phase string, n int) (measurement, int64, error) {
		m, err := b.timed(run, spec.name, phase, t, func() (*exec.Cmd, error) { return t.Backup(ctx, n) })
		if err != nil {
			return m, 0, err
		}
		size, err := apparentSize(repo)
		return m, size, err
	}
	m, size1, err := backup(phInitial, 1)
	if err != nil {
		return err
	}
	b.noteSidecars(spec, live)
	b.record(phRSS, spec.name, float64(m.maxRSS)/1e6)
	b.record(phCPU, spec.name, m.cpu.Seconds())
	b.record(phRepo, spec.name, float64(size1)/1e6)
	b.progress(run, spec.name, phRSS, float64(m.maxRSS)/1e6, "MB")
	b.progress(run, spec.name, phRepo, float64(size1)/1e6, "MB")
	_, size2, err := backup(phNoChange, 2)
	if err != nil {
		return err
	}
	st, err := Mutate(ctx, live, b.o.Seed)
	if err != nil {
		return err
	}
	b.record(phAdded, rawCol, float64(st.NewBytes())/1e6)
	if run == 1 && len(b.samples[phAdded][rawCol]) == 1 {
		b.notes = append(b.notes, "mutation: "+st.String())
	}
	_, size3, err := backup(phMutated, 3)
	if err != nil {
		return err
	}
	b.record(phAdded, spec.name, float64(size3-size2)/1e6)
	b.progress(run, spec.name, phAdded, float64(size3-size2)/1e6, "MB")

	var root string
	if _, err := b.timed(run, spec.name, phRestore, t, func() (c *exec.Cmd, err error) {
		c, root, err = t.Restore(ctx, filepath.Join(restore, "full"))
		return c, err
	}); err != nil {
		return err
	}
	check, err := b.checkRestore(ctx, spec, live, root)
	if err != nil {
		return err
	}
	b.checks[spec.name] = append(b.checks[spec.name], check)

	var file string
	if _, err := b.timed(run, spec.name, phFile, t, func() (c *exec.Cmd, err error) {
		c, file, err = t.RestoreFile(ctx, b.small, filepath.Join(restore, "file"))
		return c, err
	}); err != nil {
		return err
	}
	if err := sameFile(filepath.Join(live, b.small), file); err != nil {
		b.errs = append(b.errs, fmt.Sprintf("run %d: %s: single-file restore: %v", run, spec.name, err))
	}

	if spec.name == "snapforge" {
		b.dropCaches()
		start := time.Now()
		if _, err := readAll(repo); err != nil {
			return err
		}
		b.record(phVerify, rawCol, time.Since(start).Seconds())
		b.progress(run, "raw", rawRepoRead, time.Since(start).Seconds(), "s")
	}
	_, err = b.timed(run, spec.name, phVerify, t, func() (*exec.Cmd, error) { return t.Verify(ctx) })
	return err
}

// checkRestore compares a restored tree with the source it came from.
// Database files the tool captured through SQLite are compared by rows.
func (b *bench) checkRestore(ctx context.Context, spec toolSpec, live, root string) (string, error) {
	want, err := HashTree(live)
	if err != nil {
		return "", err
	}
	return b.checkTree(ctx, spec, want, live, root)
}

// checkTree is checkRestore with the source's tree, want, already hashed.
// A difference is recorded as an error under spec's name and reported as
// "DIFFERS".
func (b *bench) checkTree(ctx context.Context, spec toolSpec, want *Tree, live, root string) (string, error) {
	got, err := HashTree(root)
	if err != nil {
		return "", fmt.Errorf("restored tree: %w", err)
	}
	var bad, logical, sidecars []string
	for _, p := range want.Diff(got) {
		if base, ok := sidecarOf(p); ok && slices.Contains(spec.sqlite, base) {
			if _, restored := got.Entries[p]; !restored {
				sidecars = append(sidecars, p) // never copied raw, by design
				continue
			}
		}
		why := want.Describe(got, p)
		if slices.Contains(spec.sqlite, p) {
			if _, ok := got.Entries[p]; ok {
				dw, err1 := dbDigest(ctx, filepath.Join(live, p))
				dg, err2 := dbDigest(ctx, filepath.Join(root, p))
				if err1 == nil && err2 == nil && dw == dg {
					logical = append(logical, p)
					continue
				}
				switch {
				case err2 != nil:
					why += "; the restored database: " + err2.Error()
				case err1 != nil:
					why += "; the source database: " + err1.Error()
				default:
					why += "; other rows or schema"
				}
			}
		}
		bad = append(bad, p+": "+why)
	}
	switch {
	case len(bad) > 0:
		const show = 5
		msg := fmt.Sprintf("full restore differs from the source in %d path(s): %s", len(bad), strings.Join(bad[:min(show, len(bad))], "; "))
		b.errs = append(b.errs, spec.name+": "+msg)
		return "DIFFERS", nil
	}
	msg := "byte-identical"
	if len(logical) > 0 {
		msg = "identical except " + strings.Join(logical, ", ") + " (same rows, other bytes: an online-backup copy)"
	}
	// Owners, mtimes and hard links, which cp -a keeps too: a snapforge
	// restore that loses them is wrong; a peer's is noted.
	metaBad := want.MetaDiff(got, func(p string) bool {
		// A database captured through SQLite, and its directory, whose
		// mtime moved when SQLite made its sidecar files there.
		for _, db := range spec.sqlite {
			if p == db || p == path.Dir(db) {
				return true
			}
		}
		return false
	})
	switch {
	case len(metaBad) == 0:
		msg += "; owners, mtimes and hard links kept"
	case spec.snapforge:
		const show = 5
		m := fmt.Sprintf("full restore lost metadata in %d path(s): %s", len(metaBad), strings.Join(metaBad[:min(show, len(metaBad))], "; "))
		b.errs = append(b.errs, spec.name+": "+m)
		return "DIFFERS (metadata)", nil
	default:
		msg += fmt.Sprintf("; metadata differs in %d path(s), e.g. %s", len(metaBad), metaBad[0])
	}
	if len(sidecars) > 0 {
		msg += "; " + strings.Join(sidecars, ", ") + " of the source not restored (SQLite sidecars are never copied)"
	}
	return msg, nil
}

// sidecarOf returns the database a -wal, -shm or -journal file belongs to.
func sidecarOf(p string) (string, bool) {
	for _, suf := range []string{"-wal", "-shm", "-journal"} {
		if base, ok := strings.CutSuffix(p, suf); ok {
			return base, true
		}
	}
	return "", false
}

// noteSidecars records SQLite sidecar files that a backup left in the
// source: the pristine dataset has none, so the tool made them.
func (b *bench) noteSidecars(spec toolSpec, live string) {
	for _, db := range spec.sqlite {
		var found []string
		for _, suf := range []string{"-wal", "-shm", "-journal"} {
			if fi, err := os.Stat(filepath.Join(live, db+suf)); err == nil {
				found = append(found, fmt.Sprintf("%s%s (%d bytes)", db, suf, fi.Size()))
			}
		}
		note := fmt.Sprintf("%s: the initial backup left %s in the source directory", spec.name, strings.Join(found, ", "))
		if len(found) > 0 && !slices.Contains(b.notes, note) {
			b.notes = append(b.notes, note)
		}
	}
}

// sameFile reports whether two files have the same content.
func sameFile(want, got string) error {
	a, err := os.ReadFile(want)
	if err != nil {
		return err
	}
	c, err := os.ReadFile(got)
	if err != nil {
		return fmt.Errorf("restored file: %w", err)
	}
	if !bytes.Equal(a, c) {
		return fmt.Errorf("%s differs from %s", got, want)
	}
	return nil
}

// report turns the samples into medians, in table order.
func (b *bench) report(ds Dataset, specs []toolSpec) *Report {
	rep := &Report{Dataset: ds, Runs: b.o.Runs}
	for _, s := range specs {
		rep.Tools = append(rep.Tools, ToolInfo{Name: s.name, Version: s.version, Settings: s.settings, Snapforge: s.snapforge})
	}
	for _, spec := range rows {
		row := Row{Phase: spec.phase, Unit: spec.unit, Median: map[string]float64{}, Samples: map[string][]float64{}}
		for col, xs := range b.samples[spec.phase] {
			if col == rawCol {
				if spec.raw != "" {
					row.Raw = &Raw{Label: spec.raw, Median: median(xs), Samples: xs}
				}
				continue
			}
			row.Median[col], row.Samples[col] = median(xs), xs
		}
		rep.Rows = append(rep.Rows, row)
	}
	rep.ComputeRatios()
	rep.Notes = append(rep.Notes, fmt.Sprintf("machine: %d CPUs; every tool gets a fresh copy of the dataset (WORK/live) and a fresh repository under %s, the same disk; tool order rotates per run", runtime.NumCPU(), b.o.Work))
	if b.noDrop != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the page cache was NOT dropped (%v): timings are warm, run as root for cold ones", b.noDrop))
	} else {
		rep.Notes = append(rep.Notes, "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed phase and baseline")
	}
	if b.limit != nil {
		rep.ReadLimit = b.limit.bps
		rep.Notes = append(rep.Notes, b.limit.String())
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("single-file restore: %s; repository size: apparent bytes of the repository's files after the initial backup; added: growth during the mutated backup", b.small))
	for _, s := range specs {
		if c := b.checks[s.name]; len(c) > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("full restore check, %s: %s", s.name, strings.Join(compact(c), "; ")))
		}
	}
	rep.Notes = append(rep.Notes, b.notes...)
	rep.Errors = b.errs
	return rep
}

// compact collapses repeated outcomes: "ok ×4".
func compact(xs []string) []string {
	var out []string
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j] == xs[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", xs[i], j-i))
		} else {
			out = append(out, xs[i])
		}
		i = j
	}
	return out
}
