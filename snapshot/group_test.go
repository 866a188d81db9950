package snapshot_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/pack"
)

// groupSource writes n small text files into dir/ and one of 600 KiB (a
// chunk of its own) beside them, and returns the root and the files.
func groupSource(t *testing.T, n int) (string, map[string][]byte) {
	files := map[string][]byte{"big.txt": fltText(999, 600<<10)}
	for i := range n {
		files[fmt.Sprintf("dir/f%03d.txt", i)] = fltText(uint64(i+1), 2000+i*100)
	}
	return fltSource(t, files), files
}

func oneReader(o *snapshot.BackupOptions) { o.ReadConcurrency = 1 }

// Small files are stored as the members of one frame; every reader gets
// each one's exact bytes back: restore, verify, and many concurrent loads
// through one ChunkReader (the mount's), which decode the frame once.
func TestSmallFilesGrouped(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	src, files := groupSource(t, 40)
	m := fltBackup(t, r, src, oneReader)

	var frame pack.Blob
	members := 0
	for name := range files {
		if !strings.HasPrefix(name, "dir/") {
			continue
		}
		_, b := fltLocate(t, repo, snapshot.Hash(files[name]))
		if b.Codec != pack.CodecGroup {
			t.Fatalf("%s stored with codec %d, want a group member", name, b.Codec)
		}
		if members > 0 && (b.Offset != frame.Offset || b.GroupRaw != frame.GroupRaw) {
			t.Fatalf("%s is in another group (offset %d) than the others (%d)", name, b.Offset, frame.Offset)
		}
		frame = b
		members++
	}
	if total := 40*2000 + 100*(39*40/2); int(frame.GroupRaw) != total || frame.Stored >= frame.GroupRaw/2 {
		t.Fatalf("group of %d bytes stored in %d, want %d bytes compressed to under half", frame.GroupRaw, frame.Stored, total)
	}
	if _, b := fltLocate(t, repo, snapshot.Hash(files["big.txt"])); b.Codec == pack.CodecGroup {
		t.Fatal("a 600 KiB chunk was grouped")
	}

	fltCompare(t, src, fltRestore(t, r, m))
	fltVerifyOK(t, r, m.BackupID)

	cr := r.NewChunkReader(4)
	defer cr.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(files))
	for range 4 {
		for name, data := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := cr.Load(ctx, snapshot.ChunkRef{ID: snapshot.Hash(data), Size: uint32(len(data))}, nil)
				if err == nil && !bytes.Equal(got, data) {
					err = fmt.Errorf("%s: wrong bytes", name)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FAULTS A1 for a group: one flipped byte in a frame damages the members
// whose bytes it changes, or every member when the frame no longer decodes
// (a byte of its header: always; one inside its blocks: depending on what
// the encoder put there — a raw literal decodes to one wrong byte).
// Verify names each damaged member's file, restore fails exactly those and
// restores the rest byte-identical; nothing wrong is ever returned.
func TestFaultsA1FlippedByteInGroup(t *testing.T) {
	for _, c := range []struct {
		name    string
		at      func(b pack.Blob) int64
		wantAll bool
	}{
		{"frame header", func(b pack.Blob) int64 { return int64(b.Offset) + 1 }, true},
		{"mid-frame", func(b pack.Blob) int64 { return int64(b.Offset) + int64(b.Stored)/2 }, false},
	} {
		t.Run(c.name, func(t *testing.T) { flippedByteInGroup(t, c.at, c.wantAll) })
	}
}

func flippedByteInGroup(t *testing.T, at func(pack.Blob) int64, wantAll bool) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	src, files := groupSource(t, 12)
	m := fltBackup(t, r, src, oneReader)

	packPath, b := fltLocate(t, repo, snapshot.Hash(files["dir/f000.txt"]))
	if b.Codec != pack.CodecGroup {
		t.Fatalf("codec %d, want a group member", b.Codec)
	}
	fltFlipByte(t, packPath, at(b), 0x40)
	r = fltReopen(t, r, repo)

	// The members the flip damaged: those whose bytes no longer load.
	damaged := map[string]bool{}
	for name, data := range files {
		got, err := r.LoadBlob(ctx, snapshot.Hash(data), nil)
		var ce *snapshot.CorruptError
		switch {
		case err == nil && bytes.Equal(got, data):
		case err == nil:
			t.Fatalf("%s: wrong bytes returned without an error", name)
		case !errors.As(err, &ce) || ce.ID != snapshot.Hash(data) || !strings.HasPrefix(name, "dir/f0"):
			t.Fatalf("%s: %v, want a group member's CorruptError naming it", name, err)
		default:
			damaged[name] = true
		}
	}
	if len(damaged) == 0 || (wantAll && len(damaged) != 12) {
		t.Fatalf("damaged members %v, want %s", slices.Sorted(maps.Keys(damaged)), map[bool]string{true: "all 12", false: "at least one"}[wantAll])
	}

	rep := fltVerify(t, r, true)
	sc := fltCheck(t, rep, m.BackupID)
	if sc.OK || len(sc.Problems) != len(damaged) {
		t.Fatalf("verify: %+v, want a problem for each damaged member %v", sc, slices.Sorted(maps.Keys(damaged)))
	}
	for _, p := range sc.Problems {
		if !damaged[p.Path] || !strings.Contains(p.Problem, "corrupt") {
			t.Errorf("problem %+v: want a damaged member's file, said to be corrupt", p)
		}
	}

	target := filepath.Join(t.TempDir(), "restore")
	_, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: target})
	var rf *snapshot.RestoreFailedError
	if !errors.As(err, &rf) || len(rf.Failed) != len(damaged) {
		t.Fatalf("restore: %v, want the %d damaged members failed", err, len(damaged))
	}
	var skip []string
	for _, f := range rf.Failed {
		if !damaged[f.Path] {
			t.Fatalf("restore failed %s, which is not damaged", f.Path)
		}
		skip = append(skip, f.Path)
	}
	fltCompare(t, src, target, skip...)
	for _, name := range skip {
		if _, err := os.Lstat(filepath.Join(target, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a file left for the damaged member %s: %v", name, err)
		}
	}
}
