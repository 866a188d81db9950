// Package index is the Badger-backed chunk catalog: it implements
// snapshot.Index, which tells the engine where every stored blob lives.
//
// The index is derived data. Everything in it can be rebuilt from the pack
// trailers (snapforge repair index), so losing it never loses a backup; it
// only costs a rebuild. It imports snapforge/snapshot and no other project
// package, and nothing outside cmd may import it: the engine sees it only as
// a snapshot.Index.
//
// # Key layout
//
// One Badger keyspace, split by a two-byte prefix:
//
//	"c/" + blob id (32 bytes)  →  Location, 59 bytes:
//	                              version(1)=2 | pack(32) | offset(8) | stored(4) | raw(4) | kind(1) | codec(1) |
//	                              groupOff(4) | groupRaw(4)
//	"p/" + pack id (32 bytes)  →  pack size in bytes, 8 bytes
//	"m/" + key                 →  meta value, as given to SetMeta
//
// Integers are big-endian. groupOff and groupRaw place a group member
// (codec 2) in its frame's plaintext; they are 0 for other blobs. A version
// 1 Location (51 bytes, written before groups existed) lacks them and reads
// with both 0. A Location of another version or length is refused with an
// error rather than guessed at. A blob has one location: when two
// packs hold the same blob, the later AddPack wins (which is what a repack
// during prune wants: the new pack takes over, then RemovePack of the old
// pack leaves the blob alone because it no longer points there).
//
// # Write order and durability
//
// The database is opened with SyncWrites, so every committed transaction is
// on disk before the call returns. AddPack writes all blob keys and then the
// pack key, normally in one transaction. A pack with more blobs than one
// Badger transaction holds (about 13,000 with the memtable size used here) is
// split into several transactions, each synced, with the pack key in the
// last one. So a recorded pack had all its blobs recorded; a crash
// mid-way leaves blob keys whose pack is not recorded, which point into a
// pack file already on disk (the engine writes and syncs the pack first).
//
// RemovePack deletes the blob keys that still point into the pack, then the
// pack key. A crash mid-way leaves the pack key in place, so the pack still
// shows up in Packs and a retry finishes the job. RemovePack is idempotent
// and also works for a pack that was never recorded (orphan blob keys left
// by an interrupted AddPack): call it before deleting any pack file.
//
// # Costs
//
// Lookup is one point read: the memtables, then per level a bloom filter
// and at most one block of an mmapped table. AddPack is one synced commit
// per call (one msync of the write-ahead log). RemovePack has no reverse
// map from pack to blobs: it scans every "c/" key, so it costs O(blobs in
// the index) per call: 50-100 ms per 100,000 blobs on a busy 2-core host
// (BenchmarkRemovePack). Prune removing many packs pays that once per pack;
// if that ever matters, add a "r/"+pack+blob key or a batch removal.
//
// # Concurrency
//
// A DB is safe for concurrent use. Badger takes an flock on the directory,
// so a second Open of the same directory, from this process or another,
// fails at once with an *InUseError instead of waiting.
package index

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"snapforge/snapshot"
)

// DB is the Badger-backed chunk catalog. It is safe for concurrent use.
// Close it when done: Badger runs background goroutines and holds a lock on
// the directory until then.
type DB struct {
	bdb *badger.DB
	dir string
	log *slog.Logger
}

var _ snapshot.Index = (*DB)(nil)

