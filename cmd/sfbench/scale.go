package main

// The scale subcommand: how snapforge's cost grows with the file count and
// with the data volume (issue 3, parts 3 and 4).
//
//	sfbench scale --work W [--scale S] [--files 1,4,16] [--bytes 1,4] [--runs N]
//	              [--json FILE] [--snapforge BIN] [--seed N] [--no-drop]
//
// Every point is one dataset made by gen: "F× files" is --scale S
// --files-scale F (only the source tree's small files multiply), "B× bytes"
// is --scale S*B --files-scale 1 (every size and count multiplies, the small
// files too), and "1×" is --scale S, the reference of every ratio. Datasets
// are cached under W/datasets, named by their parameters, and reused by later
// invocations. For every run and every point, snapforge backs the dataset up
// in place (as a PATH, so it reads and never writes it) into a fresh
// repository, and these are measured, each after dropping the page cache:
// the initial backup (wall time, peak RSS and CPU time from wait4), a
// no-change backup, and verify --read-data; after the initial backup, the
// apparent bytes of REPO/packs and REPO/index. The table shows medians over
// the runs, the index bytes per GB of data, and cost per file and per GB
// relative to the 1× point.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// scaleOptions configure runScale; scaleCommand fills them from the flags.
type scaleOptions struct {
	Work      string
	Scale     float64   // the 1× point's --scale
	Files     []float64 // files-scale multipliers, at the base scale
	Bytes     []float64 // scale multipliers, at files-scale 1
	Seed      uint64
	Runs      int
	JSON      string // report file, "" for none
	Snapforge string // binary; "" builds ./cmd/snapforge into Work/bin
	NoDrop    bool   // keep the page cache (tests): timings are warm
	Command   string // the command line, for the notes
}

// scaleCommand parses the scale subcommand's flags into fs, which main has
// already given --seed (and --dir, which scale ignores), and runs it.
func scaleCommand(ctx context.Context, fs *flag.FlagSet, args []string, seed *uint64, stdout, stderr io.Writer) error {
	o := scaleOptions{Command: "sfbench scale " + strings.Join(args, " ")}
	fs.StringVar(&o.Work, "work", "", "work directory: cached datasets, the repository, logs")
	fs.Float64Var(&o.Scale, "scale", 0.25, "scale of the 1× point (1.0 is about 1.7 GB)")
	files := fs.String("files", "1,4,16", "files-scale multipliers (more small files, the rest unchanged)")
	bytes := fs.String("bytes", "1,4", "scale multipliers at files-scale 1 (all sizes and counts)")
	fs.IntVar(&o.Runs, "runs", 1, "repetitions; the table shows medians")
	fs.StringVar(&o.JSON, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.Snapforge, "snapforge", "", "snapforge binary (default: build ./cmd/snapforge into WORK/bin)")
	fs.BoolVar(&o.NoDrop, "no-drop", false, "do not drop the page cache before each phase (warm timings; for tests)")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if o.Work == "" {
		return &usageError{"scale needs --work DIR"}
	}
	o.Seed = *seed
	var err error
	if o.Files, err = parseMultipliers("--files", *files); err != nil {
		return err
	}
	if o.Bytes, err = parseMultipliers("--bytes", *bytes); err != nil {
		return err
	}
	return runScale(ctx, o, stdout, stderr)
}

// parseMultipliers parses a comma-separated list of positive numbers.
func parseMultipliers(flagName, s string) ([]float64, error) {
	var out []float64
	for _, f := range splitList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) {
			return nil, &usageError{fmt.Sprintf("%s: %q is not a positive number", flagName, f)}
		}
		out = append(out, v)
	}
	return out, nil
}

// Measures of a point, in table order. The keys name them in the JSON.
const (
	msBackup      = "backup_s"
	msBackupCPU   = "backup_cpu_s"
	msBackupRSS   = "backup_rss_mb"
	msNoChange    = "nochange_s"
	msNoChangeCPU = "nochange_cpu_s"
	msNoChangeRSS = "nochange_rss_mb"
	msVerify      = "verify_s"
	msVerifyCPU   = "verify_cpu_s"
	msVerifyRSS   = "verify_rss_mb"
	msPacks       = "packs_mb"
	msIndex       = "index_mb"
	msIndexDisk   = "index_disk_mb"
	msRepo        = "repo_mb"
)

