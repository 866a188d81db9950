package b3

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	zeebo "github.com/zeebo/blake3"
)

// bothModes runs f with inputs of 16 KiB and more hashed by this
// package's tree and by zeebo (see zeeboFaster), whichever this CPU favours.
func bothModes(t *testing.T, f func(t *testing.T)) {
	saved := zeeboFaster
	defer func() { zeeboFaster = saved }()
	for _, z := range []bool{false, true} {
		zeeboFaster = func() bool { return z }
		t.Run(map[bool]string{false: "tree", true: "zeebo"}[z], f)
	}
}

// TestModes: with zeebo the faster, a plain input goes through zeebo, one
// declared to use spans (Spans, OnSubtree, AddSubtree first) through the
// tree, and Spans after a plain write panics; Reset forgets the choice.
func TestModes(t *testing.T) {
	saved := zeeboFaster
	defer func() { zeeboFaster = saved }()
	zeeboFaster = func() bool { return true }
	data := input(1 << 20)
	want := zeebo.Sum256(data)
	h := New()
	h.Write(data)
	if h.mode != modeZeebo || h.Sum256() != want {
		t.Fatalf("plain input: mode %d, hash right %v", h.mode, h.Sum256() == want)
	}
	h.Reset()
	h.OnSubtree(func(uint64, CV) {})
	h.Write(data)
	if h.mode != modeTree || h.Sum256() != want {
		t.Fatalf("input with OnSubtree: mode %d, hash right %v", h.mode, h.Sum256() == want)
	}
	h.Reset()
	h.Write(data[:100])
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Spans after a plain write did not panic")
			}
		}()
		h.Spans()
	}()
	zeeboFaster = func() bool { return false }
	h.Reset()
	h.Write(data)
	if h.mode != modeTree || h.Sum256() != want {
		t.Fatalf("tree faster: mode %d, hash right %v", h.mode, h.Sum256() == want)
	}
}

// lengths covers the edges of the tree: empty, one block, one chunk, the
// small-input cut, one buffer (16 chunks) and around it, and sizes whose
// buffer count has several bits set (stack merges at several heights).
var lengths = func() []int {
	ls := []int{0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 4095, smallMax - 1, smallMax, smallMax + 1,
		bufSize - 1, bufSize, bufSize + 1, 2 * bufSize, 2*bufSize + 1, 3*bufSize - 7, 7 * bufSize, 8 * bufSize,
		8*bufSize + 1, 1 << 20, 1<<20 + 1, 5<<20 + 12345, 13 * bufSize}
	return ls
}()

func input(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)}).Read(b)
	return b
}

// TestAgainstZeebo compares every way of hashing here with
// github.com/zeebo/blake3, an independent implementation, over lengths at
// the tree's edges: the one-shot Sum256, one Write, and writes cut at
// random points (which cross buffer and chunk boundaries in every way),
// Sum in the middle (it must not change the state) and Reset.
func TestAgainstZeebo(t *testing.T) { bothModes(t, testAgainstZeebo) }

func testAgainstZeebo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range lengths {
		data := input(n)
		want := zeebo.Sum256(data)
		if got := Sum256(data); got != want {
			t.Fatalf("Sum256 of %d bytes: %x, want %x", n, got, want)
		}
		var h Hasher
		h.Write(data)
		if got := h.Sum256(); got != want {
			t.Fatalf("one Write of %d bytes: %x, want %x", n, got, want)
		}
		for round := 0; round < 8; round++ {
			h.Reset()
			rest := data
			for len(rest) > 0 {
				k := rng.IntN(min(len(rest), 3*bufSize)) + 1
				if rng.IntN(4) == 0 {
					k = min(len(rest), bufSize*(1+rng.IntN(3))) // whole buffers too
				}
				h.Write(rest[:k])
				rest = rest[k:]
				if rng.IntN(8) == 0 { // the hash so far, which must not disturb what follows
					if got, want := h.Sum256(), zeebo.Sum256(data[:n-len(rest)]); got != want {
						t.Fatalf("Sum256 after %d of %d bytes: %x, want %x", n-len(rest), n, got, want)
					}
				}
			}
			if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatalf("%d bytes in random writes (round %d): %x, want %x", n, round, got, want)
			}
		}
	}
}

