package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"snapforge/snapshot/audit"
	blake3 "snapforge/snapshot/b3"
	"snapforge/snapshot/pack"
)

// CorruptError reports a blob whose stored bytes do not decode to content
// matching its ID (FAULTS A1, A8, A10, A11). Such bytes are never returned.
type CorruptError struct {
	ID     ID
	Pack   ID
	Detail string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("chunk %s in pack %s is corrupt: %s", e.ID.Short(), e.Pack.Short(), e.Detail)
}

// MissingError reports a blob that is not indexed, or whose pack is gone or
// shorter than the index says (FAULTS A3, A4).
type MissingError struct {
	ID     ID
	Pack   ID // zero when the blob is not indexed
	Detail string
}

func (e *MissingError) Error() string {
	if e.Pack.IsZero() {
		return fmt.Sprintf("chunk %s is not in the index: %s", e.ID.Short(), e.Detail)
	}
	return fmt.Sprintf("chunk %s: pack %s %s", e.ID.Short(), e.Pack.Short(), e.Detail)
}

// IsIntegrity reports whether err means stored data is damaged or missing
// (exit code 3), as opposed to an operational error.
func IsIntegrity(err error) bool {
	var c *CorruptError
	var m *MissingError
	var d *DamagedError
	if errors.As(err, new(*NewerError)) {
		return false // not damage: a newer snapforge reads it
	}
	return errors.As(err, &c) || errors.As(err, &m) || errors.As(err, &d)
}

// LoadBlob returns the plaintext of blob id, appended to buf[:0]. The bytes
// are decoded within the recorded size and checked against id.
func (r *Repo) LoadBlob(ctx context.Context, id ID, buf []byte) ([]byte, error) {
	return r.loadBlob(ctx, nil, id, buf)
}

// loadBlob is LoadBlob reading through the open packs of pr (nil: open the
// pack for this one read).
func (r *Repo) loadBlob(ctx context.Context, pr *packReader, id ID, buf []byte) ([]byte, error) {
	return r.fetchBlob(ctx, pr, id, buf, true)
}

// fetchBlob is loadBlob; without check, the plaintext's hash is not compared
// with id, for a caller that proves the bytes another way (verify's
// whole-file hash). Lengths, framing and decoding are checked all the same.
func (r *Repo) fetchBlob(ctx context.Context, pr *packReader, id ID, buf []byte, check bool) ([]byte, error) {
	if err := r.errIfNoIndex(); err != nil {
		return nil, err
	}
	loc, err := r.idx.Lookup(ctx, id)
	if err != nil {
		return nil, lookupError(id, err)
	}
	return r.readBlob(pr, id, loc, buf, check)
}

// readBlob reads blob id at loc into buf; with check, its plaintext must
// hash to id.
func (r *Repo) readBlob(pr *packReader, id ID, loc Location, buf []byte, check bool) ([]byte, error) {
	if pr == nil {
		pr = r.newPackReader(1)
		defer pr.Close()
	}
	op, release, err := pr.open(loc.Pack, pr.direct && loc.Stored >= directMin)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &MissingError{ID: id, Pack: loc.Pack, Detail: "is missing from the repository"}
	}
	if err != nil {
		return nil, fmt.Errorf("open pack %s: %w", loc.Pack.Short(), err)
	}
	defer release()
	if loc.Stored > pack.MaxBlobSize+1024 || loc.Raw > pack.MaxBlobSize {
		return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: "recorded length exceeds the limit"}
	}
	if loc.Codec == pack.CodecGroup {
		return r.readGrouped(pr, op, id, loc, buf, check)
	}
	if loc.Codec == pack.CodecRaw {
		// Stored as is (incompressible data): read straight into the
		// caller's buffer, no staging copy.
		if loc.Stored != loc.Raw {
			return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: fmt.Sprintf("raw blob: %d stored bytes, want %d", loc.Stored, loc.Raw)}
		}
		out, err := op.readRaw(buf, int64(loc.Offset), int(loc.Raw))
		if err != nil {
			return nil, packReadError(id, loc, err)
		}
		if check && Hash(out) != id {
			return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: "content does not match its hash"}
		}
		return out, nil
	}
	stored, done, err := op.readStored(int64(loc.Offset), int(loc.Stored))
	defer done()
	if err != nil {
		return nil, packReadError(id, loc, err)
	}
	out, err := pack.Decode(buf[:0], stored, loc.Codec, loc.Raw)
	if err != nil {
		return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: err.Error()}
	}
	if check && Hash(out) != id {
		return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: "content does not match its hash"}
	}
	return out, nil
}

