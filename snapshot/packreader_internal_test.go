package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPackReaderKeepsWhatItReturns opens more packs than the reader keeps
// while idle, in the patterns of a restore (one reference at a time, the
// oldest pack evicted) and of a file whose chunks span more packs than the
// limit while earlier ones are still in use: every file handed out must
// read its pack's bytes, and the reader never holds more than its limit of
// idle files. (A pack opened at the limit was once evicted as the oldest
// idle file and handed out closed: "file already closed" on a good pack.)
func TestPackReaderKeepsWhatItReturns(t *testing.T) {
	r := &Repo{path: t.TempDir()}
	const n = 6
	ids := make([]ID, n)
	for i := range ids {
		content := []byte(fmt.Sprintf("pack %d content", i))
		ids[i] = Hash(content)
		p := r.packPath(ids[i])
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(i int, f *os.File) {
		t.Helper()
		want := []byte(fmt.Sprintf("pack %d content", i))
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("pack %d: read %q, %v; want %q", i, got, err, want)
		}
	}
	pr := r.newPackReader(2)
	defer pr.Close()
	for round := range 2 { // one at a time, released at once
		for i, id := range ids {
			op, release, err := pr.open(id, round == 1)
			if err != nil {
				t.Fatalf("round %d, pack %d: %v", round, i, err)
			}
			check(i, op.f)
			release()
			if len(pr.files) > 2 {
				t.Fatalf("%d packs open while idle, limit 2", len(pr.files))
			}
		}
	}
	var releases []func()
	var files []*os.File
	for i, id := range ids { // all held at once: the limit cannot close any
		op, release, err := pr.open(id, false)
		if err != nil {
			t.Fatalf("held pack %d: %v", i, err)
		}
		files, releases = append(files, op.f), append(releases, release)
		for j, f := range files {
			check(j, f)
		}
	}
	for _, rel := range releases {
		rel()
	}
	op, release, err := pr.open(ids[0], false)
	if err != nil {
		t.Fatal(err)
	}
	check(0, op.f)
	release()
	if len(pr.files) > 2 {
		t.Fatalf("%d packs open after the holders let go, limit 2", len(pr.files))
	}
}

// TestEncodeManifestOneItemPerLine checks that the streaming manifest
// encoder writes JSON that decodes to the same manifest as the standard
// encoder's, with the header indented and each item on a line of its own,
// for no items, an empty list and items with optional fields.
func TestEncodeManifestOneItemPerLine(t *testing.T) {
	base := Manifest{BackupID: "snap-1", CreatedUTC: "2026-01-02T03:04:05Z", Tree: Hash(nil).String(),
		Includes: []string{"."}, Warnings: []Warning{{Path: "a", Problem: "p"}}}
	withItems := base
	withItems.Items = []Item{
		{Path: "a", Type: "dir"},
		{Path: "a/b", Type: "file", Size: 3, Blake3: Hash([]byte("abc")).String()},
		{Path: "l", PathB64: "bA==", Type: "symlink", Target: "x"},
	}
	empty := base
	empty.Items = []Item{}
	for name, m := range map[string]Manifest{"nil": base, "empty": empty, "items": withItems} {
		var got bytes.Buffer
		if err := encodeManifest(&got, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var back Manifest
		if err := json.Unmarshal(got.Bytes(), &back); err != nil {
			t.Fatalf("%s: streamed manifest does not parse: %v\n%s", name, err, got.Bytes())
		}
		a, _ := json.Marshal(&m)
		b, _ := json.Marshal(&back)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: streamed manifest decodes to\n%s\nwant\n%s", name, b, a)
		}
		head, _ := json.MarshalIndent(&Manifest{BackupID: m.BackupID}, "", " ")
		if !bytes.HasPrefix(got.Bytes(), head[:bytes.IndexByte(head, ',')]) || !bytes.HasSuffix(got.Bytes(), []byte("}\n")) {
			t.Errorf("%s: header not indented as MarshalIndent does:\n%s", name, got.Bytes())
		}
		for i, it := range m.Items {
			line, _ := json.Marshal(&it)
			if !bytes.Contains(got.Bytes(), append(append([]byte("\n  "), line...), "\n ]"[:1]...)) &&
				!bytes.Contains(got.Bytes(), append(append([]byte("\n  "), line...), ',')) {
				t.Errorf("%s: item %d is not on a line of its own:\n%s", name, i, got.Bytes())
			}
		}
	}
}