// TestSubtrees checks OnSubtree and AddSubtree against zeebo: the CVs a
// hash of A reports, given back by AddSubtree for the spans B shares with A
// (at the same offsets), must give B's hash, for B changed in one span,
// in several, or not at all, with the rest written in random pieces. It
// also checks which spans are reported: every one but the input's last.
func TestSubtrees(t *testing.T) { bothModes(t, testSubtrees) }

func testSubtrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{SubtreeSize + 1, 2 * SubtreeSize, 2*SubtreeSize + 1, 3*SubtreeSize - 7,
		7 * SubtreeSize, 8 * SubtreeSize, 8*SubtreeSize + 1, 1 << 20, 1<<20 + 1, 5<<20 + 12345} {
		a := input(n)
		cvs := map[uint64]CV{}
		var h Hasher
		h.OnSubtree(func(i uint64, cv CV) {
			if _, dup := cvs[i]; dup {
				t.Fatalf("%d bytes: span %d reported twice", n, i)
			}
			cvs[i] = cv
		})
		writeRandomly(rng, &h, a, false)
		if got, want := h.Sum256(), zeebo.Sum256(a); got != want {
			t.Fatalf("%d bytes with OnSubtree: %x, want %x", n, got, want)
		}
		spans := uint64((n - 1) / SubtreeSize) // every span but the last, which may be partial
		if uint64(len(cvs)) != spans {
			t.Fatalf("%d bytes: %d spans reported, want %d", n, len(cvs), spans)
		}
		for round := 0; round < 6; round++ {
			b := bytes.Clone(a)
			changed := map[uint64]bool{}
			for k := round; k > 0; k-- { // round 0: B is A
				i := uint64(rng.IntN(n / SubtreeSize))
				changed[i] = true
				b[int(i)*SubtreeSize+rng.IntN(SubtreeSize)] ^= 0x5a
			}
			h.Reset()
			h.Spans()
			reused := 0
			for i := uint64(0); i < spans; i++ {
				span := b[i*SubtreeSize : (i+1)*SubtreeSize]
				if cv, ok := cvs[i]; ok && !changed[i] && rng.IntN(5) != 0 {
					h.AddSubtree(cv)
					reused++
					continue
				}
				writeRandomly(rng, &h, span, true)
			}
			writeRandomly(rng, &h, b[spans*SubtreeSize:], false)
			if got, want := h.Sum256(), zeebo.Sum256(b); got != want {
				t.Fatalf("%d bytes, %d spans changed, %d added as CVs: %x, want %x", n, len(changed), reused, got, want)
			}
		}
		// A CV of a changed span gives a different hash: the test can fail.
		b := bytes.Clone(a)
		b[0] ^= 1
		h.Reset()
		h.AddSubtree(cvs[0])
		h.Write(b[SubtreeSize:])
		if h.Sum256() == zeebo.Sum256(b) {
			t.Fatalf("%d bytes: a stale CV gave the changed input's hash", n)
		}
	}
}

func TestSubtreeMisuse(t *testing.T) { bothModes(t, testSubtreeMisuse) }

func testSubtreeMisuse(t *testing.T) {
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s did not panic", what)
			}
		}()
		f()
	}
	mustPanic("AddSubtree after 5 bytes", func() {
		var h Hasher
		h.Write([]byte("hello"))
		h.AddSubtree(CV{})
	})
	mustPanic("Sum256 right after AddSubtree", func() {
		var h Hasher
		h.AddSubtree(CV{})
		h.Sum256()
	})
}

// writeRandomly writes p to h in pieces of random length, by Write or, for
// pieces not at the input's end (more follows p, or not the last of p), by
// WriteMid.
func writeRandomly(rng *rand.Rand, h *Hasher, p []byte, more bool) {
	for len(p) > 0 {
		k := min(len(p), rng.IntN(3*SubtreeSize)+1)
		if rng.IntN(3) == 0 {
			k = min(len(p), SubtreeSize) // a database's page
		}
		if (more || k < len(p)) && rng.IntN(2) == 0 {
			h.WriteMid(p[:k])
		} else {
			h.Write(p[:k])
		}
		p = p[k:]
	}
}

// TestWriteMid hashes every length at the tree's edges with all but the
// last piece written by WriteMid, in random pieces and in 16 KiB ones.
func TestWriteMid(t *testing.T) { bothModes(t, testWriteMid) }

