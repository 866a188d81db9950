package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

	if _, err := dbDigest(ctx, src); err != nil {
		t.Fatalf("intact database: %v", err)
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
	b = &bench{out: io.Discard}
	if got, err := b.checkTree(ctx, toolSpec{name: "snapforge-sqlite", sqlite: []string{"app.db"}}, want, live, restored); err != nil || got != "byte-identical" {
		t.Fatalf("intact copy: %q, %v", got, err)
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
