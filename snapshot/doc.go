// Package snapshot is snapforge's core: the repository on disk, the backup
// engine, trees, manifests and root hashes, verify, repair and plain restore.
//
// It knows nothing of HTTP, FUSE or Badger. It declares the small interfaces
// it needs (Index, the chunk-location catalog) and adapters implement them;
// cmd wires the concrete types together. It must never import index, planner,
// restore, fusefs, server or cmd.
//
// # Write path
//
//	walk the source root in name-byte order (repository, /proc-like and, with
//	    OneFileSystem, other filesystems are never entered)
//	each small file the walk queues is read ahead (POSIX_FADV_WILLNEED) by a
//	    few readahead workers, so the disk serves many at once (readahead.go)
//	for each regular file, in ReadConcurrency workers:
//	    if the strategy trusts the parent and size, mtime, ctime and inode are
//	        unchanged and every chunk is still indexed: reuse its chunk list
//	    else read it once: content-defined chunks (snapshot/chunker), each named
//	        by BLAKE3, while the whole-file BLAKE3 is computed in the same pass;
//	        fstat before and after; re-read when it changed (D1)
//	    new chunks (not in the index nor in flight) go to the compressors
//	        (zstd where it pays, snapshot/pack) and on to the single pack writer
//	trees are encoded bottom-up and stored like chunks
//	the last pack is flushed; then the manifest is written (the commit point)
//	and the audit event appended
//
// # Commit order
//
// A pack is written to tmp/, fsynced, renamed into packs/xx/, and the
// directory fsynced; only then are its blobs recorded in the index (synced).
// The manifest is written to a temporary name, fsynced and renamed: a snapshot
// exists exactly when its manifest exists. A crash at any point leaves at most
// orphan packs, which Open adopts from their trailers so the next backup
// reuses them.
//
// # Read path
//
// Every blob read is bounded by its recorded size, decompressed, and checked
// against its ID before use; wrong bytes are never returned.
package snapshot
