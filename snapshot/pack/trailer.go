package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/zeebo/blake3"
)

// ReadTrailer reads, checks and returns the trailer entries of the pack of the
// given size that r holds, in file order. It reads the header and the trailer,
// never the blobs, so a damaged blob is only found when it is decoded and
// hashed.
//
// Every inconsistency is an error wrapping ErrCorrupt: a bad header magic,
// version or reserved byte; a pack too short or without its footer magic
// ("truncated or its trailer is damaged"); a trailer length, count or checksum
// that does not match; an unknown kind or codec; a length above MaxBlobSize;
// offsets that are not exactly back to back across the blob area (the
// members of a group share their frame's, and must agree on its length);
// and a group in a version 1 pack or above MaxBlobSize of plaintext. It sets
// GroupOff and GroupRaw of every group member. A read
// error other than a short read is returned as is. ReadTrailer never panics,
// and it allocates only for lengths already checked against size and against
// the trailer's own count, so at most about twice the trailer's size.
func ReadTrailer(r io.ReaderAt, size int64) ([]Blob, error) {
	if size < minPackSize {
		return nil, corrupt("pack is truncated: %d bytes, smaller than the %d-byte minimum", size, minPackSize)
	}

	var head [headerSize]byte
	if err := readAt(r, head[:], 0, size); err != nil {
		return nil, fmt.Errorf("read pack header: %w", err)
	}
	if [4]byte(head[0:4]) != headerMagic {
		return nil, corrupt("not a pack: header magic %q, want %q", head[0:4], headerMagic[:])
	}
	if head[4] != 1 && head[4] != version {
		return nil, corrupt("unsupported pack version %d, want 1 or %d (written by a newer snapforge? upgrade it)", head[4], version)
	}
	if head[5]|head[6]|head[7] != 0 {
		return nil, corrupt("non-zero reserved header bytes % x", head[5:8])
	}

	var foot [footerSize]byte
	if err := readAt(r, foot[:], size-footerSize, size); err != nil {
		return nil, fmt.Errorf("read pack footer: %w", err)
	}
	if [4]byte(foot[4+sumSize:]) != footerMagic {
		return nil, corrupt("pack is truncated or its trailer is damaged: no footer magic %q in the last %d bytes", footerMagic[:], footerSize)
	}
	tlen := int64(binary.LittleEndian.Uint32(foot[0:4]))
	if tlen < countSize || (tlen-countSize)%entrySize != 0 {
		return nil, corrupt("pack trailer is damaged: length %d is not %d+%d*n", tlen, countSize, entrySize)
	}
	tstart := size - footerSize - tlen
	if tstart < headerSize {
		return nil, corrupt("pack is truncated or its trailer is damaged: trailer length %d does not fit in %d bytes", tlen, size)
	}
	count := (tlen - countSize) / entrySize

	// Check the count before allocating for the length, so a damaged length
	// that still fits in size costs no allocation.
	var cnt [countSize]byte
	if err := readAt(r, cnt[:], tstart, size); err != nil {
		return nil, fmt.Errorf("read pack trailer: %w", err)
	}
	if got := int64(binary.LittleEndian.Uint32(cnt[:])); got != count {
		return nil, corrupt("pack trailer is damaged: count %d does not match its length %d (%d entries)", got, tlen, count)
	}

	buf := make([]byte, tlen)
	if err := readAt(r, buf, tstart, size); err != nil {
		return nil, fmt.Errorf("read pack trailer: %w", err)
	}
	if sum := blake3.Sum256(buf); [sumSize]byte(sum[:sumSize]) != [sumSize]byte(foot[4:4+sumSize]) {
		return nil, corrupt("pack trailer is damaged: checksum mismatch")
	}

	blobs := make([]Blob, count)
	next := uint64(headerSize) // where the next stored span must start
	gstart := -1               // first entry of the group being read, -1 outside one
	var graw uint64            // plaintext bytes of that group so far
	endGroup := func(end int) {
		for j := gstart; j >= 0 && j < end; j++ {
			blobs[j].GroupRaw = uint32(graw)
		}
		gstart = -1
	}
	for i := range blobs {
		blobs[i] = getEntry(buf[countSize+i*entrySize:])
		b := &blobs[i] // in the slice: naming b.ID in errors must not move a copy to the heap
		if msg := checkEntry(*b); msg != "" {
			return nil, corrupt("pack trailer entry %d (blob %x): %s", i, b.ID[:6], msg)
		}
		if b.Codec == CodecGroup && head[4] < 2 {
			return nil, corrupt("pack trailer entry %d (blob %x): group codec in a version %d pack", i, b.ID[:6], head[4])
		}
		if b.Codec == CodecGroup && gstart >= 0 && b.Offset == blobs[gstart].Offset {
			// A further member of the group: the same frame, the next bytes
			// of its plaintext.
			if b.Stored != blobs[gstart].Stored {
				return nil, corrupt("pack trailer entry %d (blob %x): group member with %d stored bytes in a group of %d", i, b.ID[:6], b.Stored, blobs[gstart].Stored)
			}
			if graw+uint64(b.Raw) > MaxBlobSize {
				return nil, corrupt("pack trailer entry %d (blob %x): group plaintext above the %d maximum", i, b.ID[:6], MaxBlobSize)
			}
			b.GroupOff = uint32(graw)
			graw += uint64(b.Raw)
			continue
		}
		endGroup(i)
		switch {
		case b.Offset < headerSize || b.Offset > uint64(tstart):
			return nil, corrupt("pack trailer entry %d (blob %x): offset %d outside the blob area [%d, %d)", i, b.ID[:6], b.Offset, headerSize, tstart)
		case b.Offset < next:
			return nil, corrupt("pack trailer entry %d (blob %x): offset %d overlaps or precedes the previous blob, which ends at %d", i, b.ID[:6], b.Offset, next)
		case b.Offset > next:
			return nil, corrupt("pack trailer entry %d (blob %x): offset %d leaves a gap after the previous blob, which ends at %d", i, b.ID[:6], b.Offset, next)
		case b.Offset+uint64(b.Stored) > uint64(tstart):
			return nil, corrupt("pack trailer entry %d (blob %x): %d stored bytes at offset %d run past the blob area, which ends at %d", i, b.ID[:6], b.Stored, b.Offset, tstart)
		}
		next = b.Offset + uint64(b.Stored)
		if b.Codec == CodecGroup {
			gstart, graw = i, uint64(b.Raw)
		}
	}
	endGroup(len(blobs))
	if next != uint64(tstart) {
		return nil, corrupt("pack trailer is damaged: blobs end at %d but the trailer starts at %d", next, tstart)
	}
	return blobs, nil
}

// readAt fills p from r at off. A short read means the pack is shorter than
// size: that is corruption (truncation), unlike other read errors.
func readAt(r io.ReaderAt, p []byte, off, size int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil // io.ReaderAt may report io.EOF with a full read at the end
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt("pack is truncated: %d of %d bytes at offset %d of a %d-byte pack", n, len(p), off, size)
	}
	return err
}
