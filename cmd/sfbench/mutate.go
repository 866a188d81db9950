package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/zeebo/blake3"
)

// MutateStats describe what Mutate changed.
type MutateStats struct {
	RowsUpdated  int
	RowsInserted int
	RowBytes     int64 // text and blob bytes of the updated and inserted rows
	PagesTouched int   // database pages that differ afterwards, new ones included
	PageSize     int
	LogBytes     int64 // appended to two logs
	Configs      []string
	Model        string
	ModelOffset  int64
	ModelBytes   int64
}

// NewBytes is the amount of new data the mutation wrote.
func (s MutateStats) NewBytes() int64 { return s.RowBytes + s.LogBytes + s.ModelBytes }

func (s MutateStats) String() string {
	return fmt.Sprintf("%d rows updated and %d inserted (%s; %s of database pages touched), %s appended to logs/app.log and logs/access.log, %s and %s edited, %s rewritten in %s at offset %d; %s of new data",
		s.RowsUpdated, s.RowsInserted, mb(s.RowBytes), mb(int64(s.PagesTouched*s.PageSize)), mb(s.LogBytes), s.Configs[0], s.Configs[1],
		mb(s.ModelBytes), s.Model, s.ModelOffset, mb(s.NewBytes()))
}

// Mutate applies the "~1 %" change to a dataset made by Generate: 1.5 % of
// the database rows updated (among the newest 20 %) and 1 % inserted (through SQLite, so the WAL is
// checkpointed on close as in a live application), 1 % of the log volume
// appended to each of two logs, two config files edited, and 1 MiB rewritten
// in place inside the largest model file. The same dataset and seed give the
// same result.
func Mutate(ctx context.Context, dir string, seed uint64) (MutateStats, error) {
	var st MutateStats
	if err := mutateDB(ctx, filepath.Join(dir, dbPath), seed, &st); err != nil {
		return st, fmt.Errorf("mutate database: %w", err)
	}
	if err := mutateLogs(filepath.Join(dir, "logs"), seed, &st); err != nil {
		return st, fmt.Errorf("mutate logs: %w", err)
	}
	for _, name := range []string{"config/app.json", "config/ui.json"} {
		if err := editConfig(dir, name, seed); err != nil {
			return st, fmt.Errorf("mutate %s: %w", name, err)
		}
		st.Configs = append(st.Configs, name)
	}
	if err := mutateModel(filepath.Join(dir, "models"), seed, &st); err != nil {
		return st, fmt.Errorf("mutate model: %w", err)
	}
	return st, nil
}

func mutateDB(ctx context.Context, path string, seed uint64, st *MutateStats) error {
	before, err := pageSums(path) // also: sql.Open would create a missing database
	if err != nil {
		return err
	}
	if err := changeRows(ctx, path, seed, st); err != nil {
		return err
	}
	after, err := pageSums(path)
	if err != nil {
		return err
	}
	for i, sum := range after {
		if i >= len(before) || before[i] != sum {
			st.PagesTouched++
		}
	}
	st.PageSize = dbPageSize
	return nil
}

// dbPageSize is the page size of the generated database (SQLite's default).
const dbPageSize = 4096

// pageSums hashes each page of a database file.
func pageSums(path string) ([][16]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var sums [][16]byte
	page := make([]byte, dbPageSize)
	for {
		n, err := io.ReadFull(f, page)
		if n > 0 {
			var s [16]byte
			h := blake3.Sum256(page[:n])
			copy(s[:], h[:])
			sums = append(sums, s)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return sums, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// changeRows updates and inserts rows in one transaction.
func changeRows(ctx context.Context, path string, seed uint64, st *MutateStats) (err error) {
	db, err := openDB(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	var rows, maxID int
	if err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(max(id), 0) FROM documents`).Scan(&rows, &maxID); err != nil {
		return err
	}
	r := newRNG(seed, "mutate db")
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	upd, err := tx.PrepareContext(ctx, `UPDATE documents SET body = ?, attachment = ?, updated = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	defer upd.Close()
	seen := map[int]bool{}
	hot := max(1, maxID/5) // updates go to the newest 20 % of the rows, as an application's recent records
	for len(seen) < max(1, min(hot, rows*15/1000)) {
		id := maxID - r.IntN(hot)
		if seen[id] {
			continue
		}
		seen[id] = true
		row := newDocRow(r, id)
		res, err := upd.ExecContext(ctx, row.body, row.attachment, row.updated+86400*30, id)
		if err != nil {
			return fmt.Errorf("update row %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			st.RowsUpdated++
			st.RowBytes += int64(len(row.body) + len(row.attachment))
		}
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO documents (id, title, body, attachment, created, updated) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for id := maxID + 1; id <= maxID+max(1, rows/100); id++ {
		row := newDocRow(r, id)
		if _, err := ins.ExecContext(ctx, id, row.title, row.body, row.attachment, row.created, row.updated); err != nil {
			return fmt.Errorf("insert row %d: %w", id, err)
		}
		st.RowsInserted++
		st.RowBytes += int64(len(row.title) + len(row.body) + len(row.attachment))
	}
	return tx.Commit()
}

// mutateLogs appends 1 % of the whole log volume to each of app.log and
// access.log.
func mutateLogs(dir string, seed uint64, st *MutateStats) error {
	var total int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, name := range []string{"app.log", "access.log"} {
		p := filepath.Join(dir, name)
		before, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := writeLog(p, max(1, total/100), newRNG(seed, "mutate log "+name), epoch.AddDate(0, 1, 0)); err != nil {
			return err
		}
		after, err := os.Stat(p)
		if err != nil {
			return err
		}
		st.LogBytes += after.Size() - before.Size()
	}
	return nil
}

// editConfig rewrites the config file rel in place with a new revision.
func editConfig(dir, rel string, seed uint64) error {
	path := filepath.Join(dir, rel)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	r := newRNG(seed, "mutate "+rel)
	m["revision"] = 2 + r.IntN(1000)
	m["updated_at"] = epoch.AddDate(0, 1, 0).Format(time.RFC3339)
	m["theme"] = words[r.IntN(len(words))]
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}

// mutateModel rewrites 1 MiB at a random, unaligned offset inside the
// largest model file, keeping its size.
func mutateModel(dir string, seed uint64, st *MutateStats) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var name string
	var size int64
	for _, e := range ents { // sorted by name: ties resolve the same way
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && fi.Size() > size {
			name, size = e.Name(), fi.Size()
		}
	}
	if name == "" {
		return fmt.Errorf("no model file in %s", dir)
	}
	n := min(int64(1<<20), size)
	src := newChaCha(seed, "mutate model")
	buf := make([]byte, n)
	src.Read(buf)
	off := int64(0)
	if size > n {
		off = int64(newRNG(seed, "mutate model offset").Uint64() % uint64(size-n))
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	st.Model, st.ModelOffset, st.ModelBytes = "models/"+name, off, n
	return nil
}
