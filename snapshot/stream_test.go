package snapshot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/chunker"
	"snapforge/snapshot/pack"
)

// pagedFile returns the bytes of a file that backup cuts into fixed 16 KiB
// chunks, as it does a SQLite database: a database header (page size 4096)
// then text. With chunks chunks it spans several index reads of
// streamChunks (lookupBatch, 256) and several 1 MiB groups.
func pagedFile(chunks int) []byte {
	b := fltText(77, chunks*chunker.DefaultSQLiteChunk)[:chunks*chunker.DefaultSQLiteChunk]
	copy(b, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(b[16:], 4096)
	return b
}

// TestStreamManySmallChunks reads back a file of 700 small chunks, stored in
// groups, by every path that streams a file: restore, cat (WriteContent)
// and verify, which passes the locations it looked up to the loaders. Then
// one group in the middle of the file is damaged: each path fails on that
// file, naming the damage, and the other file stays readable.
func TestStreamManySmallChunks(t *testing.T) {
	ctx := context.Background()
	r, repo := indextest.NewRepo(t)
	db := pagedFile(700)
	other := fltText(5, 300<<10)
	src := fltSource(t, map[string][]byte{"app.db": db, "notes.txt": other})
	m := fltBackup(t, r, src)

	n, err := r.FindNode(ctx, m, "app.db")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Chunks) != 700 {
		t.Fatalf("app.db in %d chunks, want 700 of 16 KiB", len(n.Chunks))
	}
	fltCompare(t, src, fltRestore(t, r, m))
	fltVerifyOK(t, r, m.BackupID)
	var out bytes.Buffer
	if got, err := r.WriteContent(ctx, n, &out); err != nil || got != int64(len(db)) || !bytes.Equal(out.Bytes(), db) {
		t.Fatalf("cat app.db: %d bytes, %v; equal %v", got, err, bytes.Equal(out.Bytes(), db))
	}

	// Damage the group holding chunk 600 (in the third index read).
	victim := n.Chunks[600].ID
	packPath, b := fltLocate(t, repo, victim)
	if b.Codec != pack.CodecGroup {
		t.Fatalf("chunk 600 stored with codec %d, want a group member", b.Codec)
	}
	fltFlipByte(t, packPath, int64(b.Offset)+int64(b.Stored)/2, 0xff)
	packID := fltPackID(t, packPath)

	rep := fltVerify(t, r, true, m.BackupID)
	if rep.OK() || len(rep.Snapshots) != 1 {
		t.Fatalf("verify after damage: ok %v, %d snapshots", rep.OK(), len(rep.Snapshots))
	}
	probs := rep.Snapshots[0].Problems
	if len(probs) != 1 || probs[0].Path != "app.db" || !strings.Contains(probs[0].Problem, packID.Short()) {
		t.Fatalf("verify problems %+v, want one on app.db naming pack %s", probs, packID.Short())
	}
	out.Reset()
	_, err = r.WriteContent(ctx, n, &out)
	var ce *snapshot.CorruptError
	if !errors.As(err, &ce) || ce.Pack != packID {
		t.Fatalf("cat of the damaged file: %v, want a CorruptError in pack %s", err, packID.Short())
	}
	if out.Len() > 600*chunker.DefaultSQLiteChunk { // chunks before the damaged one may be whole and checked
		t.Fatalf("cat wrote %d bytes, into or past the damaged chunk at %d", out.Len(), 600*chunker.DefaultSQLiteChunk)
	}
	if !bytes.Equal(out.Bytes(), db[:out.Len()]) {
		t.Fatal("cat wrote wrong bytes before the damage")
	}
	target := filepath.Join(t.TempDir(), "restore")
	if _, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: target}); err == nil {
		t.Fatal("restore of a snapshot with a damaged chunk succeeded")
	}
	if _, err := os.Stat(filepath.Join(target, "app.db")); err == nil {
		t.Fatal("restore left the damaged app.db in place as if complete")
	}
	on, err := r.FindNode(ctx, m, "notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := r.WriteContent(ctx, on, &out); err != nil || !bytes.Equal(out.Bytes(), other) {
		t.Fatalf("cat notes.txt after the damage elsewhere: %v", err)
	}
}

// failingWriter takes n bytes, then fails (or, with cancel, cancels the
// context and keeps taking bytes).
type failingWriter struct {
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

var errWriterFull = errors.New("writer full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.n {
		if w.cancel == nil {
			return 0, errWriterFull
		}
		w.cancel()
	}
	return w.buf.Write(p)
}

