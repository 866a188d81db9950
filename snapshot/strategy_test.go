package snapshot_test

// Change-detection strategies (full, incremental, differential) observed
// through BackupOptions.WrapReader, and unit selection from a profile.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// rtClock is a fake clock one hour ahead of the real one that advances a
// second per reading, so that files written by the test are never "too
// recent to trust" (the engine's mtime granularity window) and every backup
// gets its own creation second.
type rtClock struct {
	mu sync.Mutex
	t  time.Time
}

func newRTClock() *rtClock { return &rtClock{t: time.Now().Add(time.Hour)} }

func (c *rtClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// rtReads counts the reads of each source file through WrapReader.
type rtReads struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *rtReads) wrap(rel string, r io.Reader) io.Reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[rel]++
	return r
}

// take returns the sorted paths read since the last call.
func (c *rtReads) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := rtKeys(c.n)
	c.n = nil
	return out
}

func rtStrategyRepo(t *testing.T) *snapshot.Repo {
	t.Helper()
	clk := newRTClock()
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) { o.Now = clk.Now })
	return r
}

var rtStrategyFiles = []string{"a", "b", "c", "d/e", "d/f", "d/g/h", "hard1"}

func rtStrategyTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	rtBuild(t, src, rtDir(0, map[string]*rtEntry{
		"a": rtFile([]byte("alpha"), 0),
		"b": rtFile([]byte("bravo"), 0),
		"c": rtFile(indextest.RandomBytes(3, 3000), 0),
		"d": rtDir(0, map[string]*rtEntry{
			"e": rtFile([]byte("echo"), 0),
			"f": rtFile([]byte("foxtrot"), 0),
			"g": rtDir(0, map[string]*rtEntry{"h": rtFile([]byte("hotel"), 0)}),
		}),
		"hard1": rtFile([]byte("one inode, two names"), 0),
		"hard2": rtHard("hard1"), // the second name is never read
		"link":  rtSym("a"),
	}), rtBase)
	return src
}

