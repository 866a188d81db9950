package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

func TestCompressChoosesCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name string
		raw  []byte
		want uint8
	}{
		{"empty", nil, CodecRaw},
		{"64 zeros: cannot save 64 bytes", make([]byte, 64), CodecRaw},
		{"random", randomBytes(rng, 64<<10), CodecRaw},
		{"text", textish(rng, 64<<10), CodecZstd},
		{"zeros", make([]byte, 1<<20), CodecZstd},
		{"200 zeros", make([]byte, 200), CodecZstd},
		{"random with 1% zeros: saves under 1/32", append(randomBytes(rng, 32<<10), make([]byte, 320)...), CodecRaw},
		{"random with 20% zeros", append(randomBytes(rng, 32<<10), make([]byte, 8<<10)...), CodecZstd},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stored, codec := Compress(nil, c.raw)
			if codec != c.want {
				t.Fatalf("codec %d, want %d (%d -> %d bytes)", codec, c.want, len(c.raw), len(stored))
			}
			if codec == CodecRaw && (len(stored) != len(c.raw) || len(c.raw) > 0 && &stored[0] != &c.raw[0]) {
				t.Fatal("CodecRaw must return raw itself")
			}
			got, err := Decode(nil, stored, codec, uint32(len(c.raw)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.raw) {
				t.Fatal("decoded bytes differ")
			}
		})
	}
}

// TestCompressRule checks the threshold against the encoder's own output over
// inputs whose compressibility crosses it.
func TestCompressRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{65, 100, 300, 1000, 4096, 40000} {
		for zeros := 0; zeros <= size; zeros += max(1, size/40) {
			raw := append(randomBytes(rng, size-zeros), make([]byte, zeros)...)
			stored, codec := Compress(nil, raw)
			z := len(blobEncoders[EffortDefault].encode(nil, raw))
			saved := len(raw) - z
			wantZstd := saved >= 64 && saved*32 >= len(raw)-len(raw)%32
			if len(raw) <= 64 {
				wantZstd = false
			}
			if (codec == CodecZstd) != wantZstd {
				t.Fatalf("size %d zeros %d: zstd %d bytes, codec %d", size, zeros, z, codec)
			}
			if codec == CodecZstd && len(stored) != z {
				t.Fatalf("size %d zeros %d: stored %d bytes, zstd gives %d", size, zeros, len(stored), z)
			}
		}
	}
}

