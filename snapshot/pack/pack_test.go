package pack

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	const n = 1000
	raws := make([][]byte, n)
	for i := range raws {
		var size int
		switch {
		case i < 6:
			size = []int{0, 1, 63, 64, 65, 200}[i]
		case i%250 == 0:
			size = 1<<20 + rng.IntN(1<<20) // a few chunk-sized blobs
		default:
			size = int(math.Exp(rng.Float64() * math.Log(128<<10))) // log-uniform up to 128 KiB
		}
		raws[i] = blobData(rng, rng.IntN(4), size)
	}

	path := filepath.Join(t.TempDir(), "pack")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := NewWriter(bw)
	if w.Size() != 0 || w.Count() != 0 {
		t.Fatalf("new writer: size %d count %d, want 0 0", w.Size(), w.Count())
	}
	var added []Blob
	codecs := map[uint8]int{}
	var buf []byte
	for i, raw := range raws {
		stored, codec := Compress(buf, raw)
		codecs[codec]++
		id := blake3.Sum256(raw)
		kind := KindData
		if i%7 == 0 {
			kind = KindTree
		}
		before := w.Size()
		b, err := w.Add(id, kind, codec, stored, uint32(len(raw)))
		if err != nil {
			t.Fatalf("add blob %d: %v", i, err)
		}
		if i == 0 {
			before = headerSize // the header goes out with the first Add
		}
		want := Blob{ID: id, Kind: kind, Codec: codec, Offset: uint64(before), Stored: uint32(len(stored)), Raw: uint32(len(raw))}
		if b != want {
			t.Fatalf("add blob %d: got %+v, want %+v", i, b, want)
		}
		if w.Size() != before+int64(len(stored)) || w.Count() != i+1 {
			t.Fatalf("after blob %d: size %d count %d", i, w.Size(), w.Count())
		}
		added = append(added, b)
		if codec == CodecZstd {
			buf = stored // reuse the output buffer, as the engine will
		}
	}
	if codecs[CodecRaw] < 100 || codecs[CodecZstd] < 100 {
		t.Fatalf("codecs used %v: want both raw and zstd blobs", codecs)
	}
	packID, blobs, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if len(blobs) != n || !equalBlobs(blobs, added) {
		t.Fatal("Finish returned other entries than Add")
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != w.Size() {
		t.Fatalf("file is %d bytes, Size says %d", len(data), w.Size())
	}
	if packID != blake3.Sum256(data) {
		t.Fatal("pack id is not BLAKE3 of the file")
	}

	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadTrailer(f, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if !equalBlobs(got, added) {
		t.Fatal("ReadTrailer returned other entries than Add")
	}
	var out []byte
	for i, b := range got {
		stored := make([]byte, b.Stored)
		if _, err := f.ReadAt(stored, int64(b.Offset)); err != nil {
			t.Fatalf("read blob %d: %v", i, err)
		}
		out, err = Decode(out, stored, b.Codec, b.Raw)
		if err != nil {
			t.Fatalf("decode blob %d: %v", i, err)
		}
		if !bytes.Equal(out, raws[i]) {
			t.Fatalf("blob %d: decoded bytes differ", i)
		}
		if blake3.Sum256(out) != b.ID {
			t.Fatalf("blob %d: BLAKE3 of the decoded bytes is not its id", i)
		}
	}
}

func equalBlobs(a, b []Blob) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFormatBytes pins the byte format documented in the package doc, built
// here by hand.
func TestFormatBytes(t *testing.T) {
	idA := blake3.Sum256([]byte("hello"))
	zeros := make([]byte, 4096)
	storedB, codec := Compress(nil, zeros)
	if codec != CodecZstd {
		t.Fatal("4096 zeros not compressed")
	}
	idB := blake3.Sum256(zeros)

	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := w.Add(idA, KindData, CodecRaw, []byte("hello"), 5); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(idB, KindTree, CodecZstd, storedB, 4096); err != nil {
		t.Fatal(err)
	}
	packID, _, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}

	want := []byte("SFPK\x02\x00\x00\x00hello")
	want = append(want, storedB...)
	trailer := binary.LittleEndian.AppendUint32(nil, 2)
	trailer = append(trailer, idA[:]...)
	trailer = append(trailer, 0, 0)                        // kind data, codec raw
	trailer = binary.LittleEndian.AppendUint64(trailer, 8) // offset
	trailer = binary.LittleEndian.AppendUint32(trailer, 5) // stored
	trailer = binary.LittleEndian.AppendUint32(trailer, 5) // raw
	trailer = append(trailer, idB[:]...)
	trailer = append(trailer, 1, 1)                         // kind tree, codec zstd
	trailer = binary.LittleEndian.AppendUint64(trailer, 13) // offset
	trailer = binary.LittleEndian.AppendUint32(trailer, uint32(len(storedB)))
	trailer = binary.LittleEndian.AppendUint32(trailer, 4096)
	if len(trailer) != 4+2*50 {
		t.Fatalf("hand-built trailer is %d bytes", len(trailer))
	}
	want = append(want, trailer...)
	want = binary.LittleEndian.AppendUint32(want, uint32(len(trailer)))
	sum := blake3.Sum256(trailer)
	want = append(want, sum[:16]...)
	want = append(want, "SFPT"...)

	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("pack bytes\n% x\nwant\n% x", buf.Bytes(), want)
	}
	if packID != blake3.Sum256(want) {
		t.Fatal("pack id is not BLAKE3 of the bytes")
	}
}