// Options configure Open and Create. The zero value is ready to use.
type Options struct {
	Logger   *slog.Logger // nil: discard; Badger's own logging goes here (INFO as Debug)
	InMemory bool         // for tests: nothing touches disk and dir is ignored
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// InUseError reports that another process (or another DB in this process)
// has the index directory open.
type InUseError struct {
	Dir string
	PID int // holder's pid from Badger's LOCK file; 0 if unknown
}

func (e *InUseError) Error() string {
	msg := "index " + e.Dir + " is in use by another process"
	if e.PID > 0 {
		msg += " (pid " + strconv.Itoa(e.PID) + ")"
	}
	return msg
}

// badgerOptions returns the Badger options for the catalog. Defaults not set
// here (7 levels, 2 MiB tables, 10x level multiplier, 5 L0 tables before
// compaction) suit a small LSM tree and are left alone.
func badgerOptions(dir string, opts Options) badger.Options {
	bo := badger.DefaultOptions(dir)
	if opts.InMemory {
		bo = badger.DefaultOptions("").WithInMemory(true)
	}
	return bo.
		WithLogger(badgerLogger{opts.Logger.With("component", "badger")}).
		// The engine's commit order relies on AddPack being durable when it
		// returns (snapshot.Index says so): every commit msyncs the WAL.
		WithSyncWrites(true).
		// Keys are random hashes and values mostly hashes too: snappy would
		// spend CPU for nothing. Without compression Badger serves blocks
		// straight from the mmapped tables, so no block cache is needed
		// (the OS page cache does that job) and none is allocated.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		// A few hundred thousand keys are ~100 B each on disk: tens of MiB
		// in total. The default 64 MiB memtable (x5) would hold the whole
		// catalog in RAM and a 64 MiB WAL file. 8 MiB holds ~80,000 blobs
		// (one flush while adding 100,000) and caps one transaction
		// at ~13,000 entries (Badger allows 15 % of the memtable per batch);
		// two memtables let one flush while the other takes writes.
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		// Values up to 1 KiB (every Location and pack size, most meta) live
		// in the LSM tree; only a large meta value goes to the value log.
		// The default threshold (1 MiB) is above what an 8 MiB memtable
		// allows in one batch and Open would refuse it. In memory there is
		// no value log and the threshold caps every value instead.
		WithValueThreshold(valueThreshold(opts.InMemory)).
		// The value log is nearly empty (see above), and each vlog file is
		// preallocated at twice this size: the 1 GiB default means a 2 GiB
		// sparse file, which is real space on filesystems without sparse
		// files (FAT/exFAT backup drives).
		WithValueLogFileSize(16 << 20).
		// Two compactors is Badger's minimum and plenty for a tree of a few
		// levels; the default four only adds goroutines.
		WithNumCompactors(2).
		// We export no expvar metrics; skip the bookkeeping on every read.
		WithMetricsEnabled(false)
	// DetectConflicts stays on: RemovePack reads each key before deleting
	// it and relies on Badger to retry when an AddPack overwrote it meanwhile.
}

func valueThreshold(inMemory bool) int64 {
	if inMemory {
		// The most Badger allows. Values must stay strictly below it: at
		// exactly the threshold, v4.9.6 in memory panics in writeToLSM.
		return 1 << 20
	}
	return 1 << 10
}

// Open opens the index database in dir, which must already hold one (see
// Exists); otherwise it returns an error matching fs.ErrNotExist, and the
// caller should Create the index and rebuild it from the packs. When
// opts.InMemory is set, dir is ignored and a new empty database is opened.
//
// If another DB has dir open, Open fails at once with an *InUseError.
func Open(dir string, opts Options) (*DB, error) {
	if !opts.InMemory && !Exists(dir) {
		return nil, fmt.Errorf("open index %s: no database here: %w", dir, fs.ErrNotExist)
	}
	return open(dir, opts)
}

// Create creates dir (and its parents, mode 0700) and opens a new, empty
// database there. It fails if dir already exists and is not empty. When
// opts.InMemory is set, dir is ignored, as in Open.
func Create(dir string, opts Options) (*DB, error) {
	if opts.InMemory {
		return open(dir, opts)
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create index %s: %w", dir, err)
		}
	case err != nil:
		return nil, fmt.Errorf("create index %s: %w", dir, err)
	case len(entries) > 0:
		return nil, fmt.Errorf("create index %s: directory is not empty", dir)
	}
	return open(dir, opts)
}

// Exists reports whether dir holds a Badger database, that is whether its
// MANIFEST file exists.
func Exists(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, badger.ManifestFilename))
	return err == nil && fi.Mode().IsRegular()
}

