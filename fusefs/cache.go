package fusefs

import (
	"container/list"
	"context"
	"sync"

	"snapforge/snapshot"
)

// chunkCache is the mount's one shared, byte-bounded cache of decoded
// chunks. The kernel asks for 4 KiB to 1 MiB at a time while a chunk is
// about 1 MiB (and a small file's whole content), so without it a chunk
// would be read, decompressed and hash-checked once per request. Loads of
// the same chunk are coalesced: concurrent readers wait for the first.
// Only checked chunks enter the cache; failures are not kept, so a read
// after a repair sees the repaired data.
type chunkCache struct {
	cr  *snapshot.ChunkReader
	max int64

	mu   sync.Mutex
	used int64
	m    map[snapshot.ID]*centry
	lru  list.List // of *centry, most recent first; only loaded entries

	prefetchSlots chan struct{} // bounds background loads
}

type centry struct {
	id    snapshot.ID
	ready chan struct{} // closed when data or err is set
	data  []byte
	err   error
	elem  *list.Element
}

func newChunkCache(cr *snapshot.ChunkReader, max int64) *chunkCache {
	return &chunkCache{cr: cr, max: max, m: map[snapshot.ID]*centry{}, prefetchSlots: make(chan struct{}, 2)}
}

// get returns chunk ref's checked plaintext. The slice is shared and must
// not be modified.
func (c *chunkCache) get(ctx context.Context, ref snapshot.ChunkRef) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.m[ref.ID]
	if ok {
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err != nil {
			return nil, e.err
		}
		return e.data, nil
	}
	e = &centry{id: ref.ID, ready: make(chan struct{})}
	c.m[ref.ID] = e
	c.mu.Unlock()

	// The load is not tied to one reader's context: others may be waiting
	// for it, and a chunk half-loaded is worth finishing.
	data, err := c.cr.Load(context.WithoutCancel(ctx), ref, make([]byte, 0, ref.Size))
	c.mu.Lock()
	if err != nil {
		e.err = err
		delete(c.m, ref.ID)
	} else {
		e.data = data
		e.elem = c.lru.PushFront(e)
		c.used += int64(cap(data))
		for c.used > c.max && c.lru.Len() > 1 {
			old := c.lru.Remove(c.lru.Back()).(*centry)
			delete(c.m, old.id)
			c.used -= int64(cap(old.data))
		}
	}
	c.mu.Unlock()
	close(e.ready)
	return data, err
}

// prefetch loads ref in the background if it is not cached and a slot is
// free; a sequential reader then finds the next chunk decoded.
func (c *chunkCache) prefetch(ref snapshot.ChunkRef) {
	c.mu.Lock()
	_, ok := c.m[ref.ID]
	c.mu.Unlock()
	if ok {
		return
	}
	select {
	case c.prefetchSlots <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-c.prefetchSlots }()
		c.get(context.Background(), ref)
	}()
}

// stats reports the bytes and chunks held.
func (c *chunkCache) stats() (bytes int64, chunks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.lru.Len()
}
