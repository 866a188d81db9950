package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"snapforge/snapshot/pack"
)

// packWriter is the single goroutine that appends compressed blobs to pack
// files and commits each full pack: temp file, fsync, rename, fsync dir,
// then the index (synced). A pack's blobs are indexed only once its bytes
// are durable.
type packWriter struct {
	r   *Repo
	f   WriteFile
	buf *bufio.Writer
	tmp string
	w   *pack.Writer
}

func (p *packWriter) run(ctx context.Context, in <-chan packJob) (err error) {
	defer func() {
		if p.f != nil { // failed or cancelled mid-pack: the temp file goes
			p.f.Close()
			os.Remove(p.tmp)
		}
	}()
	for j := range in {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.w == nil {
			if err := p.open(); err != nil {
				return err
			}
		}
		if _, err := p.w.Add(j.id, j.kind, j.codec, j.stored, j.raw); err != nil {
			return p.fail("write pack", err)
		}
		if p.w.Size() >= PackTargetSize {
			if err := p.commit(ctx); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if p.w != nil {
		return p.commit(ctx)
	}
	return nil
}

func (p *packWriter) open() error {
	f, err := os.CreateTemp(p.r.dir("tmp"), "pack-*.tmp")
	if err != nil {
		return p.fail("create temp pack", err)
	}
	p.tmp = f.Name()
	p.f = p.r.opts.WrapPackFile(f)
	p.buf = bufio.NewWriterSize(p.f, 1<<20)
	p.w = pack.NewWriter(p.buf)
	return nil
}

func (p *packWriter) fail(what string, err error) error {
	return &repoError{fmt.Errorf("%s in %s: %w", what, p.r.path, err)}
}

// commit makes the current pack durable and indexes it. An fsync error is
// final: the pack is abandoned, never re-synced on the same descriptor
// (FAULTS C5).
func (p *packWriter) commit(ctx context.Context) error {
	id, blobs, err := p.w.Finish()
	if err != nil {
		return p.fail("finish pack", err)
	}
	if err := p.buf.Flush(); err != nil {
		return p.fail("write pack", err)
	}
	p.r.opts.Hook("pack-temp-written")
	if err := p.f.Sync(); err != nil {
		return p.fail("fsync pack", err)
	}
	p.r.opts.Hook("pack-synced")
	size := p.w.Size()
	if err := p.f.Close(); err != nil {
		p.f = nil
		os.Remove(p.tmp)
		return p.fail("close pack", err)
	}
	p.f = nil
	pid := ID(id)
	final := p.r.packPath(pid)
	dir := filepath.Dir(final)
	newDir := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			os.Remove(p.tmp)
			return p.fail("create pack directory", err)
		}
		newDir = true
	}
	if err := os.Rename(p.tmp, final); err != nil {
		os.Remove(p.tmp)
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
	pbs := make([]PackBlob, len(blobs))
	for i, bl := range blobs {
		pbs[i] = PackBlob{ID: ID(bl.ID), Location: Location{Pack: pid, Offset: bl.Offset, Stored: bl.Stored, Raw: bl.Raw, Kind: bl.Kind, Codec: bl.Codec}}
	}
	if err := p.r.idx.AddPack(ctx, pid, size, pbs); err != nil {
		return p.fail("index pack", err)
	}
	p.w = nil
	return nil
}