// settled waits for the goroutines started by a call to end (every loader
// of the stream must have returned), up to a generous bound.
func settled(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left running, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamStops: a chunk the index does not know, in the third index
// read of a 700-chunk file, fails the stream at that chunk with a
// MissingError, after exactly the bytes before it; a consumer that fails
// or cancels part way stops the stream, and no loader is left behind.
func TestStreamStops(t *testing.T) {
	ctx := context.Background()
	r, _ := indextest.NewRepo(t)
	db := pagedFile(700)
	m := fltBackup(t, r, fltSource(t, map[string][]byte{"app.db": db}))
	n, err := r.FindNode(ctx, m, "app.db")
	if err != nil {
		t.Fatal(err)
	}
	page := chunker.DefaultSQLiteChunk

	before := runtime.NumGoroutine()
	unknown := *n
	unknown.Chunks = slices.Clone(n.Chunks)
	unknown.Chunks[600].ID = snapshot.Hash([]byte("a chunk no pack holds"))
	var out bytes.Buffer
	_, err = r.WriteContent(ctx, &unknown, &out)
	var me *snapshot.MissingError
	if !errors.As(err, &me) || me.ID != unknown.Chunks[600].ID {
		t.Fatalf("stream with chunk 600 unknown: %v, want a MissingError naming it", err)
	}
	if out.Len() != 600*page || !bytes.Equal(out.Bytes(), db[:600*page]) {
		t.Fatalf("%d bytes written before the unknown chunk, want the %d before it", out.Len(), 600*page)
	}
	settled(t, before)

	w := &failingWriter{n: 250 * page}
	if _, err := r.WriteContent(ctx, n, w); !errors.Is(err, errWriterFull) {
		t.Fatalf("stream into a writer that fails: %v", err)
	}
	if !bytes.Equal(w.buf.Bytes(), db[:w.buf.Len()]) {
		t.Fatal("wrong bytes before the writer failed")
	}
	settled(t, before)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w = &failingWriter{n: 400 * page, cancel: cancel}
	if _, err := r.WriteContent(cctx, n, w); !errors.Is(err, context.Canceled) {
		t.Fatalf("stream cancelled part way: %v", err)
	}
	if w.buf.Len() >= len(db) || !bytes.Equal(w.buf.Bytes(), db[:w.buf.Len()]) {
		t.Fatalf("cancelled stream: %d of %d bytes, or wrong bytes", w.buf.Len(), len(db))
	}
	settled(t, before)
}

// countingIndex counts the index reads of each blob id.
type countingIndex struct {
	snapshot.Index
	mu    sync.Mutex
	reads map[snapshot.ID]int
}

func (c *countingIndex) count(id snapshot.ID) {
	c.mu.Lock()
	c.reads[id]++
	c.mu.Unlock()
}

func (c *countingIndex) Lookup(ctx context.Context, id snapshot.ID) (snapshot.Location, error) {
	c.count(id)
	return c.Index.Lookup(ctx, id)
}

func (c *countingIndex) LookupEach(ctx context.Context, refs []snapshot.ChunkRef, fn func(i int, loc snapshot.Location, err error) bool) error {
	for _, r := range refs {
		c.count(r.ID)
	}
	return c.Index.LookupEach(ctx, refs, fn)
}

// TestStreamLooksUpOnce: verify reads each chunk's location from the index
// once (it hands the locations it checked to the loaders), and so do
// restore and cat (in batches).
func TestStreamLooksUpOnce(t *testing.T) {
	ctx := context.Background()
	ci := &countingIndex{reads: map[snapshot.ID]int{}}
	r, _ := indextest.NewRepo(t, func(o *snapshot.Options) {
		open := o.OpenIndex
		o.OpenIndex = func(dir string, create bool) (snapshot.Index, error) {
			idx, err := open(dir, create)
			ci.Index = idx
			return ci, err
		}
	})
	db := pagedFile(700)
	src := fltSource(t, map[string][]byte{"app.db": db})
	m := fltBackup(t, r, src)
	n, err := r.FindNode(ctx, m, "app.db")
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[snapshot.ID]bool{}
	for _, c := range n.Chunks {
		distinct[c.ID] = true
	}
	check := func(what string, run func()) {
		t.Helper()
		ci.mu.Lock()
		clear(ci.reads)
		ci.mu.Unlock()
		run()
		ci.mu.Lock()
		defer ci.mu.Unlock()
		for id := range distinct {
			want := 0
			for _, c := range n.Chunks {
				if c.ID == id {
					want++
				}
			}
			if ci.reads[id] != want {
				t.Fatalf("%s: chunk %s read from the index %d times, want %d (once per place in the file)", what, id.Short(), ci.reads[id], want)
			}
		}
	}
	check("verify", func() { fltVerifyOK(t, r, m.BackupID) })
	check("cat", func() {
		var out bytes.Buffer
		if _, err := r.WriteContent(ctx, n, &out); err != nil || !bytes.Equal(out.Bytes(), db) {
			t.Fatalf("cat: %v", err)
		}
	})
	check("restore", func() { fltCompare(t, src, fltRestore(t, r, m)) })
}
