package restore_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/restore"
	"snapforge/restore/restoretest"
	"snapforge/snapshot"
)

// The in-place restore protocol on the sample live system of restoretest:
// scopes, the recovery plan, hooks, audit events, automatic rollback and
// recovery. Every comparison is of State: type, mode, owner, size, BLAKE3,
// mtime and link count of every entry, byte for byte.

// allUnits backs up every unit, the guarded one included.
var allUnits = []string{"config", "db", "logs", "models", "keys"}

// rtSetup builds the sample system and a real repository, and backs up
// every unit.
func rtSetup(t *testing.T) (*restoretest.System, *snapshot.Repo, string, *snapshot.Manifest) {
	t.Helper()
	s := restoretest.New(t)
	r, repo := indextest.NewRepo(t)
	m := s.Backup(t, r, allUnits...)
	return s, r, repo, m
}

func rtScope(t *testing.T, s *restoretest.System, m *snapshot.Manifest, names []string, include ...string) restore.Scope {
	t.Helper()
	sc, _, err := restore.ResolveScope(s.Profile, m, names, include)
	if err != nil {
		t.Fatalf("scope %v %v: %v", names, include, err)
	}
	return sc
}

func rtOptions(s *restoretest.System, sc restore.Scope) restore.Options {
	return restore.Options{Target: s.Root, Scope: sc, Hooks: s.Hooks(), Name: "sample-safety"}
}

// The paths each scope covers in the sample system (the profile's units;
// "*.tmp" is excluded by the profile and never touched; a database brings
// its companions).
var (
	dbPaths     = []string{"data/app.db", "data/app.db-wal", "data/app.db-shm", "data/app.db-journal"}
	configPaths = []string{"config", "data/config.json"}
	fullPaths   = append(append(append([]string{}, configPaths...), dbPaths...), "logs", "models")
)

func inScope(paths ...string) func(string) bool {
	under := restoretest.Under(paths...)
	return func(rel string) bool { return under(rel) && !strings.HasSuffix(rel, ".tmp") }
}

// rtCheckScope asserts that after a restore the scope equals the snapshot
// and everything else equals before.
func rtCheckScope(t *testing.T, name string, snap, before, after map[string]string, in func(string) bool) {
	t.Helper()
	restoretest.Equal(t, name+": the scope equals the snapshot", restoretest.Restrict(snap, in), restoretest.Restrict(after, in))
	out := restoretest.Not(in)
	restoretest.Equal(t, name+": everything outside the scope is as before", restoretest.Restrict(before, out), restoretest.Restrict(after, out))
}

// rtNoLeftovers asserts that no staging area and no unfinished-restore
// pointer remain.
func rtNoLeftovers(t *testing.T, root, repo string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, snapshot.StagingDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the staging area %s is still there (%v): %v", snapshot.StagingDir, err, indextest.Names(t, filepath.Join(root, snapshot.StagingDir)))
	}
	if names := indextest.Names(t, filepath.Join(repo, "restores")); len(names) > 0 {
		t.Errorf("restore pointers left in the repository: %v", names)
	}
}

type auditEvent struct {
	Seq     uint64         `json:"seq"`
	Op      string         `json:"op"`
	Params  map[string]any `json:"params"`
	Outcome string         `json:"outcome"`
}

