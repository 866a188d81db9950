package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unsafe"

	blake3 "snapforge/snapshot/b3"
)

// WalkFunc is called for every node under a tree in pre-order, with the
// node's raw slash-separated path relative to the snapshot root.
type WalkFunc func(rel string, n *Node) error

// SkipDir, returned by a WalkFunc for a directory, skips its contents.
//
//lint:ignore ST1012 named like io/fs.SkipDir, which it mirrors
var SkipDir = errors.New("skip this directory")

// Walk visits every node of the tree id in name-byte pre-order.
func (r *Repo) Walk(ctx context.Context, id ID, prefix string, fn WalkFunc) error {
	t, err := r.LoadTree(ctx, id)
	if err != nil {
		if prefix == "" {
			return err
		}
		return fmt.Errorf("%s: %w", DisplayName(prefix), err)
	}
	for _, n := range t.Nodes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel := n.Name
		if prefix != "" {
			rel = prefix + "/" + n.Name
		}
		err := fn(rel, n)
		if err == SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if n.Type == TypeDir {
			if err := r.Walk(ctx, n.Subtree, rel, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// FindNode returns the node at rel (slash-separated raw path) in snapshot m.
// The root is returned as a synthetic directory node.
func (r *Repo) FindNode(ctx context.Context, m *Manifest, rel string) (*Node, error) {
	id, err := m.TreeID()
	if err != nil {
		return nil, err
	}
	n, err := r.findNodeVia(ctx, nil, id, rel)
	if errors.Is(err, ErrNotFound) {
		return nil, &PathNotFoundError{Path: strings.Trim(rel, "/"), BackupID: m.BackupID}
	}
	return n, err
}

// PathNotFoundError is a path a snapshot does not hold; it is ErrNotFound.
type PathNotFoundError struct {
	Path     string // raw, slash-separated
	BackupID string
}

func (e *PathNotFoundError) Error() string {
	return fmt.Sprintf("%s: no such file or directory in snapshot %s (`snapforge ls %s` lists what it holds)", DisplayName(e.Path), e.BackupID, e.BackupID)
}

// Unwrap returns ErrNotFound.
func (e *PathNotFoundError) Unwrap() error { return ErrNotFound }

// findNodeVia walks from the root tree to rel, loading trees through pr
// (nil: opening each pack for one read). A missing entry, or one below a
// non-directory, is ErrNotFound.
func (r *Repo) findNodeVia(ctx context.Context, pr *packReader, root ID, rel string) (*Node, error) {
	n := &Node{Type: TypeDir, Subtree: root, Mode: 0o755}
	rel = strings.Trim(rel, "/")
	if rel == "" || rel == "." {
		return n, nil
	}
	for _, name := range strings.Split(rel, "/") {
		if n.Type != TypeDir {
			return nil, fmt.Errorf("not a directory: %w", ErrNotFound)
		}
		t, err := r.loadTreeVia(ctx, pr, n.Subtree, true)
		if err != nil {
			return nil, err
		}
		if n = t.Find(name); n == nil {
			return nil, ErrNotFound
		}
	}
	return n, nil
}

// WriteContent streams the content of file node n to w, checking every
// chunk and, at the end, the whole-file hash. It returns the bytes written.
func (r *Repo) WriteContent(ctx context.Context, n *Node, w io.Writer) (int64, error) {
	pr := r.newPackReader(8)
	defer pr.Close()
	var total int64
	err := r.streamContent(ctx, pr, n, checkChunksAndFile, nil, func(data []byte, _ int64) error {
		nw, err := w.Write(data)
		total += int64(nw)
		return err
	})
	return total, err
}

// ChunkReader loads chunks for a long-lived reader (the FUSE mount): it
// keeps up to a bounded number of packs open between reads and checks every
// chunk against its id and recorded size. Safe for concurrent use.
type ChunkReader struct {
	r  *Repo
	pr *packReader
}

// NewChunkReader returns a ChunkReader keeping at most maxOpen packs open
// while idle. Large chunks are read with O_DIRECT (see directMin): what the
// mount decodes it caches itself, and the kernel caches the files it serves.
func (r *Repo) NewChunkReader(maxOpen int) *ChunkReader {
	pr := r.newPackReader(maxOpen)
	pr.direct = true
	return &ChunkReader{r: r, pr: pr}
}

// Load returns chunk c's plaintext, in buf's memory where it fits (not
// necessarily at its start: see Within), else in a new slice. A chunk whose
// bytes do not match its id or size is a *CorruptError; one no pack holds,
// a *MissingError (IsIntegrity reports both).
func (c *ChunkReader) Load(ctx context.Context, ref ChunkRef, buf []byte) ([]byte, error) {
	data, err := c.r.loadBlob(ctx, c.pr, ref.ID, buf)
	if err == nil && len(data) != int(ref.Size) {
		err = &CorruptError{ID: ref.ID, Detail: "chunk size differs from the tree"}
	}
	return data, err
}

// KeepGroups sets how many decoded group frames the reader keeps (at least
// one; groupsKept unless set). Call it before the first Load. A reader
// serving many concurrent requests along a file of small chunks — a mount:
// the kernel's reads in flight and its own read-ahead — needs one for each
// frame those touch at once, or it decodes a frame again for every few of
// its members: a 300 MB database read through the mount decoded 1.0 GB of
// frames with 4 kept, 0.4 GB with 8.
func (c *ChunkReader) KeepGroups(n int) { c.pr.groups.keep(n) }

// GroupCacheBytes is the most the reader keeps of decoded group frames:
// GroupFrameBytes each.
func (c *ChunkReader) GroupCacheBytes() int64 { return c.pr.groups.bytes() }

// GroupCacheIdle is the part of GroupCacheBytes no frame holds now: while
// large chunks are read (model files) the reader keeps no frames, and a
// cache sharing one budget with it may use that part.
func (c *ChunkReader) GroupCacheIdle() int64 { return c.pr.groups.idle() }

// TrimGroups drops the decoded group frames no load is using, for a cache
// sharing the budget that needs the room: a reader of large chunks (which
// are never in groups) has moved on from the small ones.
func (c *ChunkReader) TrimGroups() { c.pr.groups.trim() }

// GroupFrameBytes is the memory one decoded group frame takes at most: the
// pooled buffer for a frame's largest plaintext and the decoder's slack.
func GroupFrameBytes() int64 { return int64(bufCap(groupTarget + DecodeSlack)) }

// LoadTree is Repo.LoadTree reading through the reader's open packs.
func (c *ChunkReader) LoadTree(ctx context.Context, id ID) (*Tree, error) {
	return c.r.loadTreeVia(ctx, c.pr, id, true)
}

// treePrefetchMax bounds the trees PrefetchTree loads: a tree is kept in
// the cache only up to treeCacheNodes nodes, and a node takes at least 16
// bytes, so a larger tree might be decoded ahead for nothing (a directory
// of 100,000 entries: a few MB, decoded once when it is listed).
const treePrefetchMax = treeCacheNodes * 16

// PrefetchTree loads tree id into the tree cache ahead of its use, unless
// it is cached already or too large to keep, and reports whether it loaded
// it. Errors are left to the load that needs the tree.
func (c *ChunkReader) PrefetchTree(ctx context.Context, id ID) bool {
	if c.r.cachedTree(id) != nil || c.r.errIfNoIndex() != nil {
		return false
	}
	loc, err := c.r.idx.Lookup(ctx, id)
	if err != nil || loc.Kind != KindTree || loc.Raw > treePrefetchMax {
		return false
	}
	b, err := c.r.readBlob(c.pr, id, loc, nil, true)
	if err == nil {
		_, err = c.r.keepTree(id, b, true)
	}
	return err == nil
}

// FindNode is Repo.FindNode from a root tree id, reading through the
// reader's open packs.
func (c *ChunkReader) FindNode(ctx context.Context, root ID, rel string) (*Node, error) {
	return c.r.findNodeVia(ctx, c.pr, root, rel)
}

// Close closes the open packs.
func (c *ChunkReader) Close() { c.pr.Close() }

// prefetch is how many loaders read, decompress and check the chunks of a
// file ahead of the consumer, and how many chunks they may hold: enough to
// keep both cores busy on one big file, few enough to bound memory
// (prefetch × 4 MiB).
const prefetch = 3

// A file of small chunks (a database's pages, 4 to 64 KiB each) may be
// loaded further ahead, up to the same bytes (prefetchBytes), but no more
// than prefetchMax chunks. Such chunks sit in groups of about 1 MiB, one
// frame each: with only prefetch chunks ahead, the loaders would reach the
// next group when the consumer is a few pages from the end of this one, and
// decoding it (some 7 ms) would wait for the whole-file hash, and the hash
// for the decoding. Further ahead, the two overlap (verify of the reference
// dataset's 300 MB database, 16 KiB pages: see docs/performance.md).
const (
	prefetchBytes = prefetch * (4 << 20)
	prefetchMax   = 128
)

// aheadFor returns how many chunks of refs may be loaded ahead.
func aheadFor(refs []ChunkRef) int {
	var largest uint32 = 1
	for _, c := range refs {
		largest = max(largest, c.Size)
	}
	return min(max(prefetchBytes/int(largest), prefetch), prefetchMax)
}

// emptyHash is the BLAKE3 of no bytes, the hash of every empty file.
var emptyHash = Hash(nil)

// contentCheck says how streamContent proves the bytes it hands out.
type contentCheck int

const (
	// checkChunks: every chunk against its BLAKE3 id before fn sees it; the
	// file hash only where that is free (a file of one chunk or none, whose
	// hash is the chunk's id). Restore.
	checkChunks contentCheck = iota
	// checkChunksAndFile: every chunk before fn sees it, and the whole-file
	// BLAKE3 recomputed at the end, which proves the snapshot's chunk list
	// agrees with the file hash recorded at backup. cat.
	checkChunksAndFile
	// checkFile: the whole-file BLAKE3 only, for a caller that keeps nothing
	// fn sees until streamContent returned nil (verify). Bytes that hash to
	// the file's recorded BLAKE3 are the bytes read at backup, so each chunk
	// is the one its id names: one hash pass instead of two. On a mismatch
	// the file is read again with every chunk checked, so the error names
	// the damaged chunk and pack, as it would with checkChunksAndFile.
	checkFile
)

// streamContent calls fn with each chunk of file node n in order, with its
// offset. Chunks are loaded through pr and checked concurrently ahead of fn
// as mode says; the slice passed to fn is only valid during the call. The
// sizes must add up to the file's, so a caller gets a CorruptError rather
// than a success for any damaged content. (Chunk ids are plain BLAKE3; a
// keyed id would need the whole-file pass for checkChunks and could not use
// checkFile's shortcut from file to chunks as it stands.)
func (r *Repo) streamContent(ctx context.Context, pr *packReader, n *Node, mode contentCheck, locs []Location, fn func(data []byte, off int64) error) error {
	if mode != checkFile || len(n.Chunks) < 2 {
		return r.streamChunks(ctx, pr, n, locs, mode != checkChunks, true, fn)
	}
	return r.nameDamage(ctx, pr, n, locs, r.streamChunks(ctx, pr, n, locs, true, false, fn))
}

// nameDamage returns err, the outcome of proving file n by its whole-file
// hash alone, unless that hash did not match: then n is read again with
// every chunk checked, and the error names the damaged chunk and pack.
func (r *Repo) nameDamage(ctx context.Context, pr *packReader, n *Node, locs []Location, err error) error {
	var ce *CorruptError
	if errors.As(err, &ce) && ce.ID == n.Hash && ctx.Err() == nil {
		if cerr := r.streamChunks(ctx, pr, n, locs, true, true, func([]byte, int64) error { return nil }); cerr != nil {
			return cerr
		}
	}
	return err
}

// fileMismatch is the error for file n whose content does not hash to, or
// add up to, what the snapshot recorded.
func fileMismatch(n *Node) error {
	return &CorruptError{ID: n.Hash, Detail: fmt.Sprintf("file %s: content hash or size does not match the snapshot", DisplayName(n.Name))}
}

// lookupBatch is how many chunk locations streamChunks looks up in one
// index read, when its caller has not looked them up already.
const lookupBatch = 256

// chunkTask is a chunk for streamChunks' loaders: the i-th of the file, with
// its location, or the error looking it up.
type chunkTask struct {
	i   int
	c   ChunkRef
	loc Location
	err error
}

// streamChunks is streamContent: whole recomputes the file hash, chunks
// checks every chunk against its id before fn sees it. locs, when not nil,
// holds the location of each chunk (the caller looked them up); otherwise
// they are looked up lookupBatch at a time.
func (r *Repo) streamChunks(ctx context.Context, pr *packReader, n *Node, locs []Location, whole, chunks bool, fn func(data []byte, off int64) error) error {
	if n.Type != TypeFile && n.Type != TypeHardlink {
		return fmt.Errorf("%s is a %s, not a file", DisplayName(n.Name), n.Type)
	}
	if locs != nil && len(locs) != len(n.Chunks) {
		return fmt.Errorf("%s: %d chunk locations for %d chunks", DisplayName(n.Name), len(locs), len(n.Chunks))
	}
	var h *blake3.Hasher
	if whole && len(n.Chunks) > 1 {
		h = blake3.Get()
		defer blake3.Put(h)
	}
	off, err := r.streamRefs(ctx, pr, n.Chunks, locs, chunks, func(data []byte, off int64) error {
		if h != nil {
			h.Write(data)
		}
		return fn(data, off)
	})
	if err != nil {
		return err
	}
	sum := n.Hash
	switch {
	case h != nil:
		copy(sum[:], h.Sum(nil))
	case len(n.Chunks) == 1:
		sum = n.Chunks[0].ID
	case len(n.Chunks) == 0:
		sum = emptyHash
	}
	if sum != n.Hash || off != n.Size {
		return fileMismatch(n)
	}
	return nil
}

// streamRefs calls fn with each of the chunks refs in order, with its offset
// in the stream, and returns the stream's length; chunks and locs are as
// for streamChunks, whose loading it does (verify's proveFile streams the
// chunks of a file it must read, which may be a few of them).
//
// Several chunks are loaded by prefetch loaders, ahead of fn and in
// order: a dispatcher hands them the chunks once a slot is free (at most
// ahead chunks loaded and not yet consumed, see aheadFor), and chunk i comes
// back on ring[i%ahead], free by then since chunk i-ahead was consumed.
func (r *Repo) streamRefs(ctx context.Context, pr *packReader, refs []ChunkRef, locs []Location, chunks bool, fn func(data []byte, off int64) error) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	type loaded struct {
		buf  *[]byte // given back once data is consumed
		data []byte  // the chunk, in buf
		err  error
	}
	ahead := 1
	if len(refs) > 1 {
		ahead = aheadFor(refs)
	}
	ring := make([]chan loaded, ahead)
	for i := range ring {
		ring[i] = make(chan loaded, 1) // loaders never block, even when the consumer stops early
	}
	slots := make(chan struct{}, ahead)
	var wg sync.WaitGroup
	defer func() {
		cancel() // stop the loaders before waiting for them
		wg.Wait()
		for _, c := range ring { // buffers of chunks loaded but not consumed
			select {
			case l := <-c:
				if l.buf != nil {
					putBuf(l.buf)
				}
			default:
			}
		}
	}()
	if len(refs) > 1 {
		tasks := make(chan chunkTask)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(tasks)
			r.dispatchChunks(ctx, refs, locs, slots, tasks)
		}()
		for range min(prefetch, len(refs)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for t := range tasks {
					l := loaded{err: t.err}
					if l.err == nil {
						l.err = ctx.Err() // the consumer stopped: load nothing more
					}
					if l.err == nil {
						l.buf, l.data, l.err = r.loadChunkAt(pr, t.c, t.loc, chunks)
					}
					ring[t.i%ahead] <- l
				}
			}()
		}
	}
	var off int64
	for i, c := range refs {
		var l loaded
		switch {
		case len(refs) == 1 && locs != nil: // no goroutines for the common small file
			if l.err = ctx.Err(); l.err == nil {
				l.buf, l.data, l.err = r.loadChunkAt(pr, c, locs[0], chunks)
			}
		case len(refs) == 1:
			l.buf, l.data, l.err = r.loadChunk(ctx, pr, c, chunks)
		default:
			select {
			case l = <-ring[i%ahead]:
			case <-ctx.Done():
				return off, ctx.Err()
			}
			<-slots
		}
		if l.err != nil {
			return off, l.err
		}
		data := l.data
		err := fn(data, off)
		putBuf(l.buf)
		if err != nil {
			return off, err
		}
		off += int64(len(data))
	}
	return off, nil
}