// bufPools recycle chunk-sized buffers between reads and between the stages
// of a backup, so a chunk costs no new buffer for the garbage collector to
// clear and collect. Sizes grow by a quarter from 16 KiB to a little over
// 4 MiB (the default maximum chunk plus a compressed frame's overhead), so a
// buffer wastes at most a fifth of its size; larger ones are not pooled.
var (
	bufClasses = func() []int {
		var cs []int
		for c := 16 << 10; ; c += c / 4 {
			c = (c + 4095) &^ 4095
			if c >= 4<<20+64<<10 {
				return append(cs, 4<<20+64<<10)
			}
			cs = append(cs, c)
		}
	}()
	bufPools = make([]sync.Pool, len(bufClasses))
)

// bufCap is the capacity of the buffer getBuf(n) returns.
func bufCap(n int) int {
	if i, _ := slices.BinarySearch(bufClasses, n); i < len(bufClasses) {
		return bufClasses[i]
	}
	return n
}

// getBuf returns an empty buffer with capacity for at least n bytes.
func getBuf(n int) *[]byte {
	i, _ := slices.BinarySearch(bufClasses, n)
	if i == len(bufClasses) {
		b := make([]byte, 0, n)
		return &b
	}
	if p, ok := bufPools[i].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, bufClasses[i])
	return &b
}

// putBuf returns a buffer from getBuf for reuse; nil is ignored.
func putBuf(p *[]byte) {
	if p == nil {
		return
	}
	if i, ok := slices.BinarySearch(bufClasses, cap(*p)); ok {
		*p = (*p)[:0]
		bufPools[i].Put(p)
	}
}

// packReader keeps pack files open across the reads of one operation
// (restore, verify, cat), so each pack is opened once and the kernel's
// readahead follows the mostly sequential reads. Packs are immutable (named
// by their hash), so a descriptor stays valid for as long as it is open. It
// is safe for concurrent use; at most max files are kept open while idle.
type packReader struct {
	r      *Repo
	max    int
	direct bool // read large blobs with O_DIRECT (see directMin)
	mu     sync.Mutex
	files  map[ID]*openPack
	tick   uint64
	groups groupCache // decoded group frames
}

type openPack struct {
	f      *os.File
	direct *os.File // the same pack opened with O_DIRECT, for large blobs; nil until the first
	refs   int
	used   uint64
}

// Blobs of at least directMin stored bytes are read with O_DIRECT where the
// file system allows it: the disk fills our buffer by DMA, without the page
// cache's copy and bookkeeping, which cost more CPU than hashing the bytes
// (reading the packs of a 1.3 GB repository cold in 1 MiB requests: 0.60 to
// 0.74 s of CPU buffered, 0.18 to 0.21 s direct, and no slower). Packs are
// immutable, so nothing is lost by not caching them; the mount caches what
// it decoded, in its own cache and the kernel's cache of the mounted files.
// Smaller blobs (a database's pages, small files: many to a request) go
// through the page cache, whose readahead serves their sequential reads.
const (
	directMin   = 128 << 10
	directAlign = 4096 // offsets, lengths and buffer addresses of a direct read
)

// directReads switches O_DIRECT reads off for the whole process once a file
// system refused one (EINVAL: not supported, or an alignment it rejects).
var directReads atomic.Bool

func init() { directReads.Store(true) }