func TestEmptyPack(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_, blobs, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 0 || buf.Len() != minPackSize || w.Size() != minPackSize {
		t.Fatalf("empty pack: %d blobs, %d bytes, Size %d", len(blobs), buf.Len(), w.Size())
	}
	got, err := ReadTrailer(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadTrailer of an empty pack: %v, %v", got, err)
	}
}

func TestWriterRejects(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	var id [32]byte
	big := make([]byte, MaxBlobSize+1)
	cases := []struct {
		name   string
		kind   uint8
		codec  uint8
		stored []byte
		raw    uint32
	}{
		{"unknown kind", 2, CodecRaw, []byte("x"), 1},
		{"unknown codec", KindData, 3, []byte("x"), 1},
		{"group codec outside AddGroup", KindData, CodecGroup, []byte("x"), 1},
		{"raw length mismatch", KindData, CodecRaw, []byte("xy"), 1},
		{"raw above max", KindData, CodecZstd, []byte("x"), MaxBlobSize + 1},
		{"stored above max", KindData, CodecRaw, big, MaxBlobSize + 1},
	}
	for _, c := range cases {
		if _, err := w.Add(id, c.kind, c.codec, c.stored, c.raw); err == nil {
			t.Errorf("%s: Add accepted it", c.name)
		}
	}
	if buf.Len() != 0 || w.Count() != 0 {
		t.Fatalf("rejected adds wrote %d bytes, count %d", buf.Len(), w.Count())
	}
	if _, err := w.Add(id, KindData, CodecRaw, []byte("ok"), 2); err != nil {
		t.Fatalf("a valid Add after rejected ones: %v", err)
	}
	if _, _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(id, KindData, CodecRaw, []byte("ok"), 2); err == nil {
		t.Error("Add after Finish succeeded")
	}
	if _, _, err := w.Finish(); err == nil {
		t.Error("second Finish succeeded")
	}
}

type failingWriter struct{ left int }

var errDiskFull = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n := f.left
		f.left = 0
		return n, errDiskFull
	}
	f.left -= len(p)
	return len(p), nil
}

func TestWriterErrorIsSticky(t *testing.T) {
	w := NewWriter(&failingWriter{left: 100})
	var id [32]byte
	if _, err := w.Add(id, KindData, CodecRaw, make([]byte, 50), 50); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(id, KindData, CodecRaw, make([]byte, 50), 50); !errors.Is(err, errDiskFull) {
		t.Fatalf("Add over the limit: %v, want disk full", err)
	}
	if _, err := w.Add(id, KindData, CodecRaw, nil, 0); !errors.Is(err, errDiskFull) {
		t.Fatalf("Add after a failed write: %v, want disk full", err)
	}
	if _, _, err := w.Finish(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Finish after a failed write: %v, want disk full", err)
	}
}