func open(dir string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	if opts.InMemory {
		dir = "(in memory)"
	} else if err := removeEmptyLogs(dir); err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	// Callers hold the repository's owner lock, so the directory is not
	// expected to be busy; a conflict or EAGAIN here is transient (a
	// database of this process still closing, an mmap refused under memory
	// pressure): try again briefly before reporting it.
	var bdb *badger.DB
	var err error
	for attempt := 0; ; attempt++ {
		bdb, err = badger.Open(badgerOptions(dir, opts))
		if err == nil || attempt == 10 || !(isLocked(err) || errors.Is(err, syscall.EAGAIN)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		if isLocked(err) {
			return nil, &InUseError{Dir: dir, PID: lockHolder(dir)}
		}
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return &DB{bdb: bdb, dir: dir, log: opts.Logger}, nil
}

// removeEmptyLogs deletes zero-length memtable (.mem) and value log (.vlog)
// files from dir. Every Badger open creates a new one of each and then sizes
// it; a process killed in between (kill -9, FAULTS B1) leaves it empty, and
// Badger v4.9.6 then refuses to open the directory once ("Create a new
// file"). An empty file never held a record, so removing it loses nothing.
// It is done under Badger's own directory flock, taken and released here, so
// never while another process has the database open (and may be creating
// such a file); if the lock is taken, nothing is removed and Badger reports
// the directory in use.
func removeEmptyLogs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil // absent: Badger creates it or reports the error
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil
	}
	defer syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
	ents, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("remove empty %s left by a crash: %w", name, err)
			}
		}
	}
	return nil
}

// isLocked reports whether err is Badger failing to flock the directory.
// Badger flattens the cause into text (y.Wrapf uses %+v), so errors.Is only
// helps if that ever changes; the message is what we can match today.
//
// Not a bare EWOULDBLOCK: on Linux that is EAGAIN, which Badger can also
// return from an mmap refused under memory pressure; reporting that as "in
// use by another process" would send the user hunting for a process that
// does not exist.
func isLocked(err error) bool {
	return strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// lockHolder returns the pid Badger wrote into dir/LOCK, or 0.
func lockHolder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "LOCK"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// Close flushes and releases the database and its directory lock. The DB
// must not be used afterwards.
func (db *DB) Close() error {
	if err := db.bdb.Close(); err != nil {
		return fmt.Errorf("close index %s: %w", db.dir, err)
	}
	return nil
}

// translate maps Badger's errors to ours. Everything else passes unchanged.
func translate(err error) error {
	if errors.Is(err, badger.ErrKeyNotFound) {
		return snapshot.ErrNotFound
	}
	return err
}

// Lookup returns where blob id is stored, or an error matching
// snapshot.ErrNotFound.
func (db *DB) Lookup(ctx context.Context, id snapshot.ID) (snapshot.Location, error) {
	var loc snapshot.Location
	if err := ctx.Err(); err != nil {
		return loc, fmt.Errorf("look up blob %s: %w", id.Short(), err)
	}
	err := db.bdb.View(func(txn *badger.Txn) error { return getLocation(txn, id, &loc) })
	if err != nil {
		return snapshot.Location{}, fmt.Errorf("look up blob %s: %w", id.Short(), err)
	}
	return loc, nil
}

// getLocation reads blob id's location in txn.
func getLocation(txn *badger.Txn, id snapshot.ID, loc *snapshot.Location) error {
	var key [chunkKeyLen]byte
	item, err := txn.Get(appendChunkKey(key[:0], id))
	if err != nil {
		return translate(err)
	}
	return item.Value(func(v []byte) error { return unmarshalLocation(v, loc) })
}

// LookupEach looks up the blobs of refs, in order, in one read transaction
// (a Lookup each pays for a transaction of its own: a no-change backup
// checks every chunk of every file it reuses), calling fn with each one's
// index in refs and its location or an error matching snapshot.ErrNotFound.
// It stops early when fn returns false.
func (db *DB) LookupEach(ctx context.Context, refs []snapshot.ChunkRef, fn func(i int, loc snapshot.Location, err error) bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("look up %d blobs: %w", len(refs), err)
	}
	return db.bdb.View(func(txn *badger.Txn) error {
		for i, r := range refs {
			var loc snapshot.Location
			err := getLocation(txn, r.ID, &loc)
			if err != nil {
				err = fmt.Errorf("look up blob %s: %w", r.ID.Short(), err)
			}
			if !fn(i, loc, err) {
				return nil
			}
		}
		return nil
	})
}

