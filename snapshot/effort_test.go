package snapshot_test

import (
	"context"
	"encoding/binary"
	"testing"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/chunker"
	"snapforge/snapshot/pack"
)

// TestBackupPicksEffortPerFile: a real backup compresses each file of 8
// MiB or more as its trials choose, everything else at the default effort.
// Every frame stored is checked against the frames of its plaintext at
// both efforts: a database of log-like pages (groups) and a large log
// (single chunks) have frames at the fast effort; a smaller log, a small
// file, and any group mixing files are at the default (the mixing rule
// itself: TestGrouperMixedStreams). Everything restores byte-exact.
func TestBackupPicksEffortPerFile(t *testing.T) {
	if !pack.FastDiffers(false) {
		t.Skip("this build compresses single blobs with one encoder at both efforts (no cgo): nothing to pick")
	}
	const page = chunker.DefaultSQLiteChunk
	db := snapshot.EffortLogText(3, 700*page) // 11.2 MiB: a stream of its own, in groups
	copy(db, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(db[16:], 4096)
	files := map[string][]byte{
		"app.db":    db,
		"big.log":   snapshot.EffortLogText(1, 24<<20), // its own stream, chunks on their own
		"notes.txt": fltText(5, 100<<10),               // small: grouped, at the default
		"small.log": snapshot.EffortLogText(2, 7<<20),  // under 8 MiB: the default
	}
	src := fltSource(t, files)
	r, repo := indextest.NewRepo(t)
	m := fltBackup(t, r, src, oneReader) // one reader: app.db, big.log, notes.txt, small.log in turn
	fltCompare(t, src, fltRestore(t, r, m))

	type frameKey struct {
		pack string
		off  uint64
	}
	type frame struct {
		raw    []byte
		stored int
		codec  uint8
		files  map[string]bool
	}
	type located struct {
		pack string
		b    pack.Blob
	}
	where := map[snapshot.ID]located{} // fltLocate, read once for every chunk
	for _, p := range fltPacks(t, repo) {
		for _, b := range fltTrailer(t, p) {
			where[b.ID] = located{p, b}
		}
	}
	frames := map[frameKey]*frame{}
	ctx := context.Background()
	for name, data := range files {
		n, err := r.FindNode(ctx, m, name)
		if err != nil {
			t.Fatal(err)
		}
		var at int64
		for _, c := range n.Chunks {
			plain := data[at : at+int64(c.Size)]
			at += int64(c.Size)
			loc, ok := where[c.ID]
			if !ok {
				t.Fatalf("%s: chunk %s is in no pack", name, c.ID.Short())
			}
			p, b := loc.pack, loc.b
			k := frameKey{p, b.Offset}
			f := frames[k]
			if f == nil {
				size := b.Raw
				if b.Codec == pack.CodecGroup {
					size = b.GroupRaw
				}
				f = &frame{raw: make([]byte, size), stored: int(b.Stored), codec: b.Codec, files: map[string]bool{}}
				frames[k] = f
			}
			copy(f.raw[b.GroupOff:], plain)
			f.files[name] = true
		}
	}
	fast := map[string]int{}   // frames at the fast effort, by the files they hold
	frameN := map[string]int{} // frames compressed, likewise
	for k, f := range frames {
		if f.codec == pack.CodecRaw {
			continue
		}
		var def, fst []byte
		if f.codec == pack.CodecGroup {
			def, _ = pack.CompressGroupAt(nil, f.raw, pack.EffortDefault)
			fst, _ = pack.CompressGroupAt(nil, f.raw, pack.EffortFast)
		} else {
			def, _ = pack.CompressProbedAt(nil, f.raw, pack.EffortDefault)
			fst, _ = pack.CompressProbedAt(nil, f.raw, pack.EffortFast)
		}
		if len(def) == len(fst) {
			t.Fatalf("frame at %d in %s: both efforts give %d bytes; the test needs them told apart", k.off, k.pack, len(def))
		}
		label := ""
		for name := range f.files {
			if label != "" {
				label += "+"
			}
			label += name
		}
		if len(f.files) > 1 {
			label = "mixed"
		}
		frameN[label]++
		switch f.stored {
		case len(fst):
			fast[label]++
		case len(def):
		default:
			t.Fatalf("%s: frame of %d bytes stored, want %d (default) or %d (fast)", label, f.stored, len(def), len(fst))
		}
	}
	if frameN["app.db"] < 8 || fast["app.db"] == 0 {
		t.Fatalf("app.db: %d of %d groups at the fast effort, want some (log-like pages, 11 groups)", fast["app.db"], frameN["app.db"])
	}
	if frameN["big.log"] < 16 || fast["big.log"] == 0 {
		t.Fatalf("big.log: %d of %d chunks at the fast effort, want some (24 MiB of log text)", fast["big.log"], frameN["big.log"])
	}
	if frameN["small.log"] == 0 || fast["small.log"] != 0 {
		t.Fatalf("small.log: %d of %d chunks at the fast effort, want none (under 8 MiB)", fast["small.log"], frameN["small.log"])
	}
	for label, n := range fast {
		if label != "app.db" && label != "big.log" && n != 0 {
			t.Fatalf("%s: %d of %d frames at the fast effort, want none (under 8 MiB, or mixing files)", label, n, frameN[label])
		}
	}
	if frameN["small.log"] == 0 {
		t.Fatalf("small.log: no compressed chunk found (frames %v)", frameN)
	}
}
