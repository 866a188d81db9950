package snapshot

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"snapforge/snapshot/pack"
)

// logText returns n bytes of log-like lines: a few formats, counters and
// words drawn at random (the kind of data the fast effort suits).
func logText(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	words := []string{"GET", "POST", "/api/v1/items", "/static/app.js", "200", "404", "user", "session", "ok", "retry", "worker", "queue", "flushed", "ms"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "2026-11-%02d %02d:%02d:%02d.%03d ", rng.IntN(28)+1, rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000))
		for range 3 + rng.IntN(6) {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "id=%d\n", rng.Uint32())
	}
	return b.Bytes()[:n]
}

// TestLevelPickTrials: the first job of a stream and every pickEvery-th
// after it is a trial at the default effort; between trials the stream
// takes what the last trial judged, fast only while the fast frame was
// within 1/pickSlack of the default one. A nil pick is always the default.
func TestLevelPickTrials(t *testing.T) {
	if e, trial := (*levelPick)(nil).next(); e != pack.EffortDefault || trial {
		t.Fatalf("nil pick: effort %d, trial %v; want the default, no trial", e, trial)
	}
	var p levelPick
	for job := 1; job <= 3*pickEvery+1; job++ {
		e, trial := p.next()
		wantTrial := job%pickEvery == 1
		if trial != wantTrial {
			t.Fatalf("job %d: trial %v, want %v", job, trial, wantTrial)
		}
		if trial {
			if e != pack.EffortDefault {
				t.Fatalf("job %d: a trial at effort %d, want the default (what is stored)", job, e)
			}
			switch (job - 1) / pickEvery { // which trial
			case 0:
				p.judge(1000, 1031) // within 1/32: fast
			case 1:
				p.judge(1000, 1032) // beyond: the default
			case 2:
				p.judge(1000, 0) // the fast frame saved too little to be stored
			}
			continue
		}
		want := pack.EffortDefault
		if (job-1)/pickEvery == 0 { // after the first trial
			want = pack.EffortFast
		}
		if e != want {
			t.Fatalf("job %d: effort %d, want %d", job, e, want)
		}
	}
}

// TestCompressJobFollowsPick: what compressJob stores is byte-for-byte the
// frame of the effort the pick chose: the default one in a trial (which
// judges by the two frames' sizes; with C zstd, log text goes fast), then
// the chosen one, then, the choice flipped, the other; groups and single
// blobs alike, and every frame decodes to the job's bytes.
func TestCompressJobFollowsPick(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			if !pack.FastDiffers(group) {
				t.Skip("this build compresses single blobs with one encoder at both efforts (no cgo): no trial")
			}
			var p levelPick
			for k := range 3 {
				raw := logText(uint64(k+1), 1<<20)
				job := func() blobJob {
					buf := getBuf(len(raw))
					*buf = append((*buf)[:0], raw...)
					j := blobJob{id: Hash(raw), kind: KindData, raw: *buf, buf: buf, pick: &p, probed: true}
					if group {
						j.members = []pack.Blob{{ID: Hash(raw[:1<<19]), Kind: KindData, Raw: 1 << 19}, {ID: Hash(raw[1<<19:]), Kind: KindData, Raw: 1 << 19}}
					}
					return j
				}
				def, dc := compressAt(nil, &blobJob{raw: raw, members: job().members}, pack.EffortDefault, true)
				fast, fc := compressAt(nil, &blobJob{raw: raw, members: job().members}, pack.EffortFast, true)
				if dc == pack.CodecRaw || fc == pack.CodecRaw || bytes.Equal(def, fast) {
					t.Fatalf("log text: codecs %d and %d, frames equal %v: want two different compressed frames", dc, fc, bytes.Equal(def, fast))
				}
				if k == 2 { // the other effort, whatever the trial judged
					p.fast.Store(!p.fast.Load())
				}
				wantFast := p.fast.Load() && k > 0
				pj := compressJob(job())
				want := def
				if wantFast {
					want = fast
				}
				if !bytes.Equal(pj.stored, want) {
					t.Fatalf("job %d (fast chosen %v): stored %d bytes, want the %d-byte frame of that effort", k, wantFast, len(pj.stored), len(want))
				}
				codec := pack.CodecZstd
				if group {
					codec = pack.CodecGroup
				}
				if pj.codec != codec {
					t.Fatalf("job %d: codec %d, want %d", k, pj.codec, codec)
				}
				plain, err := pack.Decode(nil, pj.stored, pack.CodecZstd, uint32(len(raw)))
				if err != nil || !bytes.Equal(plain, raw) {
					t.Fatalf("job %d: stored frame decodes to %d bytes (%v), want the job's %d", k, len(plain), err, len(raw))
				}
				if k == 0 { // the trial: judged by the two frames; with C zstd, logs go fast
					want := len(fast) <= len(def)+len(def)/pickSlack
					if p.fast.Load() != want || (!want && strings.Contains(pack.Encoders(), " in C ")) {
						t.Fatalf("trial on log text: fast chosen %v with frames of %d (default) and %d (fast) bytes, want %v (within 1/%d; with C zstd, fast)", p.fast.Load(), len(def), len(fast), want, pickSlack)
					}
				}
				putBuf(pj.buf)
			}
		})
	}
}