// scaleMeasures are every measure; head is its table column, "" for the
// JSON only.
var scaleMeasures = []struct{ key, head string }{
	{msBackup, "backup (s)"},
	{msBackupCPU, "backup CPU (s)"},
	{msBackupRSS, "backup RSS (MB)"},
	{msNoChange, "no-change (s)"},
	{msNoChangeCPU, ""},
	{msNoChangeRSS, "no-change RSS (MB)"},
	{msVerify, "verify (s)"},
	{msVerifyCPU, "verify CPU (s)"},
	{msVerifyRSS, "verify RSS (MB)"},
	{msPacks, "packs (MB)"},
	{msIndex, "index (MB)"},
	{msIndexDisk, "index on disk (MB)"},
	{msRepo, ""},
}

// scaleRatioColumns are the ratios the table shows, after the measures; the
// JSON has all of them for every measure.
var scaleRatioColumns = []struct{ kind, key, head string }{
	{"per_file", msBackupCPU, "backup CPU/file"},
	{"per_gb", msBackupCPU, "backup CPU/GB"},
	{"per_file", msNoChange, "no-change/file"},
	{"per_gb", msVerifyCPU, "verify CPU/GB"},
	{"growth", msBackupRSS, "backup RSS ×"},
}

// ScaleReport is the outcome of `sfbench scale`; the table and the JSON
// file are two renderings of it.
type ScaleReport struct {
	Scale     float64      `json:"scale"` // of the 1× point
	Seed      uint64       `json:"seed"`
	Runs      int          `json:"runs"`
	Snapforge string       `json:"snapforge"`
	Date      string       `json:"date"` // YYYY-MM-DD
	CPUs      int          `json:"cpus"`
	Command   string       `json:"command"`
	Points    []ScalePoint `json:"points"` // Points[0] is the 1× point
	Notes     []string     `json:"notes,omitempty"`
	Errors    []string     `json:"errors,omitempty"`
}

// ScalePoint is one row: a dataset and its medians.
type ScalePoint struct {
	Label      string               `json:"label"`
	FilesScale float64              `json:"files_x"` // multiplier of the source tree's file count
	BytesScale float64              `json:"bytes_x"` // multiplier of --scale
	Dataset    Dataset              `json:"dataset"`
	Median     map[string]float64   `json:"median"`
	Samples    map[string][]float64 `json:"samples"`
	// IndexPerGB is the index's apparent bytes per GB (10^9 bytes) of data
	// backed up, in MB; 0 when the index size is unknown.
	IndexPerGB float64 `json:"index_mb_per_gb"`
	// Relative to Points[0], per measure: Growth is value/value₁; PerFile
	// and PerGB divide that by the growth of the file count and of the data
	// bytes (1 = linear, below 1 = sublinear).
	Growth  map[string]float64 `json:"growth,omitempty"`
	PerFile map[string]float64 `json:"per_file,omitempty"`
	PerGB   map[string]float64 `json:"per_gb,omitempty"`
}

// scalePoints lists the points: 1× first, then the files points, then the
// bytes points, without repeats.
func scalePoints(files, bytes []float64) []ScalePoint {
	pts := []ScalePoint{{Label: "1×", FilesScale: 1, BytesScale: 1}}
	add := func(f, b float64, label string) {
		for _, p := range pts {
			if p.FilesScale == f && p.BytesScale == b {
				return
			}
		}
		pts = append(pts, ScalePoint{Label: label, FilesScale: f, BytesScale: b})
	}
	for _, f := range files {
		add(f, 1, fmt.Sprintf("%g× files", f))
	}
	for _, b := range bytes {
		add(1, b, fmt.Sprintf("%g× bytes", b))
	}
	return pts
}

// scaler is one invocation of `sfbench scale`. It keeps its samples in a
// bench (samples[measure][label]) to share the run's recording and cache
// dropping.
type scaler struct {
	o    scaleOptions
	b    *bench
	tool toolSpec
}

