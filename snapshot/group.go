package snapshot

import (
	"errors"
	"fmt"
	"sync"

	"snapforge/snapshot/pack"
)

// Small data blobs — a database's pages, small files — are stored in
// groups: up to groupTarget bytes of them compressed as one zstd frame
// (pack.CodecGroup), which compresses them about a fifth better than a
// frame each (the benchmark's 436 MB of blobs under 256 KiB: 192 MB stored
// one by one, 156 MB grouped). A blob stays addressable on its own: its
// index entry names the frame and its place in the frame's plaintext.
// Deduplication is unchanged (per blob), and a reader decodes a frame once
// for all the members it wants (groupCache).
const (
	groupMax     = 256 << 10 // blobs below this go into groups (the chunker's minimum: whole small files)
	groupTarget  = 1 << 20   // a group's plaintext is at most this, and closed when the next blob would not fit
	groupMembers = 4096      // and at most this many blobs: a pack's trailer lists each
)

// grouper collects the small blobs of one file reader until a group is full.
type grouper struct {
	members []pack.Blob
	buf     *[]byte    // the members' plaintexts, back to back
	pick    *levelPick // the stream of the group's members (nil: the default effort)
}

// add appends blob id's data (shorter than groupMax) to the group; when
// that would overflow the group, the group so far is returned as a job
// first and data starts the next one. pick is the stream data comes from:
// a group is compressed as its members' stream chooses, and at the default
// effort when they come from several (a large file's last pages and the
// small files after it: a file's choice says nothing of the others').
func (g *grouper) add(id ID, data []byte, pick *levelPick) (j blobJob, full bool) {
	if g.buf != nil && (len(*g.buf)+len(data) > groupTarget || len(g.members) == groupMembers) {
		j, full = g.take(), true
	}
	if g.buf == nil {
		g.buf = getBuf(groupTarget)
		g.pick = pick
	} else if g.pick != pick {
		g.pick = nil
	}
	*g.buf = append(*g.buf, data...)
	g.members = append(g.members, pack.Blob{ID: id, Kind: KindData, Raw: uint32(len(data))})
	return j, full
}

// take returns the group collected so far as a job (a lone member as a
// blob of its own), and starts a new one.
func (g *grouper) take() blobJob {
	j := blobJob{kind: KindData, raw: *g.buf, buf: g.buf, members: g.members, pick: g.pick}
	if len(g.members) == 1 {
		j.id, j.members = g.members[0].ID, nil
	}
	g.buf, g.members, g.pick = nil, nil, nil
	return j
}

// groupCache keeps the plaintexts of the last few group frames a packReader
// decoded, so the members of a group read one after another (a database
// restored page by page, a folder of small files) cost one read and one
// decode of the frame, not one each. Concurrent loads of one frame are
// coalesced. Failed loads are not kept.
type groupCache struct {
	mu      sync.Mutex
	max     int
	entries []*groupEntry // most recently used last
}

type groupKey struct {
	pack   ID
	off    uint64
	stored uint32
	raw    uint32
}

type groupEntry struct {
	key   groupKey
	ready chan struct{} // closed once buf or err is set
	buf   *[]byte
	err   error
	refs  int  // readers copying out of buf (guarded by groupCache.mu)
	gone  bool // evicted: buf is recycled when refs reach 0
}

// groupsKept is how many decoded frames a packReader keeps: enough for the
// concurrent readers of a restore to each find theirs. A mount keeps more
// (ChunkReader.KeepGroups).
const groupsKept = 4

// keep sets how many frames c keeps (at least one), dropping the least
// recently used beyond.
func (c *groupCache) keep(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max(1, n)
	c.evict()
}

// bytes is the most c keeps of decoded frames: GroupFrameBytes each.
func (c *groupCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.max) * GroupFrameBytes()
}

// idle is what c is allowed to keep of decoded frames but holds no frame
// in now (its frames, loaded or loading, count GroupFrameBytes each).
func (c *groupCache) idle() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(max(c.max-len(c.entries), 0)) * GroupFrameBytes()
}

