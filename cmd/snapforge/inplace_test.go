package main

// CLI tests of `restore --in-place` (issue 5): snapforge killed with SIGKILL
// at every step of the protocol and during its rollback (FAULTS B3), disk
// full while staging (C3), a live root on another filesystem than the
// repository (E8), a read-only or immutable target (E9), not enough free
// space (E10), the --dry-run plan, a restore of one unit, and the exit codes
// of a rolled-back and of an integrity-failed restore.
//
// Every test starts from a small live system: config files, symlinks, a
// 300 KiB data file, a directory, a real SQLite database (in a unit marked
// sqlite; rollback-journal mode, WAL mode in TestInPlaceWALDatabase), logs
// and a directory outside every unit; a profile
// with stop, start and smoke hooks that log to a file; one backup; then
// the live tree is changed in every way a restore must undo (edits, extra
// files and directories, a removed file, a file replaced by a symlink, a
// directory replaced by a file, a changed symlink target, a mode change,
// new database rows). The template is built once per test and copied (cp -a)
// for each case. The live state is recorded exactly (type, mode, size,
// mtime, BLAKE3, link target and inode number of every entry), so
// "entirely old" means the very same inodes are back, not copies.

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/restore/restoretest"
)

// ---- the live state ----

// ipEntry is one live path, exactly.
type ipEntry struct {
	Type   string
	Mode   uint32
	Size   int64
	MTime  int64 // files and symlinks (directory mtimes change with every rename inside)
	Blake3 string
	Link   string
	Ino    uint64
}

func (e ipEntry) String() string {
	return fmt.Sprintf("%s mode=%o size=%d mtime=%d blake3=%.16s link=%q ino=%d", e.Type, e.Mode, e.Size, e.MTime, e.Blake3, e.Link, e.Ino)
}

// ipState records every path below root (restoretest.Walk: symlinks not
// followed, the staging directory left out), inode numbers included.
func ipState(t testing.TB, root string) map[string]ipEntry {
	t.Helper()
	out := map[string]ipEntry{}
	restoretest.Walk(t, root, func(rel, abs string, st *unix.Stat_t) {
		e := ipEntry{Mode: st.Mode & 0o7777, Ino: st.Ino, MTime: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.Type, e.MTime = "dir", 0
		case unix.S_IFREG:
			e.Type, e.Size = "file", st.Size
			b, err := os.ReadFile(abs)
			if err != nil {
				t.Fatalf("state read %s: %v", abs, err)
			}
			sum := blake3.Sum256(b)
			e.Blake3 = hex.EncodeToString(sum[:])
		case unix.S_IFLNK:
			var err error
			e.Type, e.Mode = "symlink", 0
			if e.Link, err = os.Readlink(abs); err != nil {
				t.Fatal(err)
			}
		default:
			e.Type = fmt.Sprintf("other(%o)", st.Mode&unix.S_IFMT)
		}
		out[rel] = e
	})
	return out
}

// noIno drops the inode numbers (for comparing with another tree).
func noIno(s map[string]ipEntry) map[string]ipEntry {
	out := make(map[string]ipEntry, len(s))
	for p, e := range s {
		e.Ino = 0
		out[p] = e
	}
	return out
}

// stateDiff lists the differences between want and got ("" when equal).
func stateDiff(want, got map[string]ipEntry) string {
	return strings.Join(restoretest.Diff(want, got), "\n  ")
}

func expectState(t testing.TB, what string, want, got map[string]ipEntry) {
	t.Helper()
	if d := stateDiff(want, got); d != "" {
		t.Fatalf("%s: the live tree differs:\n  %s", what, d)
	}
}

// ---- the template live system ----

type ipOpts struct {
	big  int  // bytes of data/big.bin (0: none)
	many int  // small files in data/many/ (0: none)
	wal  bool // the database is in WAL mode (else rollback journal)
}

// ipTemplate is a repository with one backup of a live tree, and that live
// tree changed since.
type ipTemplate struct {
	dir     string // live/, repo/, expect/
	o       ipOpts
	snap    string             // the backup's id
	want    map[string]ipEntry // the snapshot's in-scope state (no inodes), from a plain restore
	plan    ipPlan             // the dry-run plan of the changed tree
	content map[string][]byte  // original contents by path
	rows    int                // database rows in the snapshot
}

const (
	ipSnapRows = 200 // rows in the backed-up database
	ipLiveRows = 260 // rows after the live change
)

// ipDB adds rows [from, to) to the database at path (created in WAL or
// rollback-journal mode) and closes it cleanly: no -wal, -shm or -journal
// is left, as after an application's clean shutdown.
func ipDB(t testing.TB, path string, wal bool, from, to int) {
	t.Helper()
	mode := "DELETE"
	if wal {
		mode = "WAL"
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode("+mode+")")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		if _, err := tx.Exec(`INSERT INTO items (id, body) VALUES (?, ?)`, i, strings.Repeat(strconv.Itoa(i%10), 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Lstat(path + s); err == nil {
			t.Fatalf("test setup: %s%s left after a clean close", path, s)
		}
	}
}