// TestStrategies follows one source through every strategy and checks which
// files each backup reads, and the Strategy and Parent fields recorded.
func TestStrategies(t *testing.T) {
	r := rtStrategyRepo(t)
	src := rtStrategyTree(t)
	reads := &rtReads{}
	backup := func(strategy string) *snapshot.Manifest {
		t.Helper()
		return rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: strategy, WrapReader: reads.wrap})
	}
	expect := func(step string, m *snapshot.Manifest, strategy, parent string, read []string) {
		t.Helper()
		sort.Strings(read)
		if got := reads.take(); !slices.Equal(got, read) {
			t.Errorf("%s: read %q, want %q", step, got, read)
		}
		if m.Strategy != strategy || m.Parent != parent {
			t.Errorf("%s: strategy %q parent %q, want %q parent %q", step, m.Strategy, m.Parent, strategy, parent)
		}
	}
	write := func(rel, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(src, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// An incremental backup with nothing to trust reads everything and is
	// recorded as full.
	m0 := backup("") // default: incremental
	expect("first incremental", m0, snapshot.StrategyFull, "", rtStrategyFiles)

	// Another root in the same repository is never taken as parent.
	other := t.TempDir()
	rtBuild(t, other, rtDir(0, map[string]*rtEntry{"x": rtFile([]byte("x"), 0)}), rtBase)
	mo := rtBackup(t, r, snapshot.BackupOptions{Root: other, WrapReader: reads.wrap})
	expect("other root", mo, snapshot.StrategyFull, "", []string{"x"})

	m1 := backup(snapshot.StrategyIncremental)
	expect("incremental, no change", m1, snapshot.StrategyIncremental, m0.BackupID, nil)
	if m1.RootHash != m0.RootHash {
		t.Errorf("unchanged source: root hash %s, parent had %s", m1.RootHash, m0.RootHash)
	}

	// touch: a new mtime alone makes the file suspect.
	later := time.Now().Add(-time.Minute)
	if err := os.Chtimes(filepath.Join(src, "d/e"), later, later); err != nil {
		t.Fatal(err)
	}
	m2 := backup(snapshot.StrategyIncremental)
	expect("incremental after touch", m2, snapshot.StrategyIncremental, m1.BackupID, []string{"d/e"})

	full := backup(snapshot.StrategyFull)
	expect("full", full, snapshot.StrategyFull, "", rtStrategyFiles)

	write("a", "alpha changed")                // change A
	mi := backup(snapshot.StrategyIncremental) // trusts full for everything but a
	expect("incremental after A", mi, snapshot.StrategyIncremental, full.BackupID, []string{"a"})
	write("b", "bravo changed") // change B
	md := backup(snapshot.StrategyDifferential)
	expect("differential after A, incremental, B", md, snapshot.StrategyDifferential, full.BackupID, []string{"a", "b"})
	md2 := backup(snapshot.StrategyDifferential)
	expect("differential again", md2, snapshot.StrategyDifferential, full.BackupID, []string{"a", "b"})
	mi2 := backup(snapshot.StrategyIncremental)
	expect("incremental after differential", mi2, snapshot.StrategyIncremental, md2.BackupID, nil)

	// ctime: same size, mtime put back, new content.
	cpath := filepath.Join(src, "c")
	cst := rtLstat(t, cpath)
	if err := os.WriteFile(cpath, indextest.RandomBytes(33, 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.UtimesNano(cpath, []unix.Timespec{cst.Mtim, cst.Mtim}); err != nil {
		t.Fatal(err)
	}
	if st := rtLstat(t, cpath); st.Mtim != cst.Mtim || st.Size != cst.Size || st.Ino != cst.Ino || st.Ctim == cst.Ctim {
		t.Fatalf("setup: c should keep size, mtime and inode and change ctime")
	}
	mc := backup(snapshot.StrategyIncremental)
	expect("incremental after ctime change", mc, snapshot.StrategyIncremental, mi2.BackupID, []string{"c"})
	if rtItems(t, mc)["c"].Blake3 != rtFileB3(t, cpath) {
		t.Errorf("c: stored hash is not the new content's")
	}

	// A new inode with the old size and mtime.
	fpath := filepath.Join(src, "d/f")
	fst := rtLstat(t, fpath)
	tmp := filepath.Join(src, "d/f.new")
	if err := os.WriteFile(tmp, []byte("FOXTROT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.UtimesNano(tmp, []unix.Timespec{fst.Mtim, fst.Mtim}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, fpath); err != nil {
		t.Fatal(err)
	}
	if st := rtLstat(t, fpath); st.Mtim != fst.Mtim || st.Size != fst.Size || st.Ino == fst.Ino {
		t.Fatalf("setup: d/f should keep size and mtime with a new inode")
	}
	mf := backup(snapshot.StrategyIncremental)
	expect("incremental after inode change", mf, snapshot.StrategyIncremental, mc.BackupID, []string{"d/f"})

	// Reused entries are right: the last snapshot restores to the source.
	dst := filepath.Join(t.TempDir(), "restore")
	rtRestore(t, r, mf, snapshot.RestoreOptions{Target: dst})
	indextest.CompareDigests(t, indextest.Digest(t, src, nil), indextest.Digest(t, dst, nil))
	rep, err := r.Verify(context.Background(), nil, snapshot.VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("verify all snapshots: %v %+v", err, rep)
	}
}

// TestStrategyDifferentialWithoutFull: with no full snapshot to trust, a
// differential backup reads everything and is recorded as full; the next
// differential trusts it.
func TestStrategyDifferentialWithoutFull(t *testing.T) {
	r := rtStrategyRepo(t)
	src := rtStrategyTree(t)
	reads := &rtReads{}
	m0 := rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyDifferential, WrapReader: reads.wrap})
	if got := reads.take(); m0.Strategy != snapshot.StrategyFull || m0.Parent != "" || !slices.Equal(got, rtStrategyFiles) {
		t.Errorf("first differential: strategy %q parent %q read %q", m0.Strategy, m0.Parent, got)
	}
	m1 := rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyDifferential, WrapReader: reads.wrap})
	if got := reads.take(); m1.Strategy != snapshot.StrategyDifferential || m1.Parent != m0.BackupID || len(got) != 0 {
		t.Errorf("second differential: strategy %q parent %q read %q", m1.Strategy, m1.Parent, got)
	}
	if _, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src, Strategy: "weekly"}); err == nil ||
		!strings.Contains(err.Error(), `unknown strategy "weekly"`) {
		t.Errorf("unknown strategy: err %v", err)
	}
}

