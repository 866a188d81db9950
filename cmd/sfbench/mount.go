package main

// The mount subcommand: browsing the newest snapshot through each tool's
// FUSE mount, against the same operations on the source directory on ext4
// (issue 4, item 4).
//
//	sfbench mount --work W [--scale S] [--runs N] [--dir DATASET] [--json FILE]
//	              [--tools snapforge,restic,borg] [--entries 100000] [--snapforge BIN]
//	              [--seed N] [--forget-wait 5s] [--mount-timeout 2m] [--no-drop] [--keep]
//
// The dataset is the one gen makes (cached under W/datasets, or --dir). Each
// tool backs it up once, in place and untimed, into a fresh repository under
// W/repos; a first mount then checks that a few files read through it have
// the source's BLAKE3. Every run then measures, per tool, each timed phase
// after dropping the page cache (sync; echo 3 > /proc/sys/vm/drop_caches):
//
//   - on a fresh mount: `ls -lR` of the latest snapshot's folder, then a read
//     of every regular file (a Go walker, 1 MiB buffer; the bytes read must
//     add up to the dataset's);
//   - on another fresh mount: a read of every regular file under smallLimit
//     bytes, in walk order, then of the dataset's largest file (MB/s);
//   - the mount process's peak RSS: VmHWM from /proc/PID/status just before
//     each unmount, the larger of the run's two mounts.
//
// With snapforge among the tools, a directory of --entries small files is
// generated once (W/datasets/entries-N/d), backed up by snapforge alone, and
// each run lists it with `ls -l` through a fresh mount, reading the mount's
// VmRSS before, after, and --forget-wait after `echo 2 >
// /proc/sys/vm/drop_caches` (the kernel forgets the dentries and inodes, so
// FUSE sends FORGET). The baseline column "ext4" is the same operations on
// the source directories, cold. Mounts are stopped with SIGINT and, if still
// there, `fusermount3 -u`, then `-uz`; none is left behind, also when a phase
// fails.

import (
	"context"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeebo/blake3"
)

// smallLimit is the size below which a file counts as small: the "read all
// small files" phase reads these.
const smallLimit = 1 << 20

// mountOptions configure runMount; mountCommand fills them from the flags.
type mountOptions struct {
	Work         string
	Dir          string // dataset; "" means W/datasets/dataset-s<scale>-f1-seed<seed>
	Scale        float64
	Seed         uint64
	Runs         int
	Tools        []string // nil: defaultMountTools
	JSON         string   // report file, "" for none
	Snapforge    string   // binary; "" builds ./cmd/snapforge into Work/bin
	Entries      int      // files in the one large directory; 0 skips it
	ForgetWait   time.Duration
	MountTimeout time.Duration // for a mount to become ready
	NoDrop       bool          // keep the page cache (tests): timings are warm
	Keep         bool          // keep the repositories
	Command      string        // the command line, for the report
	ReadBPS      string        // --read-bps: limit reads from the work disk, "" for none
}

// defaultMountTools are the tools with a mount command sfbench drives.
var defaultMountTools = []string{"snapforge", "restic", "borg"}

// mountCommand parses the mount subcommand's flags into fs, which main has
// already given --dir and --seed, and runs it.
func mountCommand(ctx context.Context, fs *flag.FlagSet, args []string, dir *string, seed *uint64, stdout, stderr io.Writer) error {
	o := mountOptions{Command: "sfbench mount " + strings.Join(args, " ")}
	fs.StringVar(&o.Work, "work", "", "work directory: cached datasets, repositories, mountpoints, logs")
	fs.Float64Var(&o.Scale, "scale", 1, "scale of the dataset generated when --dir is not given or does not exist (1.0 is about 1.7 GB)")
	fs.IntVar(&o.Runs, "runs", 4, "repetitions; the table shows medians")
	tools := fs.String("tools", strings.Join(defaultMountTools, ","), "comma-separated tools (snapforge, restic, borg)")
	fs.StringVar(&o.JSON, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.Snapforge, "snapforge", "", "snapforge binary (default: build ./cmd/snapforge into WORK/bin)")
	fs.IntVar(&o.Entries, "entries", 100_000, "files in the large directory listed through snapforge's mount; 0 skips it")
	fs.DurationVar(&o.ForgetWait, "forget-wait", 5*time.Second, "wait after echo 2 > /proc/sys/vm/drop_caches before reading the mount's RSS")
	fs.DurationVar(&o.MountTimeout, "mount-timeout", 2*time.Minute, "how long a mount may take to become ready")
	fs.BoolVar(&o.NoDrop, "no-drop", false, "do not drop the page cache before each phase (warm timings; for tests); the forget step still writes 2 to drop_caches")
	fs.BoolVar(&o.Keep, "keep", false, "keep the repositories")
	fs.StringVar(&o.ReadBPS, "read-bps", "", readBPSHelp)
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if o.Work == "" {
		return &usageError{"mount needs --work DIR"}
	}
	o.Dir, o.Seed, o.Tools = *dir, *seed, splitList(*tools)
	return runMount(ctx, o, stdout, stderr)
}

// Rows of the mount report, in table order. The keys name them in the JSON.
const (
	mrLs        = "ls_lR_s"
	mrRead      = "read_all_s"
	mrReadRate  = "read_all_mbps"
	mrSmall     = "small_files_s"
	mrBig       = "big_file_mbps"
	mrPeakRSS   = "mount_peak_rss_mb"
	mrReady     = "mount_ready_s"
	mrDirLs     = "dir_ls_s"
	mrDirBefore = "dir_rss_before_mb"
	mrDirListed = "dir_rss_listed_mb"
	mrDirForgot = "dir_rss_forgotten_mb"

	ext4Col = "ext4"
)

// Target kinds: how a row's snapforge median is judged.
const (
	tkMaxExt4  = "max_x_ext4" // snapforge ≤ Value × ext4 (a time)
	tkMinExt4  = "min_x_ext4" // snapforge ≥ Value × ext4 (a throughput)
	tkBelow    = "below"      // snapforge < Value (a size)
	tkFallback = "fallback"   // snapforge ≤ before + Value × (listed − before), rows mrDirBefore and mrDirListed
)

