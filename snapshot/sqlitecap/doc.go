// Package sqlitecap captures transactionally consistent copies of live
// SQLite databases, so that a backup stores a database as of one commit and
// never a torn file copied while the application writes it (FAULTS D19).
//
// It owns only that: finding SQLite files (IsSQLite), copying one (Capture)
// and checking one (Check). It uses the pure-Go driver modernc.org/sqlite and
// must never import other snapforge packages.
//
// # Method
//
// Capture uses SQLite's online backup API, a page-by-page copy of the source
// into a new database file, driven while the source connection holds a single
// read transaction:
//
//	IsSQLite(src) or ErrNotSQLite
//	create dst with O_EXCL (it must not exist)
//	open src read-only (file: URI, mode=ro, query_only, busy_timeout)
//	BEGIN; SELECT count(*) FROM sqlite_schema   -- the read transaction starts
//	backup := NewBackup(dst)                    -- through database/sql Conn.Raw
//	repeat backup.Step(1024 pages), checking ctx between steps, until done
//	backup.Finish; ROLLBACK; close src          -- the read lock is released here
//	PRAGMA integrity_check on dst, or remove dst and return *IntegrityError
//
// # Why the copy is consistent
//
// SQLite readers see one snapshot for the whole of a read transaction.
// sqlite3_backup_step opens and closes a read transaction of its own only
// when the source connection has none; ours is already open, so every step
// reads the same snapshot and the backup never restarts. (Without it each
// step would read a fresh snapshot, and a write by another process between
// steps would make the next step restart the copy from page 1: correct, but
// under a steady writer it may never finish.) The backup writes the pages as
// the source's pager presents them, so in WAL mode the copy contains the
// committed transactions still in the -wal, and the copy is a single file
// that needs no -wal or -shm. Page 1 is copied too, so the copy keeps the
// source's page size, schema, user_version and journal mode flag: a copy of
// a WAL database opens in WAL mode. Free pages are copied as they are; the
// copy is as large as the source's main file at the snapshot.
//
// VACUUM INTO would also read one snapshot, but it rebuilds every table and
// index, which is slower and gives a file that differs from the source page
// by page; the backup API copies pages.
//
// # Effect on the application
//
// Our connection is read-only (mode=ro, so SQLite cannot write or checkpoint
// through it even by mistake, and query_only), never changes the journal
// mode, and waits at most Options.BusyTimeout (default 10 s) for a lock.
//
//   - WAL mode: the read transaction is a read mark in the -shm. Writers never
//     wait for it. Checkpoints by the application cannot copy frames past our
//     snapshot while the capture runs, so the -wal may grow for that long.
//   - Rollback-journal mode (DELETE, TRUNCATE, PERSIST): the read transaction
//     is a SHARED lock on the database file. A writer can still prepare its
//     transaction, but its COMMIT waits for our lock to go: the application
//     sees a busy wait as long as the copy (about 1 s per 1–3 GB, see
//     BenchmarkCapture), and SQLITE_BUSY only if its busy_timeout is shorter.
//     Taking our lock can itself wait for a commit in progress; a hot journal
//     left by a crashed writer makes Capture fail (SQLITE_READONLY_ROLLBACK):
//     only a read-write connection may roll it back, and we never write.
//
// Side files: in rollback-journal mode and in WAL mode with the application
// running, Capture leaves the files beside src exactly as they were. A WAL
// database that no connection has open has no -wal and no -shm; opening it
// read-only makes SQLite create an empty -wal and a 32 KiB -shm, which a
// read-only connection cannot delete again (that takes a checkpoint). They
// are harmless: the next application connection adopts them and its last
// close deletes them. We never delete them ourselves, because by then an
// application may have written transactions into that -wal.
//
// # Locks and other descriptors in this process
//
// A POSIX record lock belongs to the process: closing any descriptor of the
// database file anywhere in the process, say a backup walker hashing it,
// silently drops SQLite's lock, and the copy could tear. This package
// therefore switches modernc.org/sqlite to Linux OFD locks for database files
// when it is initialized (modernc.org/sqlite OFDLocking), before any database
// is opened. OFD locks conflict with the POSIX locks of applications in other
// processes exactly as POSIX locks do. The -shm locks used in WAL mode stay
// POSIX locks: this process must not open and close a database's -shm while
// capturing it. On other systems, or where a filesystem rejects OFD locks,
// the same holds for the database file itself.
package sqlitecap
