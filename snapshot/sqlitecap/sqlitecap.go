package sqlitecap

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// header is the first 16 bytes of every SQLite 3 database file.
const header = "SQLite format 3\x00"

// busyPoll is the mean interval between two tries to take a read lock.
const busyPoll = time.Millisecond

// maxQuoted bounds how many integrity_check lines an IntegrityError keeps.
const maxQuoted = 5

var (
	// ErrNotSQLite reports a file that does not start with the SQLite header.
	ErrNotSQLite = errors.New("sqlitecap: not an sqlite database")
	// ErrCorrupt reports a database that SQLite found malformed, either while
	// copying it or in PRAGMA integrity_check. *IntegrityError matches it.
	ErrCorrupt = errors.New("sqlitecap: database is corrupt")
	// ErrBusy reports that the source stayed locked by its writers for longer
	// than Options.BusyTimeout. Retrying later is reasonable.
	ErrBusy = errors.New("sqlitecap: database is busy")
)

// IntegrityError reports a database for which PRAGMA integrity_check did not
// say "ok". It matches ErrCorrupt with errors.Is.
type IntegrityError struct {
	Path     string
	Problems []string // the first lines integrity_check returned, at most 5
	More     bool     // integrity_check returned more lines than Problems holds
}

func (e *IntegrityError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sqlitecap: integrity check of %s failed: %s", e.Path, strings.Join(e.Problems, "; "))
	if e.More {
		b.WriteString("; …")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrCorrupt) true for an *IntegrityError.
func (e *IntegrityError) Is(target error) bool { return target == ErrCorrupt }

// Options configure Capture. The zero value is ready to use.
type Options struct {
	// BusyTimeout bounds how long we wait for the application's writers to
	// let us take a read snapshot; default 10 s. It does not bound the copy.
	BusyTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 10 * time.Second // a long commit, not a stuck one
	}
	return o
}

// IsSQLite reports whether the file at path starts with the SQLite header
// "SQLite format 3\x00". A file shorter than the header is not SQLite; a file
// that cannot be read is an error.
func IsSQLite(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("sqlitecap: %w", err)
	}
	defer f.Close()
	buf := make([]byte, len(header))
	switch _, err := io.ReadFull(f, buf); {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sqlitecap: read header of %s: %w", path, err)
	}
	return string(buf) == header, nil
}

// Capture writes a transactionally consistent copy of the live database src
// to dst: the image a Snapshot reads, written to a new file, after its
// integrity_check passed. Neither dst nor its side files (dst-journal,
// dst-wal, dst-shm) may exist; put dst in a scratch directory, not beside src.
//
// The copy is one complete SQLite file: it includes the transactions that
// sit in src's -wal and are not yet checkpointed, and it needs no -wal,
// -shm or -journal beside it. Its header keeps src's journal mode, so a
// restored WAL database opens in WAL mode again. dst is created with mode
// 0600; on any error, including cancellation of ctx and a failed integrity
// check (*IntegrityError), dst is removed. When ctx is done, the error is
// ctx.Err().
//
// src is opened read-only and is never written, checkpointed or switched to
// another journal mode; see the package documentation for the locks held
// and the side files SQLite may create. Capture is safe for concurrent use.
func Capture(ctx context.Context, src, dst string, opts Options) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ok, err := IsSQLite(src)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("capture %s: %w", src, ErrNotSQLite)
	}
	// A stale dst-journal would be rolled back into dst by whoever opens it.
	for _, s := range sideFiles {
		if _, err := os.Lstat(dst + s); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("capture %s: %s: %w", src, dst+s, cmp.Or(err, fs.ErrExist))
		}
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("capture %s: %w", src, err)
	}
	err = copySnapshot(ctx, src, f, opts)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst) // ours since O_EXCL succeeded
		return preferCtx(ctx, err)
	}
	return nil
}