func runScale(ctx context.Context, o scaleOptions, stdout, stderr io.Writer) error {
	if err := checkRunsScale(o.Runs, o.Scale); err != nil {
		return err
	}
	work, err := workDir(o.Work, "logs", "datasets", "repos")
	if err != nil {
		return err
	}
	o.Work = work
	pts := scalePoints(o.Files, o.Bytes)
	for i := range pts {
		p := &pts[i]
		// 10 significant digits: 0.1×3 is named 0.3, not 0.30000000000000004
		scale, _ := strconv.ParseFloat(strconv.FormatFloat(o.Scale*p.BytesScale, 'g', 10, 64), 64)
		gen := GenOptions{Scale: scale, FilesScale: p.FilesScale, Seed: o.Seed}
		gen.Dir = filepath.Join(work, "datasets", fmt.Sprintf("dataset-s%g-f%g-seed%d", gen.Scale, gen.FilesScale, gen.Seed))
		if p.Dataset, err = cachedDataset(ctx, gen, stderr); err != nil {
			return err
		}
	}
	if o.Snapforge == "" {
		if o.Snapforge, err = buildSnapforge(ctx, work); err != nil {
			return err
		}
	}
	specs, err := resolveTools(ctx, []string{"snapforge"}, o.Snapforge, "")
	if err != nil {
		return err
	}
	s := &scaler{o: o, tool: specs[0],
		b: &bench{o: runOptions{Work: work}, out: stderr, samples: map[string]map[string][]float64{}}}
	for run := 1; run <= o.Runs; run++ {
		for k := range pts { // rotate the order so no point always goes first
			p := &pts[(k+run-1)%len(pts)]
			if err := s.runPoint(ctx, run, p); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "run %d  %s: %v\n", run, p.Label, err)
				s.b.errs = append(s.b.errs, fmt.Sprintf("run %d: %s: %v", run, p.Label, err))
			}
		}
	}
	rep := s.report(pts)
	return emitReport(func() error { return rep.Render(stdout) }, rep, o.JSON, len(rep.Errors), work)
}

// cachedDataset returns the dataset o describes, generating it when o.Dir
// does not exist. Its description is kept next to it in o.Dir + ".json" so
// a reuse need not hash it again; an interrupted generation is left under
// o.Dir + ".partial", never mistaken for a dataset.
func cachedDataset(ctx context.Context, o GenOptions, log io.Writer) (Dataset, error) {
	ds := Dataset{Dir: o.Dir, Scale: o.Scale, FilesScale: o.FilesScale, Seed: o.Seed}
	meta := o.Dir + ".json"
	if _, err := os.Stat(o.Dir); err == nil {
		if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &ds) == nil && ds.Tree != "" {
			fmt.Fprintf(log, "using the existing dataset %s\n", o.Dir)
			return ds, nil
		}
		fmt.Fprintf(log, "using the existing dataset %s (hashing it)\n", o.Dir)
		t, err := HashTree(o.Dir)
		if err != nil {
			return ds, err
		}
		ds.Files, ds.Bytes, ds.Tree = t.Files, t.Bytes, t.Root
	} else if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(log, "generating dataset %s (scale %g, files-scale %g, seed %d)\n", o.Dir, o.Scale, o.FilesScale, o.Seed)
		tmp := o
		tmp.Dir = o.Dir + ".partial"
		if err := os.RemoveAll(tmp.Dir); err != nil {
			return ds, err
		}
		st, err := Generate(ctx, tmp)
		if err != nil {
			return ds, err
		}
		if err := os.Rename(tmp.Dir, o.Dir); err != nil {
			return ds, err
		}
		ds.Files, ds.Bytes, ds.Tree = st.Files, st.Bytes, st.Root
	} else {
		return ds, err
	}
	b, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return ds, err
	}
	return ds, os.WriteFile(meta, append(b, '\n'), 0o644)
}

