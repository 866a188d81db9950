package snapshot

import (
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// aioContext is a Linux native AIO context (io_setup) for one goroutine's
// direct reads, one at a time: the goroutine submits a read itself and
// collects it when it needs the bytes, and the disk works meanwhile. A read
// started on a goroutine of its own instead waits for the scheduler twice,
// to issue the read and to hand the bytes over, while both cores are busy
// hashing and compressing: in a trace of a backup of the reference
// dataset's models, 2.1 ms per 1 MiB read, against 1.8 ms for the read
// itself.
//
// Native AIO is asynchronous for O_DIRECT reads only (others complete
// inside io_submit), which is what it is used for. It is not safe for
// concurrent use.
type aioContext struct {
	ctx     uintptr
	cb      iocb
	cbs     [1]*iocb
	ev      ioEvent
	pending []byte // the buffer of the read in flight, kept reachable until it is collected
	reads   int    // submitted so far
	dead    bool   // destroyed (close, or a failed io_getevents): takes no reads
}

// iocb is struct iocb of linux/aio_abi.h (little-endian layout).
type iocb struct {
	data     uint64
	key      uint32
	rwFlags  uint32
	opcode   uint16
	reqprio  int16
	fildes   uint32
	buf      uint64
	nbytes   uint64
	offset   int64
	reserved uint64
	flags    uint32
	resfd    uint32
}

// ioEvent is struct io_event of linux/aio_abi.h.
type ioEvent struct {
	data uint64
	obj  uint64
	res  int64
	res2 int64
}

const iocbCmdPread = 0

// newAIOContext returns a context for one read in flight, or an error
// where the kernel has no native AIO (ENOSYS), a seccomp filter forbids it
// (EPERM) or no context is left (EAGAIN: fs.aio-max-nr): reads are then
// started on a goroutine.
func newAIOContext() (*aioContext, error) {
	a := &aioContext{}
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&a.ctx)), 0); e != 0 {
		return nil, e
	}
	a.cbs[0] = &a.cb
	return a, nil
}

// submit starts reading len(buf) bytes of fd at off into buf.
func (a *aioContext) submit(fd int, buf []byte, off int64) error {
	switch {
	case a.dead:
		return errAIODead
	case a.pending != nil:
		return errors.New("aio: a read is already in flight")
	}
	a.cb = iocb{opcode: iocbCmdPread, fildes: uint32(fd), buf: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))), nbytes: uint64(len(buf)), offset: off}
	for {
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&a.cbs[0])))
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return e
		case n != 1:
			return errors.New("aio: io_submit took no request")
		}
		a.pending = buf
		a.reads++
		return nil
	}
}

// wait waits for the read in flight and returns its outcome.
func (a *aioContext) wait() (int, error) {
	if a.pending == nil {
		return 0, errors.New("aio: no read in flight")
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, a.ctx, 1, 1, uintptr(unsafe.Pointer(&a.ev)), 0, 0)
		if e == unix.EINTR || (e == 0 && n == 0) {
			continue
		}
		if e != 0 {
			// The read may still be in flight. Destroying the context
			// waits for it, so the buffer is the caller's again; the
			// context takes no more reads.
			unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
			a.dead, a.pending = true, nil
			return 0, e
		}
		a.pending = nil
		if a.ev.res < 0 {
			return 0, syscall.Errno(-a.ev.res)
		}
		return int(a.ev.res), nil
	}
}

// close waits for a read still in flight and destroys the context.
func (a *aioContext) close() {
	if a.dead {
		return
	}
	if a.pending != nil {
		if a.wait(); a.dead { // a failed wait destroyed it already
			return
		}
	}
	unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
	a.dead = true
}

// errAIODead: the context was destroyed after a failure; reads go on a
// goroutine.
var errAIODead = errors.New("aio: context destroyed after an error")
