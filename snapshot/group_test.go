package snapshot_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
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

// FAULTS A1 for a group: one flipped byte in the frame damages every
// member. Verify names each member's file, restore fails exactly those
// and restores the rest byte-identical; nothing wrong is ever returned.
func TestFaultsA1FlippedByteInGroup(t *testing.T) {
	ctx := t.Context()
	r, repo := indextest.NewRepo(t)
	src, files := groupSource(t, 12)
	m := fltBackup(t, r, src, oneReader)

	packPath, b := fltLocate(t, repo, snapshot.Hash(files["dir/f000.txt"]))
	if b.Codec != pack.CodecGroup {
		t.Fatalf("codec %d, want a group member", b.Codec)
	}
	fltFlipByte(t, packPath, int64(b.Offset)+int64(b.Stored)/2, 0x40)
	r = fltReopen(t, r, repo)

	rep := fltVerify(t, r, true)
	sc := fltCheck(t, rep, m.BackupID)
	if sc.OK || len(sc.Problems) != 12 {
		t.Fatalf("verify: %+v, want 12 problems (one per file of the group)", sc)
	}
	for _, p := range sc.Problems {
		if !strings.HasPrefix(p.Path, "dir/f0") || !strings.Contains(p.Problem, "corrupt") {
			t.Errorf("problem %+v: want a member file, said to be corrupt", p)
		}
	}

	target := filepath.Join(t.TempDir(), "restore")
	_, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: target})
	var rf *snapshot.RestoreFailedError
	if !errors.As(err, &rf) || len(rf.Failed) != 12 {
		t.Fatalf("restore: %v, want the 12 member files failed", err)
	}
	var skip []string
	for _, f := range rf.Failed {
		skip = append(skip, f.Path)
	}
	fltCompare(t, src, target, skip...)
	if got := indextest.Names(t, filepath.Join(target, "dir")); len(got) != 0 {
		t.Fatalf("files left for the damaged members: %v", got)
	}

	// Every member read alone fails as corrupt, naming itself.
	for i := range 12 {
		id := snapshot.Hash(files[fmt.Sprintf("dir/f%03d.txt", i)])
		_, err := r.LoadBlob(ctx, id, nil)
		var ce *snapshot.CorruptError
		if !errors.As(err, &ce) || ce.ID != id {
			t.Fatalf("member %d: %v, want a CorruptError naming it", i, err)
		}
	}
}