func (r *Repo) newPackReader(max int) *packReader {
	return &packReader{r: r, max: max, files: map[ID]*openPack{}, groups: groupCache{max: groupsKept}}
}

// open returns pack id, opened, and a function to call when done with it.
// With direct it also opens the pack for direct reads (when possible).
func (pr *packReader) open(id ID, direct bool) (*openPack, func(), error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.tick++
	op, ok := pr.files[id]
	if !ok {
		f, err := os.Open(pr.r.packPath(id))
		if err != nil {
			return nil, nil, err
		}
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL) // a hint: larger readahead
		op = &openPack{f: f}
		pr.files[id] = op
	}
	if direct && op.direct == nil && directReads.Load() {
		d, err := os.OpenFile(pr.r.packPath(id), os.O_RDONLY|unix.O_DIRECT, 0)
		switch {
		case errors.Is(err, unix.EINVAL):
			directReads.Store(false)
		case err == nil:
			op.direct = d
		} // any other error: the buffered file serves
	}
	op.refs++ // before evicting: the pack being returned is never a victim
	op.used = pr.tick
	pr.evict()
	return op, func() {
		pr.mu.Lock()
		op.refs--
		pr.mu.Unlock()
	}, nil
}

// readRaw reads n bytes of the pack at off into buf (grown if needed) and
// returns them; io.EOF when the pack ends first. A direct read goes into
// buf itself when its capacity allows (BufferSize), and the bytes are
// returned where it put them: up to a few KiB into buf (the blob's offset
// within its first aligned block), not moved to its start. Moving them
// was a tenth of the mount's CPU reading a large file.
func (op *openPack) readRaw(buf []byte, off int64, n int) ([]byte, error) {
	if n >= directMin && op.direct != nil {
		if data, ok, err := op.readAligned(buf[:cap(buf)], off, n); ok {
			if err != nil {
				return nil, err
			}
			return data, nil
		}
		if data, done, ok, err := op.readDirect(off, n); ok { // no room in buf
			if err == nil {
				buf = append(buf[:0], data...)
			}
			done()
			return buf, err
		}
	}
	out := slices.Grow(buf[:0], n)[:n]
	_, err := op.f.ReadAt(out, off)
	return out, err
}

// readStored returns n bytes of the pack at off in a buffer of its own,
// valid until done is called; io.EOF when the pack ends first.
func (op *openPack) readStored(off int64, n int) (data []byte, done func(), err error) {
	if n >= directMin {
		if data, done, ok, err := op.readDirect(off, n); ok {
			return data, done, err
		}
	}
	bp := getBuf(n)
	data = (*bp)[:n]
	_, err = op.f.ReadAt(data, off)
	return data, func() { putBuf(bp) }, err
}

// readDirect is readAligned into a buffer of its own, valid until done is
// called (also on an error).
func (op *openPack) readDirect(off int64, n int) (data []byte, done func(), ok bool, err error) {
	if op.direct == nil {
		return nil, nil, false, nil
	}
	from, to := directRange(off, n)
	bp := getBuf(int(to-from) + directAlign)
	data, ok, err = op.readAligned((*bp)[:cap(*bp)], off, n)
	if !ok || err != nil {
		putBuf(bp)
		return nil, func() {}, ok, err
	}
	return data, func() { putBuf(bp) }, true, nil
}

// readAligned reads n bytes at off with O_DIRECT: the aligned blocks around
// them into b from its first aligned address, and returns the n bytes
// within. ok is false when b has no room for that, the pack is not open for
// direct reads, or the file system refused this one (direct reads are then
// off for the process); the caller then reads another way.
func (op *openPack) readAligned(b []byte, off int64, n int) (data []byte, ok bool, err error) {
	from, to := directRange(off, n)
	shift := alignShift(b)
	if op.direct == nil || !directReads.Load() || len(b) < shift+int(to-from) {
		return nil, false, nil
	}
	b = b[shift : shift+int(to-from)]
	got, err := op.direct.ReadAt(b, from)
	skip := int(off - from)
	if ok, err = directDone(got, err, skip+n); !ok || err != nil {
		return nil, ok, err
	}
	return b[skip : skip+n], true, nil
}