// TestDirectReadRefused: a file system that refuses a direct read (EINVAL)
// switches direct reads off for the process, and the read is done through
// the page cache instead: the caller sees the bytes, not the refusal.
func TestDirectReadRefused(t *testing.T) {
	defer directReads.Store(true)
	if ok, err := directDone(0, unix.EINVAL, 4096); ok || err != nil || directReads.Load() {
		t.Fatalf("EINVAL: ok=%v err=%v direct=%v, want a fallback and direct reads off", ok, err, directReads.Load())
	}
	directReads.Store(true)
	if ok, err := directDone(8192, io.EOF, 5000); !ok || err != nil {
		t.Fatalf("a pack ending within the last block: ok=%v err=%v, want the bytes", ok, err)
	}
	if ok, err := directDone(4096, io.EOF, 5000); !ok || !errors.Is(err, io.EOF) {
		t.Fatalf("a pack ending before the blob: ok=%v err=%v, want io.EOF", ok, err)
	}

	p := filepath.Join(t.TempDir(), "pack")
	content := bytes.Repeat([]byte("0123456789abcdef"), 32<<10) // 512 KiB
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Skipf("this file system does not open files with O_DIRECT: %v", err)
	}
	op := &openPack{f: f, direct: d}
	defer op.close()
	for _, direct := range []bool{false, true} { // refused earlier: the page cache serves; else the direct path
		directReads.Store(direct)
		got, err := op.readRaw(nil, 1000, 200<<10)
		if err != nil || !bytes.Equal(got, content[1000:1000+200<<10]) {
			t.Fatalf("readRaw, direct reads %v: %v, bytes equal %v", direct, err, bytes.Equal(got, content[1000:1000+200<<10]))
		}
		data, done, err := op.readStored(3000, 300<<10)
		if err != nil || !bytes.Equal(data, content[3000:3000+300<<10]) {
			t.Fatalf("readStored, direct reads %v: %v", direct, err)
		}
		done()

		// Into a buffer of BufferSize: the bytes stay where the read put
		// them, in the buffer (1000 bytes into its first block when direct),
		// and chunkLoaded leaves them there, the buffer whole for its pool.
		bp := getBuf(BufferSize(200 << 10))
		got, err = op.readRaw((*bp)[:0], 1000, 200<<10)
		if err != nil || !bytes.Equal(got, content[1000:1000+200<<10]) || !inBuf(*bp, got) {
			t.Fatalf("readRaw into a buffer, direct reads %v: %v, bytes equal %v, in the buffer %v", direct, err, bytes.Equal(got, content[1000:1000+200<<10]), inBuf(*bp, got))
		}
		if start := &got[0] == &(*bp)[:1][0]; start == direct {
			t.Fatalf("readRaw, direct reads %v: bytes at the buffer's start %v", direct, start)
		}
		class, base := cap(*bp), &(*bp)[:1][0]
		bp, data, err = chunkLoaded(bp, got, ChunkRef{Size: 200 << 10}, nil)
		if err != nil || &(*bp)[:1][0] != base || cap(*bp) != class || &data[0] != &got[0] || !bytes.Equal(data, content[1000:1000+200<<10]) {
			t.Fatalf("chunkLoaded, direct reads %v: %v, cap %d want %d, bytes equal %v", direct, err, cap(*bp), class, bytes.Equal(data, content[1000:1000+200<<10]))
		}
		putBuf(bp)
	}
	if inBuf(nil, content) || inBuf(content[:10:10], content[5:20]) || !inBuf(content[:10:10], content[5:8:10]) {
		t.Fatal("inBuf: wrong answer for a slice outside the buffer or within it")
	}
}

// TestRacyWindow: timestamps with a sub-second part come from a file system
// that keeps them, and get the short window; whole seconds (in both mtime
// and ctime) may come from one that keeps only seconds, or two (FAT).
func TestRacyWindow(t *testing.T) {
	for _, c := range []struct {
		mtime, ctime int64
		want         time.Duration
	}{
		{1_700_000_000_123_456_789, 1_700_000_000_223_456_789, fineGranularity},
		{1_700_000_000_000_000_000, 1_700_000_001_000_000_001, fineGranularity},
		{1_700_000_000_000_000_001, 1_700_000_001_000_000_000, fineGranularity},
		{1_700_000_000_000_000_000, 1_700_000_002_000_000_000, mtimeGranularity},
		{0, 0, mtimeGranularity},
	} {
		if got := racyWindow(&Node{MTime: c.mtime, CTime: c.ctime}); got != c.want {
			t.Errorf("mtime %d ctime %d: window %v, want %v", c.mtime, c.ctime, got, c.want)
		}
	}
}
