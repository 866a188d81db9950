package main

// The inplace subcommand: how long an in-place full restore takes against a
// plain restore of the same snapshot into an empty directory (issue 5, item
// 8: at most 1.5×).
//
//	sfbench inplace --work W [--dir DATASET] [--scale S] [--runs N] [--json FILE]
//	                [--snapforge BIN] [--seed N] [--no-drop] [--keep]
//
// It is a command of its own, not a phase of `run`: it measures snapforge
// alone (restic, borg and kopia have no in-place restore to compare with),
// needs its own live trees and a repository reset between phases, and can be
// run on the reference dataset without the peers' long backups.
//
// Setup, untimed, under W/inplace: a repository with one snapshot, a backup
// of the pristine dataset as PATH (the dataset is only read), and a copy of
// that repository; a copy of the dataset with `sfbench mutate`'s ~1 % change
// applied (the "mutated" tree). Every run then times, in rotating order and
// each after dropping the page cache:
//
//   - plain: `snapforge restore ID --target EMPTYDIR`;
//   - in-place, mutated live: `snapforge --json restore ID --in-place --target
//     LIVE --scope full`, LIVE a fresh `cp -a` of the mutated tree (the copy,
//     made cold and synced, is the raw baseline row);
//   - in-place, empty root: the same into a new empty directory, the worst
//     case: everything is staged.
//
// The repository has no profile, so --scope full is the whole root
// (restore.ResolveScope). After each restore the target's tree must equal the
// dataset's byte for byte (HashTree, as `run` checks its full restores); a
// failed in-place restore is reported with the stage it failed at, and its
// target must then equal the state before (the rollback's promise). The
// in-place restore takes a safety snapshot into the repository, so the
// repository is put back from its copy (untimed) before the next phase. The
// per-stage durations come from the in-place restore's --json result.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// inplaceOptions configure runInplace; inplaceCommand fills them from the
// flags.
type inplaceOptions struct {
	Work      string
	Dir       string // dataset; "" means W/datasets/dataset-s<scale>-f1-seed<seed>
	Scale     float64
	Seed      uint64
	Runs      int
	JSON      string // report file, "" for none
	Snapforge string // binary; "" builds ./cmd/snapforge into Work/bin
	NoDrop    bool   // keep the page cache (tests): timings are warm
	Keep      bool   // keep W/inplace (repository, trees) for inspection
	Command   string // the command line, for the report
}

// inplaceCommand parses the inplace subcommand's flags into fs, which main
// has already given --dir and --seed, and runs it.
func inplaceCommand(ctx context.Context, fs *flag.FlagSet, args []string, dir *string, seed *uint64, stdout, stderr io.Writer) error {
	o := inplaceOptions{Command: "sfbench inplace " + strings.Join(args, " ")}
	fs.StringVar(&o.Work, "work", "", "work directory: repository, live trees, restores, logs (all on one disk)")
	fs.Float64Var(&o.Scale, "scale", 1, "scale of the dataset generated when --dir is not given or does not exist (1.0 is about 1.7 GB)")
	fs.IntVar(&o.Runs, "runs", 4, "repetitions; the table shows medians")
	fs.StringVar(&o.JSON, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.Snapforge, "snapforge", "", "snapforge binary (default: build ./cmd/snapforge into WORK/bin)")
	fs.BoolVar(&o.NoDrop, "no-drop", false, "do not drop the page cache before each phase (warm timings; for tests)")
	fs.BoolVar(&o.Keep, "keep", false, "keep WORK/inplace (repository, mutated tree, last restores) for inspection")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if o.Work == "" {
		return &usageError{"inplace needs --work DIR"}
	}
	o.Dir, o.Seed = *dir, *seed
	return runInplace(ctx, o, stdout, stderr)
}

