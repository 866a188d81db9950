package snapshot

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	blake3 "snapforge/snapshot/b3"
)

// Verify proves a file of several chunks by recomputing its whole-file
// BLAKE3. A later version of a large file mostly shares its bytes with the
// version before (a database with some pages rewritten, a log appended to,
// a model file with a megabyte changed in place), and reading, decoding
// and hashing all of it again cost as much as the first time: in the
// reference dataset's mutated snapshot, some 950 MB for 11 MB of new data.
//
// BLAKE3 is a Merkle tree: the hash of a file is computed from the chaining
// values (CVs) of its aligned 16 KiB spans, and a span's CV depends only on
// its bytes and its offset. So verify remembers the CV of every span of the
// files it proved, keyed by what the span is made of (its index, and the
// ids and offsets of the chunks that cover it), and a later file whose span
// has the same key takes the CV instead of the bytes. Only the chunks that
// cover spans not seen before are read. The hash that comes out is the
// file's BLAKE3, computed from bytes read and checked in this run, so the
// proof is the same as reading everything again: a chunk's id names its
// bytes (one index entry, one stored blob), and the bytes of every span
// taken as a CV were hashed, as part of a file whose hash then matched.

// spanCVsMax bounds the CVs kept: 144 bytes each in the map (measured:
// 75 MB for 1<<19 of them), for 8 GiB of large files. Past it, new spans
// are not remembered (and are read again if a later file has them).
const spanCVsMax = 1 << 19

// spanCVs holds the CVs of the spans proven in one verify run.
type spanCVs struct {
	mu     sync.Mutex
	cvs    map[ID]blake3.CV
	reused atomic.Int64 // bytes added as CVs, of files proven
}

// spanKeys returns the key of each of the first max spans of n, leaving out
// the last span (which Sum256 needs as bytes): a hash of the span's index
// and the ids and offsets, relative to the span, of the chunks that cover
// it. n's chunk sizes must add up to its size.
func spanKeys(n *Node, max int) []ID {
	const size = blake3.SubtreeSize
	if n.Size <= size {
		return nil
	}
	keys := make([]ID, min(int64(max), (n.Size-1)/size))
	buf := make([]byte, 0, 8+4*(32+8))
	j, start := 0, int64(0) // the first chunk that ends after span s begins, and its offset
	for s := range keys {
		lo, hi := int64(s)*size, int64(s+1)*size
		for start+int64(n.Chunks[j].Size) <= lo {
			start += int64(n.Chunks[j].Size)
			j++
		}
		buf = binary.LittleEndian.AppendUint64(buf[:0], uint64(s))
		for k, at := j, start; k < len(n.Chunks) && at < hi; k++ {
			buf = append(buf, n.Chunks[k].ID[:]...)
			buf = binary.LittleEndian.AppendUint64(buf, uint64(at-lo))
			at += int64(n.Chunks[k].Size)
		}
		keys[s] = Hash(buf)
	}
	return keys
}

// spanPlan is how proveFile will prove a file: the keys of its first
// spans (at most spanCVsMax: no more could be remembered), the CVs known
// for them when planned, and the chunks to read. Its size is a small part
// of the file's chunk list: 33 bytes a span keyed, a bit a span for have,
// and the CVs and chunks to read only where a part is known.
type spanPlan struct {
	keys  []ID
	have  []uint64            // bit s: span s is known
	known map[int32]blake3.CV // the CVs of the spans known
	// The chunks to read, as indices into the file's chunks; nil: all of
	// them (nothing known, the common case of a first version).
	read []int32
}

func (p *spanPlan) has(s int) bool { return s < len(p.keys) && p.have[s/64]&(1<<(s%64)) != 0 }