// dbRows counts the rows of a database without writing anything beside it.
func dbRows(t testing.TB, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("%s: integrity_check %q, %v", path, check, err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// writeIPProfile writes <repo>/profile.json for a live root; the hooks log
// to base/hooks.log, and the smoke test fails while base/fail-smoke exists.
func writeIPProfile(t testing.TB, repo, root, base string, o ipOpts) {
	t.Helper()
	log := shellQuote(filepath.Join(base, "hooks.log"))
	fail := shellQuote(filepath.Join(base, "fail-smoke"))
	data := []string{"data/blob.bin", "data/sub/"}
	if o.big > 0 {
		data = append(data, "data/big.bin")
	}
	if o.many > 0 {
		data = append(data, "data/many/")
	}
	prof := map[string]any{
		"name": "app",
		"root": root,
		"units": map[string]any{
			"config": map[string]any{"paths": []string{"config/"}},
			"data":   map[string]any{"paths": data},
			"db":     map[string]any{"paths": []string{"data/app.db"}, "sqlite": true},
			"logs":   map[string]any{"paths": []string{"logs/"}},
		},
		"hooks": map[string]any{
			"stop":      "echo stop >> " + log,
			"start":     "echo start >> " + log,
			"smoke":     "test ! -e " + fail + " && test -s config/app.json && echo smoke >> " + log,
			"timeout_s": 30,
		},
	}
	b, err := json.MarshalIndent(prof, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	indextest.WriteFile(t, filepath.Join(repo, "profile.json"), b)
}

// newIPTemplate builds the live system, backs it up through the CLI, changes
// the live tree and computes the dry-run plan.
func newIPTemplate(t testing.TB, o ipOpts) *ipTemplate {
	t.Helper()
	tpl := &ipTemplate{dir: t.TempDir(), o: o, rows: ipSnapRows}
	live := filepath.Join(tpl.dir, "live")
	tpl.content = map[string][]byte{
		"config/app.json":   []byte(`{"name": "demo", "port": 8080}` + "\n"),
		"config/ui.json":    []byte(`{"theme": "dark", "fps": 60}` + "\n"),
		"config/mode.txt":   []byte("mode 0644\n"),
		"config/old.conf":   []byte("key = value\n"),
		"data/blob.bin":     indextest.RandomBytes(11, 300<<10),
		"data/sub/a.txt":    []byte("a\n"),
		"data/sub/b.txt":    []byte("bb\n"),
		"logs/app.log":      []byte(strings.Repeat("INFO request ok\n", 200)),
		"scratch/notes.txt": []byte("outside every unit\n"),
	}
	if o.big > 0 {
		tpl.content["data/big.bin"] = indextest.RandomBytes(12, o.big)
	}
	for i := range o.many {
		tpl.content[fmt.Sprintf("data/many/f%03d.conf", i)] = []byte(fmt.Sprintf("setting%d = %d\n", i, i))
	}
	for p, b := range tpl.content {
		indextest.WriteFile(t, filepath.Join(live, p), b)
	}
	for name, target := range map[string]string{"config/current": "app.json", "config/theme": "ui.json"} {
		if err := os.Symlink(target, filepath.Join(live, name)); err != nil {
			t.Fatal(err)
		}
	}
	ipDB(t, filepath.Join(live, "data/app.db"), o.wal, 0, ipSnapRows)

	r := &repoCLI{t: t, dir: filepath.Join(tpl.dir, "repo")}
	r.ok("init")
	writeIPProfile(t, r.dir, live, tpl.dir, o)
	s := r.backup()
	if s.Partial || len(s.Warnings) > 0 {
		t.Fatalf("template backup: %+v", s)
	}
	tpl.snap = s.BackupID

	// The snapshot's state, from a plain restore into a new directory.
	expect := filepath.Join(tpl.dir, "expect")
	r.ok("restore", tpl.snap, "--target", expect)
	tpl.want = noIno(ipState(t, expect))
	if n := dbRows(t, filepath.Join(expect, "data/app.db")); n != ipSnapRows {
		t.Fatalf("test setup: the snapshot's database has %d rows, want %d", n, ipSnapRows)
	}

	ipMutate(t, live, o.wal)
	tpl.plan = ipDryRun(t, r, tpl.snap)
	return tpl
}

// ipMutate changes the live tree in every way the restore must undo.
func ipMutate(t testing.TB, live string, wal bool) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(live, rel) }
	indextest.WriteFile(t, p("config/app.json"), []byte(`{"name": "demo", "port": 9090, "debug": true}`+"\n"))
	indextest.WriteFile(t, p("config/extra.json"), []byte(`{"extra": 1}`+"\n"))
	if err := os.Chmod(p("config/mode.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("config/old.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", p("config/old.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("config/ui.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("config/theme")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app.json", p("config/theme")); err != nil {
		t.Fatal(err)
	}
	ipDB(t, p("data/app.db"), wal, ipSnapRows, ipLiveRows)
	blob, err := os.ReadFile(p("data/blob.bin"))
	if err != nil {
		t.Fatal(err)
	}
	copy(blob[len(blob)/2:], "changed in place, same size")
	indextest.WriteFile(t, p("data/blob.bin"), blob)
	if err := os.RemoveAll(p("data/sub")); err != nil {
		t.Fatal(err)
	}
	indextest.WriteFile(t, p("data/sub"), []byte("a file where the snapshot has a directory\n"))
	indextest.WriteFile(t, p("logs/new/x.log"), []byte("x\n"))
	indextest.WriteFile(t, p("logs/new/y.log"), []byte("yy\n"))
	indextest.WriteFile(t, p("scratch/notes.txt"), []byte("outside every unit, changed\n"))
}

// ipWantActions is the plan of ipMutate's changes, in path order.
var ipWantActions = []string{
	"replace file config/app.json",
	"remove file config/extra.json",
	"update file config/mode.txt",
	"replace file config/old.conf",
	"replace symlink config/theme",
	"create file config/ui.json",
	"replace file data/app.db",
	"replace file data/blob.bin",
	"replace dir data/sub",
	"remove dir logs/new",
}

// ---- one case: a copy of the template ----

type ipCase struct {
	t    *testing.T
	tpl  *ipTemplate
	r    *repoCLI
	root string // the live root (profile root)
	base string // hooks.log, fail-smoke
}

func cpA(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
}

// copyTo copies the template: the repository into a new temporary
// directory, the live tree to root (which must not exist yet).
func (tpl *ipTemplate) copyTo(t *testing.T, root string) *ipCase {
	t.Helper()
	c := &ipCase{t: t, tpl: tpl, root: root, base: t.TempDir()}
	c.r = &repoCLI{t: t, dir: filepath.Join(c.base, "repo")}
	cpA(t, filepath.Join(tpl.dir, "repo"), c.r.dir)
	cpA(t, filepath.Join(tpl.dir, "live"), root)
	writeIPProfile(t, c.r.dir, root, c.base, tpl.o)
	return c
}

// run runs snapforge --repo on the case's repository with extra environment.
func (c *ipCase) run(env []string, args ...string) cliResult {
	c.t.Helper()
	return runCLI(c.t, cliOpts{env: env}, append([]string{"--repo", c.r.dir}, args...)...)
}

// restore runs `restore SNAP --in-place` of the template's snapshot.
func (c *ipCase) restore(env []string, args ...string) cliResult {
	c.t.Helper()
	return c.run(env, append([]string{"restore", c.tpl.snap, "--in-place"}, args...)...)
}

func (c *ipCase) state() map[string]ipEntry {
	c.t.Helper()
	return ipState(c.t, c.root)
}

// snapIDs lists the repository's snapshots, safety snapshots included
// (decoded leniently: the rows carry more keys than snapRow knows).
func (c *ipCase) snapIDs() []string {
	c.t.Helper()
	var rows []struct {
		BackupID string `json:"backup_id"`
	}
	res := c.r.ok("snapshots", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil {
		c.t.Fatalf("snapshots --json: %v\n%v", err, res)
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.BackupID)
	}
	return ids
}

// pointers lists <repo>/restores/*.json.
func (c *ipCase) pointers() []string {
	m, err := filepath.Glob(filepath.Join(c.r.dir, "restores", "*.json"))
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// expectClean fails unless no restore is left unfinished: no staging area
// in the root and no pointer in the repository.
func (c *ipCase) expectClean(what string) {
	c.t.Helper()
	if _, err := os.Lstat(filepath.Join(c.root, ".snapforge-restore")); err == nil {
		c.t.Errorf("%s: %s/.snapforge-restore is left: %v", what, c.root, indextest.Names(c.t, filepath.Join(c.root, ".snapforge-restore")))
	}
	if p := c.pointers(); len(p) != 0 {
		c.t.Errorf("%s: restore records left in the repository: %v", what, p)
	}
}

// hooks returns the hook log's lines.
func (c *ipCase) hooks() []string {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.base, "hooks.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// expectAppUp fails unless the application is running: it was never
// stopped, or the last stop was followed by a start.
func (c *ipCase) expectAppUp(what string) {
	c.t.Helper()
	up := true
	for _, h := range c.hooks() {
		switch h {
		case "stop":
			up = false
		case "start":
			up = true
		}
	}
	if !up {
		c.t.Errorf("%s: the application was stopped and not started again; hooks ran: %v", what, c.hooks())
	}
}

// snapshotState is what the live tree must be after a full in-place
// restore: the snapshot, and outside every unit what was there (pre).
func (c *ipCase) snapshotState(pre map[string]ipEntry) map[string]ipEntry {
	want := map[string]ipEntry{}
	for p, e := range c.tpl.want {
		want[p] = e
	}
	for p, e := range noIno(pre) {
		if p == "scratch" || strings.HasPrefix(p, "scratch/") {
			want[p] = e
		}
	}
	return want
}

// restoreOK runs a normal in-place restore and checks that the live tree
// equals the snapshot, the database included, with the hooks run.
func (c *ipCase) restoreOK(pre map[string]ipEntry) {
	c.t.Helper()
	// "latest" is the template's snapshot: safety snapshots taken since
	// are never "latest".
	res := expectCode(c.t, c.run(nil, "restore", "latest", "--in-place"), 0)
	if strings.Contains(res.stderr, "EXDEV") || strings.Contains(res.stderr, "cross-device") {
		c.t.Errorf("restore mentions a cross-device rename: %v", res)
	}
	got := c.state()
	expectState(c.t, "after a normal in-place restore", c.snapshotState(pre), noIno(got))
	// Outside the scope nothing was touched, not even replaced by a copy.
	for _, p := range []string{"scratch", "scratch/notes.txt"} {
		if got[p] != pre[p] {
			c.t.Errorf("%s outside the scope changed: %v, was %v", p, got[p], pre[p])
		}
	}
	if n := dbRows(c.t, filepath.Join(c.root, "data/app.db")); n != c.tpl.rows {
		c.t.Errorf("restored database has %d rows, want %d", n, c.tpl.rows)
	}
	c.expectClean("after a normal in-place restore")
	c.expectAppUp("after a normal in-place restore")
	if h := c.hooks(); !slices.Contains(h, "smoke") {
		c.t.Errorf("the smoke hook did not run: %v", h)
	}
}

// ---- the plan ----

type ipProblem struct {
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

type ipAction struct {
	Op      string `json:"op"`
	Path    string `json:"path"`
	Type    string `json:"type"`
	Size    int64  `json:"size"`
	Files   int64  `json:"files"`
	Blake3  string `json:"blake3"`
	Target  string `json:"target"`
	Reason  string `json:"reason"`
	Current *struct {
		Type   string `json:"type"`
		Size   int64  `json:"size"`
		Blake3 string `json:"blake3"`
		Target string `json:"target"`
		Mode   string `json:"mode"`
	} `json:"current"`
}

type ipPlan struct {
	Version  int        `json:"plan_version"`
	BackupID string     `json:"backup_id"`
	Target   string     `json:"target"`
	InPlace  bool       `json:"in_place"`
	Actions  []ipAction `json:"actions"`
	Hooks    *struct {
		Stop  string `json:"stop"`
		Start string `json:"start"`
		Smoke string `json:"smoke"`
	} `json:"hooks"`
	Checks []struct {
		Kind string `json:"kind"`
		Path string `json:"path"`
	} `json:"checks"`
	Space struct {
		StageBytes  int64 `json:"stage_bytes"`
		SafetyBytes int64 `json:"safety_bytes"`
		NeededBytes int64 `json:"needed_bytes"`
		FreeBytes   int64 `json:"free_bytes"`
		OK          bool  `json:"ok"`
	} `json:"space"`
	Warnings []ipProblem `json:"warnings"`
	Errors   []ipProblem `json:"errors"`
	Summary  struct {
		Create    int   `json:"create"`
		Replace   int   `json:"replace"`
		Remove    int   `json:"remove"`
		Update    int   `json:"update"`
		Unchanged int64 `json:"unchanged"`
		Bytes     int64 `json:"bytes"`
	} `json:"summary"`
}

func (p ipPlan) ops() []string {
	var out []string
	for _, a := range p.Actions {
		out = append(out, a.Op+" "+a.Type+" "+a.Path)
	}
	return out
}

func (p ipPlan) action(path string) ipAction {
	for _, a := range p.Actions {
		if a.Path == path {
			return a
		}
	}
	return ipAction{}
}

func parsePlan(t testing.TB, res cliResult) ipPlan {
	t.Helper()
	var p ipPlan
	if err := json.Unmarshal([]byte(res.stdout), &p); err != nil {
		t.Fatalf("the --dry-run --json plan does not parse: %v\n%v", err, res)
	}
	if p.Version != 1 || !p.InPlace {
		t.Fatalf("plan: version %d, in_place %v: %v", p.Version, p.InPlace, res)
	}
	return p
}

func ipDryRun(t testing.TB, r *repoCLI, snap string, args ...string) ipPlan {
	t.Helper()
	return parsePlan(t, r.ok(append([]string{"restore", snap, "--in-place", "--dry-run", "--json"}, args...)...))
}

// ---- mounts ----

// ipTmpfs mounts a tmpfs with opts on a new directory, unmounted when the
// test ends; it skips the test when mounting is not possible.
func ipTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := exec.Command("umount", dir).Run(); err != nil {
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, opts, err, out)
	}
}

func devOf(t testing.TB, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev
}

// ---- tests ----

// TestInPlaceDryRun: the plan of `restore --in-place --dry-run --json`
// parses and lists exactly the expected actions, with the snapshot's
// hashes, and running it changes nothing: not the live tree (same inodes),
// not the snapshots, no staging area.
func TestInPlaceDryRun(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{})
	c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
	pre := c.state()
	before := c.snapIDs()

	p := ipDryRun(t, c.r, tpl.snap)
	if !slices.Equal(p.ops(), ipWantActions) {
		t.Fatalf("plan actions:\n  %s\nwant:\n  %s", strings.Join(p.ops(), "\n  "), strings.Join(ipWantActions, "\n  "))
	}
	if p.BackupID != tpl.snap || p.Target != c.root {
		t.Errorf("plan of %s into %s, want %s into %s", p.BackupID, p.Target, tpl.snap, c.root)
	}
	s := p.Summary
	if s.Create != 1 || s.Replace != 6 || s.Remove != 2 || s.Update != 1 {
		t.Errorf("plan summary %+v", s)
	}
	b3 := func(b []byte) string { h := blake3.Sum256(b); return hex.EncodeToString(h[:]) }
	if a := p.action("config/ui.json"); a.Blake3 != b3(tpl.content["config/ui.json"]) || a.Size != int64(len(tpl.content["config/ui.json"])) {
		t.Errorf("create config/ui.json: %+v", a)
	}
	if a := p.action("data/blob.bin"); a.Blake3 != b3(tpl.content["data/blob.bin"]) || a.Current == nil || a.Current.Blake3 != pre["data/blob.bin"].Blake3 {
		t.Errorf("replace data/blob.bin (same size, other content) should name both hashes: %+v", a)
	}
	if a := p.action("config/old.conf"); a.Current == nil || a.Current.Type != "symlink" || a.Current.Target != "/etc/passwd" {
		t.Errorf("replace config/old.conf should show the live symlink: %+v", a)
	}
	if a := p.action("config/theme"); a.Target != "ui.json" || a.Current == nil || a.Current.Target != "app.json" {
		t.Errorf("replace config/theme: %+v", a)
	}
	if a := p.action("data/sub"); a.Files != 2 || a.Size != 5 || a.Current == nil || a.Current.Type != "file" {
		t.Errorf("replace data/sub (a directory of 2 files over a file): %+v", a)
	}
	warned := false
	for _, w := range p.Warnings {
		if w.Path == "config/old.conf" && strings.Contains(w.Problem, "symlink") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning that config/old.conf is a symlink now: %+v", p.Warnings)
	}
	kinds := map[string]bool{}
	for _, ch := range p.Checks {
		kinds[ch.Kind+":"+ch.Path] = true
	}
	for _, k := range []string{"blake3:", "sqlite_integrity:data/app.db", "json:config/app.json", "json:config/ui.json", "command:"} {
		if !kinds[k] {
			t.Errorf("plan checks lack %s: %+v", k, p.Checks)
		}
	}
	if p.Hooks == nil || !strings.Contains(p.Hooks.Stop, "echo stop") {
		t.Errorf("plan hooks: %+v", p.Hooks)
	}
	if !p.Space.OK || p.Space.StageBytes != s.Bytes || p.Space.NeededBytes <= p.Space.StageBytes || len(p.Errors) != 0 {
		t.Errorf("plan space %+v, errors %+v", p.Space, p.Errors)
	}

	// The text form too.
	txt := c.r.ok("restore", tpl.snap, "--in-place", "--dry-run")
	if !strings.Contains(txt.stdout, "recovery plan") || !strings.Contains(txt.stdout, "config/ui.json") {
		t.Errorf("text plan: %v", txt)
	}

	expectState(t, "after --dry-run", pre, c.state())
	if after := c.snapIDs(); !slices.Equal(after, before) {
		t.Errorf("--dry-run changed the snapshots: %v → %v", before, after)
	}
	c.expectClean("after --dry-run")
	if h := c.hooks(); len(h) != 0 {
		t.Errorf("--dry-run ran hooks: %v", h)
	}
}

var recoveredRE = regexp.MustCompile(`an unfinished in-place restore \((\S+) of snapshot (\S+) into (.+)\) was (rolled back|finished) \((\d+) steps undone\)`)

// expectRecovered checks the message of a command that finished an
// unfinished restore, and returns the steps undone.
func expectRecovered(t testing.TB, res cliResult, snap, root, outcome string) int {
	t.Helper()
	m := recoveredRE.FindStringSubmatch(res.stderr)
	if m == nil {
		t.Fatalf("the command did not say that the unfinished restore was %s: %v", outcome, res)
	}
	if m[2] != snap || m[3] != root || m[4] != outcome {
		t.Fatalf("recovery message: snapshot %s into %s %s, want %s into %s %s: %v", m[2], m[3], m[4], snap, root, outcome, res)
	}
	n, _ := strconv.Atoi(m[5])
	return n
}

// TestInPlaceKillAtEveryStep: FAULTS B3. snapforge is killed (SIGKILL) at
// every crash point of the protocol, including before and after every single
// swap step. The next command that opens the repository finishes the
// restore: it rolls it back (every path entirely old, the very same inodes
// back, the application started again), or, killed after the commit, it
// finishes it (the tree equals the snapshot). Nothing is left in the root
// or the repository, and a normal in-place restore then succeeds.
func TestInPlaceKillAtEveryStep(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{})
	n := len(tpl.plan.Actions)
	if n != len(ipWantActions) {
		t.Fatalf("template plan has %d actions, want %d: %v", n, len(ipWantActions), tpl.plan.ops())
	}
	type point struct {
		name    string
		stopped bool // the stop hook ran before the kill
		swapped int  // swap steps done before the kill
		commit  bool
	}
	points := []point{{"restore-journal", false, 0, false}, {"restore-stopped", true, 0, false}, {"restore-staged", true, 0, false}, {"restore-verified", true, 0, false}}
	for k := 0; k <= n; k++ {
		points = append(points, point{fmt.Sprintf("restore-swap-%d", k), true, k, false})
	}
	points = append(points, point{"restore-swapped", true, n, false}, point{"restore-smoke", true, n, false}, point{"restore-committed", true, n, true})

	for _, p := range points {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
			pre := c.state()

			res := c.restore([]string{"SNAPFORGE_CRASHPOINT=" + p.name})
			if res.signal != syscall.SIGKILL {
				t.Fatalf("restore with crash point %s did not die by SIGKILL: %v", p.name, res)
			}
			// Killed mid-restore: the repository points at the unfinished
			// restore, and its staging area is in the root.
			if ptr := c.pointers(); len(ptr) != 1 {
				t.Fatalf("after the kill at %s: restore records %v, want one", p.name, ptr)
			}
			if ents := indextest.Names(t, filepath.Join(c.root, ".snapforge-restore")); len(ents) != 1 {
				t.Fatalf("after the kill at %s: staging area holds %v", p.name, ents)
			}
			mid := c.state()
			delete(mid, ".snapforge-restore")
			for q := range mid {
				if strings.HasPrefix(q, ".snapforge-restore/") {
					delete(mid, q)
				}
			}
			if p.swapped == 0 {
				expectState(t, "killed before the first swap step (outside the staging area)", pre, mid)
			} else if stateDiff(pre, mid) == "" {
				t.Fatalf("killed after %d swap steps, yet the live tree is unchanged: the crash point is not where it claims", p.swapped)
			}
			if got := c.hooks(); p.stopped != slices.Contains(got, "stop") {
				t.Errorf("hooks before the kill at %s: %v", p.name, got)
			}

			// Any command that opens the repository finishes the restore.
			rec := c.r.ok("snapshots")
			if p.commit {
				expectRecovered(t, rec, tpl.snap, c.root, "finished")
				expectState(t, "after recovering a restore killed after its commit", c.snapshotState(pre), noIno(c.state()))
			} else {
				steps := expectRecovered(t, rec, tpl.snap, c.root, "rolled back")
				if steps != p.swapped {
					t.Errorf("recovery undid %d steps, want %d", steps, p.swapped)
				}
				expectState(t, "after recovering a restore killed at "+p.name, pre, c.state())
			}
			c.expectClean("after recovery")
			c.expectAppUp("after recovery")
			// Recovery is done: the next command finds nothing to do.
			if again := c.r.ok("snapshots"); strings.Contains(again.stderr, "unfinished") {
				t.Errorf("second command recovered again: %v", again)
			}

			c.restoreOK(pre)
		})
	}
}

