package pack

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/zeebo/blake3"
)

var words = []string{
	"snapshot", "chunk", "the", "of", "backup", "restore", "a", "and", "pack", "tree",
	"model", "config", "database", "log", "entry", "to", "is", "in", "file", "data",
}

// textish returns n bytes of word soup: compressible like logs or configs.
func textish(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, words[rng.IntN(len(words))]...)
		if rng.IntN(12) == 0 {
			b = append(b, '\n')
		} else {
			b = append(b, ' ')
		}
	}
	return b[:n]
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n:n]
}

// blobData returns a blob of size n in one of four flavours: random,
// text, zeros, or half text and half random.
func blobData(rng *rand.Rand, flavour, n int) []byte {
	switch flavour % 4 {
	case 0:
		return randomBytes(rng, n)
	case 1:
		return textish(rng, n)
	case 2:
		return make([]byte, n)
	default:
		return append(textish(rng, n/2), randomBytes(rng, n-n/2)...)
	}
}

// buildPack writes raws as a pack with Compress and returns the file bytes.
func buildPack(t testing.TB, raws [][]byte) ([]byte, []Blob) {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i, raw := range raws {
		stored, codec := Compress(nil, raw)
		if _, err := w.Add(blake3.Sum256(raw), uint8(i%2), codec, stored, uint32(len(raw))); err != nil {
			t.Fatal(err)
		}
	}
	_, blobs, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), blobs
}

func smallPack(t testing.TB, n int) ([]byte, []Blob) {
	rng := rand.New(rand.NewPCG(1, 2))
	raws := make([][]byte, n)
	for i := range raws {
		raws[i] = blobData(rng, i, 10+rng.IntN(3000))
	}
	return buildPack(t, raws)
}

// trailerStart returns where the trailer of a well-formed pack starts.
func trailerStart(data []byte) int {
	tlen := binary.LittleEndian.Uint32(data[len(data)-footerSize:])
	return len(data) - footerSize - int(tlen)
}

// reseal recomputes the footer checksum of data in place, so a test can
// change trailer fields and reach the checks behind the checksum.
func reseal(data []byte) {
	start := trailerStart(data)
	sum := blake3.Sum256(data[start : len(data)-footerSize])
	copy(data[len(data)-footerSize+4:], sum[:sumSize])
}

// allocated returns the bytes allocated on the heap while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
