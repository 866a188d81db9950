package pack

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/zeebo/blake3"
)

const benchSize = 1 << 20 // the average chunk

func benchInputs() map[string][]byte {
	rng := rand.New(rand.NewPCG(42, 42))
	return map[string][]byte{
		"compressible":   textish(rng, benchSize),
		"incompressible": randomBytes(rng, benchSize),
	}
}

func BenchmarkCompress(b *testing.B) {
	for name, raw := range benchInputs() {
		b.Run(name, func(b *testing.B) {
			stored, codec := Compress(nil, raw)
			b.ReportMetric(float64(len(stored))/float64(len(raw)), "ratio")
			_ = codec
			dst := make([]byte, 0, len(raw))
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				Compress(dst, raw)
			}
		})
	}
}

func BenchmarkCompressParallel(b *testing.B) {
	raw := benchInputs()["compressible"]
	b.SetBytes(int64(len(raw)))
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, 0, len(raw))
		for pb.Next() {
			Compress(dst, raw)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for name, raw := range benchInputs() {
		b.Run(name, func(b *testing.B) {
			stored, codec := Compress(nil, raw)
			dst := make([]byte, 0, len(raw))
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := Decode(dst, stored, codec, uint32(len(raw))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWriter(b *testing.B) {
	raw := benchInputs()["compressible"]
	stored, codec := Compress(nil, raw)
	id := blake3.Sum256(raw)
	const perPack = 32 // a 32 MiB pack before compression
	b.SetBytes(int64(len(stored)))
	var w *Writer
	i := 0
	for b.Loop() {
		if i%perPack == 0 {
			if w != nil {
				if _, _, err := w.Finish(); err != nil {
					b.Fatal(err)
				}
			}
			w = NewWriter(io.Discard)
		}
		if _, err := w.Add(id, KindData, codec, stored, uint32(len(raw))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkReadTrailer(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			raws := make([][]byte, n)
			for i := range raws {
				raws[i] = []byte(fmt.Sprint("blob ", i))
			}
			data, _ := buildPack(b, raws)
			r := bytesReaderAt(data)
			b.SetBytes(int64(n * entrySize))
			for b.Loop() {
				if _, err := ReadTrailer(r, int64(len(data))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type bytesReaderAt []byte

func (p bytesReaderAt) ReadAt(dst []byte, off int64) (int, error) {
	if off >= int64(len(p)) {
		return 0, io.EOF
	}
	n := copy(dst, p[off:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}