// TestInPlaceKillDuringRollback: FAULTS B3, a second kill while a killed
// restore is being rolled back (by the next command's recovery, or by the
// restore's own rollback after a failed smoke test); the command after
// that finishes the rollback: every path entirely old.
func TestInPlaceKillDuringRollback(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{})
	mid := len(tpl.plan.Actions) / 2
	cases := []struct {
		name       string
		crash      string // first kill (the restore)
		smokeFails bool
		second     string // kill of the first recovery
	}{
		{"swap-mid/rollback-1", fmt.Sprintf("restore-swap-%d", mid), false, "restore-rollback-1"},
		{"swap-mid/rollback-0", fmt.Sprintf("restore-swap-%d", mid), false, "restore-rollback-0"},
		{"swapped/rolled-back", "restore-swapped", false, "restore-rolled-back"},
		{"smoke-failed/rollback-2", "restore-rollback-2", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
			pre := c.state()
			if tc.smokeFails {
				indextest.WriteFile(t, filepath.Join(c.base, "fail-smoke"), nil)
			}
			res := c.restore([]string{"SNAPFORGE_CRASHPOINT=" + tc.crash})
			if res.signal != syscall.SIGKILL {
				t.Fatalf("restore with crash point %s did not die by SIGKILL: %v", tc.crash, res)
			}
			if tc.second != "" {
				res := c.run([]string{"SNAPFORGE_CRASHPOINT=" + tc.second}, "snapshots")
				if res.signal != syscall.SIGKILL {
					t.Fatalf("recovery with crash point %s did not die by SIGKILL: %v", tc.second, res)
				}
				if len(c.pointers()) != 1 {
					t.Fatalf("the killed recovery dropped the restore record: %v", c.pointers())
				}
			}
			if tc.smokeFails {
				os.Remove(filepath.Join(c.base, "fail-smoke"))
			}
			rec := c.r.ok("snapshots")
			expectRecovered(t, rec, tpl.snap, c.root, "rolled back")
			expectState(t, "after the recovery that followed a killed rollback", pre, c.state())
			c.expectClean("after recovery")
			c.expectAppUp("after recovery")
			c.restoreOK(pre)
		})
	}
}

