package snapshot_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/chunker"
)

// TestVerifyReusesSpans checks verify's proof of a changed file from the
// spans it proved in an earlier version (spans.go): a database with one
// page rewritten and ten appended, and a model file with 100 bytes changed
// in place, are proven with only the chunks that cover changed spans read,
// and the hash that comes out is right (verify passes). Then damage: a
// chunk both versions share is reported in both snapshots (a span whose
// file failed is not remembered), and a chunk only the new version has is
// reported in the new snapshot only, by file and pack.
func TestVerifyReusesSpans(t *testing.T) {
	const page = chunker.DefaultSQLiteChunk
	r, repo := indextest.NewRepo(t, fltLaterClock)
	db1 := pagedFile(300)
	model1 := make([]byte, 6<<20+777)
	rand.NewChaCha8([32]byte{9}).Read(model1)
	src := fltSource(t, map[string][]byte{"app.db": db1, "model.bin": model1})
	m1 := fltBackup(t, r, src)

	db2 := append(bytes.Clone(db1), fltText(78, 10*page)[:10*page]...)
	db2[100*page+5] ^= 1
	model2 := bytes.Clone(model1)
	copy(model2[3<<20:], bytes.Repeat([]byte{0xee}, 100))
	indextest.WriteFile(t, filepath.Join(src, "app.db"), db2)
	indextest.WriteFile(t, filepath.Join(src, "model.bin"), model2)
	m2 := fltBackup(t, r, src)

	rep := fltVerify(t, r, true, m1.BackupID, m2.BackupID)
	if !rep.OK() {
		t.Fatalf("verify of both versions: %+v", rep.Snapshots)
	}
	model := nodeOf(t, r, m2, "model.bin")
	if len(model.Chunks) < 3 {
		t.Fatalf("model.bin in %d chunks: the test needs several", len(model.Chunks))
	}
	// The database's pages are its chunks and its spans: of m2's 310, page
	// 100 (changed), 299 (the last of m1, never remembered) and 300-309
	// (new) are read.
	dbReused := reusable(nodeOf(t, r, m1, "app.db"), nodeOf(t, r, m2, "app.db"))
	if dbReused != 298*page {
		t.Fatalf("database: %d bytes reusable by the test's count, want %d", dbReused, 298*page)
	}
	modelReused := reusable(nodeOf(t, r, m1, "model.bin"), model)
	if modelReused < int64(len(model2))-3<<20 {
		t.Fatalf("model: only %d of %d bytes reusable by the test's count", modelReused, len(model2))
	}
	if rep.Reused != dbReused+modelReused {
		t.Fatalf("verify reused %d bytes, want %d (database %d, model %d)", rep.Reused, dbReused+modelReused, dbReused, modelReused)
	}
	// Alone, each snapshot is read in full.
	if rep := fltVerify(t, r, true, m2.BackupID); !rep.OK() || rep.Reused != 0 {
		t.Fatalf("verify of m2 alone: ok %v, reused %d", rep.OK(), rep.Reused)
	}

	// Damage a chunk both versions share: page 50.
	db := nodeOf(t, r, m2, "app.db")
	packPath, b := fltLocate(t, repo, db.Chunks[50].ID)
	fltFlipByte(t, packPath, int64(b.Offset)+int64(b.Stored)/2, 0xff)
	rep = fltVerify(t, r, true, m1.BackupID, m2.BackupID)
	for _, m := range []*snapshot.Manifest{m1, m2} {
		sc := fltCheck(t, rep, m.BackupID)
		if sc.OK || len(sc.Problems) != 1 || sc.Problems[0].Path != "app.db" || !strings.Contains(sc.Problems[0].Problem, fltPackID(t, packPath).Short()) {
			t.Fatalf("snapshot %s after damage to a shared page: %+v, want app.db named with pack %s", m.BackupID, sc, fltPackID(t, packPath).Short())
		}
	}
	fltFlipByte(t, packPath, int64(b.Offset)+int64(b.Stored)/2, 0xff) // mended

	// Damage the chunk only m2's model has.
	var changed snapshot.ChunkRef
	var off int64
	for _, c := range model.Chunks {
		if off+int64(c.Size) > 3<<20 {
			changed = c
			break
		}
		off += int64(c.Size)
	}
	packPath, b = fltLocate(t, repo, changed.ID)
	fltFlipByte(t, packPath, int64(b.Offset)+int64(b.Stored)/2, 0xff)
	rep = fltVerify(t, r, true, m1.BackupID, m2.BackupID)
	if sc := fltCheck(t, rep, m1.BackupID); !sc.OK {
		t.Fatalf("m1 after damage to a chunk only m2 has: %+v", sc)
	}
	sc := fltCheck(t, rep, m2.BackupID)
	if sc.OK || len(sc.Problems) != 1 || sc.Problems[0].Path != "model.bin" || !strings.Contains(sc.Problems[0].Problem, changed.ID.Short()) {
		t.Fatalf("m2 after damage to its changed model chunk: %+v, want model.bin naming chunk %s", sc, changed.ID.Short())
	}
	if _, err := os.Stat(packPath); err != nil {
		t.Fatal(err)
	}
}

// reusable counts the bytes of the spans of new that verify may take from
// old: every span but old's last and new's last whose chunks are all in old
// at the same offsets.
func reusable(old, new *snapshot.Node) int64 {
	const span = 16 << 10
	type at struct {
		id  snapshot.ID
		off int64
	}
	had := map[at]bool{}
	var off int64
	for _, c := range old.Chunks {
		had[at{c.ID, off}] = true
		off += int64(c.Size)
	}
	oldSpans, newSpans := (old.Size-1)/span, (new.Size-1)/span
	var n int64
	for s := int64(0); s < min(oldSpans, newSpans); s++ {
		ok := true
		off = 0
		for _, c := range new.Chunks {
			end := off + int64(c.Size)
			if end > s*span && off < (s+1)*span && !had[at{c.ID, off}] {
				ok = false
			}
			off = end
		}
		if ok {
			n += span
		}
	}
	return n
}

// nodeOf returns the node at rel in m.
func nodeOf(t *testing.T, r *snapshot.Repo, m *snapshot.Manifest, rel string) *snapshot.Node {
	t.Helper()
	n, err := r.FindNode(t.Context(), m, rel)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