// Phases of the inplace report, in table order; the keys name them in the
// JSON.
const (
	ipPlain   = "plain_restore"
	ipMutated = "inplace_mutated"
	ipEmpty   = "inplace_empty"
	ipOwn     = "inplace_own" // over the live root the snapshot was taken of
	ipCopy    = "cp_a_sync"   // raw baseline: the mutated tree copied cold, then synced
)

// Measures of a phase.
const (
	imWall = "wall_s"
	imCPU  = "cpu_s"
	imRSS  = "rss_mb"
)

// tkMaxPlain judges a phase's median wall time against Value × the plain
// restore's.
const tkMaxPlain = "max_x_plain"

// outsideStages names the time of an in-place restore outside its stages:
// process start, opening the repository, recovery check, staging cleanup.
const outsideStages = "(outside the stages)"

var inplacePhases = []struct {
	key, label string
	target     *Target
}{
	{ipPlain, "plain restore: `restore ID --target EMPTYDIR`", nil},
	{ipMutated, "in-place full, live root = mutated dataset (~1 % changed)", &Target{Text: "≤ 1.5× plain", Kind: tkMaxPlain, Value: 1.5}},
	{ipEmpty, "in-place full, empty live root (everything staged)", &Target{Text: "≤ 1.5× plain", Kind: tkMaxPlain, Value: 1.5}},
	{ipOwn, "in-place full, over the root it was taken of, ~1 % changed since", &Target{Text: "≤ 1.5× plain", Kind: tkMaxPlain, Value: 1.5}},
	{ipCopy, "raw: `cp -a` of the mutated dataset, cold, then `sync`", nil},
}

// inplaceCases are the in-place phases, the columns of the stage table.
var inplaceCases = []struct{ key, head string }{
	{ipMutated, "mutated live"},
	{ipEmpty, "empty root"},
	{ipOwn, "own root"},
}

// InplaceReport is the outcome of `sfbench inplace`; the table and the JSON
// file are two renderings of it.
type InplaceReport struct {
	Dataset   Dataset                `json:"dataset"`
	Runs      int                    `json:"runs"`
	Date      string                 `json:"date"`
	CPUs      int                    `json:"cpus"`
	Command   string                 `json:"command"`
	Snapforge string                 `json:"snapforge"`
	BackupID  string                 `json:"backup_id"`
	Mutation  string                 `json:"mutation"`
	Phases    []InplacePhase         `json:"phases"`
	Stages    []InplaceStage         `json:"stages"` // in-place stages, in protocol order
	Plans     map[string]PlanSummary `json:"plans,omitempty"`
	Checks    map[string][]string    `json:"checks,omitempty"` // per phase, per run
	Notes     []string               `json:"notes,omitempty"`
	Errors    []string               `json:"errors,omitempty"`
}

// InplacePhase is one row: medians of wall time, CPU time and peak RSS.
type InplacePhase struct {
	Key     string               `json:"key"`
	Label   string               `json:"label"`
	Median  map[string]float64   `json:"median"` // by measure: wall_s, cpu_s, rss_mb
	Samples map[string][]float64 `json:"samples"`
	// XPlain is the median wall time over the plain restore's; 0 when
	// either is missing.
	XPlain float64 `json:"x_plain,omitempty"`
	Target *Target `json:"target,omitempty"`
}

// InplaceStage is one stage of the in-place protocol: its medians, in
// seconds, per in-place phase.
type InplaceStage struct {
	Name    string               `json:"name"`
	Median  map[string]float64   `json:"median"`
	Samples map[string][]float64 `json:"samples"`
}

// PlanSummary is what an in-place restore planned (the plan's summary) and
// its safety snapshot, in the last successful run.
type PlanSummary struct {
	Create    int64  `json:"create"`
	Replace   int64  `json:"replace"`
	Remove    int64  `json:"remove"`
	Update    int64  `json:"update"`
	Unchanged int64  `json:"unchanged"`
	Bytes     int64  `json:"bytes"` // staged
	Safety    string `json:"safety,omitempty"`
}

