package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// inplaceFixture is a small inplace report: the mutated case within the
// target, the empty-root case beyond it, a stage only one case ran.
func inplaceFixture() *InplaceReport {
	r := &InplaceReport{
		Dataset:   Dataset{Dir: "/w/dataset", Scale: 0.1, FilesScale: 1, Seed: 1, Files: 1183, Bytes: 171_662_195, Tree: "1049"},
		Runs:      3,
		Date:      "2026-11-27",
		CPUs:      2,
		Command:   "sfbench inplace --work /w --scale 0.1 --runs 3",
		Snapforge: "/w/bin/snapforge",
		BackupID:  "snap-1",
		Phases: []InplacePhase{
			{Key: ipPlain, Label: "plain", Median: map[string]float64{imWall: 2, imCPU: 1.5, imRSS: 60}},
			{Key: ipMutated, Label: "mutated", Median: map[string]float64{imWall: 2.9, imCPU: 2, imRSS: 63},
				Target: &Target{Text: "≤ 1.5× plain", Kind: tkMaxPlain, Value: 1.5}},
			{Key: ipEmpty, Label: "empty", Median: map[string]float64{imWall: 3.2, imCPU: 2.5, imRSS: 63},
				Target: &Target{Text: "≤ 1.5× plain", Kind: tkMaxPlain, Value: 1.5}},
			{Key: ipCopy, Label: "raw copy", Median: map[string]float64{imWall: 1.1}},
		},
		Stages: []InplaceStage{
			{Name: "plan", Median: map[string]float64{ipMutated: 0.75, ipEmpty: 0.01}},
			{Name: "stop hook", Median: map[string]float64{ipMutated: 0.2}},
			{Name: outsideStages, Median: map[string]float64{ipMutated: 0.2, ipEmpty: 0.1}},
		},
		Notes:  []string{"a note"},
		Errors: []string{"run 2: inplace_empty: failed at swap"},
	}
	r.Compute()
	return r
}

func TestInplaceRenderGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := inplaceFixture().Render(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "inplace.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("got\n%s\nwant\n%s", buf.Bytes(), want)
	}
}

// TestInplaceCompute judges the 1.5× target: below and on it is met, above
// it missed; without a plain restore there is neither ratio nor verdict.
func TestInplaceCompute(t *testing.T) {
	r := inplaceFixture()
	for _, tt := range []struct {
		i      int
		x      float64
		status string
	}{{0, 1, ""}, {1, 1.45, "met"}, {2, 1.6, "missed"}, {3, 0.55, ""}} {
		p := r.Phases[tt.i]
		if diff := p.XPlain - tt.x; diff > 1e-12 || diff < -1e-12 {
			t.Errorf("%s: × plain = %v, want %v", p.Key, p.XPlain, tt.x)
		}
		if got := statusOf(p.Target); got != tt.status {
			t.Errorf("%s: status %q, want %q", p.Key, got, tt.status)
		}
	}

	r.Phases[1].Median[imWall] = 3 // exactly 1.5×
	r.Compute()
	if got := statusOf(r.Phases[1].Target); got != "met" {
		t.Errorf("exactly 1.5× plain: status %q, want met", got)
	}

	delete(r.Phases[0].Median, imWall) // every plain restore failed
	r.Compute()
	for _, p := range r.Phases {
		if p.XPlain != 0 || statusOf(p.Target) != "" {
			t.Errorf("%s without a plain restore: × plain %v, status %q; want neither", p.Key, p.XPlain, statusOf(p.Target))
		}
	}

	// The JSON carries the verdicts.
	r = inplaceFixture()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back InplaceReport
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Phases[2].Target.Status != "missed" || back.Phases[1].XPlain != 1.45 {
		t.Errorf("JSON round trip: %+v", back.Phases)
	}
}

func statusOf(t *Target) string {
	if t == nil {
		return ""
	}
	return t.Status
}

