package fusefs

import (
	"encoding/binary"
	"sync"
	"unsafe"

	"github.com/zeebo/blake3"
)

// Inode numbers are derived from what a node is, not from the order in
// which it was met, so they are the same for the life of the mount and
// across remounts: the BLAKE3 of a key (view, snapshot id, raw path) gives
// 64 bits for the number and 64 more to tell two keys apart. The numbers of
// the nodes the kernel knows are kept in a table, so two different keys can
// never share a number: on the (2^-64 per pair) chance that they would, the
// later one moves to the next free number derived from its key. Hard links
// and the same file seen through several views share one key, hence one
// inode, which is what makes them hard links.
type inoTable struct {
	mu   sync.Mutex
	live map[uint64]uint64 // number -> check bits of its key
}

func newInoTable() *inoTable { return &inoTable{live: map[uint64]uint64{}} }

// keyHash returns the number and check bits of key; 0 and 1 (reserved by
// FUSE and the root) and ^0 are never returned.
func keyHash(key string) (ino, check uint64) {
	// The key's bytes as they are: Sum256 only reads them (a copy was an
	// allocation per name, twice for every entry of a listing).
	sum := blake3.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
	ino = binary.LittleEndian.Uint64(sum[:8])
	check = binary.LittleEndian.Uint64(sum[8:16])
	if ino < 2 || ino == ^uint64(0) {
		ino = 2 + ino&0xffff
	}
	return ino, check
}

// slotLocked returns the number key has, or would get: its hash, or the
// next number derived from it that no other live key holds. t.mu is held.
func (t *inoTable) slotLocked(key string) (ino, check uint64) {
	ino, check = keyHash(key)
	for {
		if c, ok := t.live[ino]; !ok || c == check {
			return ino, check
		}
		ino = nextIno(ino)
	}
}

// peek returns key's number without reserving it (directory listings; the
// number of a node the kernel looks up comes from acquire).
func (t *inoTable) peek(key string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	ino, _ := t.slotLocked(key)
	return ino
}

// acquire returns key's number and keeps it for key until release. Every
// node of one key is one inode for go-fuse (it keeps one node per number),
// so a number needs no count of holders.
func (t *inoTable) acquire(key string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	ino, check := t.slotLocked(key)
	t.live[ino] = check
	return ino
}

// release frees ino when the kernel has forgotten its node.
func (t *inoTable) release(ino uint64) {
	t.mu.Lock()
	delete(t.live, ino)
	t.mu.Unlock()
}

func (t *inoTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

func nextIno(ino uint64) uint64 {
	ino++
	if ino < 2 || ino == ^uint64(0) {
		ino = 2
	}
	return ino
}