// inplaceResult is the part of `restore --in-place --json`'s result
// (restore.Result) the harness reads.
type inplaceResult struct {
	Stages []struct {
		Name       string `json:"name"`
		Outcome    string `json:"outcome"`
		DurationMS int64  `json:"duration_ms"`
		Detail     string `json:"detail"`
	} `json:"stages"`
	Plan *struct {
		Summary PlanSummary `json:"summary"`
	} `json:"plan"`
	RolledBack bool   `json:"rolled_back"`
	Failure    string `json:"failure"`
}

// parseInplaceResult reads the JSON document an in-place restore printed.
func parseInplaceResult(out []byte) (*inplaceResult, error) {
	var r inplaceResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
		return nil, fmt.Errorf("read the in-place restore's --json result: %w", err)
	}
	if len(r.Stages) == 0 {
		return nil, errors.New("the in-place restore's --json result lists no stages")
	}
	return &r, nil
}

// failedStage names the stage that failed, and its detail.
func (r *inplaceResult) failedStage() string {
	for _, st := range r.Stages {
		if st.Outcome == "failed" {
			return st.Name + ": " + st.Detail
		}
	}
	if r.Failure != "" {
		return r.Failure
	}
	return "no stage failed"
}

// inplaceBench is one invocation of `sfbench inplace`. Samples live in a
// bench: samples[measure][phase], and samples["stage "+name][phase].
type inplaceBench struct {
	o        inplaceOptions
	b        *bench
	ds       Dataset
	want     *Tree // the dataset: what every restore must give
	mutated  *Tree // the mutated tree: what a rolled-back restore must leave
	id       string
	mutation string
	dir      string // W/inplace
	repo     string
	pristine string // the repository as the setup left it
	dirty    bool   // repo differs from pristine (a safety snapshot was taken)
	stages   []string
	plans    map[string]PlanSummary
	checks   map[string][]string
	log      *os.File
}

func runInplace(ctx context.Context, o inplaceOptions, stdout, stderr io.Writer) error {
	if err := checkRunsScale(o.Runs, o.Scale); err != nil {
		return err
	}
	work, err := workDir(o.Work, "logs", "datasets")
	if err != nil {
		return err
	}
	o.Work = work
	ib := &inplaceBench{o: o, dir: filepath.Join(work, "inplace"), plans: map[string]PlanSummary{}, checks: map[string][]string{},
		b: &bench{o: runOptions{Work: work}, out: stderr, samples: map[string]map[string][]float64{}}}
	ib.repo, ib.pristine = filepath.Join(ib.dir, "repo"), filepath.Join(ib.dir, "repo.pristine")
	if ib.ds, ib.want, err = inplaceDataset(ctx, o, stderr, &ib.b.notes); err != nil {
		return err
	}
	if ib.o.Snapforge == "" {
		if ib.o.Snapforge, err = buildSnapforge(ctx, work); err != nil {
			return err
		}
	}
	if ib.o.Snapforge, err = exec.LookPath(ib.o.Snapforge); err != nil {
		return fmt.Errorf("snapforge binary: %w", err)
	}
	if ib.o.Snapforge, err = filepath.Abs(ib.o.Snapforge); err != nil {
		return err
	}
	if ib.log, err = os.Create(filepath.Join(work, "logs", "inplace.log")); err != nil {
		return err
	}
	defer ib.log.Close()
	if !o.Keep {
		defer os.RemoveAll(ib.dir)
	}
	if err := ib.setup(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("setup: %w (output in %s)", err, ib.log.Name())
	}
	for run := 1; run <= o.Runs; run++ {
		phases := []string{ipPlain, ipMutated, ipEmpty, ipOwn}
		for k := range phases { // rotate the order so no phase always goes first
			phase := phases[(k+run-1)%len(phases)]
			if err := ib.runPhase(ctx, run, phase); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "run %d  %s: %v\n", run, phase, err)
				ib.b.errs = append(ib.b.errs, fmt.Sprintf("run %d: %s: %v (output in %s)", run, phase, err, ib.log.Name()))
			}
		}
	}
	rep := ib.report()
	return emitReport(func() error { return rep.Render(stdout) }, rep, o.JSON, len(rep.Errors), work)
}