// rtAudit returns the repository's audit events after seq.
func rtAudit(t *testing.T, repo string, seq uint64) []auditEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(repo, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func rtAuditSeq(t *testing.T, repo string) uint64 {
	t.Helper()
	ev := rtAudit(t, repo, 0)
	if len(ev) == 0 {
		return 0
	}
	return ev[len(ev)-1].Seq
}

// rtStageOps returns the restore_* events (the stages) in order.
func rtStageOps(ev []auditEvent) []auditEvent {
	var out []auditEvent
	for _, e := range ev {
		if strings.HasPrefix(e.Op, "restore_") {
			out = append(out, e)
		}
	}
	return out
}

func opsOf(ev []auditEvent) []string {
	var out []string
	for _, e := range ev {
		out = append(out, e.Op+"="+strings.SplitN(e.Outcome, ":", 2)[0])
	}
	return out
}

// rtCheckAuditOK asserts one ok event per stage of a successful restore
// with a stop, start and smoke hook, in protocol order, and the final
// restore event.
func rtCheckAuditOK(t *testing.T, repo string, seq uint64, res *restore.Result) {
	t.Helper()
	ev := rtAudit(t, repo, seq)
	want := []string{"restore_plan=ok", "restore_safety_snapshot=ok", "restore_stop_hook=ok", "restore_plan_again=ok", "restore_stage=ok",
		"restore_verify=ok", "restore_swap=ok", "restore_check=ok", "restore_start_hook=ok", "restore_smoke_test=ok", "restore_commit=ok"}
	stages := rtStageOps(ev)
	if got := opsOf(stages); !slices.Equal(got, want) {
		t.Errorf("audit stage events:\n  got  %v\n  want %v", got, want)
	}
	for _, e := range stages {
		if e.Params["backup_id"] != res.BackupID {
			t.Errorf("audit %s names backup %v, want %s", e.Op, e.Params["backup_id"], res.BackupID)
		}
		if e.Op != "restore_plan" && e.Params["restore_id"] != res.RestoreID {
			t.Errorf("audit %s names restore %v, want %s", e.Op, e.Params["restore_id"], res.RestoreID)
		}
	}
	last := ev[len(ev)-1]
	if last.Op != "restore" || last.Outcome != "ok" || last.Params["restore_id"] != res.RestoreID || last.Params["in_place"] != true {
		t.Errorf("last audit event %+v, want the in-place restore %s ok", last, res.RestoreID)
	}
}

func rtCheckSafety(t *testing.T, r *snapshot.Repo, res *restore.Result) {
	t.Helper()
	if len(res.Safety) == 0 {
		t.Fatal("no safety snapshot recorded")
	}
	for _, id := range res.Safety {
		sm, err := r.LoadManifest(id)
		if err != nil {
			t.Fatalf("safety snapshot %s: %v", id, err)
		}
		if !slices.Contains(sm.Tags, "safety") || !slices.Contains(sm.Tags, "pinned") || !slices.Contains(sm.Tags, "restore:"+res.RestoreID) {
			t.Errorf("safety snapshot %s tags %v, want safety, pinned, restore:%s", id, sm.Tags, res.RestoreID)
		}
	}
}

func rtHooks(t *testing.T, s *restoretest.System, want ...string) {
	t.Helper()
	if got := s.HookRuns(t); !slices.Equal(got, want) {
		t.Errorf("hooks ran %v, want %v", got, want)
	}
}

// TestInPlaceScopes restores config only, then the database only, then
// everything, each after the live system changed. Each time the scope
// equals the snapshot byte for byte, everything else is exactly as before,
// the hooks ran stop → start → smoke, every stage has its audit event, and
// nothing is left behind. The database comes back with the snapshot's rows
// and without the old -wal and -shm (FAULTS E11, second half).
func TestInPlaceScopes(t *testing.T) {
	ctx := t.Context()
	s, r, repo, m := rtSetup(t)
	snap, plain := restoretest.SnapshotState(t, r, m, false)
	snapRows := restoretest.DBRows(t, filepath.Join(plain, "data/app.db"))
	if len(snapRows) != restoretest.Rows {
		t.Fatalf("the snapshot's database has %d rows, want %d", len(snapRows), restoretest.Rows)
	}
	// The snapshot holds the live files as they were (the database as
	// SQLite's backup copied it: compared by rows).
	atBackup := restoretest.State(t, s.Root)
	restoretest.Equal(t, "snapshot of the live system", restoretest.Restrict(atBackup, inScope("config", "data/config.json", "logs", "models", "keys")),
		restoretest.Restrict(snap, inScope("config", "data/config.json", "logs", "models", "keys")))
	if _, ok := snap["config/session.tmp"]; ok {
		t.Fatal("the excluded config/session.tmp is in the snapshot")
	}

	s.Mutate(t)
	if rows := restoretest.DBRows(t, s.DB()); slices.Equal(rows, snapRows) {
		t.Fatal("mutating the database changed no rows")
	}

	run := func(name string, names []string) (before, after map[string]string, res *restore.Result) {
		t.Helper()
		s.ResetHooks(t)
		seq := rtAuditSeq(t, repo)
		before = restoretest.State(t, s.Root)
		res, err := restore.Run(ctx, r, m, rtOptions(s, rtScope(t, s, m, names)))
		if err != nil {
			t.Fatalf("%s: restore: %v", name, err)
		}
		after = restoretest.State(t, s.Root)
		rtHooks(t, s, "stop", "start", "smoke")
		rtCheckAuditOK(t, repo, seq, res)
		rtCheckSafety(t, r, res)
		rtNoLeftovers(t, s.Root, repo)
		if res.RolledBack || res.Failure != "" {
			t.Errorf("%s: result says rolled back %v, failure %q", name, res.RolledBack, res.Failure)
		}
		return before, after, res
	}

	t.Run("config", func(t *testing.T) {
		before, after, res := run("config", []string{"config"})
		rtCheckScope(t, "config", snap, before, after, inScope(configPaths...))
		if res.Scope != "config" {
			t.Errorf("result scope %q", res.Scope)
		}
		for _, p := range []string{"config/extra.conf", "config/extra.d"} {
			if _, ok := after[p]; ok {
				t.Errorf("extra %s is still there", p)
			}
		}
		if after["config/session.tmp"] != before["config/session.tmp"] {
			t.Error("the excluded config/session.tmp changed")
		}
		// The database is outside the scope: its -wal is still there.
		if _, ok := after["data/app.db-wal"]; !ok {
			t.Error("a config restore removed the database's -wal")
		}
	})

	t.Run("db", func(t *testing.T) {
		before, after, _ := run("db", []string{"db"})
		rtCheckScope(t, "db", snap, before, after, inScope(dbPaths...))
		for _, suf := range []string{"-wal", "-shm", "-journal"} {
			if _, err := os.Lstat(s.DB() + suf); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("FAULTS E11: data/app.db%s is beside the restored database (%v)", suf, err)
			}
		}
		if rows := restoretest.DBRows(t, s.DB()); !slices.Equal(rows, snapRows) {
			t.Errorf("the restored database has %d rows, the snapshot's %d; first differences: %v", len(rows), len(snapRows), firstDiff(rows, snapRows))
		}
	})

	t.Run("full", func(t *testing.T) {
		// Change the units restored above again, so all of them have work.
		restoretest.WriteFile(t, s.Path("config/app.json"), []byte(`{"changed": "again"}`+"\n"))
		restoretest.WriteFile(t, s.Path("config/late.conf"), []byte("late\n"))
		restoretest.LeaveWAL(t, s.DB(), `UPDATE items SET name = 'renamed' WHERE id = 7`)
		before, after, res := run("full", nil)
		in := inScope(fullPaths...)
		rtCheckScope(t, "full", snap, before, after, in)
		if res.Scope != "full" {
			t.Errorf("result scope %q", res.Scope)
		}
		if after["keys/server.key"] != before["keys/server.key"] || after["keys/server.key"] == snap["keys/server.key"] {
			t.Error("the guarded unit keys was restored by a full restore that did not name it")
		}
		if rows := restoretest.DBRows(t, s.DB()); !slices.Equal(rows, snapRows) {
			t.Errorf("the restored database differs from the snapshot's: %v", firstDiff(rows, snapRows))
		}
		// The whole scope now equals the plain restore of the snapshot,
		// and a fresh plan has nothing to do.
		plan, err := restore.NewPlan(ctx, r, m, rtOptions(s, rtScope(t, s, m, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Actions) != 0 {
			t.Errorf("a plan after the full restore still has %d actions: %+v", len(plan.Actions), plan.Actions)
		}
	})
}

func firstDiff(a, b []string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("row %d: %q vs %q", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(a), len(b))
}

// TestDryRunPlan: NewPlan changes nothing and lists exactly the actions a
// full restore needs, with the snapshot's sizes and hashes and the live
// entries they replace; --keep-extra keeps the extras (the database's
// companions still go) and a restore with it leaves them byte for byte.
func TestDryRunPlan(t *testing.T) {
	ctx := t.Context()
	s, r, repo, m := rtSetup(t)
	s.Mutate(t)
	before := restoretest.State(t, s.Root)
	sc := rtScope(t, s, m, nil)
	plan, err := restore.NewPlan(ctx, r, m, rtOptions(s, sc))
	if err != nil {
		t.Fatal(err)
	}
	restoretest.Equal(t, "the live system after a dry run", before, restoretest.State(t, s.Root))
	rtNoLeftovers(t, s.Root, repo)
	if len(s.HookRuns(t)) != 0 {
		t.Errorf("a dry run ran hooks: %v", s.HookRuns(t))
	}
	if err := plan.Err(); err != nil {
		t.Fatalf("plan refuses: %v", err)
	}
	want := map[string]string{
		"config/app.json":         "replace",
		"config/extra.conf":       "remove",
		"config/extra.d":          "remove",
		"config/sub/feature.toml": "create",
		"config/nginx.conf":       "update",
		"data/config.json":        "replace",
		"data/app.db":             "replace",
		"data/app.db-wal":         "remove",
		"data/app.db-shm":         "remove",
		"logs/app.log":            "replace",
		"logs/new.log":            "remove",
		"models/new.bin":          "remove",
	}
	got := map[string]string{}
	counts := map[string]int{}
	for _, a := range plan.Actions {
		if _, dup := got[a.Path]; dup {
			t.Errorf("path %s has two actions", a.Path)
		}
		got[a.Path] = a.Op
		counts[a.Op]++
		lst, lerr := os.Lstat(s.Path(a.Path))
		switch a.Op {
		case "create", "replace":
			n, err := r.FindNode(ctx, m, a.Path)
			if err != nil || n == nil {
				t.Fatalf("%s: not in the snapshot: %v", a.Path, err)
			}
			if a.Size != n.Size || a.Files != 1 || a.Blake3 != n.Hash.String() || a.Type != "file" {
				t.Errorf("%s %s: size %d files %d blake3 %s type %s; want the snapshot's size %d, 1 file, blake3 %s", a.Op, a.Path, a.Size, a.Files, a.Blake3, a.Type, n.Size, n.Hash)
			}
			if a.Op == "create" && (a.Current != nil || lerr == nil) {
				t.Errorf("create %s: current %+v, live %v", a.Path, a.Current, lerr)
			}
			if a.Op == "replace" && (a.Current == nil || lerr != nil || a.Current.Size != lst.Size() || a.Current.Type != "file") {
				t.Errorf("replace %s: current %+v, want the live file of %d bytes", a.Path, a.Current, lst.Size())
			}
		case "remove":
			if a.Current == nil || lerr != nil || (a.Current.Type == "file") != lst.Mode().IsRegular() {
				t.Errorf("remove %s: current %+v, live %v", a.Path, a.Current, lerr)
			}
		case "update":
			if !strings.Contains(a.Reason, "mode") {
				t.Errorf("update %s: reason %q, want the mode", a.Path, a.Reason)
			}
		}
		if a.Reason == "" {
			t.Errorf("%s %s: no reason", a.Op, a.Path)
		}
	}
	if len(got) != len(want) {
		t.Errorf("plan has %d actions, want %d:\n  got  %v\n  want %v", len(got), len(want), got, want)
	}
	for p, op := range want {
		if got[p] != op {
			t.Errorf("plan: %s is %q, want %q", p, got[p], op)
		}
	}
	if s := plan.Summary; s.Create != counts["create"] || s.Replace != counts["replace"] || s.Remove != counts["remove"] || s.Update != counts["update"] || s.Unchanged == 0 {
		t.Errorf("summary %+v does not count the actions %v", s, counts)
	}
	kinds := map[string][]string{}
	for _, c := range plan.Checks {
		kinds[c.Kind] = append(kinds[c.Kind], c.Path+c.Command)
	}
	if !slices.Contains(kinds["sqlite_integrity"], "data/app.db") || !slices.Contains(kinds["json"], "config/app.json") ||
		!slices.Contains(kinds["json"], "data/config.json") || len(kinds["command"]) != 1 || len(kinds["blake3"]) != 1 {
		t.Errorf("checks %v: want blake3, integrity of data/app.db, JSON of both .json files and the smoke command", kinds)
	}
	if plan.Hooks == nil || plan.Hooks.Stop != s.Profile.Hooks.Stop || plan.BackupID != m.BackupID || plan.Target != s.Root || !plan.InPlace {
		t.Errorf("plan header: hooks %+v, backup %s, target %s, in place %v", plan.Hooks, plan.BackupID, plan.Target, plan.InPlace)
	}
	if !plan.Space.OK || plan.Space.StageBytes <= 0 || plan.Space.NeededBytes < plan.Space.StageBytes {
		t.Errorf("space %+v", plan.Space)
	}
	b, err := json.Marshal(plan)
	if err != nil || !strings.Contains(string(b), `"plan_version":1`) {
		t.Errorf("plan JSON: %v %.200s", err, b)
	}

	t.Run("keep-extra", func(t *testing.T) {
		o := rtOptions(s, rtScope(t, s, m, []string{"config", "db"}))
		o.KeepExtra = true
		plan, err := restore.NewPlan(ctx, r, m, o)
		if err != nil {
			t.Fatal(err)
		}
		var removes []string
		for _, a := range plan.Actions {
			if a.Op == "remove" {
				removes = append(removes, a.Path)
			}
		}
		slices.Sort(removes)
		if !slices.Equal(removes, []string{"data/app.db-shm", "data/app.db-wal"}) {
			t.Errorf("with --keep-extra the plan removes %v; want only the database's companions", removes)
		}
		warned := map[string]bool{}
		for _, w := range plan.Warnings {
			warned[w.Path] = strings.Contains(w.Problem, "keep-extra")
		}
		if !warned["config/extra.conf"] || !warned["config/extra.d"] {
			t.Errorf("warnings %+v do not name the kept extras", plan.Warnings)
		}
		before := restoretest.State(t, s.Root)
		if _, err := restore.Run(ctx, r, m, o); err != nil {
			t.Fatal(err)
		}
		after := restoretest.State(t, s.Root)
		snap, _ := restoretest.SnapshotState(t, r, m, false)
		extras := restoretest.Under("config/extra.conf", "config/extra.d")
		in := func(rel string) bool {
			return inScope(append(append([]string{}, configPaths...), dbPaths...)...)(rel) && !extras(rel)
		}
		rtCheckScope(t, "keep-extra", snap, before, after, in)
		restoretest.Equal(t, "kept extras", restoretest.Restrict(before, extras), restoretest.Restrict(after, extras))
		if len(restoretest.Restrict(after, extras)) != 3 {
			t.Errorf("extras after: %v", restoretest.Restrict(after, extras))
		}
	})
}

// rtFailRun runs a full restore of the mutated sample system that must
// roll back, and checks that the live system is exactly as before,
// replaced files keep their inode numbers, and nothing is left behind.
func rtFailRun(t *testing.T, s *restoretest.System, r *snapshot.Repo, repo string, m *snapshot.Manifest, o restore.Options) (*restore.Result, uint64, error) {
	t.Helper()
	inos := map[string]uint64{}
	for _, p := range []string{"config/app.json", "config/extra.conf", "data/config.json", "data/app.db", "data/app.db-wal", "logs/app.log", "models/new.bin", "config/nginx.conf"} {
		inos[p] = restoretest.Ino(t, s.Path(p))
	}
	before := restoretest.State(t, s.Root)
	seq := rtAuditSeq(t, repo)
	s.ResetHooks(t)
	res, err := restore.Run(t.Context(), r, m, o)
	if err == nil {
		t.Fatal("the restore succeeded")
	}
	restoretest.Equal(t, "the live system after rollback", before, restoretest.State(t, s.Root))
	for p, ino := range inos {
		if got := restoretest.Ino(t, s.Path(p)); got != ino {
			t.Errorf("%s: inode %d after rollback, %d before", p, got, ino)
		}
	}
	return res, seq, err
}

// TestSmokeFailureRollsBack: FAULTS E13. The smoke command fails, or hangs
// past timeout_s: the restore rolls back on its own, the live system is
// byte for byte what it was (same inodes too), the application is stopped
// and started again, and the audit log has the failed smoke test and the
// rollback.
func TestSmokeFailureRollsBack(t *testing.T) {
	cases := []struct {
		name, smoke string
		timeout     int
		want        string
	}{
		{"exit 1", "echo smoke >> %s; exit 1", 10, "exit code 1"},
		{"hangs past timeout_s", "echo smoke >> %s; sleep 30", 1, "did not finish within 1s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, r, repo, m := rtSetup(t)
			s.Mutate(t)
			o := rtOptions(s, rtScope(t, s, m, nil))
			o.Hooks.Smoke = fmt.Sprintf(c.smoke, strconv.Quote(s.HookLog))
			o.Hooks.TimeoutS = c.timeout
			dirTimes := func() map[string]int64 {
				out := map[string]int64{}
				restoretest.Walk(t, s.Root, func(rel, _ string, st *unix.Stat_t) {
					if st.Mode&unix.S_IFMT == unix.S_IFDIR {
						out[rel] = st.Mtim.Nano()
					}
				})
				return out
			}
			timesBefore := dirTimes()
			start := time.Now()
			res, seq, err := rtFailRun(t, s, r, repo, m, o)
			// The directories the swap renamed into are as they were too
			// (but the database's, where SQLite makes and drops its
			// -wal/-shm as the application and the safety snapshot open it).
			timesAfter := dirTimes()
			delete(timesBefore, "data")
			delete(timesAfter, "data")
			if d := restoretest.Diff(timesBefore, timesAfter); len(d) > 0 {
				t.Errorf("directory mtimes after the rollback differ: %v", d)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("the restore took %v", d)
			}
			var rb *restore.RolledBackError
			if !errors.As(err, &rb) || rb.Stage != "smoke test" || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "rolled back") {
				t.Fatalf("error %T %v; want a RolledBackError at the smoke test saying %q", err, err, c.want)
			}
			if !res.RolledBack || len(rb.Safety) == 0 || !slices.Equal(rb.Safety, res.Safety) {
				t.Errorf("result rolled back %v, safety %v / %v", res.RolledBack, rb.Safety, res.Safety)
			}
			rtCheckSafety(t, r, res)
			rtNoLeftovers(t, s.Root, repo)
			rtHooks(t, s, "stop", "start", "smoke", "stop", "start")
			ev := rtAudit(t, repo, seq)
			got := opsOf(rtStageOps(ev))
			want := []string{"restore_plan=ok", "restore_safety_snapshot=ok", "restore_stop_hook=ok", "restore_plan_again=ok", "restore_stage=ok",
				"restore_verify=ok", "restore_swap=ok", "restore_check=ok", "restore_start_hook=ok", "restore_smoke_test=failed", "restore_rollback=ok"}
			if !slices.Equal(got, want) {
				t.Errorf("audit stages:\n  got  %v\n  want %v", got, want)
			}
			last := ev[len(ev)-1]
			if last.Op != "restore" || !strings.HasPrefix(last.Outcome, "failed") || last.Params["rolled_back"] != true {
				t.Errorf("last audit event %+v, want the failed restore, rolled back", last)
			}
		})
	}
}

