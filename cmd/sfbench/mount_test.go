package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountEndToEnd runs `sfbench mount` for snapforge on a tiny dataset and
// a 2,000-entry directory, with the real snapforge built from this module
// and real FUSE mounts: every row of the report has a positive median (and
// an ext4 baseline where it has one), every target is judged, and no mount
// is left behind (FAULTS B6: the harness never leaves a mount it made).
func TestMountEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds snapforge and mounts its repositories")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE here (%v): the mount benchmarks need /dev/fuse", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: it writes /proc/sys/vm/drop_caches to make the kernel forget the mount's nodes")
	}
	work := t.TempDir()
	jsonPath := filepath.Join(work, "mount.json")
	var stdout, stderr bytes.Buffer
	args := []string{"mount", "--work", work, "--tools", "snapforge", "--scale", "0.002", "--runs", "1",
		"--entries", "2000", "--forget-wait", "1s", "--no-drop", "--json", jsonPath}
	err := run(t.Context(), args, &stdout, &stderr)
	for _, p := range mountpoints() {
		if strings.HasPrefix(p, work+"/") {
			t.Errorf("%s is still mounted after sfbench mount returned", p)
			unmount(p, &stderr) // so that TempDir's cleanup can remove it
		}
	}
	if err != nil && strings.Contains(stdout.String()+stderr.String(), "not available in this version") {
		t.Skipf("snapforge mount is not available in this build yet:\n%s", stderr.String())
	}
	if err != nil {
		t.Fatalf("sfbench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep MountReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %q", rep.Errors)
	}
	if rep.SmallFiles < 30 || rep.BigBytes < smallLimit || rep.Entries != 2000 {
		t.Errorf("dataset shape: %d small files, big file %s of %d bytes, %d entries", rep.SmallFiles, rep.BigFile, rep.BigBytes, rep.Entries)
	}
	withExt4 := map[string]bool{mrLs: true, mrRead: true, mrReadRate: true, mrSmall: true, mrBig: true, mrDirLs: true}
	if len(rep.Rows) != len(mountRows) {
		t.Errorf("%d rows, want %d", len(rep.Rows), len(mountRows))
	}
	for i, row := range rep.Rows {
		if i < len(mountRows) && row.Key != mountRows[i].key {
			t.Errorf("row %d is %s, want %s", i, row.Key, mountRows[i].key)
		}
		v, ok := row.Median["snapforge"]
		if !ok || !(v > 0) || len(row.Samples["snapforge"]) != 1 {
			t.Errorf("%s: snapforge = %v (present %v), samples %v: want one positive sample", row.Key, v, ok, row.Samples["snapforge"])
		}
		if withExt4[row.Key] {
			if row.Ext4 == nil || !(row.Ext4.Median > 0) {
				t.Errorf("%s: ext4 baseline %+v, want a positive one", row.Key, row.Ext4)
			} else if r := row.Ratios["snapforge/ext4"]; math.Abs(r-v/row.Ext4.Median) > 1e-9 {
				t.Errorf("%s: snapforge/ext4 = %v, want %v", row.Key, r, v/row.Ext4.Median)
			}
		}
		// --no-drop: the speed targets are not judged on warm timings,
		// memory is.
		if row.Target != nil && row.Target.Status != "met" && row.Target.Status != "missed" && row.Target.Status != "warm" {
			t.Errorf("%s: target %q not judged (status %q)", row.Key, row.Target.Text, row.Target.Status)
		}
		if row.Target != nil && (row.Target.Status == "warm") != (row.Target.Kind == tkMaxExt4 || row.Target.Kind == tkMinExt4) {
			t.Errorf("%s: target %q, status %q on warm timings", row.Key, row.Target.Text, row.Target.Status)
		}
		if !strings.Contains(stdout.String(), "| "+row.Label+" ("+row.Unit+")") {
			t.Errorf("the table has no row %q:\n%s", row.Label, stdout.String())
		}
	}
	// The mountpoints are left empty, ready for the next invocation.
	ents, err := os.ReadDir(filepath.Join(work, "mnt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if sub, err := os.ReadDir(filepath.Join(work, "mnt", e.Name())); err != nil || len(sub) > 0 {
			t.Errorf("mountpoint %s: %d entries, %v", e.Name(), len(sub), err)
		}
	}
}