// TestParseInplaceResult reads restore --in-place --json results: a
// successful one, a rolled-back one (the failed stage is named), and output
// that is not a result.
func TestParseInplaceResult(t *testing.T) {
	ok := `{"restore_id":"r1","stages":[{"name":"plan","outcome":"ok","duration_ms":750,"detail":"0 to create"},
		{"name":"safety snapshot","outcome":"ok","duration_ms":300,"detail":"safety-1: 3 files, 1 MiB"}],
		"plan":{"summary":{"create":0,"replace":6,"remove":1,"update":2,"unchanged":1177,"bytes":95800000}},"rolled_back":false}`
	r, err := parseInplaceResult([]byte(ok + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Stages) != 2 || r.Stages[0].DurationMS != 750 || r.Plan == nil ||
		r.Plan.Summary != (PlanSummary{Replace: 6, Remove: 1, Update: 2, Unchanged: 1177, Bytes: 95800000}) {
		t.Errorf("parsed %+v", r)
	}
	if got := r.failedStage(); got != "no stage failed" {
		t.Errorf("failedStage of a success = %q", got)
	}

	failed := `{"stages":[{"name":"swap","outcome":"failed","duration_ms":1,"detail":"create config: staged entry missing"},
		{"name":"rollback","outcome":"ok","duration_ms":6}],"rolled_back":true,"failure":"swap"}`
	r, err = parseInplaceResult([]byte(failed))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.failedStage(); got != "swap: create config: staged entry missing" || !r.RolledBack {
		t.Errorf("failedStage = %q, rolled back %v", got, r.RolledBack)
	}

	for _, bad := range []string{"", "restored x in place", `{"stages":[]}`} {
		if _, err := parseInplaceResult([]byte(bad)); err == nil {
			t.Errorf("parseInplaceResult(%q) accepted it", bad)
		}
	}
}

// TestInplaceEndToEnd runs `sfbench inplace` on a tiny dataset with the
// real snapforge built from this module: all three phases time, every
// restore is byte-identical to the dataset, the ratios and verdicts are
// there, the stages of both in-place cases are recorded, and the dataset
// itself is left as it was.
//
// It fails while the in-place restore cannot restore the benchmark dataset:
// see TestInPlaceIntoEmptyRoot and TestInPlaceNonJSONDotJSON.
func TestInplaceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds snapforge and restores a dataset nine times")
	}
	work := t.TempDir()
	jsonPath := filepath.Join(work, "inplace.json")
	var stdout, stderr bytes.Buffer
	args := []string{"inplace", "--work", work, "--scale", "0.002", "--runs", "1", "--no-drop", "--json", jsonPath}
	err := run(t.Context(), args, &stdout, &stderr)
	if err != nil {
		t.Fatalf("sfbench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep InplaceReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %q", rep.Errors)
	}
	if !strings.HasPrefix(rep.BackupID, "snap-") {
		t.Errorf("backup id %q", rep.BackupID)
	}
	for _, p := range rep.Phases {
		if p.Median[imWall] <= 0 {
			t.Errorf("%s: no wall time: %v", p.Key, p.Median)
		}
		if p.Key != ipCopy && (p.Median[imCPU] <= 0 || p.Median[imRSS] <= 0) {
			t.Errorf("%s: no CPU time or RSS: %v", p.Key, p.Median)
		}
		if p.XPlain <= 0 {
			t.Errorf("%s: no ratio to the plain restore", p.Key)
		}
		if p.Target != nil && p.Target.Status != "met" && p.Target.Status != "missed" {
			t.Errorf("%s: target not judged: %+v", p.Key, p.Target)
		}
	}
	for _, k := range []string{ipPlain, ipMutated, ipEmpty} {
		// Directory mtimes too: an in-place restore left those its swap
		// renamed into at the time of the swap.
		if c := rep.Checks[k]; !slices.Equal(c, []string{"byte-identical; owners, mtimes and hard links kept"}) {
			t.Errorf("check of %s: %q, want byte-identical with the metadata kept", k, c)
		}
	}
	var names []string
	for _, st := range rep.Stages {
		names = append(names, st.Name)
		if st.Name == "stage" && (st.Median[ipMutated] <= 0 || st.Median[ipEmpty] <= 0) {
			t.Errorf("stage %q: %v", st.Name, st.Median)
		}
	}
	for _, want := range []string{"plan", "safety snapshot", "stage", "verify", "swap", outsideStages} {
		if !slices.Contains(names, want) {
			t.Errorf("stages %q lack %q", names, want)
		}
	}
	if p := rep.Plans[ipMutated]; p.Replace == 0 || p.Create != 0 || p.Unchanged == 0 {
		t.Errorf("plan of the mutated live root: %+v; want replaces, unchanged files, no creates", p)
	}
	if p := rep.Plans[ipEmpty]; p.Create == 0 || p.Replace != 0 || p.Bytes != rep.Dataset.Bytes {
		t.Errorf("plan of the empty root: %+v; want creates of all %d bytes", p, rep.Dataset.Bytes)
	}
	tree, err := HashTree(rep.Dataset.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Root != rep.Dataset.Tree {
		t.Errorf("the dataset changed during the benchmark: tree %s, was %s", tree.Root, rep.Dataset.Tree)
	}
	if _, err := os.Stat(filepath.Join(work, "inplace")); err == nil {
		t.Errorf("%s/inplace is left behind without --keep", work)
	}
	for _, want := range []string{"| in-place full, empty live root", "| verify ", "note: snapforge only"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout.String())
		}
	}
}