// TestRollbackFailureIsCritical: FAULTS E14. The smoke test fails and the
// rollback itself fails (an injected EIO at its first step): a
// CriticalError names the pinned safety snapshot and the kept journal; the
// journal and the repository's pointer stay. Recover with the fault still
// there fails the same way; without it the live system comes back byte for
// byte and the staging area and pointer are gone.
func TestRollbackFailureIsCritical(t *testing.T) {
	ctx := t.Context()
	s, r, repo, m := rtSetup(t)
	s.Mutate(t)
	before := restoretest.State(t, s.Root)
	o := rtOptions(s, rtScope(t, s, m, nil))
	o.Hooks.Smoke = "echo smoke >> " + strconv.Quote(s.HookLog) + "; exit 1"
	fault := func(p string) error {
		if p == "rollback-0" {
			return fmt.Errorf("injected at %s: %w", p, syscall.EIO)
		}
		return nil
	}
	o.Fault = fault
	res, err := restore.Run(ctx, r, m, o)
	var ce *restore.CriticalError
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v; want a CriticalError", err, err)
	}
	if !errors.Is(err, syscall.EIO) || len(ce.Safety) == 0 || !strings.Contains(err.Error(), ce.Safety[0]) || !strings.Contains(err.Error(), ce.Journal) {
		t.Errorf("critical error %q: want the cause, the safety snapshot %v and the journal %s named", err, ce.Safety, ce.Journal)
	}
	if res.RolledBack {
		t.Error("the result says rolled back")
	}
	rtCheckSafety(t, r, res)
	staging := filepath.Join(s.Root, snapshot.StagingDir, ce.RestoreID)
	if ce.Journal != filepath.Join(staging, "journal") {
		t.Errorf("journal %s, want it in the staging area %s", ce.Journal, staging)
	}
	if fi, err := os.Stat(ce.Journal); err != nil || fi.Size() == 0 {
		t.Fatalf("the journal is not kept: %v", err)
	}
	pointer := filepath.Join(repo, "restores", ce.RestoreID+".json")
	if _, err := os.Stat(pointer); err != nil {
		t.Fatalf("the repository's pointer is gone: %v", err)
	}
	if len(restoretest.Diff(before, restoretest.State(t, s.Root))) == 0 {
		t.Error("the live system is as before although the rollback failed at its first step")
	}

	// The next start, with the fault still there: critical again, kept.
	if _, err := restore.Recover(ctx, r, restore.Options{Fault: fault}); !errors.As(err, &ce) {
		t.Fatalf("recover with the fault: %v; want a CriticalError", err)
	}
	if _, err := os.Stat(pointer); err != nil {
		t.Fatalf("a failed recovery removed the pointer: %v", err)
	}
	if _, err := os.Stat(ce.Journal); err != nil {
		t.Fatalf("a failed recovery removed the journal: %v", err)
	}

	s.ResetHooks(t)
	recs, err := restore.Recover(ctx, r, restore.Options{})
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	if len(recs) != 1 || recs[0].RestoreID != res.RestoreID || recs[0].Outcome != "rolled back" || recs[0].Steps == 0 {
		t.Errorf("recovered %+v", recs)
	}
	restoretest.Equal(t, "the live system after recovery", before, restoretest.State(t, s.Root))
	rtNoLeftovers(t, s.Root, repo)
	// Stopped by the failed rollback; the recovery stops it again (stop
	// hooks are idempotent: a kill may have cut a start hook short) and
	// starts it.
	rtHooks(t, s, "stop", "start")
	if recs, err := restore.Recover(ctx, r, restore.Options{}); err != nil || len(recs) != 0 {
		t.Errorf("a second recovery: %+v, %v; want nothing to do", recs, err)
	}
}