// runPoint backs one point's dataset up into a fresh repository, backs it
// up again unchanged, and verifies all data.
func (s *scaler) runPoint(ctx context.Context, run int, p *ScalePoint) (err error) {
	w := s.o.Work
	repo := filepath.Join(w, "repos", "scale")
	home := filepath.Join(w, "home", "scale")
	for _, d := range []string{repo, home} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	defer func() {
		os.RemoveAll(repo)
		os.RemoveAll(home)
	}()
	name := strings.NewReplacer("×", "x", " ", "-").Replace(p.Label)
	logPath := filepath.Join(w, "logs", fmt.Sprintf("scale-run%d-%s.log", run, name))
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

	t := s.tool.bind(toolPaths{repo: repo, src: p.Dataset.Dir, home: home, log: logf})
	if err := t.Init(ctx); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	phase := func(what, wall, cpu, rss string, build func() (*exec.Cmd, error)) error {
		cmd, err := build()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !s.o.NoDrop {
			s.b.dropCaches()
		}
		m, err := measure(cmd)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", what, strings.Join(cmd.Args, " "), err)
		}
		s.b.record(wall, p.Label, m.wall.Seconds())
		s.b.record(cpu, p.Label, m.cpu.Seconds())
		s.b.record(rss, p.Label, float64(m.maxRSS)/1e6)
		s.b.progress(run, p.Label, what, m.wall.Seconds(), fmt.Sprintf("s, CPU %.2f s, RSS %.1f MB", m.cpu.Seconds(), float64(m.maxRSS)/1e6))
		return nil
	}
	if err := phase("initial backup", msBackup, msBackupCPU, msBackupRSS,
		func() (*exec.Cmd, error) { return t.Backup(ctx, 1) }); err != nil {
		return err
	}
	sizes := map[string]int64{}
	for _, sz := range []struct {
		key, dir string
		size     func(string) (int64, error)
	}{
		{msPacks, filepath.Join(repo, "packs"), apparentSize},
		{msIndex, filepath.Join(repo, "index"), apparentSize},
		{msIndexDisk, filepath.Join(repo, "index"), allocatedSize},
		{msRepo, repo, apparentSize},
	} {
		n, err := sz.size(sz.dir)
		if err != nil {
			return err
		}
		sizes[sz.key] = n
		s.b.record(sz.key, p.Label, float64(n)/1e6)
	}
	s.b.progress(run, p.Label, "packs", float64(sizes[msPacks])/1e6, "MB")
	s.b.progress(run, p.Label, "index", float64(sizes[msIndex])/1e6, fmt.Sprintf("MB (%.3f MB on disk)", float64(sizes[msIndexDisk])/1e6))
	if err := phase("no-change backup", msNoChange, msNoChangeCPU, msNoChangeRSS,
		func() (*exec.Cmd, error) { return t.Backup(ctx, 2) }); err != nil {
		return err
	}
	return phase("verify --read-data", msVerify, msVerifyCPU, msVerifyRSS,
		func() (*exec.Cmd, error) { return t.Verify(ctx) })
}

// report turns the samples into medians and the ratios to the 1× point.
func (s *scaler) report(pts []ScalePoint) *ScaleReport {
	rep := &ScaleReport{Scale: s.o.Scale, Seed: s.o.Seed, Runs: s.o.Runs, Snapforge: s.o.Snapforge,
		Date: time.Now().Format(time.DateOnly), CPUs: runtime.NumCPU(), Command: s.o.Command}
	for _, p := range pts {
		p.Median, p.Samples = map[string]float64{}, map[string][]float64{}
		for _, m := range scaleMeasures {
			if xs := s.b.samples[m.key][p.Label]; len(xs) > 0 {
				p.Median[m.key], p.Samples[m.key] = median(xs), xs
			}
		}
		rep.Points = append(rep.Points, p)
	}
	rep.ComputeRatios()
	if s.o.NoDrop {
		rep.Notes = append(rep.Notes, "page cache NOT dropped (--no-drop): timings are warm")
	} else if s.b.noDrop != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the page cache was NOT dropped (%v): timings are warm, run as root for cold ones", s.b.noDrop))
	} else {
		rep.Notes = append(rep.Notes, "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed phase")
	}
	rep.Errors = s.b.errs
	return rep
}

