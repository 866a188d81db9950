package snapshot

import (
	"testing"
)

// TestKeepGroups: readers moving along a file together touch several
// frames at once. With fewer frames kept than they touch, the cache drops
// each frame before its last member is read and decodes it again (the
// mount's database reads decoded 3.5 times its bytes); with enough kept,
// each frame is decoded once.
func TestKeepGroups(t *testing.T) {
	const frames, rounds = 8, 3
	decodes := func(c *ChunkReader) int {
		n := 0
		g := &c.pr.groups
		for range rounds { // members of 8 frames taken in turn, as 8 readers in step would
			for f := range frames {
				e, err := g.get(groupKey{off: uint64(f)}, func() (*[]byte, error) {
					n++
					b := make([]byte, 16)
					return &b, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				g.release(e)
			}
		}
		g.clear()
		return n
	}
	cr := &ChunkReader{pr: &packReader{groups: groupCache{max: groupsKept}}}
	if got, want := decodes(cr), frames*rounds; got != want {
		t.Fatalf("%d frames kept: %d decodes, want %d (each one again)", groupsKept, got, want)
	}
	cr.KeepGroups(frames)
	if got := decodes(cr); got != frames {
		t.Fatalf("%d frames kept: %d decodes, want %d (each once)", frames, got, frames)
	}
	// A frame's buffer is the pool's size class for its largest plaintext.
	frame := GroupFrameBytes()
	if b := getBuf(groupTarget + DecodeSlack); int64(cap(*b)) != frame || frame < groupTarget+DecodeSlack {
		t.Fatalf("GroupFrameBytes = %d; a frame's buffer holds %d", frame, cap(*b))
	}
	if got := cr.GroupCacheBytes(); got != frames*frame {
		t.Fatalf("GroupCacheBytes = %d, want %d", got, frames*frame)
	}
	cr.KeepGroups(0)
	if got := cr.GroupCacheBytes(); got != frame {
		t.Fatalf("KeepGroups(0): GroupCacheBytes = %d, want one frame's %d", got, frame)
	}
}