// AddPack records pack, its size and every blob in it, and returns once
// they are durable. Every blob's Location.Pack must equal pack. A blob
// already recorded elsewhere is re-pointed to this pack.
//
// The pack key is written last, in the last transaction: if AddPack fails
// or is cancelled part way, some blob keys may be recorded but the pack is
// not (see the package doc).
func (db *DB) AddPack(ctx context.Context, pack snapshot.ID, size int64, blobs []snapshot.PackBlob) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add pack %s: %w", pack.Short(), err)
	}
	if size < 0 {
		return fmt.Errorf("add pack %s: negative size %d", pack.Short(), size)
	}
	for i := range blobs {
		if blobs[i].Pack != pack {
			return fmt.Errorf("add pack %s: blob %s says it is in pack %s",
				pack.Short(), blobs[i].ID.Short(), blobs[i].Pack.Short())
		}
	}

	// Badger keeps the key and value slices until commit: give each entry
	// its own bytes, carved from one allocation.
	buf := make([]byte, 0, len(blobs)*(chunkKeyLen+locationLen))
	txn := db.bdb.NewTransaction(true)
	defer func() { txn.Discard() }() // txn changes when we split
	txns := 1
	set := func(k, v []byte) error {
		err := txn.Set(k, v)
		if !errors.Is(err, badger.ErrTxnTooBig) {
			return err
		}
		if err := txn.Commit(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		txn = db.bdb.NewTransaction(true)
		txns++
		return txn.Set(k, v)
	}
	for i := range blobs {
		start := len(buf)
		buf = appendChunkKey(buf, blobs[i].ID)
		k := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = marshalLocation(buf, blobs[i].Location)
		v := buf[start:len(buf):len(buf)]
		if err := set(k, v); err != nil {
			return fmt.Errorf("add pack %s: record blob %s: %w", pack.Short(), blobs[i].ID.Short(), err)
		}
	}
	if err := set(packKey(pack), marshalPackSize(size)); err != nil {
		return fmt.Errorf("add pack %s: %w", pack.Short(), err)
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("add pack %s: commit: %w", pack.Short(), err)
	}
	if txns > 1 {
		db.log.DebugContext(ctx, "index: pack split across transactions",
			"pack", pack.Short(), "blobs", len(blobs), "transactions", txns)
	}
	return nil
}

// maxConflictRetries bounds how often RemovePack retries one batch of
// deletes that raced with an AddPack re-pointing the same blobs.
const maxConflictRetries = 10

// RemovePack forgets every blob location that points into pack, then pack
// itself. It scans all blob keys (see the package doc for the cost). It is
// idempotent: removing an unknown pack succeeds. A blob that a later
// AddPack moved to another pack is kept.
func (db *DB) RemovePack(ctx context.Context, pack snapshot.ID) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove pack %s: %w", pack.Short(), err)
	}
	keys, err := db.blobKeysIn(ctx, pack)
	if err != nil {
		return fmt.Errorf("remove pack %s: %w", pack.Short(), err)
	}
	conflicts := 0
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("remove pack %s: %w", pack.Short(), err)
		}
		n, err := db.deleteBlobKeys(pack, keys)
		if errors.Is(err, badger.ErrConflict) && conflicts < maxConflictRetries {
			conflicts++
			continue // re-read the same keys in a fresh transaction
		}
		if err != nil {
			return fmt.Errorf("remove pack %s: delete blobs: %w", pack.Short(), err)
		}
		keys = keys[n:]
	}
	err = db.bdb.Update(func(txn *badger.Txn) error { return txn.Delete(packKey(pack)) })
	if err != nil {
		return fmt.Errorf("remove pack %s: delete pack record: %w", pack.Short(), err)
	}
	return nil
}

// blobKeysIn returns the keys of all blobs recorded in pack, from one
// consistent read.
func (db *DB) blobKeysIn(ctx context.Context, pack snapshot.ID) ([][]byte, error) {
	var keys [][]byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		// Values are stored in the LSM tree next to their keys (see
		// badgerOptions), so prefetching would only copy them.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(chunkPrefix)})
		defer it.Close()
		var p snapshot.ID
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			if err := item.Value(func(v []byte) error { return locationPack(v, &p) }); err != nil {
				return fmt.Errorf("blob key %x: %w", item.Key(), err)
			}
			if p == pack {
				keys = append(keys, item.KeyCopy(nil))
			}
		}
		return nil
	})
	return keys, err
}