// TestMountTargets checks the ratios and the met/missed judgement on a
// report with known medians, boundaries included.
func TestMountTargets(t *testing.T) {
	row := func(key string, sf, restic, ext4 float64) MountRow {
		r := MountRow{Key: key, Median: map[string]float64{}}
		if sf >= 0 {
			r.Median["snapforge"] = sf
		}
		if restic >= 0 {
			r.Median["restic"] = restic
		}
		if ext4 >= 0 {
			r.Ext4 = &Raw{Label: "ext4 cold", Median: ext4}
		}
		for _, s := range mountRows {
			if s.key == key {
				r.Unit, r.Higher = s.unit, s.higher
			}
			if s.key == key && s.target != nil {
				tg := *s.target
				r.Target = &tg
			}
		}
		return r
	}
	rep := &MountReport{
		Tools: []ToolInfo{{Name: "snapforge", Snapforge: true}, {Name: "restic"}},
		Rows: []MountRow{
			row(mrLs, 0.64, 11, 0.32),     // exactly 2×: met
			row(mrRead, 9.1, 21, 7.5),     // 1.21×: missed
			row(mrReadRate, 190, 82, 230), // no target
			row(mrSmall, 2.7, 11.2, -1),   // no baseline: not judged
			row(mrBig, 550.4, 139, 688),   // 0.8× exactly: met (higher is better)
			row(mrPeakRSS, 100, 187, -1),  // not below 100: missed
			row(mrDirLs, -1, -1, 0.5),     // snapforge failed: not judged
			row(mrDirBefore, 30, -1, -1),
			row(mrDirListed, 50, -1, -1),
			row(mrDirForgot, 40, -1, -1), // halfway back exactly: met
			{Key: "unknown", Median: map[string]float64{"snapforge": 1}},
		},
	}
	rep.Compute()
	want := map[string]string{mrLs: "met", mrRead: "missed", mrSmall: "", mrBig: "met", mrPeakRSS: "missed", mrDirLs: "", mrDirForgot: "met"}
	for _, r := range rep.Rows {
		if r.Target == nil {
			if _, ok := want[r.Key]; ok {
				t.Errorf("%s: no target", r.Key)
			}
			continue
		}
		if r.Target.Status != want[r.Key] {
			t.Errorf("%s: %s is %q, want %q", r.Key, r.Target.Text, r.Target.Status, want[r.Key])
		}
	}
	ratio := func(key, k string) (float64, bool) {
		for _, r := range rep.Rows {
			if r.Key == key {
				v, ok := r.Ratios[k]
				return v, ok
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		key, ratio string
		want       float64
	}{
		{mrLs, "snapforge/restic", 0.64 / 11},
		{mrLs, "snapforge/ext4", 2},
		{mrReadRate, "snapforge/restic", 190.0 / 82},
		{mrBig, "snapforge/ext4", 0.8},
		{mrPeakRSS, "snapforge/restic", 100.0 / 187},
	} {
		if v, ok := ratio(c.key, c.ratio); !ok || math.Abs(v-c.want) > 1e-9 {
			t.Errorf("%s %s = %v (present %v), want %v", c.key, c.ratio, v, ok, c.want)
		}
	}
	for _, c := range []struct{ key, ratio string }{{mrSmall, "snapforge/ext4"}, {mrDirLs, "snapforge/ext4"}, {mrDirBefore, "snapforge/restic"}} {
		if v, ok := ratio(c.key, c.ratio); ok {
			t.Errorf("%s %s = %v, want none", c.key, c.ratio, v)
		}
	}
	// A fallback that stays above halfway is missed.
	rep.Rows[9].Median["snapforge"] = 40.1
	rep.Compute()
	if s := rep.Rows[9].Target.Status; s != "missed" {
		t.Errorf("RSS 30 → 50 → 40.1: %q, want missed", s)
	}

	var out bytes.Buffer
	if err := rep.Render(&out, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| sf/restic |") {
		t.Errorf("the table has no sf/restic column:\n%s", out.String())
	}
	for prefix, status := range map[string]string{
		"| `ls -lR` of the latest snapshot (s)": "| met |",
		"| read every file (s)":                 "| MISSED |",
		"| then one 0.00 MB file (MB/s)":        "| met |",
		"| mount process peak RSS (MB)":         "| MISSED |",
		"| mount RSS 0s after":                  "| MISSED |",
	} {
		found := false
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, prefix) {
				found = true
				if !strings.HasSuffix(strings.Join(strings.Fields(line), " "), status) {
					t.Errorf("row %q does not end in %q", line, status)
				}
			}
		}
		if !found {
			t.Errorf("the table has no row %q:\n%s", prefix, out.String())
		}
	}

	// Warm timings (--no-drop, or a user who may not drop the cache) are
	// labelled warm and not judged against the targets, set for cold
	// reads; memory still is (acceptance run 4, 06).
	rep.Warm = true
	rep.Compute()
	for _, r := range rep.Rows {
		if r.Target == nil {
			continue
		}
		want := map[string]string{mrLs: "warm", mrRead: "warm", mrSmall: "warm", mrBig: "warm", mrPeakRSS: "missed", mrDirLs: "warm", mrDirForgot: "missed"}[r.Key]
		if r.Target.Status != want {
			t.Errorf("warm: %s is %q, want %q", r.Key, r.Target.Status, want)
		}
	}
	out.Reset()
	if err := rep.Render(&out, 0); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "cold") || !strings.Contains(s, "| ext4 warm |") || !strings.Contains(s, "warm cache") ||
		!strings.Contains(s, "| not judged: warm |") {
		t.Errorf("a warm report:\n%s", s)
	}
}

// TestParseStatus reads VmHWM and VmRSS as /proc/PID/status prints them.
func TestParseStatus(t *testing.T) {
	hwm, rss, err := parseStatus("Name:\tsnapforge\nVmPeak:\t 1300 kB\nVmHWM:\t   55676 kB\nVmRSS:\t   40000 kB\nThreads:\t7\n")
	if err != nil || hwm != 55676*1024 || rss != 40000*1024 {
		t.Errorf("parseStatus = %d, %d, %v; want %d, %d", hwm, rss, err, 55676*1024, 40000*1024)
	}
	if _, _, err := parseStatus("Name:\tkthreadd\nThreads:\t1\n"); err == nil {
		t.Error("a status without VmHWM parsed")
	}
	self, _, err := procMemory(os.Getpid())
	if err != nil || self <= 0 {
		t.Errorf("procMemory(self) = %d, %v", self, err)
	}
	if got := unescapeMount(`/tmp/a\040b\011c\134d\`); got != "/tmp/a b\tc\\d\\" {
		t.Errorf("unescapeMount = %q", got)
	}
}
