package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/chunker"
)

// TestVerifyReusesSpans checks verify's proof of a changed file from the
// spans it proved in an earlier version (spans.go): a database with one
// page rewritten and ten appended, and a model file with 100 bytes changed
// in place, are proven with only the chunks that cover changed spans read,
// and the hash that comes out is right (verify passes). Then damage (FAULTS
// A1, with span proofs: every snapshot and file affected is reported): a
// chunk both versions share is reported in both snapshots, and a chunk only
// the new version has is reported in the new snapshot only, by file and
// pack or chunk.
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
	db1n, db2n, model1n := nodeOf(t, r, m1, "app.db"), nodeOf(t, r, m2, "app.db"), nodeOf(t, r, m1, "model.bin")
	dbReused, dbRead := spansOf(db1n, db2n)
	if dbReused != 298*page || dbRead != 12*page {
		t.Fatalf("database: %d bytes reusable and %d to read by the test's count, want %d and %d", dbReused, dbRead, 298*page, 12*page)
	}
	modelReused, modelRead := spansOf(model1n, model)
	if modelReused < int64(len(model2))-3<<20 || modelRead >= int64(len(model2))-2<<20 {
		t.Fatalf("model: %d of %d bytes reusable, %d to read, by the test's count", modelReused, len(model2), modelRead)
	}
	if rep.Reused != dbReused+modelReused {
		t.Fatalf("verify reused %d bytes, want %d (database %d, model %d)", rep.Reused, dbReused+modelReused, dbReused, modelReused)
	}
	if want := int64(len(db1)+len(model1)) + dbRead + modelRead; rep.Read != want {
		t.Fatalf("verify read %d bytes, want %d: m1 whole, of m2 only the chunks over new spans and the last (database %d, model %d)", rep.Read, want, dbRead, modelRead)
	}
	// Alone, each snapshot is read in full.
	if rep := fltVerify(t, r, true, m2.BackupID); !rep.OK() || rep.Reused != 0 || rep.Read != int64(len(db2)+len(model2)) {
		t.Fatalf("verify of m2 alone: ok %v, reused %d, read %d", rep.OK(), rep.Reused, rep.Read)
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

// spansOf counts, independently of spans.go, the bytes of the spans of new
// that verify may take from old (every span but old's last and new's last
// whose chunks are all in old at the same offsets), and the bytes of the
// chunks it must read: those that cover another span, or new's last.
func spansOf(old, new *snapshot.Node) (reused, read int64) {
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
	ok := func(s int64) bool {
		if s >= min(oldSpans, newSpans) {
			return false
		}
		var off int64
		for _, c := range new.Chunks {
			end := off + int64(c.Size)
			if end > s*span && off < (s+1)*span && !had[at{c.ID, off}] {
				return false
			}
			off = end
		}
		return true
	}
	for s := int64(0); s < newSpans; s++ {
		if ok(s) {
			reused += span
		}
	}
	off = 0
	for _, c := range new.Chunks {
		end := off + int64(c.Size)
		for s := off / span; s <= (end-1)/span; s++ {
			if !ok(s) {
				read += int64(c.Size)
				break
			}
		}
		off = end
	}
	return reused, read
}

// TestVerifySpanKeys checks that a span is only taken from an earlier file
// where it has the same bytes at the same offset: chunks that moved (100
// bytes inserted before them) are read again, and a file of identical
// pages shifted by one page takes each span from the same offset only (a
// CV is of the bytes and their offset: taken from another offset, the
// hash would not match and verify would report good data as damaged).
func TestVerifySpanKeys(t *testing.T) {
	const page = chunker.DefaultSQLiteChunk
	r, _ := indextest.NewRepo(t, fltLaterClock)
	model1 := make([]byte, 6<<20)
	rand.NewChaCha8([32]byte{3}).Read(model1)
	db1 := pagedFile(2)
	db1 = append(db1, make([]byte, 130*page)...) // identical pages
	src := fltSource(t, map[string][]byte{"model.bin": model1, "app.db": db1})
	m1 := fltBackup(t, r, src)

	model2 := append(append(bytes.Clone(model1[:1<<20]), bytes.Repeat([]byte{7}, 100)...), model1[1<<20:]...)
	db2 := append(append(bytes.Clone(db1[:2*page]), make([]byte, page)...), db1[2*page:]...) // one page more
	indextest.WriteFile(t, filepath.Join(src, "model.bin"), model2)
	indextest.WriteFile(t, filepath.Join(src, "app.db"), db2)
	m2 := fltBackup(t, r, src)

	shared := 0
	ids := map[snapshot.ID]bool{}
	for _, c := range nodeOf(t, r, m1, "model.bin").Chunks {
		ids[c.ID] = true
	}
	for _, c := range nodeOf(t, r, m2, "model.bin").Chunks {
		if ids[c.ID] {
			shared++
		}
	}
	if shared < 2 {
		t.Fatalf("the shifted model shares %d chunks with the first: the test needs chunks that moved", shared)
	}
	rep := fltVerify(t, r, true, m1.BackupID, m2.BackupID)
	if !rep.OK() {
		t.Fatalf("verify: %+v", rep.Snapshots)
	}
	modelReused, _ := spansOf(nodeOf(t, r, m1, "model.bin"), nodeOf(t, r, m2, "model.bin"))
	dbReused, _ := spansOf(nodeOf(t, r, m1, "app.db"), nodeOf(t, r, m2, "app.db"))
	if modelReused >= 1<<20 || dbReused < 100*page || rep.Reused != modelReused+dbReused {
		t.Fatalf("reused %d bytes, want %d (model %d: only spans before the insertion; database %d: the zero pages at the same offsets)", rep.Reused, modelReused+dbReused, modelReused, dbReused)
	}
}

// TestVerifyCancel cancels a verify of many files once a few are checked:
// it must stop, not read the files already queued.
func TestVerifyCancel(t *testing.T) {
	r, _ := indextest.NewRepo(t, fltLaterClock)
	files := map[string][]byte{}
	for i := range 400 {
		b := make([]byte, 300<<10)
		rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), 9}).Read(b)
		files[fmt.Sprintf("f%03d.bin", i)] = b
	}
	m := fltBackup(t, r, fltSource(t, files))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := &snapshot.Live{}
	at := make(chan int64, 1)
	go func() {
		for live.FilesDone.Load() < 3 {
			time.Sleep(100 * time.Microsecond)
		}
		at <- live.BytesDone.Load()
		cancel()
	}()
	_, err := r.Verify(ctx, []string{m.BackupID}, snapshot.VerifyOptions{ReadData: true, Live: live})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("verify cancelled: %v, want context.Canceled", err)
	}
	before := <-at
	if after := live.BytesDone.Load(); after-before > 10*300<<10 {
		t.Fatalf("%d bytes checked after the cancel (at %d): it went on with the queued files", after-before, before)
	}
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