// TestInPlaceExitCodes: a restore that fails after the swap is rolled back
// and exits 1 saying so (a failed smoke test; an I/O error injected at a
// swap step); one whose staged data does not match the snapshot exits 3
// before anything is swapped. Either way the live tree is exactly as it was.
func TestInPlaceExitCodes(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{})

	t.Run("smoke-fails", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		pre := c.state()
		indextest.WriteFile(t, filepath.Join(c.base, "fail-smoke"), nil)
		res := expectCode(t, c.restore(nil), exitError)
		if !strings.Contains(res.stderr, "rolled back") || !strings.Contains(res.stderr, "smoke") {
			t.Errorf("a failed smoke test: %v", res)
		}
		expectState(t, "after a rolled-back restore", pre, c.state())
		c.expectClean("after a rolled-back restore")
		c.expectAppUp("after a rolled-back restore")
		if h := c.hooks(); !slices.Equal(h, []string{"stop", "start", "stop", "start"}) {
			t.Errorf("hooks of a restore rolled back after its smoke test: %v, want stop start (restore) stop start (rollback)", h)
		}
		os.Remove(filepath.Join(c.base, "fail-smoke"))
		c.restoreOK(pre)
	})

	// A profile another user owns, or one its group may write, chooses
	// the commands the hooks run: refused before anything is planned or
	// changed, naming the file and what to do (snapshot.CheckHookFile).
	t.Run("untrusted-profile", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("needs root: the test gives the profile to another user")
		}
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		pre := c.state()
		before := len(c.snapIDs())
		prof := filepath.Join(c.r.dir, "profile.json")
		for _, u := range []struct {
			set  func() error
			want string
		}{
			{func() error { return os.Chown(prof, 65534, 65534) }, "belongs to uid 65534: as root"},
			{func() error { return errors.Join(os.Chown(prof, 0, 0), os.Chmod(prof, 0o664)) }, "chmod go-w " + prof},
		} {
			if err := u.set(); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{nil, {"--dry-run"}} {
				res := expectCode(t, c.restore(nil, args...), exitError)
				if !strings.Contains(res.stderr, "the profile may not be used: "+prof) || !strings.Contains(res.stderr, u.want) {
					t.Errorf("restore --in-place %v with %s: %v; want the profile refused with %q", args, u.want, res, u.want)
				}
			}
			expectState(t, "after a refused restore", pre, c.state())
			if h := c.hooks(); len(h) != 0 {
				t.Errorf("hooks ran: %v", h)
			}
			if got := len(c.snapIDs()); got != before {
				t.Errorf("%d snapshots after a refused restore, want %d (no safety snapshot)", got, before)
			}
			c.expectClean("after a refused restore")
			// Its root chooses what a backup reads: refused too.
			if res := expectCode(t, c.run(nil, "backup"), exitError); !strings.Contains(res.stderr, "the profile may not be used: "+prof) {
				t.Errorf("backup with the profile: %v", res)
			}
		}
		if err := os.Chmod(prof, 0o644); err != nil {
			t.Fatal(err)
		}
		c.restoreOK(pre)
	})

	t.Run("swap-fault", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		pre := c.state()
		res := expectCode(t, c.restore([]string{"SNAPFORGE_FAULT=swap-5"}), exitError)
		if !strings.Contains(res.stderr, "rolled back") || !strings.Contains(res.stderr, "injected fault") {
			t.Errorf("an I/O error at swap step 5: %v", res)
		}
		expectState(t, "after a rolled-back restore", pre, c.state())
		c.expectClean("after a rolled-back restore")
		c.expectAppUp("after a rolled-back restore")
		c.restoreOK(pre)
	})

	t.Run("staged-integrity", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		pre := c.state()
		before := len(c.snapIDs())
		// The snapshot's config/ui.json (a single chunk) is damaged in its pack.
		flipBlobByte(t, c.r.dir, blake3.Sum256(tpl.content["config/ui.json"]))
		res := expectCode(t, c.restore(nil), exitIntegrity)
		if !strings.Contains(res.stderr, "nothing was changed") {
			t.Errorf("a staged integrity failure: %v", res)
		}
		expectState(t, "after a staged integrity failure", pre, c.state())
		c.expectClean("after a staged integrity failure")
		c.expectAppUp("after a staged integrity failure")
		if after := len(c.snapIDs()); after != before+1 {
			t.Errorf("%d snapshots after the failed restore, want %d (the %d before and the safety snapshot)", after, before+1, before)
		}
	})
}

