package snapshot

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Files of at least directFileMin bytes are read by backup with O_DIRECT,
// in blocks of directBlock, one block ahead: the disk fills an aligned
// buffer of the reader's by DMA, and the bytes are copied once from there to
// the chunker. Through the page cache the same read costs two to ten times
// the CPU (its allocation, bookkeeping and copy; reading the reference
// dataset's eight large files cold: 0.20 to 0.23 s of system time direct,
// 0.64 to 2.85 s buffered), CPU a backup needs for hashing and
// compressing, and it fills the cache with data no one will read again,
// pushing out the application's own. A file whose pages are dirty is
// written back by the kernel before a direct read of them, so what is read
// is what the file holds. Smaller files go through the page cache, whose
// readahead serves many of them at once. A file system that refuses
// O_DIRECT (EINVAL) is read through the page cache.
//
// The block size weighs a single large file, read with one request in
// flight (the harness's mutated backup, where a database and a model
// changed, by hand, cold: 2.0 to 2.2 s with 1 or 2 MiB blocks, 1.7 s with 4
// MiB, 1.4 to 1.8 s through the page cache and its 8 MiB readahead; again
// with chunks read straight into their buffers, 3 interleaved runs of each:
// 1.7 to 2.1 s at 1 MiB, 1.8 to 2.1 s at 2 MiB), against memory: two blocks
// for each of the two readers (peak RSS of the initial backup, median of
// 4: 79 MB at 1 MiB, 83 MB at 2 MiB; issue 3 wants it at most borg's 82).
const (
	directFileMin = 1 << 20
	directBlock   = 1 << 20
)

// directReader reads a regular file from offset 0 with O_DIRECT set on its
// descriptor, whole aligned blocks at a time, one block ahead: while the
// chunker works on one block the next is read in the background, as the
// kernel's readahead does for buffered reads (the mutated backup above with
// 1 MiB blocks: 2.1 to 2.4 s read one at a time, 2.0 to 2.2 s one ahead).
// The read ahead is submitted to the reader's native AIO context where it
// has one (aioContext: the disk starts on it at once), else it is made on a
// goroutine.
type directReader struct {
	f        *os.File
	fd       int
	bufs     [2][]byte // aligned, directBlock bytes each
	cur      int       // the buffer being consumed: bufs[cur][pos:end]
	pos, end int
	eof      bool // no block after the one being consumed
	pending  bool // a block is being read into bufs[1-cur]; its outcome comes on ahead, or from aio
	ahead    chan blockRead
	direct   bool        // O_DIRECT is set; changed only by readBlock (on the read's goroutine, or in collect)
	aio      *aioContext // where not nil, direct reads are submitted here instead of started on a goroutine
	viaAIO   bool        // the read in flight was submitted to aio
	aheadOff int64       // its offset
}

// blockRead is the outcome of reading the block at off.
type blockRead struct {
	off int64
	n   int
	eof bool
	err error
}

// newDirectBuffers returns the buffers of a directReader, aligned for
// direct reads.
func newDirectBuffers() [2][]byte {
	var bufs [2][]byte
	for i := range bufs {
		b := make([]byte, directBlock+directAlign)
		shift := alignShift(b)
		bufs[i] = b[shift : shift+directBlock : shift+directBlock]
	}
	return bufs
}

// reset prepares d to read f from its start, with O_DIRECT when the file
// system allows it (the flag stays on f, which only this backup reads),
// starts reading the first block, and reports whether O_DIRECT is set.
// Where a is not nil, the direct reads ahead are submitted to it.
func (d *directReader) reset(f *os.File, bufs [2][]byte, a *aioContext) (direct bool) {
	d.drain()
	*d = directReader{f: f, fd: int(f.Fd()), bufs: bufs, ahead: make(chan blockRead, 1), aio: a}
	d.direct = setDirect(d.fd, true) == nil
	direct = d.direct
	d.start(0)
	return direct
}

// setDirect sets or clears O_DIRECT on descriptor fd.
func setDirect(fd int, on bool) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
	return err
}

// rewind starts over from offset 0 (a file read again after it changed).
func (d *directReader) rewind() {
	d.drain()
	d.pos, d.end, d.eof = 0, 0, false
	d.start(0)
}

// drain waits for the read in flight, if any: before its buffer is used
// again, and before the descriptor is closed.
func (d *directReader) drain() {
	if d.pending {
		d.collect()
	}
}

// start reads the block at off into the buffer not being consumed.
func (d *directReader) start(off int64) {
	d.pending = true
	buf := d.bufs[1-d.cur]
	if d.aio != nil && d.direct && d.aio.submit(d.fd, buf, off) == nil {
		d.viaAIO, d.aheadOff = true, off
		return
	}
	d.viaAIO = false
	go func() {
		n, eof, err := d.readBlock(buf, off)
		d.ahead <- blockRead{off: off, n: n, eof: eof, err: err}
	}()
}

// collect waits for the read in flight and returns its outcome.
func (d *directReader) collect() blockRead {
	d.pending = false
	if !d.viaAIO {
		return <-d.ahead
	}
	buf, off := d.bufs[1-d.cur], d.aheadOff
	n, err := d.aio.wait()
	switch {
	case err != nil:
		// Refused (EINVAL turns direct reads off) or failed: readBlock
		// reads the block again and says what the matter is.
		n = 0
	case n%directAlign != 0 || n == 0:
		return blockRead{off: off, n: n, eof: true}
	case n == len(buf):
		return blockRead{off: off, n: n}
	}
	m, eof, err := d.readBlock(buf[n:], off+int64(n))
	return blockRead{off: off, n: n + m, eof: eof, err: err}
}

func (d *directReader) Read(p []byte) (int, error) {
	for d.pos == d.end {
		if d.eof || !d.pending {
			return 0, io.EOF
		}
		r := d.collect()
		if r.err != nil {
			d.eof = true
			return 0, r.err
		}
		d.cur = 1 - d.cur
		d.pos, d.end, d.eof = 0, r.n, r.eof
		if !r.eof {
			d.start(r.off + int64(r.n))
		}
	}
	n := copy(p, d.bufs[d.cur][d.pos:d.end])
	d.pos += n
	return n, nil
}

// readBlock fills buf from off. A direct read that ends short of a block
// boundary has reached the end of the file (a read at the unaligned offset
// after it would be refused); one the file system refuses turns direct
// reads off for this file and is repeated through the page cache.
func (d *directReader) readBlock(buf []byte, off int64) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := unix.Pread(d.fd, buf[n:], off+int64(n))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL) && d.direct:
			d.direct = false
			setDirect(d.fd, false) // if even that fails, the next read says so
			continue
		case err != nil:
			return n, false, &os.PathError{Op: "read", Path: d.f.Name(), Err: err}
		}
		n += m
		if m == 0 || (d.direct && m%directAlign != 0) {
			return n, true, nil
		}
	}
	return n, false, nil
}
