package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGenerateDeterministic generates a tiny dataset three times: the same
// seed must give the same tree, another seed another one; then the same
// mutation of two equal trees must again give equal trees.
func TestGenerateDeterministic(t *testing.T) {
	dir := t.TempDir()
	gen := func(name string, seed uint64) string {
		t.Helper()
		d := filepath.Join(dir, name)
		st, err := Generate(t.Context(), GenOptions{Dir: d, Scale: 0.002, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if st.Files < 30 || st.Bytes < 3e6 {
			t.Fatalf("%s: %d files, %d bytes: smaller than the 0.002 shape", name, st.Files, st.Bytes)
		}
		return st.Root
	}
	a, b, c := gen("a", 1), gen("b", 1), gen("c", 2)
	if a != b {
		t.Errorf("seed 1 twice: tree %s, then %s", a, b)
	}
	if a == c {
		t.Errorf("seeds 1 and 2 both give tree %s", a)
	}

	head, err := os.ReadFile(filepath.Join(dir, "a", dbPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(head, []byte("SQLite format 3\x00")) {
		t.Errorf("%s is not a SQLite database", dbPath)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", dbPath+"-wal")); err == nil {
		t.Errorf("%s-wal left behind: the database was not closed cleanly", dbPath)
	}

	var after []string
	for _, name := range []string{"a", "b"} {
		st, err := Mutate(t.Context(), filepath.Join(dir, name), 7)
		if err != nil {
			t.Fatal(err)
		}
		if st.RowsUpdated == 0 || st.RowsInserted == 0 || st.LogBytes == 0 || st.ModelBytes == 0 {
			t.Errorf("mutation changed too little: %s", st)
		}
		tr, err := HashTree(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, tr.Root)
	}
	if after[0] != after[1] {
		t.Errorf("the same mutation of equal trees gives %s and %s", after[0], after[1])
	}
	if after[0] == a {
		t.Errorf("mutate did not change the tree")
	}
}
