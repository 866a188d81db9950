package fusefs

import (
	"container/list"
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"snapforge/snapshot"
)

// chunkCache is the mount's one shared, byte-bounded cache of decoded
// chunks. The kernel asks for 4 KiB to 1 MiB at a time while a chunk is
// about 1 MiB (and a small file's whole content), so without it a chunk
// would be read, decompressed and hash-checked once per request. Loads of
// the same chunk are coalesced: concurrent readers wait for the first.
// Only checked chunks enter the cache; failures are not kept, so a read
// after a repair sees the repaired data.
//
// Buffers are recycled: a reader holds a reference while it copies out,
// and an evicted chunk's buffer goes back to the pool once the last reader
// is done, so reading through the mount allocates almost nothing.
type chunkCache struct {
	cr  *snapshot.ChunkReader
	max int64
	// lend, when set, is what the cache may hold beyond max for now: the
	// part of the chunk reader's budget for group frames that no frame
	// holds (ChunkReader.GroupCacheIdle).
	lend func() int64

	mu   sync.Mutex
	used int64
	m    map[snapshot.ID]*centry
	lru  list.List // of *centry, most recent first; only loaded entries

	prefetchSlots chan struct{} // bounds background loads ahead in a file
	siblingSlots  chan struct{} // bounds background loads of the next files
	closed        bool          // no new background loads (guarded by mu)
	free          []*[]byte     // recycled buffers, kept across garbage collections (a sync.Pool is emptied by each)
	freeBytes     int64
	bgLoads       sync.WaitGroup
	life          *gate // loads enter it; FS.Close closes it first

	trees       []snapshot.ID // directory trees to load ahead, next last (guarded by mu)
	treeWorkers int           // goroutines loading them (guarded by mu)
	treesAhead  atomic.Int64  // trees they loaded
}

type centry struct {
	id     snapshot.ID
	ready  chan struct{} // closed when data or err is set
	buf    *[]byte       // the buffer holding data, recycled when the entry goes
	data   []byte        // the checked plaintext, within *buf (not always at its start)
	err    error
	elem   *list.Element
	refs   int  // readers holding buf (guarded by chunkCache.mu)
	gone   bool // evicted or failed: buf is recycled when refs reach 0
	served int  // bytes of data answered to reads (guarded by chunkCache.mu)
}

func newChunkCache(cr *snapshot.ChunkReader, max int64) *chunkCache {
	return &chunkCache{cr: cr, max: max, m: map[snapshot.ID]*centry{},
		prefetchSlots: make(chan struct{}, 3), siblingSlots: make(chan struct{}, 3), life: newGate()}
}

// get returns chunk ref's checked plaintext and the function that releases
// it; the slice must not be used after release nor modified.
func (c *chunkCache) get(ctx context.Context, ref snapshot.ChunkRef) ([]byte, func(), error) {
	c.mu.Lock()
	e, ok := c.m[ref.ID]
	if ok {
		e.refs++
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			c.release(e)
			return nil, nil, ctx.Err()
		}
		if e.err != nil {
			c.release(e)
			return nil, nil, e.err
		}
		return e.data, func() { c.release(e) }, nil
	}
	e = &centry{id: ref.ID, ready: make(chan struct{}), refs: 1}
	c.m[ref.ID] = e
	c.mu.Unlock()

	// The load is not tied to one reader's context: others may be waiting
	// for it, and a chunk half-loaded is worth finishing.
	c.mu.Lock()
	buf := c.takeLocked(min(snapshot.BufferSize(int(ref.Size)), maxPrealloc))
	c.mu.Unlock()
	var data []byte
	err := errClosed
	if c.life.enter() {
		data, err = c.cr.Load(context.WithoutCancel(ctx), ref, (*buf)[:0])
		c.life.leave()
	}
	c.mu.Lock()
	if err != nil {
		e.err, e.gone = err, true
		delete(c.m, ref.ID)
		c.recycleLocked(buf)
	} else {
		if !snapshot.Within(*buf, data) {
			*buf = data // grown past the buffer taken: keep the larger one
		}
		e.buf, e.data = buf, data
		e.elem = c.lru.PushFront(e)
		c.used += int64(cap(*buf))
		// Evicted first: chunks read in full (spent), then the least
		// recently used. Never a chunk a reader holds: its buffer stays
		// until released anyway, and dropping it from the map only made the
		// next request for its other bytes load it again. The kernel keeps
		// up to about ten 1 MiB requests in flight on a sequential read
		// (two 4 MiB read-ahead windows), each touching two chunks, which
		// with the loads ahead outgrew the budget: reading the seed-5
		// dataset's models loaded their 901 chunks 1,262 times, its logs'
		// 193 chunks 286 times; 1,104 times for the models with spent and
		// held chunks kept, 947 with the group frames' idle room lent too.
		limit := c.max
		if c.lend != nil {
			if c.used > limit && len(data) >= largeFit {
				// A large chunk is never in a group: its reader has no
				// use for the frames kept, which may lend their room.
				c.cr.TrimGroups()
			}
			limit += c.lend()
		}
		for el := c.lru.Back(); c.used > limit && el != nil && c.lru.Len() > 1; {
			old := el.Value.(*centry)
			el = el.Prev()
			if old.refs > 0 {
				continue
			}
			c.lru.Remove(old.elem)
			old.elem, old.gone = nil, true
			delete(c.m, old.id)
			c.used -= int64(cap(*old.buf))
			if old.refs == 0 {
				c.recycleLocked(old.buf)
				old.buf, old.data = nil, nil
			}
		}
	}
	c.mu.Unlock()
	close(e.ready)
	if err != nil {
		c.release(e)
		return nil, nil, err
	}
	return data, func() { c.release(e) }, nil
}

