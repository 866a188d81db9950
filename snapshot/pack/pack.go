package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Blob kinds, as stored in a trailer entry. They match snapshot's.
const (
	KindData uint8 = 0 // file content chunk
	KindTree uint8 = 1 // encoded tree (one directory)
)

// Codecs, as stored in a trailer entry. They match snapshot's.
const (
	CodecRaw  uint8 = 0 // stored bytes are the plaintext
	CodecZstd uint8 = 1 // stored bytes are zstd frames decoding to exactly Raw bytes
	// CodecGroup: the blob is one member of a group, small blobs compressed
	// together as one zstd frame that decodes to GroupRaw bytes; the member
	// is the GroupRaw bytes' [GroupOff, GroupOff+Raw). Every member's entry
	// names the whole frame (Offset, Stored). Version 2 packs only.
	CodecGroup uint8 = 2
)

// MaxBlobSize is the largest raw or stored blob accepted anywhere: by the
// Writer, by ReadTrailer and by Decode. Chunks are at most 4 MiB; big trees may
// reach this.
const MaxBlobSize = 64 << 20

// ErrCorrupt is wrapped by every format error: a damaged, truncated or
// inconsistent pack or stored blob. Test for it with errors.Is.
var ErrCorrupt = errors.New("pack: corrupt")

// Blob is one entry of a pack's trailer.
type Blob struct {
	ID     [32]byte // BLAKE3-256 of the raw (plaintext) bytes
	Kind   uint8    // KindData or KindTree
	Codec  uint8    // CodecRaw or CodecZstd
	Offset uint64   // of the stored bytes in the pack file
	Stored uint32   // stored length
	Raw    uint32   // plaintext length

	// For CodecGroup only, derived from the trailer's order (not stored):
	// where the member starts in its group's plaintext, and the length of
	// that plaintext. Zero for other codecs.
	GroupOff uint32
	GroupRaw uint32
}

// Layout constants; the package doc describes the format.
const (
	version     = 2 // what the Writer writes; readers also accept 1 (no groups)
	headerSize  = 8
	countSize   = 4
	entrySize   = 32 + 1 + 1 + 8 + 4 + 4
	sumSize     = 16
	footerSize  = 4 + sumSize + 4
	minPackSize = headerSize + countSize + footerSize
	// maxCount keeps the trailer length within its uint32 field.
	maxCount = (math.MaxUint32 - countSize) / entrySize
)

var (
	headerMagic = [4]byte{'S', 'F', 'P', 'K'}
	footerMagic = [4]byte{'S', 'F', 'P', 'T'}
)

// corrupt returns an error wrapping ErrCorrupt. format may use %w for a cause.
func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, a...)...)
}

// checkEntry reports what is wrong with b's kind, codec and lengths, or "".
// The Writer and ReadTrailer share it, so a pack the Writer accepted always
// reads back.
func checkEntry(b Blob) string {
	switch {
	case b.Kind != KindData && b.Kind != KindTree:
		return fmt.Sprintf("unknown kind %d", b.Kind)
	case b.Codec != CodecRaw && b.Codec != CodecZstd && b.Codec != CodecGroup:
		return fmt.Sprintf("unknown codec %d", b.Codec)
	case b.Raw > MaxBlobSize:
		return fmt.Sprintf("raw length %d above the %d maximum", b.Raw, MaxBlobSize)
	case b.Stored > MaxBlobSize:
		return fmt.Sprintf("stored length %d above the %d maximum", b.Stored, MaxBlobSize)
	case b.Codec == CodecRaw && b.Stored != b.Raw:
		return fmt.Sprintf("raw codec with stored length %d but raw length %d", b.Stored, b.Raw)
	case b.Codec == CodecGroup && b.Stored == 0:
		return "group with no stored bytes"
	}
	return ""
}

func putEntry(p []byte, b Blob) {
	copy(p[0:32], b.ID[:])
	p[32] = b.Kind
	p[33] = b.Codec
	binary.LittleEndian.PutUint64(p[34:42], b.Offset)
	binary.LittleEndian.PutUint32(p[42:46], b.Stored)
	binary.LittleEndian.PutUint32(p[46:50], b.Raw)
}

func getEntry(p []byte) Blob {
	var b Blob
	copy(b.ID[:], p[0:32])
	b.Kind = p[32]
	b.Codec = p[33]
	b.Offset = binary.LittleEndian.Uint64(p[34:42])
	b.Stored = binary.LittleEndian.Uint32(p[42:46])
	b.Raw = binary.LittleEndian.Uint32(p[46:50])
	return b
}
