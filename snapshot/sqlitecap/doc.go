// Package sqlitecap captures transactionally consistent copies of live
// SQLite databases, so that a backup stores a database as of one commit and
// never a torn file copied while the application writes it (FAULTS D19).
//
// It owns only that: recognising SQLite files (IsSQLite), copying one
// (Capture) and checking one (Check). It uses the pure-Go driver
// modernc.org/sqlite and must never import other snapforge packages.
//
// # Method
//
// Capture uses SQLite's online backup API, a page-by-page copy of the source
// into a new database file, driven while our source connection holds one
// read transaction:
//
//	IsSQLite(src), else ErrNotSQLite
//	create dst with O_EXCL (neither it nor its side files may exist)
//	open src read-only: file: URI, mode=ro, query_only
//	BEGIN; SELECT count(*) FROM sqlite_schema  -- the read transaction starts;
//	                                           -- while busy, retry (≤ BusyTimeout)
//	backup := NewBackup(dst)                   -- the driver conn, via sql.Conn.Raw
//	backup.Step(1024 pages) until done, checking ctx before each step
//	backup.Finish; ROLLBACK; close src         -- our locks on src end here
//	PRAGMA integrity_check on dst, else remove dst and return *IntegrityError
//
// # Why the copy is consistent
//
// A SQLite reader sees one snapshot, one commit, for the whole of a read
// transaction. sqlite3_backup_step opens and closes a read transaction of its
// own only when the source connection has none; ours is open, so every step
// reads the same snapshot and the backup never restarts. (Without it each
// step would read the newest commit, and a write by another process between
// two steps would make the next step restart the copy from page 1: still
// correct, but under a steady writer it might never finish.)
//
// The backup reads pages as the source's pager presents them, so in WAL mode
// the copy contains the committed transactions still in the -wal, and the
// copy is a single file that needs no -wal or -shm: the -wal is never copied
// raw. Page 1 is copied too, so the copy keeps the source's page size,
// schema cookie, user_version and journal mode flag: a copy of a WAL
// database opens in WAL mode. Free pages are copied as they are.
//
// VACUUM INTO would also read one snapshot, but it rebuilds every table and
// index, which is slower and gives a file that differs from the source page
// by page; the backup API copies pages.
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
//     our snapshot while the copy runs, so its -wal may grow for that long.
//   - Rollback-journal mode (DELETE, TRUNCATE, PERSIST): the read transaction
//     is a SHARED lock on the database file. A writer can still prepare its
//     transaction, but its COMMIT waits for our lock to go: the application
//     sees a busy wait as long as the copy (0.15-0.35 s per 50 MB here, see
//     BenchmarkCapture; the integrity check runs after our lock is gone),
//     and SQLITE_BUSY only if its busy_timeout is shorter than that.
//     Taking our lock must fall between two of a writer's commits, and
//     SQLite's locks are not fair, so we retry about every millisecond
//     rather than with SQLite's back-off to 100 ms, which starved us for
//     seconds against a writer committing back to back. A hot journal left
//     by a crashed writer makes Capture fail (SQLITE_READONLY_ROLLBACK):
//     only a read-write connection may roll it back, and the application's
//     next one will.
//
// Side files: in rollback-journal mode, and in WAL mode while the application
// has the database open, Capture leaves the files beside src exactly as they
// were. A WAL database that no connection has open has no -wal and no -shm;
// opening it, even read-only, makes SQLite create an empty -wal and a
// 32 KiB -shm, which a read-only connection cannot delete again (that takes
// a checkpoint). They are harmless: the next application connection adopts
// them and its last close deletes them. We never delete them ourselves,
// because by then an application may have committed transactions to that
// -wal. The engine should skip -wal, -shm and -journal files of databases it
// captures; they hold nothing the copy lacks.
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
// itself: do not read a database file while Capture is copying it.
package sqlitecap
