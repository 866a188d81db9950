package index_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"snapforge/index"
	"snapforge/snapshot"
)

// benchBlobs is the catalog size for BenchmarkLookup: a repository of
// ~100 GiB at 1 MiB chunks.
const benchBlobs = 100_000

// benchIndex returns an on-disk index of benchBlobs blobs, closed and
// reopened so they are read from tables, not the memtable, and their ids.
func benchIndex(b *testing.B) (*index.DB, []snapshot.ID) {
	db, dir := newDisk(b, index.Options{})
	var ids []snapshot.ID
	for p := range benchBlobs / 1000 {
		pack, blobs := makePack("bench", p, 1000)
		addPack(b, db, pack, blobs)
		for _, bl := range blobs {
			ids = append(ids, bl.ID)
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	db, err := index.Open(dir, index.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db, ids
}

// BenchmarkLookup looks blobs up in an index of benchBlobs blobs.
func BenchmarkLookup(b *testing.B) {
	db, ids := benchIndex(b)
	ctx := context.Background()

	b.Run("hit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := db.Lookup(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	// A reused file's chunks, looked up in one read (LookupEach): the
	// per-blob cost against "hit" is what one transaction per Lookup costs.
	b.Run("each-of-16", func(b *testing.B) {
		refs := make([]snapshot.ChunkRef, 16)
		i := 0
		for b.Loop() {
			for k := range refs {
				refs[k].ID = ids[(i+k)%len(ids)]
			}
			err := db.LookupEach(ctx, refs, func(_ int, _ snapshot.Location, err error) bool {
				if err != nil {
					b.Fatal(err)
				}
				return true
			})
			if err != nil {
				b.Fatal(err)
			}
			i += len(refs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(refs)), "ns/blob")
	})
	b.Run("miss", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := db.Lookup(ctx, testID("absent", i)); !errors.Is(err, snapshot.ErrNotFound) {
				b.Fatal(err)
			}
			i++
		}
	})
}

// randomPack returns a pack of n blobs with random ids drawn from rng: as
// spread as real BLAKE3 ids, and cheap enough (~1 µs) to build inside the
// timed loop without StopTimer, whose ReadMemStats would dominate.
func randomPack(rng *rand.Rand, n int) (snapshot.ID, []snapshot.PackBlob) {
	fill := func(id *snapshot.ID) {
		for i := 0; i < len(id); i += 8 {
			binary.LittleEndian.PutUint64(id[i:], rng.Uint64())
		}
	}
	var pack snapshot.ID
	fill(&pack)
	blobs := make([]snapshot.PackBlob, n)
	for i := range blobs {
		fill(&blobs[i].ID)
		blobs[i].Location = snapshot.Location{Pack: pack, Offset: uint64(i) << 20, Stored: 1 << 20, Raw: 1 << 20}
	}
	return pack, blobs
}

// BenchmarkAddPack records packs of 40 blobs (64 MiB packs of ~1.6 MiB
// chunks). On disk each call is one synced commit; in memory shows the CPU
// cost alone.
func BenchmarkAddPack(b *testing.B) {
	for _, mem := range []bool{false, true} {
		b.Run(fmt.Sprintf("inmemory=%v", mem), func(b *testing.B) {
			var db *index.DB
			if mem {
				db = newMem(b, index.Options{})
			} else {
				db, _ = newDisk(b, index.Options{})
			}
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				pack, blobs := randomPack(rng, 40)
				if err := db.AddPack(ctx, pack, 64<<20, blobs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRemovePack removes a pack of 40 blobs from an index of
// benchBlobs blobs: the cost is the scan of every blob key.
func BenchmarkRemovePack(b *testing.B) {
	db, _ := benchIndex(b)
	ctx := context.Background()
	p := 0
	for b.Loop() {
		b.StopTimer()
		pack, blobs := makePack("removebench", p, 40)
		p++
		addPack(b, db, pack, blobs)
		b.StartTimer()
		if err := db.RemovePack(ctx, pack); err != nil {
			b.Fatal(err)
		}
	}
}