// inplaceDataset returns the dataset and its tree: --dir as it is when it
// exists (its DIR.json record, when there is one, gives its parameters; it
// is only read), otherwise generated into --dir or cached under W/datasets.
func inplaceDataset(ctx context.Context, o inplaceOptions, log io.Writer, notes *[]string) (Dataset, *Tree, error) {
	dir := o.Dir
	if dir == "" {
		dir = filepath.Join(o.Work, "datasets", fmt.Sprintf("dataset-s%g-f1-seed%d", o.Scale, o.Seed))
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Dataset{}, nil, err
	}
	ds := Dataset{Dir: dir, Seed: o.Seed}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if ds, err = cachedDataset(ctx, GenOptions{Dir: dir, Scale: o.Scale, FilesScale: 1, Seed: o.Seed}, log); err != nil {
			return ds, nil, err
		}
	} else if err != nil {
		return ds, nil, err
	} else {
		fmt.Fprintf(log, "using the existing dataset %s\n", dir)
		if b, err := os.ReadFile(dir + ".json"); err == nil {
			if err := json.Unmarshal(b, &ds); err != nil {
				return ds, nil, fmt.Errorf("%s.json: %w", dir, err)
			}
			ds.Dir = dir
		}
	}
	fmt.Fprintf(log, "hashing %s\n", dir)
	t, err := HashTree(dir)
	if err != nil {
		return ds, nil, err
	}
	if ds.Tree != "" && ds.Tree != t.Root {
		*notes = append(*notes, fmt.Sprintf("the dataset's tree %s differs from its record %s.json (%s): it changed since it was generated", t.Root, dir, ds.Tree))
	}
	ds.Files, ds.Bytes, ds.Tree = t.Files, t.Bytes, t.Root
	return ds, t, nil
}

// sf runs snapforge on the benchmark's repository, its output in the log.
func (ib *inplaceBench) sf(ctx context.Context, args ...string) *exec.Cmd {
	return cli{bin: ib.o.Snapforge, log: ib.log}.cmd(ctx, "", append([]string{"--repo", ib.repo}, args...)...)
}

// cpTree copies a tree with cp -a, its output in the log.
func (ib *inplaceBench) cpTree(ctx context.Context, src, dst string) *exec.Cmd {
	fmt.Fprintf(ib.log, "\n$ cp -a %s %s\n", src, dst)
	cmd := exec.CommandContext(ctx, "cp", "-a", src, dst)
	cmd.Stdout, cmd.Stderr = ib.log, ib.log
	return cmd
}