// TestCompressProbe: a blob of probeMin bytes or more whose samples do not
// compress is stored raw without compressing the whole (no output buffer is
// even allocated); one with a compressible region at least as wide as the
// gap between samples, wherever it is and whatever kind (zeros, or records
// that repeat, which the fastest level misses in pieces joined after random
// ones), is still compressed, under the same rule as a small blob.
func TestCompressProbe(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, size := range []int{probeMin, probeMin + 1, 300 << 10, 1 << 20, 4 << 20} {
		random := randomBytes(rng, size)
		if !incompressible(probeEncoder(), random) || !Incompressible(random) {
			t.Fatalf("%d random bytes: the probe finds them compressible", size)
		}
		if Incompressible(random[:probeMin-1]) {
			t.Fatalf("%d random bytes called incompressible: Compress does not probe under probeMin", probeMin-1)
		}
		if stored, codec := Compress(nil, random); codec != CodecRaw || &stored[0] != &random[0] {
			t.Fatalf("%d random bytes: codec %d, want raw itself", size, codec)
		}
		// Compressing the whole would allocate an output of at least its
		// size; the probe's pooled buffers are 2 KiB (a pool may drop them,
		// as the race detector's does on purpose).
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for range 4 {
			Compress(nil, random)
		}
		runtime.ReadMemStats(&ms1)
		if per := (ms1.TotalAlloc - ms0.TotalAlloc) / 4; per >= uint64(size)/2 {
			t.Fatalf("%d random bytes: %d bytes allocated per call: the whole was compressed", size, per)
		}
		for _, name := range []string{"text", "zeros"} {
			raw := textish(rng, size)
			if name == "zeros" {
				raw = make([]byte, size)
			}
			stored, codec := Compress(nil, raw)
			if codec != CodecZstd || Incompressible(raw) {
				t.Fatalf("%d bytes of %s: codec %d (Incompressible %v), want zstd", size, name, codec, Incompressible(raw))
			}
			checkDecode(t, stored, codec, raw)
		}
		// A region one gap plus one sample wide always holds a whole
		// sample: at the start, the end and in between.
		gap := (size-probeSample)/(probeSamples-1) + probeSample
		records := randomBytes(rng, 16*64)
		for _, kind := range []string{"zeros", "records"} {
			width := gap
			if kind == "records" {
				width = 3 * gap // saves about 1/32: the rule's line
			}
			for _, at := range []int{0, size/3 + 17, size - width} {
				raw := bytes.Clone(random)
				region := raw[at : at+width]
				if kind == "zeros" {
					clear(region)
				} else { // 64-byte records, 16 distinct ones
					for i := 0; i < len(region); i += 64 {
						r := rng.IntN(16)
						copy(region[i:], records[r*64:(r+1)*64])
					}
				}
				stored, codec := Compress(nil, raw)
				z := len(blobEncoders[EffortDefault].encode(nil, raw))
				// Whatever the probe says, the blob is stored as the
				// rule says for the whole; the zeros, and the records
				// in a chunk of 1 MiB or more, always pass it.
				want := uint8(CodecRaw)
				if saved := len(raw) - z; saved >= minSaving && saved >= len(raw)/minSavingDiv {
					want = CodecZstd
				} else if kind == "zeros" || size >= 1<<20 {
					t.Fatalf("%d bytes, %d bytes of %s at %d: the whole saves only %d bytes", size, width, kind, at, saved)
				}
				if codec != want || (codec == CodecZstd && len(stored) != z) {
					t.Fatalf("%d bytes, %d bytes of %s at %d: codec %d, %d bytes stored; zstd makes %d", size, width, kind, at, codec, len(stored), z)
				}
				checkDecode(t, stored, codec, raw)
			}
		}
	}
	// Below probeMin nothing is probed: zeros between where samples would
	// be are found by compressing the whole (TestCompressRule).
	small := randomBytes(rng, probeMin-1)
	step := (len(small) - probeSample) / (probeSamples - 1)
	clear(small[step+probeSample+100 : 2*step-100])
	if incompressible(probeEncoder(), small) == false {
		t.Fatal("the probe would see the zeros: the test no longer checks that blobs under probeMin are not probed")
	}
	if _, codec := Compress(nil, small); codec != CodecZstd {
		t.Fatalf("%d bytes with %d zeros between sample positions: codec %d, want zstd (not probed)", len(small), step-probeSample-200, codec)
	}
}

func checkDecode(t *testing.T, stored []byte, codec uint8, raw []byte) {
	t.Helper()
	got, err := Decode(nil, stored, codec, uint32(len(raw)))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("decode: %v, equal %v", err, bytes.Equal(got, raw))
	}
}