// Target is one of issue 4's goals for a row, judged on snapforge's median.
type Target struct {
	Text   string  `json:"text"`
	Kind   string  `json:"kind"`
	Value  float64 `json:"value"`
	Status string  `json:"status"` // "met", "missed", "warm" (timings not cold: not judged), or "" when a median is missing
}

// MountRow is one measure. A tool without a value (the phase failed, or
// the row is snapforge's only) is absent from Median and from Ratios.
type MountRow struct {
	Key           string               `json:"key"`
	Label         string               `json:"label"`
	Unit          string               `json:"unit"`   // "s", "MB/s" or "MB" (10^6 bytes)
	Higher        bool                 `json:"higher"` // higher is better (throughputs)
	SnapforgeOnly bool                 `json:"snapforge_only,omitempty"`
	Median        map[string]float64   `json:"median"`
	Samples       map[string][]float64 `json:"samples"`
	Ext4          *Raw                 `json:"ext4,omitempty"`
	// Ratios are snapforge / each peer and / "ext4".
	Ratios map[string]float64 `json:"ratios,omitempty"`
	Target *Target            `json:"target,omitempty"`
}

// MountReport is the outcome of `sfbench mount`; the table and the JSON
// file are two renderings of it.
type MountReport struct {
	Dataset    Dataset    `json:"dataset"`
	Runs       int        `json:"runs"`
	Date       string     `json:"date"`
	CPUs       int        `json:"cpus"`
	Command    string     `json:"command"`
	Tools      []ToolInfo `json:"tools"` // column order
	SmallLimit int64      `json:"small_limit_bytes"`
	SmallFiles int        `json:"small_files"`
	SmallBytes int64      `json:"small_bytes"`
	BigFile    string     `json:"big_file"`
	BigBytes   int64      `json:"big_bytes"`
	Entries    int        `json:"entries"`
	// ReadLimit is --read-bps in bytes a second, 0 when reads ran at the disk's (and host cache's) speed.
	ReadLimit int64 `json:"read_limit_bytes_per_s,omitempty"`
	// Warm: the page cache was not dropped (--no-drop, or not root): the
	// timings are warm, and the targets, set for cold reads, are not judged.
	Warm   bool       `json:"warm,omitempty"`
	Rows   []MountRow `json:"rows"`
	Notes  []string   `json:"notes,omitempty"`
	Errors []string   `json:"errors,omitempty"`
}

// mountRows lists every row: its unit, whether higher is better, whether
// only snapforge measures it, and its target. Labels come from the dataset.
var mountRows = []struct {
	key, unit     string
	higher, sonly bool
	target        *Target
}{
	{mrLs, "s", false, false, &Target{Text: "≤ 2× ext4", Kind: tkMaxExt4, Value: 2}},
	{mrRead, "s", false, false, &Target{Text: "≤ 1.2× ext4", Kind: tkMaxExt4, Value: 1.2}},
	{mrReadRate, "MB/s", true, false, nil},
	{mrSmall, "s", false, false, &Target{Text: "≤ 2× ext4", Kind: tkMaxExt4, Value: 2}},
	{mrBig, "MB/s", true, false, &Target{Text: "≥ 0.8× ext4", Kind: tkMinExt4, Value: 0.8}},
	{mrPeakRSS, "MB", false, false, &Target{Text: "< 100 MB", Kind: tkBelow, Value: 100}},
	{mrReady, "s", false, false, nil},
	{mrDirLs, "s", false, true, &Target{Text: "about ext4 (≤ 1.5×)", Kind: tkMaxExt4, Value: 1.5}},
	{mrDirBefore, "MB", false, true, nil},
	{mrDirListed, "MB", false, true, nil},
	{mrDirForgot, "MB", false, true, &Target{Text: "falls ≥ halfway back", Kind: tkFallback, Value: 0.5}},
}

// label names a row for the table.
func (r *MountReport) label(key string, forget time.Duration) string {
	switch key {
	case mrLs:
		return "`ls -lR` of the latest snapshot"
	case mrRead:
		return "read every file"
	case mrReadRate:
		return "read every file"
	case mrSmall:
		return fmt.Sprintf("fresh mount, read %d small files (< %s)", r.SmallFiles, sizeName(r.SmallLimit))
	case mrBig:
		return fmt.Sprintf("then one %s file", mb(r.BigBytes))
	case mrPeakRSS:
		return "mount process peak RSS"
	case mrReady:
		return "start of a cold mount until the snapshot is found"
	case mrDirLs:
		return fmt.Sprintf("`ls -l` of a %d-entry directory", r.Entries)
	case mrDirBefore:
		return "mount RSS before that listing"
	case mrDirListed:
		return "mount RSS after the listing"
	case mrDirForgot:
		return fmt.Sprintf("mount RSS %s after `echo 2 > drop_caches`", forget)
	}
	return key
}