// FAULTS A2: a flipped byte anywhere in the header, trailer or footer is a
// parse error, never a panic.
func TestReadTrailerByteFlips(t *testing.T) {
	data, _ := smallPack(t, 20)
	start := trailerStart(data)
	var positions []int
	for i := range headerSize {
		positions = append(positions, i)
	}
	for i := start; i < len(data); i++ {
		positions = append(positions, i)
	}
	mod := make([]byte, len(data))
	for _, pos := range positions {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			copy(mod, data)
			mod[pos] ^= mask
			_, err := ReadTrailer(bytes.NewReader(mod), int64(len(mod)))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d of %d ^%#x: err = %v, want ErrCorrupt", pos, len(data), mask, err)
			}
		}
	}
	// A flip in the blob area is not the trailer's business: the blob's hash
	// check on decode finds it (FAULTS A1).
	copy(mod, data)
	mod[headerSize+3] ^= 0xff
	if _, err := ReadTrailer(bytes.NewReader(mod), int64(len(mod))); err != nil {
		t.Fatalf("flip in the blob area: %v", err)
	}
}

// FAULTS A2: entries that pass the checksum but break the rules are rejected.
func TestReadTrailerBadEntries(t *testing.T) {
	data, blobs := smallPack(t, 5)
	start := trailerStart(data)
	entry := func(d []byte, i int) []byte { return d[start+countSize+i*entrySize:] }
	setOffset := func(d []byte, i int, off uint64) { binary.LittleEndian.PutUint64(entry(d, i)[34:], off) }
	setStored := func(d []byte, i int, n uint32) { binary.LittleEndian.PutUint32(entry(d, i)[42:], n) }
	setRaw := func(d []byte, i int, n uint32) { binary.LittleEndian.PutUint32(entry(d, i)[46:], n) }
	rawIdx, zstdIdx := -1, -1
	for i, b := range blobs {
		if b.Codec == CodecRaw {
			rawIdx = i
		} else {
			zstdIdx = i
		}
	}
	if rawIdx < 0 || zstdIdx < 0 {
		t.Fatal("test pack needs a raw and a zstd blob")
	}
	cases := []struct {
		name string
		edit func(d []byte)
		want string
	}{
		{"unknown kind", func(d []byte) { entry(d, 1)[32] = 9 }, "unknown kind"},
		{"unknown codec", func(d []byte) { entry(d, 1)[33] = 9 }, "unknown codec"},
		{"raw above max", func(d []byte) { setRaw(d, zstdIdx, MaxBlobSize+1) }, "raw length"},
		{"stored above max", func(d []byte) { setStored(d, 4, MaxBlobSize+1) }, "stored length"},
		{"raw codec lengths differ", func(d []byte) { setRaw(d, rawIdx, blobs[rawIdx].Raw+1) }, "raw codec"},
		{"offset in header", func(d []byte) { setOffset(d, 0, 0) }, "outside the blob area"},
		{"offset past blob area", func(d []byte) { setOffset(d, 2, 1<<40) }, "outside the blob area"},
		{"overlap", func(d []byte) { setOffset(d, 2, blobs[2].Offset-1) }, "overlaps"},
		{"unsorted", func(d []byte) { setOffset(d, 2, blobs[0].Offset) }, "overlaps"},
		{"gap", func(d []byte) { setOffset(d, 2, blobs[2].Offset+1) }, "gap"},
		{"stored runs past area", func(d []byte) {
			setStored(d, 4, blobs[4].Stored+uint32(len(data)))
			setRaw(d, 4, blobs[4].Stored+uint32(len(data)))
		}, "run past"},
		{"blobs end early", func(d []byte) { setStored(d, 4, blobs[4].Stored-1); setRaw(d, 4, blobs[4].Raw-1) }, "blobs end at"},
		{"huge count", func(d []byte) { binary.LittleEndian.PutUint32(d[start:], 1<<31) }, "count"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := bytes.Clone(data)
			c.edit(d)
			reseal(d)
			_, err := ReadTrailer(bytes.NewReader(d), int64(len(d)))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrCorrupt saying %q", err, c.want)
			}
		})
	}
}