func TestCompressDecodeReuseBuffers(t *testing.T) {
	raw := textish(rand.New(rand.NewPCG(1, 1)), 100<<10)
	dst := make([]byte, 0, 200<<10)
	stored, codec := Compress(dst, raw)

	if codec != CodecZstd || &stored[:1][0] != &dst[:1][0] {
		t.Fatal("Compress did not build its output in dst")
	}
	stored = bytes.Clone(stored)
	out := make([]byte, 10, 300<<10)
	got, err := Decode(out, stored, codec, uint32(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) || &got[0] != &out[:1][0] || cap(got) != cap(out) {
		t.Fatal("Decode did not decode into dst[:0] keeping its capacity")
	}
	got, err = Decode(got, raw, CodecRaw, uint32(len(raw)))
	if err != nil || !bytes.Equal(got, raw) || &got[0] != &out[:1][0] {
		t.Fatalf("raw Decode into a reused buffer: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, _ := Compress(nil, make([]byte, 10000))
	cases := []struct {
		name   string
		stored []byte
		codec  uint8
		raw    uint32
		want   string
	}{
		{"raw codec, short", []byte("abc"), CodecRaw, 4, "stored bytes"},
		{"raw codec, long", []byte("abcde"), CodecRaw, 4, "stored bytes"},
		{"unknown codec", []byte("abc"), 7, 3, "unknown codec"},
		{"raw above max", []byte("abc"), CodecZstd, MaxBlobSize + 1, "maximum"},
		{"zstd garbage", []byte("not a zstd frame at all"), CodecZstd, 100, "frame header"},
		{"zstd empty", nil, CodecZstd, 0, "frame header"},
		{"zstd truncated frame", valid[:len(valid)-2], CodecZstd, 10000, "zstd"},
		{"zstd skippable frame", []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}, CodecZstd, 0, "skippable"},
		{"zstd output shorter than raw", rleFrame(0, 0, 1, 100), CodecZstd, 1000, "decoded 100 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := Decode(make([]byte, 5), c.stored, c.codec, c.raw)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrCorrupt saying %q", err, c.want)
			}
			if len(out) != 0 {
				t.Fatalf("error with %d bytes of output", len(out))
			}
		})
	}
}

// TestDecodeSlack: a dst with DecodeSlack bytes beyond raw is used as is
// (the decoder's fast copies may write into the slack), one of exactly raw
// bytes too (exact copies); either way the result is exactly raw bytes, and
// a frame that produces more than raw, by less than the slack, is refused.
func TestDecodeSlack(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{16 << 10, 1 << 20} {
		raw := textish(rng, n)
		stored, codec := Compress(nil, raw)
		if codec != CodecZstd {
			t.Fatal("text not compressed")
		}
		for _, room := range []int{0, DecodeSlack, 4 << 10} {
			dst := make([]byte, 0, n+room)
			got, err := Decode(dst, stored, codec, uint32(n))
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("%d bytes, %d of slack: %v, or bytes differ", n, room, err)
			}
			if &got[0] != &dst[:1][0] {
				t.Fatalf("%d bytes, %d of slack: decoded into a new buffer", n, room)
			}
		}
	}
	const raw = 1000
	for name, frame := range map[string][]byte{
		"no size, raw+20 bytes":       rleFrame(0, 0, 1, raw+20),
		"declares raw, makes raw+20":  rleFrame(raw, 2, 1, raw+20),
		"declares raw+20, makes that": rleFrame(raw+20, 2, 1, raw+20),
	} {
		out, err := Decode(make([]byte, 0, raw+DecodeSlack), frame, CodecZstd, raw)
		if !errors.Is(err, ErrCorrupt) || len(out) != 0 {
			t.Fatalf("%s: err = %v with %d bytes, want ErrCorrupt and nothing", name, err, len(out))
		}
	}
}

// rleFrame hand-crafts a zstd frame: a 1 MiB window, an optional declared
// content size (fcs > 0, 8-byte field) and n RLE blocks of size bytes each.
func rleFrame(fcs uint64, fcsBytes, n, size int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd}
	switch fcsBytes {
	case 0:
		f = append(f, 0x00, 0x50) // no content size; window 2^(10+10)
	case 2:
		f = append(f, 0x40, 0x50) // 2-byte content size (value-256); window 1 MiB
		f = binary.LittleEndian.AppendUint16(f, uint16(fcs-256))
	case 8:
		f = append(f, 0xe0) // 8-byte content size, single segment
		f = binary.LittleEndian.AppendUint64(f, fcs)
	}
	for i := range n {
		h := uint32(size)<<3 | 1<<1 // RLE block
		if i == n-1 {
			h |= 1 // last
		}
		f = append(f, byte(h), byte(h>>8), byte(h>>16), 'A')
	}
	return f
}

// warm makes the shared decoder exist so its setup is not measured.
func warm(t *testing.T) {
	stored, _ := Compress(nil, make([]byte, 1<<20))
	if _, err := Decode(nil, stored, CodecZstd, 1<<20); err != nil {
		t.Fatal(err)
	}
}

