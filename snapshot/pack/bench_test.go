package pack

import (
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

const benchSize = 1 << 20 // the average chunk

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpuMB/s: bytes processed per CPU second since start. On a
// busy host it is steadier than the wall-clock MB/s, which counts time spent
// waiting for a CPU.
func reportCPU(b *testing.B, bytesPerOp int, start time.Duration) {
	if cpu := cpuTime() - start; cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/cpu.Seconds()/1e6, "cpuMB/s")
	}
}

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
			dst := make([]byte, 0, CompressBound(len(raw)))
			b.SetBytes(int64(len(raw)))
			start := cpuTime()
			for b.Loop() {
				Compress(dst, raw)
			}
			reportCPU(b, len(raw), start)
		})
	}
}

func BenchmarkCompressParallel(b *testing.B) {
	raw := benchInputs()["compressible"]
	b.SetBytes(int64(len(raw)))
	start := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, 0, CompressBound(len(raw)))
		for pb.Next() {
			Compress(dst, raw)
		}
	})
	reportCPU(b, len(raw), start)
}

// BenchmarkDecode decodes a 1 MiB chunk and a 16 KiB database page into a
// buffer of exactly the raw size (exact copies) and of raw+DecodeSlack (the
// decoder's fast copies).
func BenchmarkDecode(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 7))
	inputs := benchInputs()
	inputs["page16k"] = textish(rng, 16<<10)
	for name, raw := range inputs {
		stored, codec := Compress(nil, raw)
		for _, room := range []struct {
			name  string
			slack int
		}{{"exact", 0}, {"slack", DecodeSlack}} {
			b.Run(name+"/"+room.name, func(b *testing.B) {
				dst := make([]byte, 0, len(raw)+room.slack)
				b.SetBytes(int64(len(raw)))
				start := cpuTime()
				for b.Loop() {
					out, err := Decode(dst, stored, codec, uint32(len(raw)))
					if err != nil {
						b.Fatal(err)
					}
					if &out[0] != &dst[:1][0] {
						b.Fatal("Decode allocated instead of using dst")
					}
				}
				reportCPU(b, len(raw), start)
			})
		}
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
	start := cpuTime()
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
	reportCPU(b, len(stored), start)
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
			start := cpuTime()
			for b.Loop() {
				if _, err := ReadTrailer(r, int64(len(data))); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, n*entrySize, start)
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
