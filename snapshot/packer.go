package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"snapforge/snapshot/pack"
)

// packWriter appends compressed blobs to pack files and commits each full
// pack: temp file, fsync, rename, fsync dir, then the index (synced). A
// pack's blobs are indexed only once its bytes are durable.
//
// Two goroutines share the work so the disk never idles the pipeline: the
// writer fills pack N+1 while the committer makes pack N durable, in pack
// order. Writeback of a pack starts while it is being written (every
// writebackStep bytes), so its fsync mostly waits for the tail.
//
// Trees go to packs of their own, apart from file data: everything that
// lists a snapshot (ls, diff, the FUSE mount, a backup reading its parent)
// then reads a few compact packs instead of seeking to every directory's
// tree across all the data, and a cold `ls -lR` through the mount costs
// about what it costs on the source disk.
type packWriter struct {
	r       *Repo
	open    [2]*packFile  // the data pack and the tree pack being filled
	written func(n int64) // called with each job's weight once it is written
}

// packFile is a pack being written.
type packFile struct {
	f   WriteFile
	buf *bufio.Writer
	tmp string
	w   *pack.Writer
}

func slotOf(kind uint8) int {
	if kind == KindTree {
		return 1
	}
	return 0
}

// pendingPack is a written pack waiting for its commit.
type pendingPack struct {
	f     WriteFile
	tmp   string
	id    ID
	size  int64
	blobs []pack.Blob
}

// packMaxBlobs closes a pack early when it lists this many blobs: groups
// of tiny files can put thousands in a megabyte, and every blob is a
// trailer entry, an index key and its share of the pack's index commit.
const packMaxBlobs = 32768

// writebackStep is how many pack bytes are written before their writeback
// is started (sync_file_range, asynchronous).
const writebackStep = 4 << 20

