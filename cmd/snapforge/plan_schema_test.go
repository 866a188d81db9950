package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"snapforge/index/indextest"
)

// psSchema compiles docs/schemas/recovery-plan.schema.json with format and
// content assertions on.
func psSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	file, err := filepath.Abs(filepath.Join("..", "..", "docs", "schemas", "recovery-plan.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	s, err := c.Compile(file)
	if err != nil {
		t.Fatalf("compile the recovery plan schema: %v", err)
	}
	return s
}

func psValidate(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// psPlan is the part of a recovery plan the test looks into.
type psPlan struct {
	Version  int    `json:"plan_version"`
	BackupID string `json:"backup_id"`
	RootHash string `json:"root_hash"`
	Target   string `json:"target"`
	Actions  []struct {
		Op      string `json:"op"`
		Path    string `json:"path"`
		Type    string `json:"type"`
		Size    int64  `json:"size"`
		Blake3  string `json:"blake3"`
		Current *struct {
			Type   string `json:"type"`
			Target string `json:"target"`
		} `json:"current"`
	} `json:"actions"`
	Hooks  map[string]any `json:"hooks"`
	Checks []struct {
		Kind    string `json:"kind"`
		Path    string `json:"path"`
		Command string `json:"command"`
	} `json:"checks"`
	Space struct {
		StageBytes int64 `json:"stage_bytes"`
	} `json:"space"`
	Warnings []struct {
		Path    string `json:"path"`
		Problem string `json:"problem"`
	} `json:"warnings"`
	Errors []struct {
		Path    string `json:"path"`
		Problem string `json:"problem"`
	} `json:"errors"`
	Summary map[string]int64 `json:"summary"`
}

func psDecode(t testing.TB, doc []byte) psPlan {
	t.Helper()
	var p psPlan
	if err := json.Unmarshal(doc, &p); err != nil {
		t.Fatalf("recovery plan: %v\n%s", err, doc)
	}
	return p
}

// ops lists "op path" for every action, in plan order.
func (p psPlan) ops() []string {
	var out []string
	for _, a := range p.Actions {
		out = append(out, a.Op+" "+a.Path)
	}
	return out
}

// psCheckCounts checks that the summary counts the actions and that the
// staged bytes add up.
func psCheckCounts(t testing.TB, p psPlan) {
	t.Helper()
	n := map[string]int64{}
	var bytes int64
	for _, a := range p.Actions {
		n[a.Op]++
		if a.Op == "create" || a.Op == "replace" {
			bytes += a.Size
		}
	}
	for _, op := range []string{"create", "replace", "remove", "update"} {
		if p.Summary[op] != n[op] {
			t.Errorf("summary.%s = %d, the plan has %d such actions", op, p.Summary[op], n[op])
		}
	}
	if p.Summary["bytes"] != bytes || p.Space.StageBytes != bytes {
		t.Errorf("summary.bytes %d, space.stage_bytes %d; the actions stage %d", p.Summary["bytes"], p.Space.StageBytes, bytes)
	}
}

// TestPlanSchema validates real recovery plans against
// docs/schemas/recovery-plan.schema.json: the docs example, the dry run of a
// restore over a damaged live system (every op, a planted symlink, a
// crashed database's companions), the plan inside a restore's result, the
// plan of a live system already equal to the snapshot, and a plan that
// refuses to run. It also checks that the schema rejects broken plans.
// FAULTS E4 E11
func TestPlanSchema(t *testing.T) {
	t.Parallel()
	s := psSchema(t)

	// The example in the docs is a valid, instructive plan.
	ex, err := os.ReadFile(filepath.Join("..", "..", "docs", "schemas", "examples", "recovery-plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := psValidate(s, ex); err != nil {
		t.Errorf("docs/schemas/examples/recovery-plan.json does not match the schema:\n%v", err)
	}
	exPlan := psDecode(t, ex)
	psCheckCounts(t, exPlan)
	seen := map[string]bool{}
	for _, a := range exPlan.Actions {
		seen["op "+a.Op] = true
	}
	for _, c := range exPlan.Checks {
		seen["check "+c.Kind] = true
	}
	for _, want := range []string{"op create", "op replace", "op remove", "op update", "check blake3", "check sqlite_integrity", "check json", "check command"} {
		if !seen[want] {
			t.Errorf("the docs example has no %s", want)
		}
	}
	if len(exPlan.Warnings) == 0 || exPlan.Hooks == nil {
		t.Errorf("the docs example shows no warnings or no hooks")
	}

	// A live system, backed up, then damaged.
	base := t.TempDir()
	root := filepath.Join(base, "live")
	hooksLog := filepath.Join(base, "hooks.log")
	victim := filepath.Join(base, "victim.txt")
	indextest.WriteFile(t, victim, []byte("outside\n"))
	rbLive(t, root)
	r := newRepo(t)
	indextest.WriteFile(t, filepath.Join(r.dir, "profile.json"), rbProfile(root, hooksLog, true))
	snap := r.backup()
	m, _ := r.manifest(snap.BackupID)
	hashes := map[string]string{}
	for _, it := range m.Items {
		hashes[it.Path] = it.Blake3
	}
	rbDamage(t, root, victim)
	if err := os.Chmod(filepath.Join(root, "logs/app.log"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := indextest.Digest(t, root, nil)

	dry := r.ok("restore", "latest", "--in-place", "--dry-run", "--json")
	if err := psValidate(s, []byte(dry.stdout)); err != nil {
		t.Errorf("the dry run's plan does not match the schema:\n%v\n%s", err, dry.stdout)
	}
	indextest.CompareDigests(t, before, indextest.Digest(t, root, nil)) // a dry run changes nothing
	plan := psDecode(t, []byte(dry.stdout))
	wantOps := []string{
		"replace config/app.json",
		"remove config/new.json",
		"create config/ui.json",
		"replace data/config.json",
		"replace data/wirthforge.db",
		"remove data/wirthforge.db-shm",
		"remove data/wirthforge.db-wal",
		"update logs/app.log",
	}
	if got := plan.ops(); !slices.Equal(got, wantOps) {
		t.Errorf("plan actions:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(wantOps, "\n  "))
	}
	if plan.Version != 1 || plan.BackupID != snap.BackupID || plan.RootHash != snap.RootHash || plan.Target != root {
		t.Errorf("plan header: version %d, snapshot %s %s, target %s", plan.Version, plan.BackupID, plan.RootHash, plan.Target)
	}
	for _, a := range plan.Actions {
		if (a.Op == "create" || a.Op == "replace") && a.Blake3 != hashes[a.Path] {
			t.Errorf("%s %s: blake3 %s, the manifest has %s", a.Op, a.Path, a.Blake3, hashes[a.Path])
		}
		if a.Path == "data/config.json" && (a.Current == nil || a.Current.Type != "symlink" || a.Current.Target != "../../victim.txt") {
			t.Errorf("the planted symlink is not shown as the current entry: %+v", a.Current)
		}
	}
	psCheckCounts(t, plan)
	var checks []string
	for _, c := range plan.Checks {
		checks = append(checks, strings.Join(slices.DeleteFunc([]string{c.Kind, c.Path, c.Command}, func(s string) bool { return s == "" }), " "))
	}
	wantChecks := []string{"blake3", "sqlite_integrity data/wirthforge.db", "json config/app.json", "json config/ui.json", "json data/config.json",
		"command test -s data/config.json && echo smoke >> '" + hooksLog + "'"}
	if !slices.Equal(checks, wantChecks) {
		t.Errorf("checks %q, want %q", checks, wantChecks)
	}
	symWarn := false
	for _, w := range plan.Warnings {
		symWarn = symWarn || (w.Path == "data/config.json" && strings.Contains(w.Problem, "symlink"))
	}
	if !symWarn {
		t.Errorf("no warning that data/config.json is a symlink now: %+v", plan.Warnings)
	}

	// The restore's result carries the plan that ran.
	res := r.ok("restore", "latest", "--in-place", "--json")
	var result map[string]json.RawMessage
	if err := json.Unmarshal([]byte(res.stdout), &result); err != nil {
		t.Fatalf("restore --json: %v\n%v", err, res)
	}
	if err := psValidate(s, result["plan"]); err != nil {
		t.Errorf("the plan in the restore's result does not match the schema:\n%v\n%s", err, result["plan"])
	}
	if got := psDecode(t, result["plan"]).ops(); !slices.Equal(got, wantOps) {
		t.Errorf("the restore ran\n  %s\nthe dry run showed\n  %s", strings.Join(got, "\n  "), strings.Join(wantOps, "\n  "))
	}
	if string(result["rolled_back"]) != "false" {
		t.Errorf("restore rolled back: %v", res)
	}

	// Nothing left to do: an empty plan is a valid plan.
	again := r.ok("restore", "latest", "--in-place", "--dry-run", "--json")
	if err := psValidate(s, []byte(again.stdout)); err != nil {
		t.Errorf("the plan of a live system equal to the snapshot does not match the schema:\n%v\n%s", err, again.stdout)
	}
	if p := psDecode(t, []byte(again.stdout)); len(p.Actions) != 0 {
		t.Errorf("after the restore the plan still has %v", p.ops())
	}

	// A plan that refuses: the database changed and held open by this
	// process, and no stop hook (FAULTS E11). It is printed, valid, with
	// errors, and the command exits 1.
	indextest.WriteFile(t, filepath.Join(r.dir, "profile.json"), rbProfile(root, hooksLog, false))
	db, err := sql.Open("sqlite", "file:"+filepath.Join(root, "data/wirthforge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`INSERT INTO items (id, body) VALUES (100000, 'held open')`); err != nil {
		t.Fatal(err)
	}
	refused := r.expect(exitError, "restore", "latest", "--in-place", "--scope", "db", "--dry-run", "--json")
	if err := psValidate(s, []byte(refused.stdout)); err != nil {
		t.Errorf("a refused plan does not match the schema:\n%v\n%s", err, refused.stdout)
	}
	rp := psDecode(t, []byte(refused.stdout))
	if len(rp.Errors) == 0 || !strings.Contains(rp.Errors[0].Problem, "open by") || rp.Hooks != nil {
		t.Errorf("refused plan: errors %+v, hooks %v", rp.Errors, rp.Hooks)
	}

	// The schema rejects what is not a plan.
	broken := map[string]func(p map[string]any){
		"nothing (control)":  func(p map[string]any) {},
		"unknown op":         func(p map[string]any) { psAction(t, p, "replace")["op"] = "delete" },
		"no summary":         func(p map[string]any) { delete(p, "summary") },
		"warnings null":      func(p map[string]any) { p["warnings"] = nil },
		"extra field":        func(p map[string]any) { p["surprise"] = 1 },
		"unknown check kind": func(p map[string]any) { p["checks"].([]any)[0].(map[string]any)["kind"] = "sha256" },
		"json check no path": func(p map[string]any) { delete(p["checks"].([]any)[2].(map[string]any), "path") },
		"create with current": func(p map[string]any) {
			psAction(t, p, "create")["current"] = map[string]any{"type": "file", "size": 1, "mode": "0644"}
		},
		"replace without blake3": func(p map[string]any) { delete(psAction(t, p, "replace"), "blake3") },
		"remove without current": func(p map[string]any) { delete(psAction(t, p, "remove"), "current") },
		"remove with size":       func(p map[string]any) { psAction(t, p, "remove")["size"] = 5 },
		"plan version 2":         func(p map[string]any) { p["plan_version"] = 2 },
		"not in place":           func(p map[string]any) { p["in_place"] = false },
		"relative target":        func(p map[string]any) { p["target"] = "var/lib/wf" },
		"absolute action path":   func(p map[string]any) { psAction(t, p, "create")["path"] = "/etc/passwd" },
		"dotdot action path":     func(p map[string]any) { psAction(t, p, "create")["path"] = "config/../../etc" },
		"bad mode":               func(p map[string]any) { psAction(t, p, "remove")["current"].(map[string]any)["mode"] = "rw-r--r--" },
		"sha256 root hash":       func(p map[string]any) { p["root_hash"] = "sha256:" + strings.Repeat("0", 64) },
		"local time":             func(p map[string]any) { p["created_utc"] = "2026-11-27 10:00:00" },
	}
	names := make([]string, 0, len(broken))
	for n := range broken {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		var p map[string]any
		if err := json.Unmarshal([]byte(dry.stdout), &p); err != nil {
			t.Fatal(err)
		}
		broken[name](p)
		b, _ := json.Marshal(p)
		err := psValidate(s, b)
		switch {
		case name == "nothing (control)" && err != nil:
			t.Errorf("the dry run's plan, decoded and encoded again, does not match the schema: %v", err)
		case name != "nothing (control)" && err == nil:
			t.Errorf("the schema accepts a plan with %s", name)
		}
	}
}

// psAction returns the first action of plan p with op.
func psAction(t testing.TB, p map[string]any, op string) map[string]any {
	t.Helper()
	for _, a := range p["actions"].([]any) {
		if am := a.(map[string]any); am["op"] == op {
			return am
		}
	}
	t.Fatalf("the test's plan has no %s action", op)
	return nil
}