// deleteBlobKeys deletes, in one transaction, as many of keys as fit,
// skipping those that no longer point into pack. It returns how many keys
// it dealt with. Each key is read in the transaction first, so a concurrent
// AddPack that re-points one makes the commit fail with badger.ErrConflict
// rather than lose the new location.
func (db *DB) deleteBlobKeys(pack snapshot.ID, keys [][]byte) (int, error) {
	txn := db.bdb.NewTransaction(true)
	defer txn.Discard()
	n := 0
	for ; n < len(keys); n++ {
		item, err := txn.Get(keys[n])
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		var p snapshot.ID
		if err := item.Value(func(v []byte) error { return locationPack(v, &p) }); err != nil {
			return 0, fmt.Errorf("blob key %x: %w", keys[n], err)
		}
		if p != pack {
			continue
		}
		err = txn.Delete(keys[n])
		if errors.Is(err, badger.ErrTxnTooBig) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if n == 0 {
		return 0, errors.New("transaction cannot hold a single delete")
	}
	return n, txn.Commit()
}

// Packs calls fn for every recorded pack, in pack id order, with its
// recorded size. It stops at the first error fn returns and returns that
// error unchanged. fn may call other DB methods.
func (db *DB) Packs(ctx context.Context, fn func(pack snapshot.ID, size int64) error) error {
	err := db.iterate(ctx, packPrefix, func(key, val []byte) error {
		pack, err := idFromKey(key, packPrefix)
		if err != nil {
			return err
		}
		size, err := unmarshalPackSize(val)
		if err != nil {
			return fmt.Errorf("pack %s: %w", pack.Short(), err)
		}
		return fnError{fn(pack, size)}.orNil()
	})
	return unwrapFn(err, "list packs")
}

// Blobs calls fn for every recorded blob, in blob id order. It stops at
// the first error fn returns and returns that error unchanged. fn may call
// other DB methods.
func (db *DB) Blobs(ctx context.Context, fn func(b snapshot.PackBlob) error) error {
	err := db.iterate(ctx, chunkPrefix, func(key, val []byte) error {
		var b snapshot.PackBlob
		var err error
		if b.ID, err = idFromKey(key, chunkPrefix); err != nil {
			return err
		}
		if err := unmarshalLocation(val, &b.Location); err != nil {
			return fmt.Errorf("blob %s: %w", b.ID.Short(), err)
		}
		return fnError{fn(b)}.orNil()
	})
	return unwrapFn(err, "list blobs")
}

// fnError marks an error returned by the caller's callback, so that it is
// handed back unchanged instead of being wrapped like our own errors.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func (e fnError) orNil() error {
	if e.err == nil {
		return nil
	}
	return e
}

func unwrapFn(err error, doing string) error {
	var fe fnError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return fe.err
	default:
		return fmt.Errorf("%s: %w", doing, err)
	}
}

// iterate calls visit for every key with prefix, in key order, from one
// consistent read. key and val are only valid during the call.
func (db *DB) iterate(ctx context.Context, prefix string, visit func(key, val []byte) error) error {
	return db.bdb.View(func(txn *badger.Txn) error {
		// No prefetch: values are small and inline in the LSM tree, so
		// Item.Value reads them in place; prefetching would copy each one.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			if err := item.Value(func(v []byte) error { return visit(item.Key(), v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// Meta returns a copy of the value stored under key, or an error matching
// snapshot.ErrNotFound.
func (db *DB) Meta(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read meta %q: %w", key, err)
	}
	var val []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(key))
		if err != nil {
			return translate(err)
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read meta %q: %w", key, err)
	}
	return val, nil
}

// maxMetaLen bounds a meta value. Meta holds small things (the repository
// id, format versions); the bound keeps values below what an in-memory
// Badger takes, so tests and real databases accept the same values.
const maxMetaLen = 512 << 10

// SetMeta stores value under key and returns once it is durable. The DB
// keeps its own copy of value, which may be at most 512 KiB.
func (db *DB) SetMeta(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write meta %q: %w", key, err)
	}
	if len(value) > maxMetaLen {
		return fmt.Errorf("write meta %q: value of %d bytes exceeds %d", key, len(value), maxMetaLen)
	}
	v := append([]byte{}, value...) // Badger holds the slice until commit
	err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(metaKey(key), v) })
	if err != nil {
		return fmt.Errorf("write meta %q: %w", key, err)
	}
	return nil
}
