package snapshot_test

import (
	"fmt"
	"testing"

	"snapforge/snapshot"
)

// benchTree is a directory of n files with two chunks each.
func benchTree(n int) *snapshot.Tree {
	t := &snapshot.Tree{}
	for i := 0; i < n; i++ {
		t.Nodes = append(t.Nodes, &snapshot.Node{
			Name: fmt.Sprintf("file-%07d.json", i), Type: snapshot.TypeFile, Mode: 0o644,
			MTime: int64(i) * 1e9, CTime: int64(i) * 1e9, Inode: uint64(i), Size: 2 << 20,
			Chunks: []snapshot.ChunkRef{{ID: snapshot.Hash([]byte{byte(i)}), Size: 1 << 20}, {ID: snapshot.Hash([]byte{byte(i), 1}), Size: 1 << 20}},
			Hash:   snapshot.Hash([]byte(fmt.Sprint(i))),
		})
	}
	return t
}

func BenchmarkTreeEncode(b *testing.B) {
	t := benchTree(10000)
	enc, _ := t.Encode()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTreeDecode(b *testing.B) {
	enc, err := benchTree(10000).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := snapshot.DecodeTree(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTreeRoundTrip checks Encode/DecodeTree on the benchmark's tree, and
// that decoding rejects the forbidden names of FAULTS E1.
func TestTreeRoundTrip(t *testing.T) {
	tr := benchTree(100)
	enc, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := snapshot.DecodeTree(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != 100 || got.Nodes[42].Name != tr.Nodes[42].Name || got.Nodes[42].Chunks[1] != tr.Nodes[42].Chunks[1] || got.Nodes[42].Hash != tr.Nodes[42].Hash {
		t.Fatalf("round trip changed the tree: %+v", got.Nodes[42])
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00b"} {
		bt := &snapshot.Tree{Nodes: []*snapshot.Node{{Name: "x", Type: snapshot.TypeFile}}}
		enc, err := bt.Encode()
		if err != nil {
			t.Fatal(err)
		}
		// Splice the bad name in place of "x": magic, count, then len+name.
		forged := append(append(append([]byte{}, enc[:5]...), byte(len(bad))), bad...)
		forged = append(forged, enc[7:]...)
		if _, err := snapshot.DecodeTree(forged); err == nil {
			t.Errorf("DecodeTree accepted the name %q (FAULTS E1)", bad)
		}
	}
}

// FuzzDecodeTree: the decoder never panics on arbitrary bytes.
func FuzzDecodeTree(f *testing.F) {
	enc, _ := benchTree(3).Encode()
	f.Add(enc)
	f.Add([]byte("SFT1\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := snapshot.DecodeTree(data)
		if err == nil {
			if _, err := tr.Encode(); err != nil {
				t.Fatalf("a decoded tree does not encode: %v", err)
			}
		}
	})
}