// sizeName prints a power-of-two size: "1 MiB".
func sizeName(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Compute fills every row's Ratios and judges its Target.
func (r *MountReport) Compute() {
	sfs, peers := (&Report{Tools: r.Tools}).split()
	byKey := map[string]*MountRow{}
	for i := range r.Rows {
		byKey[r.Rows[i].Key] = &r.Rows[i]
	}
	for i := range r.Rows {
		row := &r.Rows[i]
		row.Ratios = nil
		for _, s := range sfs {
			v, ok := row.Median[s]
			if !ok {
				continue
			}
			for _, p := range peers {
				if pv, ok := row.Median[p]; ok && pv > 0 {
					putRatio(&row.Ratios, s+"/"+p, v/pv)
				}
			}
			if row.Ext4 != nil && row.Ext4.Median > 0 {
				putRatio(&row.Ratios, s+"/"+ext4Col, v/row.Ext4.Median)
			}
		}
		if row.Target == nil {
			continue
		}
		row.Target.Status = ""
		if len(sfs) == 0 {
			continue
		}
		if r.Warm && (row.Target.Kind == tkMaxExt4 || row.Target.Kind == tkMinExt4) { // times against ext4; memory is judged warm or cold
			row.Target.Status = "warm"
			continue
		}
		v, ok := row.Median[sfs[0]]
		if !ok {
			continue
		}
		const eps = 1e-9 // a ratio exactly on the target meets it
		var met bool
		switch row.Target.Kind {
		case tkMaxExt4, tkMinExt4:
			x, ok := row.Ratios[sfs[0]+"/"+ext4Col]
			if !ok {
				continue
			}
			if row.Target.Kind == tkMaxExt4 {
				met = x <= row.Target.Value+eps
			} else {
				met = x >= row.Target.Value-eps
			}
		case tkBelow:
			met = v < row.Target.Value
		case tkFallback:
			before, listed := byKey[mrDirBefore], byKey[mrDirListed]
			if before == nil || listed == nil {
				continue
			}
			b, ok1 := before.Median[sfs[0]]
			l, ok2 := listed.Median[sfs[0]]
			if !ok1 || !ok2 {
				continue
			}
			met = v <= b+row.Target.Value*max(l-b, 0)+eps
		default:
			continue
		}
		row.Target.Status = "missed"
		if met {
			row.Target.Status = "met"
		}
	}
}

// Render writes the report as a Markdown table of medians, ratios and
// targets, followed by how to read it, the tools, notes and errors.
func (r *MountReport) Render(w io.Writer, forget time.Duration) error {
	sfs, peers := (&Report{Tools: r.Tools}).split()
	var ratios []string
	if len(sfs) > 0 {
		for _, p := range peers {
			ratios = append(ratios, sfs[0]+"/"+p)
		}
		ratios = append(ratios, sfs[0]+"/"+ext4Col)
	}
	header := []string{"through the mount"}
	for _, t := range r.Tools {
		header = append(header, t.Name)
	}
	cache := "cold"
	if r.Warm {
		cache = "warm"
	}
	header = append(header, "ext4 "+cache)
	for _, c := range ratios {
		header = append(header, short(c))
	}
	header = append(header, "target", "")
	table := [][]string{header}
	for _, row := range r.Rows {
		line := []string{fmt.Sprintf("%s (%s)", r.label(row.Key, forget), row.Unit)}
		for _, t := range r.Tools {
			v, ok := row.Median[t.Name]
			if row.SnapforgeOnly && !t.Snapforge {
				line = append(line, "")
				continue
			}
			line = append(line, formatValue(v, ok))
		}
		if row.Ext4 != nil {
			line = append(line, formatValue(row.Ext4.Median, true))
		} else {
			line = append(line, "")
		}
		for _, c := range ratios {
			cell := ""
			if v, ok := row.Ratios[c]; ok {
				cell = fmt.Sprintf("%.2f", v)
			}
			line = append(line, cell)
		}
		target, status := "", ""
		if row.Target != nil {
			target, status = row.Target.Text, row.Target.Status
			switch status {
			case "missed":
				status = "MISSED"
			case "warm":
				status = "not judged: warm"
			case "":
				status = "–"
			}
		}
		table = append(table, append(line, target, status))
	}
	var b strings.Builder
	writeMarkdown(&b, table)
	fmt.Fprintf(&b, "\nmedians of %d run(s), %s cache; %s, %d CPUs; sf = snapforge; MB = 10^6 bytes; ratios are snapforge / the column: for seconds and MB lower is better, for MB/s higher is better; targets from issue 4, judged on snapforge's median\n", r.Runs, cache, r.Date, r.CPUs)
	fmt.Fprintf(&b, "command: %s\n", r.Command)
	d := r.Dataset
	params := fmt.Sprintf("scale %g, seed %d", d.Scale, d.Seed)
	if d.Scale == 0 {
		params = "an existing dataset of unknown scale"
	}
	fmt.Fprintf(&b, "dataset: %s (%s): %d files, %s, tree %s; small files: %d (%s) under %s; big file: %s (%s)\n",
		d.Dir, params, d.Files, mb(d.Bytes), d.Tree, r.SmallFiles, mb(r.SmallBytes), sizeName(r.SmallLimit), r.BigFile, mb(r.BigBytes))
	for _, t := range r.Tools {
		fmt.Fprintf(&b, "- %s: %s; %s\n", t.Name, t.Version, t.Settings)
	}
	return writeNotes(w, &b, r.Notes, r.Errors)
}

// sourceShape is what the phases need to know about the dataset.
type sourceShape struct {
	files      int
	bytes      int64
	smallFiles int
	smallBytes int64
	big        string   // the largest regular file, relative to the root
	bigBytes   int64    //
	check      []string // files whose content is compared through each mount
}

// scanSource walks the dataset once: the small files, the largest file, and
// the files of the content check (the largest, and the small files at a
// quarter, half and three quarters of path order).
func scanSource(root string) (sourceShape, error) {
	var s sourceShape
	var small []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		s.files++
		s.bytes += fi.Size()
		if fi.Size() < smallLimit {
			s.smallFiles++
			s.smallBytes += fi.Size()
			small = append(small, rel)
		}
		if fi.Size() > s.bigBytes || s.big == "" {
			s.big, s.bigBytes = rel, fi.Size()
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("scan dataset %s: %w", root, err)
	}
	if s.big == "" || s.smallFiles == 0 {
		return s, fmt.Errorf("dataset %s has no files, or no file under %s: is it a dataset made by sfbench gen?", root, sizeName(smallLimit))
	}
	s.check = []string{s.big}
	for _, q := range []int{1, 2, 3} {
		if f := small[len(small)*q/4]; !slices.Contains(s.check, f) {
			s.check = append(s.check, f)
		}
	}
	return s, nil
}

// mountBench is one invocation of `sfbench mount`. It keeps its samples in
// a bench (samples[row][tool or ext4]) to share its recording and cache
// dropping.
type mountBench struct {
	o       mountOptions
	b       *bench
	ds      Dataset
	shape   sourceShape
	entries string // the large directory's source root; "" when skipped
	notes   []string
}

// mounter is one tool's repository, backed up, with the mount command of
// its newest snapshot.
type mounter struct {
	spec toolSpec
	t    tool
	name string // spec.name, or "snapforge (entries)"
	src  string
	log  *os.File
	mnt  string // the mountpoint
}

func runMount(ctx context.Context, o mountOptions, stdout, stderr io.Writer) error {
	if err := checkRunsScale(o.Runs, o.Scale); err != nil {
		return err
	}
	if o.Entries < 0 {
		return &usageError{"--entries must not be negative"}
	}
	if len(o.Tools) == 0 {
		o.Tools = defaultMountTools
	}
	var kopiaNote string
	for _, name := range o.Tools {
		switch name {
		case "snapforge", "restic", "borg":
		case "kopia":
			return &usageError{"sfbench mount does not drive kopia's mount yet (kopia is not installed on the reference machine); leave it out of --tools"}
		default:
			return &usageError{fmt.Sprintf("sfbench mount: unknown tool %q (known: snapforge, restic, borg)", name)}
		}
	}
	if _, err := exec.LookPath("kopia"); err != nil {
		kopiaNote = "kopia: not installed (not on PATH), left out; issue 4's reference figures for kopia 0.23 are in the issue"
	} else {
		kopiaNote = "kopia: on PATH but left out: sfbench mount does not drive kopia's mount yet"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("mount benchmarks need FUSE: %w (load the fuse module, or run where /dev/fuse exists)", err)
	}
	work, err := workDir(o.Work, "logs", "datasets", "repos", "mnt")
	if err != nil {
		return err
	}
	o.Work = work
	limit, stopLimit, err := startReadLimit(o.ReadBPS, stderr, work, o.Dir)
	if err != nil {
		return err
	}
	defer stopLimit()
	ds, err := mountDataset(ctx, o, stderr)
	if err != nil {
		return err
	}
	shape, err := scanSource(ds.Dir)
	if err != nil {
		return err
	}
	mt := &mountBench{o: o, ds: ds, shape: shape,
		b: &bench{o: runOptions{Work: work}, out: stderr, limit: limit, samples: map[string]map[string][]float64{}}}
	mt.notes = append(mt.notes, kopiaNote)
	withSnapforge := slices.Contains(o.Tools, "snapforge")
	if withSnapforge && o.Entries > 0 {
		if mt.entries, err = entriesDir(filepath.Join(work, "datasets"), o.Entries, stderr); err != nil {
			return err
		}
	}
	if withSnapforge && o.Snapforge == "" {
		if o.Snapforge, err = buildSnapforge(ctx, work); err != nil {
			return err
		}
		mt.o.Snapforge = o.Snapforge
	}
	specs, err := resolveTools(ctx, o.Tools, o.Snapforge, "none")
	if err != nil {
		return err
	}
	if !o.Keep {
		defer func() {
			for _, s := range specs {
				os.RemoveAll(filepath.Join(work, "repos", "mount-"+s.name))
				os.RemoveAll(filepath.Join(work, "home", "mount-"+s.name))
			}
			os.RemoveAll(filepath.Join(work, "repos", "mount-entries"))
			os.RemoveAll(filepath.Join(work, "home", "mount-entries"))
		}()
	}

	var ms []*mounter
	for _, spec := range specs {
		m, err := mt.setup(ctx, spec, spec.name, "mount-"+spec.name, ds.Dir, shape.check)
		if m != nil {
			defer m.log.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "%s: %v\n", spec.name, err)
			mt.b.errs = append(mt.b.errs, fmt.Sprintf("%s: %v", spec.name, err))
			continue
		}
		ms = append(ms, m)
	}
	var em *mounter
	if mt.entries != "" {
		i := slices.IndexFunc(specs, func(s toolSpec) bool { return s.name == "snapforge" })
		first := filepath.Join("d", entryName(0))
		m, err := mt.setup(ctx, specs[i], "snapforge (entries)", "mount-entries", mt.entries, []string{first})
		if m != nil {
			defer m.log.Close()
		}
		if err == nil {
			err = m.countEntries(ctx, mt, o.Entries)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "%d-entry directory: %v\n", o.Entries, err)
			mt.b.errs = append(mt.b.errs, fmt.Sprintf("%d-entry directory: %v", o.Entries, err))
		} else {
			em = m
		}
	}

	for run := 1; run <= o.Runs; run++ {
		if err := mt.baselines(ctx, run); err != nil {
			return err
		}
		for k := range ms { // rotate the order so no tool always goes first
			m := ms[(k+run-1)%len(ms)]
			if err := mt.runTool(ctx, run, m); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "run %d  %s: %v\n", run, m.name, err)
				mt.b.errs = append(mt.b.errs, fmt.Sprintf("run %d: %s: %v (output in %s)", run, m.name, err, m.log.Name()))
			}
		}
		if em != nil {
			if err := mt.runEntries(ctx, run, em); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "run %d  %s: %v\n", run, em.name, err)
				mt.b.errs = append(mt.b.errs, fmt.Sprintf("run %d: %s: %v (output in %s)", run, em.name, err, em.log.Name()))
			}
		}
	}

	rep := mt.report(specs)
	return emitReport(func() error { return rep.Render(stdout, o.ForgetWait) }, rep, o.JSON, len(rep.Errors), work)
}

