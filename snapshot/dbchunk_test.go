package snapshot_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/chunker"
)

// Tests of how SQLite databases are cut into chunks (fixed, page-aligned,
// Config.SQLiteChunk) and of the reuse of an unchanged database of a sqlite
// unit without a new capture.

const dbRows = 300 // rows of about 1 KiB: a database of ~100 4 KiB pages

// dbPayload returns row id's payload: 1000 bytes that depend on id and gen.
func dbPayload(id, gen int) []byte {
	b := make([]byte, 1000)
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("%d/%d", id, gen))
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

// dbCreate makes a database at p with the given journal mode and page size
// and dbRows rows, and closes it (a WAL database is then fully checkpointed
// and has no -wal).
func dbCreate(t testing.TB, p, journal string, pageSize int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	db := dbOpen(t, p, "")
	// In this order: the page size is fixed once the file has a header,
	// which switching to WAL writes.
	dbExec(t, db, fmt.Sprintf(`PRAGMA page_size = %d`, pageSize))
	dbExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)`)
	dbExec(t, db, `PRAGMA journal_mode = `+journal)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < dbRows; i++ {
		if _, err := tx.Exec(`INSERT INTO t VALUES (?, ?)`, i, dbPayload(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func dbOpen(t testing.TB, p, pragmas string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(5000)"+pragmas)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

func dbExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// dbUpdate rewrites row id in place (same length) with generation gen's
// payload. With checkpoint the change is copied into the main file and the
// -wal emptied, and nil is returned. Without, the change stays in the -wal
// only, and the connection is returned open, as a running application keeps
// it (closing the last connection would checkpoint); the caller closes it.
func dbUpdate(t testing.TB, p string, id, gen int, checkpoint bool) *sql.DB {
	t.Helper()
	db := dbOpen(t, p, "&_pragma=wal_autocheckpoint(0)")
	dbExec(t, db, `UPDATE t SET v = ? WHERE id = ?`, dbPayload(id, gen), id)
	if !checkpoint {
		return db
	}
	dbExec(t, db, `PRAGMA wal_checkpoint(TRUNCATE)`)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return nil
}

// dbRow reads row id of the database at p (read-only).
func dbRow(t testing.TB, p string, id int) []byte {
	t.Helper()
	db := openCheckedDB(t, p)
	defer db.Close()
	var v []byte
	if err := db.QueryRow(`SELECT v FROM t WHERE id = ?`, id).Scan(&v); err != nil {
		t.Fatalf("%s: row %d: %v", p, id, err)
	}
	return v
}

// dbBackup backs up root; sqlite lists paths captured through a sqlite unit.
func dbBackup(t testing.TB, r *snapshot.Repo, root string, sqlite ...string) *snapshot.Manifest {
	t.Helper()
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: root, SQLite: sqlite})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if m.Partial {
		t.Fatalf("backup partial: %+v", m.Warnings)
	}
	return m
}

func dbNode(t testing.TB, r *snapshot.Repo, m *snapshot.Manifest, rel string) *snapshot.Node {
	t.Helper()
	n, err := r.FindNode(context.Background(), m, rel)
	if err != nil {
		t.Fatalf("find %s in %s: %v", rel, m.BackupID, err)
	}
	return n
}

// dbRestoreFile restores m and returns the path and bytes of rel in it
// (rel "": the restore's directory, no bytes).
func dbRestoreFile(t testing.TB, r *snapshot.Repo, m *snapshot.Manifest, rel string) (string, []byte) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restore")
	if _, err := r.Restore(context.Background(), m, snapshot.RestoreOptions{Target: target}); err != nil {
		t.Fatalf("restore %s: %v", m.BackupID, err)
	}
	if rel == "" {
		return target, nil
	}
	p := filepath.Join(target, rel)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// checkChunks asserts that n's chunk list cuts data into chunks of the
// given sizes, each named by its BLAKE3, and that n's hash is data's.
func checkChunks(t testing.TB, n *snapshot.Node, data []byte, sizes []int) {
	t.Helper()
	if len(n.Chunks) != len(sizes) {
		t.Fatalf("%s: %d chunks, want %d (sizes %v)", n.Name, len(n.Chunks), len(sizes), chunkSizes(n))
	}
	off := 0
	for i, c := range n.Chunks {
		if int(c.Size) != sizes[i] {
			t.Fatalf("%s: chunk %d is %d bytes, want %d (sizes %v)", n.Name, i, c.Size, sizes[i], chunkSizes(n))
		}
		if c.ID != snapshot.Hash(data[off:off+sizes[i]]) {
			t.Fatalf("%s: chunk %d id is not the BLAKE3 of bytes [%d,%d)", n.Name, i, off, off+sizes[i])
		}
		off += sizes[i]
	}
	if off != len(data) || n.Hash != snapshot.Hash(data) {
		t.Fatalf("%s: chunks cover %d of %d bytes, or the file hash differs", n.Name, off, len(data))
	}
}

func chunkSizes(n *snapshot.Node) []int {
	var s []int
	for _, c := range n.Chunks {
		s = append(s, int(c.Size))
	}
	return s
}

// fixedSizes are the chunk sizes of n bytes cut every size bytes.
func fixedSizes(n, size int) []int {
	var s []int
	for ; n > 0; n -= size {
		s = append(s, min(n, size))
	}
	return s
}

// cdcSizes are the content-defined chunk sizes of data.
func cdcSizes(data []byte, p chunker.Params) []int {
	var s []int
	for _, c := range chunker.Split(data, p) {
		s = append(s, len(c))
	}
	return s
}

// dbLaterClock makes the test's files older than the engine's timestamp
// window, so an incremental backup may trust them (the clock is the one fake
// the rules allow).
func dbLaterClock(o *snapshot.Options) {
	o.Now = func() time.Time { return time.Now().Add(time.Hour) }
}

// A database backed up as a plain file, and one captured through a sqlite
// unit, is cut into fixed chunks of max(16 KiB, page size), aligned to
// pages; restore gives the same bytes.
func TestDBChunkPageAligned(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	if got := r.Config().SQLiteChunk; got != chunker.DefaultSQLiteChunk {
		t.Fatalf("new repository: sqlite_chunk %d, want %d", got, chunker.DefaultSQLiteChunk)
	}
	src := t.TempDir()
	for _, page := range []int{512, 4096, 65536} {
		dbCreate(t, filepath.Join(src, fmt.Sprintf("plain-%d.db", page)), "delete", page)
		dbCreate(t, filepath.Join(src, fmt.Sprintf("unit-%d.db", page)), "wal", page)
	}
	var units []string
	for _, page := range []int{512, 4096, 65536} {
		units = append(units, fmt.Sprintf("unit-%d.db", page))
	}
	m := dbBackup(t, r, src, units...)
	target, _ := dbRestoreFile(t, r, m, "")
	for _, page := range []int{512, 4096, 65536} {
		size := max(page, chunker.DefaultSQLiteChunk)
		for _, name := range []string{fmt.Sprintf("plain-%d.db", page), fmt.Sprintf("unit-%d.db", page)} {
			n := dbNode(t, r, m, name)
			restored := filepath.Join(target, name)
			got, err := os.ReadFile(restored)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(name, "plain") {
				want, err := os.ReadFile(filepath.Join(src, name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: restored bytes differ from the source", name)
				}
			} else if n.Flags&snapshot.FlagSQLite == 0 {
				t.Fatalf("%s: not stored through the online backup (flags %b)", name, n.Flags)
			}
			if chunker.SQLitePageSize(got) != page || len(got)%page != 0 || len(got) < 4*page {
				t.Fatalf("%s: %d bytes, page size %d: not a database of several %d-byte pages", name, len(got), chunker.SQLitePageSize(got), page)
			}
			checkChunks(t, n, got, fixedSizes(len(got), size))
			if v := dbRow(t, restored, dbRows-1); !bytes.Equal(v, dbPayload(dbRows-1, 0)) {
				t.Fatalf("%s: restored database lost its last row", name)
			}
		}
	}
}

// TestDBChunkPageAlignedLarge: a database large enough to be read with
// O_DIRECT (the header that picks page-aligned chunks is read before the
// flag is set) is cut at its pages, also when it changes while read and is
// read again.
func TestDBChunkPageAlignedLarge(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	p := filepath.Join(src, "big.db")
	dbCreate(t, p, "delete", 4096)
	db := dbOpen(t, p, "")
	for i := dbRows; i < dbRows+2500; i++ {
		dbExec(t, db, `INSERT INTO t VALUES (?, ?)`, i, dbPayload(i, 0))
	}
	db.Close()
	var reads int
	m := fltBackup(t, r, src, func(o *snapshot.BackupOptions) {
		o.WrapReader = func(rel string, rd io.Reader) io.Reader {
			if rel == "big.db" {
				if reads++; reads == 1 { // a change while read: read again
					f, err := os.OpenFile(p, os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := f.WriteAt([]byte{0x5a}, 3<<19+17); err != nil {
						t.Fatal(err)
					}
					f.Close()
				}
			}
			return rd
		}
	})
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 2<<20 || reads != 2 {
		t.Fatalf("big.db: %d bytes, read %d times; the test wants over 2 MiB read twice", len(got), reads)
	}
	checkChunks(t, dbNode(t, r, m, "big.db"), got, fixedSizes(len(got), chunker.DefaultSQLiteChunk))
}

// Updating one row in place changes one page, and one chunk: the trees of two
// snapshots list the same chunks but for the one holding that page.
func TestDBChunkInPlaceUpdate(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	for _, name := range []string{"plain.db", "unit.db"} {
		dbCreate(t, filepath.Join(src, name), "wal", 4096)
	}
	m1 := dbBackup(t, r, src, "unit.db")
	before, err := os.ReadFile(filepath.Join(src, "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	const row = dbRows / 2
	for _, name := range []string{"plain.db", "unit.db"} {
		dbUpdate(t, filepath.Join(src, name), row, 1, true)
	}
	after, err := os.ReadFile(filepath.Join(src, "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	m2 := dbBackup(t, r, src, "unit.db")

	// The live file: the update rewrote bytes inside one 16 KiB chunk only.
	if len(after) != len(before) {
		t.Fatalf("the in-place update changed the file size %d → %d", len(before), len(after))
	}
	changed := map[int]bool{}
	for i := range after {
		if after[i] != before[i] {
			changed[i/chunker.DefaultSQLiteChunk] = true
		}
	}
	if len(changed) != 1 {
		t.Fatalf("the update touched %d chunk ranges of the file, want 1: %v", len(changed), changed)
	}
	for _, name := range []string{"plain.db", "unit.db"} {
		a, b := dbNode(t, r, m1, name), dbNode(t, r, m2, name)
		if len(a.Chunks) != len(b.Chunks) {
			t.Fatalf("%s: %d chunks, then %d", name, len(a.Chunks), len(b.Chunks))
		}
		var diff []int
		for i := range a.Chunks {
			if a.Chunks[i] != b.Chunks[i] {
				diff = append(diff, i)
			}
		}
		if len(diff) != 1 || !changed[diff[0]] {
			t.Fatalf("%s: chunks %v changed, want exactly the one holding the updated page %v", name, diff, changed)
		}
		restored, _ := dbRestoreFile(t, r, m2, name)
		if v := dbRow(t, restored, row); !bytes.Equal(v, dbPayload(row, 1)) {
			t.Fatalf("%s: restored row %d is not the updated one", name, row)
		}
		if v := dbRow(t, restored, row+1); !bytes.Equal(v, dbPayload(row+1, 0)) {
			t.Fatalf("%s: restored row %d changed", name, row+1)
		}
	}
	// One chunk of each database, plus trees: far less than a CDC chunk.
	if m2.Stats.NewBytes > 4*chunker.DefaultSQLiteChunk {
		t.Errorf("the second backup stored %d new bytes, want at most two 16 KiB chunks and trees", m2.Stats.NewBytes)
	}
}

// Other files are still cut by content, also one that starts like a SQLite
// header but has no valid page size.
func TestDBChunkOtherFilesUseCDC(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	random := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(random)
	fake := append([]byte("SQLite format 3\x00\x0f\xa0"), random[:2<<20]...) // page size 4000: invalid
	indextest.WriteFile(t, filepath.Join(src, "random.bin"), random)
	indextest.WriteFile(t, filepath.Join(src, "fake.db"), fake)
	m := dbBackup(t, r, src)
	p := r.Config().Chunker
	checkChunks(t, dbNode(t, r, m, "random.bin"), random, cdcSizes(random, p))
	checkChunks(t, dbNode(t, r, m, "fake.db"), fake, cdcSizes(fake, p))
	if len(cdcSizes(random, p)) < 2 || cdcSizes(random, p)[0]%4096 == 0 {
		t.Fatalf("test data too regular to tell CDC from fixed chunks: %v", cdcSizes(random, p))
	}
}

// setSQLiteChunk rewrites snapforge.json of the closed repository at repo
// with sqlite_chunk set to v, or without the field when v is nil (the config
// of a repository created before it existed).
func setSQLiteChunk(t testing.TB, repo string, v any) {
	t.Helper()
	p := filepath.Join(repo, "snapforge.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg["sqlite_chunk"]; !ok {
		t.Fatalf("a new repository's config has no sqlite_chunk: %s", b)
	}
	if v == nil {
		delete(cfg, "sqlite_chunk")
	} else {
		cfg["sqlite_chunk"] = v
	}
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A repository whose config predates sqlite_chunk keeps cutting databases by
// content, as plain files and through a sqlite unit, so its deduplication
// against older snapshots is unchanged. A bad value is refused at open.
func TestDBChunkOldConfigUsesCDC(t *testing.T) {
	// Small content-defined chunks, so a small database makes several.
	repo := filepath.Join(t.TempDir(), "repo")
	p := chunker.Params{Min: 64 << 10, Avg: 128 << 10, Max: 512 << 10}
	r, err := snapshot.Init(context.Background(), repo, snapshot.InitOptions{Chunker: p}, indextest.Options())
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	setSQLiteChunk(t, repo, 3000)
	if r, err = snapshot.Open(context.Background(), repo, indextest.Options()); err == nil {
		r.Close()
		t.Fatal("a repository with sqlite_chunk 3000 opened")
	} else if !strings.Contains(err.Error(), "sqlite_chunk") {
		t.Fatalf("open error %q does not name sqlite_chunk", err)
	}
	setSQLiteChunk(t, repo, nil)
	r = indextest.OpenRepo(t, repo)
	if got := r.Config().SQLiteChunk; got != 0 {
		t.Fatalf("old config: sqlite_chunk %d, want 0", got)
	}
	src := t.TempDir()
	dbCreate(t, filepath.Join(src, "plain.db"), "delete", 4096)
	dbCreate(t, filepath.Join(src, "unit.db"), "wal", 4096)
	m := dbBackup(t, r, src, "unit.db")
	for _, name := range []string{"plain.db", "unit.db"} {
		_, got := dbRestoreFile(t, r, m, name)
		sizes := cdcSizes(got, p)
		if len(sizes) < 2 {
			t.Fatalf("%s: %d bytes give %d content-defined chunks; the test needs several", name, len(got), len(sizes))
		}
		checkChunks(t, dbNode(t, r, m, name), got, sizes)
	}
}

// A database of a sqlite unit whose file, -wal and -journal are unchanged
// is not captured again: the next snapshot keeps its node and chunk list.
// Any change, also one that is only in the -wal, makes the next backup
// capture it again. FAULTS D19 (the copy stays consistent), D1 (timestamps
// too recent to trust are not trusted).
func TestDBChunkUnitReuse(t *testing.T) {
	var chunking atomic.Int64 // files read and chunked
	r, _ := indextest.NewRepo(t, dbLaterClock, func(o *snapshot.Options) {
		o.Hook = func(p string) {
			if p == "chunking" {
				chunking.Add(1)
			}
		}
	})
	src := t.TempDir()
	db := filepath.Join(src, "data", "app.db")
	dbCreate(t, db, "wal", 4096)
	const row = 7
	var app *sql.DB // the application's open connection, while it has one
	defer func() {
		if app != nil {
			app.Close()
		}
	}()

	type step struct {
		name     string
		change   func()
		captured bool
		want     int // generation of row's payload in the snapshot
	}
	steps := []step{
		{"first", func() {}, true, 0},
		// Capture left an empty -wal and a -shm behind: still the same state.
		{"unchanged", func() {}, false, 0},
		{"unchanged again", func() {}, false, 0},
		// The main file is untouched; the commit is only in the -wal.
		{"wal only", func() { app = dbUpdate(t, db, row, 1, false) }, true, 1},
		{"unchanged with a wal", func() {}, false, 1},
		{"checkpointed", func() {
			if err := app.Close(); err != nil { // the last connection: checkpoints
				t.Fatal(err)
			}
			dbUpdate(t, db, row, 2, true)
		}, true, 2},
		{"unchanged after checkpoint", func() {}, false, 2},
	}
	var prev *snapshot.Node
	for _, s := range steps {
		s.change()
		chunking.Store(0)
		m := dbBackup(t, r, src, "data")

		n := dbNode(t, r, m, "data/app.db")
		if n.Flags&snapshot.FlagSQLite == 0 || n.Flags&snapshot.FlagNoCache != 0 {
			t.Fatalf("%s: flags %b, want FlagSQLite only", s.name, n.Flags)
		}
		if got := chunking.Load() > 0; got != s.captured {
			t.Fatalf("%s: captured %v, want %v", s.name, got, s.captured)
		}
		if !s.captured {
			if fmt.Sprint(n.Chunks) != fmt.Sprint(prev.Chunks) || n.Hash != prev.Hash || n.Size != prev.Size || n.CTime != prev.CTime {
				t.Fatalf("%s: reused node differs from the previous one", s.name)
			}
			// Trees only (a directory's mtime may have changed), no chunk:
			// the database's are 16 KiB, its last one at least a page.
			if m.Stats.NewBytes >= 1024 {
				t.Fatalf("%s: %d new bytes stored without a change", s.name, m.Stats.NewBytes)
			}
		}
		for _, it := range m.Items {
			if it.Path != "data/app.db" && it.Type == "file" {
				t.Fatalf("%s: side file %s stored", s.name, it.Path)
			}
		}
		restored, got := dbRestoreFile(t, r, m, "data/app.db")
		if n.Hash != snapshot.Hash(got) {
			t.Fatalf("%s: restored bytes do not match the node's hash", s.name)
		}
		if v := dbRow(t, restored, row); !bytes.Equal(v, dbPayload(row, s.want)) {
			t.Fatalf("%s: restored row %d is not generation %d", s.name, row, s.want)
		}
		prev = n
	}
}

// With the real clock the database's timestamps are within the engine's
// window of the backup's start: the node is flagged and the next backup
// captures again, since a change in the same clock tick would not show.
// FAULTS D1.
func TestDBChunkUnitRecentNotReused(t *testing.T) {
	var chunking atomic.Int64
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) {
		o.Hook = func(p string) {
			if p == "chunking" {
				chunking.Add(1)
			}
		}
	})
	src := t.TempDir()
	dbCreate(t, filepath.Join(src, "app.db"), "wal", 4096)
	for i := 0; i < 2; i++ {
		chunking.Store(0)
		m := dbBackup(t, r, src, "app.db")
		if n := dbNode(t, r, m, "app.db"); n.Flags&snapshot.FlagNoCache == 0 {
			t.Fatalf("backup %d: a database written just now is not flagged (flags %b)", i, n.Flags)
		}
		if chunking.Load() == 0 {
			t.Fatalf("backup %d: the database was not captured", i)
		}
	}
}

// A database captured through a sqlite unit is stored as the file its read
// snapshot sees, page by page: an idle database, in rollback-journal mode or
// checkpointed WAL, comes back byte for byte (the node's hash is BLAKE3 of
// the source file, so b3sum of the source matches the manifest), and a
// commit still only in the -wal of an open connection is in the image while
// no -wal is stored. FAULTS D19.
func TestDBChunkUnitImageExact(t *testing.T) {
	for _, journal := range []string{"delete", "wal"} {
		t.Run(journal, func(t *testing.T) {
			r, _ := indextest.NewRepo(t, dbLaterClock)
			src := t.TempDir()
			db := filepath.Join(src, "data", "app.db")
			dbCreate(t, db, journal, 4096)
			want, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			m := dbBackup(t, r, src, "data")
			n := dbNode(t, r, m, "data/app.db")
			if n.Hash != snapshot.Hash(want) || n.Size != int64(len(want)) {
				t.Fatalf("node hash/size %s/%d, want BLAKE3 of the idle source %s/%d", n.Hash.Short(), n.Size, snapshot.Hash(want).Short(), len(want))
			}
			checkChunks(t, n, want, fixedSizes(len(want), 16<<10))
			_, got := dbRestoreFile(t, r, m, "data/app.db")
			if !bytes.Equal(got, want) {
				t.Fatalf("restored database differs from the idle source")
			}
			if journal != "wal" {
				return
			}
			app := dbUpdate(t, db, 3, 1, false) // committed, only in the -wal
			defer app.Close()
			if fi, err := os.Stat(db + "-wal"); err != nil || fi.Size() == 0 {
				t.Fatalf("-wal after the commit: %v, %v", fi, err)
			}
			m = dbBackup(t, r, src, "data")
			for _, it := range m.Items {
				if it.Type == "file" && it.Path != "data/app.db" {
					t.Fatalf("side file %s stored", it.Path)
				}
			}
			p, _ := dbRestoreFile(t, r, m, "data/app.db")
			if v := dbRow(t, p, 3); !bytes.Equal(v, dbPayload(3, 1)) {
				t.Fatalf("restored row 3 is not the commit that was in the -wal")
			}
		})
	}
}

// A database of a sqlite unit that fails integrity_check is left out of the
// snapshot with a warning naming it; the backup is partial, every other file
// is stored, and nothing of the database is presented as complete. FAULTS C7,
// D19.
func TestDBChunkUnitCorruptLeftOut(t *testing.T) {
	r, _ := indextest.NewRepo(t, dbLaterClock)
	src := t.TempDir()
	db := filepath.Join(src, "data", "app.db")
	dbCreate(t, db, "delete", 4096)
	if err := os.WriteFile(filepath.Join(src, "data", "notes.txt"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	// Scribble over the cell pointers of every b-tree page after page 2.
	for off := 2 * 4096; off+4096 <= len(b); off += 4096 {
		if b[off] == 0x0d || b[off] == 0x05 {
			copy(b[off+8:off+40], bytes.Repeat([]byte{0xff}, 32))
		}
	}
	if err := os.WriteFile(db, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := r.Backup(context.Background(), snapshot.BackupOptions{Root: src, SQLite: []string{"data"}})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if !m.Partial {
		t.Fatal("backup of a corrupt database not marked partial")
	}
	found := false
	for _, w := range m.Warnings {
		if strings.Contains(fmt.Sprint(w), "app.db") && strings.Contains(fmt.Sprint(w), "integrity check") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no warning names app.db and the failed integrity check: %+v", m.Warnings)
	}
	if _, err := r.FindNode(context.Background(), m, "data/app.db"); err == nil {
		t.Fatal("the corrupt database is in the snapshot")
	}
	_, got := dbRestoreFile(t, r, m, "data/notes.txt")
	if string(got) != "kept\n" {
		t.Fatalf("notes.txt restored as %q", got)
	}
}