// directDone judges a direct read that returned got bytes and err when
// want were needed (the pack may end within the last aligned block). ok
// false: the file system refused the read, direct reads are switched off
// and the caller reads through the page cache.
func directDone(got int, err error, want int) (ok bool, _ error) {
	switch {
	case got >= want:
		return true, nil
	case errors.Is(err, unix.EINVAL):
		directReads.Store(false)
		return false, nil
	case err == nil:
		return true, io.ErrUnexpectedEOF
	}
	return true, err
}

// packReadError is the error of a failed read of blob id's bytes at loc:
// a pack shorter than the index says is a *MissingError (integrity), any
// other failure a plain read error.
func packReadError(id ID, loc Location, err error) error {
	if errors.Is(err, io.EOF) {
		return &MissingError{ID: id, Pack: loc.Pack, Detail: "is shorter than the index says (size mismatch with index: truncated?)"}
	}
	return fmt.Errorf("read pack %s: %w", loc.Pack.Short(), err)
}

// directRange returns the aligned range of the pack around [off, off+n).
func directRange(off int64, n int) (from, to int64) {
	return off &^ (directAlign - 1), (off + int64(n) + directAlign - 1) &^ (directAlign - 1)
}

// alignShift returns how many bytes into b the first aligned address is.
func alignShift(b []byte) int {
	return -int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) & (directAlign - 1)
}

func (op *openPack) close() {
	op.f.Close()
	if op.direct != nil {
		op.direct.Close()
	}
}

// evict closes the least recently used idle packs beyond max.
func (pr *packReader) evict() {
	for len(pr.files) > pr.max {
		var victim ID
		var oldest uint64 = ^uint64(0)
		for id, op := range pr.files {
			if op.refs == 0 && op.used < oldest {
				victim, oldest = id, op.used
			}
		}
		if oldest == ^uint64(0) {
			return // all in use
		}
		pr.files[victim].close()
		delete(pr.files, victim)
	}
}

// Close closes every pack file and drops the decoded groups.
func (pr *packReader) Close() {
	pr.groups.clear()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for id, op := range pr.files {
		op.close()
		delete(pr.files, id)
	}
}

// LoadTree reads and decodes tree id. Recently loaded trees are kept, up
// to treeCacheNodes nodes in all, for the repeated lookups of ls, cat, FUSE
// and verify across snapshots that share trees.
func (r *Repo) LoadTree(ctx context.Context, id ID) (*Tree, error) {
	return r.loadTreeVia(ctx, nil, id, true)
}

// treeCacheNodes bounds the tree cache by what it holds, not by how many
// trees: a few hundred bytes a node, so a few MB, whatever the tree shapes.
const treeCacheNodes = 16384

// loadTree is LoadTree; cache false neither uses nor fills the cache, for a
// caller that reads each tree once (a backup walking its parent snapshot).
func (r *Repo) loadTree(ctx context.Context, id ID, cache bool) (*Tree, error) {
	return r.loadTreeVia(ctx, nil, id, cache)
}

// loadTreeVia is loadTree reading through the open packs of pr (nil: open
// the pack for this one read).
func (r *Repo) loadTreeVia(ctx context.Context, pr *packReader, id ID, cache bool) (*Tree, error) {
	if t := r.cachedTree(id); cache && t != nil {
		return t, nil
	}
	b, err := r.loadBlob(ctx, pr, id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %s: %w", id.Short(), err)
	}
	return r.keepTree(id, b, cache)
}

// cachedTree returns tree id from the tree cache, or nil.
func (r *Repo) cachedTree(id ID) *Tree {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.treeCache[id]
}