// mountDataset returns the dataset: --dir as it is when it exists,
// otherwise generated (into --dir, or cached under W/datasets).
func mountDataset(ctx context.Context, o mountOptions, log io.Writer) (Dataset, error) {
	if o.Dir != "" {
		dir, err := filepath.Abs(o.Dir)
		if err != nil {
			return Dataset{}, err
		}
		if _, err := os.Stat(dir); err == nil {
			fmt.Fprintf(log, "using the existing dataset %s (hashing it)\n", dir)
			t, err := HashTree(dir)
			if err != nil {
				return Dataset{}, err
			}
			return Dataset{Dir: dir, Seed: o.Seed, Files: t.Files, Bytes: t.Bytes, Tree: t.Root}, nil
		}
		return cachedDataset(ctx, GenOptions{Dir: dir, Scale: o.Scale, FilesScale: 1, Seed: o.Seed}, log)
	}
	dir := filepath.Join(o.Work, "datasets", fmt.Sprintf("dataset-s%g-f1-seed%d", o.Scale, o.Seed))
	return cachedDataset(ctx, GenOptions{Dir: dir, Scale: o.Scale, FilesScale: 1, Seed: o.Seed}, log)
}

// entryName names the i-th file of the large directory.
func entryName(i int) string { return fmt.Sprintf("e%07d", i) }