// TestDatabaseHeldOpen: FAULTS E11. Another process holds the database
// open and the profile has no stop hook: the restore refuses, naming the
// process, and changes nothing. With a stop hook that ends the process the
// restore runs, and the new database has no stale -wal or -shm beside it.
func TestDatabaseHeldOpen(t *testing.T) {
	ctx := t.Context()
	s, r, repo, m := rtSetup(t)
	_, plain := restoretest.SnapshotState(t, r, m, false)
	snapRows := restoretest.DBRows(t, filepath.Join(plain, "data/app.db"))
	s.Mutate(t)

	holder := exec.Command("/bin/sh", "-c", "exec 3<data/app.db; exec sleep 60")
	holder.Dir = s.Root
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	pid := holder.Process.Pid
	exited := make(chan struct{})
	go func() { holder.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	})
	// Wait until it holds the database.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", pid))
		if l == s.DB() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder never opened the database (fd 3 -> %q)", l)
		}
	}

	before := restoretest.State(t, s.Root)
	o := rtOptions(s, rtScope(t, s, m, []string{"db"}))
	o.Hooks = nil
	_, err := restore.Run(ctx, r, m, o)
	var pe *restore.PlanError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", pid)) || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("error %T %v; want a PlanError naming pid %d and the stop hook", err, err, pid)
	}
	restoretest.Equal(t, "the live system after the refusal", before, restoretest.State(t, s.Root))
	rtNoLeftovers(t, s.Root, repo)

	// With a stop hook that ends the holder, the restore goes ahead.
	o.Hooks = s.Hooks()
	o.Hooks.Stop = fmt.Sprintf("echo stop >> %s; kill -9 -%d; while [ -e /proc/%d/fd/3 ]; do sleep 0.05; done", strconv.Quote(s.HookLog), pid, pid)
	s.ResetHooks(t)
	res, err := restore.Run(ctx, r, m, o)
	if err != nil {
		t.Fatalf("restore with a stop hook: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the stop hook did not end the holder")
	}
	if res.RolledBack {
		t.Error("the restore rolled back")
	}
	rtHooks(t, s, "stop", "start", "smoke")
	for _, suf := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Lstat(s.DB() + suf); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data/app.db%s is beside the restored database (%v)", suf, err)
		}
	}
	if rows := restoretest.DBRows(t, s.DB()); !slices.Equal(rows, snapRows) {
		t.Errorf("restored rows differ from the snapshot's: %s", firstDiff(rows, snapRows))
	}
	rtNoLeftovers(t, s.Root, repo)
}