// FAULTS A10: zstd bombs are rejected with memory bounded by the raw length.
func TestDecodeBombs(t *testing.T) {
	warm(t)
	realFrame, _ := Compress(nil, make([]byte, 1<<20))
	twoFrames := append(rleFrame(1000, 2, 1, 1000), rleFrame(1000, 2, 1, 1000)...)
	cases := []struct {
		name   string
		stored []byte
		raw    uint32
		budget uint64 // bytes Decode may allocate
	}{
		{"declares 64 GiB, raw 1000", rleFrame(64<<30, 8, 1, 1<<17), 1000, 64 << 10},
		{"declares 64 GiB, raw MaxBlobSize", rleFrame(64<<30, 8, 1, 1<<17), MaxBlobSize, 64 << 10},
		{"declares MaxBlobSize+1", rleFrame(MaxBlobSize+1, 8, 1, 1<<17), MaxBlobSize, 64 << 10},
		{"valid 1 MiB frame, raw 1000", realFrame, 1000, 64 << 10},
		{"declares raw, produces 1.25 MiB", rleFrame(1000, 2, 10, 1<<17), 1000, 1 << 20},
		{"no size, produces 256 MiB, raw 1000", rleFrame(0, 0, 2048, 1<<17), 1000, 1 << 20},
		{"no size, produces 256 MiB, raw 1 MiB", rleFrame(0, 0, 2048, 1<<17), 1 << 20, 3 << 20},
		{"two frames of raw bytes each", twoFrames, 1000, 1 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Decode(nil, c.stored, CodecZstd, c.raw) })
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if n > c.budget {
				t.Fatalf("Decode allocated %d bytes, budget %d", n, c.budget)
			}
			t.Logf("%v (allocated %d bytes)", err, n)
		})
	}
}

// FAULTS A11: a valid frame with the wrong content decodes; only the caller's
// hash check can tell, and it must. Decode is documented not to check it.
func TestDecodeDoesNotCheckHash(t *testing.T) {
	claimed := blake3.Sum256(make([]byte, 4096))
	wrong := bytes.Repeat([]byte("x"), 4096)
	stored, codec := Compress(nil, wrong)
	got, err := Decode(nil, stored, codec, 4096)
	if err != nil {
		t.Fatalf("a well-formed frame: %v", err)
	}
	if blake3.Sum256(got) == claimed {
		t.Fatal("test is wrong: contents hash alike")
	}
}

func TestCompressDecodeConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	raws := make([][]byte, 8)
	for i := range raws {
		raws[i] = blobData(rng, i, rng.IntN(32<<10))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var cbuf, dbuf []byte
			for i := range 2 * len(raws) {
				raw := raws[(g+i)%len(raws)]
				stored, codec := Compress(cbuf, raw)
				out, err := Decode(dbuf, stored, codec, uint32(len(raw)))
				if err != nil || !bytes.Equal(out, raw) {
					t.Errorf("goroutine %d blob %d: %v", g, i, err)
					return
				}
				if codec == CodecZstd {
					cbuf = stored
				}
				dbuf = out
			}
		})
	}
	wg.Wait()
}