// keepTree decodes tree id from its checked plaintext b and, with cache,
// keeps it in the tree cache (emptied when it would hold more than
// treeCacheNodes nodes; a larger tree is not kept).
func (r *Repo) keepTree(id ID, b []byte, cache bool) (*Tree, error) {
	t, err := DecodeTree(b)
	if err != nil {
		return nil, &CorruptError{ID: id, Detail: err.Error()}
	}
	if !cache || len(t.Nodes) > treeCacheNodes {
		return t, nil
	}
	r.mu.Lock()
	if r.treeCache == nil || r.treeCacheNodes+len(t.Nodes) > treeCacheNodes {
		r.treeCache, r.treeCacheNodes = map[ID]*Tree{}, 0
	}
	r.treeCache[id] = t
	r.treeCacheNodes += len(t.Nodes)
	r.mu.Unlock()
	return t, nil
}

// packFiles lists the packs on disk with their sizes.
func (r *Repo) packFiles() (map[ID]int64, error) {
	out := map[ID]int64{}
	root := filepath.Join(r.path, "packs")
	subs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	for _, s := range subs {
		if !s.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(root, s.Name()))
		if err != nil {
			return nil, fmt.Errorf("list packs: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if !strings.HasSuffix(name, ".pack") {
				continue
			}
			id, err := ParseID(strings.TrimSuffix(name, ".pack"))
			if err != nil {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			out[id] = fi.Size()
		}
	}
	return out, nil
}

// readPackTrailer reads the blob list of pack id from its trailer.
func (r *Repo) readPackTrailer(id ID) ([]PackBlob, int64, error) {
	f, err := os.Open(r.packPath(id))
	if err != nil {
		return nil, 0, fmt.Errorf("open pack %s: %w", id.Short(), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("stat pack %s: %w", id.Short(), err)
	}
	bl, err := pack.ReadTrailer(f, fi.Size())
	if err != nil {
		return nil, fi.Size(), fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	out := make([]PackBlob, len(bl))
	for i, b := range bl {
		out[i] = PackBlob{ID: ID(b.ID), Location: locationOf(id, b)}
	}
	return out, fi.Size(), nil
}

// recover is startup recovery, run by Open under the owner lock: it removes
// temporary files, notes packs that are missing or shorter than the index
// says (their chunks are not deduplicated against; verify reports them), and
// adopts complete packs that a crash left out of the index.
func (r *Repo) recover(ctx context.Context) error {
	tmp := r.dir("tmp")
	if ents, err := os.ReadDir(tmp); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(tmp, e.Name()))
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		os.MkdirAll(tmp, 0o700)
	}
	for _, d := range []string{"snapshots", "verify", ""} { // temp files of an interrupted atomic write
		if ents, err := os.ReadDir(r.dir(d)); err == nil {
			for _, e := range ents {
				if isHiddenTemp(e.Name()) {
					os.Remove(filepath.Join(r.dir(d), e.Name()))
				}
			}
		}
	}
	ps, err := r.scanPacks(ctx)
	if err != nil {
		return fmt.Errorf("startup recovery: %w", err)
	}
	r.badPacks = ps.bad
	for id := range r.badPacks {
		r.opts.Logger.Warn("pack damaged; its chunks will be stored again by the next backup", "pack", id.Short(), "problem", r.badPacks[id])
	}
	for _, id := range ps.orphans {
		size := ps.onDisk[id]
		if err := checkPackName(r.packPath(id), id); err != nil {
			r.opts.Logger.Warn("orphan pack left alone", "pack", id.Short(), "err", err)
			continue
		}
		blobs, _, err := r.readPackTrailer(id)
		if err != nil {
			r.opts.Logger.Warn("orphan pack with a damaged trailer left alone", "pack", id.Short(), "err", err)
			continue
		}
		if err := r.idx.AddPack(ctx, id, size, blobs); err != nil {
			return fmt.Errorf("startup recovery: adopt pack %s: %w", id.Short(), err)
		}
		r.opts.Logger.Info("adopted orphan pack", "pack", id.Short(), "blobs", len(blobs))
	}
	return nil
}

// packState compares the packs on disk with those the index records.
type packState struct {
	onDisk  map[ID]int64  // pack files and their sizes
	bad     map[ID]string // recorded packs missing or of another size, with why
	orphans []ID          // pack files the index does not record
}

