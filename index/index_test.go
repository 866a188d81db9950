package index_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"snapforge/index"
	"snapforge/snapshot"
)

// testID returns a deterministic, well-spread ID for (tag, n).
func testID(tag string, n int) snapshot.ID {
	return snapshot.Hash(binary.BigEndian.AppendUint64([]byte(tag), uint64(n)))
}

// makePack returns pack number p of a test set with n blobs whose fields
// all differ, including values that need every bit of their width.
func makePack(tag string, p, n int) (snapshot.ID, []snapshot.PackBlob) {
	pack := testID(tag+"/pack", p)
	blobs := make([]snapshot.PackBlob, n)
	var off uint64 = 1 << 33 // above 4 GiB: Offset is 64 bits
	for i := range blobs {
		stored := uint32(1000 + (p*n+i)%70000)
		blobs[i] = snapshot.PackBlob{
			ID: testID(tag+"/blob", p*n+i),
			Location: snapshot.Location{
				Pack:   pack,
				Offset: off,
				Stored: stored,
				Raw:    stored + uint32(i%3)*(1<<31), // up to the top bit
				Kind:   uint8(i % 2),
				Codec:  uint8((i / 2) % 2),
			},
		}
		off += uint64(stored)
	}
	return pack, blobs
}

func newDisk(t testing.TB, opts index.Options) (*index.DB, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "index")
	db, err := index.Create(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

func newMem(t testing.TB, opts index.Options) *index.DB {
	t.Helper()
	opts.InMemory = true
	db, err := index.Create("", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// both runs fn against an on-disk and an in-memory database.
func both(t *testing.T, fn func(t *testing.T, db *index.DB)) {
	t.Run("disk", func(t *testing.T) {
		db, _ := newDisk(t, index.Options{})
		fn(t, db)
	})
	t.Run("memory", func(t *testing.T) { fn(t, newMem(t, index.Options{})) })
}

func addPack(t testing.TB, db *index.DB, pack snapshot.ID, blobs []snapshot.PackBlob) {
	t.Helper()
	if err := db.AddPack(context.Background(), pack, int64(len(blobs))*4096, blobs); err != nil {
		t.Fatal(err)
	}
}

// checkLookups asserts that every blob is found at exactly its location.
func checkLookups(t *testing.T, db *index.DB, blobs []snapshot.PackBlob) {
	t.Helper()
	ctx := context.Background()
	bad := 0
	for _, b := range blobs {
		got, err := db.Lookup(ctx, b.ID)
		if err != nil || got != b.Location {
			if bad++; bad <= 5 {
				t.Errorf("Lookup(%s) = %+v, %v; want %+v", b.ID.Short(), got, err, b.Location)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d wrong lookups in all", bad)
	}
}

func checkNotFound(t *testing.T, db *index.DB, blobs []snapshot.PackBlob) {
	t.Helper()
	bad := 0
	for _, b := range blobs {
		got, err := db.Lookup(context.Background(), b.ID)
		if !errors.Is(err, snapshot.ErrNotFound) {
			if bad++; bad <= 5 {
				t.Errorf("Lookup(%s) = %+v, %v; want ErrNotFound", b.ID.Short(), got, err)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d blobs still found in all", bad)
	}
}

func packsOf(t *testing.T, db *index.DB) map[snapshot.ID]int64 {
	t.Helper()
	got := map[snapshot.ID]int64{}
	err := db.Packs(context.Background(), func(p snapshot.ID, size int64) error {
		if _, dup := got[p]; dup {
			t.Errorf("pack %s listed twice", p.Short())
		}
		got[p] = size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func blobsOf(t *testing.T, db *index.DB) map[snapshot.ID]snapshot.Location {
	t.Helper()
	got := map[snapshot.ID]snapshot.Location{}
	err := db.Blobs(context.Background(), func(b snapshot.PackBlob) error {
		if _, dup := got[b.ID]; dup {
			t.Errorf("blob %s listed twice", b.ID.Short())
		}
		got[b.ID] = b.Location
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestAddPackLookup(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		var all []snapshot.PackBlob
		for p := range 250 { // 250 packs x 40 blobs = 10,000 blobs
			pack, blobs := makePack("lookup", p, 40)
			addPack(t, db, pack, blobs)
			all = append(all, blobs...)
		}
		checkLookups(t, db, all)
	})
}

func TestLookupUnknown(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		unknown := testID("unknown", 0)
		if _, err := db.Lookup(context.Background(), unknown); !errors.Is(err, snapshot.ErrNotFound) {
			t.Fatalf("empty index: Lookup = %v, want ErrNotFound", err)
		}
		pack, blobs := makePack("known", 0, 40)
		addPack(t, db, pack, blobs)
		_, err := db.Lookup(context.Background(), unknown)
		if !errors.Is(err, snapshot.ErrNotFound) {
			t.Fatalf("Lookup = %v, want ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), unknown.Short()) {
			t.Errorf("error %q does not name the blob", err)
		}
		// A pack id is not a blob id.
		if _, err := db.Lookup(context.Background(), pack); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("Lookup(pack id) = %v, want ErrNotFound", err)
		}
	})
}

// TestLookupEach looks up known and unknown blobs in one read: each gets
// what Lookup gives it, in order, and returning false stops the walk.
func TestLookupEach(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		ctx := context.Background()
		pack, blobs := makePack("each", 0, 40)
		addPack(t, db, pack, blobs)
		unknown := testID("each-unknown", 0)
		refs := []snapshot.ChunkRef{{ID: blobs[3].ID}, {ID: unknown}, {ID: blobs[39].ID}, {ID: blobs[0].ID}}
		var got []string
		err := db.LookupEach(ctx, refs, func(i int, loc snapshot.Location, err error) bool {
			if i != len(got) {
				t.Errorf("call %d for ref %d: out of order", len(got), i)
			}
			switch {
			case errors.Is(err, snapshot.ErrNotFound) && strings.Contains(err.Error(), unknown.Short()):
				got = append(got, "not found")
			case err != nil:
				got = append(got, "error: "+err.Error())
			default:
				got = append(got, fmt.Sprintf("%+v", loc))
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{fmt.Sprintf("%+v", blobs[3].Location), "not found", fmt.Sprintf("%+v", blobs[39].Location), fmt.Sprintf("%+v", blobs[0].Location)}
		if !slices.Equal(got, want) {
			t.Fatalf("LookupEach gave %q, want %q", got, want)
		}
		calls := 0
		if err := db.LookupEach(ctx, refs, func(int, snapshot.Location, error) bool { calls++; return calls < 2 }); err != nil || calls != 2 {
			t.Fatalf("stopped walk: %d calls, %v; want 2", calls, err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if err := db.LookupEach(cancelled, refs, func(int, snapshot.Location, error) bool { return true }); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v, want context.Canceled", err)
		}
	})
}

func TestRemovePack(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		ctx := context.Background()
		var packs []snapshot.ID
		var sets [][]snapshot.PackBlob
		for p := range 3 {
			pack, blobs := makePack("remove", p, 500)
			addPack(t, db, pack, blobs)
			packs, sets = append(packs, pack), append(sets, blobs)
		}
		if err := db.RemovePack(ctx, packs[1]); err != nil {
			t.Fatal(err)
		}
		checkNotFound(t, db, sets[1])
		checkLookups(t, db, sets[0])
		checkLookups(t, db, sets[2])
		want := map[snapshot.ID]int64{packs[0]: 500 * 4096, packs[2]: 500 * 4096}
		if got := packsOf(t, db); !maps.Equal(got, want) {
			t.Errorf("Packs after remove = %v, want %v", got, want)
		}
		if got := len(blobsOf(t, db)); got != 1000 {
			t.Errorf("Blobs after remove: %d, want 1000", got)
		}
		// Idempotent, and fine for a pack that was never recorded.
		if err := db.RemovePack(ctx, packs[1]); err != nil {
			t.Errorf("second RemovePack: %v", err)
		}
		if err := db.RemovePack(ctx, testID("never", 0)); err != nil {
			t.Errorf("RemovePack(unknown): %v", err)
		}
		checkLookups(t, db, sets[0])
		checkLookups(t, db, sets[2])
	})
}

// A repack moves live blobs to a new pack and then removes the old one:
// the moved blobs must survive, the rest must go.
func TestRemovePackKeepsMovedBlobs(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		oldPack, blobs := makePack("repack-old", 0, 100)
		addPack(t, db, oldPack, blobs)

		newPack := testID("repack-new", 0)
		moved := make([]snapshot.PackBlob, 60)
		for i := range moved {
			moved[i] = blobs[i]
			moved[i].Pack = newPack
			moved[i].Offset = uint64(i) * 100
		}
		addPack(t, db, newPack, moved)
		if err := db.RemovePack(context.Background(), oldPack); err != nil {
			t.Fatal(err)
		}
		checkLookups(t, db, moved)
		checkNotFound(t, db, blobs[60:])
		if got := packsOf(t, db); len(got) != 1 || got[newPack] != 60*4096 {
			t.Errorf("Packs = %v, want only %s", got, newPack.Short())
		}
	})
}

func TestEnumerate(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		wantPacks := map[snapshot.ID]int64{}
		wantBlobs := map[snapshot.ID]snapshot.Location{}
		for p := range 20 {
			pack, blobs := makePack("enum", p, 10+p)
			addPack(t, db, pack, blobs)
			wantPacks[pack] = int64(len(blobs)) * 4096
			for _, b := range blobs {
				wantBlobs[b.ID] = b.Location
			}
		}
		// Meta keys must not show up as packs or blobs.
		if err := db.SetMeta(context.Background(), "repository_id", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if got := packsOf(t, db); !maps.Equal(got, wantPacks) {
			t.Errorf("Packs: got %d packs, want %d (or sizes differ)", len(got), len(wantPacks))
		}
		if got := blobsOf(t, db); !maps.Equal(got, wantBlobs) {
			t.Errorf("Blobs: got %d blobs, want %d (or locations differ)", len(got), len(wantBlobs))
		}
	})
}

func TestEnumerateEmpty(t *testing.T) {
	db := newMem(t, index.Options{})
	if n := len(packsOf(t, db)); n != 0 {
		t.Errorf("Packs on empty index: %d", n)
	}
	if n := len(blobsOf(t, db)); n != 0 {
		t.Errorf("Blobs on empty index: %d", n)
	}
}

func TestEnumerateStops(t *testing.T) {
	db := newMem(t, index.Options{})
	for p := range 10 {
		pack, blobs := makePack("stop", p, 10)
		addPack(t, db, pack, blobs)
	}
	stop := errors.New("stop here")

	t.Run("fn error", func(t *testing.T) {
		calls := 0
		err := db.Blobs(context.Background(), func(snapshot.PackBlob) error {
			if calls++; calls == 3 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 3 {
			t.Errorf("Blobs = %v after %d calls, want the fn's error itself after 3", err, calls)
		}
		calls = 0
		err = db.Packs(context.Background(), func(snapshot.ID, int64) error {
			calls++
			return stop
		})
		if err != stop || calls != 1 {
			t.Errorf("Packs = %v after %d calls, want the fn's error itself after 1", err, calls)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		err := db.Blobs(ctx, func(snapshot.PackBlob) error {
			if calls++; calls == 5 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || calls != 5 {
			t.Errorf("Blobs = %v after %d calls, want context.Canceled after 5", err, calls)
		}
		calls = 0
		err = db.Packs(ctx, func(snapshot.ID, int64) error { calls++; return nil })
		if !errors.Is(err, context.Canceled) || calls != 0 {
			t.Errorf("Packs = %v after %d calls, want context.Canceled before any", err, calls)
		}
	})

	t.Run("fn calls db", func(t *testing.T) {
		n := 0
		err := db.Blobs(context.Background(), func(b snapshot.PackBlob) error {
			loc, err := db.Lookup(context.Background(), b.ID)
			if err != nil || loc != b.Location {
				return fmt.Errorf("nested Lookup(%s) = %+v, %v", b.ID.Short(), loc, err)
			}
			n++
			return nil
		})
		if err != nil || n != 100 {
			t.Errorf("Blobs = %v after %d blobs, want nil after 100", err, n)
		}
	})
}

func TestCancelledContext(t *testing.T) {
	db := newMem(t, index.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pack, blobs := makePack("cancel", 0, 5)
	if err := db.AddPack(ctx, pack, 1, blobs); !errors.Is(err, context.Canceled) {
		t.Errorf("AddPack = %v", err)
	}
	checkNotFound(t, db, blobs)
	if _, err := db.Lookup(ctx, blobs[0].ID); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup = %v", err)
	}
	if err := db.RemovePack(ctx, pack); !errors.Is(err, context.Canceled) {
		t.Errorf("RemovePack = %v", err)
	}
	if _, err := db.Meta(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Meta = %v", err)
	}
	if err := db.SetMeta(ctx, "k", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("SetMeta = %v", err)
	}
}

func TestAddPackRejectsForeignBlob(t *testing.T) {
	db := newMem(t, index.Options{})
	pack, blobs := makePack("foreign", 0, 10)
	blobs[7].Pack = snapshot.ID{} // e.g. forgot to fill it in
	err := db.AddPack(context.Background(), pack, 1, blobs)
	if err == nil || !strings.Contains(err.Error(), blobs[7].ID.Short()) {
		t.Fatalf("AddPack = %v, want an error naming blob %s", err, blobs[7].ID.Short())
	}
	checkNotFound(t, db, blobs)
	if n := len(packsOf(t, db)); n != 0 {
		t.Errorf("%d packs recorded after a refused AddPack", n)
	}
	if err := db.AddPack(context.Background(), pack, -1, nil); err == nil {
		t.Error("AddPack with negative size succeeded")
	}
}

// lockedBuffer collects log output written from Badger's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func debugLogger(w *lockedBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A pack with more blobs than one Badger transaction holds is split, and
// still ends up complete; RemovePack splits its deletes the same way. On
// disk only: the split logic does not depend on the storage, and this is
// the slowest test under -race.
func TestAddPackSplit(t *testing.T) {
	const n = 20_000 // one transaction holds ~13,000 entries
	var logs lockedBuffer
	db, _ := newDisk(t, index.Options{Logger: debugLogger(&logs)})
	pack, blobs := makePack("split", 0, n)
	addPack(t, db, pack, blobs)
	if !strings.Contains(logs.String(), "pack split across transactions") {
		t.Fatalf("AddPack of %d blobs did not split; the test no longer covers splitting", n)
	}
	checkLookups(t, db, blobs)
	if got := packsOf(t, db); got[pack] != n*4096 {
		t.Errorf("Packs = %v", got)
	}
	if err := db.RemovePack(context.Background(), pack); err != nil {
		t.Fatal(err)
	}
	checkNotFound(t, db, blobs)
	if got := len(packsOf(t, db)); got != 0 {
		t.Errorf("%d packs left", got)
	}
}

func TestMeta(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		ctx := context.Background()
		if _, err := db.Meta(ctx, "repository_id"); !errors.Is(err, snapshot.ErrNotFound) {
			t.Fatalf("missing meta: %v, want ErrNotFound", err)
		}
		val := []byte("5f0c6f7e-a2a5-4f0e-9d0b-2a7c1f6f9c11")
		if err := db.SetMeta(ctx, "repository_id", val); err != nil {
			t.Fatal(err)
		}
		want := string(val)
		val[0] = 'X' // the index must have kept its own copy
		got, err := db.Meta(ctx, "repository_id")
		if err != nil || string(got) != want {
			t.Fatalf("Meta = %q, %v; want %q", got, err, want)
		}
		if err := db.SetMeta(ctx, "repository_id", []byte("second")); err != nil {
			t.Fatal(err)
		}
		if got, err := db.Meta(ctx, "repository_id"); err != nil || string(got) != "second" {
			t.Errorf("after overwrite Meta = %q, %v", got, err)
		}
		// Empty values and large ones (past the value-log threshold).
		// Empty values, values around the 1 KiB value-log threshold, and
		// the largest allowed.
		vals := map[string][]byte{"empty": {}}
		for _, n := range []int{1023, 1024, 1025, 512 << 10} {
			vals[fmt.Sprint(n)] = bytes.Repeat([]byte{byte(n)}, n)
		}
		for key, v := range vals {
			if err := db.SetMeta(ctx, key, v); err != nil {
				t.Fatal(err)
			}
			if got, err := db.Meta(ctx, key); err != nil || !bytes.Equal(got, v) {
				t.Errorf("Meta(%q): %d bytes, %v; want %d bytes", key, len(got), err, len(v))
			}
		}
		if err := db.SetMeta(ctx, "huge", make([]byte, 512<<10+1)); err == nil {
			t.Error("SetMeta of more than 512 KiB succeeded")
		}
		if _, err := db.Meta(ctx, "repository"); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("prefix of a key: %v, want ErrNotFound", err)
		}
	})
}

func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	db, dir := newDisk(t, index.Options{})
	var all []snapshot.PackBlob
	for p := range 5 {
		pack, blobs := makePack("durable", p, 200)
		addPack(t, db, pack, blobs)
		all = append(all, blobs...)
	}
	if err := db.SetMeta(ctx, "repository_id", []byte("r1")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := index.Open(dir, index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkLookups(t, db, all)
	if got := len(packsOf(t, db)); got != 5 {
		t.Errorf("%d packs after reopen, want 5", got)
	}
	if v, err := db.Meta(ctx, "repository_id"); err != nil || string(v) != "r1" {
		t.Errorf("Meta after reopen = %q, %v", v, err)
	}
}

func TestOpenTwiceIsInUse(t *testing.T) {
	_, dir := newDisk(t, index.Options{})
	type result struct {
		db  *index.DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		db, err := index.Open(dir, index.Options{})
		done <- result{db, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("second Open hangs instead of failing")
	}
	if r.err == nil {
		r.db.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	var inUse *index.InUseError
	if !errors.As(r.err, &inUse) {
		t.Fatalf("second Open: %v (%T), want *InUseError", r.err, r.err)
	}
	want := "index " + dir + " is in use by another process"
	if !strings.HasPrefix(r.err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", r.err, want)
	}
	if inUse.PID != os.Getpid() {
		t.Errorf("holder pid %d, want %d", inUse.PID, os.Getpid())
	}
}

func TestExistsCreateOpen(t *testing.T) {
	base := t.TempDir()
	missing := filepath.Join(base, "missing")
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{missing, empty} {
		if index.Exists(dir) {
			t.Errorf("Exists(%s) = true", dir)
		}
		_, err := index.Open(dir, index.Options{})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%s) = %v, want fs.ErrNotExist", dir, err)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open created %s", missing)
	}

	for _, dir := range []string{filepath.Join(missing, "nested"), empty} {
		db, err := index.Create(dir, index.Options{})
		if err != nil {
			t.Fatalf("Create(%s): %v", dir, err)
		}
		if !index.Exists(dir) {
			t.Errorf("Exists(%s) = false after Create", dir)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := index.Create(dir, index.Options{}); err == nil {
			t.Errorf("Create over an existing index %s succeeded", dir)
		}
	}

	notEmpty := filepath.Join(base, "not-empty")
	if err := os.MkdirAll(notEmpty, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notEmpty, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := index.Create(notEmpty, index.Options{}); err == nil {
		db.Close()
		t.Fatal("Create on a non-empty directory succeeded")
	} else if !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Create on a non-empty directory: %v", err)
	}
	if index.Exists(notEmpty) {
		t.Error("failed Create left a database behind")
	}
}

func TestBadgerLogsGoToLogger(t *testing.T) {
	var logs lockedBuffer
	db, _ := newDisk(t, index.Options{Logger: debugLogger(&logs)})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "component=badger") || !strings.Contains(out, "level=DEBUG") {
		t.Errorf("no Badger debug lines in the logger:\n%s", out)
	}
	if strings.Contains(out, "level=INFO") {
		t.Errorf("Badger INFO lines were not demoted to debug:\n%s", out)
	}
}

// Four writers add packs while four readers look blobs up; every answer
// must be either ErrNotFound (not added yet) or the exact location.
func TestConcurrentAddAndLookup(t *testing.T) {
	both(t, func(t *testing.T, db *index.DB) {
		const writers, readers, packsEach, blobsEach = 4, 4, 25, 40
		sets := make([][]snapshot.PackBlob, writers*packsEach)
		packIDs := make([]snapshot.ID, len(sets))
		for i := range sets {
			packIDs[i], sets[i] = makePack("concurrent", i, blobsEach)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var writersWG, readersWG sync.WaitGroup
		errs := make(chan error, writers+readers)
		for w := range writers {
			writersWG.Go(func() {
				for p := w; p < len(sets); p += writers {
					if err := db.AddPack(ctx, packIDs[p], 1, sets[p]); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		for r := range readers {
			readersWG.Go(func() {
				for i := r; ctx.Err() == nil; i += 7 {
					b := sets[i%len(sets)][i%blobsEach]
					got, err := db.Lookup(context.Background(), b.ID)
					if errors.Is(err, snapshot.ErrNotFound) {
						continue
					}
					if err != nil || got != b.Location {
						errs <- fmt.Errorf("Lookup(%s) = %+v, %v; want %+v", b.ID.Short(), got, err, b.Location)
						return
					}
				}
			})
		}
		writersWG.Wait()
		cancel()
		readersWG.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, blobs := range sets {
			checkLookups(t, db, blobs)
		}
		if got := len(packsOf(t, db)); got != len(sets) {
			t.Errorf("%d packs, want %d", got, len(sets))
		}
	})
}

// RemovePack racing with AddPack re-pointing the same blobs must never
// delete a location that now points elsewhere.
func TestConcurrentRemoveAndRepoint(t *testing.T) {
	db := newMem(t, index.Options{})
	ctx := context.Background()
	for round := range 10 {
		oldPack, blobs := makePack(fmt.Sprintf("race%d", round), 0, 1000)
		addPack(t, db, oldPack, blobs)
		newPack := testID("race-new", round)
		moved := make([]snapshot.PackBlob, len(blobs))
		for i := range blobs {
			moved[i] = blobs[i]
			moved[i].Pack = newPack
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := db.RemovePack(ctx, oldPack); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := db.AddPack(ctx, newPack, 1, moved); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		checkLookups(t, db, moved)
	}
}