// entriesDir returns the source root of the large directory, parent/entries-N
// holding d/ with n files of a few bytes, generating it when absent.
func entriesDir(parent string, n int, log io.Writer) (string, error) {
	root := filepath.Join(parent, fmt.Sprintf("entries-%d", n))
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	fmt.Fprintf(log, "generating %s: %d files in one directory\n", root, n)
	tmp := root + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	d := filepath.Join(tmp, "d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(d, entryName(i)), []byte("entry "+strconv.Itoa(i)+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("generate %s: %w", root, err)
		}
	}
	return root, os.Rename(tmp, root)
}

// drop empties the page cache before a timed phase, unless --no-drop.
func (mt *mountBench) drop() {
	if !mt.o.NoDrop {
		mt.b.dropCaches()
	}
}

// setup backs src up with spec's tool into a fresh repository (untimed) and
// checks, through a mount, that the files of check (relative to src) read
// back with the source's BLAKE3. The mounter is returned, its log open,
// also with an error.
func (mt *mountBench) setup(ctx context.Context, spec toolSpec, name, id, src string, check []string) (*mounter, error) {
	w := mt.o.Work
	repo := filepath.Join(w, "repos", id)
	home := filepath.Join(w, "home", id)
	for _, d := range []string{repo, home} {
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(w, "logs", id+".log"))
	if err != nil {
		return nil, err
	}
	m := &mounter{spec: spec, name: name, src: src, log: logf, mnt: filepath.Join(w, "mnt", id)}
	m.t = spec.bind(toolPaths{repo: repo, src: src, home: home, log: logf})
	fmt.Fprintf(mt.b.out, "%s: backing up %s (untimed)\n", name, src)
	if err := m.t.Init(ctx); err != nil {
		return m, fmt.Errorf("init: %w (output in %s)", err, logf.Name())
	}
	cmd, err := m.t.Backup(ctx, 1)
	if err != nil {
		return m, err
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !m.t.WarningExit(ee.ExitCode()) {
			return m, fmt.Errorf("backup: %s: %w (output in %s)", strings.Join(cmd.Args, " "), err, logf.Name())
		}
	}
	_, err = m.with(ctx, mt, func(s *mountSession) error {
		for _, rel := range check {
			want, err := fileSum(filepath.Join(src, rel))
			if err != nil {
				return err
			}
			got, err := fileSum(filepath.Join(s.root, rel))
			if err != nil {
				return fmt.Errorf("content check: through the mount: %w", err)
			}
			if got != want {
				return fmt.Errorf("content check: %s reads through the mount with BLAKE3 %x…, the source has %x…", rel, got[:8], want[:8])
			}
		}
		return nil
	})
	if err != nil {
		return m, fmt.Errorf("%w (output in %s)", err, logf.Name())
	}
	mt.notes = append(mt.notes, fmt.Sprintf("content check through %s's mount: BLAKE3 of %s equal to the source's", name, strings.Join(check, ", ")))
	return m, nil
}

// countEntries checks, through a mount, that the large directory lists
// with all its n entries.
func (m *mounter) countEntries(ctx context.Context, mt *mountBench, n int) error {
	_, err := m.with(ctx, mt, func(s *mountSession) error {
		ents, err := os.ReadDir(filepath.Join(s.root, "d"))
		if err != nil {
			return err
		}
		if len(ents) != n {
			return fmt.Errorf("the directory lists %d entries through the mount, the source has %d", len(ents), n)
		}
		return nil
	})
	return err
}

// fileSum returns the BLAKE3 of a file's content.
func fileSum(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := blake3.New()
	if _, err := io.CopyBuffer(h, onlyReader{f}, make([]byte, 1<<20)); err != nil {
		return sum, fmt.Errorf("read %s: %w", path, err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// lsTime runs ls with flags on dir, output to /dev/null, and returns its
// wall time in seconds.
func lsTime(ctx context.Context, flags, dir string) (float64, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	ls := exec.CommandContext(ctx, "ls", flags, dir)
	ls.Stdout = devnull
	var stderr strings.Builder
	ls.Stderr = &stderr
	m, err := measure(ls)
	if err != nil {
		return 0, fmt.Errorf("ls %s %s: %w: %s", flags, dir, err, strings.TrimSpace(stderr.String()))
	}
	return m.wall.Seconds(), nil
}

// readSmall reads every regular file under root smaller than limit, in walk
// order, and returns how many and their bytes.
func readSmall(root string, limit int64) (int, int64, error) {
	buf := make([]byte, 1<<20)
	var files int
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil || fi.Size() >= limit {
			return err
		}
		n, err := readFile(p, buf)
		files++
		total += n
		return err
	})
	return files, total, err
}

// readFile reads a file to its end and returns its length.
func readFile(path string, buf []byte) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	for {
		n, err := f.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("read %s: %w", path, err)
		}
	}
}

// timedRead drops the page cache and times read, which returns the bytes
// it read; it returns the seconds.
func (mt *mountBench) timedRead(read func() (int64, error), want int64, what string) (float64, error) {
	mt.drop()
	start := time.Now()
	n, err := read()
	d := time.Since(start).Seconds()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if n != want {
		return 0, fmt.Errorf("%s: read %d bytes, the dataset has %d", what, n, want)
	}
	return d, nil
}