// TestDamagedDatabaseCopy: FAULTS E12. The snapshot's copy of the database
// fails integrity_check (it was backed up as a plain file, damaged): the
// restore stops with an IntegrityError before the swap and the live system
// is exactly as before.
func TestDamagedDatabaseCopy(t *testing.T) {
	ctx := t.Context()
	s := restoretest.New(t)
	r, repo := indextest.NewRepo(t)
	good, err := os.ReadFile(s.DB())
	if err != nil {
		t.Fatal(err)
	}
	// Damage a b-tree page of the table (not the header page): its page
	// type byte and cell pointers become garbage.
	bad := append([]byte(nil), good...)
	const page = 4096
	if len(bad) < 4*page {
		t.Fatalf("the sample database has only %d bytes", len(bad))
	}
	for i := 2*page + 0; i < 2*page+64; i++ {
		bad[i] = 0xA5
	}
	if err := os.WriteFile(s.DB(), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	plainProf := *s.Profile
	plainProf.Units = map[string]snapshot.Unit{}
	for k, u := range s.Profile.Units {
		u.SQLite = false
		plainProf.Units[k] = u
	}
	m := restoretest.BackupProfile(t, r, &plainProf, "config", "db")
	if n, err := r.FindNode(ctx, m, "data/app.db"); err != nil || n.Flags&snapshot.FlagSQLite != 0 || n.Hash != snapshot.Hash(bad) {
		t.Fatalf("the damaged database was not stored as a plain file: %+v, %v", n, err)
	}
	if err := os.WriteFile(s.DB(), good, 0o644); err != nil {
		t.Fatal(err)
	}
	before := restoretest.State(t, s.Root)
	s.ResetHooks(t)
	_, err = restore.Run(ctx, r, m, rtOptions(s, rtScope(t, s, m, []string{"db"})))
	var ie *restore.IntegrityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "data/app.db") || !strings.Contains(err.Error(), "integrity") {
		t.Fatalf("error %T %v; want an IntegrityError naming data/app.db", err, err)
	}
	restoretest.Equal(t, "the live system after the refused restore", before, restoretest.State(t, s.Root))
	rtNoLeftovers(t, s.Root, repo)
	rtHooks(t, s, "stop", "start") // stopped for the restore, started again
	if got := opsOf(rtStageOps(rtAudit(t, repo, 0))); !slices.Contains(got, "restore_verify=failed") || slices.Contains(got, "restore_swap=ok") {
		t.Errorf("audit stages %v: want verify failed and no swap", got)
	}
}

