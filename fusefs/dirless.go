package fusefs

import (
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirlessFS answers OPENDIR with ENOSYS where the kernel supports it
// (FUSE_NO_OPENDIR_SUPPORT): the kernel then sends no OPENDIR and no
// RELEASEDIR for any directory (and keeps listings in its cache, checked
// against the directory's mtime), which halves the requests of a walk like
// `ls -lR` or a file manager's: OPENDIR, READDIRPLUS, the READDIRPLUS that
// finds the end, RELEASEDIR per directory become the two READDIRPLUS.
//
// A READDIR(PLUS) then comes without a handle (Fh 0). It is served through
// a handle of go-fuse's node bridge opened for it, and kept for the
// listing's next request (a large directory takes many): one per directory,
// at most keptDirs in all, released when the listing reaches its end or the
// kernel forgets the directory. The handles seek (Seekdir), so a kept handle
// serves any offset.
type dirlessFS struct {
	fuse.RawFileSystem
	on atomic.Bool

	mu   sync.Mutex
	kept map[uint64]keptDir // by node id
}

type keptDir struct{ fh, node uint64 }

// keptDirs bounds the directory handles kept between requests; a listing
// beyond it gets a handle per request.
const keptDirs = 64

func newDirlessFS(inner fuse.RawFileSystem) *dirlessFS {
	return &dirlessFS{RawFileSystem: inner, kept: map[uint64]keptDir{}}
}

// start switches OPENDIR off if the kernel (its INIT request) supports
// its absence.
func (d *dirlessFS) start(k *fuse.InitIn) {
	if k != nil && k.Flags&fuse.CAP_NO_OPENDIR_SUPPORT != 0 {
		d.on.Store(true)
	}
}

// OpenDir answers ENOSYS when the kernel can do without it.
func (d *dirlessFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if d.on.Load() {
		return fuse.ENOSYS
	}
	return d.RawFileSystem.OpenDir(cancel, in, out)
}

// ReadDirPlus serves a request without a handle through one of its own.
func (d *dirlessFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return d.RawFileSystem.ReadDirPlus(cancel, in, out)
	}
	return d.withHandle(cancel, in, out, d.RawFileSystem.ReadDirPlus)
}

// ReadDir is ReadDirPlus without the attributes.
func (d *dirlessFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return d.RawFileSystem.ReadDir(cancel, in, out)
	}
	return d.withHandle(cancel, in, out, d.RawFileSystem.ReadDir)
}

func (d *dirlessFS) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	read func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	node := in.NodeId
	d.mu.Lock()
	k, ok := d.kept[node]
	delete(d.kept, node) // in use by this request alone
	d.mu.Unlock()
	if !ok {
		var oo fuse.OpenOut
		st := d.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}, &oo)
		if !st.Ok() {
			return st
		}
		k.fh, k.node = oo.Fh, node
	}
	req := *in
	req.Fh = k.fh
	st := read(cancel, &req, out)
	if !st.Ok() || out.Offset == in.Offset { // an error, or the end of the listing
		d.release(k)
		return st
	}
	d.mu.Lock()
	_, taken := d.kept[node] // another request kept one meanwhile
	keep := !taken && len(d.kept) < keptDirs
	if keep {
		d.kept[node] = k
	}
	d.mu.Unlock()
	if !keep {
		d.release(k)
	}
	return st
}

// Forget releases the handle kept for the node first: go-fuse drops a
// node's table entry once the kernel forgets it, which it may do as soon as
// nothing in the kernel holds the directory (a kept handle is ours, not the
// kernel's). The kernel cannot forget a node while a request on it is in
// flight, and a handle is kept before the request's answer is sent.
func (d *dirlessFS) Forget(node, nlookup uint64) {
	d.mu.Lock()
	k, ok := d.kept[node]
	delete(d.kept, node)
	d.mu.Unlock()
	if ok {
		d.release(k)
	}
	d.RawFileSystem.Forget(node, nlookup)
}

func (d *dirlessFS) release(k keptDir) {
	d.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: k.node}, Fh: k.fh})
}
