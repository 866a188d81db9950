// Package sqlitecap captures transactionally consistent copies of live
// SQLite databases, so that a backup stores a database as of one commit and
// never a torn file copied while the application writes it (FAULTS D19).
//
// It owns only that: recognising SQLite files (IsSQLite), reading one
// snapshot of a live database as a file image (Open, a Snapshot), copying
// one into a new file (Capture) and checking one (Check). It uses the pure-Go
// driver modernc.org/sqlite and must never import other snapforge packages.
//
// # Method
//
// A Snapshot is one read transaction on the source, and the image is read
// through the sqlite_dbpage virtual table of that same connection:
//
//	IsSQLite(src), else ErrNotSQLite
//	open src read-only: file: URI, mode=ro, query_only
//	BEGIN; SELECT count(*) FROM sqlite_schema  -- the read transaction starts;
//	                                           -- while busy, retry (≤ BusyTimeout)
//	PRAGMA page_size; PRAGMA page_count        -- of this snapshot
//	SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno
//	Read: the pages in order, each checked to be the next one and whole
//	Check: PRAGMA integrity_check               -- same connection, same snapshot
//	Close: ROLLBACK; close src                  -- our locks on src end here
//
// The backup engine streams Read straight into its chunker and calls Check
// before it keeps the database: nothing is written anywhere, and the check
// covers exactly the bytes stored. Capture writes the same image to a new
// file, for callers that want a file.
//
// # Why the image is consistent, and what it is
//
// A SQLite reader sees one snapshot, one commit, for the whole of a read
// transaction, and sqlite_dbpage returns each page as this connection's pager
// presents it inside that transaction. In WAL mode that is the page from the
// newest frame of the -wal that belongs to our snapshot, else from the
// database file, so the image contains the committed transactions still in
// the -wal and needs no -wal or -shm: the -wal is never copied raw. The
// image is the database file as it would be after a checkpoint of our
// snapshot: page 1 included (page size, schema cookie, user_version, the
// journal mode flag: a WAL database comes back in WAL mode), free pages as
// they are, and the lock-byte page of a database over 1 GiB as the zeros
// SQLite never writes there. An idle database, whose -wal is empty or
// absent, is therefore stored byte for byte.
//
// Before: the online backup API copied the same snapshot into a scratch
// database, which was then checked and read back. The image is the same kind
// of file, without writing and re-reading the whole database: on the
// reference 300 MB database the capture fell from about 2.0 s (copy 1.3 s,
// check 0.7 s) plus the read-back to 1.1 s (read 0.4 s, check 0.7 s), and the
// mutated backup through a sqlite unit from 0.83 to 0.74 of restic's time
// (docs/performance.md). VACUUM INTO would also read one snapshot, but it
// rebuilds every table and index.
//
// # Effect on the application
//
// Our connection is read-only (mode=ro: SQLite cannot write, roll back a
// journal or checkpoint through it; query_only besides), never sets the
// journal mode, and waits at most Options.BusyTimeout (default 10 s) for its
// read lock before failing with ErrBusy.
//
//   - WAL mode: the read transaction is a read mark in the -shm. Writers never
//     wait for it (TestCaptureUnderWriteLoad runs its writer with no busy
//     timeout at all). The application's checkpoints cannot copy frames past
//     our snapshot while the snapshot is open, so its -wal may grow for that long.
//   - Rollback-journal mode (DELETE, TRUNCATE, PERSIST): the read transaction
//     is a SHARED lock on the database file. A writer can still prepare its
//     transaction, but its COMMIT waits for our lock to go: the application
//     sees a busy wait as long as the snapshot is open: the image is read
//     and checked under our lock (BenchmarkCapture: read and check about
//     0.2 s per 50 MB here, more while the backup's chunker is the slower
//     side), and SQLITE_BUSY only if its busy_timeout is shorter than that.
//     Taking our lock must fall between two of a writer's commits, and
//     SQLite's locks are not fair, so we retry about every millisecond
//     rather than with SQLite's back-off to 100 ms, which starved us for
//     seconds against a writer committing back to back. A hot journal left
//     by a crashed writer makes Open and Capture fail (SQLITE_READONLY_ROLLBACK):
//     only a read-write connection may roll it back, and the application's
//     next one will.
//
// Side files: in rollback-journal mode, and in WAL mode while the application
// has the database open, a Snapshot leaves the files beside src exactly as they
// were. A WAL database that no connection has open has no -wal and no -shm;
// opening it, even read-only, makes SQLite create an empty -wal and a
// 32 KiB -shm, which a read-only connection cannot delete again (that takes
// a checkpoint). They are harmless: the next application connection adopts
// them and its last close deletes them. We never delete them ourselves,
// because by then an application may have committed transactions to that
// -wal. The engine should skip -wal, -shm and -journal files of databases it
// captures; they hold nothing the image lacks.
//
// # Locks and other descriptors in this process
//
// A POSIX record lock belongs to the process: closing any descriptor of the
// database file anywhere in the process (a backup walker hashing it, or
// IsSQLite) silently drops SQLite's lock, and a copy could tear. This
// package therefore switches modernc.org/sqlite to Linux OFD locks for
// database files in its init function, before any database is opened
// (sqlite.OFDLocking; TestReadLockSurvivesForeignClose). OFD locks conflict
// with the POSIX locks of applications in other processes as POSIX locks do.
// The -shm locks used in WAL mode stay POSIX locks: this process must not
// open and close a database's -shm while capturing it. On other systems, or
// where a filesystem rejects OFD locks, the same holds for the database file
// itself: do not read a database file while a Snapshot of it is open.
package sqlitecap