// first and second time the operations of a mount's first and second
// sessions on the tree at root; the ext4 baseline and every mount use them.
// first: ls -lR, then read every file; second: small files, then the big one.
func (mt *mountBench) first(ctx context.Context, run int, who, root string) error {
	mt.drop()
	d, err := lsTime(ctx, "-lR", root)
	if err != nil {
		return err
	}
	mt.b.record(mrLs, who, d)
	mt.b.progress(run, who, "ls -lR", d, "s")
	d, err = mt.timedRead(func() (int64, error) { return readAll(root) }, mt.shape.bytes, "read every file")
	if err != nil {
		return err
	}
	rate := float64(mt.shape.bytes) / 1e6 / d
	mt.b.record(mrRead, who, d)
	mt.b.record(mrReadRate, who, rate)
	mt.b.progress(run, who, "read every file", d, fmt.Sprintf("s, %.1f MB/s", rate))
	return nil
}

func (mt *mountBench) second(run int, who, root string) error {
	files := 0
	d, err := mt.timedRead(func() (int64, error) {
		n, bytes, err := readSmall(root, smallLimit)
		files = n
		return bytes, err
	}, mt.shape.smallBytes, "read small files")
	if err != nil {
		return err
	}
	if files != mt.shape.smallFiles {
		return fmt.Errorf("read small files: read %d files, the dataset has %d", files, mt.shape.smallFiles)
	}
	mt.b.record(mrSmall, who, d)
	mt.b.progress(run, who, "read small files", d, "s")
	d, err = mt.timedRead(func() (int64, error) {
		return readFile(filepath.Join(root, mt.shape.big), make([]byte, 1<<20))
	}, mt.shape.bigBytes, "read "+mt.shape.big)
	if err != nil {
		return err
	}
	rate := float64(mt.shape.bigBytes) / 1e6 / d
	mt.b.record(mrBig, who, rate)
	mt.b.progress(run, who, "read the big file", rate, "MB/s")
	return nil
}

// baselines runs every phase on the source directories, cold.
func (mt *mountBench) baselines(ctx context.Context, run int) error {
	if err := mt.first(ctx, run, ext4Col, mt.ds.Dir); err != nil {
		return fmt.Errorf("ext4 baseline: %w", err)
	}
	if err := mt.second(run, ext4Col, mt.ds.Dir); err != nil {
		return fmt.Errorf("ext4 baseline: %w", err)
	}
	if mt.entries == "" {
		return nil
	}
	mt.drop()
	d, err := lsTime(ctx, "-l", filepath.Join(mt.entries, "d"))
	if err != nil {
		return fmt.Errorf("ext4 baseline: %w", err)
	}
	mt.b.record(mrDirLs, ext4Col, d)
	mt.b.progress(run, ext4Col, fmt.Sprintf("ls -l %d entries", mt.o.Entries), d, "s")
	return nil
}

// runTool measures one tool through two fresh mounts.
func (mt *mountBench) runTool(ctx context.Context, run int, m *mounter) error {
	fmt.Fprintf(m.log, "\n# run %d\n", run)
	mt.drop()
	hwm1, err := m.with(ctx, mt, func(s *mountSession) error {
		mt.b.record(mrReady, m.name, s.ready.Seconds())
		mt.b.progress(run, m.name, "mount ready", s.ready.Seconds(), "s")
		return mt.first(ctx, run, m.name, s.root)
	})
	if err != nil {
		return err
	}
	mt.drop()
	hwm2, err := m.with(ctx, mt, func(s *mountSession) error { return mt.second(run, m.name, s.root) })
	if err != nil {
		return err
	}
	peak := float64(max(hwm1, hwm2)) / 1e6
	mt.b.record(mrPeakRSS, m.name, peak)
	mt.b.progress(run, m.name, "mount peak RSS", peak, "MB")
	return nil
}

// runEntries lists the large directory through a fresh snapforge mount and
// follows the mount's memory. Its rows are recorded under "snapforge".
func (mt *mountBench) runEntries(ctx context.Context, run int, m *mounter) error {
	fmt.Fprintf(m.log, "\n# run %d\n", run)
	const col = "snapforge"
	_, err := m.with(ctx, mt, func(s *mountSession) error {
		rss := func(key, what string) error {
			_, v, err := procMemory(s.cmd.Process.Pid)
			if err != nil {
				return err
			}
			mt.b.record(key, col, float64(v)/1e6)
			mt.b.progress(run, m.name, what, float64(v)/1e6, "MB")
			return nil
		}
		if err := rss(mrDirBefore, "RSS before listing"); err != nil {
			return err
		}
		mt.drop()
		d, err := lsTime(ctx, "-l", filepath.Join(s.root, "d"))
		if err != nil {
			return err
		}
		mt.b.record(mrDirLs, col, d)
		mt.b.progress(run, m.name, fmt.Sprintf("ls -l %d entries", mt.o.Entries), d, "s")
		if err := rss(mrDirListed, "RSS after listing"); err != nil {
			return err
		}
		syscall.Sync()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2\n"), 0); err != nil {
			return fmt.Errorf("make the kernel forget the nodes: echo 2 > /proc/sys/vm/drop_caches: %w (needs root)", err)
		}
		select {
		case <-time.After(mt.o.ForgetWait):
		case <-ctx.Done():
			return ctx.Err()
		}
		return rss(mrDirForgot, "RSS after forgetting")
	})
	return err
}

// mountSession is one running mount process.
type mountSession struct {
	cmd   *exec.Cmd
	dir   string
	root  string        // the newest snapshot's copy of the source root
	ready time.Duration // from the start of the process until root was found
	done  chan struct{} // closed when the process has exited
	werr  error         // its exit, once done is closed
	out   *tailWriter   // the end of its output
	// byUnmount: the process is stopped by unmounting, not by SIGINT.
	byUnmount bool
	killed    bool // it did not exit when asked and got SIGKILL
}

