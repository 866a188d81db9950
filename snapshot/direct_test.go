package snapshot_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/pack"
)

// directOpen counts this process's open descriptors of files under
// dir that were opened with O_DIRECT (the flags in /proc/self/fdinfo), so a
// test can tell that the direct path really ran.
func directOpen(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, dir) {
			continue
		}
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
				if err == nil && flags&0o40000 != 0 { // O_DIRECT on x86-64
					n++
				}
			}
		}
	}
	return n
}

// TestDirectReads loads the large chunks of a backup (incompressible ones
// stored raw, compressible ones as zstd frames, at offsets that are not
// block-aligned) through the chunk reader, which reads them with O_DIRECT:
// into a buffer sized by BufferSize (in place), into one with no room to
// spare (a staging buffer of its own), and into none. Every load must be
// byte-exact, and the packs must really have been read direct.
func TestDirectReads(t *testing.T) {
	r, repo := indextest.NewRepo(t)
	model := make([]byte, 9<<20)
	rand.NewChaCha8([32]byte{3}).Read(model)
	logs := fltText(11, 6<<20)
	src := fltSource(t, map[string][]byte{"model.bin": model, "app.log": logs, "small.txt": fltText(12, 5<<10)})
	m := fltBackup(t, r, src)

	cr := r.NewChunkReader(8)
	defer cr.Close()
	unaligned, raw, zstd := 0, 0, 0
	for name, content := range map[string][]byte{"model.bin": model, "app.log": logs} {
		n, err := r.FindNode(t.Context(), m, name)
		if err != nil {
			t.Fatal(err)
		}
		var off int64
		for i, c := range n.Chunks {
			want := content[off : off+int64(c.Size)]
			off += int64(c.Size)
			_, blob := fltLocate(t, repo, c.ID)
			if blob.Stored < 128<<10 {
				continue // read through the page cache
			}
			if blob.Offset%4096 != 0 {
				unaligned++
			}
			if blob.Codec == pack.CodecRaw {
				raw++
			} else {
				zstd++
			}
			for _, buf := range [][]byte{
				make([]byte, 0, snapshot.BufferSize(int(c.Size))),
				make([]byte, 0, c.Size),
				nil,
			} {
				got, err := cr.Load(t.Context(), c, buf)
				if err != nil {
					t.Fatalf("%s chunk %d (buffer of %d): %v", name, i, cap(buf), err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s chunk %d (buffer of %d): %d bytes differ from the source's %d", name, i, cap(buf), len(got), len(want))
				}
			}
		}
	}
	if raw < 4 || zstd < 2 || unaligned < 4 {
		t.Fatalf("large chunks read: %d raw, %d zstd, %d at unaligned offsets; the test wants several of each", raw, zstd, unaligned)
	}
	if n := directOpen(t, filepath.Join(repo, "packs")); n == 0 {
		t.Fatal("no pack is open with O_DIRECT after loading the large chunks")
	}
}

// TestDirectReadFaults damages large chunks that a restore reads with
// O_DIRECT: a flipped byte in a raw chunk (FAULTS A1) fails the file that
// uses it with a hash mismatch naming chunk and pack, and a pack truncated
// in the middle of a large blob (FAULTS A3) fails it as "shorter than the
// index says"; the other file restores byte-identical and no partial file
// is left.
func TestDirectReadFaults(t *testing.T) {
	for _, fault := range []string{"flip", "truncate"} {
		t.Run(fault, func(t *testing.T) {
			r, repo := indextest.NewRepo(t)
			big := make([]byte, 6<<20)
			rand.NewChaCha8([32]byte{9}).Read(big)
			src := fltSource(t, map[string][]byte{"big.bin": big, "notes.txt": fltText(4, 20<<10)})
			m := fltBackup(t, r, src)
			n, err := r.FindNode(t.Context(), m, "big.bin")
			if err != nil {
				t.Fatal(err)
			}
			last := n.Chunks[len(n.Chunks)-1]
			packPath, blob := fltLocate(t, repo, last.ID)
			if blob.Codec != pack.CodecRaw || blob.Stored < 128<<10 {
				t.Fatalf("last chunk: codec %d, %d bytes; the test wants a large raw chunk", blob.Codec, blob.Stored)
			}
			switch fault {
			case "flip": // in the last, partly used block
				fltFlipByte(t, packPath, int64(blob.Offset)+int64(blob.Stored)-3, 0x10)
			case "truncate":
				if err := os.Truncate(packPath, int64(blob.Offset)+int64(blob.Stored)-100); err != nil {
					t.Fatal(err)
				}
			}
			r = fltReopen(t, r, repo)
			target := filepath.Join(t.TempDir(), "restore")
			_, err = r.Restore(t.Context(), m, snapshot.RestoreOptions{Target: target})
			var rf *snapshot.RestoreFailedError
			if !errors.As(err, &rf) || len(rf.Failed) != 1 || rf.Failed[0].Path != "big.bin" {
				t.Fatalf("restore: %v, want big.bin failed alone", err)
			}
			// The cut may take blobs after this one too (blobs reach a pack
			// in the order their compressors finish): any of the file's
			// chunks may be the one named.
			named := false
			for _, c := range n.Chunks {
				named = named || strings.Contains(err.Error(), c.ID.Short())
			}
			want := map[string]string{"flip": "content does not match its hash", "truncate": "shorter than the index says"}[fault]
			if !named || (fault == "flip" && !strings.Contains(err.Error(), last.ID.Short())) || !strings.Contains(err.Error(), want) {
				t.Fatalf("restore error %q: want one naming a chunk of big.bin (the flip: %s) and %q", err, last.ID.Short(), want)
			}
			fltCompare(t, src, target, "big.bin")
			for _, name := range indextest.Names(t, target) {
				if strings.HasPrefix(name, ".sfr-") || name == "big.bin" {
					t.Fatalf("partial file %q left at the target", name)
				}
			}
		})
	}
}