// TestInPlaceDiskFull: FAULTS C3. The live root is a tmpfs with room for
// the bytes (the plan's preflight passes) but not for the inodes of the
// snapshot's 150 files that the live tree lacks: staging fails with a real
// ENOSPC. The restore aborts before the swap: exit 1 naming the lack of
// space, live files untouched (same inodes), staging removed, the
// application started again. With inodes to spare the same restore works.
func TestInPlaceDiskFull(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{many: 150})
	mnt := ipTmpfs(t, "size=100m")
	c := tpl.copyTo(t, filepath.Join(mnt, "live"))
	if err := os.RemoveAll(filepath.Join(c.root, "data/many")); err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	used := sfs.Files - sfs.Ffree
	remount(t, mnt, fmt.Sprintf("nr_inodes=%d", used+40))
	pre := c.state()

	p := ipDryRun(t, c.r, tpl.snap)
	if a := p.action("data/many"); a.Op != "create" || a.Files != 150 {
		t.Fatalf("test setup: plan for data/many: %+v", a)
	}
	if !p.Space.OK || len(p.Errors) != 0 {
		t.Fatalf("test setup: the preflight should pass (only inodes run out): %+v %+v", p.Space, p.Errors)
	}

	res := expectCode(t, c.restore(nil), exitError)
	t.Logf("disk full while staging: %s", res.stderr)
	if !strings.Contains(res.stderr, "space") {
		t.Errorf("disk full while staging: the message should say there is no space: %v", res)
	}
	if strings.Contains(res.stderr, "rolled back") {
		t.Errorf("disk full while staging should abort before the swap, not roll back: %v", res)
	}
	expectState(t, "after running out of space while staging", pre, c.state())
	c.expectClean("after running out of space while staging")
	c.expectAppUp("after running out of space while staging")
	if h := c.hooks(); !slices.Equal(h, []string{"stop", "start"}) {
		t.Errorf("hooks: %v, want stop, then start again after the abort", h)
	}

	remount(t, mnt, "nr_inodes=100000")
	c.restoreOK(pre)
}