// dispatchChunks hands the chunks of a file to streamChunks' loaders in
// order, each once a slot is free, with its location: from locs, or looked
// up lookupBatch at a time. It stops at the first failed index read (that
// chunk carries the error) or when ctx is done.
func (r *Repo) dispatchChunks(ctx context.Context, refs []ChunkRef, locs []Location, slots chan struct{}, tasks chan<- chunkTask) {
	send := func(t chunkTask) bool {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		if ctx.Err() != nil { // both were ready: select may pick either
			return false
		}
		select {
		case tasks <- t:
			return t.err == nil // the consumer stops at a chunk with an error
		case <-ctx.Done():
			return false
		}
	}
	if locs != nil {
		for i, c := range refs {
			if !send(chunkTask{i: i, c: c, loc: locs[i]}) {
				return
			}
		}
		return
	}
	batch := make([]chunkTask, min(lookupBatch, len(refs)))
	for start := 0; start < len(refs); start += len(batch) {
		todo := batch[:min(len(batch), len(refs)-start)]
		for k := range todo {
			todo[k] = chunkTask{i: start + k, c: refs[start+k]}
		}
		err := r.errIfNoIndex()
		if err == nil {
			err = r.idx.LookupEach(ctx, refs[start:start+len(todo)], func(k int, loc Location, err error) bool {
				todo[k].loc, todo[k].err = loc, lookupError(todo[k].c.ID, err)
				return true
			})
		}
		if err != nil {
			todo[0].err, todo = lookupError(todo[0].c.ID, err), todo[:1]
		}
		for _, t := range todo {
			if !send(t) {
				return
			}
		}
	}
}

