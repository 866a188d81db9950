package fusefs

import (
	"context"
	"sort"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"snapforge/snapshot"
)

// A sequential reader is kept ahead by at least readaheadChunks chunks and
// readaheadBytes bytes, loaded in runs of up to runBytes: the 1 MiB chunks
// of a large file each in a goroutine of its own, decoded in parallel; a
// database's 16 KiB pages sixteen to a run, so the window reaches far enough
// ahead without a goroutine for each.
const (
	readaheadChunks = 3
	readaheadBytes  = 2 << 20
	runBytes        = 256 << 10
)

// fileNode is a regular file of a snapshot (or a hard link's first name,
// which all its names share).
type fileNode struct {
	node
	snap *snapInfo
	rel  string // raw path of the file's first name
	meta *snapshot.Node

	offsOnce sync.Once
	offs     []int64 // offs[i]: where chunk i starts
	blocks   uint64  // 512-byte blocks of the chunks that are not holes

	nextMu sync.Mutex
	next   []*snapshot.Node // the entries after this one in its directory
}

// siblingReadahead bounds what opening a file prefetches of the files
// after it in its directory: their first chunks, up to this many files and
// bytes.
const (
	siblingFiles = 8
	siblingBytes = 4 << 20
)

func (fl *fileNode) setNext(next []*snapshot.Node) {
	fl.nextMu.Lock()
	defer fl.nextMu.Unlock()
	if len(next) > siblingFiles*4 {
		next = next[:siblingFiles*4]
	}
	fl.next = next
}

// readaheadSiblings starts decoding the first chunks of the next files in
// the directory: a reader going through a folder (a copy, a search, a
// backup of the mount) finds them ready instead of waiting for each in
// turn, and the packs are read in the order they were written.
func (fl *fileNode) readaheadSiblings() {
	fl.nextMu.Lock()
	next := fl.next
	fl.nextMu.Unlock()
	fl.f.readaheadFiles(next)
}

// readaheadFiles starts decoding the first chunks of the first files among
// nodes (up to siblingFiles files and siblingBytes bytes).
func (f *FS) readaheadFiles(nodes []*snapshot.Node) {
	files, bytes := 0, 0
	for _, n := range nodes {
		if files >= siblingFiles || bytes >= siblingBytes {
			return
		}
		if (n.Type != snapshot.TypeFile && n.Type != snapshot.TypeHardlink) || len(n.Chunks) == 0 {
			continue
		}
		f.chunks.prefetchSibling(n.Chunks[0])
		files++
		bytes += int(n.Chunks[0].Size)
	}
}

var _ = (fs.NodeOpener)((*fileNode)(nil))
var _ = (fs.NodeFlusher)((*fileNode)(nil))
var _ = (fs.NodeReader)((*fileNode)(nil))
var _ = (fs.NodeGetattrer)((*fileNode)(nil))
var _ = (fs.NodeGetxattrer)((*fileNode)(nil))
var _ = (fs.NodeListxattrer)((*fileNode)(nil))
var _ = (fs.NodeLseeker)((*fileNode)(nil))

