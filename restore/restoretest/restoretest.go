// Package restoretest builds a sample live system for tests of in-place
// restores: a live root with configuration (JSON and text), a real SQLite
// database in WAL mode, logs and model files, a profile with units and
// hooks that record their runs, and State, which records a directory tree
// byte for byte so a test can say "exactly the snapshot" or "exactly as
// before".
//
// It imports snapshot only (the repository itself comes from
// index/indextest in the tests that use it).
package restoretest

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"snapforge/snapshot"
)

// Rows is the number of rows the sample database starts with.
const Rows = 300

// ModelBytes is the size of models/model.bin.
const ModelBytes = 2 << 20

// System is a sample live system in a temporary directory.
type System struct {
	Root    string            // the live root
	Profile *snapshot.Profile // units config, db (sqlite), logs, models (default false), keys (guarded)
	HookLog string            // every hook appends its kind ("stop", "start", "smoke") here; outside Root
}

// New builds the sample live system:
//
//	config/app.json           JSON
//	config/nginx.conf         text
//	config/sub/feature.toml   text
//	config/tls/cert.pem       a hard link pair with config/tls/cert-link.pem
//	config/current            symlink to app.json
//	config/session.tmp        excluded by the profile ("*.tmp")
//	data/app.db               SQLite, WAL mode, Rows rows in table items
//	data/config.json          JSON (unit config)
//	logs/app.log, logs/old/app.log.1
//	models/model.bin          ModelBytes random bytes; models/vocab.txt
//	keys/server.key           mode 0600 (guarded unit)
//	notes.txt                 in no unit
//
// The profile's hooks append their kind to HookLog; the smoke command also
// checks that data/app.db exists. Hooks time out after 10 s.
func New(t testing.TB) *System {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "live")
	s := &System{Root: root, HookLog: filepath.Join(base, "hooks.log")}
	files := map[string]string{
		"config/app.json":         `{"name": "sample", "port": 8080, "features": ["a", "b"], "debug": false}` + "\n",
		"config/nginx.conf":       "server {\n  listen 80;\n  root /srv/sample;\n}\n",
		"config/sub/feature.toml": "[feature]\nenabled = true\nlevel = 3\n",
		"config/tls/cert.pem":     "-----BEGIN CERTIFICATE-----\nMIIBsample\n-----END CERTIFICATE-----\n",
		"config/session.tmp":      "session scratch\n",
		"data/config.json":        `{"db": "app.db", "pool": 4}` + "\n",
		"logs/app.log":            strings.Repeat("2024-01-01T00:00:00Z info started\n", 50),
		"logs/old/app.log.1":      strings.Repeat("2023-12-31T00:00:00Z info rotated\n", 20),
		"models/vocab.txt":        "alpha\nbeta\ngamma\n",
		"keys/server.key":         "PRIVATE KEY sample\n",
		"notes.txt":               "not part of any unit\n",
	}
	for rel, content := range files {
		WriteFile(t, filepath.Join(root, rel), []byte(content))
	}
	WriteFile(t, filepath.Join(root, "models/model.bin"), RandomBytes(1, ModelBytes))
	if err := os.Chmod(filepath.Join(root, "keys/server.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "config/tls/cert.pem"), filepath.Join(root, "config/tls/cert-link.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app.json", filepath.Join(root, "config/current")); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(root, "data/app.db")
	conn := openDB(t, db)
	stmts := []string{
		`PRAGMA journal_mode=WAL`,
		`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, note TEXT)`,
		`CREATE INDEX items_name ON items(name)`,
	}
	for _, q := range stmts {
		if _, err := conn.Exec(q); err != nil {
			t.Fatalf("create sample database: %s: %v", q, err)
		}
	}
	tx, err := conn.Begin()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 1; i <= Rows; i++ {
		if _, err := tx.Exec(`INSERT INTO items (id, name, qty, note) VALUES (?, ?, ?, ?)`,
			i, fmt.Sprintf("item-%04d", i), rng.IntN(1000), strings.Repeat("n", 20+rng.IntN(80))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := conn.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("sample database journal mode %q, %v; want wal", mode, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suf := range []string{"-wal", "-shm"} {
		if _, err := os.Lstat(db + suf); err == nil {
			t.Fatalf("closing the sample database left %s behind", db+suf)
		}
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	f := false
	s.Profile = &snapshot.Profile{
		Name: "sample",
		Root: root,
		Units: map[string]snapshot.Unit{
			"config": {Paths: []string{"config", "data/config.json"}},
			"db":     {Paths: []string{"data/app.db"}, SQLite: true},
			"logs":   {Paths: []string{"logs"}},
			"models": {Paths: []string{"models"}, Default: &f},
			"keys":   {Paths: []string{"keys"}, Guarded: true},
		},
		Exclude: []string{"*.tmp"},
		Hooks: &snapshot.Hooks{
			Stop:     "echo stop >> " + q(s.HookLog),
			Start:    "echo start >> " + q(s.HookLog),
			Smoke:    "echo smoke >> " + q(s.HookLog) + " && test -s data/app.db",
			TimeoutS: 10,
		},
	}
	return s
}

// Path returns the absolute path of rel in the live root.
func (s *System) Path(rel string) string { return filepath.Join(s.Root, rel) }

// DB returns the path of the live database.
func (s *System) DB() string { return s.Path("data/app.db") }

// Hooks returns a copy of the profile's hooks.
func (s *System) Hooks() *snapshot.Hooks {
	h := *s.Profile.Hooks
	return &h
}

// Backup backs up the named units (none: the profile's defaults) the way
// the CLI does and returns the snapshot's manifest.
func (s *System) Backup(t testing.TB, r *snapshot.Repo, units ...string) *snapshot.Manifest {
	t.Helper()
	return BackupProfile(t, r, s.Profile, units...)
}

// BackupProfile backs up prof's named units (none: the defaults) of
// prof.Root as the CLI does.
func BackupProfile(t testing.TB, r *snapshot.Repo, prof *snapshot.Profile, units ...string) *snapshot.Manifest {
	t.Helper()
	sel, err := prof.Select(units)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: prof.Root, Paths: sel.Paths, SQLite: sel.SQLite,
		Includes: sel.Includes, UnitPaths: sel.UnitPaths, Excludes: sel.Excludes, Exclude: prof.Exclude, Name: prof.Name})
	if err != nil {
		t.Fatalf("back up %s: %v", prof.Root, err)
	}
	if m.Partial {
		t.Fatalf("backup of %s is partial: %+v", prof.Root, m.Warnings)
	}
	return m
}

// HookRuns returns the hook kinds in the order they ran since the last
// ResetHooks.
func (s *System) HookRuns(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(s.HookLog)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// ResetHooks empties the hook log.
func (s *System) ResetHooks(t testing.TB) {
	t.Helper()
	if err := os.RemoveAll(s.HookLog); err != nil {
		t.Fatal(err)
	}
}

// Mutation lists what Mutate changes, by path relative to the root.
var Mutation = struct {
	Edited, Added, Removed, Chmodded []string
}{
	Edited:   []string{"config/app.json", "data/config.json", "data/app.db", "logs/app.log", "keys/server.key", "notes.txt"},
	Added:    []string{"config/extra.conf", "config/extra.d", "config/extra.d/x.conf", "data/app.db-wal", "data/app.db-shm", "logs/new.log", "models/new.bin", "notes-new.txt"},
	Removed:  []string{"config/sub/feature.toml"},
	Chmodded: []string{"config/nginx.conf"},
}

// Mutate changes the live system the way an application and an operator
// would after a backup (see Mutation): configuration edited, added and
// removed, a mode changed, database rows updated, inserted and deleted
// with the change left in a real -wal beside the database, logs appended,
// a model added, the guarded key and a file in no unit edited. The
// excluded config/session.tmp changes too.
func (s *System) Mutate(t testing.TB) {
	t.Helper()
	WriteFile(t, s.Path("config/app.json"), []byte(`{"name": "sample", "port": 9090, "features": ["a"], "debug": true}`+"\n"))
	WriteFile(t, s.Path("data/config.json"), []byte(`{"db": "app.db", "pool": 16}`+"\n"))
	WriteFile(t, s.Path("config/extra.conf"), []byte("added after the backup\n"))
	WriteFile(t, s.Path("config/extra.d/x.conf"), []byte("x = 1\n"))
	WriteFile(t, s.Path("config/session.tmp"), []byte("session scratch, changed\n"))
	if err := os.Remove(s.Path("config/sub/feature.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Path("config/nginx.conf"), 0o600); err != nil {
		t.Fatal(err)
	}
	AppendFile(t, s.Path("logs/app.log"), []byte("2024-01-02T00:00:00Z info more\n"))
	WriteFile(t, s.Path("logs/new.log"), []byte("new log\n"))
	WriteFile(t, s.Path("models/new.bin"), RandomBytes(2, 64<<10))
	WriteFile(t, s.Path("keys/server.key"), []byte("PRIVATE KEY rotated\n"))
	WriteFile(t, s.Path("notes.txt"), []byte("edited\n"))
	WriteFile(t, s.Path("notes-new.txt"), []byte("new, in no unit\n"))
	LeaveWAL(t, s.DB(),
		`UPDATE items SET qty = qty + 1000 WHERE id <= 50`,
		`INSERT INTO items (id, name, qty, note) VALUES (1001, 'added-1', 1, 'after the backup'), (1002, 'added-2', 2, 'after the backup')`,
		`DELETE FROM items WHERE id BETWEEN 100 AND 110`,
	)
}

// WriteFile writes data to p (mode 0644), creating parent directories.
func WriteFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// AppendFile appends data to p.
func AppendFile(t testing.TB, p string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// RandomBytes returns n deterministic pseudo-random bytes for seed.
func RandomBytes(seed uint64, n int) []byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func openDB(t testing.TB, path string, pragmas ...string) *sql.DB {
	t.Helper()
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)"
	for _, p := range pragmas {
		dsn += "&_pragma=" + p
	}
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetMaxOpenConns(1)
	return conn
}

// ExecSQL runs statements on the database at path and closes it (which
// checkpoints a WAL database and removes its -wal and -shm).
func ExecSQL(t testing.TB, path string, stmts ...string) {
	t.Helper()
	conn := openDB(t, path)
	defer conn.Close()
	for _, q := range stmts {
		if _, err := conn.Exec(q); err != nil {
			t.Fatalf("%s: %s: %v", path, q, err)
		}
	}
}

// LeaveWAL runs statements on the WAL database at path so that their
// frames stay in a real path-wal beside it (with its -shm), as a running
// application leaves them: the change is both checkpointed into the main
// file and present in the -wal, so a restored database that kept this
// -wal would show these changes again.
func LeaveWAL(t testing.TB, path string, stmts ...string) {
	t.Helper()
	conn := openDB(t, path, "wal_autocheckpoint(0)")
	for _, q := range stmts {
		if _, err := conn.Exec(q); err != nil {
			conn.Close()
			t.Fatalf("%s: %s: %v", path, q, err)
		}
	}
	wal, err := os.ReadFile(path + "-wal")
	if err != nil || len(wal) == 0 {
		conn.Close()
		t.Fatalf("no -wal beside %s after writing (%d bytes, %v)", path, len(wal), err)
	}
	shm, err := os.ReadFile(path + "-shm")
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-wal", wal, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-shm", shm, 0o644); err != nil {
		t.Fatal(err)
	}
}

// DBRows returns the rows of table items of the database at path, one
// "id|name|qty|note" string each in id order. It reads a copy (with the
// -wal, if any), so the database and its directory are left exactly as
// they were.
func DBRows(t testing.TB, path string) []string {
	t.Helper()
	dir := t.TempDir()
	cp := filepath.Join(dir, "copy.db")
	copyFile(t, path, cp)
	if _, err := os.Lstat(path + "-wal"); err == nil {
		copyFile(t, path+"-wal", cp+"-wal")
	}
	conn := openDB(t, cp)
	defer conn.Close()
	var check string
	if err := conn.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("database %s: integrity_check %q, %v", path, check, err)
	}
	rows, err := conn.Query(`SELECT id, name, qty, COALESCE(note, '') FROM items ORDER BY id`)
	if err != nil {
		t.Fatalf("query %s: %v", path, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, qty int64
		var name, note string
		if err := rows.Scan(&id, &name, &qty, &note); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d|%s|%d|%s", id, name, qty, note))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// State records every entry below root (not following symlinks), except
// the in-place restore's staging directory at the top: by slash-separated
// relative path (raw bytes), a line with the type, permission bits, owner,
// and for files size, BLAKE3, mtime and link count; for symlinks the
// target and mtime; for devices the device number. Directory mtimes are
// left out (renames inside a directory change them). A SQLite -shm file
// is recorded by size only: it is the WAL's shared-memory index, which
// SQLite rewrites whenever any connection opens the database (the
// application's, or the safety snapshot's consistent read of it); it
// holds no data and is rebuilt from the -wal.
func State(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	Walk(t, root, func(rel, abs string, st *unix.Stat_t) {
		perm := fmt.Sprintf("mode=%04o owner=%d:%d", st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			out[rel] = "dir " + perm
		case unix.S_IFREG:
			if strings.HasSuffix(rel, "-shm") {
				out[rel] = fmt.Sprintf("file %s size=%d (SQLite shared-memory index)", perm, st.Size)
				return
			}
			out[rel] = fmt.Sprintf("file %s size=%d blake3=%s mtime=%d nlink=%d", perm, st.Size, fileBLAKE3(t, abs), st.Mtim.Nano(), st.Nlink)
		case unix.S_IFLNK:
			target, err := os.Readlink(abs)
			if err != nil {
				t.Fatal(err)
			}
			out[rel] = fmt.Sprintf("symlink -> %q mtime=%d", target, st.Mtim.Nano())
		case unix.S_IFIFO:
			out[rel] = "fifo " + perm
		case unix.S_IFCHR:
			out[rel] = fmt.Sprintf("chardev %s rdev=%d:%d", perm, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFBLK:
			out[rel] = fmt.Sprintf("blockdev %s rdev=%d:%d", perm, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFSOCK:
			out[rel] = "socket " + perm
		default:
			out[rel] = fmt.Sprintf("unknown(%o)", st.Mode&unix.S_IFMT)
		}
	})
	return out
}

// Walk calls fn for every entry below root in name order, parents first,
// without following symlinks, except the in-place restore's staging
// directory at the top.
func Walk(t testing.TB, root string, fn func(rel, abs string, st *unix.Stat_t)) {
	t.Helper()
	var walk func(abs, rel string)
	walk = func(abs, rel string) {
		f, err := os.Open(abs)
		if err != nil {
			t.Fatalf("state of %s: %v", abs, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			t.Fatalf("state of %s: %v", abs, err)
		}
		sort.Strings(names)
		for _, name := range names {
			if rel == "" && name == snapshot.StagingDir {
				continue
			}
			crel := name
			if rel != "" {
				crel = rel + "/" + name
			}
			cabs := filepath.Join(abs, name)
			var st unix.Stat_t
			if err := unix.Lstat(cabs, &st); err != nil {
				t.Fatalf("state: lstat %q: %v", cabs, err)
			}
			fn(crel, cabs, &st)
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				walk(cabs, crel)
			}
		}
	}
	walk(root, "")
}

func fileBLAKE3(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatalf("hash %s: %v", p, err)
	}
	defer f.Close()
	h := blake3.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("hash %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Restrict returns the entries of st whose path keep accepts.
func Restrict(st map[string]string, keep func(rel string) bool) map[string]string {
	out := map[string]string{}
	for p, v := range st {
		if keep(p) {
			out[p] = v
		}
	}
	return out
}

// Under returns a predicate accepting each of paths and everything below
// them.
func Under(paths ...string) func(rel string) bool {
	return func(rel string) bool {
		for _, p := range paths {
			if rel == p || strings.HasPrefix(rel, p+"/") {
				return true
			}
		}
		return false
	}
}

// Not negates a predicate.
func Not(f func(string) bool) func(string) bool { return func(rel string) bool { return !f(rel) } }

// Diff lists every difference between want and got, sorted. The values
// are State's lines or any comparable record with a String form.
func Diff[V comparable](want, got map[string]V) []string {
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %q (want %v)", p, w))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%q:\n    want %v\n    got  %v", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %q (%v)", p, g))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// Equal fails the test (without stopping it) when the two states differ,
// listing every difference; what says which comparison it was.
func Equal(t testing.TB, what string, want, got map[string]string) bool {
	t.Helper()
	if len(want) == 0 && len(got) == 0 {
		return true
	}
	d := Diff(want, got)
	if len(d) > 0 {
		t.Errorf("%s: %d difference(s):\n  %s", what, len(d), strings.Join(d, "\n  "))
		return false
	}
	return true
}

// SnapshotState restores all of m into a new temporary directory with the
// plain restore and returns its State: exactly the snapshot.
func SnapshotState(t testing.TB, r *snapshot.Repo, m *snapshot.Manifest, special bool) (map[string]string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "plain")
	if _, err := r.Restore(context.Background(), m, snapshot.RestoreOptions{Target: dir, Special: special}); err != nil {
		t.Fatalf("plain restore of %s: %v", m.BackupID, err)
	}
	return State(t, dir), dir
}

// Ino returns the inode number of p (not following a symlink).
func Ino(t testing.TB, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
