package snapshot_test

// Tests for the FAULTS.md rows about repository corruption (A), resource
// exhaustion and I/O errors on the repository side (C1, C5), the owner lock
// (G3) and cancellation (B8), through the real engine and the real Badger
// index. Source-side faults are in source_faults_test.go. Helpers shared by
// both files are prefixed flt so they never clash with other test files.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/pack"
)

// ---- helpers (shared with source_faults_test.go) ----

const fltMarker = ".snapforge-restore-in-progress"

// fltText returns n bytes of compressible text that depends on seed.
func fltText(seed uint64, n int) []byte {
	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "%s %d ", words[rng.IntN(len(words))], rng.IntN(1000))
		if rng.IntN(12) == 0 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()[:n]
}

// fltSource creates a source tree from rel path → content and returns its root.
func fltSource(t testing.TB, files map[string][]byte) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, data := range files {
		indextest.WriteFile(t, filepath.Join(root, rel), data)
	}
	return root
}

// fltBackup backs up root and fails the test on error.
func fltBackup(t testing.TB, r *snapshot.Repo, root string, mod ...func(*snapshot.BackupOptions)) *snapshot.Manifest {
	t.Helper()
	o := snapshot.BackupOptions{Root: root}
	for _, m := range mod {
		m(&o)
	}
	m, err := r.Backup(context.Background(), o)
	if err != nil {
		t.Fatalf("backup %s: %v", root, err)
	}
	return m
}

// fltRestore restores m into a new directory and returns it.
func fltRestore(t testing.TB, r *snapshot.Repo, m *snapshot.Manifest) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restore")
	if _, err := r.Restore(context.Background(), m, snapshot.RestoreOptions{Target: target}); err != nil {
		t.Fatalf("restore %s: %v", m.BackupID, err)
	}
	return target
}

// fltCompare compares the source tree with a restored one byte for byte
// (content, modes, mtimes, links). Paths in skipSrc are left out of the
// source side only, so finding one of them in the target is a failure.
func fltCompare(t testing.TB, src, target string, skipSrc ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, s := range skipSrc {
		skip[s] = true
	}
	want := indextest.Digest(t, src, func(rel string) bool { return skip[rel] })
	got := indextest.Digest(t, target, func(rel string) bool { return rel == fltMarker })
	indextest.CompareDigests(t, want, got)
}

// fltNoTemp fails the test if <repo>/tmp holds anything.
func fltNoTemp(t testing.TB, repo string) {
	t.Helper()
	if names := indextest.Names(t, filepath.Join(repo, "tmp")); len(names) > 0 {
		t.Fatalf("temporary files left in %s/tmp: %q", repo, names)
	}
}

