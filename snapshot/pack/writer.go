package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	blake3 "snapforge/snapshot/b3"
)

// Writer appends blobs to an io.Writer and finishes the pack with its trailer.
// It hashes every byte it writes, so the pack id is known without reading the
// file back. Not safe for concurrent use.
//
// The Writer does not buffer: each Add is one Write of the stored bytes (the
// header goes out with the first Add or with Finish). Wrap w in a bufio.Writer
// if writes are costly, and flush, sync and close it yourself after Finish.
// After any write error the Writer is broken: every later call returns that
// error and the partial pack must be discarded.
type Writer struct {
	w       io.Writer
	h       *blake3.Hasher
	n       int64
	blobs   []Blob
	err     error // sticky write error
	started bool  // header written
	done    bool  // Finish called
}

// errFinished is returned by Add and Finish after Finish.
var errFinished = errors.New("pack: writer already finished")

// NewWriter returns a Writer that writes a pack to w. The header is written
// lazily, with the first Add or with Finish.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, h: blake3.New()}
}

// write writes p to w and to the hash, recording the first error.
func (w *Writer) write(p []byte) error {
	n, err := w.w.Write(p)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	w.h.Write(p[:n]) // never fails
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("pack: write: %w", err)
	}
	return w.err
}

func (w *Writer) writeHeader() error {
	if w.started {
		return nil
	}
	w.started = true
	var h [headerSize]byte
	copy(h[:], headerMagic[:])
	h[4] = version
	return w.write(h[:])
}

// Add appends one blob and returns its trailer entry. id is BLAKE3-256 of the
// raw bytes (Add does not check it), kind and codec are one of the Kind and
// Codec constants, stored is what goes into the file (the output of Compress)
// and raw its plaintext length. For CodecRaw len(stored) must equal raw. Both
// lengths must be at most MaxBlobSize. Add does not keep stored.
//
// Add does not look for duplicates: a blob added twice is stored twice and
// listed twice, and either copy may be used. A pack holds at most 85,899,345
// blobs (its trailer length must fit in 32 bits); roll packs over by Size long
// before that.
func (w *Writer) Add(id [32]byte, kind, codec uint8, stored []byte, raw uint32) (Blob, error) {
	if w.err != nil {
		return Blob{}, w.err
	}
	if w.done {
		return Blob{}, errFinished
	}
	if len(stored) > MaxBlobSize {
		return Blob{}, fmt.Errorf("pack: add blob %x: stored length %d above the %d maximum", id[:6], len(stored), MaxBlobSize)
	}
	if len(w.blobs) >= maxCount {
		return Blob{}, fmt.Errorf("pack: add blob %x: pack already holds the maximum of %d blobs", id[:6], maxCount)
	}
	if codec == CodecGroup {
		return Blob{}, fmt.Errorf("pack: add blob %x: a group member is added with AddGroup", id[:6])
	}
	b := Blob{ID: id, Kind: kind, Codec: codec, Stored: uint32(len(stored)), Raw: raw}
	if msg := checkEntry(b); msg != "" {
		return Blob{}, fmt.Errorf("pack: add blob %x: %s", id[:6], msg)
	}
	if err := w.writeHeader(); err != nil {
		return Blob{}, err
	}
	b.Offset = uint64(w.n)
	if err := w.write(stored); err != nil {
		return Blob{}, err
	}
	w.blobs = append(w.blobs, b)
	return b, nil
}

// AddGroup appends one group: stored is a single zstd frame (from
// CompressGroup) of the members' plaintexts back to back, in the order of
// members, of which each gives ID, Kind and Raw. It returns the members'
// trailer entries (codec CodecGroup, all naming the frame's Offset and
// Stored, each its GroupOff in the GroupRaw plaintext bytes). A group holds
// at least one member and at most MaxBlobSize plaintext bytes.
func (w *Writer) AddGroup(members []Blob, stored []byte) ([]Blob, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.done {
		return nil, errFinished
	}
	if len(members) == 0 {
		return nil, errors.New("pack: add group: no members")
	}
	if len(stored) == 0 || len(stored) > MaxBlobSize {
		return nil, fmt.Errorf("pack: add group of %x: stored length %d, want 1 to %d", members[0].ID[:6], len(stored), MaxBlobSize)
	}
	if len(w.blobs)+len(members) > maxCount {
		return nil, fmt.Errorf("pack: add group of %x: pack would hold more than the maximum of %d blobs", members[0].ID[:6], maxCount)
	}
	var total uint64
	for _, m := range members {
		total += uint64(m.Raw)
	}
	if total > MaxBlobSize {
		return nil, fmt.Errorf("pack: add group of %x: %d plaintext bytes above the %d maximum", members[0].ID[:6], total, MaxBlobSize)
	}
	entries := make([]Blob, len(members))
	var goff uint32
	for i, m := range members {
		entries[i] = Blob{ID: m.ID, Kind: m.Kind, Codec: CodecGroup, Stored: uint32(len(stored)), Raw: m.Raw, GroupOff: goff, GroupRaw: uint32(total)}
		if msg := checkEntry(entries[i]); msg != "" {
			return nil, fmt.Errorf("pack: add group member %x: %s", m.ID[:6], msg)
		}
		goff += m.Raw
	}
	if err := w.writeHeader(); err != nil {
		return nil, err
	}
	for i := range entries {
		entries[i].Offset = uint64(w.n)
	}
	if err := w.write(stored); err != nil {
		return nil, err
	}
	w.blobs = append(w.blobs, entries...)
	return entries, nil
}

// Size returns the number of bytes written to w so far: the header and the
// blobs before Finish, the whole pack after it. It is 0 before the first Add.
func (w *Writer) Size() int64 { return w.n }

// Count returns the number of blobs added.
func (w *Writer) Count() int { return len(w.blobs) }

// Finish writes the trailer and footer and returns the pack id, BLAKE3-256 of
// every byte written to w (header, blobs, trailer and footer), and the trailer
// entries in file order. A pack with no blobs is valid. The Writer cannot be
// used after Finish.
func (w *Writer) Finish() (id [32]byte, blobs []Blob, err error) {
	if w.err != nil {
		return id, nil, w.err
	}
	if w.done {
		return id, nil, errFinished
	}
	w.done = true
	if err := w.writeHeader(); err != nil {
		return id, nil, err
	}
	tlen := countSize + entrySize*len(w.blobs)
	buf := make([]byte, tlen+footerSize)
	binary.LittleEndian.PutUint32(buf[0:countSize], uint32(len(w.blobs)))
	for i, b := range w.blobs {
		putEntry(buf[countSize+i*entrySize:], b)
	}
	foot := buf[tlen:]
	binary.LittleEndian.PutUint32(foot[0:4], uint32(tlen))
	sum := blake3.Sum256(buf[:tlen])
	copy(foot[4:4+sumSize], sum[:sumSize])
	copy(foot[4+sumSize:], footerMagic[:])
	if err := w.write(buf); err != nil {
		return id, nil, err
	}
	copy(id[:], w.h.Sum(nil))
	return id, w.blobs, nil
}