const rtProfileJSON = `{
  "name": "wf",
  "root": %q,
  "units": {
    "config": {"paths": ["config/", "data/config.json"]},
    "db":     {"paths": ["data/wirthforge.db"], "sqlite": true},
    "models": {"paths": ["models/"], "default": false},
    "logs":   {"paths": ["logs/"]},
    "keys":   {"paths": ["keys/"], "guarded": true}
  },
  "exclude": ["**/*.tmp"]
}`

func rtProfileTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	rtBuild(t, src, rtDir(0, map[string]*rtEntry{
		"config": rtDir(0, map[string]*rtEntry{
			"a.yaml":   rtFile([]byte("a: 1"), 0),
			"edit.tmp": rtFile([]byte("scratch"), 0),
			"sub":      rtDir(0, map[string]*rtEntry{"b.yaml": rtFile([]byte("b: 2"), 0), "c.tmp": rtFile([]byte("x"), 0)}),
		}),
		"data": rtDir(0, map[string]*rtEntry{
			"config.json":   rtFile([]byte(`{"theme":"dark"}`), 0),
			"wirthforge.db": rtFile([]byte("not really a database"), 0),
			"other.bin":     rtFile([]byte("in no unit"), 0),
		}),
		"models": rtDir(0, map[string]*rtEntry{
			"m.bin": rtFile(indextest.RandomBytes(7, 4096), 0),
			"sub":   rtDir(0, map[string]*rtEntry{"w.bin": rtFile([]byte("weights"), 0)}),
		}),
		"logs":    rtDir(0, map[string]*rtEntry{"app.log": rtFile([]byte("log"), 0), "old.tmp": rtFile([]byte("old"), 0)}),
		"keys":    rtDir(0o700, map[string]*rtEntry{"k.pem": rtFile([]byte("secret"), 0o600)}),
		"top.txt": rtFile([]byte("in no unit"), 0),
	}), rtBase)
	return src
}