// lookupError is the error reading a blob fails with when looking up its
// location failed with err (nil for nil).
func lookupError(id ID, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return &MissingError{ID: id, Detail: "no pack holds it (was a pack deleted? run `snapforge verify`)"}
	default:
		return fmt.Errorf("look up chunk %s: %w", id.Short(), err)
	}
}

// loadChunk loads chunk c into a pooled buffer, checked against its id
// when check is set, and returns the buffer and the chunk's bytes in it.
func (r *Repo) loadChunk(ctx context.Context, pr *packReader, c ChunkRef, check bool) (*[]byte, []byte, error) {
	buf := getBuf(BufferSize(int(c.Size)))
	data, err := r.fetchBlob(ctx, pr, c.ID, (*buf)[:0], check)
	return chunkLoaded(buf, data, c, err)
}

// loadChunkAt is loadChunk for a chunk whose location is known.
func (r *Repo) loadChunkAt(pr *packReader, c ChunkRef, loc Location, check bool) (*[]byte, []byte, error) {
	buf := getBuf(BufferSize(int(c.Size)))
	data, err := r.readBlob(pr, c.ID, loc, (*buf)[:0], check)
	return chunkLoaded(buf, data, c, err)
}

// chunkLoaded ends a load of chunk c into buf: data holds its plaintext,
// which must be as long as the tree says, and buf is given back on error.
// data may lie a little into buf (a direct read leaves it where the read
// put it) or, grown past it, in a new slice, which buf then takes: the
// caller uses data and gives buf back.
func chunkLoaded(buf *[]byte, data []byte, c ChunkRef, err error) (*[]byte, []byte, error) {
	if err == nil && len(data) != int(c.Size) {
		err = &CorruptError{ID: c.ID, Detail: "chunk size differs from the tree"}
	}
	if err != nil {
		putBuf(buf)
		return nil, nil, err
	}
	if !inBuf(*buf, data) {
		*buf = data
	}
	return buf, data, nil
}