// get returns the entry for key, loading it with load when it is not
// there; release it when done with its bytes.
func (c *groupCache) get(key groupKey, load func() (*[]byte, error)) (*groupEntry, error) {
	c.mu.Lock()
	for i, e := range c.entries {
		if e.key == key {
			e.refs++
			copy(c.entries[i:], c.entries[i+1:])
			c.entries[len(c.entries)-1] = e
			c.mu.Unlock()
			<-e.ready
			if e.err != nil {
				c.release(e)
				return nil, e.err
			}
			return e, nil
		}
	}
	e := &groupEntry{key: key, ready: make(chan struct{}), refs: 1}
	c.entries = append(c.entries, e)
	c.evict()
	c.mu.Unlock()

	e.buf, e.err = load()
	close(e.ready)
	if e.err != nil {
		c.mu.Lock()
		c.drop(e)
		c.mu.Unlock()
		c.release(e)
		return nil, e.err
	}
	return e, nil
}

// release ends one reader's use of e.
func (c *groupCache) release(e *groupEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.gone {
		putBuf(e.buf)
		e.buf = nil
	}
}

// drop removes e from the cache (c.mu held).
func (c *groupCache) drop(e *groupEntry) {
	for i, x := range c.entries {
		if x == e {
			c.entries = append(c.entries[:i], c.entries[i+1:]...)
			break
		}
	}
	e.gone = true
	if e.refs == 0 {
		putBuf(e.buf)
		e.buf = nil
	}
}

// evict drops the least recently used entries beyond max (c.mu held).
func (c *groupCache) evict() {
	for len(c.entries) > c.max {
		c.drop(c.entries[0])
	}
}

// trim drops the frames no reader is copying out of.
func (c *groupCache) trim() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < len(c.entries); {
		e := c.entries[i]
		select {
		case <-e.ready:
		default: // being loaded: its reader waits for it
			i++
			continue
		}
		if e.refs > 0 {
			i++
			continue
		}
		c.drop(e)
	}
}

// clear drops every entry.
func (c *groupCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.entries) > 0 {
		c.drop(c.entries[0])
	}
}

// readGrouped reads group member id at loc into buf through op and pr's
// group cache.
func (r *Repo) readGrouped(pr *packReader, op *openPack, id ID, loc Location, buf []byte, check bool) ([]byte, error) {
	if loc.GroupRaw > pack.MaxBlobSize || uint64(loc.GroupOff)+uint64(loc.Raw) > uint64(loc.GroupRaw) {
		return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: fmt.Sprintf("group member [%d, +%d) outside its group of %d bytes", loc.GroupOff, loc.Raw, loc.GroupRaw)}
	}
	key := groupKey{pack: loc.Pack, off: loc.Offset, stored: loc.Stored, raw: loc.GroupRaw}
	e, err := pr.groups.get(key, func() (*[]byte, error) {
		stored, done, err := op.readStored(int64(loc.Offset), int(loc.Stored))
		defer done()
		if err != nil {
			return nil, packReadError(id, loc, err)
		}
		bp := getBuf(int(loc.GroupRaw) + pack.DecodeSlack)
		out, err := pack.Decode((*bp)[:0], stored, pack.CodecGroup, loc.GroupRaw)
		if err != nil {
			putBuf(bp)
			return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: "its group's frame: " + err.Error()}
		}
		*bp = out
		return bp, nil
	})
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) && ce.ID != id { // another member's load failed: name this one
			return nil, &CorruptError{ID: id, Pack: ce.Pack, Detail: ce.Detail}
		}
		var me *MissingError
		if errors.As(err, &me) && me.ID != id {
			return nil, &MissingError{ID: id, Pack: me.Pack, Detail: me.Detail}
		}
		return nil, err
	}
	out := append(buf[:0], (*e.buf)[loc.GroupOff:loc.GroupOff+loc.Raw]...)
	pr.groups.release(e)
	if check && Hash(out) != id {
		return nil, &CorruptError{ID: id, Pack: loc.Pack, Detail: "content does not match its hash"}
	}
	return out, nil
}