// snapforgeCLI builds snapforge from this module and returns a function
// running it on repo, which fails the test on an exit code other than want.
func snapforgeCLI(t *testing.T, repo string) func(want int, args ...string) string {
	t.Helper()
	bin, err := buildSnapforge(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return func(want int, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"--repo", repo}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		if code != want {
			t.Errorf("snapforge %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out.String())
		}
		return out.String()
	}
}

// writeTree writes files (path → content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// backupID backs src up and returns the snapshot's id.
func backupID(t *testing.T, sf func(int, ...string) string, src string) string {
	t.Helper()
	var bk struct {
		BackupID string `json:"backup_id"`
	}
	if err := json.Unmarshal([]byte(sf(0, "--json", "backup", src)), &bk); err != nil || bk.BackupID == "" {
		t.Fatalf("backup --json: %v", err)
	}
	return bk.BackupID
}

// sameTrees fails the test when the trees at want and got differ.
func sameTrees(t *testing.T, want, got string) {
	t.Helper()
	a, err := HashTree(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := HashTree(got)
	if err != nil {
		t.Fatal(err)
	}
	if d := a.Diff(b); len(d) > 0 {
		t.Errorf("%s differs from %s in %d path(s): %q", got, want, len(d), first(d, 5))
	}
}

// TestInPlaceIntoEmptyRoot: an in-place full restore into an empty live
// root (every top-level entry is a create) must give the snapshot. It shows
// a bug of package restore, found by the benchmark: the swap of an entry at
// the top of the root looks for its staged copy in "stage/" (swap.go,
// step: openDirAt(stg, joinRel("stage", dir)) with dir "" gives "stage/",
// whose empty last name fails with ENOENT: "staged entry missing"), so the
// restore rolls back. The same holds for a replace of a top-level file.
func TestInPlaceIntoEmptyRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds snapforge")
	}
	dir := t.TempDir()
	src, repo, live := filepath.Join(dir, "src"), filepath.Join(dir, "repo"), filepath.Join(dir, "live")
	writeTree(t, src, map[string]string{"top.txt": "at the root\n", "config/app.conf": "a = 1\n"})
	sf := snapforgeCLI(t, repo)
	sf(0, "init")
	id := backupID(t, sf, src)
	if err := os.Mkdir(live, 0o755); err != nil {
		t.Fatal(err)
	}
	sf(0, "restore", id, "--in-place", "--target", live, "--scope", "full")
	sameTrees(t, src, live)

	// A top-level file replaced in a live root that has everything else.
	if err := os.WriteFile(filepath.Join(live, "top.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sf(0, "restore", id, "--in-place", "--target", live, "--scope", "full")
	sameTrees(t, src, live)
}

// TestInPlaceNonJSONDotJSON: a full in-place restore of a tree holding a
// file named *.json that is not strict JSON (the benchmark's source tree
// has such files; so do tsconfig.json or VS Code settings with comments)
// must succeed when that file is restored byte-identical: here it is not
// even touched, only another file changes. It shows a behaviour of package
// restore found by the benchmark: the smoke test (checks.go, smoke) parses
// every *.json of the scope and fails the restore, which rolls back,
// although the bytes equal the snapshot's (checked just before by BLAKE3):
// the check can only ever fail on content the snapshot itself holds.
// Suggested: a warning instead of a failure, or parse only files the
// restore wrote whose snapshot copy is JSON, or only the config unit's.
func TestInPlaceNonJSONDotJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("builds snapforge")
	}
	dir := t.TempDir()
	src, repo, live := filepath.Join(dir, "src"), filepath.Join(dir, "repo"), filepath.Join(dir, "live")
	files := map[string]string{"src/tsconfig.json": "// comments are fine here\n{\"strict\": true}\n", "data/state.txt": "v1\n"}
	writeTree(t, src, files)
	writeTree(t, live, files)
	writeTree(t, live, map[string]string{"data/state.txt": "v2, to be put back\n"})
	sf := snapforgeCLI(t, repo)
	sf(0, "init")
	id := backupID(t, sf, src)
	sf(0, "restore", id, "--in-place", "--target", live, "--scope", "full")
	sameTrees(t, src, live)
}