func testWriteMid(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range lengths {
		data := input(n)
		want := zeebo.Sum256(data)
		for round := 0; round < 4; round++ {
			var h Hasher
			writeRandomly(rng, &h, data, false)
			if got := h.Sum256(); got != want {
				t.Fatalf("%d bytes, round %d: %x, want %x", n, round, got, want)
			}
		}
		if n == 0 {
			continue
		}
		var h Hasher
		rest := data
		for len(rest) > SubtreeSize {
			h.WriteMid(rest[:SubtreeSize])
			rest = rest[SubtreeSize:]
		}
		h.Write(rest)
		if got := h.Sum256(); got != want {
			t.Fatalf("%d bytes in 16 KiB pieces by WriteMid: %x, want %x", n, got, want)
		}
	}
}

// TestVectors checks the BLAKE3 reference vectors' input pattern (byte i is
// i mod 251) against the hashes the reference implementation publishes,
// for lengths that end inside and at the edges of chunks and buffers.
func TestVectors(t *testing.T) { bothModes(t, testVectors) }

func testVectors(t *testing.T) {
	want := map[int]string{
		0:      "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
		1:      "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
		1023:   "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
		1024:   "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
		1025:   "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
		2048:   "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a",
		3072:   "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2",
		8192:   "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63",
		16384:  "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4",
		31744:  "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47",
		102400: "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085",
	}
	for n, w := range want {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i % 251)
		}
		if got := Sum256(b); hex.EncodeToString(got[:]) != w {
			t.Errorf("Sum256 of the %d-byte vector: %x, want %s", n, got, w)
		}
	}
}

// TestAgainstB3sum hashes a few files with the b3sum command, the
// independent checker users run on restored files.
func TestAgainstB3sum(t *testing.T) { bothModes(t, testAgainstB3sum) }

func testAgainstB3sum(t *testing.T) {
	if _, err := exec.LookPath("b3sum"); err != nil {
		t.Skip("b3sum not installed (Debian package b3sum): checked against zeebo/blake3 only")
	}
	dir := t.TempDir()
	for _, n := range []int{0, 5000, bufSize, 3*bufSize + 99, 4 << 20} {
		p := filepath.Join(dir, fmt.Sprint(n))
		data := input(n)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("b3sum", "--no-names", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := Sum256(data); hex.EncodeToString(got[:]) != strings.TrimSpace(string(out)) {
			t.Fatalf("%d bytes: %x, b3sum says %s", n, got, out)
		}
	}
}

// TestWriteAllocates nothing.
func TestWriteAllocates(t *testing.T) { bothModes(t, testWriteAllocates) }

func testWriteAllocates(t *testing.T) {
	data := input(1 << 20)
	h := New()
	if a := testing.AllocsPerRun(10, func() { h.Reset(); h.Write(data); h.Sum256() }); a != 0 {
		t.Fatalf("%v allocations per 1 MiB hashed, want 0", a)
	}
}

func BenchmarkSum256(b *testing.B) {
	for _, n := range []int{1 << 10, 2 << 10, 4 << 10, 7 << 10, 8 << 10, 16 << 10, 64 << 10, 1 << 20} {
		data := input(n)
		b.Run(fmt.Sprintf("b3/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				Sum256(data)
			}
		})
		b.Run(fmt.Sprintf("zeebo/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				zeebo.Sum256(data)
			}
		})
	}
}

// BenchmarkWrite streams 64 MiB in writes of the sizes a backup makes.
func BenchmarkWrite(b *testing.B) {
	for _, w := range []int{16 << 10, 1 << 20} {
		data := input(w)
		b.Run(fmt.Sprintf("b3/%d", w), func(b *testing.B) {
			b.SetBytes(64 << 20)
			h := New()
			for b.Loop() {
				h.Reset()
				for range (64 << 20) / w {
					h.Write(data)
				}
				h.Sum256()
			}
		})
		b.Run(fmt.Sprintf("zeebo/%d", w), func(b *testing.B) {
			b.SetBytes(64 << 20)
			for b.Loop() {
				h := zeebo.New()
				for range (64 << 20) / w {
					h.Write(data)
				}
				h.Sum(nil)
			}
		})
	}
}
