package snapshot

import (
	"context"
	"errors"

	"snapforge/snapshot/pack"
)

// ErrNotFound reports that a chunk, tree, pack or snapshot is absent.
var ErrNotFound = errors.New("not found")

// Blob kinds stored in packs.
const (
	KindData = pack.KindData // file content chunk
	KindTree = pack.KindTree // encoded tree (one directory)
)

// Codecs for a stored blob.
const (
	CodecRaw  = pack.CodecRaw  // stored as is
	CodecZstd = pack.CodecZstd // zstd frame; decoded size bounded by Raw
	// CodecGroup: one of several small blobs compressed together; Offset
	// and Stored name the group's frame, which decodes to GroupRaw bytes,
	// of which the blob is [GroupOff, GroupOff+Raw).
	CodecGroup = pack.CodecGroup
)

// Location says where a blob's bytes live.
type Location struct {
	Pack   ID     // pack file id (BLAKE3 of the pack file's bytes)
	Offset uint64 // byte offset of the stored blob inside the pack
	Stored uint32 // stored (possibly compressed) length
	Raw    uint32 // plaintext length
	Kind   uint8  // KindData or KindTree
	Codec  uint8  // CodecRaw, CodecZstd or CodecGroup

	GroupOff uint32 // CodecGroup: where the blob starts in its group's plaintext
	GroupRaw uint32 // CodecGroup: the length of that plaintext
}

// locationOf returns where blob b of pack id is, from its trailer entry.
func locationOf(id ID, b pack.Blob) Location {
	return Location{Pack: id, Offset: b.Offset, Stored: b.Stored, Raw: b.Raw, Kind: b.Kind, Codec: b.Codec, GroupOff: b.GroupOff, GroupRaw: b.GroupRaw}
}

// PackBlob is one blob listed in a pack's trailer.
type PackBlob struct {
	ID ID
	Location
}

// Index is the chunk-location catalog the engine needs. It is derived data:
// everything in it can be rebuilt from pack trailers (see Repo.RepairIndex).
// Implementations must be safe for concurrent use.
type Index interface {
	// Lookup returns where blob id is stored, or ErrNotFound.
	Lookup(ctx context.Context, id ID) (Location, error)
	// LookupEach looks up the blobs of refs in order, in one read, calling
	// fn with each one's index in refs and its location or an error
	// (ErrNotFound) until fn returns false. Its own error is the read's.
	LookupEach(ctx context.Context, refs []ChunkRef, fn func(i int, loc Location, err error) bool) error
	// AddPack records a pack and every blob in it. It returns only after
	// the records are durable (synced).
	AddPack(ctx context.Context, pack ID, size int64, blobs []PackBlob) error
	// RemovePack forgets a pack and every blob location that points into it.
	RemovePack(ctx context.Context, pack ID) error
	// Packs calls fn for every recorded pack with its recorded size.
	Packs(ctx context.Context, fn func(pack ID, size int64) error) error
	// Blobs calls fn for every recorded blob.
	Blobs(ctx context.Context, fn func(b PackBlob) error) error
	// Meta returns the value stored under key, or ErrNotFound.
	Meta(ctx context.Context, key string) ([]byte, error)
	// SetMeta stores value under key durably.
	SetMeta(ctx context.Context, key string, value []byte) error
	// Close releases the index.
	Close() error
}