// TestInPlaceNoSpace: FAULTS E10. The snapshot holds a 16 MiB file the live
// tree lacks; the live root is a 72 MiB tmpfs: the plan's preflight counts
// the staged bytes plus the margin and refuses, naming what it needs and
// what is free. Nothing changes: no safety snapshot, no hook, no staging.
// A scope without the big file fits in the same free space, which shows
// that the estimate counts the staged bytes.
func TestInPlaceNoSpace(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{big: 16 << 20})
	mnt := ipTmpfs(t, "size=72m")
	c := tpl.copyTo(t, filepath.Join(mnt, "live"))
	if err := os.Remove(filepath.Join(c.root, "data/big.bin")); err != nil {
		t.Fatal(err)
	}
	pre := c.state()
	before := c.snapIDs()

	full := parsePlan(t, expectCode(t, c.run(nil, "restore", tpl.snap, "--in-place", "--dry-run", "--json"), exitError))
	if full.Space.OK || full.Space.NeededBytes <= full.Space.FreeBytes || full.Space.StageBytes < 16<<20 || len(full.Errors) == 0 {
		t.Errorf("full scope on a 72 MiB tmpfs: space %+v, errors %+v", full.Space, full.Errors)
	}
	// (--scope db, not config: see TestInPlaceScopeLeavesOtherUnits.)
	small := ipDryRun(t, c.r, tpl.snap, "--scope", "db")
	if !small.Space.OK || len(small.Errors) != 0 || small.Space.FreeBytes != full.Space.FreeBytes {
		t.Errorf("db scope should fit: space %+v, errors %+v", small.Space, small.Errors)
	}

	res := expectCode(t, c.restore(nil), exitError)
	t.Logf("not enough space: %s", res.stderr)
	if !strings.Contains(res.stderr, "not enough free space") || !strings.Contains(res.stderr, "needs") || !strings.Contains(res.stderr, "free") {
		t.Errorf("preflight refusal should name the space needed and free: %v", res)
	}
	if !strings.Contains(res.stderr, humanBytes(full.Space.NeededBytes)) {
		t.Errorf("the message should say how much is needed (%s): %v", humanBytes(full.Space.NeededBytes), res)
	}
	expectState(t, "after the preflight refused", pre, c.state())
	c.expectClean("after the preflight refused")
	if h := c.hooks(); len(h) != 0 {
		t.Errorf("hooks ran although the preflight refused: %v", h)
	}
	if after := c.snapIDs(); !slices.Equal(after, before) {
		t.Errorf("the refused restore took a snapshot: %v → %v", before, after)
	}
}