// EffortLogText is logText for the package's external tests.
var EffortLogText = logText

// TestGrouperMixedStreams: a group is compressed as its members' stream
// chooses, and at the default effort (nil pick) as soon as it holds blobs
// of two streams, in either order.
func TestGrouperMixedStreams(t *testing.T) {
	var a, b levelPick
	blob := func(i int) (ID, []byte) {
		d := []byte(fmt.Sprintf("blob %d", i))
		return Hash(d), d
	}
	cases := []struct {
		name  string
		picks []*levelPick
		want  *levelPick
	}{
		{"one large file", []*levelPick{&a, &a, &a}, &a},
		{"small files", []*levelPick{nil, nil}, nil},
		{"a file's last pages, then small files", []*levelPick{&a, &a, nil}, nil},
		{"small files, then a file's pages", []*levelPick{nil, &a, &a}, nil},
		{"two large files", []*levelPick{&a, &b}, nil},
	}
	for _, c := range cases {
		var g grouper
		for i, p := range c.picks {
			id, d := blob(i)
			if _, full := g.add(id, d, p); full {
				t.Fatalf("%s: group full after %d small blobs", c.name, i)
			}
		}
		j := g.take()
		if j.pick != c.want || len(j.members) != len(c.picks) {
			t.Fatalf("%s: group of %d members with pick %p, want %d with %p", c.name, len(j.members), j.pick, len(c.picks), c.want)
		}
		putBuf(j.buf)
	}
}

// fiveByteTokens returns n bytes of 5-byte tokens from a vocabulary of
// 1024, each followed by a random byte: level 3 finds the tokens (matches
// from 5 bytes), level 2's fast strategy (matches from 6) finds nothing.
func fiveByteTokens(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1024))
	vocab := make([][5]byte, 1024)
	for i := range vocab {
		for j := range vocab[i] {
			vocab[i][j] = byte(rng.Uint32())
		}
	}
	raw := make([]byte, 0, n+6)
	for len(raw) < n {
		tk := vocab[rng.IntN(len(vocab))]
		raw = append(append(raw, tk[:]...), byte(rng.Uint32()))
	}
	return raw[:n]
}

// TestFastFallsBackToDefault: in a stream judged fast, a job whose fast
// frame saves too little to be kept is compressed again at the default
// effort, which saves nearly half here, instead of being stored raw.
func TestFastFallsBackToDefault(t *testing.T) {
	raw := fiveByteTokens(1, 1<<20)
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			if !pack.FastDiffers(group) {
				t.Skip("this build compresses single blobs with one encoder at both efforts (no cgo): no fast frame to fall back from")
			}
			j := blobJob{raw: raw}
			if group {
				j.members = []pack.Blob{{ID: Hash(raw[:1<<19]), Kind: KindData, Raw: 1 << 19}, {ID: Hash(raw[1<<19:]), Kind: KindData, Raw: 1 << 19}}
			}
			if _, c := compressAt(nil, &j, pack.EffortFast, true); c != pack.CodecRaw {
				t.Fatalf("five-byte tokens: the fast effort compressed them (codec %d); the test needs data it cannot", c)
			}
			def, dc := compressAt(nil, &j, pack.EffortDefault, true)
			if dc == pack.CodecRaw {
				t.Fatal("five-byte tokens: the default effort did not compress them")
			}
			var p levelPick
			p.jobs.Store(1) // past the first trial
			p.fast.Store(true)
			buf := getBuf(len(raw))
			*buf = append((*buf)[:0], raw...)
			j = blobJob{id: Hash(raw), kind: KindData, raw: *buf, buf: buf, members: j.members, pick: &p, probed: true}
			pj := compressJob(j)
			if pj.codec != dc || !bytes.Equal(pj.stored, def) {
				t.Fatalf("stored %d bytes with codec %d, want the default effort's frame of %d (codec %d)", len(pj.stored), pj.codec, len(def), dc)
			}
			putBuf(pj.buf)
		})
	}
}