func (p *packWriter) run(ctx context.Context, in <-chan packJob) (err error) {
	commits := make(chan pendingPack, 1)
	committed := make(chan error, 1)
	failed := make(chan struct{})
	go func() { committed <- p.committer(ctx, commits, failed) }()
	defer func() {
		for _, pf := range p.open {
			if pf != nil { // failed or cancelled mid-pack: the temp file goes
				pf.f.Close()
				os.Remove(pf.tmp)
			}
		}
		close(commits)
		if cerr := <-committed; cerr != nil && (err == nil || err == errCommitFailed) {
			err = cerr
		}
	}()
	finish := func(slot int) error {
		pp, err := p.finish(slot)
		if err != nil {
			return err
		}
		select {
		case commits <- pp:
			return nil
		case <-failed: // the deferred receive returns the committer's error
			pp.f.Close()
			os.Remove(pp.tmp)
			return errCommitFailed
		}
	}
	for j := range in {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		slot := slotOf(j.kind)
		if p.open[slot] == nil {
			pf, err := p.create()
			if err != nil {
				return err
			}
			p.open[slot] = pf
		}
		pf := p.open[slot]
		err := addJob(pf.w, j)
		putBuf(j.buf) // written (or failed): the bytes are not needed again
		if p.written != nil {
			p.written(j.weight)
		}
		if err != nil {
			return p.fail("write pack", err)
		}
		if pf.w.Size() >= PackTargetSize || pf.w.Count() >= packMaxBlobs {
			if err := finish(slot); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for slot, pf := range p.open {
		if pf != nil {
			if err := finish(slot); err != nil {
				return err
			}
		}
	}
	return nil
}

// addJob adds j's blob, or its group: one frame, or each member raw.
func addJob(w *pack.Writer, j packJob) error {
	switch {
	case j.members == nil:
		_, err := w.Add(j.id, j.kind, j.codec, j.stored, j.raw)
		return err
	case j.codec == pack.CodecGroup:
		_, err := w.AddGroup(j.members, j.stored)
		return err
	}
	off := 0
	for _, m := range j.members {
		if _, err := w.Add(m.ID, m.Kind, pack.CodecRaw, j.stored[off:off+int(m.Raw)], m.Raw); err != nil {
			return err
		}
		off += int(m.Raw)
	}
	return nil
}

func (p *packWriter) create() (*packFile, error) {
	f, err := os.CreateTemp(p.r.dir("tmp"), "pack-*.tmp")
	if err != nil {
		return nil, p.fail("create temp pack", err)
	}
	pf := &packFile{tmp: f.Name(), f: p.r.opts.WrapPackFile(f)}
	pf.buf = bufio.NewWriterSize(&writeback{f: pf.f, fd: int(f.Fd())}, 1<<20)
	pf.w = pack.NewWriter(pf.buf)
	return pf, nil
}

// writeback passes writes through and starts the writeback of every
// writebackStep bytes as they are written, so the pack's fsync finds most
// of it on disk already. It is only a hint: a failure is left to fsync.
type writeback struct {
	f       WriteFile
	fd      int
	off, at int64 // bytes written; start of the range not yet handed to writeback
}

func (w *writeback) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.off += int64(n)
	if w.off-w.at >= writebackStep {
		unix.SyncFileRange(w.fd, w.at, w.off-w.at, unix.SYNC_FILE_RANGE_WRITE)
		w.at = w.off
	}
	return n, err
}

func (p *packWriter) fail(what string, err error) error {
	return &repoError{fmt.Errorf("%s in %s: %w", what, p.r.path, err)}
}

// finish completes the bytes of the pack in slot and hands it over for
// commit.
func (p *packWriter) finish(slot int) (pendingPack, error) {
	pf := p.open[slot]
	id, blobs, err := pf.w.Finish()
	if err != nil {
		return pendingPack{}, p.fail("finish pack", err)
	}
	if err := pf.buf.Flush(); err != nil {
		return pendingPack{}, p.fail("write pack", err)
	}
	p.r.opts.Hook("pack-temp-written")
	p.open[slot] = nil
	return pendingPack{f: pf.f, tmp: pf.tmp, id: ID(id), size: pf.w.Size(), blobs: blobs}, nil
}

// errCommitFailed stands for the committer's error until it is collected.
var errCommitFailed = errors.New("pack commit failed")

// committer commits the packs it receives, in order. After a failure it
// closes failed, removes the temp files of any packs still coming and
// returns the error.
func (p *packWriter) committer(ctx context.Context, in <-chan pendingPack, failed chan<- struct{}) error {
	var err error
	for pp := range in {
		if err == nil {
			if err = p.commit(ctx, pp); err != nil {
				close(failed)
			}
		} else {
			pp.f.Close()
			os.Remove(pp.tmp)
		}
	}
	return err
}

// commit makes a written pack durable and indexes it. An fsync error is
// final: the pack is abandoned, never re-synced on the same descriptor
// (FAULTS C5).
func (p *packWriter) commit(ctx context.Context, pp pendingPack) error {
	if err := pp.f.Sync(); err != nil {
		pp.f.Close()
		os.Remove(pp.tmp)
		return p.fail("fsync pack", err)
	}
	p.r.opts.Hook("pack-synced")
	if err := pp.f.Close(); err != nil {
		os.Remove(pp.tmp)
		return p.fail("close pack", err)
	}
	final := p.r.packPath(pp.id)
	dir := filepath.Dir(final)
	newDir := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			os.Remove(pp.tmp)
			return p.fail("create pack directory", err)
		}
		newDir = true
	}
	if err := os.Rename(pp.tmp, final); err != nil {
		os.Remove(pp.tmp)
		return p.fail("rename pack", err)
	}
	if err := syncDir(dir); err != nil {
		return p.fail("sync pack directory", err)
	}
	if newDir {
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return p.fail("sync packs directory", err)
		}
	}
	p.r.opts.Hook("pack-renamed")
	pbs := make([]PackBlob, len(pp.blobs))
	for i, bl := range pp.blobs {
		pbs[i] = PackBlob{ID: ID(bl.ID), Location: locationOf(pp.id, bl)}
	}
	if err := p.r.idx.AddPack(ctx, pp.id, pp.size, pbs); err != nil {
		return p.fail("index pack", err)
	}
	return nil
}