func (fl *fileNode) fill(a *fuse.Attr) {
	nlink := fl.f.hardLinks(fl.snap, fl.rel)
	if nlink == 0 {
		nlink = 1
	}
	fillAttr(a, fl.meta, fl.ino, nlink)
	fl.offsets()
	a.Blocks = fl.blocks
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the chunks: a hole is a chunk
// of the chunker's maximum size, all zeros (how a backup stores the holes
// of a sparse file). With the blocks Getattr counts without them, a copier
// (cp, rsync --sparse, tar -S) sees the file is sparse, skips the holes and
// leaves them holes in its copy. Other zeros read as data, which is always
// allowed.
func (fl *fileNode) Lseek(ctx context.Context, fh fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	if whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE {
		return 0, syscall.EINVAL // the kernel answers the others itself
	}
	size := uint64(fl.meta.Size)
	if off >= size {
		return 0, syscall.ENXIO
	}
	chunks, offs := fl.meta.Chunks, fl.offsets()
	i := sort.Search(len(offs), func(i int) bool { return uint64(offs[i]) > off }) - 1
	wantHole := whence == unix.SEEK_HOLE
	for ; i < len(chunks); i++ {
		if (chunks[i].ID == fl.f.hole) == wantHole {
			return max(off, uint64(offs[i])), 0
		}
	}
	if wantHole {
		return size, 0 // the end of the file counts as a hole
	}
	return 0, syscall.ENXIO
}

// Getattr returns the stored attributes.
func (fl *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fl.fill(&out.Attr)
	out.SetTimeout(contentTimeout)
	return 0
}

// Open allows reading only; the kernel keeps the pages it has (the content
// never changes). Where the kernel supports it, Open answers ENOSYS: the
// kernel then stops sending OPEN, RELEASE (and, see Flush, FLUSH), keeping
// pages across opens by itself.
func (fl *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return openReadOnly(fl.f, flags)
}

func openReadOnly(f *FS, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	if f.noOpen.Load() {
		return nil, 0, syscall.ENOSYS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

// Flush answers ENOSYS: nothing is ever written, and the kernel then stops
// sending FLUSH at every close.
func (fl *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return syscall.ENOSYS }

func (fl *fileNode) offsets() []int64 {
	fl.offsOnce.Do(func() {
		offs := make([]int64, len(fl.meta.Chunks))
		var o, data int64
		for i, c := range fl.meta.Chunks {
			offs[i] = o
			o += int64(c.Size)
			if c.ID != fl.f.hole {
				data += int64(c.Size)
			}
		}
		fl.offs, fl.blocks = offs, uint64(data+511)/512
	})
	return fl.offs
}

// Read fills dest from the chunks covering [off, off+len(dest)). Every
// chunk is checked against its id when decoded; a damaged one fails the
// read with EIO (and one audit event per file) instead of returning wrong
// bytes. When the read reaches into the second half of a chunk the next
// one is decoded in the background, so a sequential reader rarely waits.
func (fl *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off == 0 {
		fl.readaheadSiblings() // a reader starting on a file: the next ones will follow
	}
	size := fl.meta.Size
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(size, off+int64(len(dest)))
	chunks := fl.meta.Chunks
	offs := fl.offsets()
	i := sort.Search(len(offs), func(i int) bool { return offs[i] > off }) - 1
	res := &chunkResult{}
	n := int64(0)
	last := i
	for pos := off; pos < end && i < len(chunks); i++ {
		data, release, err := fl.f.chunks.get(ctx, chunks[i])
		if err != nil {
			res.Done()
			if snapshot.IsIntegrity(err) {
				fl.f.reportDamage(fl.snap, fl.rel, err)
			}
			return nil, errno(err)
		}
		res.releases = append(res.releases, release)
		from := pos - offs[i]
		to := min(int64(len(data)), end-offs[i])
		if from < 0 || from > to {
			res.Done()
			fl.f.reportDamage(fl.snap, fl.rel, &snapshot.CorruptError{ID: chunks[i].ID, Detail: "chunk sizes do not add up to the file's"})
			return nil, syscall.EIO
		}
		fl.f.chunks.spent(chunks[i].ID, int(to-from))
		res.vecs = append(res.vecs, data[from:to])
		n += to - from
		pos = offs[i] + to
		last = i
	}
	if n != end-off {
		res.Done()
		fl.f.reportDamage(fl.snap, fl.rel, &snapshot.CorruptError{ID: fl.meta.Hash, Detail: "chunks end before the file's size"})
		return nil, syscall.EIO
	}
	if next := last + 1; next < len(chunks) && end-offs[last] >= int64(chunks[last].Size)/2 {
		fl.f.readahead(chunks[next:])
	}
	return res, 0
}

// readahead starts loading the first chunks of ahead (the window described
// at readaheadBytes) in runs, until the window is covered or no background
// slot is free.
func (f *FS) readahead(ahead []snapshot.ChunkRef) {
	start, run, bytes := 0, 0, 0
	k := 0
	for ; k < len(ahead) && (k < readaheadChunks || bytes < readaheadBytes); k++ {
		size := int(ahead[k].Size)
		if k > start && run+size > runBytes {
			if !f.chunks.prefetch(ahead[start:k]) {
				return
			}
			start, run = k, 0
		}
		run += size
		bytes += size
	}
	if start < k {
		f.chunks.prefetch(ahead[start:k])
	}
}

// chunkResult answers a read with slices of the cached chunks themselves:
// go-fuse writes them to the kernel with one writev and calls Done after,
// which is when the chunks are released (a chunk evicted meanwhile is not
// recycled before). No copy into a request buffer. Where go-fuse cannot
// write slices it copies them out (Bytes, Readv), then calls Done.
type chunkResult struct {
	vecs     [][]byte
	releases []func()
	done     bool
}

// Size returns the bytes of the answer.
func (r *chunkResult) Size() int {
	n := 0
	for _, v := range r.vecs {
		n += len(v)
	}
	return n
}

// Bytes copies the answer into buf.
func (r *chunkResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, v := range r.vecs {
		buf = append(buf, v...)
	}
	return buf, fuse.OK
}

// Slices returns the chunk slices for writev.
func (r *chunkResult) Slices() ([][]byte, fuse.Status) { return r.vecs, fuse.OK }

// Readv copies the answer into dst.
func (r *chunkResult) Readv(dst [][]byte) (int, fuse.Status) {
	n, d, o := 0, 0, 0
	for _, v := range r.vecs {
		for len(v) > 0 && d < len(dst) {
			c := copy(dst[d][o:], v)
			v, n, o = v[c:], n+c, o+c
			if o == len(dst[d]) {
				d, o = d+1, 0
			}
		}
	}
	return n, fuse.OK
}

// Done releases the chunks (once).
func (r *chunkResult) Done() {
	if r.done {
		return
	}
	r.done = true
	for _, rel := range r.releases {
		rel()
	}
	r.vecs = nil
}

// Getxattr returns a stored extended attribute (with --xattrs).
func (fl *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(fl.meta, attr, dest)
}

// Listxattr lists the stored extended attributes (with --xattrs).
func (fl *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(fl.meta, dest)
}
