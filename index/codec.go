package index

import (
	"encoding/binary"
	"fmt"

	"snapforge/snapshot"
)

// Key prefixes. See the package doc for the layout.
const (
	chunkPrefix = "c/"
	packPrefix  = "p/"
	metaPrefix  = "m/"
)

const (
	idLen       = len(snapshot.ID{})
	chunkKeyLen = len(chunkPrefix) + idLen
	packKeyLen  = len(packPrefix) + idLen

	// locationVersion is the first byte of every encoded Location. A reader
	// that meets another version refuses the value instead of guessing; the
	// index is derived data, so the fix is a rebuild.
	locationVersion = 2
	// locationLen is version(1) pack(32) offset(8) stored(4) raw(4) kind(1)
	// codec(1) groupOff(4) groupRaw(4); a version 1 location (written before
	// groups existed) lacks the last two and is read with them zero.
	locationLen   = 1 + idLen + 8 + 4 + 4 + 1 + 1 + 4 + 4
	locationV1Len = locationLen - 8
	packSizeLen   = 8
)

// chunkKey returns "c/" + id.
func chunkKey(id snapshot.ID) []byte {
	return appendChunkKey(make([]byte, 0, chunkKeyLen), id)
}

func appendChunkKey(dst []byte, id snapshot.ID) []byte {
	dst = append(dst, chunkPrefix...)
	return append(dst, id[:]...)
}

// packKey returns "p/" + pack.
func packKey(pack snapshot.ID) []byte {
	k := make([]byte, 0, packKeyLen)
	k = append(k, packPrefix...)
	return append(k, pack[:]...)
}

// metaKey returns "m/" + key.
func metaKey(key string) []byte {
	k := make([]byte, 0, len(metaPrefix)+len(key))
	k = append(k, metaPrefix...)
	return append(k, key...)
}

// idFromKey returns the ID that follows prefix in key, which must be exactly
// prefix + 32 bytes.
func idFromKey(key []byte, prefix string) (snapshot.ID, error) {
	var id snapshot.ID
	if len(key) != len(prefix)+idLen || string(key[:len(prefix)]) != prefix {
		return id, fmt.Errorf("malformed key %q", key)
	}
	copy(id[:], key[len(prefix):])
	return id, nil
}

// marshalLocation appends the fixed-size binary form of loc to dst:
//
//	version(1)=2 | pack(32) | offset(8, BE) | stored(4, BE) | raw(4, BE) | kind(1) | codec(1) | groupOff(4, BE) | groupRaw(4, BE)
func marshalLocation(dst []byte, loc snapshot.Location) []byte {
	dst = append(dst, locationVersion)
	dst = append(dst, loc.Pack[:]...)
	dst = binary.BigEndian.AppendUint64(dst, loc.Offset)
	dst = binary.BigEndian.AppendUint32(dst, loc.Stored)
	dst = binary.BigEndian.AppendUint32(dst, loc.Raw)
	dst = append(dst, loc.Kind, loc.Codec)
	dst = binary.BigEndian.AppendUint32(dst, loc.GroupOff)
	return binary.BigEndian.AppendUint32(dst, loc.GroupRaw)
}

// unmarshalLocation decodes what marshalLocation wrote. It copies everything
// out of b, so b may be a slice that is only valid for the call (Item.Value).
func unmarshalLocation(b []byte, loc *snapshot.Location) error {
	if err := checkLocation(b); err != nil {
		return err
	}
	copy(loc.Pack[:], b[1:1+idLen])
	b = b[1+idLen:]
	loc.Offset = binary.BigEndian.Uint64(b[0:8])
	loc.Stored = binary.BigEndian.Uint32(b[8:12])
	loc.Raw = binary.BigEndian.Uint32(b[12:16])
	loc.Kind = b[16]
	loc.Codec = b[17]
	loc.GroupOff, loc.GroupRaw = 0, 0
	if len(b) > 18 { // version 2
		loc.GroupOff = binary.BigEndian.Uint32(b[18:22])
		loc.GroupRaw = binary.BigEndian.Uint32(b[22:26])
	}
	return nil
}

// locationPack decodes only the pack id of an encoded Location.
func locationPack(b []byte, pack *snapshot.ID) error {
	if err := checkLocation(b); err != nil {
		return err
	}
	copy(pack[:], b[1:1+idLen])
	return nil
}

func checkLocation(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("decode location: empty")
	}
	want := 0
	switch b[0] {
	case 1:
		want = locationV1Len
	case locationVersion:
		want = locationLen
	default:
		return fmt.Errorf("decode location: unknown version %d", b[0])
	}
	if len(b) != want {
		return fmt.Errorf("decode location: have %d bytes, want %d for version %d", len(b), want, b[0])
	}
	return nil
}

// marshalPackSize returns size as 8 big-endian bytes.
func marshalPackSize(size int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, packSizeLen), uint64(size))
}

// unmarshalPackSize decodes what marshalPackSize wrote.
func unmarshalPackSize(b []byte) (int64, error) {
	if len(b) != packSizeLen {
		return 0, fmt.Errorf("decode pack size: have %d bytes, want %d", len(b), packSizeLen)
	}
	size := int64(binary.BigEndian.Uint64(b))
	if size < 0 {
		return 0, fmt.Errorf("decode pack size: negative size %d", size)
	}
	return size, nil
}
