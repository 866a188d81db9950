package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestScaleEndToEnd runs `sfbench scale` on tiny datasets with the real
// snapforge, built from this module into the work directory: every point
// gets a row, real sizes and resources, and ratios that follow from the
// medians. A second invocation reuses the cached dataset.
func TestScaleEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds snapforge and backs up generated datasets")
	}
	work := t.TempDir()
	jsonPath := filepath.Join(work, "scale.json")
	var stdout, stderr bytes.Buffer
	args := []string{"scale", "--work", work, "--scale", "0.002", "--files", "1,2", "--bytes", "1",
		"--runs", "1", "--json", jsonPath, "--no-drop"}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("sfbench %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}

	// The table: a header, a separator and one row per point, 1× first.
	lines := strings.Split(stdout.String(), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "| point ") || !strings.HasPrefix(lines[1], "| ---") {
		t.Fatalf("no table at the top of the output:\n%s", stdout.String())
	}
	header := cells(lines[0])
	for i, want := range []string{"1×", "2× files"} {
		row := cells(lines[2+i])
		if len(row) != len(header) || row[0] != want {
			t.Errorf("table row %d = %q, want point %q with %d cells", i, row, want, len(header))
		}
		if slices.Contains(row, "–") {
			t.Errorf("table row %q has a missing value", row)
		}
	}
	if strings.HasPrefix(lines[4], "|") {
		t.Errorf("a third row: %q", lines[4])
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep ScaleReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Points) != 2 || rep.Points[0].Label != "1×" || rep.Points[1].Label != "2× files" {
		t.Fatalf("points %+v, want 1× and 2× files", rep.Points)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %q", rep.Errors)
	}
	base, more := rep.Points[0], rep.Points[1]
	if base.Dataset.Files < 30 || more.Dataset.Files <= base.Dataset.Files || more.Dataset.Bytes <= base.Dataset.Bytes {
		t.Errorf("datasets: 1× has %d files, %d bytes; 2× files has %d files, %d bytes",
			base.Dataset.Files, base.Dataset.Bytes, more.Dataset.Files, more.Dataset.Bytes)
	}
	for _, p := range rep.Points {
		for _, m := range scaleMeasures {
			v, ok := p.Median[m.key]
			if !ok || !(v > 0) || len(p.Samples[m.key]) != 1 || p.Samples[m.key][0] != v {
				t.Errorf("%s: %s = %v (present %v), samples %v: want one positive sample", p.Label, m.key, v, ok, p.Samples[m.key])
			}
		}
		// The packs hold the data, compressed where it can be: between a
		// tenth of it and all of it plus framing.
		packs := p.Median[msPacks] * 1e6
		if data := float64(p.Dataset.Bytes); packs < data/10 || packs > data*1.05 {
			t.Errorf("%s: packs %.0f bytes for %.0f bytes of data", p.Label, packs, data)
		}
		if p.Median[msRepo] < p.Median[msPacks]+p.Median[msIndex] {
			t.Errorf("%s: repository %v MB smaller than packs %v + index %v", p.Label, p.Median[msRepo], p.Median[msPacks], p.Median[msIndex])
		}
		if want := p.Median[msIndex] / (float64(p.Dataset.Bytes) / 1e9); !near(p.IndexPerGB, want) {
			t.Errorf("%s: index per GB %v, want %v", p.Label, p.IndexPerGB, want)
		}
	}
	for _, m := range scaleMeasures {
		for kind, got := range map[string]map[string]float64{"growth": base.Growth, "per_file": base.PerFile, "per_gb": base.PerGB} {
			if got[m.key] != 1 {
				t.Errorf("1×: %s of %s = %v, want 1", kind, m.key, got[m.key])
			}
		}
		g := more.Median[m.key] / base.Median[m.key]
		files := float64(more.Dataset.Files) / float64(base.Dataset.Files)
		data := float64(more.Dataset.Bytes) / float64(base.Dataset.Bytes)
		if !near(more.Growth[m.key], g) || !near(more.PerFile[m.key], g/files) || !near(more.PerGB[m.key], g/data) {
			t.Errorf("2× files: %s growth %v, per file %v, per GB %v; want %v, %v, %v",
				m.key, more.Growth[m.key], more.PerFile[m.key], more.PerGB[m.key], g, g/files, g/data)
		}
	}

	// The datasets are cached with their descriptions; a second invocation
	// (one point) uses the cache.
	for _, p := range rep.Points {
		var ds Dataset
		meta, err := os.ReadFile(p.Dataset.Dir + ".json")
		if err == nil {
			err = json.Unmarshal(meta, &ds)
		}
		if err != nil || ds != p.Dataset {
			t.Errorf("%s: cached description %+v (%v), want %+v", p.Label, ds, err, p.Dataset)
		}
	}
	stdout.Reset()
	stderr.Reset()
	args = []string{"scale", "--work", work, "--scale", "0.002", "--files", "1", "--bytes", "1", "--no-drop"}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("second invocation: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "using the existing dataset "+base.Dataset.Dir+"\n") || strings.Contains(stderr.String(), "generating") {
		t.Errorf("the second invocation did not reuse the cached dataset:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(work, "repos", "scale")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the repository was left behind: %v", err)
	}
}