// FAULTS A2 (truncation) and A3: a pack cut anywhere is reported as truncated.
func TestReadTrailerTruncated(t *testing.T) {
	data, _ := smallPack(t, 30)
	start := trailerStart(data)
	var cuts []int
	for c := range minPackSize + 8 {
		cuts = append(cuts, c)
	}
	for c := headerSize; c < start; c += 37 { // mid-blob
		cuts = append(cuts, c)
	}
	for c := start; c < len(data); c++ { // mid-trailer and mid-footer
		cuts = append(cuts, c)
	}
	for _, c := range cuts {
		cut := data[:c]
		// The file was cut and its size read back: the footer is gone.
		_, err := ReadTrailer(bytes.NewReader(cut), int64(c))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("cut at %d of %d: err = %v, want ErrCorrupt saying truncated", c, len(data), err)
		}
		// The file was cut but the size comes from the index.
		_, err = ReadTrailer(bytes.NewReader(cut), int64(len(data)))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("cut at %d of %d, full size given: err = %v, want ErrCorrupt saying truncated", c, len(data), err)
		}
	}
}

// hugeFile is a ReaderAt of a given size holding a valid header, a footer
// and a trailer count, zeros elsewhere. It allocates nothing itself.
type hugeFile struct {
	size   int64
	footer [footerSize]byte
	count  uint32
}

func (h *hugeFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= h.size {
		return 0, io.EOF
	}
	clear(p)
	head := []byte("SFPK\x01\x00\x00\x00")
	tlen := int64(binary.LittleEndian.Uint32(h.footer[:]))
	var cnt [4]byte
	binary.LittleEndian.PutUint32(cnt[:], h.count)
	for i := range p {
		at := off + int64(i)
		switch {
		case at >= h.size:
			return i, io.EOF
		case at < headerSize:
			p[i] = head[at]
		case at >= h.size-footerSize:
			p[i] = h.footer[at-(h.size-footerSize)]
		case at >= h.size-footerSize-tlen && at < h.size-footerSize-tlen+4:
			p[i] = cnt[at-(h.size-footerSize-tlen)]
		}
	}
	return len(p), nil
}

// FAULTS A2: damaged lengths and counts fail fast without allocating for them.
func TestReadTrailerHugeCountsDoNotAllocate(t *testing.T) {
	maxLen := uint32(countSize + entrySize*maxCount)
	cases := []struct {
		name  string
		size  int64
		tlen  uint32
		count uint32
	}{
		{"length above size", 1 << 20, maxLen, maxCount},
		{"length not 4+50n", 1 << 40, math.MaxUint32, 1 << 31},
		{"count 2^31 in a 1 TiB pack", 1 << 40, maxLen, 1 << 31},
		{"count 0 under a 4 GiB length", 1 << 40, maxLen, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &hugeFile{size: c.size, count: c.count}
			binary.LittleEndian.PutUint32(f.footer[:], c.tlen)
			copy(f.footer[4+sumSize:], "SFPT")
			var err error
			n := allocated(func() { _, err = ReadTrailer(f, f.size) })
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if n > 64<<10 {
				t.Fatalf("ReadTrailer allocated %d bytes", n)
			}
			if allocs := testing.AllocsPerRun(10, func() { ReadTrailer(f, f.size) }); allocs > 20 {
				t.Fatalf("ReadTrailer made %v allocations", allocs)
			}
		})
	}
}

type errReaderAt struct{ err error }

func (e errReaderAt) ReadAt([]byte, int64) (int, error) { return 0, e.err }

func TestReadTrailerPassesReadErrors(t *testing.T) {
	_, err := ReadTrailer(errReaderAt{os.ErrPermission}, 1000)
	if !errors.Is(err, os.ErrPermission) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the read error, not ErrCorrupt", err)
	}
}
