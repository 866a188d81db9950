package main

// Tests of docs/runbook.md: its emergency procedure, run literally. Every
// ```sh block of a section is written to a file and run with `sh -e`, with
// only the runbook's variables set ($SNAPFORGE: this test binary through a
// wrapper that makes it the snapforge command, $REPO_COPY, $ROOT, $SNAP, and
// $NEWDIR, $SAFETY where a section says so). When a command in the runbook
// stops working, these tests fail.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"snapforge/index/indextest"
)

// Sections of docs/runbook.md the tests run (whole heading lines).
const (
	rbEmergency = "## Emergency restore"
	rbCheck     = "### 7. Check the result"
	rbNoLive    = "## Emergency restore without a live system"
	rbUndo      = "## Undo a restore with its safety snapshot"
	rbCrash     = "## After a crash"
)

// rbCopyItems is what the runbook's step 1 copies out of the repository.
var rbCopyItems = []string{"snapforge.json", "packs", "snapshots", "profile.json", "audit"}

// rbVars are the variables a runbook block may use without setting them.
var rbVars = []string{"SNAPFORGE", "REPO_COPY", "ROOT", "SNAP", "NEWDIR", "SAFETY"}

func rbReadDoc(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rbSection returns the lines of the section of doc headed by heading, up
// to the next heading of the same or a higher level, fenced blocks included.
func rbSection(t testing.TB, doc, heading string) []string {
	t.Helper()
	level := len(heading) - len(strings.TrimLeft(heading, "#"))
	var out []string
	in, found, fence := false, false, false
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "```") {
			fence = !fence
		} else if !fence && strings.HasPrefix(l, "#") {
			lv := len(l) - len(strings.TrimLeft(l, "#"))
			switch {
			case l == heading:
				in, found = true, true
				continue
			case in && lv <= level:
				in = false
			}
		}
		if in {
			out = append(out, l)
		}
	}
	if !found {
		t.Fatalf("docs/runbook.md has no heading %q", heading)
	}
	return out
}

// rbBlocks returns the ```sh blocks of a section, in order.
func rbBlocks(t testing.TB, doc, heading string) []string {
	t.Helper()
	var blocks []string
	var cur []string
	fence, sh := false, false
	for _, l := range rbSection(t, doc, heading) {
		switch {
		case !fence && strings.HasPrefix(l, "```"):
			fence, sh, cur = true, strings.TrimSpace(strings.TrimPrefix(l, "```")) == "sh", nil
		case fence && strings.HasPrefix(l, "```"):
			fence = false
			if sh {
				blocks = append(blocks, strings.Join(cur, "\n")+"\n")
			}
		case fence:
			cur = append(cur, l)
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("section %q of docs/runbook.md has no ```sh block", heading)
	}
	for _, b := range blocks {
		rbCheckVars(t, b)
	}
	return blocks
}

var (
	rbUseRE    = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	rbAssignRE = regexp.MustCompile(`(?m)^\s*([A-Za-z_][A-Za-z0-9_]*)=`)
)

// rbCheckVars fails when a block uses a variable that is neither one of the
// runbook's nor set in the block itself: the reader would not have it.
func rbCheckVars(t testing.TB, block string) {
	t.Helper()
	set := map[string]bool{}
	for _, m := range rbAssignRE.FindAllStringSubmatch(block, -1) {
		set[m[1]] = true
	}
	for _, m := range rbUseRE.FindAllStringSubmatch(block, -1) {
		if !slices.Contains(rbVars, m[1]) && !set[m[1]] {
			t.Errorf("a runbook block uses $%s, which the runbook never sets:\n%s", m[1], block)
		}
	}
}

// rbWrapper writes a script that runs this test binary as the snapforge
// command (TestMain switches on $SNAPFORGE_TEST_MAIN), as runCLI does.
func rbWrapper(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "snapforge")
	script := "#!/bin/sh\n" + envTestMain + "=1 exec '" + strings.ReplaceAll(exe, "'", `'\''`) + "' \"$@\"\n"
	indextest.WriteExecutable(t, p, []byte(script))
	return p
}

type rbResult struct {
	block          string
	code           int
	stdout, stderr string
}