// TestScaleRatios checks the ratios on fixed numbers, a missing measure
// included.
func TestScaleRatios(t *testing.T) {
	r := &ScaleReport{Points: []ScalePoint{
		{Label: "1×", Dataset: Dataset{Files: 100, Bytes: 2e9},
			Median: map[string]float64{msBackupCPU: 10, msBackupRSS: 50, msIndex: 4}},
		{Label: "4× files", Dataset: Dataset{Files: 400, Bytes: 3e9},
			Median: map[string]float64{msBackupCPU: 20, msBackupRSS: 55, msIndex: 9}},
		{Label: "4× bytes", Dataset: Dataset{Files: 400, Bytes: 8e9},
			Median: map[string]float64{msBackupCPU: 40}}, // RSS and index missing
	}}
	r.ComputeRatios()
	tests := []struct {
		point      int
		kind, key  string
		want       float64
		wantExists bool
	}{
		{0, "per_file", msBackupCPU, 1, true},
		{1, "growth", msBackupCPU, 2, true},
		{1, "per_file", msBackupCPU, 0.5, true},
		{1, "per_gb", msBackupCPU, 2 / 1.5, true},
		{1, "growth", msBackupRSS, 1.1, true},
		{2, "per_gb", msBackupCPU, 1, true},
		{2, "growth", msBackupRSS, 0, false},
		{2, "per_file", msVerify, 0, false},
	}
	for _, tt := range tests {
		got, ok := r.Points[tt.point].ratio(tt.kind, tt.key)
		if ok != tt.wantExists || (ok && !near(got, tt.want)) {
			t.Errorf("%s %s of %s = %v (present %v), want %v (present %v)", r.Points[tt.point].Label, tt.kind, tt.key, got, ok, tt.want, tt.wantExists)
		}
	}
	if got := []float64{r.Points[0].IndexPerGB, r.Points[1].IndexPerGB, r.Points[2].IndexPerGB}; got[0] != 2 || got[1] != 3 || got[2] != 0 {
		t.Errorf("index MB per GB = %v, want [2 3 0]", got)
	}
	var buf bytes.Buffer
	if err := r.Render(&buf); err != nil {
		t.Fatal(err)
	}
	if row := cells(strings.Split(buf.String(), "\n")[4]); row[0] != "4× bytes" || !slices.Contains(row, "–") {
		t.Errorf("4× bytes row %q: want a dash for the missing values", row)
	}
}

func TestScalePointsAndFlags(t *testing.T) {
	var labels []string
	for _, p := range scalePoints([]float64{4, 1, 16, 4}, []float64{1, 4}) {
		labels = append(labels, p.Label)
	}
	if got, want := strings.Join(labels, ", "), "1×, 4× files, 16× files, 4× bytes"; got != want {
		t.Errorf("points %s, want %s", got, want)
	}
	for _, args := range [][]string{
		{"scale"},
		{"scale", "--work", t.TempDir(), "--files", "1,x"},
		{"scale", "--work", t.TempDir(), "--bytes", "0"},
		{"scale", "--work", t.TempDir(), "--runs", "0"},
	} {
		err := run(t.Context(), args, new(bytes.Buffer), new(bytes.Buffer))
		if !errors.As(err, new(*usageError)) {
			t.Errorf("sfbench %q: %v, want a usage error", args, err)
		}
	}
}

// cells splits a Markdown table line into trimmed cells.
func cells(line string) []string {
	parts := strings.Split(strings.Trim(line, "|"), "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
