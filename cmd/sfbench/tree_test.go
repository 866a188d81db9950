package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A restored database whose index is damaged still reads the same rows in
// rowid order; the restore check must call it different all the same (the
// third acceptance run's tampered restore passed as "same rows").
func TestRestoreCheckCatchesDamagedIndex(t *testing.T) {
	ctx := context.Background()
	live, restored := t.TempDir(), t.TempDir()
	src := filepath.Join(live, "app.db")
	db, err := sql.Open("sqlite", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{
		`PRAGMA page_size = 4096`,
		`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`,
		`CREATE INDEX iv ON t (v)`,
	}
	for i := range 3000 {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO t (v) VALUES ('value-%06d-%s')`, (i*7919)%3000, strings.Repeat("x", 40)))
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	var root int64
	if err := db.QueryRow(`SELECT rootpage FROM sqlite_schema WHERE name = 'iv'`).Scan(&root); err != nil {
		t.Fatal(err)
	}
	db.Close()

	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	// Scramble the cells of the index's root page, past its header: the
	// table's b-tree, and so every row read in rowid order, is untouched.
	page := int((root - 1) * 4096)
	for i := page + 512; i < page+4096; i++ {
		data[i] ^= 0x5a
	}
	dst := filepath.Join(restored, "app.db")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// The rows alone cannot tell: that is what the check compared before.
	rowsOf := func(p string) string {
		db, err := sql.Open("sqlite", "file:"+p+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var b strings.Builder
		if err := hashRows(ctx, db, "t", &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if rowsOf(src) != rowsOf(dst) {
		t.Fatal("the damage reached the table's rows: the test no longer covers a damaged index")
	}

	intact, err := dbDigest(ctx, src)
	if err != nil {
		t.Fatalf("intact database: %v", err)
	}
	// Another user_version (an application's schema version) is another
	// database, rows or not.
	bumped := filepath.Join(t.TempDir(), "bumped.db")
	if err := os.WriteFile(bumped, mustRead(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
	bdb, err := sql.Open("sqlite", "file:"+bumped)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bdb.Exec(`PRAGMA user_version = 7`); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	if d, err := dbDigest(ctx, bumped); err != nil || d == intact {
		t.Errorf("user_version 7: digest %q (%v), the same as the original's", d, err)
	}
	if d, err := dbDigest(ctx, dst); err == nil || !strings.Contains(err.Error(), "integrity check") {
		t.Fatalf("damaged index: digest %q, error %v; want an integrity-check error", d, err)
	}

	b := &bench{out: io.Discard}
	want, err := HashTree(live)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.checkTree(ctx, toolSpec{name: "snapforge-sqlite", sqlite: []string{"app.db"}}, want, live, restored)
	if err != nil {
		t.Fatal(err)
	}
	if got != "DIFFERS" || len(b.errs) != 1 || !strings.Contains(b.errs[0], "integrity check") {
		t.Fatalf("check = %q, errors %q; want DIFFERS naming the integrity check", got, b.errs)
	}

	// The same bytes restored intact pass as byte-identical.
	if err := os.WriteFile(dst, mustRead(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
	sameTimes(t, src, dst)
	b = &bench{out: io.Discard}
	if got, err := b.checkTree(ctx, toolSpec{name: "snapforge-sqlite", sqlite: []string{"app.db"}}, want, live, restored); err != nil || got != "byte-identical; owners, mtimes and hard links kept" {
		t.Fatalf("intact copy: %q, %v", got, err)
	}
}

func sameTimes(t *testing.T, from, to string) {
	t.Helper()
	fi, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(to, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// A restore with the right bytes but lost mtimes or hard links is wrong
// for snapforge and noted for a peer (acceptance run 3: a restore with
// every mtime set to 1970 and a hard link broken passed as
// "byte-identical").
func TestRestoreCheckComparesMetadata(t *testing.T) {
	ctx := context.Background()
	live := t.TempDir()
	for _, f := range []string{"a.txt", "dir/b.txt"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(live, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(live, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(live, "a.txt"), filepath.Join(live, "dir/a-link")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	for _, p := range []string{"dir/b.txt", "dir", "a.txt"} {
		if err := os.Chtimes(filepath.Join(live, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	want, err := HashTree(live)
	if err != nil {
		t.Fatal(err)
	}
	cp := func(t *testing.T) string {
		dst := filepath.Join(t.TempDir(), "r")
		if out, err := exec.Command("cp", "-a", live, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp -a: %v %s", err, out)
		}
		return dst
	}
	check := func(spec toolSpec, root string) (string, []string) {
		b := &bench{out: io.Discard}
		got, err := b.checkTree(ctx, spec, want, live, root)
		if err != nil {
			t.Fatal(err)
		}
		return got, b.errs
	}
	sf, peer := toolSpec{name: "snapforge", snapforge: true}, toolSpec{name: "restic"}
	if got, errs := check(sf, cp(t)); got != "byte-identical; owners, mtimes and hard links kept" || len(errs) != 0 {
		t.Fatalf("cp -a copy: %q %q", got, errs)
	}

	lost := cp(t)
	if err := os.Chtimes(filepath.Join(lost, "dir/b.txt"), time.Unix(86400, 0), time.Unix(86400, 0)); err != nil {
		t.Fatal(err)
	}
	if got, errs := check(sf, lost); got != "DIFFERS (metadata)" || len(errs) != 1 || !strings.Contains(errs[0], "dir/b.txt: mtime 1970-01-02T00:00:00Z, want 2001-02-03T04:05:06.000000789Z") {
		t.Errorf("lost mtime, snapforge: %q %q", got, errs)
	}
	if got, errs := check(peer, lost); !strings.HasPrefix(got, "byte-identical; metadata differs in 1 path(s), e.g. dir/b.txt: mtime") || len(errs) != 0 {
		t.Errorf("lost mtime, a peer: %q %q", got, errs)
	}

	unlinked := cp(t)
	link := filepath.Join(unlinked, "dir/a-link")
	fi, err := os.Stat(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, []byte("a.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(link, fi.ModTime(), fi.ModTime())
	if got, errs := check(sf, unlinked); got != "DIFFERS (metadata)" || len(errs) != 1 || !strings.Contains(errs[0], "dir/a-link: not hard-linked to a.txt") {
		t.Errorf("broken hard link: %q %q", got, errs)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
