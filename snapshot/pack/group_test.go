package pack

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// groupPack writes: a raw blob, a group of three text blobs, a zstd blob,
// a group of one, and returns the pack bytes, the entries the writer
// returned and every blob's plaintext by id.
func groupPack(t testing.TB) ([]byte, []Blob, map[[32]byte][]byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	plain := map[[32]byte][]byte{}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	var all []Blob
	add := func(raw []byte) {
		stored, codec := Compress(nil, raw)
		b, err := w.Add(blake3.Sum256(raw), KindData, codec, stored, uint32(len(raw)))
		if err != nil {
			t.Fatal(err)
		}
		plain[b.ID] = raw
		all = append(all, b)
	}
	group := func(raws ...[]byte) {
		var members []Blob
		var cat []byte
		for _, r := range raws {
			members = append(members, Blob{ID: blake3.Sum256(r), Kind: KindData, Raw: uint32(len(r))})
			plain[blake3.Sum256(r)] = r
			cat = append(cat, r...)
		}
		stored, ok := CompressGroup(nil, cat)
		if !ok {
			t.Fatal("CompressGroup: text did not compress")
		}
		bs, err := w.AddGroup(members, stored)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, bs...)
	}
	add(randomBytes(rng, 3000))
	group(textish(rng, 16384), textish(rng, 16384), textish(rng, 700))
	add(textish(rng, 5000))
	group(textish(rng, 4000))
	_, written, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != len(all) {
		t.Fatalf("Finish listed %d blobs, Add/AddGroup returned %d", len(written), len(all))
	}
	return buf.Bytes(), written, plain
}

func TestGroupRoundTrip(t *testing.T) {
	data, written, plain := groupPack(t)
	got, err := ReadTrailer(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(written) {
		t.Fatalf("ReadTrailer: %d entries, want %d", len(got), len(written))
	}
	groups := 0
	for i, b := range got {
		if b != written[i] {
			t.Errorf("entry %d: read %+v, written %+v", i, b, written[i])
		}
		var out []byte
		switch b.Codec {
		case CodecGroup:
			frame, err := Decode(nil, data[b.Offset:b.Offset+uint64(b.Stored)], CodecGroup, b.GroupRaw)
			if err != nil {
				t.Fatalf("entry %d: decode its group: %v", i, err)
			}
			out = frame[b.GroupOff : b.GroupOff+b.Raw]
			if b.GroupOff == 0 {
				groups++
			}
		default:
			out, err = Decode(nil, data[b.Offset:b.Offset+uint64(b.Stored)], b.Codec, b.Raw)
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
		}
		if blake3.Sum256(out) != b.ID || !bytes.Equal(out, plain[b.ID]) {
			t.Errorf("entry %d (codec %d): plaintext does not match", i, b.Codec)
		}
	}
	// Members: 3 + 1, in two groups of 16384+16384+700 and 4000 bytes.
	if groups != 2 || got[1].GroupRaw != 33468 || got[3].GroupOff != 32768 || got[5].GroupRaw != 4000 {
		t.Fatalf("groups %d, first group %d bytes, third member at %d, second group %d bytes", groups, got[1].GroupRaw, got[3].GroupOff, got[5].GroupRaw)
	}
	if got[1].Offset != got[3].Offset || got[1].Stored != got[3].Stored {
		t.Fatal("members of one group name different frames")
	}
}

// Damaged group entries are refused with the reason (FAULTS A2).
func TestGroupTrailerRejects(t *testing.T) {
	data, _, _ := groupPack(t)
	entry := func(d []byte, i int) []byte { return d[trailerStart(d)+countSize+i*entrySize:] }
	cases := []struct {
		name, want string
		damage     func(d []byte)
	}{
		{"member with another frame length", "group member with", func(d []byte) {
			e := entry(d, 2)
			binary.LittleEndian.PutUint32(e[42:46], binary.LittleEndian.Uint32(e[42:46])+1)
		}},
		{"group in a version 1 pack", "group codec in a version 1 pack", func(d []byte) { d[4] = 1 }},
		{"group plaintext above the maximum", "group plaintext above", func(d []byte) {
			for i := 1; i <= 3; i++ {
				binary.LittleEndian.PutUint32(entry(d, i)[46:50], MaxBlobSize/2)
			}
		}},
		{"member at another offset", "overlaps or precedes", func(d []byte) {
			e := entry(d, 3)
			binary.LittleEndian.PutUint64(e[34:42], binary.LittleEndian.Uint64(e[34:42])+1)
		}},
		{"group frame with no bytes", "group with no stored bytes", func(d []byte) {
			binary.LittleEndian.PutUint32(entry(d, 5)[42:46], 0)
		}},
	}
	for _, c := range cases {
		d := bytes.Clone(data)
		c.damage(d)
		reseal(d)
		_, err := ReadTrailer(bytes.NewReader(d), int64(len(d)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ReadTrailer error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

// Packs written before groups existed (version 1) still read.
func TestVersion1PackReads(t *testing.T) {
	data, blobs := smallPack(t, 5)
	data[4] = 1
	got, err := ReadTrailer(bytes.NewReader(data), int64(len(data)))
	if err != nil || len(got) != len(blobs) {
		t.Fatalf("version 1 pack: %d entries, %v", len(got), err)
	}
	data[4] = 3
	if _, err := ReadTrailer(bytes.NewReader(data), int64(len(data))); err == nil || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("version 3 pack: %v, want an error saying to upgrade", err)
	}
}

func TestAddGroupRejects(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	m := []Blob{{Kind: KindData, Raw: 10}}
	cases := map[string]func() error{
		"no members":     func() error { _, err := w.AddGroup(nil, []byte("x")); return err },
		"no frame":       func() error { _, err := w.AddGroup(m, nil); return err },
		"unknown kind":   func() error { _, err := w.AddGroup([]Blob{{Kind: 9, Raw: 1}}, []byte("x")); return err },
		"too much plain": func() error { _, err := w.AddGroup([]Blob{{Raw: MaxBlobSize}, {Raw: 1}}, []byte("x")); return err },
	}
	for name, f := range cases {
		if f() == nil {
			t.Errorf("%s: AddGroup accepted it", name)
		}
	}
	if buf.Len() != 0 || w.Count() != 0 {
		t.Fatalf("rejected groups wrote %d bytes, count %d", buf.Len(), w.Count())
	}
}

func TestCompressGroupRefusesNoSaving(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	if _, ok := CompressGroup(nil, randomBytes(rng, 64<<10)); ok {
		t.Fatal("random bytes: CompressGroup kept a frame that saves nothing")
	}
	raw := textish(rng, 64<<10)
	stored, ok := CompressGroup(make([]byte, 0, CompressBound(len(raw))), raw)
	if !ok || len(stored) >= len(raw)/2 {
		t.Fatalf("text: ok %v, %d of %d bytes", ok, len(stored), len(raw))
	}
	out, err := Decode(nil, stored, CodecGroup, uint32(len(raw)))
	if err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("decode: %v", err)
	}
}
