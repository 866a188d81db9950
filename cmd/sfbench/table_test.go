package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// fixture is a small report: two snapforge variants, two peers, one failed
// phase (borg's verify), a baseline-only row.
func fixture() *Report {
	r := &Report{
		Dataset: Dataset{Dir: "/w/dataset", Scale: 0.05, FilesScale: 1, Seed: 1, Files: 597, Bytes: 85_600_000, Tree: "c8b9"},
		Runs:    3,
		Tools: []ToolInfo{
			{Name: "snapforge", Version: "/w/bin/snapforge", Settings: "plain", Snapforge: true},
			{Name: "snapforge-sqlite", Version: "/w/bin/snapforge", Settings: "profile", Snapforge: true},
			{Name: "restic", Version: "restic 0.14.0", Settings: "defaults"},
			{Name: "borg", Version: "borg 1.2.4", Settings: "-e none"},
		},
		Rows: []Row{
			{Phase: phInitial, Unit: "s",
				Median: map[string]float64{"snapforge": 1.5, "snapforge-sqlite": 1.6, "restic": 4, "borg": 2},
				Raw:    &Raw{Label: rawCp, Median: 0.5}},
			{Phase: phVerify, Unit: "s",
				Median: map[string]float64{"snapforge": 0.8, "snapforge-sqlite": 0.9, "restic": 2.5}},
			{Phase: phRepo, Unit: "MB",
				Median: map[string]float64{"snapforge": 66.7, "snapforge-sqlite": 66.7, "restic": 65.1, "borg": 690},
				Raw:    &Raw{Label: rawData, Median: 85.6}},
			{Phase: phRead, Unit: "s", Median: map[string]float64{}, Raw: &Raw{Label: rawRead, Median: 0.24}},
		},
		Notes:  []string{"a note"},
		Errors: []string{"run 1: borg: verify all data: exit status 2"},
	}
	r.ComputeRatios()
	return r
}

func TestRenderGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := fixture().Render(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "table.golden")
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

func TestRatios(t *testing.T) {
	r := fixture()
	tests := []struct {
		row   int
		key   string
		want  float64
		exist bool
	}{
		{0, "snapforge/restic", 1.5 / 4, true},
		{0, "snapforge/fastest", 1.5 / 2, true},
		{0, "snapforge-sqlite/fastest", 1.6 / 2, true},
		{0, "snapforge/raw", 1.5 / 0.5, true},
		{1, "snapforge/borg", 0, false}, // borg failed: no ratio
		{1, "snapforge/fastest", 0.8 / 2.5, true},
		{2, "snapforge/fastest", 66.7 / 65.1, true},
		{3, "snapforge/raw", 0, false},
	}
	for _, tt := range tests {
		got, ok := r.Rows[tt.row].Ratios[tt.key]
		if ok != tt.exist || (ok && got != tt.want) {
			t.Errorf("row %q %s = %v (present %v), want %v (present %v)", r.Rows[tt.row].Phase, tt.key, got, ok, tt.want, tt.exist)
		}
	}
	// The JSON carries the same numbers; no NaN or Inf can break it.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Rows[0].Ratios["snapforge/fastest"] != 0.75 {
		t.Errorf("JSON round trip lost a ratio: %v", back.Rows[0].Ratios)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{4, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