// setup makes the repository with the dataset's snapshot, its pristine
// copy, and the mutated tree, all untimed.
func (ib *inplaceBench) setup(ctx context.Context) error {
	if err := os.RemoveAll(ib.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(ib.dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(ib.b.out, "setup: backing up %s into %s\n", ib.ds.Dir, ib.repo)
	if err := ib.sf(ctx, "init").Run(); err != nil {
		return fmt.Errorf("snapforge init: %w", err)
	}
	id, err := ib.backup(ctx, ib.ds.Dir)
	if err != nil {
		return err
	}
	ib.id = id
	if err := ib.cpTree(ctx, ib.repo, ib.pristine).Run(); err != nil {
		return fmt.Errorf("copy the repository: %w", err)
	}
	mutated := filepath.Join(ib.dir, "mutated")
	fmt.Fprintf(ib.b.out, "setup: copying the dataset to %s and mutating it\n", mutated)
	if err := ib.cpTree(ctx, ib.ds.Dir, mutated).Run(); err != nil {
		return fmt.Errorf("copy the dataset: %w", err)
	}
	st, err := Mutate(ctx, mutated, ib.o.Seed)
	if err != nil {
		return err
	}
	ib.mutation = st.String()
	if ib.mutated, err = HashTree(mutated); err != nil {
		return err
	}
	if d := ib.want.Diff(ib.mutated); len(d) == 0 {
		return errors.New("the mutation changed nothing: the in-place restore would have nothing to do")
	}
	return nil
}

// backup takes a snapshot of dir and returns its id.
func (ib *inplaceBench) backup(ctx context.Context, dir string) (string, error) {
	cmd := ib.sf(ctx, "--json", "backup", dir)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, ib.log)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("snapforge backup %s: %w", dir, err)
	}
	var bk struct {
		BackupID string `json:"backup_id"`
		Partial  bool   `json:"partial"`
	}
	if err := json.Unmarshal(out.Bytes(), &bk); err != nil || bk.BackupID == "" {
		return "", fmt.Errorf("snapforge backup --json: no backup_id in %q (%v)", out.String(), err)
	}
	if bk.Partial {
		return "", fmt.Errorf("snapshot %s of %s is partial", bk.BackupID, dir)
	}
	return bk.BackupID, nil
}

// resetRepo puts the repository back as the setup left it, when an
// in-place restore's safety snapshot changed it.
func (ib *inplaceBench) resetRepo(ctx context.Context) error {
	if !ib.dirty {
		return nil
	}
	if err := os.RemoveAll(ib.repo); err != nil {
		return err
	}
	if err := ib.cpTree(ctx, ib.pristine, ib.repo).Run(); err != nil {
		return fmt.Errorf("reset the repository: %w", err)
	}
	ib.dirty = false
	return nil
}

// freshDir removes dir and makes it again, empty.
func freshDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Mkdir(dir, 0o755)
}

func (ib *inplaceBench) drop() {
	if !ib.o.NoDrop {
		ib.b.dropCaches()
	}
}