// TestProfileUnitSelection: default units leave out models ("default":
// false) and keys (guarded); naming a unit includes it; a backup of a
// selection holds exactly its paths and their ancestors, minus the
// profile's exclude globs.
func TestProfileUnitSelection(t *testing.T) {
	r := rtStrategyRepo(t)
	src := rtProfileTree(t)
	prof, err := snapshot.ParseProfile([]byte(strings.Replace(rtProfileJSON, "%q", `"`+src+`"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	backup := func(sel snapshot.Selection) *snapshot.Manifest {
		t.Helper()
		return rtBackup(t, r, snapshot.BackupOptions{Root: prof.Root, Paths: sel.Paths, SQLite: sel.SQLite,
			Includes: sel.Includes, UnitPaths: sel.UnitPaths, Excludes: sel.Excludes, Exclude: prof.Exclude, Name: prof.Name})
	}

	def, err := prof.Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(def.Includes, []string{"config", "db", "logs"}) || !slices.Equal(def.Excludes, []string{"keys", "models"}) {
		t.Fatalf("Select(nil): includes %q excludes %q", def.Includes, def.Excludes)
	}
	if !slices.Equal(def.SQLite, []string{"data/wirthforge.db"}) {
		t.Errorf("Select(nil): sqlite %q", def.SQLite)
	}
	m := backup(def)
	want := []string{"config", "config/a.yaml", "config/sub", "config/sub/b.yaml",
		"data", "data/config.json", "data/wirthforge.db", "logs", "logs/app.log"}
	if got := rtKeys(rtItems(t, m)); !slices.Equal(got, want) {
		t.Errorf("default units backed up %q, want %q", got, want)
	}
	if !slices.Equal(m.Includes, def.Includes) || !slices.Equal(m.Excludes, def.Excludes) || !strings.HasPrefix(m.BackupID, "wf-") {
		t.Errorf("manifest %s: includes %q excludes %q", m.BackupID, m.Includes, m.Excludes)
	}
	if m.Strategy != snapshot.StrategyFull {
		t.Errorf("first backup of the default units: strategy %s", m.Strategy)
	}
	// Each unit's paths as the profile named them, for the mount's by-unit/.
	if got := fmt.Sprint(m.UnitPaths); got != fmt.Sprint(map[string][]string{"config": prof.Units["config"].Paths, "db": prof.Units["db"].Paths, "logs": prof.Units["logs"].Paths}) || len(m.UnitPaths["config"]) == 0 {
		t.Errorf("manifest unit_paths %v", m.UnitPaths)
	}
	if back, err := r.Resolve(context.Background(), m.BackupID); err != nil || fmt.Sprint(back.UnitPaths) != fmt.Sprint(m.UnitPaths) {
		t.Errorf("unit_paths read back: %v, %v", back, err)
	}

	models, err := prof.Select([]string{"models"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(models.Includes, []string{"models"}) || !slices.Equal(models.Excludes, []string{"config", "db", "keys", "logs"}) {
		t.Fatalf("Select(models): includes %q excludes %q", models.Includes, models.Excludes)
	}
	mm := backup(models)
	if got := rtKeys(rtItems(t, mm)); !slices.Equal(got, []string{"models", "models/m.bin", "models/sub", "models/sub/w.bin"}) {
		t.Errorf("models backed up %q", got)
	}
	if mm.Strategy != snapshot.StrategyFull || mm.Parent != "" {
		t.Errorf("models: a snapshot of other units was taken as parent (%s %s)", mm.Strategy, mm.Parent)
	}

	keys, err := prof.Select([]string{"config", "keys"})
	if err != nil {
		t.Fatal(err)
	}
	mk := backup(keys)
	want = []string{"config", "config/a.yaml", "config/sub", "config/sub/b.yaml", "data", "data/config.json", "keys", "keys/k.pem"}
	if got := rtKeys(rtItems(t, mk)); !slices.Equal(got, want) {
		t.Errorf("config+keys backed up %q, want %q", got, want)
	}

	// The next default backup trusts the last default one, not the others.
	m2 := backup(def)
	if m2.Strategy != snapshot.StrategyIncremental || m2.Parent != m.BackupID {
		t.Errorf("second default backup: strategy %s parent %q, want incremental parent %s", m2.Strategy, m2.Parent, m.BackupID)
	}

	if _, err := prof.Select([]string{"nope"}); err == nil || !strings.Contains(err.Error(), `unknown unit "nope"`) {
		t.Errorf("Select(nope): err %v", err)
	}
	// Exclude globs without a profile.
	mx := rtBackup(t, r, snapshot.BackupOptions{Root: src, Exclude: []string{"**/*.tmp", "models"}})
	for p := range rtItems(t, mx) {
		if strings.HasSuffix(p, ".tmp") || p == "models" || strings.HasPrefix(p, "models/") {
			t.Errorf("excluded path %q backed up", p)
		}
	}
	if _, ok := rtItems(t, mx)["top.txt"]; !ok {
		t.Errorf("top.txt missing from a whole-root backup")
	}
}

// TestStrategyParentWithinOneSecond takes a dozen backups at the same
// clock second (a frozen clock, as in a script that runs them back to
// back): each incremental backup must trust the one just before it, and
// "latest" must be the last, although the ids then differ only by their
// -2 … -12 suffixes.
func TestStrategyParentWithinOneSecond(t *testing.T) {
	frozen := time.Now().Add(time.Hour)
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) { o.Now = func() time.Time { return frozen } })
	src := rtStrategyTree(t)
	reads := &rtReads{}
	var prev *snapshot.Manifest
	for i := range 12 {
		m := rtBackup(t, r, snapshot.BackupOptions{Root: src, WrapReader: reads.wrap})
		got := reads.take()
		if i == 0 {
			prev = m
			continue
		}
		if m.Parent != prev.BackupID || len(got) != 0 {
			t.Fatalf("backup %d (%s): parent %q, want %q; read %q", i+1, m.BackupID, m.Parent, prev.BackupID, got)
		}
		latest, err := r.Resolve(context.Background(), "latest")
		if err != nil || latest.BackupID != m.BackupID {
			t.Fatalf("after backup %d: latest is %v (%v), want %s", i+1, latest.BackupID, err, m.BackupID)
		}
		prev = m
	}
}