// TestEncoders: every encoder a build may compress with (the Go encoders
// always; in a cgo build the C one, which Compress and CompressGroup use)
// writes frames that Decode reads back byte-exact, with the content size
// in the header (above 1 KiB), built in dst when its capacity is the encoder's bound.
func TestEncoders(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	goBlob, goGroup := goEncoders()
	encs := map[string]frameEncoder{"go-fastest": goBlob, "go-default": goGroup, "blob": blobEncoders[EffortDefault], "group": groupEncoders[EffortDefault], "blob-fast": blobEncoders[EffortFast], "group-fast": groupEncoders[EffortFast]}
	inputs := map[string][]byte{
		"empty":          {},
		"one byte":       {7},
		"page":           textish(rng, 16<<10),
		"text 1 MiB":     textish(rng, 1<<20),
		"zeros 4 MiB":    make([]byte, 4<<20),
		"random 300 KiB": randomBytes(rng, 300<<10),
	}
	for en, enc := range encs {
		for in, raw := range inputs {
			dst := make([]byte, 0, enc.bound(len(raw)))
			out := enc.encode(dst, raw)
			if len(out) > enc.bound(len(raw)) || (len(out) > 0 && &out[:1][0] != &dst[:1][0]) {
				t.Fatalf("%s, %s: %d bytes, bound %d, in dst %v", en, in, len(out), enc.bound(len(raw)), len(out) > 0 && &out[:1][0] == &dst[:1][0])
			}
			var h zstd.Header
			if err := h.Decode(out); err != nil || (!h.HasFCS && len(raw) > 1<<10) || (h.HasFCS && h.FrameContentSize != uint64(len(raw))) || h.HasCheckSum {
				t.Fatalf("%s, %s: header %+v, %v: want the content size %d (declared above 1 KiB) and no checksum", en, in, h, err, len(raw))
			}
			checkDecode(t, out, CodecZstd, raw)
			if len(raw) >= 1<<20 && len(out) > len(raw)/4 && in != "random 300 KiB" {
				t.Fatalf("%s, %s: %d bytes compressed to %d", en, in, len(raw), len(out))
			}
		}
	}
	if Encoders() == "" {
		t.Fatal("Encoders names nothing")
	}
}

// TestEfforts: Compress, CompressProbed and CompressGroup at each effort
// write frames that decode byte-exact; in a cgo build the fast effort is
// another level (another frame) of the C library, and random bytes stay
// raw at both.
func TestEfforts(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	raw := textish(rng, 1<<20)
	noise := randomBytes(rng, 256<<10)
	frames := map[Effort][]byte{}
	for _, e := range []Effort{EffortDefault, EffortFast} {
		out, codec := CompressAt(nil, raw, e)
		if codec != CodecZstd {
			t.Fatalf("effort %d: text stored with codec %d", e, codec)
		}
		checkDecode(t, out, codec, raw)
		frames[e] = out
		out, codec = CompressProbedAt(nil, raw, e)
		if codec != CodecZstd || !bytes.Equal(out, frames[e]) {
			t.Fatalf("effort %d: CompressProbedAt gave codec %d, %d bytes; want CompressAt's frame of %d", e, codec, len(out), len(frames[e]))
		}
		g, ok := CompressGroupAt(nil, raw, e)
		if !ok {
			t.Fatalf("effort %d: text group not compressed", e)
		}
		checkDecode(t, g, CodecZstd, raw)
		if out, codec := CompressAt(nil, noise, e); codec != CodecRaw || !bytes.Equal(out, noise) {
			t.Fatalf("effort %d: random bytes stored with codec %d", e, codec)
		}
		if out, codec := CompressProbedAt(nil, noise, e); codec != CodecRaw || !bytes.Equal(out, noise) { // past the probe: the frame saves too little
			t.Fatalf("effort %d: random bytes, not probed, stored with codec %d", e, codec)
		}
		if _, ok := CompressGroupAt(nil, noise, e); ok {
			t.Fatalf("effort %d: a group of random bytes compressed", e)
		}
	}
	if strings.Contains(Encoders(), " in C ") && bytes.Equal(frames[EffortDefault], frames[EffortFast]) {
		t.Fatal("cgo build: the fast effort wrote the default effort's frame")
	}
}

// TestFastDiffers: with cgo both efforts are C levels of their own, for
// groups and blobs; without, single blobs have one encoder for both.
func TestFastDiffers(t *testing.T) {
	cgo := strings.Contains(Encoders(), " in C ")
	if !FastDiffers(true) {
		t.Fatal("groups: the fast effort is the default's encoder")
	}
	if got := FastDiffers(false); got != cgo {
		t.Fatalf("single blobs: FastDiffers %v, want %v (cgo build %v)", got, cgo, cgo)
	}
}