// TestConcurrentRestoresRefused: FAULTS E16. While one restore waits in
// its stop hook, a second restore into the same target, into a directory
// inside it or into one that contains it is refused and changes nothing;
// the first then finishes.
func TestConcurrentRestoresRefused(t *testing.T) {
	ctx := t.Context()
	s, r, repo, m := rtSetup(t)
	s.Mutate(t)
	gate := filepath.Join(t.TempDir(), "go")
	o := rtOptions(s, rtScope(t, s, m, []string{"config"}))
	o.Hooks.Stop = fmt.Sprintf("echo stop >> %s; while [ ! -e %s ]; do sleep 0.02; done", strconv.Quote(s.HookLog), strconv.Quote(gate))
	type outcome struct {
		res *restore.Result
		err error
	}
	var out outcome
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		out.res, out.err = restore.Run(ctx, r, m, o)
	}()
	t.Cleanup(func() { // never leave the first one hanging, nor running past the repository
		os.WriteFile(gate, nil, 0o644)
		<-finished
	})
	for deadline := time.Now().Add(20 * time.Second); !slices.Contains(s.HookRuns(t), "stop"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first restore never reached its stop hook")
		}
	}
	before := restoretest.State(t, s.Root)
	for _, target := range []string{s.Root, s.Path("config"), filepath.Dir(s.Root)} {
		o2 := rtOptions(s, rtScope(t, s, m, []string{"config"}))
		o2.Target = target
		_, err := restore.Run(ctx, r, m, o2)
		if err == nil || !strings.Contains(err.Error(), "another restore is running") {
			t.Errorf("second restore into %s: %v; want it refused", target, err)
		}
	}
	restoretest.Equal(t, "the live system while the first restore waits", before, restoretest.State(t, s.Root))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	<-finished
	if out.err != nil {
		t.Fatalf("the first restore: %v", out.err)
	}
	snap, _ := restoretest.SnapshotState(t, r, m, false)
	rtCheckScope(t, "first restore", snap, before, restoretest.State(t, s.Root), inScope(configPaths...))
	rtNoLeftovers(t, s.Root, repo)
}