// ComputeRatios fills IndexPerGB and the ratios of every point to
// Points[0]. A ratio is absent when a value or its reference is missing or 0.
func (r *ScaleReport) ComputeRatios() {
	if len(r.Points) == 0 {
		return
	}
	base := r.Points[0]
	for i := range r.Points {
		p := &r.Points[i]
		p.IndexPerGB, p.Growth, p.PerFile, p.PerGB = 0, nil, nil, nil
		if v, ok := p.Median[msIndex]; ok && p.Dataset.Bytes > 0 {
			p.IndexPerGB = v / (float64(p.Dataset.Bytes) / 1e9)
		}
		files := float64(p.Dataset.Files) / float64(base.Dataset.Files)
		bytes := float64(p.Dataset.Bytes) / float64(base.Dataset.Bytes)
		for k, v := range p.Median {
			v1, ok := base.Median[k]
			if !ok || v1 <= 0 {
				continue
			}
			g := v / v1
			putRatio(&p.Growth, k, g)
			if files > 0 && !math.IsInf(files, 0) {
				putRatio(&p.PerFile, k, g/files)
			}
			if bytes > 0 && !math.IsInf(bytes, 0) {
				putRatio(&p.PerGB, k, g/bytes)
			}
		}
	}
}

func putRatio(m *map[string]float64, k string, v float64) {
	if *m == nil {
		*m = map[string]float64{}
	}
	(*m)[k] = v
}

// ratio returns the named kind of ratio of measure k.
func (p *ScalePoint) ratio(kind, k string) (float64, bool) {
	var m map[string]float64
	switch kind {
	case "growth":
		m = p.Growth
	case "per_file":
		m = p.PerFile
	case "per_gb":
		m = p.PerGB
	}
	v, ok := m[k]
	return v, ok
}

// Render writes the report as a Markdown table, one row per point, followed
// by how to read it, the datasets and the notes.
func (r *ScaleReport) Render(w io.Writer) error {
	header := []string{"point", "files", "data (MB)"}
	for _, m := range scaleMeasures {
		if m.head != "" {
			header = append(header, m.head)
		}
	}
	header = append(header, "index MB/GB")
	for _, c := range scaleRatioColumns {
		header = append(header, c.head)
	}
	table := [][]string{header}
	for _, p := range r.Points {
		line := []string{p.Label, strconv.Itoa(p.Dataset.Files), formatValue(float64(p.Dataset.Bytes)/1e6, true)}
		for _, m := range scaleMeasures {
			if m.head != "" {
				v, ok := p.Median[m.key]
				line = append(line, formatValue(v, ok))
			}
		}
		line = append(line, formatValue(p.IndexPerGB, p.IndexPerGB > 0))
		for _, c := range scaleRatioColumns {
			cell := "–"
			if v, ok := p.ratio(c.kind, c.key); ok {
				cell = fmt.Sprintf("%.2f", v)
			}
			line = append(line, cell)
		}
		table = append(table, line)
	}
	var b strings.Builder
	writeMarkdown(&b, table)
	fmt.Fprintf(&b, "\nsnapforge %s; medians of %d run(s); %s, %d CPUs; MB = 10^6 bytes, GB = 10^9 bytes\n", r.Snapforge, r.Runs, r.Date, r.CPUs)
	fmt.Fprintf(&b, "command: %s\n", r.Command)
	b.WriteString("backup: the initial backup into a fresh repository; no-change: a second backup of the same tree; verify: verify --read-data of both snapshots; RSS: peak resident set, CPU: user+system, both from wait4\n")
	b.WriteString("packs, index: apparent bytes of REPO/packs and REPO/index after the initial backup (index on disk: allocated blocks; Badger preallocates a sparse 1 MiB DISCARD file); index MB/GB: index apparent MB per GB of data backed up\n")
	b.WriteString("X/file and X/GB: X per file (per GB of data) relative to the 1× point, 1.00 = grows linearly, below 1 = sublinear; backup RSS ×: peak RSS of the initial backup / its value at 1× (1.00 = flat)\n")
	for _, p := range r.Points {
		d := p.Dataset
		fmt.Fprintf(&b, "- %s: %s (scale %g, files-scale %g, seed %d): %d files, %s, tree %s\n", p.Label, d.Dir, d.Scale, d.FilesScale, d.Seed, d.Files, mb(d.Bytes), d.Tree)
	}
	return writeNotes(w, &b, r.Notes, r.Errors)
}