// spent counts n bytes of chunk id as answered to a read; once all of it
// was, the chunk goes to the back of the eviction order, to be dropped
// before anything not yet read. The kernel keeps what it was answered in its
// page cache, so a sequential reader does not ask for those bytes again;
// what the cache must hold is what was loaded ahead and not yet read.
// Counting bytes, not "a read reached the chunk's end", because the kernel's
// requests in flight are answered out of order: a 1 MiB request covers the
// end of one content-defined chunk and the start of the next, and the later
// one is often answered first.
func (c *chunkCache) spent(id snapshot.ID, n int) {
	c.mu.Lock()
	if e, ok := c.m[id]; ok && e.elem != nil {
		if e.served += n; e.served >= len(e.data) {
			c.lru.MoveToBack(e.elem)
		}
	}
	c.mu.Unlock()
}

// release drops a reader's reference to e.
func (c *chunkCache) release(e *centry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.gone && e.buf != nil {
		c.recycleLocked(e.buf)
		e.buf, e.data = nil, nil
	}
}

// maxPrealloc bounds the buffer taken before a load (the largest pooled
// size). The size asked for comes from the tree, where a crafted entry may
// claim up to 4 GiB; the load checks the real length against the pack's
// limits first and grows the buffer for a larger chunk.
const maxPrealloc = 4<<20 + 64<<10

// maxFree bounds the recycled buffers kept for the next loads.
const maxFree = 8 << 20

// takeLocked returns a buffer for n bytes: the smallest recycled one that
// fits, else one from the shared pools. A buffer for a small chunk (a
// database page, a small file) is at most about twice its size, so a few
// such chunks never hold the cache's budget in large buffers; one for a
// large chunk may be any larger recycled buffer. Content-defined chunks of
// a large file vary from 256 KiB to 4 MiB: taking the most recent buffer
// within twice the size missed one load in five while a big file was read
// after the small files of a tree (96 of 535, 115 MB allocated, each
// allocation bringing the next collection nearer under the mount's memory
// limit); the smallest that fits, 60.
func (c *chunkCache) takeLocked(n int) *[]byte {
	best := -1
	for i, b := range c.free {
		cp := cap(*b)
		if cp < n || (n < largeFit && cp > 2*n+64<<10) {
			continue
		}
		if best < 0 || cp < cap(*c.free[best]) {
			best = i
		}
	}
	if best >= 0 {
		b := c.free[best]
		c.free = slices.Delete(c.free, best, best+1)
		c.freeBytes -= int64(cap(*b))
		return b
	}
	return snapshot.GetBuffer(n)
}

// largeFit is the size from which a load takes any recycled buffer that
// fits (the chunker's smallest content-defined chunk).
const largeFit = 256 << 10