// fltPacks returns the paths of every pack file in the repository.
func fltPacks(t testing.TB, repo string) []string {
	t.Helper()
	out, err := filepath.Glob(filepath.Join(repo, "packs", "*", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fltPackID returns the id of the pack file at p.
func fltPackID(t testing.TB, p string) snapshot.ID {
	t.Helper()
	id, err := snapshot.ParseID(strings.TrimSuffix(filepath.Base(p), ".pack"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fltTrailer reads the trailer of the pack file at p.
func fltTrailer(t testing.TB, p string) []pack.Blob {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := pack.ReadTrailer(f, fi.Size())
	if err != nil {
		t.Fatalf("read trailer of %s: %v", p, err)
	}
	return blobs
}

// fltLocate finds blob id in the pack files (not through the index) and
// returns the pack's path and the blob's trailer entry.
func fltLocate(t testing.TB, repo string, id snapshot.ID) (string, pack.Blob) {
	t.Helper()
	for _, p := range fltPacks(t, repo) {
		for _, b := range fltTrailer(t, p) {
			if b.ID == id {
				return p, b
			}
		}
	}
	t.Fatalf("blob %s is in no pack of %s", id.Short(), repo)
	return "", pack.Blob{}
}

// fltCheck returns the verify result of one snapshot.
func fltCheck(t testing.TB, rep *snapshot.VerifyReport, id string) snapshot.SnapshotCheck {
	t.Helper()
	for _, s := range rep.Snapshots {
		if s.BackupID == id {
			return s
		}
	}
	t.Fatalf("snapshot %s not in the verify report (%+v)", id, rep.Snapshots)
	return snapshot.SnapshotCheck{}
}

// fltVerify runs Verify and fails the test on an operational error.
func fltVerify(t testing.TB, r *snapshot.Repo, readData bool, ids ...string) *snapshot.VerifyReport {
	t.Helper()
	rep, err := r.Verify(context.Background(), ids, snapshot.VerifyOptions{ReadData: readData})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// fltVerifyOK runs a read-all-data verify of ids and requires it to pass.
func fltVerifyOK(t testing.TB, r *snapshot.Repo, ids ...string) {
	t.Helper()
	rep := fltVerify(t, r, true, ids...)
	if !rep.OK() {
		t.Fatalf("verify --read-data failed: packs %+v, snapshots %+v", rep.Packs, rep.Snapshots)
	}
	if len(ids) > 0 && len(rep.Snapshots) != len(ids) {
		t.Fatalf("verify checked %d snapshots, want %d", len(rep.Snapshots), len(ids))
	}
}

// fltItem returns the manifest item at path p.
func fltItem(m *snapshot.Manifest, p string) (snapshot.Item, bool) {
	for _, it := range m.Items {
		if it.RawPath() == p {
			return it, true
		}
	}
	return snapshot.Item{}, false
}

// fltReopen closes r and opens the repository again, so startup recovery runs.
func fltReopen(t testing.TB, r *snapshot.Repo, repo string, mod ...func(*snapshot.Options)) *snapshot.Repo {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return indextest.OpenRepo(t, repo, mod...)
}

// fltFlipByte flips the bits of mask in the byte of file p at off.
func fltFlipByte(t testing.TB, p string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// fltLaterClock makes every file of the test older than the engine's
// timestamp-granularity window, so incremental backups may trust them (the
// clock is the one fake the rules allow).
func fltLaterClock(o *snapshot.Options) {
	o.Now = func() time.Time { return time.Now().Add(time.Hour) }
}

// ---- A. Repository corruption ----

// FAULTS A1: one flipped byte inside a chunk's compressed payload.
func TestFaultsA1FlippedPayloadByte(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	damaged := fltText(1, 256<<10) // one chunk (the chunker's minimum), and too large to be grouped
	src1 := fltSource(t, map[string][]byte{"a.txt": damaged, "b.txt": fltText(2, 64<<10)})
	src2 := fltSource(t, map[string][]byte{"sub/a-copy.txt": damaged, "c.txt": fltText(3, 10<<10)})
	src3 := fltSource(t, map[string][]byte{"d.txt": fltText(4, 10<<10)})
	s1 := fltBackup(t, r, src1)
	s2 := fltBackup(t, r, src2)
	s3 := fltBackup(t, r, src3)

	chunk := snapshot.Hash(damaged)
	packPath, blob := fltLocate(t, repo, chunk)
	if blob.Codec != pack.CodecZstd {
		t.Fatalf("chunk stored with codec %d; the test wants a compressed payload", blob.Codec)
	}
	packID := fltPackID(t, packPath)
	fltFlipByte(t, packPath, int64(blob.Offset)+int64(blob.Stored)/2, 0x40)
	r = fltReopen(t, r, repo)

	// The structural check reads no chunk data, so a payload byte flip with
	// unchanged lengths is invisible to it: that is what ReadData is for.
	if rep := fltVerify(t, r, false); !rep.OK() {
		t.Fatalf("structural verify found something it cannot see: packs %+v snapshots %+v", rep.Packs, rep.Snapshots)
	}

	rep := fltVerify(t, r, true)
	if rep.OK() || len(rep.Packs) != 0 {
		t.Fatalf("read-data verify: ok=%v packs=%+v, want a snapshot-level failure and no pack-level problem", rep.OK(), rep.Packs)
	}
	for _, c := range []struct {
		m    *snapshot.Manifest
		path string
	}{{s1, "a.txt"}, {s2, "sub/a-copy.txt"}} {
		sc := fltCheck(t, rep, c.m.BackupID)
		if sc.OK || len(sc.Problems) != 1 || sc.Problems[0].Path != c.path {
			t.Fatalf("snapshot %s: %+v, want exactly one problem for %s", c.m.BackupID, sc, c.path)
		}
		msg := sc.Problems[0].Problem
		for _, want := range []string{chunk.Short(), packID.Short(), "corrupt"} {
			if !strings.Contains(msg, want) {
				t.Errorf("snapshot %s problem %q does not name %q", c.m.BackupID, msg, want)
			}
		}
	}
	if sc := fltCheck(t, rep, s3.BackupID); !sc.OK {
		t.Fatalf("snapshot %s does not use the chunk but failed: %+v", s3.BackupID, sc)
	}

	target := filepath.Join(t.TempDir(), "restore")
	res, err := r.Restore(ctx, s1, snapshot.RestoreOptions{Target: target})
	var rf *snapshot.RestoreFailedError
	if !errors.As(err, &rf) {
		t.Fatalf("restore of the damaged snapshot: err = %v, want *RestoreFailedError", err)
	}
	if len(rf.Failed) != 1 || rf.Failed[0].Path != "a.txt" || !strings.Contains(err.Error(), "a.txt") {
		t.Fatalf("restore failure %q (%+v) must name exactly a.txt", err, rf.Failed)
	}
	if res == nil || res.Files != 1 {
		t.Fatalf("restore result %+v, want 1 file restored", res)
	}
	// The other file is byte-identical; nothing of a.txt remains, not even
	// its temporary name.
	fltCompare(t, src1, target, "a.txt")
	for _, n := range indextest.Names(t, target) {
		if strings.HasPrefix(n, ".sfr-") || n == "a.txt" {
			t.Fatalf("partial file %q left at the target", n)
		}
	}
}

// FAULTS A3: a pack truncated in the middle of a blob.
func TestFaultsA3TruncatedPack(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t, fltLaterClock)
	files := map[string][]byte{"a.txt": fltText(5, 80<<10), "b.bin": indextest.RandomBytes(6, 70<<10), "c.txt": fltText(7, 9<<10)}
	src := fltSource(t, files)
	old := fltBackup(t, r, src)

	// One data pack (the trees have a pack of their own): cut it.
	if all := fltPacks(t, repo); len(all) != 2 {
		t.Fatalf("%d packs after one small backup, want 2 (data and trees)", len(all))
	}
	dataPack, _ := fltLocate(t, repo, snapshot.Hash(files["a.txt"]))
	packs := []string{dataPack}
	cut := fltPackID(t, packs[0])
	whole, err := os.Stat(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	first := fltTrailer(t, packs[0])[0]
	if err := os.Truncate(packs[0], int64(first.Offset)+int64(first.Stored)/2); err != nil {
		t.Fatal(err)
	}
	r = fltReopen(t, r, repo, fltLaterClock)

	rep := fltVerify(t, r, false)
	if len(rep.Packs) != 1 || rep.Packs[0].Pack != cut.String() || !strings.Contains(rep.Packs[0].Problem, "size mismatch with index") {
		t.Fatalf("structural verify packs = %+v, want %s with a size mismatch with index", rep.Packs, cut.Short())
	}
	if sc := fltCheck(t, rep, old.BackupID); sc.OK {
		t.Fatalf("snapshot %s reads from the truncated pack but verified OK", old.BackupID)
	}

	// The next backup of the same source must store the chunks again, not
	// deduplicate against the truncated pack.
	m := fltBackup(t, r, src)
	var total int64
	for _, data := range files {
		total += int64(len(data))
	}
	if m.Stats.NewBytes < total {
		t.Fatalf("new backup stored %d new bytes, want at least the %d bytes of the files", m.Stats.NewBytes, total)
	}
	// Packs are named by the hash of their bytes. The compressors run in
	// parallel, so blobs reach the pack in a varying order: when the new pack
	// happens to hold the same blobs in the same order, it is byte-identical
	// to the damaged one and its rename replaces the truncated file, which
	// heals the repository. Otherwise the chunks live in a new pack and the
	// truncated one stays reported until prune removes it.
	fi, err := os.Stat(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	healed := fi.Size() == whole.Size()
	for rel, data := range files {
		loc, err := r.Index().Lookup(ctx, snapshot.Hash(data))
		if err != nil {
			t.Fatal(err)
		}
		if (loc.Pack == cut) != healed {
			t.Fatalf("chunk of %s indexed in pack %s (truncated pack %s, rewritten whole: %v)", rel, loc.Pack.Short(), cut.Short(), healed)
		}
	}
	rep = fltVerify(t, r, true, m.BackupID)
	if sc := fltCheck(t, rep, m.BackupID); !sc.OK {
		t.Fatalf("new snapshot failed read-data verify: %+v", sc)
	}
	fltCompare(t, src, fltRestore(t, r, m))

	// Chunks are content-addressed: the re-stored copies carry the same ids
	// (and, the metadata being unchanged, the trees too), so the old snapshot
	// now reads entirely from the re-stored blobs and verifies OK.
	rep = fltVerify(t, r, true, old.BackupID)
	if sc := fltCheck(t, rep, old.BackupID); !sc.OK {
		t.Fatalf("old snapshot after the re-store: %+v, want OK (same content ids)", sc)
	}
	if healed {
		if len(rep.Packs) != 0 {
			t.Fatalf("packs = %+v after the pack was rewritten whole, want none", rep.Packs)
		}
	} else if len(rep.Packs) != 1 || rep.Packs[0].Pack != cut.String() {
		t.Fatalf("packs = %+v, want the truncated pack still reported", rep.Packs)
	}
	fltCompare(t, src, fltRestore(t, r, old))
}

// FAULTS A4: a pack that snapshots reference is deleted.
func TestFaultsA4DeletedPack(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	shared, other := fltText(8, 60<<10), fltText(9, 50<<10)
	src1 := fltSource(t, map[string][]byte{"a.txt": shared})
	src2 := fltSource(t, map[string][]byte{"a.txt": shared, "docs/b.txt": other})
	src3 := fltSource(t, map[string][]byte{"b.txt": other})
	s1 := fltBackup(t, r, src1) // data pack P1: a.txt's chunk (s1's tree in a tree pack)
	s2 := fltBackup(t, r, src2) // a.txt deduplicated into P1; b.txt in P2
	s3 := fltBackup(t, r, src3) // b.txt deduplicated into P2; nothing in P1

	p1, _ := fltLocate(t, repo, snapshot.Hash(shared))
	gone := fltPackID(t, p1)
	if err := os.Remove(p1); err != nil {
		t.Fatal(err)
	}
	r = fltReopen(t, r, repo)

	rep := fltVerify(t, r, false)
	if len(rep.Packs) != 1 || rep.Packs[0].Pack != gone.String() || !strings.Contains(rep.Packs[0].Problem, "missing") {
		t.Fatalf("packs = %+v, want %s reported missing", rep.Packs, gone.Short())
	}
	// s1 and s2 both lose a.txt's content; their trees (in a tree pack)
	// still list every file.
	for _, s := range []*snapshot.Manifest{s1, s2} {
		sc := fltCheck(t, rep, s.BackupID)
		if sc.OK || len(sc.Problems) != 1 || sc.Problems[0].Path != "a.txt" ||
			!strings.Contains(sc.Problems[0].Problem, gone.Short()) || !strings.Contains(sc.Problems[0].Problem, "missing") {
			t.Fatalf("snapshot %s: %+v, want exactly a.txt reported with the missing pack %s", s.BackupID, sc, gone.Short())
		}
	}
	if sc := fltCheck(t, rep, s3.BackupID); !sc.OK {
		t.Fatalf("snapshot %s does not use the deleted pack but failed: %+v", s3.BackupID, sc)
	}

	// Startup recovery (the reopen above) noted the missing pack, so the next
	// backup stores a.txt's chunk again instead of deduplicating against it.
	m := fltBackup(t, r, src2)
	loc, err := r.Index().Lookup(ctx, snapshot.Hash(shared))
	if err != nil {
		t.Fatal(err)
	}
	// Packs are named by the hash of their bytes: a new pack holding just
	// that chunk is byte-identical to the deleted one and takes its place,
	// which heals the repository; otherwise the chunk is in a new pack.
	if _, err := os.Stat(filepath.Join(repo, "packs", loc.Pack.String()[:2], loc.Pack.String()+".pack")); err != nil {
		t.Fatalf("the chunk is indexed in pack %s, which is not on disk (deduplicated against the deleted pack?): %v", loc.Pack.Short(), err)
	}
	healed := loc.Pack == gone
	if m.Stats.NewBytes < int64(len(shared)) {
		t.Fatalf("new bytes %d, want at least the %d bytes of a.txt", m.Stats.NewBytes, len(shared))
	}
	rep = fltVerify(t, r, true, m.BackupID)
	if sc := fltCheck(t, rep, m.BackupID); !sc.OK {
		t.Fatalf("new snapshot failed read-data verify: %+v", sc)
	}
	if healed && len(rep.Packs) != 0 {
		t.Fatalf("packs = %+v after the deleted pack was rewritten whole, want none", rep.Packs)
	}
	if !healed && (len(rep.Packs) != 1 || rep.Packs[0].Pack != gone.String()) {
		t.Fatalf("packs = %+v, want only the deleted pack reported (until prune forgets it)", rep.Packs)
	}
	fltCompare(t, src2, fltRestore(t, r, m))
}

// FAULTS A6: the Badger directory is deleted.
func TestFaultsA6IndexDeleted(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	src := fltSource(t, map[string][]byte{"a.txt": fltText(10, 30<<10), "d/b.bin": indextest.RandomBytes(11, 20<<10)})
	m := fltBackup(t, r, src)
	r.Close()
	if err := os.RemoveAll(filepath.Join(repo, "index")); err != nil {
		t.Fatal(err)
	}

	// Open is the only way into a repository: every operation refuses.
	r2, err := snapshot.Open(ctx, repo, indextest.Options())
	if err == nil {
		r2.Close()
		t.Fatal("open without an index succeeded; it must refuse, never treat the repository as empty")
	}
	if !errors.Is(err, snapshot.ErrIndexMissing) || !strings.Contains(err.Error(), "repair index") {
		t.Fatalf("open error %q, want ErrIndexMissing telling to run `repair index`", err)
	}
	if _, err := os.Stat(filepath.Join(repo, "index")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused open created an index directory: %v", err)
	}

	// In repair mode the snapshots are still there, and nothing that needs
	// the index runs.
	r = indextest.OpenRepo(t, repo, func(o *snapshot.Options) { o.AllowMissingIndex = true })
	list, err := r.Snapshots(ctx)
	if err != nil || len(list) != 1 || list[0].BackupID != m.BackupID || list[0].Manifest == nil {
		t.Fatalf("snapshots without an index = %+v, %v; want %s listed", list, err, m.BackupID)
	}
	if _, err := r.Backup(ctx, snapshot.BackupOptions{Root: src}); !errors.Is(err, snapshot.ErrIndexMissing) {
		t.Fatalf("backup without an index: %v, want ErrIndexMissing", err)
	}
	if _, err := r.Verify(ctx, nil, snapshot.VerifyOptions{}); !errors.Is(err, snapshot.ErrIndexMissing) {
		t.Fatalf("verify without an index: %v, want ErrIndexMissing", err)
	}
	if _, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: filepath.Join(t.TempDir(), "t")}); !errors.Is(err, snapshot.ErrIndexMissing) {
		t.Fatalf("restore without an index: %v, want ErrIndexMissing", err)
	}
	rr, err := r.RepairIndex(ctx)
	if err != nil {
		t.Fatalf("repair index: %v", err)
	}
	if rr.Packs != len(fltPacks(t, repo)) || rr.Snapshots != 1 || len(rr.DamagedPacks) != 0 {
		t.Fatalf("repair report %+v", rr)
	}

	r = fltReopen(t, r, repo)
	fltVerifyOK(t, r)
	fltCompare(t, src, fltRestore(t, r, m))
}

// fltDamagedRepo returns a closed repository with two snapshots, of srcA and
// srcB, for the A9 cases.
func fltDamagedRepo(t *testing.T) (repo string, a, b *snapshot.Manifest, srcA, srcB string) {
	r, repo := indextest.NewRepo(t)
	srcA = fltSource(t, map[string][]byte{"x.txt": fltText(12, 20<<10), "y.txt": fltText(13, 5<<10)})
	srcB = fltSource(t, map[string][]byte{"z.txt": fltText(14, 20<<10)})
	a = fltBackup(t, r, srcA)
	b = fltBackup(t, r, srcB)
	r.Close()
	return repo, a, b, srcA, srcB
}

// FAULTS A9: one snapshot's manifest is corrupted.
func TestFaultsA9DamagedManifest(t *testing.T) {
	t.Run("broken JSON", func(t *testing.T) {
		ctx := t.Context()
		repo, a, b, srcA, srcB := fltDamagedRepo(t)
		p := filepath.Join(repo, "snapshots", a.BackupID+".json")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[0] ^= 0x01 // '{' becomes 'z'
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := indextest.OpenRepo(t, repo)

		list, err := r.Snapshots(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("snapshots = %+v, %v; want both listed", list, err)
		}
		for _, e := range list {
			var de *snapshot.DamagedError
			switch e.BackupID {
			case a.BackupID:
				if e.Manifest != nil || !errors.As(e.Err, &de) || de.BackupID != a.BackupID {
					t.Fatalf("damaged snapshot listed as %+v, want a DamagedError", e)
				}
			case b.BackupID:
				if e.Manifest == nil || e.Err != nil {
					t.Fatalf("sound snapshot listed as %+v", e)
				}
			default:
				t.Fatalf("unexpected snapshot %s", e.BackupID)
			}
		}
		var de *snapshot.DamagedError
		if _, err := r.Resolve(ctx, a.BackupID); !errors.As(err, &de) {
			t.Fatalf("resolve damaged snapshot: %v, want DamagedError", err)
		}
		rep := fltVerify(t, r, true)
		if sc := fltCheck(t, rep, a.BackupID); sc.OK || len(sc.Problems) != 1 || !strings.Contains(sc.Problems[0].Problem, "is damaged") {
			t.Fatalf("damaged snapshot verify: %+v", sc)
		}
		if sc := fltCheck(t, rep, b.BackupID); !sc.OK {
			t.Fatalf("sound snapshot verify: %+v", sc)
		}
		fltCompare(t, srcB, fltRestore(t, r, b))
		// A damaged snapshot is never taken as the parent of a new backup.
		m := fltBackup(t, r, srcA)
		if m.Parent != "" {
			t.Fatalf("new backup took parent %q", m.Parent)
		}
		fltVerifyOK(t, r, m.BackupID)
	})

	t.Run("edited blake3, valid JSON", func(t *testing.T) {
		ctx := t.Context()
		repo, a, b, _, srcB := fltDamagedRepo(t)
		p := filepath.Join(repo, "snapshots", a.BackupID+".json")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		key := []byte(`"blake3":"`)
		i := bytes.Index(data, key)
		if i < 0 {
			t.Fatalf("no blake3 field in %s", data)
		}
		i += len(key)
		if data[i] == '0' {
			data[i] = '1'
		} else {
			data[i] = '0'
		}
		if !json.Valid(data) {
			t.Fatal("edit broke the JSON")
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := indextest.OpenRepo(t, repo)

		// The file still parses, so it is listed; the edit is caught by verify,
		// which recomputes the root hash from the items and from the trees.
		list, err := r.Snapshots(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("snapshots = %+v, %v; want both listed", list, err)
		}
		rep := fltVerify(t, r, true)
		sc := fltCheck(t, rep, a.BackupID)
		if sc.OK || len(sc.Problems) != 1 || !strings.Contains(sc.Problems[0].Problem, "do not match its root hash") {
			t.Fatalf("edited snapshot verify: %+v, want a root-hash mismatch", sc)
		}
		if sc := fltCheck(t, rep, b.BackupID); !sc.OK {
			t.Fatalf("sound snapshot verify: %+v", sc)
		}
		fltCompare(t, srcB, fltRestore(t, r, b))
	})
}

// fltRLEBomb returns a zstd frame of blocks RLE blocks of 128 KiB each (that
// is blocks×128 KiB of output from 4 bytes per block). fcs is the frame
// content size it declares; fcs < 0 declares none.
func fltRLEBomb(blocks int, fcs int64) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0xFD2FB528)
	if fcs < 0 {
		b = append(b, 0x00) // no content size, not single-segment
	} else {
		b = append(b, 0xC0) // 8-byte content size, not single-segment
	}
	b = append(b, 10<<3) // window descriptor: 1 MiB
	if fcs >= 0 {
		b = binary.LittleEndian.AppendUint64(b, uint64(fcs))
	}
	const blockSize = 128 << 10
	for i := range blocks {
		h := uint32(blockSize)<<3 | 1<<1 // RLE block
		if i == blocks-1 {
			h |= 1 // last block
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 'A')
	}
	return b
}

// FAULTS A10: zstd bombs in a crafted pack.
func TestFaultsA10ZstdBomb(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	good := fltText(15, 64<<10)
	fltBackup(t, r, fltSource(t, map[string][]byte{"good.txt": good}))

	const raw = 4096
	const blocks = 8192 // 1 GiB if decoded
	bombs := []struct {
		name  string
		frame []byte
	}{
		{"frame declares 64 GiB", fltRLEBomb(blocks, 64<<30)},
		{"no declared size, 1 GiB of output", fltRLEBomb(blocks, -1)},
		{"declares the recorded size, produces 1 GiB", fltRLEBomb(blocks, raw)},
	}
	var buf bytes.Buffer
	w := pack.NewWriter(&buf)
	for _, bm := range bombs {
		if _, err := w.Add(snapshot.Hash([]byte("A10 "+bm.name)), pack.KindData, pack.CodecZstd, bm.frame, raw); err != nil {
			t.Fatal(err)
		}
	}
	pid, _, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	hexID := snapshot.ID(pid).String()
	indextest.WriteFile(t, filepath.Join(repo, "packs", hexID[:2], hexID+".pack"), buf.Bytes())
	r = fltReopen(t, r, repo) // startup recovery adopts the pack into the index

	// Warm the shared decoder with a real compressed chunk, so its one-time
	// setup is not counted against the bombs.
	if _, err := r.LoadBlob(ctx, snapshot.Hash(good), nil); err != nil {
		t.Fatal(err)
	}
	for _, bm := range bombs {
		t.Run(bm.name, func(t *testing.T) {
			id := snapshot.Hash([]byte("A10 " + bm.name))
			if loc, err := r.Index().Lookup(ctx, id); err != nil || loc.Pack != snapshot.ID(pid) {
				t.Fatalf("crafted blob not adopted: %+v, %v", loc, err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			out, err := r.LoadBlob(ctx, id, nil)
			runtime.ReadMemStats(&after)
			var ce *snapshot.CorruptError
			if !errors.As(err, &ce) || ce.ID != id || ce.Pack != snapshot.ID(pid) {
				t.Fatalf("LoadBlob = %d bytes, %v; want a CorruptError for the chunk and the pack", len(out), err)
			}
			// Unbounded decoding would allocate up to the decoder's 64 MiB
			// ceiling or the frame's 1 GiB; bounded rejection costs KiBs.
			if d := after.TotalAlloc - before.TotalAlloc; d > 8<<20 {
				t.Fatalf("rejecting the bomb allocated %d MiB; decoding must stay bounded by the recorded %d bytes", d>>20, raw)
			}
		})
	}
}

// FAULTS A13: an unknown format version or mandatory feature.
func TestFaultsA13UnknownFormat(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	r.Close()
	cfgPath := filepath.Join(repo, "snapforge.json")
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		key         string
		value       any
		wantHave    int
		wantFeature string
	}{
		{"format version 99", "format_version", 99, 99, ""},
		{"unknown mandatory feature", "features", []string{"chunk-encryption-v9"}, snapshot.FormatVersion, "chunk-encryption-v9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cfg map[string]any
			if err := json.Unmarshal(orig, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg[c.key] = c.value
			b, _ := json.Marshal(cfg)
			if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(cfgPath, orig, 0o600) })
			r, err := snapshot.Open(ctx, repo, indextest.Options())
			if err == nil {
				r.Close()
				t.Fatal("open succeeded")
			}
			var ve *snapshot.VersionError
			if !errors.As(err, &ve) || ve.Have != c.wantHave || ve.Feature != c.wantFeature || !strings.Contains(err.Error(), "upgrade") {
				t.Fatalf("open error %q (%+v), want a VersionError saying to upgrade", err, ve)
			}
		})
	}
	indextest.OpenRepo(t, repo) // the original config opens again
}

// fltCopyDir copies the regular files of a flat directory.
func fltCopyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range indextest.Names(t, from) {
		b, err := os.ReadFile(filepath.Join(from, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// FAULTS A14: another repository's index swapped in.
func TestFaultsA14SwappedIndex(t *testing.T) {
	ctx := t.Context()
	rA, repoA := indextest.NewRepo(t)
	rB, repoB := indextest.NewRepo(t)
	srcA := fltSource(t, map[string][]byte{"a.txt": fltText(16, 40<<10)})
	mA := fltBackup(t, rA, srcA)
	fltBackup(t, rB, fltSource(t, map[string][]byte{"b.txt": fltText(17, 40<<10)}))
	idA, idB := rA.Config().RepositoryID, rB.Config().RepositoryID
	rA.Close()
	rB.Close()
	if err := os.RemoveAll(filepath.Join(repoA, "index")); err != nil {
		t.Fatal(err)
	}
	fltCopyDir(t, filepath.Join(repoB, "index"), filepath.Join(repoA, "index"))

	r, err := snapshot.Open(ctx, repoA, indextest.Options())
	if err == nil {
		r.Close()
		t.Fatal("open with another repository's index succeeded")
	}
	var me *snapshot.RepoMismatchError
	if !errors.As(err, &me) || me.Repo != idA || me.Index != idB || !strings.Contains(err.Error(), "repair index") {
		t.Fatalf("open error %q, want RepoMismatchError(%s vs %s) offering `repair index`", err, idA, idB)
	}

	r = indextest.OpenRepo(t, repoA, func(o *snapshot.Options) { o.AllowMissingIndex = true })
	rr, err := r.RepairIndex(ctx)
	if err != nil {
		t.Fatalf("repair index: %v", err)
	}
	if rr.Packs != len(fltPacks(t, repoA)) || rr.Snapshots != 1 {
		t.Fatalf("repair report %+v", rr)
	}
	r = fltReopen(t, r, repoA)
	fltVerifyOK(t, r)
	fltCompare(t, srcA, fltRestore(t, r, mA))
	indextest.OpenRepo(t, repoB) // B is untouched
}

// ---- C. Resource exhaustion and I/O errors ----

// FAULTS C1: the disk fills up while a pack is written.
func TestFaultsC1DiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FAULTS C1 needs root to mount a 64 MiB tmpfs (CI runs as root)")
	}
	ctx := t.Context()
	mnt := filepath.Join(t.TempDir(), "small-disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	repo := filepath.Join(mnt, "repo")
	r, err := snapshot.Init(ctx, repo, snapshot.InitOptions{}, indextest.Options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	src := fltSource(t, map[string][]byte{"small.txt": fltText(18, 8<<10)})
	m1 := fltBackup(t, r, src)

	big := filepath.Join(src, "big.bin")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{19})
	if _, err := io.CopyN(f, rng, 100<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), repo) {
		t.Fatalf("backup onto a full disk: %v; want ENOSPC naming the repository %s", err, repo)
	}
	if list, err := r.Snapshots(ctx); err != nil || len(list) != 1 || list[0].BackupID != m1.BackupID {
		t.Fatalf("snapshots after the failed backup: %+v, %v", list, err)
	}
	fltNoTemp(t, repo)
	fltVerifyOK(t, r, m1.BackupID)

	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	m3 := fltBackup(t, r, src)
	fltVerifyOK(t, r, m3.BackupID)
	fltCompare(t, src, fltRestore(t, r, m3))
}

// eioSyncFile fails every Sync with EIO and counts the calls.
type eioSyncFile struct {
	snapshot.WriteFile
	syncs atomic.Int32
}

func (f *eioSyncFile) Sync() error {
	f.syncs.Add(1)
	return syscall.EIO
}

// FAULTS C5: fsync of the pack returns EIO.
func TestFaultsC5FsyncEIO(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	r.Close()
	src := fltSource(t, map[string][]byte{"a.txt": fltText(20, 40<<10), "b.bin": indextest.RandomBytes(21, 30<<10)})

	var mu sync.Mutex
	var wrapped []*eioSyncFile
	r = indextest.OpenRepo(t, repo, func(o *snapshot.Options) {
		o.WrapPackFile = func(f snapshot.WriteFile) snapshot.WriteFile {
			w := &eioSyncFile{WriteFile: f}
			mu.Lock()
			wrapped = append(wrapped, w)
			mu.Unlock()
			return w
		}
	})
	_, err := r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "fsync pack") {
		t.Fatalf("backup with a failing fsync: %v, want EIO from fsync pack", err)
	}
	// Only the pack was opened (no manifest was attempted), and its fsync
	// was not retried on the same descriptor.
	mu.Lock()
	defer mu.Unlock()
	// (a data pack and a tree pack: the first fsync fails, nothing after it
	// is synced)
	if len(wrapped) < 1 || len(wrapped) > 2 {
		t.Fatalf("wrapped files %d (%v), want the temporary packs only", len(wrapped), wrapped)
	}
	var syncs int32
	for _, w := range wrapped {
		if !strings.HasPrefix(w.Name(), filepath.Join(repo, "tmp", "pack-")) {
			t.Fatalf("wrapped %s, want only temporary packs (no manifest attempted)", w.Name())
		}
		syncs += w.syncs.Load()
	}
	if syncs != 1 {
		t.Fatalf("Sync called %d times, want exactly 1 (no retry on the same fd, nothing synced after the failure)", syncs)
	}
	if list, err := r.Snapshots(ctx); err != nil || len(list) != 0 {
		t.Fatalf("snapshots after the failed backup: %+v, %v", list, err)
	}
	fltNoTemp(t, repo)
	if p := fltPacks(t, repo); len(p) != 0 {
		t.Fatalf("packs committed after a failed fsync: %q", p)
	}

	r = fltReopen(t, r, repo)
	m := fltBackup(t, r, src)
	fltVerifyOK(t, r, m.BackupID)
	fltCompare(t, src, fltRestore(t, r, m))
}

// ---- G. Concurrency ----

// FAULTS G3 (in process; the cross-process case is in the CLI tests).
func TestFaultsG3SecondOpenIsRefused(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t, func(o *snapshot.Options) { o.Command = "faults-g3-holder" })
	r2, err := snapshot.Open(ctx, repo, indextest.Options())
	if err == nil {
		r2.Close()
		t.Fatal("second open of a repository in use succeeded")
	}
	var le *snapshot.LockedError
	pid := fmt.Sprintf("pid %d ", os.Getpid())
	if !errors.As(err, &le) || !strings.HasPrefix(le.Holder, pid) || !strings.Contains(le.Holder, "faults-g3-holder") ||
		!strings.Contains(err.Error(), "repository in use by "+pid) {
		t.Fatalf("second open: %q, want a LockedError naming %q and the command faults-g3-holder", err, pid)
	}
	r.Close()
	r2 = indextest.OpenRepo(t, repo)
	if list, err := r2.Snapshots(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after the holder closed: %+v, %v", list, err)
	}
}

// Root working in another user's repository hands what it created there to
// that user when it closes it (index logs, audit, lock, packs, manifests):
// the user's next open works. A root run killed midway is mended by the
// next open as root.
func TestRootGivesBackAnotherUsersRepository(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: handing files to another user is root's")
	}
	r, repo := indextest.NewRepo(t)
	r.Close()
	chownAll := func(uid int) {
		filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error { return os.Lchown(p, uid, uid) })
	}
	rootOwned := func() []string {
		var out []string
		filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
			var st syscall.Stat_t
			if err == nil && syscall.Lstat(p, &st) == nil && st.Uid == 0 {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	chownAll(65534)
	src := fltSource(t, map[string][]byte{"a.txt": fltText(3, 20<<10), "b.bin": indextest.RandomBytes(4, 300<<10)})
	r = indextest.OpenRepo(t, repo)
	m := fltBackup(t, r, src)
	if got := rootOwned(); len(got) == 0 {
		t.Fatal("nothing root-owned while root works in the repository: the test no longer checks the hand-back")
	}
	r.Close()
	if got := rootOwned(); len(got) != 0 {
		t.Fatalf("root-owned after root closed another user's repository: %q", got)
	}
	// Killed midway: root's files stay root's until the next open as root.
	leftover := filepath.Join(repo, "tmp", "left-by-a-killed-root-run")
	indextest.WriteFile(t, leftover, []byte("x"))
	r = indextest.OpenRepo(t, repo)
	if got := rootOwned(); slices.Contains(got, leftover) {
		t.Errorf("a root-owned leftover not handed back at open: %q", got)
	}
	fltVerifyOK(t, r, m.BackupID)
	r.Close()
	if got := rootOwned(); len(got) != 0 {
		t.Fatalf("root-owned after the second close: %q", got)
	}
	// A root-owned repository stays root's.
	chownAll(0)
	indextest.OpenRepo(t, repo).Close()
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(repo, "snapforge.json"), &st); err != nil || st.Uid != 0 {
		t.Fatalf("root's own repository: snapforge.json uid %d (%v)", st.Uid, err)
	}
}

// ---- B. Crashes and kills ----

// cancelAfter cancels a context once n bytes were read through it; reading
// continues normally.
type cancelAfter struct {
	r      io.Reader
	n      int64
	read   int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += int64(n)
	if c.read >= c.n {
		c.cancel()
	}
	return n, err
}

// FAULTS B8 (in process): the backup's context is cancelled midway.
func TestFaultsB8CancelledBackup(t *testing.T) {
	r, repo := indextest.NewRepo(t)
	src := fltSource(t, map[string][]byte{"big.bin": indextest.RandomBytes(22, 3<<20), "small.txt": fltText(23, 4<<10)})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var cancelled atomic.Bool
	_, err := r.Backup(ctx, snapshot.BackupOptions{Root: src, WrapReader: func(rel string, rd io.Reader) io.Reader {
		if rel != "big.bin" {
			return rd
		}
		return &cancelAfter{r: rd, n: 1 << 20, cancel: func() { cancelled.Store(true); cancel() }}
	}})
	if !cancelled.Load() {
		t.Fatal("the reader never cancelled")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backup: %v, want context.Canceled", err)
	}
	if list, err := r.Snapshots(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("snapshots after the cancelled backup: %+v, %v", list, err)
	}
	fltNoTemp(t, repo)
	if p := fltPacks(t, repo); len(p) != 0 {
		t.Fatalf("packs committed by the cancelled backup: %q", p)
	}

	m := fltBackup(t, r, src)
	fltVerifyOK(t, r)
	fltCompare(t, src, fltRestore(t, r, m))
}

// FAULTS A4 for trees: the pack holding a snapshot's trees is deleted. The
// snapshot is listed as affected (its files cannot be listed any more);
// data packs are untouched.
func TestFaultsA4DeletedTreePack(t *testing.T) {
	r, repo := indextest.NewRepo(t)
	src := fltSource(t, map[string][]byte{"a.txt": fltText(30, 20<<10), "d/b.txt": fltText(31, 10<<10)})
	s := fltBackup(t, r, src)
	root, err := s.TreeID()
	if err != nil {
		t.Fatal(err)
	}
	treePack, _ := fltLocate(t, repo, root)
	dataPack, _ := fltLocate(t, repo, snapshot.Hash(fltText(30, 20<<10)))
	if treePack == dataPack {
		t.Fatalf("trees and data share pack %s; trees belong in packs of their own", treePack)
	}
	if err := os.Remove(treePack); err != nil {
		t.Fatal(err)
	}
	r = fltReopen(t, r, repo)
	rep := fltVerify(t, r, false)
	if sc := fltCheck(t, rep, s.BackupID); sc.OK || len(sc.Problems) != 1 || !strings.Contains(sc.Problems[0].Problem, "trees unreadable") {
		t.Fatalf("snapshot %s: %+v, want its trees reported unreadable", s.BackupID, sc)
	}
}

// FAULTS A1 for a file of many chunks. verify --read-data proves such a file
// by its whole-file BLAKE3 alone (one hash pass, not two); a damaged chunk
// must still be named with its pack, in every snapshot that holds the file,
// other files stay sound, and after the damage is gone verify passes again.
// The chunk is stored raw (random bytes), so only a hash can see the flip.
func TestFaultsA1DamagedChunkOfLargeFile(t *testing.T) {
	r, repo := indextest.NewRepo(t)
	big := make([]byte, 12<<20)
	rand.NewChaCha8([32]byte{7}).Read(big)
	src1 := fltSource(t, map[string][]byte{"big.bin": big, "small.txt": fltText(1, 10<<10)})
	src2 := fltSource(t, map[string][]byte{"renamed/big.bin": big, "other.txt": fltText(2, 10<<10)})
	s1 := fltBackup(t, r, src1)
	s2 := fltBackup(t, r, src2)
	fltVerifyOK(t, r) // the fast path passes sound data

	n, err := r.FindNode(t.Context(), s1, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Chunks) < 4 {
		t.Fatalf("big.bin has %d chunks, want at least 4", len(n.Chunks))
	}
	chunk := n.Chunks[2].ID
	packPath, blob := fltLocate(t, repo, chunk)
	if blob.Codec != pack.CodecRaw {
		t.Fatalf("chunk stored with codec %d, want raw", blob.Codec)
	}
	packID := fltPackID(t, packPath)
	flip := func() { fltFlipByte(t, packPath, int64(blob.Offset)+int64(blob.Stored)/3, 0x01) }
	flip()
	r = fltReopen(t, r, repo)
	rep := fltVerify(t, r, true)
	for _, c := range []struct {
		m    *snapshot.Manifest
		path string
	}{{s1, "big.bin"}, {s2, "renamed/big.bin"}} {
		sc := fltCheck(t, rep, c.m.BackupID)
		if sc.OK || len(sc.Problems) != 1 || sc.Problems[0].Path != c.path {
			t.Fatalf("snapshot %s: %+v, want exactly one problem for %s", c.m.BackupID, sc, c.path)
		}
		msg := sc.Problems[0].Problem
		for _, want := range []string{chunk.Short(), packID.Short(), "does not match its hash"} {
			if !strings.Contains(msg, want) {
				t.Errorf("snapshot %s problem %q does not name %q", c.m.BackupID, msg, want)
			}
		}
	}
	flip() // the byte back: sound again
	r = fltReopen(t, r, repo)
	fltVerifyOK(t, r, s1.BackupID, s2.BackupID)
}