// TestHardLinkGroupsComeBackLinked: a hard link pair of the snapshot whose
// second name was replaced by a separate file comes back as one inode with
// both names.
func TestHardLinkGroupsComeBackLinked(t *testing.T) {
	cases := []struct {
		name    string
		content string
	}{
		{"second name changed", "a different certificate\n"},
		{"second name split off, same content", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			s, r, repo, m := rtSetup(t)
			a, b := s.Path("config/tls/cert.pem"), s.Path("config/tls/cert-link.pem")
			content := c.content
			if content == "" {
				old, err := os.ReadFile(b)
				if err != nil {
					t.Fatal(err)
				}
				content = string(old)
			}
			if err := os.Remove(b); err != nil {
				t.Fatal(err)
			}
			restoretest.WriteFile(t, b, []byte(content))
			if restoretest.Ino(t, a) == restoretest.Ino(t, b) {
				t.Fatal("the pair is still linked")
			}
			before := restoretest.State(t, s.Root)
			if _, err := restore.Run(ctx, r, m, rtOptions(s, rtScope(t, s, m, []string{"config"}))); err != nil {
				t.Fatal(err)
			}
			if ia, ib := restoretest.Ino(t, a), restoretest.Ino(t, b); ia != ib {
				t.Errorf("cert.pem (inode %d) and cert-link.pem (inode %d) are not one file again", ia, ib)
			}
			snap, _ := restoretest.SnapshotState(t, r, m, false)
			rtCheckScope(t, "hard links", snap, before, restoretest.State(t, s.Root), inScope(configPaths...))
			rtNoLeftovers(t, s.Root, repo)
		})
	}
}