// recycleLocked keeps b for a later load. The list keeps the buffers
// released last: when it is full the oldest go back to the shared pools.
// The sizes in use move with what is read (16 KiB database pages, then
// 1 MiB model chunks); a list that kept its first buffers held small ones
// while every large chunk was allocated anew, and the collector, held to
// the mount's memory limit, ran all the time (issue 4: a quarter of the
// mount's CPU when reading every file).
func (c *chunkCache) recycleLocked(b *[]byte) {
	if int64(cap(*b)) > maxFree {
		snapshot.PutBuffer(b)
		return
	}
	*b = (*b)[:0]
	c.free = append(c.free, b)
	c.freeBytes += int64(cap(*b))
	for c.freeBytes > maxFree {
		old := c.free[0]
		c.free[0] = nil
		c.free = c.free[1:]
		c.freeBytes -= int64(cap(*old))
		snapshot.PutBuffer(old)
	}
}

// prefetch loads the chunks of run in order in one background goroutine,
// skipping those cached or being loaded, if a slot is free; a sequential
// reader then finds the next chunks decoded. It reports false when no slot
// was free (the reader's next request tries again).
func (c *chunkCache) prefetch(run []snapshot.ChunkRef) bool {
	return c.background(run, c.prefetchSlots)
}

// prefetchSibling is prefetch of one chunk for the next files of a
// directory.
func (c *chunkCache) prefetchSibling(ref snapshot.ChunkRef) {
	c.background([]snapshot.ChunkRef{ref}, c.siblingSlots)
}

func (c *chunkCache) background(run []snapshot.ChunkRef, slots chan struct{}) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	for len(run) > 0 {
		if _, ok := c.m[run[0].ID]; !ok {
			break
		}
		run = run[1:]
	}
	if len(run) == 0 {
		c.mu.Unlock()
		return true
	}
	select {
	case slots <- struct{}{}:
	default:
		c.mu.Unlock()
		return false
	}
	c.bgLoads.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.bgLoads.Done()
		defer func() { <-slots }()
		for _, ref := range run {
			c.mu.Lock()
			_, ok := c.m[ref.ID]
			closed := c.closed
			c.mu.Unlock()
			if closed {
				return
			}
			if ok {
				continue
			}
			if _, release, err := c.get(context.Background(), ref); err == nil {
				release()
			}
		}
	}()
	return true
}

// Trees loaded ahead: a listing of a directory queues its subdirectories'
// trees, so a walk (ls -lR, find, a file manager opening folders) finds
// them decoded instead of waiting for each cold pack read in turn.
const (
	treeQueueMax = 512 // ids queued; the oldest are dropped beyond
	treeWorkers  = 2
)

// prefetchTrees queues ids (a directory's subdirectories, in order) ahead
// of those queued before: a walk descends into the directory it just
// listed before it moves on to that directory's siblings. The queue is a
// stack, next on top: ids go on in reverse order, and the oldest are
// dropped beyond treeQueueMax.
func (c *chunkCache) prefetchTrees(ids []snapshot.ID) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for i := len(ids) - 1; i >= 0; i-- {
		c.trees = append(c.trees, ids[i])
	}
	if over := len(c.trees) - treeQueueMax; over > 0 {
		c.trees = slices.Delete(c.trees, 0, over)
	}
	for c.treeWorkers < treeWorkers && c.treeWorkers < len(c.trees) {
		c.treeWorkers++
		c.bgLoads.Add(1)
		go c.treeWorker()
	}
}

// treeWorker loads queued trees into the repository's tree cache until the
// queue is empty (large ones are skipped: see snapshot.PrefetchTree). A
// failed load is left to the request that needs the tree, which reports it.
func (c *chunkCache) treeWorker() {
	defer c.bgLoads.Done()
	for {
		c.mu.Lock()
		if c.closed || len(c.trees) == 0 {
			c.treeWorkers--
			c.mu.Unlock()
			return
		}
		id := c.trees[len(c.trees)-1]
		c.trees = c.trees[:len(c.trees)-1]
		c.mu.Unlock()
		if c.life.enter() {
			if c.cr.PrefetchTree(context.Background(), id) {
				c.treesAhead.Add(1)
			}
			c.life.leave()
		}
	}
}

// close stops background loads and waits for those running, so nothing
// reads the repository after the file system is closed.
func (c *chunkCache) close() {
	c.life.close()
	c.mu.Lock()
	c.closed = true
	c.trees = nil
	c.mu.Unlock()
	c.bgLoads.Wait()
}

// stats reports the bytes and chunks held.
func (c *chunkCache) stats() (bytes int64, chunks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.lru.Len()
}
