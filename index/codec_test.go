package index

import (
	"bytes"
	"testing"

	"snapforge/snapshot"
)

func TestLocationRoundTrip(t *testing.T) {
	locs := []snapshot.Location{
		{},
		{
			Pack:   snapshot.Hash([]byte("pack")),
			Offset: 1<<64 - 1,
			Stored: 1<<32 - 1,
			Raw:    1<<32 - 2,
			Kind:   snapshot.KindTree,
			Codec:  snapshot.CodecZstd,
		},
		{Pack: snapshot.ID{31: 1}, Offset: 1 << 40, Stored: 7, Raw: 9, Kind: 255, Codec: 254},
		{Pack: snapshot.ID{7: 7}, Offset: 8, Stored: 400, Raw: 16384, Kind: snapshot.KindData, Codec: snapshot.CodecGroup, GroupOff: 32768, GroupRaw: 1 << 20},
	}
	for _, want := range locs {
		b := marshalLocation(nil, want)
		if len(b) != locationLen {
			t.Fatalf("encoded %d bytes, want %d", len(b), locationLen)
		}
		var got snapshot.Location
		if err := unmarshalLocation(b, &got); err != nil || got != want {
			t.Errorf("round trip %+v: got %+v, %v", want, got, err)
		}
		var pack snapshot.ID
		if err := locationPack(b, &pack); err != nil || pack != want.Pack {
			t.Errorf("locationPack = %s, %v; want %s", pack.Short(), err, want.Pack.Short())
		}
	}
}

// The layout is a file format: pin it.
func TestLocationLayout(t *testing.T) {
	loc := snapshot.Location{Pack: snapshot.ID{0: 0xaa, 31: 0xbb}, Offset: 0x0102030405060708,
		Stored: 0x090a0b0c, Raw: 0x0d0e0f10, Kind: 0x11, Codec: 0x12}
	loc.GroupOff, loc.GroupRaw = 0x13141516, 0x1718191a
	want := append([]byte{2, 0xaa}, make([]byte, 30)...)
	want = append(want, 0xbb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a)
	if got := marshalLocation(nil, loc); !bytes.Equal(got, want) {
		t.Errorf("marshalLocation =\n%x, want\n%x", got, want)
	}
}

// An index written before groups existed holds version 1 locations: they
// still decode, with no group.
func TestLocationVersion1(t *testing.T) {
	v1 := append([]byte{1, 0xaa}, make([]byte, 30)...)
	v1 = append(v1, 0xbb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x11, 0x12)
	var got snapshot.Location
	if err := unmarshalLocation(v1, &got); err != nil {
		t.Fatal(err)
	}
	want := snapshot.Location{Pack: snapshot.ID{0: 0xaa, 31: 0xbb}, Offset: 0x0102030405060708,
		Stored: 0x090a0b0c, Raw: 0x0d0e0f10, Kind: 0x11, Codec: 0x12}
	if got != want {
		t.Fatalf("version 1 location = %+v, want %+v", got, want)
	}
	if err := unmarshalLocation(append(v1, 0, 0, 0, 0, 0, 0, 0, 0), &got); err == nil {
		t.Fatal("a version 1 location of version 2's length was accepted")
	}
}

func TestLocationRejects(t *testing.T) {
	good := marshalLocation(nil, snapshot.Location{Offset: 1})
	bad := map[string][]byte{
		"empty":    nil,
		"short":    good[:locationLen-1],
		"long":     append(append([]byte{}, good...), 0),
		"version":  append([]byte{3}, good[1:]...),
		"v2 short": good[:locationLen-8],
	}
	for name, b := range bad {
		var loc snapshot.Location
		if err := unmarshalLocation(b, &loc); err == nil {
			t.Errorf("%s: unmarshalLocation accepted %x", name, b)
		}
	}
}

func TestPackSize(t *testing.T) {
	for _, n := range []int64{0, 1, 64 << 20, 1<<63 - 1} {
		if got, err := unmarshalPackSize(marshalPackSize(n)); err != nil || got != n {
			t.Errorf("pack size %d: got %d, %v", n, got, err)
		}
	}
	for _, b := range [][]byte{nil, make([]byte, 7), make([]byte, 9), bytes.Repeat([]byte{0xff}, 8)} {
		if _, err := unmarshalPackSize(b); err == nil {
			t.Errorf("unmarshalPackSize accepted %x", b)
		}
	}
}

func TestKeys(t *testing.T) {
	id := snapshot.Hash([]byte("x"))
	if k := chunkKey(id); string(k) != "c/"+string(id[:]) {
		t.Errorf("chunkKey = %q", k)
	}
	if k := packKey(id); string(k) != "p/"+string(id[:]) {
		t.Errorf("packKey = %q", k)
	}
	if k := metaKey("repository_id"); string(k) != "m/repository_id" {
		t.Errorf("metaKey = %q", k)
	}
	if got, err := idFromKey(chunkKey(id), chunkPrefix); err != nil || got != id {
		t.Errorf("idFromKey = %s, %v", got.Short(), err)
	}
	for _, k := range [][]byte{packKey(id), chunkKey(id)[:33], []byte("c/")} {
		if _, err := idFromKey(k, chunkPrefix); err == nil {
			t.Errorf("idFromKey accepted %q", k)
		}
	}
}

// FuzzUnmarshalLocation checks that the decoder never panics and that
// whatever it accepts encodes back to the same bytes.
func FuzzUnmarshalLocation(f *testing.F) {
	f.Add(marshalLocation(nil, snapshot.Location{}))
	f.Add(marshalLocation(nil, snapshot.Location{Pack: snapshot.Hash(nil), Offset: 99, Stored: 3, Raw: 4, Kind: 1, Codec: 1}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var loc snapshot.Location
		if err := unmarshalLocation(b, &loc); err != nil {
			return
		}
		if again := marshalLocation(nil, loc); !bytes.Equal(again, b) {
			t.Errorf("decoded %x to %+v, which encodes as %x", b, loc, again)
		}
	})
}