// runPhase prepares one phase's target, times its restore and checks the
// result.
func (ib *inplaceBench) runPhase(ctx context.Context, run int, phase string) error {
	if err := ib.resetRepo(ctx); err != nil {
		return err
	}
	var target string
	var before *Tree // the target's tree before the restore
	switch phase {
	case ipPlain:
		target, before = filepath.Join(ib.dir, "plain"), &Tree{Entries: map[string]entry{}}
		if err := freshDir(target); err != nil {
			return err
		}
	case ipEmpty:
		target, before = filepath.Join(ib.dir, "empty"), &Tree{Entries: map[string]entry{}}
		if err := freshDir(target); err != nil {
			return err
		}
	case ipMutated:
		target, before = filepath.Join(ib.dir, "live"), ib.mutated
		if err := os.RemoveAll(target); err != nil {
			return err
		}
		ib.drop()
		cp, err := measure(ib.cpTree(ctx, filepath.Join(ib.dir, "mutated"), target))
		if err != nil {
			return fmt.Errorf("cp -a the mutated tree: %w", err)
		}
		sy, err := measure(exec.CommandContext(ctx, "sync"))
		if err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		raw := cp.wall.Seconds() + sy.wall.Seconds()
		ib.b.record(imWall, ipCopy, raw)
		ib.b.progress(run, "raw", "cp -a cold, then sync", raw, "s")
	}
	id := ib.id
	if phase == ipOwn {
		// The everyday case: yesterday's snapshot of this very root, restored
		// over it after today's ~1 % change. Untimed: copy the dataset to
		// the root, back the root up, mutate it.
		target, before = filepath.Join(ib.dir, "own"), ib.mutated
		if err := os.RemoveAll(target); err != nil {
			return err
		}
		if err := ib.cpTree(ctx, ib.ds.Dir, target).Run(); err != nil {
			return fmt.Errorf("copy the dataset: %w", err)
		}
		var err error
		if id, err = ib.backup(ctx, target); err != nil {
			return err
		}
		ib.dirty = true
		if _, err := Mutate(ctx, target, ib.o.Seed); err != nil {
			return err
		}
		if err := exec.CommandContext(ctx, "sync").Run(); err != nil {
			return err
		}
	}
	if !ib.o.Keep {
		defer os.RemoveAll(target)
	}

	args := []string{"restore", id, "--target", target}
	if phase != ipPlain {
		args = []string{"--json", "restore", id, "--in-place", "--target", target, "--scope", "full"}
	}
	cmd := ib.sf(ctx, args...)
	var out bytes.Buffer
	if phase != ipPlain {
		cmd.Stdout = io.MultiWriter(&out, ib.log)
		ib.dirty = true // a safety snapshot lands in the repository, also when the restore fails
	}
	ib.drop()
	m, runErr := measure(cmd)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var res *inplaceResult
	if phase != ipPlain {
		var perr error
		if res, perr = parseInplaceResult(out.Bytes()); perr != nil && runErr == nil {
			return perr
		}
	}
	if runErr != nil {
		msg := fmt.Sprintf("%s: %v", strings.Join(cmd.Args, " "), runErr)
		if res != nil {
			fmt.Fprintf(ib.b.out, "run %d  %-17s %s\n", run, "", stageLine(res))
			msg += "; failed at " + res.failedStage()
			if res.RolledBack {
				msg += "; rolled back"
			}
		}
		if check := ib.compareTo(before, target); check != "" {
			msg += "; afterwards the target " + check
		}
		return errors.New(msg)
	}
	ib.b.record(imWall, phase, m.wall.Seconds())
	ib.b.record(imCPU, phase, m.cpu.Seconds())
	ib.b.record(imRSS, phase, float64(m.maxRSS)/1e6)
	ib.b.progress(run, "snapforge", phase, m.wall.Seconds(), fmt.Sprintf("s, CPU %.2f s, RSS %.1f MB", m.cpu.Seconds(), float64(m.maxRSS)/1e6))
	if res != nil {
		var sum float64
		for _, st := range res.Stages {
			s := float64(st.DurationMS) / 1000
			sum += s
			ib.recordStage(st.Name, phase, s)
		}
		ib.recordStage(outsideStages, phase, max(m.wall.Seconds()-sum, 0))
		if res.Plan != nil {
			p := res.Plan.Summary
			for _, st := range res.Stages {
				if st.Name == "safety snapshot" {
					p.Safety = st.Detail
				}
			}
			ib.plans[phase] = p
		}
		fmt.Fprintf(ib.b.out, "run %d  %-17s %s\n", run, "", stageLine(res))
	}
	check, err := ib.b.checkTree(ctx, toolSpec{name: phase}, ib.want, ib.ds.Dir, target)
	if err != nil {
		return err
	}
	ib.checks[phase] = append(ib.checks[phase], check)
	return nil
}

// stageLine lists an in-place restore's stages and durations on one line.
func stageLine(r *inplaceResult) string {
	var parts []string
	for _, st := range r.Stages {
		parts = append(parts, fmt.Sprintf("%s %.2f s", st.Name, float64(st.DurationMS)/1000))
	}
	return strings.Join(parts, ", ")
}

func (ib *inplaceBench) recordStage(name, phase string, v float64) {
	if !slices.Contains(ib.stages, name) && name != outsideStages {
		ib.stages = append(ib.stages, name)
	}
	ib.b.record("stage "+name, phase, v)
}

// compareTo says how the tree at root compares with before: "equals its
// state before the restore" or how it differs.
func (ib *inplaceBench) compareTo(before *Tree, root string) string {
	got, err := HashTree(root)
	if err != nil {
		return "cannot be read: " + err.Error()
	}
	d := before.Diff(got)
	if len(d) == 0 {
		return "equals its state before the restore"
	}
	var ds []string
	for _, p := range first(d, 5) {
		ds = append(ds, p+": "+before.Describe(got, p))
	}
	return fmt.Sprintf("differs from its state before the restore in %d path(s): %s", len(d), strings.Join(ds, "; "))
}

