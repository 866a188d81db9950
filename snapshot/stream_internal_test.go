package snapshot

import "testing"

// TestAheadFor: a file of small chunks is loaded further ahead, up to the
// bytes prefetch chunks of the largest size would hold and prefetchMax
// chunks; its largest chunk bounds the bytes.
func TestAheadFor(t *testing.T) {
	refs := func(sizes ...uint32) []ChunkRef {
		var out []ChunkRef
		for _, s := range sizes {
			out = append(out, ChunkRef{Size: s})
		}
		return out
	}
	for _, c := range []struct {
		name  string
		sizes []uint32
		want  int
	}{
		{"database pages", []uint32{16 << 10, 16 << 10, 9}, prefetchMax},
		{"256 KiB", []uint32{256 << 10, 1000}, 48},
		{"1 MiB chunks", []uint32{1 << 20, 900 << 10}, 12},
		{"maximum chunks", []uint32{4 << 20, 4 << 20}, prefetch},
		{"one large among small", []uint32{16 << 10, 8 << 20, 16 << 10}, prefetch},
		{"empty chunks", []uint32{0, 0}, prefetchMax},
	} {
		got := aheadFor(refs(c.sizes...))
		if got != c.want {
			t.Errorf("%s: %d ahead, want %d", c.name, got, c.want)
		}
		var largest uint32
		for _, s := range c.sizes {
			largest = max(largest, s)
		}
		if got > prefetch && int64(got)*int64(largest) > prefetchBytes {
			t.Errorf("%s: %d chunks of up to %d bytes ahead, above %d bytes", c.name, got, largest, prefetchBytes)
		}
	}
}