// Within reports whether data lies in buf's memory (up to its capacity):
// a buffer handed to Load keeps its own size class when it is recycled
// even though the plaintext starts further in.
func Within(buf, data []byte) bool { return inBuf(buf, data) }

func inBuf(buf, data []byte) bool {
	if cap(buf) == 0 || cap(data) == 0 {
		return false
	}
	b := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	d := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	return d >= b && d+uintptr(cap(data)) <= b+uintptr(cap(buf))
}

// Change is one difference between two snapshots.
type Change struct {
	Kind    string // added, removed, changed
	Path    string // display form
	PathB64 string `json:",omitempty"`
	Type    string
	OldSize int64
	NewSize int64
}

// Diff compares two snapshots by their manifests' items.
func Diff(a, b *Manifest) []Change {
	old := map[string]Item{}
	for _, it := range a.Items {
		old[it.RawPath()] = it
	}
	var out []Change
	seen := map[string]bool{}
	for _, it := range b.Items {
		p := it.RawPath()
		seen[p] = true
		o, ok := old[p]
		switch {
		case !ok:
			out = append(out, Change{Kind: "added", Path: it.Path, PathB64: it.PathB64, Type: it.Type, NewSize: it.Size})
		case o.Type != it.Type || o.Size != it.Size || o.Blake3 != it.Blake3 || o.RawTarget() != it.RawTarget():
			out = append(out, Change{Kind: "changed", Path: it.Path, PathB64: it.PathB64, Type: it.Type, OldSize: o.Size, NewSize: it.Size})
		}
	}
	for _, it := range a.Items {
		if !seen[it.RawPath()] {
			out = append(out, Change{Kind: "removed", Path: it.Path, PathB64: it.PathB64, Type: it.Type, OldSize: it.Size})
		}
	}
	return out
}