// scanPacks lists the pack files and checks each recorded pack against
// them (one stat per pack; no data read).
func (r *Repo) scanPacks(ctx context.Context) (packState, error) {
	ps := packState{bad: map[ID]string{}}
	var err error
	if ps.onDisk, err = r.packFiles(); err != nil {
		return ps, err
	}
	known := map[ID]bool{}
	err = r.idx.Packs(ctx, func(id ID, size int64) error {
		known[id] = true
		have, ok := ps.onDisk[id]
		switch {
		case !ok:
			ps.bad[id] = "is missing from the repository"
		case have != size:
			ps.bad[id] = fmt.Sprintf("size mismatch with index: %d bytes on disk, %d recorded (truncated?)", have, size)
		}
		return nil
	})
	if err != nil {
		return ps, fmt.Errorf("list indexed packs: %w", err)
	}
	for id := range ps.onDisk {
		if !known[id] {
			ps.orphans = append(ps.orphans, id)
		}
	}
	sort.Slice(ps.orphans, func(i, j int) bool { return ps.orphans[i].String() < ps.orphans[j].String() })
	return ps, nil
}

// usable reports whether a located blob can be deduplicated against.
func (r *Repo) usable(loc Location) bool {
	_, bad := r.badPacks[loc.Pack]
	return !bad
}

// checkPackName verifies that a pack file's bytes hash to its name.
func checkPackName(p string, id ID) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := blake3.Get()
	defer blake3.Put(h)
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read pack %s: %w", id.Short(), err)
	}
	var sum ID
	copy(sum[:], h.Sum(nil))
	if sum != id {
		return fmt.Errorf("pack %s: content does not match its name", id.Short())
	}
	return nil
}

// recoverAuditEvent appends the backup event of a snapshot committed just
// before a crash cut its audit append: such a manifest recorded the head
// that is still the newest.
func (r *Repo) recoverAuditEvent() {
	ents, err := os.ReadDir(r.dir("snapshots"))
	if err != nil {
		return
	}
	var newest string
	var newestT int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().UnixNano() >= newestT {
			newest, newestT = strings.TrimSuffix(e.Name(), ".json"), fi.ModTime().UnixNano()
		}
	}
	if newest == "" {
		return
	}
	m, err := r.LoadManifest(newest)
	if err != nil {
		return
	}
	h := r.audit.Head()
	if m.AuditSeq != h.Seq || m.AuditHead != h.Hash {
		return
	}
	r.Audit("backup", map[string]any{"backup_id": m.BackupID, "root_hash": m.RootHash, "files": m.Stats.Files,
		"bytes": m.Stats.Bytes, "new_bytes": m.Stats.NewBytes, "strategy": m.Strategy,
		"root": audit.Escape([]byte(m.Source.Root)), "recovered": true},
		"ok (recovered: the snapshot was committed but its event was cut by a crash)")
}

// GetBuffer returns an empty buffer with capacity for at least n bytes from
// the pools chunk reads use; give it back with PutBuffer once no one reads
// it any more. For long-lived readers (the FUSE mount's chunk cache) that
// would otherwise allocate and collect a chunk-sized buffer per read.
func GetBuffer(n int) *[]byte { return getBuf(n) }

// DecodeSlack is the capacity to allow beyond a chunk's size in a buffer
// passed to a load: with it the decoder uses its fast copies (see
// pack.DecodeSlack).
const DecodeSlack = pack.DecodeSlack

// BufferSize is the capacity to give a buffer passed to a load of a chunk
// of size bytes: DecodeSlack beyond it, and for a large chunk room for a
// direct read of the aligned blocks around it, into the buffer itself.
func BufferSize(size int) int {
	if size >= directMin {
		return size + 2*directAlign
	}
	return size + DecodeSlack
}

// PutBuffer returns a buffer from GetBuffer for reuse; nil is ignored.
func PutBuffer(p *[]byte) { putBuf(p) }
