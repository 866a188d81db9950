package chunker

// Run a target with, for example,
//
//	go test -run X -fuzz FuzzSplit -fuzztime 30s -fuzzminimizetime 2s ./snapshot/chunker/
//
// Go minimises each new interesting input in time quadratic in its length,
// for up to a minute by default, and inputs here are kilobytes (chunks need
// data to cut): without -fuzzminimizetime a short run mostly minimises.

import (
	"bytes"
	"testing"
	"testing/iotest"
)

// fuzzParams derives valid small Params from three fuzzed bytes: Avg 128..1024,
// Min 64..Avg-1, Max Avg+1..5*Avg.
func fuzzParams(t *testing.T, a, m, x uint16) Params {
	avg := 128 << (a % 4)
	p := Params{
		Min: 64 + int(m)%(avg-64),
		Avg: avg,
		Max: avg + 1 + int(x)%(4*avg),
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("fuzzParams built invalid %+v: %v", p, err)
	}
	return p
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte{}, uint16(1), uint16(0), uint16(767))
	f.Add([]byte("hello, world"), uint16(1), uint16(0), uint16(767))
	f.Add(make([]byte, 3000), uint16(0), uint16(10), uint16(3))
	f.Add(randomData(3000, 20), uint16(1), uint16(0), uint16(767)) // Min 64 Avg 256 Max 1024
	f.Add(randomData(3000, 21), uint16(3), uint16(900), uint16(100))
	f.Add(mixedData(3000, 22, small), uint16(2), uint16(5), uint16(2000))
	f.Fuzz(func(t *testing.T, data []byte, a, m, x uint16) {
		p := fuzzParams(t, a, m, x)
		chunks := Split(data, p)
		checkChunks(t, data, chunks, p)
		got := lengths(chunks)
		if want := lengths(refSplit(data, p)); !equalInts(got, want) {
			t.Fatalf("%+v: Split lengths %v, reference %v", p, got, want)
		}
		r := iotest.DataErrReader(iotest.HalfReader(bytes.NewReader(data)))
		if viaNext := lengths(readAll(t, r, p)); !equalInts(got, viaNext) {
			t.Fatalf("%+v: Split lengths %v, New/Next %v", p, got, viaNext)
		}
		into, _ := nextIntoAll(t, iotest.OneByteReader(bytes.NewReader(data)), p, len(data)%7)
		if viaInto := lengths(into); !equalInts(got, viaInto) {
			t.Fatalf("%+v: Split lengths %v, NextInto %v", p, got, viaInto)
		}
	})
}

// starts returns the offsets at which chunks start, followed by len(data).
func starts(chunks [][]byte) []int {
	pos := []int{0}
	for _, c := range chunks {
		pos = append(pos, pos[len(pos)-1]+len(c))
	}
	return pos
}

// FuzzResync inserts ins at offset k of data and checks the two properties
// content-defined chunking guarantees whatever the data:
//
//  1. Boundaries up to k are unchanged: a cut at e <= k depends only on the
//     bytes before e, plus having at least Max bytes after the chunk start
//     or the end of the stream there.
//  2. Once the streams share a chunk start at or after the edit (q in the
//     original, q+len(ins) in the edited stream), every later boundary is
//     shared too: a cut depends only on the bytes from the chunk start on.
//
// Random data realigns within a chunk or two (TestResync); adversarial data
// need not realign at all (for example a boundary-free run cut every Max
// bytes, which an insertion shifts forever), so that is not asserted here.
func FuzzResync(f *testing.F) {
	f.Add(randomData(3000, 30), uint32(1500), []byte("x"))
	f.Add(randomData(3000, 31), uint32(0), []byte("insert at the front"))
	f.Add(randomData(3000, 32), uint32(3000), []byte("append"))
	f.Add(mixedData(3000, 33, small), uint32(1777), bytes.Repeat([]byte{0}, 100))
	f.Add(make([]byte, 3000), uint32(2000), []byte{1})
	f.Add([]byte{}, uint32(0), []byte("into nothing"))
	f.Add(randomData(3000, 34), uint32(1000), randomData(700, 35)) // shifts chunk indexes
	f.Fuzz(func(t *testing.T, data []byte, k32 uint32, ins []byte) {
		p := small
		k := int(k32 % uint32(len(data)+1))
		mod := make([]byte, 0, len(data)+len(ins))
		mod = append(append(append(mod, data[:k]...), ins...), data[k:]...)
		d := len(ins)

		a, b := Split(data, p), Split(mod, p)
		checkChunks(t, data, a, p)
		checkChunks(t, mod, b, p)
		sa, sb := starts(a), starts(b)

		// 1. A chunk end e <= k that is not its stream's own end (so it was
		// cut by content or by Max) is a chunk end in the other stream too,
		// where it may be that stream's end: appending to a stream that ends
		// in a short chunk can make the end a content cut.
		inA := make(map[int]int, len(sa)) // offset in data -> index in sa
		for i, s := range sa {
			inA[s] = i
		}
		inB := make(map[int]int, len(sb)) // offset in mod -> index in sb
		for i, s := range sb {
			inB[s] = i
		}
		inner := func(s []int) []int { return s[1:max(1, len(s)-1)] } // ends but the stream's own
		for _, e := range inner(sa) {
			if _, ok := inB[e]; e <= k && !ok {
				t.Fatalf("k=%d: chunk end %d before the edit is not one after it", k, e)
			}
		}
		for _, e := range inner(sb) {
			if _, ok := inA[e]; e <= k && !ok {
				t.Fatalf("k=%d: chunk end %d after the edit is not one before it", k, e)
			}
		}

		// 2. From the first shared chunk start q >= k on, all agree.
		for i, q := range sa {
			if q < k {
				continue
			}
			j, ok := inB[q+d]
			if !ok {
				continue
			}
			restA, restB := sa[i:], sb[j:]
			if len(restA) != len(restB) {
				t.Fatalf("k=%d: synchronised at %d, then %d chunk starts vs %d", k, q, len(restA), len(restB))
			}
			for n := range restA {
				if restA[n]+d != restB[n] {
					t.Fatalf("k=%d: synchronised at %d, then start %d vs %d (shift %d)", k, q, restA[n], restB[n], d)
				}
			}
			break
		}
	})
}