// with mounts the newest snapshot at m.mnt, waits until it is ready, runs
// fn, reads the mount process's VmHWM and stops the mount, whatever fn
// returned. It returns the VmHWM in bytes.
func (m *mounter) with(ctx context.Context, mt *mountBench, fn func(*mountSession) error) (hwm int64, err error) {
	s, err := m.start(ctx, mt.o.MountTimeout)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := s.stop(m.log); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if note := s.exitNote(m.name); note != "" && !slices.Contains(mt.notes, note) {
			mt.notes = append(mt.notes, note)
		}
	}()
	if err := fn(s); err != nil {
		return 0, err
	}
	hwm, _, err = procMemory(s.cmd.Process.Pid)
	return hwm, err
}

// start runs the tool's mount command and waits until the mount is ready
// and the newest snapshot's folder is found.
func (m *mounter) start(ctx context.Context, timeout time.Duration) (*mountSession, error) {
	if mounted(m.mnt) {
		fmt.Fprintf(m.log, "\n# %s is still mounted from an earlier run: unmounting it\n", m.mnt)
		if err := unmount(m.mnt, m.log); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(m.mnt, 0o755); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(m.mnt); err != nil || len(ents) > 0 {
		return nil, fmt.Errorf("mountpoint %s is not an empty directory (%v): remove what is in it", m.mnt, err)
	}
	bg := context.WithoutCancel(ctx) // stopped by stop, never killed mid-mount by the context
	var cmd *exec.Cmd
	var ready, root string
	byUnmount := false
	switch t := m.t.(type) {
	case *snapforgeTool:
		cmd = t.cmd(bg, "", "--repo", t.p.repo, "mount", m.mnt)
		ready, root = filepath.Join(m.mnt, "README.txt"), filepath.Join(m.mnt, "latest")
	case *resticTool:
		cmd = t.cmd(bg, "", "-r", t.p.repo, "mount", m.mnt)
		ready, root = filepath.Join(m.mnt, "snapshots"), filepath.Join(m.mnt, "snapshots", "latest", t.p.src)
	case *borgTool:
		cmd = t.cmd(bg, "", "mount", "-f", t.last, m.mnt)
		root = filepath.Join(m.mnt, strings.TrimPrefix(t.p.src, "/"))
		ready, byUnmount = root, true
	default:
		return nil, fmt.Errorf("sfbench mount cannot mount %s's repositories", m.name)
	}
	s := &mountSession{cmd: cmd, dir: m.mnt, done: make(chan struct{}), out: &tailWriter{max: 4096}, byUnmount: byUnmount}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(m.log, s.out), io.MultiWriter(m.log, s.out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // unmounts if sfbench dies
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	go func() {
		s.werr = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(ready); err == nil && mounted(m.mnt) {
			break
		}
		select {
		case <-s.done:
			s.stop(m.log)
			return nil, fmt.Errorf("%s exited before the mount was ready (%v): %s", strings.Join(cmd.Args, " "), s.werr, strings.TrimSpace(s.out.String()))
		case <-ctx.Done():
			s.stop(m.log)
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop(m.log)
			return nil, fmt.Errorf("%s: no %s after %s (the mount is not ready; raise --mount-timeout if the tool is just slow)", strings.Join(cmd.Args, " "), ready, timeout)
		}
	}
	var err error
	if s.root, err = filepath.EvalSymlinks(root); err != nil {
		s.stop(m.log)
		return nil, fmt.Errorf("the newest snapshot's folder in the mount: %w", err)
	}
	s.ready = time.Since(start)
	fmt.Fprintf(m.log, "# mounted, pid %d; the source root is %s\n", cmd.Process.Pid, s.root)
	return s, nil
}

// stopGrace is how long a mount process gets to exit once asked.
const stopGrace = 15 * time.Second

// stop ends the mount: SIGINT for snapforge and restic (each unmounts and
// exits on it), fusermount3 -u for borg (whose foreground mount ignores
// SIGINT); then, if the mountpoint is still mounted, fusermount3 -u and
// -uz, and SIGKILL for a process that is still there. It fails only when
// the mountpoint stays mounted.
func (s *mountSession) stop(log io.Writer) error {
	select {
	case <-s.done:
	default:
		if s.byUnmount {
			unmount(s.dir, log)
		} else {
			s.cmd.Process.Signal(os.Interrupt)
		}
		select {
		case <-s.done:
		case <-time.After(stopGrace):
			s.killed = true
			fmt.Fprintf(log, "# pid %d still running %s after being asked to stop\n", s.cmd.Process.Pid, stopGrace)
		}
	}
	err := unmount(s.dir, log)
	select {
	case <-s.done:
	default:
		s.cmd.Process.Kill()
		<-s.done
		if err == nil {
			err = unmount(s.dir, log) // a killed process leaves a dead mount
		}
	}
	return err
}

// exitNote describes a mount process that did not end cleanly when asked.
func (s *mountSession) exitNote(name string) string {
	how := "SIGINT"
	if s.byUnmount {
		how = "fusermount3 -u"
	}
	if s.killed {
		return fmt.Sprintf("%s's mount process did not exit within %s of %s and was killed", name, stopGrace, how)
	}
	if s.werr == nil {
		return ""
	}
	var ee *exec.ExitError
	if errors.As(s.werr, &ee) {
		if ee.ExitCode() == 130 {
			return "" // 128 + SIGINT: restic's exit on SIGINT
		}
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() && st.Signal() == syscall.SIGINT {
			return ""
		}
	}
	return fmt.Sprintf("%s's mount process ended with %v after %s", name, s.werr, how)
}

// unmount unmounts dir if it is mounted: fusermount3 -u, then the lazy -uz,
// then umount2(MNT_DETACH).
func unmount(dir string, log io.Writer) error {
	for _, args := range [][]string{{"-u", dir}, {"-uz", dir}} {
		if !mounted(dir) {
			return nil
		}
		out, err := exec.Command("fusermount3", args...).CombinedOutput()
		fmt.Fprintf(log, "# fusermount3 %s: %v %s\n", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	if !mounted(dir) {
		return nil
	}
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("%s stays mounted: fusermount3 -u and -uz failed, umount2: %w; unmount it by hand", dir, err)
	}
	if mounted(dir) {
		return fmt.Errorf("%s stays mounted; unmount it by hand (fusermount3 -uz %s)", dir, dir)
	}
	return nil
}

// mounted reports whether dir is a mountpoint in /proc/self/mounts.
func mounted(dir string) bool {
	return slices.Contains(mountpoints(), filepath.Clean(dir))
}

// mountpoints lists the mountpoints of /proc/self/mounts, unescaped.
func mountpoints() []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			out = append(out, unescapeMount(f[1]))
		}
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space) of
// /proc/self/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
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

// procMemory returns a process's peak and current resident set (VmHWM and
// VmRSS of /proc/PID/status) in bytes.
func procMemory(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("memory of the mount process: %w", err)
	}
	return parseStatus(string(b))
}