// TestInPlaceOtherFilesystem: FAULTS E8. The repository is on ext4, the
// live root on a tmpfs: the staging area is made inside the root, on the
// root's filesystem (seen through a kill right after staging), so every
// swap is a rename within one filesystem and the restore succeeds.
func TestInPlaceOtherFilesystem(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{})
	mnt := ipTmpfs(t, "size=100m")
	c := tpl.copyTo(t, filepath.Join(mnt, "live"))
	if devOf(t, c.root) == devOf(t, c.r.dir) {
		t.Fatalf("test setup: root and repository on one filesystem")
	}
	pre := c.state()

	res := c.restore([]string{"SNAPFORGE_CRASHPOINT=restore-staged"})
	if res.signal != syscall.SIGKILL {
		t.Fatalf("restore with crash point restore-staged: %v", res)
	}
	ids := indextest.Names(t, filepath.Join(c.root, ".snapforge-restore"))
	if len(ids) != 1 {
		t.Fatalf("staging area in the root: %v", ids)
	}
	stage := filepath.Join(c.root, ".snapforge-restore", ids[0], "stage")
	if devOf(t, stage) != devOf(t, c.root) {
		t.Errorf("the staging area %s is not on the root's filesystem", stage)
	}
	if b, err := os.ReadFile(filepath.Join(stage, "config/ui.json")); err != nil || string(b) != string(tpl.content["config/ui.json"]) {
		t.Errorf("staged config/ui.json: %q, %v", b, err)
	}
	if tmp := indextest.Names(t, filepath.Join(c.r.dir, "tmp")); len(tmp) != 0 {
		t.Errorf("staged files in the repository's tmp/: %v", tmp)
	}
	expectRecovered(t, c.r.ok("snapshots"), tpl.snap, c.root, "rolled back")
	expectState(t, "after recovery", pre, c.state())
	c.expectClean("after recovery")

	c.restoreOK(pre)
}