// copySnapshot writes the image of one snapshot of src to w and checks it.
func copySnapshot(ctx context.Context, src string, w io.Writer, opts Options) error {
	s, err := Open(ctx, src, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := io.Copy(w, s); err != nil {
		return fmt.Errorf("capture %s: %w", src, err)
	}
	return s.Check(ctx)
}

// Snapshot is one read transaction on a live database, presented as the
// database file that transaction sees: Read returns its pages in order, as
// SQLite's pager presents them (in WAL mode with the committed frames of the
// -wal applied), so the image is a complete database file of Size bytes that
// needs no -wal, -shm or -journal. Check runs integrity_check on the very
// same snapshot. Nothing is written anywhere.
//
// Until Close, the application's writers see our read transaction as the
// package documentation describes: in WAL mode not at all (its -wal may grow),
// in rollback-journal mode as a SHARED lock that their commits wait for. Read
// the image promptly and Close as soon as it is stored.
//
// A Snapshot is not safe for concurrent use.
type Snapshot struct {
	path     string
	r        *reader
	rows     *sql.Rows
	pageSize int
	pages    int64
	header   []byte // the first 100 bytes of page 1
	next     int64  // the number of the next page to fetch, from 1
	pending  []byte // the unread rest of the current page
	buf      []byte // holds pending between two calls of Read
	ctx      context.Context
	err      error // sticky
}

// Open starts a read transaction on the live database at path and returns
// the image of the snapshot it sees. It waits for a read lock at most
// opts.BusyTimeout (ErrBusy). A file that does not start with SQLite's
// header is ErrNotSQLite. Close the Snapshot to end the transaction.
func Open(ctx context.Context, path string, opts Options) (*Snapshot, error) {
	opts = opts.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ok, err := IsSQLite(path)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("snapshot of %s: %w", path, ErrNotSQLite)
	}
	r, err := openReader(ctx, path, "ro", opts)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", path, preferCtx(ctx, err))
	}
	s := &Snapshot{path: path, r: r, next: 1, ctx: ctx}
	var pageSize, pages int64
	err = r.conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize)
	if err == nil {
		err = r.conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages)
	}
	if err == nil && (pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 || pages < 1) {
		err = fmt.Errorf("%w: page size %d, %d pages", ErrCorrupt, pageSize, pages)
	}
	if err == nil {
		s.pageSize, s.pages = int(pageSize), pages
		// sqlite_dbpage walks pages in order, from the pager of this
		// connection, inside our read transaction.
		s.rows, err = r.conn.QueryContext(ctx, "SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
	}
	if err == nil {
		s.buf = make([]byte, 0, s.pageSize)
		err = s.fetch()
	}
	if err == nil {
		s.header = bytes.Clone(s.pending[:min(len(s.pending), 100)])
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("snapshot of %s: %w", path, preferCtx(ctx, translate(err)))
	}
	return s, nil
}

// Size is the length of the image in bytes: page count × page size.
func (s *Snapshot) Size() int64 { return s.pages * int64(s.pageSize) }

// PageSize is the database's page size in bytes.
func (s *Snapshot) PageSize() int { return s.pageSize }

// Header returns the first 100 bytes of the image, the database header. The
// caller must not modify it.
func (s *Snapshot) Header() []byte { return s.header }

// fetch loads the next page into pending, checking that pages come in order
// and whole.
func (s *Snapshot) fetch() error {
	if !s.rows.Next() {
		if err := s.rows.Err(); err != nil {
			return err
		}
		return fmt.Errorf("%w: the snapshot ended at page %d of %d", ErrCorrupt, s.next-1, s.pages)
	}
	var pgno int64
	var data sql.RawBytes
	if err := s.rows.Scan(&pgno, &data); err != nil {
		return err
	}
	if pgno != s.next || len(data) != s.pageSize {
		return fmt.Errorf("%w: page %d of %d bytes where page %d of %d bytes was due",
			ErrCorrupt, pgno, len(data), s.next, s.pageSize)
	}
	s.next++
	s.buf = append(s.buf[:0], data...) // data is valid only until the next row
	s.pending = s.buf
	return nil
}

// Read reads the image. It returns io.EOF after the last page.
func (s *Snapshot) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := 0
	for n < len(p) {
		if len(s.pending) == 0 {
			if s.next > s.pages {
				s.err = io.EOF
				break
			}
			if s.next%256 == 0 {
				if err := s.ctx.Err(); err != nil {
					s.err = err
					break
				}
			}
			if err := s.fetch(); err != nil {
				s.err = fmt.Errorf("snapshot of %s: %w", s.path, preferCtx(s.ctx, translate(err)))
				break
			}
		}
		c := copy(p[n:], s.pending)
		s.pending = s.pending[c:]
		n += c
	}
	if n > 0 {
		return n, nil
	}
	return 0, s.err
}

// Check runs PRAGMA integrity_check on the snapshot, in the same read
// transaction as the image, and returns an *IntegrityError (ErrCorrupt)
// unless it says "ok". After Check, Read returns an error.
func (s *Snapshot) Check(ctx context.Context) error {
	if s.rows != nil {
		s.rows.Close()
		s.rows = nil
	}
	if s.err == nil {
		s.err = errors.New("sqlitecap: snapshot read after its check")
	}
	if err := s.r.integrity(ctx, s.path); err != nil {
		return fmt.Errorf("check %s: %w", s.path, preferCtx(ctx, err))
	}
	return nil
}

// Close ends the read transaction and releases the database.
func (s *Snapshot) Close() error {
	if s.rows != nil {
		s.rows.Close()
		s.rows = nil
	}
	if s.r != nil {
		s.r.close()
		s.r = nil
	}
	return nil
}

// preferCtx returns ctx.Err() if ctx is done, else err: a cancellation often
// surfaces from SQLite as an interrupt or a busy wait given up.
func preferCtx(ctx context.Context, err error) error {
	return cmp.Or(ctx.Err(), err)
}

// reader is a connection to a database that holds one read transaction, so
// everything read through it comes from one snapshot.
type reader struct {
	db   *sql.DB
	conn *sql.Conn
}