// planSpans plans the proof of n, a file of several chunks whose sizes add
// up to its size, from the CVs known now. The chunks to read are those that
// cover a span not known, or the last.
func (v *verifier) planSpans(n *Node) *spanPlan {
	const size = blake3.SubtreeSize
	p := &spanPlan{keys: spanKeys(n, spanCVsMax)}
	p.have = make([]uint64, (len(p.keys)+63)/64)
	v.spans.mu.Lock()
	for s, k := range p.keys {
		if cv, ok := v.spans.cvs[k]; ok {
			if p.known == nil {
				p.known = map[int32]blake3.CV{}
			}
			p.known[int32(s)] = cv
			p.have[s/64] |= 1 << (s % 64)
		}
	}
	v.spans.mu.Unlock()
	if p.known == nil {
		return p // every chunk is read
	}
	var start int64
	for i, c := range n.Chunks {
		end := start + int64(c.Size)
		for s := start / size; s <= (end-1)/size; s++ {
			if !p.has(int(s)) {
				p.read = append(p.read, int32(i))
				break
			}
		}
		start = end
	}
	return p
}

// proveFile recomputes the whole-file BLAKE3 of n as p says: from the CVs
// of spans proven before and the bytes of the rest, and remembers the CVs
// of the spans it hashed. locs are the chunks' locations. Each chunk read
// is passed to progress, with its index among those read. A hash that does
// not match is a CorruptError for n.Hash (see nameDamage).
func (v *verifier) proveFile(ctx context.Context, n *Node, locs []Location, p *spanPlan, progress func(i, size int)) error {
	const size = blake3.SubtreeSize
	refs, refLocs := n.Chunks, locs
	if p.read != nil {
		refs, refLocs = make([]ChunkRef, len(p.read)), make([]Location, len(p.read))
		for k, i := range p.read {
			refs[k], refLocs[k] = n.Chunks[i], locs[i]
		}
	}
	v.spans.mu.Lock()
	room := max(0, spanCVsMax-len(v.spans.cvs))
	v.spans.mu.Unlock()
	h := blake3.Get()
	defer blake3.Put(h)
	type spanCV struct {
		s  int
		cv blake3.CV
	}
	var hashed []spanCV
	h.OnSubtree(func(s uint64, cv blake3.CV) {
		if int(s) < len(p.keys) && len(hashed) < room {
			hashed = append(hashed, spanCV{int(s), cv})
		}
	})
	var pos int64         // bytes of the file hashed or added as CVs
	var reused int64      // of them, added as CVs: counted once the file is proven
	nk := 0               // the first known span at or after pos's, or len(p.keys)
	next := 0             // the next of refs
	at, ci := int64(0), 0 // the offset of n.Chunks[ci]
	_, err := v.r.streamRefs(ctx, v.pr, refs, refLocs, false, func(data []byte, _ int64) error {
		want := next
		if p.read != nil {
			want = int(p.read[next])
		}
		for ; ci < want; ci++ {
			at += int64(n.Chunks[ci].Size)
		}
		co := at
		progress(next, len(data))
		next++
		end := co + int64(len(data))
		for pos < end {
			s := int(pos / size)
			for nk < len(p.keys) && (nk < s || !p.has(nk)) {
				nk++
			}
			if nk == s && nk < len(p.keys) && pos%size == 0 {
				h.AddSubtree(p.known[int32(s)])
				reused += size
				pos += size
				continue
			}
			if pos < co { // bytes no chunk read covers: planSpans and this loop disagree
				return fmt.Errorf("internal error proving %s: offset %d is in no chunk read (span %d not known)", DisplayName(n.Name), pos, s)
			}
			stop := end // up to the next known span: hashed in runs as long as they come
			if nk < len(p.keys) {
				stop = min(end, int64(nk)*size)
			}
			if stop == n.Size {
				h.Write(data[pos-co : stop-co])
			} else {
				h.WriteMid(data[pos-co : stop-co])
			}
			pos = stop
		}
		return nil
	})
	if err != nil {
		return err
	}
	if pos != n.Size || ID(h.Sum256()) != n.Hash {
		return fileMismatch(n)
	}
	v.spans.reused.Add(reused)
	v.spans.mu.Lock()
	for _, x := range hashed {
		if len(v.spans.cvs) >= spanCVsMax {
			break
		}
		v.spans.cvs[p.keys[x.s]] = x.cv
	}
	v.spans.mu.Unlock()
	return nil
}