func (r rbResult) String() string {
	return fmt.Sprintf("runbook block exited %d:\n%s--- stdout:\n%s\n--- stderr:\n%s", r.code, r.block, r.stdout, r.stderr)
}

// rbRun runs one block with `sh -e` in an empty working directory, with the
// variables vars and the extra environment env (KEY=VALUE).
func rbRun(t testing.TB, block string, vars map[string]string, env ...string) rbResult {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "block.sh")
	if err := os.WriteFile(script, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-e", script)
	cmd.Dir = dir
	cmd.Env = cliEnv(env...)
	for _, k := range sortedVarNames(vars) {
		cmd.Env = append(cmd.Env, k+"="+vars[k])
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := rbResult{block: block, stdout: stdout.String(), stderr: stderr.String(), code: -1}
	if cmd.ProcessState != nil {
		res.code = cmd.ProcessState.ExitCode()
	}
	if err != nil && res.code == 0 {
		t.Fatalf("run runbook block: %v\n%s", err, block)
	}
	return res
}

func sortedVarNames(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rbRunAll runs blocks in order; each must exit 0. Blocks that need b3sum
// are left out (and said so) when it is not installed.
func rbRunAll(t testing.TB, blocks []string, vars map[string]string) []rbResult {
	t.Helper()
	_, b3err := exec.LookPath("b3sum")
	var out []rbResult
	for _, b := range blocks {
		if b3err != nil && strings.Contains(b, "b3sum") {
			t.Logf("b3sum is not installed: not running\n%s", b)
			continue
		}
		res := rbRun(t, b, vars)
		if res.code != 0 {
			t.Fatalf("%v", res)
		}
		out = append(out, res)
	}
	return out
}

// ---- the sample live system ----

// rbProfileUnits are the profile's units (DESIGN.md, Profile), which the
// runbook's examples name.
var rbProfileUnits = map[string]any{
	"config": map[string]any{"paths": []string{"config/", "data/config.json"}},
	"db":     map[string]any{"paths": []string{"data/wirthforge.db"}, "sqlite": true},
	"logs":   map[string]any{"paths": []string{"logs/"}},
}

// rbInScope reports whether rel belongs to units config or db.
func rbInScope(rel string) bool {
	return rel == "config" || strings.HasPrefix(rel, "config/") || rel == "data/config.json" || rel == "data/wirthforge.db"
}

const rbDBRows = 200

// rbLive builds a live system in root: config files, logs and a real SQLite
// database in WAL mode (closed, as a quiet application leaves it).
func rbLive(t testing.TB, root string) {
	t.Helper()
	for p, b := range map[string][]byte{
		"config/app.json":  []byte(`{"theme": "dark", "port": 8080}` + "\n"),
		"config/ui.json":   []byte(`{"fps": 60}` + "\n"),
		"data/config.json": []byte(`{"schema": 3}` + "\n"),
		"logs/app.log":     []byte(strings.Repeat("INFO request ok\n", 200)),
	} {
		indextest.WriteFile(t, filepath.Join(root, p), b)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(root, "data/wirthforge.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range rbDBRows {
		if _, err := tx.Exec(`INSERT INTO items (id, body) VALUES (?, ?)`, i, fmt.Sprintf("row %d %s", i, strings.Repeat("x", 100))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// rbProfile returns a profile for root whose hooks (when hooks) append
// their names to hooksLog.
func rbProfile(root, hooksLog string, hooks bool) []byte {
	p := map[string]any{"name": "wf", "root": root, "units": rbProfileUnits}
	if hooks {
		q := "'" + hooksLog + "'"
		p["hooks"] = map[string]any{
			"stop":      "echo stop >> " + q,
			"start":     "echo start >> " + q,
			"smoke":     "test -s data/config.json && echo smoke >> " + q,
			"timeout_s": 30,
		}
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	return b
}

// rbDamage changes the live configuration and database after the backup:
// a config file rewritten, one deleted, one added,
// data/config.json replaced by a symlink to victim outside the root, and
// the database changed by an application that then crashed, leaving its
// -wal and -shm.
func rbDamage(t testing.TB, root, victim string) {
	t.Helper()
	indextest.WriteFile(t, filepath.Join(root, "config/app.json"), []byte(`{"theme": "light", "port": 9090, "debug": true}`+"\n"))
	if err := os.Remove(filepath.Join(root, "config/ui.json")); err != nil {
		t.Fatal(err)
	}
	indextest.WriteFile(t, filepath.Join(root, "config/new.json"), []byte(`{"new": true}`+"\n"))
	if err := os.Remove(filepath.Join(root, "data/config.json")); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Join(root, "data"), victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(root, "data/config.json")); err != nil {
		t.Fatal(err)
	}
	rbCrashDB(t, filepath.Join(root, "data/wirthforge.db"))
}

// rbCrashDB changes the database and leaves it as an application killed
// before a checkpoint does: the changes only in a -wal beside it.
func rbCrashDB(t testing.TB, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`DELETE FROM items WHERE id % 2 = 0`,
		`UPDATE items SET body = 'changed' WHERE id < 50`,
		`CREATE TABLE junk (x)`,
		`INSERT INTO junk VALUES (1), (2)`,
	} {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			t.Fatal(err)
		}
	}
	// The application dies here: its files as they are now.
	saved := map[string][]byte{}
	for _, s := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(path + s)
		if err != nil {
			db.Close()
			t.Fatalf("test setup: %v", err)
		}
		saved[s] = b
	}
	if len(saved["-wal"]) == 0 {
		t.Fatal("test setup: the changes should be in the -wal")
	}
	db.Close() // checkpoints and removes the -wal: undone below
	for s, b := range saved {
		if err := os.WriteFile(path+s, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rbRows opens a copy of the database at path (with its -wal, if any: the
// rows SQLite would see) and returns its rows after an integrity check.
// The live files are never opened, so no -wal or -shm appears beside them.
func rbRows(t testing.TB, path string) []string {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy.db")
	for _, s := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + s)
		if s != "" && os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp+s, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+cp)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("database %s: integrity_check = %q, %v", path, check, err)
	}
	rows, err := db.Query(`SELECT id, body FROM items ORDER BY id`)
	if err != nil {
		t.Fatalf("database %s: %v", path, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int
		var body string
		if err := rows.Scan(&id, &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s", id, body))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rbExpectRestored checks that units config and db of root equal snapshot
// m byte for byte: every item's type and BLAKE3, no other entry, no stale
// companion beside the database, and the database opens with wantRows.
func rbExpectRestored(t testing.TB, root string, m manifestDoc, wantRows []string) {
	t.Helper()
	items := map[string]manifestItem{}
	for _, it := range m.Items {
		if rbInScope(it.Path) {
			items[it.Path] = it
		}
	}
	if len(items) < 5 {
		t.Fatalf("the snapshot holds only %d items of units config and db: %+v", len(items), items)
	}
	// Every item, as the manifest says. (BLAKE3 before the database is
	// opened: opening it would add companions.)
	for p, it := range items {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		switch it.Type {
		case "dir":
			if !fi.IsDir() {
				t.Errorf("%s is a %v, the snapshot has a directory", p, fi.Mode().Type())
			}
		case "file":
			if !fi.Mode().IsRegular() {
				t.Errorf("%s is a %v, the snapshot has a file", p, fi.Mode().Type())
				continue
			}
			b, err := os.ReadFile(filepath.Join(root, p))
			if err != nil {
				t.Fatal(err)
			}
			if got := b3hex(b); got != it.Blake3 {
				t.Errorf("%s: BLAKE3 %s, the manifest has %s", p, got, it.Blake3)
			}
		default:
			t.Errorf("%s: unexpected item type %s in the test's snapshot", p, it.Type)
		}
	}
	// Nothing else in the scope.
	var extra []string
	filepath.WalkDir(filepath.Join(root, "config"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk: %v", err)
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if _, ok := items[filepath.ToSlash(rel)]; !ok {
			extra = append(extra, rel)
		}
		return nil
	})
	if len(extra) > 0 {
		t.Errorf("entries of the scope that the snapshot does not have: %v", extra)
	}
	db := filepath.Join(root, "data/wirthforge.db")
	if fi, err := os.Lstat(db + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("a %d-byte -wal is left beside the restored database (FAULTS E11)", fi.Size())
	}
	if _, err := os.Lstat(db + "-journal"); err == nil {
		t.Errorf("a -journal is left beside the restored database (FAULTS E11)")
	}
	if got := rbRows(t, db); !slices.Equal(got, wantRows) {
		t.Errorf("restored database has %d rows, want the snapshot's %d", len(got), len(wantRows))
	}
	if _, err := os.Lstat(filepath.Join(root, ".snapforge-restore")); err == nil {
		t.Errorf("the staging area is left in %s", root)
	}
}

func rbReadFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rbState is the live tree for before/after comparisons, without the
// database's -shm (SQLite rewrites it whenever the database is read, as the
// safety snapshot does) and without an empty -wal (which the safety
// snapshot's read-only SQLite connection creates when there is none).
func rbState(t testing.TB, root string) map[string]indextest.Entry {
	t.Helper()
	d := indextest.Digest(t, root, nil)
	delete(d, "data/wirthforge.db-shm")
	if e, ok := d["data/wirthforge.db-wal"]; ok && e.Size == 0 {
		delete(d, "data/wirthforge.db-wal")
	}
	return d
}

// ---- the test ----

// TestRunbookEmergencyRestore follows docs/runbook.md literally: a live
// system with a profile (stop, start and smoke hooks) and a real SQLite
// database is backed up; only the files the runbook's step 1 names are
// copied to another path (no index); the live system moves to another path
// (another machine) and its configuration and database are damaged (a
// symlink planted, a crashed application's -wal left). Then every ```sh
// block of "Emergency restore" runs in order, and units config and db must
// equal the snapshot byte for byte, with the database's rows. The
// "undo", "after a crash" and "without a live system" sections run too.
// FAULTS E4 E11 B3
func TestRunbookEmergencyRestore(t *testing.T) {
	t.Parallel()
	doc := rbReadDoc(t)
	emergency := rbBlocks(t, doc, rbEmergency)
	checks := rbBlocks(t, doc, rbCheck)
	noLive := rbBlocks(t, doc, rbNoLive)
	undo := rbBlocks(t, doc, rbUndo)
	crash := rbBlocks(t, doc, rbCrash)
	var restoreBlock string
	for _, b := range emergency {
		if strings.Contains(b, "--in-place") && !strings.Contains(b, "--dry-run") {
			if restoreBlock != "" {
				t.Fatalf("two in-place restore blocks in %q:\n%s\n%s", rbEmergency, restoreBlock, b)
			}
			restoreBlock = b
		}
	}
	if restoreBlock == "" {
		t.Fatalf("no in-place restore block (--in-place without --dry-run) in %q", rbEmergency)
	}
	// Step 1 copies what this test copies.
	var cp []string
	for _, l := range rbSection(t, doc, rbEmergency) {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "cp" && f[1] == "-a" {
			cp = f[2 : len(f)-1]
		}
	}
	if !slices.Equal(cp, rbCopyItems) {
		t.Fatalf("the runbook's step 1 copies %v; this test copies %v: make them agree", cp, rbCopyItems)
	}

	// Machine A: the live system, its repository, a backup.
	base := t.TempDir()
	orig := filepath.Join(base, "host-a/var/lib/wirthforge")
	hooksLog := filepath.Join(base, "hooks.log")
	rbLive(t, orig)
	r := newRepo(t)
	indextest.WriteFile(t, filepath.Join(r.dir, "profile.json"), rbProfile(orig, hooksLog, true))
	snap := r.backup()
	m, _ := r.manifest(snap.BackupID)
	snapRows := rbRows(t, filepath.Join(orig, "data/wirthforge.db"))
	if len(snapRows) != rbDBRows {
		t.Fatalf("test setup: %d rows", len(snapRows))
	}

	// A bare copy of the repository on machine B.
	repoCopy := filepath.Join(base, "host-b/srv/rescue/wf-repo")
	if err := os.MkdirAll(repoCopy, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-a"}, rbCopyItems...)
	cmd := exec.Command("cp", append(args, repoCopy+"/")...)
	cmd.Dir = r.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(repoCopy, "index")); !os.IsNotExist(err) {
		t.Fatalf("test setup: the copy has an index (%v)", err)
	}

	// The live system, now on machine B at another path (the profile's root
	// is gone), damaged.
	root := filepath.Join(base, "host-b/var/lib/wirthforge")
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(orig, root); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(base, "host-b/victim.txt")
	const victimText = "outside the live root: never written\n"
	indextest.WriteFile(t, victim, []byte(victimText))
	rbDamage(t, root, victim)
	logs := "INFO written after the backup\n"
	indextest.WriteFile(t, filepath.Join(root, "logs/app.log"), []byte(logs)) // unit logs: outside the scope
	damaged := rbState(t, root)
	damagedRows := rbRows(t, filepath.Join(root, "data/wirthforge.db"))
	if slices.Equal(damagedRows, snapRows) {
		t.Fatal("test setup: the damaged database has the snapshot's rows")
	}

	vars := map[string]string{"SNAPFORGE": rbWrapper(t), "REPO_COPY": repoCopy, "ROOT": root, "SNAP": snap.BackupID}

	// The emergency procedure, block by block.
	t.Run("emergency", func(t *testing.T) {
		out := rbRunAll(t, emergency, vars)
		rbExpectRestored(t, root, m, snapRows)
		if got := rbReadFile(t, filepath.Join(root, "logs/app.log")); got != logs {
			t.Errorf("logs/app.log (outside the scope) changed: %q", got)
		}
		if got := rbReadFile(t, victim); got != victimText {
			t.Errorf("the planted symlink's target outside the root was written: %q (FAULTS E4)", got)
		}
		if got := rbReadFile(t, hooksLog); got != "stop\nstart\nsmoke\n" {
			t.Errorf("hooks ran as %q, want stop, start, smoke", got)
		}
		all := ""
		for _, o := range out {
			all += o.stdout + o.stderr
		}
		for _, want := range []string{"index rebuilt", snap.BackupID + ": ok", "recovery plan: snapshot " + snap.BackupID, "restored " + snap.BackupID + " in place into " + root} {
			if !strings.Contains(all, want) {
				t.Errorf("the runbook's commands never printed %q:\n%s", want, all)
			}
		}
		if av := runCLI(t, cliOpts{}, "--repo", repoCopy, "audit", "verify"); av.code != 0 {
			t.Errorf("audit verify on the copy (step 1 copies audit/): %v", av)
		}
	})
	if t.Failed() {
		return
	}

	// Undo it with its safety snapshot: the damaged state comes back.
	t.Run("undo", func(t *testing.T) {
		var rows []struct {
			BackupID string   `json:"backup_id"`
			Tags     []string `json:"tags"`
		}
		res := runCLI(t, cliOpts{}, "--repo", repoCopy, "snapshots", "--json")
		if err := json.Unmarshal([]byte(expectCode(t, res, 0).stdout), &rows); err != nil {
			t.Fatal(err)
		}
		safety := ""
		for _, rw := range rows {
			if slices.Contains(rw.Tags, "safety") {
				safety = rw.BackupID
				break
			}
		}
		if safety == "" {
			t.Fatalf("no safety snapshot after the restore: %v", res)
		}
		uv := map[string]string{"SAFETY": safety}
		for k, v := range vars {
			uv[k] = v
		}
		os.Remove(hooksLog)
		rbRunAll(t, undo, uv)
		// Every file as it was; the database as SQLite's online backup
		// captured it: the same rows.
		got, want := rbState(t, root), maps.Clone(damaged)
		for _, s := range []string{"data/wirthforge.db", "data/wirthforge.db-wal"} {
			delete(got, s)
			delete(want, s)
		}
		indextest.CompareDigests(t, want, got)
		if rows := rbRows(t, filepath.Join(root, "data/wirthforge.db")); !slices.Equal(rows, damagedRows) {
			t.Errorf("after the undo the database has %d rows, want the %d it had before the restore", len(rows), len(damagedRows))
		}
	})
	if t.Failed() {
		return
	}

	// Killed in the middle of the swap: the next command rolls back.
	t.Run("crash", func(t *testing.T) {
		before := rbState(t, root)
		app := rbReadFile(t, filepath.Join(root, "config/app.json"))
		res := rbRun(t, restoreBlock, vars, "SNAPFORGE_CRASHPOINT=restore-swap-2")
		if res.code == 0 {
			t.Fatalf("the restore with a crash point was not killed: %v", res)
		}
		if _, err := os.Lstat(filepath.Join(root, ".snapforge-restore")); err != nil {
			t.Fatalf("the killed restore left no staging area (%v): %v", err, res)
		}
		if got := rbReadFile(t, filepath.Join(root, "config/app.json")); got == app {
			t.Fatalf("the kill came before the first swap step; the test wants a half-swapped live system")
		}
		out := rbRunAll(t, crash, vars)
		if !strings.Contains(out[0].stderr, "was rolled back") {
			t.Errorf("the next command did not say it rolled back: %v", out[0])
		}
		indextest.CompareDigests(t, before, rbState(t, root))
		if ptrs := indextest.Names(t, filepath.Join(repoCopy, "restores")); len(ptrs) > 0 {
			t.Errorf("restore records left in the repository: %v", ptrs)
		}
		// And the restore, run again, works.
		if res := rbRun(t, restoreBlock, vars); res.code != 0 {
			t.Fatalf("%v", res)
		}
		rbExpectRestored(t, root, m, snapRows)
		rbRunAll(t, checks, vars)
	})

	// No live system: into a new directory, checked as step 7 says.
	t.Run("new directory", func(t *testing.T) {
		newdir := filepath.Join(base, "host-c/wf-restored")
		nv := map[string]string{"NEWDIR": newdir}
		for k, v := range vars {
			nv[k] = v
		}
		rbRunAll(t, noLive, nv)
		nv["ROOT"] = newdir
		rbRunAll(t, checks, nv)
		rbExpectRestored(t, newdir, m, snapRows)
		if _, err := os.Lstat(filepath.Join(newdir, "logs")); err == nil {
			t.Errorf("unit logs was restored with --scope config,db")
		}
	})
}

// TestRunbookBlocksFailWhenBroken: the runner really fails on a broken
// command, an unset variable is caught, and a section's blocks are found in
// order, so a runbook that stops working cannot pass unnoticed.
func TestRunbookBlocksFailWhenBroken(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"SNAPFORGE": rbWrapper(t), "REPO_COPY": filepath.Join(t.TempDir(), "nothing"), "ROOT": t.TempDir(), "SNAP": "latest"}
	if res := rbRun(t, "\"$SNAPFORGE\" --repo \"$REPO_COPY\" repair index\n", vars); res.code == 0 {
		t.Errorf("repair index of a directory that is no repository succeeded: %v", res)
	}
	if res := rbRun(t, "\"$SNAPFORGE\" --repo \"$REPO_COPY\" restore \"$SNAP\" --in-place --target \"$ROOT\" --scope nosuchunit --dry-run\n", vars); res.code == 0 {
		t.Errorf("a restore from a missing repository succeeded: %v", res)
	}
	// sh -e: a failing command in the middle stops the block.
	if res := rbRun(t, "false\necho after\n", vars); res.code == 0 || strings.Contains(res.stdout, "after") {
		t.Errorf("sh -e went on after a failure: %v", res)
	}
	ft := &rbFakeTB{TB: t}
	rbCheckVars(ft, "cd \"$ROOT\"\nx=$(echo 1)\necho \"$x\" \"$REPO\"\n")
	if !ft.failed || !strings.Contains(ft.msg, "$REPO,") {
		t.Errorf("a block using $REPO was not caught: %q", ft.msg)
	}
	doc := "# T\n## A\n```sh\none\n```\n### A.1\n```sh\ntwo\n```\n```\nthree\n```\n## B\n```sh\nfour\n```\n"
	if got := rbBlocks(t, doc, "## A"); !slices.Equal(got, []string{"one\n", "two\n"}) {
		t.Errorf("blocks of ## A: %q", got)
	}
	if got := rbBlocks(t, doc, "### A.1"); !slices.Equal(got, []string{"two\n"}) {
		t.Errorf("blocks of ### A.1: %q", got)
	}
}

// rbFakeTB records Errorf calls instead of failing.
type rbFakeTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *rbFakeTB) Helper() {}
func (f *rbFakeTB) Errorf(format string, args ...any) {
	f.failed = true
	f.msg += fmt.Sprintf(format, args...)
}