// openReader opens the database at path in mode ("ro" for sources, "rw" for
// our own copies) and starts a read transaction: BEGIN alone takes no lock,
// the first read does, and from then until close the connection sees one
// snapshot. In rollback-journal mode that is a SHARED lock, which writers'
// commits wait for; in WAL mode it is a read mark in the -shm, which writers
// do not wait for.
//
// The connection has no busy timeout: openReader retries the first read
// itself, every millisecond or so, until opts.BusyTimeout has passed.
// SQLite's own busy handler backs off to 100 ms between tries, and since a
// try only succeeds between two of a writer's commits, against a writer that
// commits back to back it starved us for seconds.
func openReader(ctx context.Context, path, mode string, opts Options) (*reader, error) {
	db, err := sql.Open("sqlite", dsn(path, mode))
	if err != nil {
		return nil, translate(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open: %w", translate(err))
	}
	r := &reader{db: db, conn: conn}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		r.close()
		return nil, fmt.Errorf("begin read transaction: %w", translate(err))
	}
	deadline := time.Now().Add(opts.BusyTimeout)
	for {
		var n int
		err := translate(conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			r.close()
			return nil, fmt.Errorf("begin read transaction: %w", err)
		}
		select {
		case <-ctx.Done():
			r.close()
			return nil, ctx.Err()
		case <-time.After(busyPoll/2 + rand.N(busyPoll)): // jitter: never in step with a periodic writer
		}
	}
}

// close ends the read transaction and closes the connection, releasing our
// locks. Closing alone would release them too; ROLLBACK just does it first.
func (r *reader) close() {
	r.conn.ExecContext(context.Background(), "ROLLBACK")
	r.conn.Close()
	r.db.Close()
}

// Check runs PRAGMA integrity_check on the database at path, read-only,
// waiting at most the default busy timeout (10 s) for a read lock. It returns
// an *IntegrityError quoting the first problems unless the check says "ok".
// Check may run on a live database: the check reads one snapshot. Like
// Capture's source, a WAL database that nothing has open is left with an
// empty -wal and a -shm (see the package documentation).
func Check(ctx context.Context, path string) error {
	opts := Options{}.withDefaults()
	ok, err := IsSQLite(path)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("check %s: %w", path, ErrNotSQLite)
	}
	if err := check(ctx, path, "ro", opts); err != nil {
		return fmt.Errorf("check %s: %w", path, preferCtx(ctx, err))
	}
	return nil
}

// check runs PRAGMA integrity_check on the database at path, opened in mode.
func check(ctx context.Context, path, mode string, opts Options) error {
	r, err := openReader(ctx, path, mode, opts)
	if err != nil {
		return err
	}
	defer r.close()
	return r.integrity(ctx, path)
}

// integrity runs PRAGMA integrity_check in r's read transaction.
func (r *reader) integrity(ctx context.Context, path string) error {
	rows, err := r.conn.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return integrityFailed(path, nil, err)
	}
	defer rows.Close()
	var lines []string
	more := false
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return integrityFailed(path, lines, err)
		}
		if len(lines) == maxQuoted {
			more = true
			continue
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		return integrityFailed(path, lines, err)
	}
	if len(lines) == 1 && lines[0] == "ok" {
		return nil
	}
	if len(lines) == 0 {
		lines = []string{"no result"}
	}
	return &IntegrityError{Path: path, Problems: lines, More: more}
}

// integrityFailed reports err, which stopped integrity_check after it had
// returned lines. SQLite stops the check with SQLITE_CORRUPT when a page is
// too damaged to walk; that is a failed check too.
func integrityFailed(path string, lines []string, err error) error {
	if terr := translate(err); !errors.Is(terr, ErrCorrupt) {
		return fmt.Errorf("integrity check: %w", terr)
	}
	if len(lines) == maxQuoted {
		return &IntegrityError{Path: path, Problems: lines, More: true}
	}
	return &IntegrityError{Path: path, Problems: append(lines, err.Error())}
}

// dsn returns the driver DSN for the database at path: a file: URI, so that
// SQLite applies mode (ro: never create, never write; rw: never create). ro
// connections are also query_only. There is no busy timeout: openReader
// waits for locks itself.
func dsn(path, mode string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path // Abs fails only without a working directory; SQLite will say more
	}
	q := "mode=" + mode
	if mode == "ro" {
		q += "&_pragma=query_only(1)"
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q}
	return u.String() // file:///abs/path?…, with '?', '#' and '%' in the path escaped
}

// translate maps SQLite result codes onto this package's sentinels, keeping
// the driver's error in the chain. It is the only place that inspects them.
func translate(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff { // primary code of an extended one
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("%w: %w", ErrBusy, err)
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// sideFiles are the suffixes of the files SQLite keeps beside a database.
var sideFiles = []string{"-journal", "-wal", "-shm"}

// removeDB removes a database we created, and its side files.
func removeDB(path string) {
	os.Remove(path)
	removeSideFiles(path)
}

// removeSideFiles removes the side files of a database we own. Never call it
// on a source database: its -wal may hold committed transactions.
func removeSideFiles(path string) {
	for _, s := range sideFiles {
		os.Remove(path + s)
	}
}

// init switches the driver to OFD locks before any database file is locked;
// see "Locks and other descriptors in this process" in the package doc. Where
// OFD locks do not exist it stays with POSIX locks, and there is nothing else
// to do about it.
func init() {
	_, _ = sqlite.OFDLocking(true)
}