// TestInPlaceReadOnlyTarget: FAULTS E9. A live root on a read-only mount, a
// file to replace that is immutable (chattr +i), and an immutable parent
// directory: the preflight refuses, naming the path, and nothing changes.
func TestInPlaceReadOnlyTarget(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{})

	refused := func(t *testing.T, c *ipCase, pre map[string]ipEntry, before []string, want ...string) {
		t.Helper()
		res := expectCode(t, c.restore(nil), exitError)
		t.Logf("refused: %s", res.stderr)
		for _, w := range want {
			if !strings.Contains(res.stderr, w) {
				t.Errorf("refusal should mention %q: %v", w, res)
			}
		}
		expectState(t, "after the refusal", pre, c.state())
		c.expectClean("after the refusal")
		if h := c.hooks(); len(h) != 0 {
			t.Errorf("hooks ran although the preflight refused: %v", h)
		}
		if after := c.snapIDs(); !slices.Equal(after, before) {
			t.Errorf("the refused restore took a snapshot: %v → %v", before, after)
		}
		dry := parsePlan(t, expectCode(t, c.run(nil, "restore", c.tpl.snap, "--in-place", "--dry-run", "--json"), exitError))
		if len(dry.Errors) == 0 {
			t.Errorf("the dry-run plan shows no error: %+v", dry)
		}
	}

	t.Run("read-only-mount", func(t *testing.T) {
		t.Parallel()
		mnt := ipTmpfs(t, "size=100m")
		c := tpl.copyTo(t, filepath.Join(mnt, "live"))
		remount(t, mnt, "ro")
		pre := c.state()
		refused(t, c, pre, []string{tpl.snap}, "read-only", c.root)
	})

	chattr := func(t *testing.T, p string) {
		t.Helper()
		if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
			t.Skipf("chattr +i not possible here: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", p).Run() })
	}

	t.Run("immutable-file", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		chattr(t, filepath.Join(c.root, "config/app.json"))
		pre := c.state()
		refused(t, c, pre, []string{tpl.snap}, "config/app.json", "immutable")
	})

	t.Run("immutable-dir", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		chattr(t, filepath.Join(c.root, "logs"))
		pre := c.state()
		refused(t, c, pre, []string{tpl.snap}, "logs", "immutable")
	})
}

// TestInPlaceScopeLeavesOtherUnits: `--scope config` plans and changes only
// the config unit. The other units' changes (here a file where the
// snapshot has the directory data/sub) are neither planned nor a reason to
// refuse, and every path outside config/ keeps its very inode.
func TestInPlaceScopeLeavesOtherUnits(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{})
	c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
	pre := c.state()
	p := parsePlan(t, c.run(nil, "restore", tpl.snap, "--in-place", "--scope", "config", "--dry-run", "--json"))
	if len(p.Errors) != 0 {
		t.Errorf("--scope config refuses because of paths outside the config unit: %+v", p.Errors)
	}
	if want := ipWantActions[:6]; !slices.Equal(p.ops(), want) {
		t.Errorf("--scope config plan:\n  %s\nwant:\n  %s", strings.Join(p.ops(), "\n  "), strings.Join(want, "\n  "))
	}
	expectCode(t, c.restore(nil, "--scope", "config"), 0)
	got := c.state()
	want := map[string]ipEntry{}
	for q, e := range pre {
		if q != "config" && !strings.HasPrefix(q, "config/") {
			want[q] = e
		}
	}
	for q := range got {
		if q == "config" || strings.HasPrefix(q, "config/") {
			want[q] = tpl.want[q]
			e := got[q]
			e.Ino = 0
			got[q] = e
		}
	}
	expectState(t, "after restoring --scope config", want, got)
	for q, e := range tpl.want {
		if strings.HasPrefix(q, "config/") && got[q] != e {
			t.Errorf("%s: %v, want the snapshot's %v", q, got[q], e)
		}
	}
	c.expectClean("after restoring --scope config")
}

// TestInPlaceWALDatabase: FAULTS B3 with the database in WAL mode, cleanly
// shut down (no -wal, no -shm beside it). Reading it for a snapshot must
// not leave companions in the live tree, or a rolled-back restore is not
// "entirely old" and the plan that runs differs from the one shown.
func TestInPlaceWALDatabase(t *testing.T) {
	t.Parallel()
	tpl := newIPTemplate(t, ipOpts{wal: true})
	if !slices.Equal(tpl.plan.ops(), ipWantActions) {
		t.Fatalf("template plan: %v", tpl.plan.ops())
	}

	// A plain backup of a cleanly closed WAL database leaves an empty -wal
	// and a -shm beside it (a read-only connection cannot remove them; see
	// snapshot/sqlitecap's doc). The in-place restore removes the ones its
	// safety snapshot made, so the live tree ends exactly as it was.
	t.Run("killed-after-stop", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		pre := c.state()
		if res := c.restore([]string{"SNAPFORGE_CRASHPOINT=restore-stopped"}); res.signal != syscall.SIGKILL {
			t.Fatalf("restore with crash point restore-stopped: %v", res)
		}
		expectRecovered(t, c.r.ok("snapshots"), tpl.snap, c.root, "rolled back")
		expectState(t, "after recovering a restore killed after the stop hook", pre, c.state())
		c.expectClean("after recovery")
	})

	t.Run("smoke-fails", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		pre := c.state()
		indextest.WriteFile(t, filepath.Join(c.base, "fail-smoke"), nil)
		res := expectCode(t, c.restore(nil), exitError)
		if !strings.Contains(res.stderr, "rolled back") {
			t.Errorf("a failed smoke test: %v", res)
		}
		expectState(t, "after a rolled-back restore", pre, c.state())
		c.expectClean("after a rolled-back restore")
	})

	t.Run("plan-that-runs", func(t *testing.T) {
		t.Parallel()
		c := tpl.copyTo(t, filepath.Join(t.TempDir(), "live"))
		pre := c.state()
		res := expectCode(t, c.restore(nil, "--json"), 0)
		var out struct {
			Plan ipPlan `json:"plan"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
			t.Fatalf("restore --json: %v\n%v", err, res)
		}
		if !slices.Equal(out.Plan.ops(), ipWantActions) {
			t.Errorf("the plan that ran:\n  %s\ndiffers from the one shown by --dry-run:\n  %s", strings.Join(out.Plan.ops(), "\n  "), strings.Join(ipWantActions, "\n  "))
		}
		expectState(t, "after the in-place restore", c.snapshotState(pre), noIno(c.state()))
	})
}