// parseStatus reads VmHWM and VmRSS from the text of /proc/PID/status.
func parseStatus(s string) (hwm, rss int64, err error) {
	found := 0
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: unexpected %q", line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: %q: %w", line, err)
		}
		if k == "VmHWM" {
			hwm = n * 1024
		} else {
			rss = n * 1024
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("/proc status: no VmHWM and VmRSS (a kernel thread, or an exited process)")
	}
	return hwm, rss, nil
}

// tailWriter keeps the last max bytes written to it. It is safe for
// concurrent use.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// report turns the samples into medians, in table order.
func (mt *mountBench) report(specs []toolSpec) *MountReport {
	rep := &MountReport{Dataset: mt.ds, Runs: mt.o.Runs, Date: time.Now().Format(time.DateOnly), CPUs: runtime.NumCPU(),
		Command: mt.o.Command, SmallLimit: smallLimit, SmallFiles: mt.shape.smallFiles, SmallBytes: mt.shape.smallBytes,
		BigFile: mt.shape.big, BigBytes: mt.shape.bigBytes}
	if mt.entries != "" {
		rep.Entries = mt.o.Entries
	}
	for _, s := range specs {
		rep.Tools = append(rep.Tools, ToolInfo{Name: s.name, Version: s.version, Settings: s.settings, Snapforge: s.snapforge})
	}
	for _, spec := range mountRows {
		if spec.sonly && rep.Entries == 0 {
			continue
		}
		row := MountRow{Key: spec.key, Unit: spec.unit, Higher: spec.higher, SnapforgeOnly: spec.sonly,
			Median: map[string]float64{}, Samples: map[string][]float64{}}
		if spec.target != nil {
			t := *spec.target
			row.Target = &t
		}
		for col, xs := range mt.b.samples[spec.key] {
			if col == ext4Col {
				label := "ext4 cold"
				if mt.o.NoDrop || mt.b.noDrop != nil {
					label = "ext4 warm"
				}
				row.Ext4 = &Raw{Label: label, Median: median(xs), Samples: xs}
				continue
			}
			row.Median[col], row.Samples[col] = median(xs), xs
		}
		row.Label = rep.label(spec.key, mt.o.ForgetWait)
		rep.Rows = append(rep.Rows, row)
	}
	rep.Warm = mt.o.NoDrop || mt.b.noDrop != nil
	rep.Compute()
	n := &rep.Notes
	*n = append(*n, fmt.Sprintf("machine: %d CPUs; repositories under %s, mountpoints under %s, the dataset in %s: one disk", runtime.NumCPU(),
		filepath.Join(mt.o.Work, "repos"), filepath.Join(mt.o.Work, "mnt"), mt.ds.Dir))
	switch {
	case mt.o.NoDrop:
		*n = append(*n, "page cache NOT dropped (--no-drop): timings are warm")
	case mt.b.noDrop != nil:
		*n = append(*n, fmt.Sprintf("the page cache was NOT dropped (%v): timings are warm, run as root for cold ones", mt.b.noDrop))
	default:
		*n = append(*n, "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed phase, on the mounts and on ext4")
	}
	if mt.b.limit != nil {
		rep.ReadLimit = mt.b.limit.bps
		*n = append(*n, mt.b.limit.String())
	}
	*n = append(*n,
		"each run mounts every tool twice, each time a fresh process: `ls -lR` then read every file; then small files, then the big file; each tool's on-disk cache (restic's, borg's) is as its backup left it",
		fmt.Sprintf("read every file: a Go walker reading each regular file to its end with a 1 MiB buffer (%d files, %s; the bytes read are checked); small files: regular files < %s (%d bytes), in walk order", mt.shape.files, mb(mt.shape.bytes), sizeName(smallLimit), smallLimit),
		"mount peak RSS: VmHWM of the mount process (/proc/PID/status) just before unmounting, the larger of the run's two mounts; start of a cold mount: from starting the process, after dropping the page cache, until the mount is ready and the latest snapshot's copy of the source root is found (borg reads the archive's metadata here, the others lazily later)")
	if rep.Entries > 0 {
		*n = append(*n, fmt.Sprintf("%d-entry directory: %s/d, files of a few bytes, backed up by snapforge only; `ls -l` through a fresh mount against `ls -l` on ext4, both cold; RSS is VmRSS: right after mounting, after the listing, and %s after `echo 2 > /proc/sys/vm/drop_caches` (the kernel drops dentries and inodes and FUSE sends FORGET)", rep.Entries, mt.entries, mt.o.ForgetWait))
	}
	*n = append(*n, "targets: issue 4's; \"lists in about the time ext4 takes\" is read as ≤ 1.5× ext4, \"memory that falls back\" as: after forgetting, at most halfway between the RSS before and after the listing")
	for _, s := range specs {
		switch s.name {
		case "snapforge":
			*n = append(*n, "snapforge: `snapforge --repo R mount DIR`, the newest snapshot at DIR/latest")
		case "restic":
			*n = append(*n, "restic: `restic -r R mount DIR`, the newest snapshot at DIR/snapshots/latest/<absolute source path>")
		case "borg":
			*n = append(*n, "borg: `borg mount -f R::b1 DIR`, the archive's source path without its leading slash")
		}
	}
	*n = append(*n, mt.notes...)
	rep.Errors = mt.b.errs
	return rep
}