// first returns at most n of s, saying how many more there are.
func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// report turns the samples into medians and ratios.
func (ib *inplaceBench) report() *InplaceReport {
	rep := &InplaceReport{Dataset: ib.ds, Runs: ib.o.Runs, Date: time.Now().Format(time.DateOnly), CPUs: runtime.NumCPU(),
		Command: ib.o.Command, Snapforge: ib.o.Snapforge, BackupID: ib.id, Mutation: ib.mutation, Plans: ib.plans, Checks: ib.checks}
	for _, p := range inplacePhases {
		row := InplacePhase{Key: p.key, Label: p.label, Median: map[string]float64{}, Samples: map[string][]float64{}}
		if p.target != nil {
			t := *p.target
			row.Target = &t
		}
		for _, m := range []string{imWall, imCPU, imRSS} {
			if xs := ib.b.samples[m][p.key]; len(xs) > 0 {
				row.Median[m], row.Samples[m] = median(xs), xs
			}
		}
		rep.Phases = append(rep.Phases, row)
	}
	for _, name := range append(slices.Clone(ib.stages), outsideStages) {
		st := InplaceStage{Name: name, Median: map[string]float64{}, Samples: map[string][]float64{}}
		for _, c := range inplaceCases {
			if xs := ib.b.samples["stage "+name][c.key]; len(xs) > 0 {
				st.Median[c.key], st.Samples[c.key] = median(xs), xs
			}
		}
		rep.Stages = append(rep.Stages, st)
	}
	rep.Compute()
	n := &rep.Notes
	*n = append(*n,
		"snapforge only: restic, borg and kopia have no in-place restore (recovery plan, safety snapshot, staged and verified swap, rollback) to compare with; their plain restores are measured by `sfbench run`",
		fmt.Sprintf("snapshot %s: a backup of the pristine dataset as PATH, the only snapshot in a repository without a profile, so --scope full is the whole root; in-place: `snapforge --repo R --json restore %s --in-place --target ROOT --scope full`; plain: `snapforge --repo R restore %s --target EMPTYDIR`", ib.id, ib.id, ib.id),
		"own root: each run copies the dataset to a root, backs that root up and applies `sfbench mutate` (untimed), then restores that snapshot over it: the everyday case, where files unchanged since the snapshot are known by inode, size, mtime and ctime and not read again",
		"mutated live root: a fresh `cp -a` (before each run, untimed except as the raw row) of the dataset after `sfbench mutate`: "+ib.mutation,
		"each in-place restore takes a pinned safety snapshot (a backup) into the repository; the repository is put back from an untimed copy before the next phase, so every phase starts from the same repository; phases rotate their order per run",
		"× plain: the phase's median wall time / the plain restore's; target (issue 5, item 8): an in-place full restore takes at most 1.5× a plain restore of the same snapshot",
		fmt.Sprintf("machine: %d CPUs; repository, live roots and restores under %s, the dataset in %s", runtime.NumCPU(), ib.dir, ib.ds.Dir))
	switch {
	case ib.o.NoDrop:
		*n = append(*n, "page cache NOT dropped (--no-drop): timings are warm")
	case ib.b.noDrop != nil:
		*n = append(*n, fmt.Sprintf("the page cache was NOT dropped (%v): timings are warm, run as root for cold ones", ib.b.noDrop))
	default:
		*n = append(*n, "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed phase and before the raw copy")
	}
	for _, c := range []struct{ key, name string }{{ipPlain, "plain restore"}, {ipMutated, "in-place, mutated live"}, {ipEmpty, "in-place, empty root"}, {ipOwn, "in-place, own root"}} {
		if ch := ib.checks[c.key]; len(ch) > 0 {
			*n = append(*n, fmt.Sprintf("check (the target's tree against the dataset's), %s: %s", c.name, strings.Join(compact(ch), "; ")))
		}
	}
	for _, c := range inplaceCases {
		if p, ok := ib.plans[c.key]; ok {
			*n = append(*n, fmt.Sprintf("plan, %s: %d created, %d replaced, %d removed, %d updated, %d unchanged; %s staged; safety snapshot: %s",
				c.head, p.Create, p.Replace, p.Remove, p.Update, p.Unchanged, mb(p.Bytes), p.Safety))
		}
	}
	*n = append(*n, ib.b.notes...)
	rep.Errors = ib.b.errs
	return rep
}

