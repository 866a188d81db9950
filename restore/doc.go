// Package restore carries out restores over the live system: recovery
// plans, a pinned safety snapshot, staging and verification, a journaled
// swap, hooks and smoke tests, and automatic rollback, also after a crash.
// It imports only package snapshot (and its subpackages); cmd and server
// wire it up. Plain restores into an empty directory are snapshot.Restore.
//
// # The protocol
//
//	lock the target (flock: the target exclusively, its ancestors shared, so
//	    two restores into the same or nested targets never overlap, E16)
//	finish any restore of this target that a kill left (Recover)
//	plan: walk the snapshot's trees and the live tree together, in scope only;
//	    each path becomes create, replace, remove or update (metadata), or is
//	    unchanged (same type, size, BLAKE3, mode, owner, mtime); live files are
//	    hashed only when their size matches. Refuse (nothing changed) on
//	    errors: a symlink or file in the way outside the scope (E2), another
//	    filesystem, chattr +i/+a, a read-only target (E9), too little space
//	    (E10), a database held open and no stop hook (E11)
//	safety snapshot: a backup of every path the plan replaces, removes or
//	    updates, tagged safety and pinned
//	stop hook; plan again (cheap: unchanged files keep their hashes); a
//	    second safety snapshot for paths that changed meanwhile
//	stage: snapshot.Restore of exactly the create/replace paths into
//	    <target>/.snapforge-restore/<id>/stage — the target's filesystem
//	    (E8), no symlink followed, every chunk checked on the way
//	verify: read every staged file back and compare its BLAKE3; staged
//	    databases pass PRAGMA integrity_check (E12)
//	    (up to here a failure abandons the restore: staging removed, start
//	    hook run again; the live tree was never touched)
//	swap, in path order, each step journaled and fsynced before it is taken:
//	    create  = renameat2(stage, live, RENAME_NOREPLACE)
//	    replace = renameat2(stage, live, RENAME_EXCHANGE): the path is never
//	              absent; the old entry lands in the staging area (E4, E5:
//	              the name is replaced, nothing is written through it)
//	    remove  = rename(live, staging/old/<n>)
//	    update  = chmod/chown/utimes with the old values journaled
//	    syncfs
//	check: a fresh plan of the live tree must be empty — every entry's type,
//	    mode, link target and every file's BLAKE3 (a swapped-in file is known
//	    by its inode, size and mtime from verify, which read it back; any
//	    other is read again) — before the application starts and writes
//	start hook; smoke: databases pass integrity_check, JSON files parse, the
//	    profile's smoke command exits 0 within timeout_s
//	commit: journal "commit"; the staging area (with the old entries) goes
//
// Any failure after the first swap step rolls back: stop hook (when the
// start hook ran), undo the journal newest first, syncfs, start hook. Undo
// looks at inode numbers to tell whether a step happened, so it can run any
// number of times: a kill during rollback is finished by the next Recover.
// An old entry missing from the staging area comes back from the safety
// snapshot. A rollback that cannot finish (E14) keeps the journal and names
// the safety snapshot; Recover resumes it at the next start.
//
// # Crash recovery
//
// Before anything is written, <repo>/restores/<id>.json names the target
// and staging area. Recover (run by the CLI whenever it opens the
// repository) reads each such journal: committed → remove the staging
// area; otherwise roll back as above. The journal's torn last line
// announces a step that never started.
package restore
