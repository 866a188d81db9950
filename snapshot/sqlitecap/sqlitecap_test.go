package sqlitecap

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// openApp opens path the way an application would: read-write, created if
// missing, with a busy timeout. extra is appended to the DSN query.
func openApp(t testing.TB, path, extra string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)"+extra)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func queryInt(t testing.TB, db *sql.DB, query string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func queryString(t testing.TB, db *sql.DB, query string) string {
	t.Helper()
	var s string
	if err := db.QueryRow(query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

// openCopy opens a captured copy read-only.
func openCopy(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, "ro"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// dirState lists the files in dir with their sizes, sorted.
func dirState(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Name()+" "+strconv.FormatInt(fi.Size(), 10))
	}
	slices.Sort(out)
	return out
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertAbsent(t testing.TB, path string) {
	t.Helper()
	for _, p := range []string{path, path + "-journal", path + "-wal", path + "-shm"} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: exists or unreadable (%v), want absent", filepath.Base(p), err)
		}
	}
}

func assertNoSideFiles(t testing.TB, path string) {
	t.Helper()
	for _, s := range sideFiles {
		if _, err := os.Lstat(path + s); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: exists or unreadable (%v), want absent", filepath.Base(path+s), err)
		}
	}
}

func TestIsSQLite(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "real.db")
	mustExec(t, openApp(t, db, ""), "CREATE TABLE t(x)")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    bool
		wantErr bool
	}{
		{"database", db, true, false},
		{"header only", write("hdr", "SQLite format 3\x00"), true, false},
		{"empty", write("empty", ""), false, false},
		{"short", write("short", "SQLite format"), false, false},
		{"no NUL", write("nonul", "SQLite format 3 and more text"), false, false},
		{"version 2", write("v2", "SQLite format 2\x00"+strings.Repeat("x", 100)), false, false},
		{"text", write("text", "hello, world, this is not a database\n"), false, false},
		{"missing", filepath.Join(dir, "missing"), false, true},
		{"directory", dir, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IsSQLite(tt.path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("IsSQLite err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("IsSQLite = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCaptureNotSQLite(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(src, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	err := Capture(t.Context(), src, dst, Options{})
	if !errors.Is(err, ErrNotSQLite) {
		t.Fatalf("Capture = %v, want ErrNotSQLite", err)
	}
	if !strings.Contains(err.Error(), src) {
		t.Errorf("error %q does not name the source", err)
	}
	assertAbsent(t, dst)

	err = Capture(t.Context(), filepath.Join(dir, "missing.db"), dst, Options{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Capture of a missing file = %v, want ErrNotExist", err)
	}
	assertAbsent(t, dst)
	if err := Check(t.Context(), src); !errors.Is(err, ErrNotSQLite) {
		t.Fatalf("Check = %v, want ErrNotSQLite", err)
	}
}

func TestCaptureCorrupt(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	db := openApp(t, src, "")
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
		INSERT INTO t SELECT i, randomblob(200) FROM n`)
	pageSize := queryInt(t, db, "PRAGMA page_size")
	db.Close()

	b := mustRead(t, src)
	pages := int64(len(b)) / pageSize
	if pages < 20 {
		t.Fatalf("only %d pages", pages)
	}
	// Flip the header of the first b-tree page from the middle of the file on:
	// a page type no reader accepts, which integrity_check must report.
	flipped := int64(0)
	for p := pages / 2; p < pages; p++ {
		off := p * pageSize
		if b[off] == 0x0d || b[off] == 0x05 { // table leaf or interior page
			for i := range int64(8) {
				b[off+i] ^= 0xff
			}
			flipped = p + 1
			break
		}
	}
	if flipped == 0 {
		t.Fatal("no b-tree page in the second half of the file")
	}
	if err := os.WriteFile(src, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("corrupted page %d of %d", flipped, pages)

	dst := filepath.Join(t.TempDir(), "copy.db")
	err := Capture(t.Context(), src, dst, Options{})
	var ie *IntegrityError
	if !errors.As(err, &ie) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Capture = %v, want *IntegrityError matching ErrCorrupt", err)
	}
	if len(ie.Problems) == 0 || ie.Problems[0] == "ok" {
		t.Errorf("Problems = %q", ie.Problems)
	}
	t.Logf("Capture: %v", err)
	assertAbsent(t, dst)

	if err := Check(t.Context(), src); !errors.As(err, &ie) {
		t.Fatalf("Check = %v, want *IntegrityError", err)
	}
}

func TestCaptureDestinationExists(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	mustExec(t, openApp(t, src, ""), "CREATE TABLE t(x)")
	dst := filepath.Join(dir, "dst.db")
	if err := os.WriteFile(dst, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Capture(t.Context(), src, dst, Options{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Capture = %v, want ErrExist", err)
	}
	if got := string(mustRead(t, dst)); got != "precious" {
		t.Fatalf("dst = %q, overwritten", got)
	}

	// A stale journal beside dst would be rolled back into the new copy.
	dst = filepath.Join(dir, "other.db")
	if err := os.WriteFile(dst+"-journal", []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Capture(t.Context(), src, dst, Options{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Capture beside a stale journal = %v, want ErrExist", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dst created: %v", err)
	}
	if got := string(mustRead(t, dst+"-journal")); got != "stale" {
		t.Errorf("journal = %q, changed", got)
	}
}

// TestCaptureBusy holds an exclusive lock on src, as a writer in the middle
// of a commit does: Capture waits Options.BusyTimeout, then gives up with
// ErrBusy, or with ctx's error when ctx ends first.
func TestCaptureBusy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	app := openApp(t, src, "")
	mustExec(t, app, "CREATE TABLE t(x); INSERT INTO t VALUES (1)")
	conn, err := app.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")

	dst := filepath.Join(t.TempDir(), "copy.db")
	start := time.Now()
	err = Capture(t.Context(), src, dst, Options{BusyTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Capture = %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 10*time.Second {
		t.Errorf("Capture gave up after %s, want about 300ms", d)
	}
	assertAbsent(t, dst)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := Capture(ctx, src, dst, Options{BusyTimeout: time.Minute}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Capture = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Capture returned %s after ctx ended", d)
	}
	assertAbsent(t, dst)
}

func TestCaptureCanceled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	db := openApp(t, src, "")
	mustExec(t, db, "CREATE TABLE t(v BLOB)")
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100)
		INSERT INTO t SELECT randomblob(1000) FROM n`) // about 30 pages

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := Capture(ctx, src, dst, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Capture = %v, want context.Canceled", err)
	}
	assertAbsent(t, dst)

	// Cancel while a snapshot is read: Read says so within 256 pages, and
	// the database is released.
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
		INSERT INTO t SELECT randomblob(1000) FROM n`) // about 800 pages more
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	snap, err := Open(ctx, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Size() < 600*int64(snap.PageSize()) {
		t.Fatalf("image of %d bytes, want more than 600 pages", snap.Size())
	}
	if _, err := io.ReadFull(snap, make([]byte, 10*snap.PageSize())); err != nil {
		t.Fatal(err)
	}
	cancel()
	n, err := io.Copy(io.Discard, snap)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v, want context.Canceled", err)
	}
	if n > 256*int64(snap.PageSize()) {
		t.Errorf("read %d bytes after cancel, want at most 256 pages", n)
	}
	snap.Close()
	// Nothing holds the database: a rollback-journal writer commits at once.
	mustExec(t, db, "DELETE FROM t WHERE rowid <= 100")
	if err := Capture(t.Context(), src, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, openCopy(t, dst), "SELECT count(*) FROM t"); n != 3000 {
		t.Errorf("copy has %d rows, want 3000", n)
	}
}

// TestCaptureLeavesSourceAlone checks that Capture neither writes nor
// checkpoints src, keeps its journal mode and its side files, and that the
// copy holds transactions that are still only in the -wal.
func TestCaptureLeavesSourceAlone(t *testing.T) {
	for _, mode := range []string{"delete", "truncate", "persist", "wal"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src.db")
			// wal_autocheckpoint(0): the rows stay in the -wal while app is open.
			app := openApp(t, src, "&_pragma=journal_mode("+mode+")&_pragma=wal_autocheckpoint(0)")
			mustExec(t, app, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			for i := range 50 {
				mustExec(t, app, "INSERT INTO t(v) VALUES(?)", strings.Repeat("x", i*10))
			}
			if mode != "wal" {
				app.Close() // nothing is pending outside the main file
			}
			// Only WAL is stored in the file; the others are a connection's
			// choice, which a fresh connection reports as "delete".
			modeBefore := mode
			if mode != "wal" {
				modeBefore = queryString(t, openApp(t, src, ""), "PRAGMA journal_mode")
			}
			before := dirState(t, dir)
			main := mustRead(t, src)
			var wal []byte
			if mode == "wal" {
				wal = mustRead(t, src+"-wal")
				if len(wal) == 0 {
					t.Fatal("-wal is empty: the test needs uncheckpointed transactions")
				}
			}

			dst := filepath.Join(t.TempDir(), "copy.db")
			if err := Capture(t.Context(), src, dst, Options{}); err != nil {
				t.Fatal(err)
			}
			if after := dirState(t, dir); !slices.Equal(before, after) {
				t.Errorf("files beside src changed:\nbefore %q\nafter  %q", before, after)
			}
			if !bytes.Equal(main, mustRead(t, src)) {
				t.Error("src main file changed")
			}
			if mode == "wal" && !bytes.Equal(wal, mustRead(t, src+"-wal")) {
				t.Error("src -wal changed (checkpointed?)")
			}
			if got := dirState(t, filepath.Dir(dst)); len(got) != 1 {
				t.Errorf("beside dst: %q, want the copy alone", got)
			}

			check := app
			if mode != "wal" {
				check = openApp(t, src, "")
			}
			if got := queryString(t, check, "PRAGMA journal_mode"); got != modeBefore {
				t.Errorf("journal_mode after capture = %q, want %q", got, modeBefore)
			}
			c := openCopy(t, dst)
			if n := queryInt(t, c, "SELECT count(*) FROM t"); n != 50 {
				t.Errorf("copy has %d rows, want 50", n)
			}
			// The copy keeps the journal mode flag in its header (offsets 18, 19).
			hdr := mustRead(t, dst)[18:20]
			if want := map[bool]byte{true: 2, false: 1}[mode == "wal"]; hdr[0] != want || hdr[1] != want {
				t.Errorf("copy header version bytes = %v, want %d", hdr, want)
			}
		})
	}
}

// TestCaptureIdleWAL documents the one case in which Capture leaves files
// beside src: a WAL database that nothing has open has no -wal and no -shm,
// and a read-only connection creates them (empty) but cannot remove them.
func TestCaptureIdleWAL(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	app := openApp(t, src, "&_pragma=journal_mode(wal)")
	mustExec(t, app, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)")
	app.Close() // the last connection checkpoints and deletes -wal and -shm
	if got := dirState(t, dir); len(got) != 1 {
		t.Fatalf("before: %q", got)
	}
	main := mustRead(t, src)
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := Capture(t.Context(), src, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(main, mustRead(t, src)) {
		t.Error("src main file changed")
	}
	if fi, err := os.Stat(src + "-wal"); err != nil || fi.Size() != 0 {
		t.Errorf("-wal after capture: %v, %v; want an empty file", fi, err)
	}
	app = openApp(t, src, "")
	if n := queryInt(t, app, "SELECT count(*) FROM t"); n != 2 {
		t.Errorf("application sees %d rows, want 2", n)
	}
	mustExec(t, app, "INSERT INTO t VALUES (3)")
	app.Close()
	if got := dirState(t, dir); len(got) != 1 {
		t.Errorf("after the application's last close: %q, want src alone", got)
	}
}

func TestCapturePathNeedsEscaping(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%41")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "my db?.sqlite")
	mustExec(t, openApp(t, strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(src), ""), "CREATE TABLE t(x); INSERT INTO t VALUES (42)")
	if ok, err := IsSQLite(src); !ok || err != nil {
		t.Fatalf("setup: IsSQLite(%q) = %v, %v", src, ok, err)
	}
	dst := filepath.Join(dir, "copy #1?.db")
	if err := Capture(t.Context(), src, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Check(t.Context(), dst); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, openCopy(t, dst), "SELECT x FROM t"); n != 42 {
		t.Errorf("copy has %d, want 42", n)
	}
}

// TestCaptureHotJournal captures a database left by a writer that crashed
// mid-transaction: only a read-write connection may roll the journal back,
// so Capture fails and leaves both files as they were.
func TestCaptureHotJournal(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.db")
	app := openApp(t, live, "&_pragma=cache_size(10)") // a small cache spills to the file before COMMIT
	mustExec(t, app, "CREATE TABLE t(v BLOB)")
	mustExec(t, app, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
		INSERT INTO t SELECT randomblob(1000) FROM n`)
	conn, err := app.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")
	if _, err := conn.ExecContext(t.Context(), "UPDATE t SET v = randomblob(1000)"); err != nil {
		t.Fatal(err)
	}
	// The files as a crash at this moment leaves them, with nobody's locks.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	for _, s := range []string{"", "-journal"} {
		if err := os.WriteFile(crashed+s, mustRead(t, live+s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	main, journal := mustRead(t, crashed), mustRead(t, crashed+"-journal")

	dst := filepath.Join(t.TempDir(), "copy.db")
	err = Capture(t.Context(), crashed, dst, Options{})
	if err == nil {
		t.Fatal("Capture of a database with a hot journal succeeded")
	}
	t.Logf("Capture: %v", err)
	assertAbsent(t, dst)
	if !bytes.Equal(main, mustRead(t, crashed)) || !bytes.Equal(journal, mustRead(t, crashed+"-journal")) {
		t.Error("Capture changed the crashed database or its journal")
	}
}

// A Snapshot checked before its image was read to the end still checks the
// whole snapshot (the rest is read and discarded), Read fails after Check,
// Close may come twice, and the reading goroutine is gone after Close, also
// when the image was abandoned half way.
func TestSnapshotCheckEarlyAndClose(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.db")
	db := openApp(t, src, "&_pragma=journal_mode(wal)")
	mustExec(t, db, "CREATE TABLE t(v BLOB)")
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
		INSERT INTO t SELECT randomblob(1000) FROM n`) // about 800 pages, in the -wal
	before := runtime.NumGoroutine()

	s, err := Open(t.Context(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, 3*s.PageSize())); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatalf("Check = %v, want nil", err)
	}
	if n, err := s.Read(make([]byte, 10)); n != 0 || err == nil || err == io.EOF {
		t.Fatalf("Read after Check = %d, %v; want an error", n, err)
	}
	s.Close()
	s.Close()

	// Abandoned after one page: Close stops the reader and frees the database.
	s, err = Open(t.Context(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, s.PageSize())); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before Open", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The whole image, read to the end, is the database: same rows.
	var img bytes.Buffer
	s, err = Open(t.Context(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(&img, s); err != nil || n != s.Size() {
		t.Fatalf("read %d of %d bytes: %v", n, s.Size(), err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	out := filepath.Join(t.TempDir(), "img.db")
	if err := os.WriteFile(out, img.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, openCopy(t, out), "SELECT count(*) FROM t"); n != 3000 {
		t.Errorf("image has %d rows, want 3000", n)
	}
}