// Compute fills every phase's ratio to the plain restore and judges its
// target.
func (r *InplaceReport) Compute() {
	var plain float64
	for _, p := range r.Phases {
		if p.Key == ipPlain {
			plain = p.Median[imWall]
		}
	}
	for i := range r.Phases {
		p := &r.Phases[i]
		p.XPlain = 0
		if p.Target != nil {
			p.Target.Status = ""
		}
		v, ok := p.Median[imWall]
		if !ok || plain <= 0 {
			continue
		}
		p.XPlain = v / plain
		if p.Target != nil && p.Target.Kind == tkMaxPlain {
			const eps = 1e-9 // a ratio exactly on the target meets it
			p.Target.Status = "missed"
			if p.XPlain <= p.Target.Value+eps {
				p.Target.Status = "met"
			}
		}
	}
}

// Render writes the report as two Markdown tables, the phases and the
// in-place stages, followed by how to read them, the notes and errors.
func (r *InplaceReport) Render(w io.Writer) error {
	table := [][]string{{"phase", "wall (s)", "CPU (s)", "peak RSS (MB)", "× plain", "target", ""}}
	for _, p := range r.Phases {
		line := []string{p.Label}
		for _, m := range []string{imWall, imCPU, imRSS} {
			v, ok := p.Median[m]
			if p.Key == ipCopy && m != imWall {
				line = append(line, "")
				continue
			}
			line = append(line, formatValue(v, ok))
		}
		x := "–"
		if p.XPlain > 0 {
			x = fmt.Sprintf("%.2f", p.XPlain)
		}
		target, status := "", ""
		if p.Target != nil {
			target, status = p.Target.Text, p.Target.Status
			switch status {
			case "missed":
				status = "MISSED"
			case "":
				status = "–"
			}
		}
		table = append(table, append(line, x, target, status))
	}
	var b strings.Builder
	writeMarkdown(&b, table)
	b.WriteString("\n")
	stages := [][]string{{"in-place stage (s)"}}
	for _, c := range inplaceCases {
		stages[0] = append(stages[0], c.head)
	}
	for _, st := range r.Stages {
		line := []string{st.Name}
		for _, c := range inplaceCases {
			v, ok := st.Median[c.key]
			line = append(line, formatValue(v, ok))
		}
		stages = append(stages, line)
	}
	writeMarkdown(&b, stages)
	fmt.Fprintf(&b, "\nsnapforge %s; medians of %d run(s); %s, %d CPUs; MB = 10^6 bytes; lower is better; stage times are the in-place restore's own (its --json result), %s = wall time minus their sum\n",
		r.Snapforge, r.Runs, r.Date, r.CPUs, outsideStages)
	fmt.Fprintf(&b, "command: %s\n", r.Command)
	d := r.Dataset
	params := fmt.Sprintf("scale %g, seed %d", d.Scale, d.Seed)
	if d.Scale == 0 {
		params = "an existing dataset of unknown scale"
	}
	fmt.Fprintf(&b, "dataset: %s (%s): %d files, %s, tree %s\n", d.Dir, params, d.Files, mb(d.Bytes), d.Tree)
	return writeNotes(w, &b, r.Notes, r.Errors)
}