// TestRefusedRestoreLeavesNoSQLiteSideFiles: a restore of the database
// that fails before its first swap step ("nothing in the live system was
// changed") leaves the live directory exactly as it was. The database is
// idle, in WAL mode, with no -wal or -shm beside it (the application is
// down).
func TestRefusedRestoreLeavesNoSQLiteSideFiles(t *testing.T) {
	s, r, repo, m := rtSetup(t)
	restoretest.ExecSQL(t, s.DB(), `UPDATE items SET qty = 0 WHERE id = 1`) // something to restore
	for _, suf := range []string{"-wal", "-shm"} {
		if err := os.Remove(s.DB() + suf); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	before := restoretest.State(t, s.Root)
	o := rtOptions(s, rtScope(t, s, m, []string{"db"}))
	o.Fault = func(p string) error {
		if p == "stage" {
			return fmt.Errorf("injected at %s: %w", p, syscall.EIO)
		}
		return nil
	}
	if _, err := restore.Run(t.Context(), r, m, o); !errors.Is(err, syscall.EIO) {
		t.Fatalf("restore: %v; want the injected EIO", err)
	}
	restoretest.Equal(t, "the live system after a restore abandoned before the swap", before, restoretest.State(t, s.Root))
	rtNoLeftovers(t, s.Root, repo)
}

// TestTopLevelEntries: entries at the top of the live root (a file, a
// directory, a symlink) are created, replaced and removed like any other.
func TestTopLevelEntries(t *testing.T) {
	s := restoretest.New(t)
	r, repo := indextest.NewRepo(t)
	m, err := r.Backup(t.Context(), snapshot.BackupOptions{Root: s.Root})
	if err != nil {
		t.Fatal(err)
	}
	restoretest.WriteFile(t, s.Path("notes.txt"), []byte("edited at the top\n"))
	if err := os.RemoveAll(s.Path("logs")); err != nil {
		t.Fatal(err)
	}
	restoretest.WriteFile(t, s.Path("extra-top.txt"), []byte("extra\n"))
	sc, _, err := restore.ResolveScope(nil, m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Run(t.Context(), r, m, restore.Options{Target: s.Root, Scope: sc}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	snap, _ := restoretest.SnapshotState(t, r, m, false)
	restoretest.Equal(t, "the live root", snap, restoretest.State(t, s.Root))
	rtNoLeftovers(t, s.Root, repo)
}

// TestScopeFollowsTheSnapshotsUnits: a unit grown in profile.json since a
// snapshot covers, when restored in place from that snapshot, only the
// paths the snapshot took for it: live files under the unit's new paths are
// not removed as "not in the snapshot" (they never were in it).
func TestScopeFollowsTheSnapshotsUnits(t *testing.T) {
	ctx := t.Context()
	s, r, _, m := rtSetup(t)
	if len(m.UnitPaths["config"]) == 0 {
		t.Fatalf("the snapshot recorded no paths for config: %v", m.UnitPaths)
	}
	restoretest.WriteFile(t, s.Path("extra/settings.ini"), []byte("added to the config unit later\n"))
	grown := *s.Profile
	grown.Units = maps.Clone(s.Profile.Units)
	cfg := grown.Units["config"]
	cfg.Paths = append(slices.Clone(cfg.Paths), "extra/")
	grown.Units["config"] = cfg
	sc, _, err := restore.ResolveScope(&grown, m, []string{"config"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(sc.Paths, "extra") {
		t.Fatalf("scope paths %q hold the unit's new path", sc.Paths)
	}
	plan, err := restore.NewPlan(ctx, r, m, rtOptions(s, sc))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range plan.Actions {
		if strings.HasPrefix(a.Path, "extra") {
			t.Errorf("the plan would %s %s, which the snapshot never covered", a.Op, a.Path)
		}
	}
	// A snapshot from before units' paths were recorded: today's profile.
	old := *m
	old.UnitPaths = nil
	if sc, _, err := restore.ResolveScope(&grown, &old, []string{"config"}, nil); err != nil || !slices.Contains(sc.Paths, "extra") {
		t.Errorf("scope of an older snapshot: %q, %v", sc.Paths, err)
	}
}
