package snapshot_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeebo/blake3"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// TestChunkBuffersHandedOn: a backup reads each content-defined chunk into
// a pooled buffer and hands a new chunk's buffer on to the compressors and
// the pack writer without a copy, reusing it for the next chunk when the
// chunk was a duplicate or went into a group. Every way a buffer can go is
// here: chunks that outgrow the first buffer (a zero run cut at Max), a
// repeated chunk within a file and a whole file repeated (not taken),
// small files (grouped, copied), a single chunk above the group bound, and
// two readers at once. Each stored chunk's id must be the BLAKE3 of the
// file's bytes at its place, and the restored files must equal the source
// byte for byte: a buffer reused while still in flight would store other
// bytes under the id.
func TestChunkBuffersHandedOn(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	random := indextest.RandomBytes(41, 6<<20)
	zeros := make([]byte, 9<<20)
	files := map[string][]byte{
		"a":          random,
		"b":          bytes.Join([][]byte{random[:2<<20], zeros, random[:2<<20], indextest.RandomBytes(42, 700<<10)}, nil),
		"copy-of-a":  random,
		"one-chunk":  indextest.RandomBytes(43, 300<<10),
		"big/second": indextest.RandomBytes(44, 5<<20),
	}
	for i := range 20 {
		files[fmt.Sprintf("small/%02d", i)] = indextest.RandomBytes(uint64(100+i), 1000+i*97)
	}
	for rel, data := range files {
		indextest.WriteFile(t, filepath.Join(src, rel), data)
	}
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src})

	nodes := rtWalk(t, r, m)
	for rel, data := range files {
		n := nodes[rel]
		if n == nil {
			t.Fatalf("%s: not in the snapshot", rel)
		}
		off := 0
		for i, c := range n.Chunks {
			end := off + int(c.Size)
			if end > len(data) {
				t.Fatalf("%s: chunk %d ends at %d, the file has %d bytes", rel, i, end, len(data))
			}
			if snapshot.ID(blake3.Sum256(data[off:end])) != c.ID {
				t.Fatalf("%s: chunk %d [%d:%d) has id %s, not the BLAKE3 of those bytes", rel, i, off, end, c.ID.Short())
			}
			off = end
		}
		if off != len(data) {
			t.Fatalf("%s: chunks cover %d bytes of %d", rel, off, len(data))
		}
		if n.Hash != snapshot.ID(blake3.Sum256(data)) {
			t.Fatalf("%s: whole-file hash differs from the content's", rel)
		}
	}
	if len(nodes["b"].Chunks) < 4 {
		t.Fatalf("b: %d chunks; the zero run should be cut at Max", len(nodes["b"].Chunks))
	}

	dst := t.TempDir()
	rtRestore(t, r, m, snapshot.RestoreOptions{Target: dst})
	for rel, data := range files {
		got, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: restored bytes differ from the source", rel)
		}
	}
}
