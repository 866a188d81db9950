package chunker

import (
	"fmt"
	"io"
)

// Fixed-size chunking of SQLite databases.
//
// SQLite changes a database in place, one page at a time, so content-defined
// boundaries buy nothing there: an update neither inserts nor removes bytes,
// and a touched 4 KiB page would cost the whole ~1 MiB content-defined chunk
// around it. Databases are therefore cut at fixed offsets that are multiples
// of their page size, so a changed page costs one small chunk.
//
// Which files are cut this way, and with which size, is part of the
// repository format (snapforge.json "sqlite_chunk"): the boundaries below
// must never change for the same bytes and size.

// Limits on a fixed chunk size, checked by ValidateFixed.
const (
	// MinFixed is SQLite's smallest page size.
	MinFixed = 512
	// MaxFixed bounds the buffer of a Fixed chunker.
	MaxFixed = 4 << 20
)

// DefaultSQLiteChunk is the fixed chunk size new repositories use for SQLite
// databases: 16 KiB, four 4 KiB pages. On the benchmark database (154 MB,
// 4 KiB pages, 10.5 MB of pages touched by an update of ~1.5 % of its rows)
// it stores a mutation in 10.9 MB where 1 MiB content-defined chunks need
// 19.2 MB, at the price of 7.6 MB more for the first copy (74.4 MB instead of
// 66.8 MB compressed: small chunks compress a little worse on their own).
const DefaultSQLiteChunk = 16 << 10

// sqliteMagic starts every SQLite database file (the header string).
const sqliteMagic = "SQLite format 3\x00"

// SQLiteHeaderLen is how many leading bytes SQLitePageSize needs.
const SQLiteHeaderLen = 18

// ValidateFixed reports whether size can be a fixed chunk size: a power of
// two from MinFixed to MaxFixed. A power of two is a multiple of every
// smaller SQLite page size (those are powers of two too).
func ValidateFixed(size int) error {
	if size < MinFixed || size > MaxFixed || size&(size-1) != 0 {
		return fmt.Errorf("chunker: invalid fixed chunk size %d: want a power of two from %d to %d", size, MinFixed, MaxFixed)
	}
	return nil
}

// SQLitePageSize returns the page size recorded in a SQLite database header
// (the first SQLiteHeaderLen bytes of the file, or more), or 0 when hdr does
// not start with a valid one. The page size is the big-endian uint16 at
// offset 16, where the value 1 means 65536; anything else that is not a power
// of two from 512 to 32768 is not a valid database header.
func SQLitePageSize(hdr []byte) int {
	if len(hdr) < SQLiteHeaderLen || string(hdr[:len(sqliteMagic)]) != sqliteMagic {
		return 0
	}
	p := int(hdr[16])<<8 | int(hdr[17])
	if p == 1 {
		return 65536
	}
	if p < 512 || p&(p-1) != 0 {
		return 0
	}
	return p
}

// SQLiteChunkSize returns the fixed chunk size for a database whose header
// starts hdr, cut with target (a valid fixed size) bytes per chunk: target
// itself, or the page size when a page is larger (one page per chunk). It
// returns 0 when hdr is not a SQLite header; such a file is cut by content.
func SQLiteChunkSize(hdr []byte, target int) int {
	p := SQLitePageSize(hdr)
	if p == 0 {
		return 0
	}
	return max(p, target)
}

// fixedBuffer is the least a Fixed chunker reads at a time.
const fixedBuffer = 1 << 20

// Fixed cuts the stream from an io.Reader into chunks of one size: chunk i
// holds bytes [i*size, (i+1)*size) of the stream; the last chunk may be
// shorter, and an empty stream has no chunks. The boundaries do not depend on
// how the reader splits its reads. A Fixed is not safe for concurrent use.
type Fixed struct {
	size       int
	r          io.Reader
	buf        []byte // a multiple of size, at least fixedBuffer
	start, end int    // unconsumed bytes are buf[start:end]
	eof        bool
	err        error // sticky read error
}

// NewFixed returns a chunker reading r in chunks of size bytes. It panics if
// size is invalid (see ValidateFixed).
func NewFixed(r io.Reader, size int) *Fixed {
	if err := ValidateFixed(size); err != nil {
		panic(err)
	}
	n := max(size, fixedBuffer) // both powers of two: a multiple of size
	return &Fixed{size: size, r: r, buf: make([]byte, n)}
}

// Size returns the chunk size.
func (f *Fixed) Size() int { return f.size }

// Reset makes f read a new stream from r, keeping its buffer and size.
// Chunks returned before Reset become invalid.
func (f *Fixed) Reset(r io.Reader) {
	f.r = r
	f.start, f.end = 0, 0
	f.eof = false
	f.err = nil
}

// Next returns the next chunk, as Chunker.Next does: the slice points into
// f's buffer and is valid until the next call to Next or Reset; after the
// last chunk Next returns nil, io.EOF; a read error is returned unwrapped,
// drops the bytes not yet returned, and is returned from then on.
func (f *Fixed) Next() ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.start == f.end {
		if f.eof {
			return nil, io.EOF
		}
		f.fill()
		if f.err != nil {
			return nil, f.err
		}
		if f.start == f.end {
			return nil, io.EOF
		}
	}
	// The buffer is filled whole except at the end of the stream, and it is
	// a multiple of size, so every chunk but the stream's last is size long.
	n := min(f.size, f.end-f.start)
	chunk := f.buf[f.start : f.start+n : f.start+n]
	f.start += n
	return chunk, nil
}

// fill reads into the empty buffer until it is full, the stream ends or the
// reader fails.
func (f *Fixed) fill() {
	f.start, f.end = 0, 0
	empty := 0
	for f.end < len(f.buf) {
		n, err := f.r.Read(f.buf[f.end:])
		if n < 0 || n > len(f.buf)-f.end {
			f.err = fmt.Errorf("chunker: reader returned invalid count %d", n)
			return
		}
		f.end += n
		switch {
		case err == io.EOF:
			f.eof = true
			return
		case err != nil:
			f.err = err
			return
		case n == 0:
			empty++
			if empty >= maxEmptyReads {
				f.err = io.ErrNoProgress
				return
			}
		default:
			empty = 0
		}
	}
}
