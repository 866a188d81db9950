package snapshot

import (
	"io"
	"io/fs"
	"os"
	"syscall"
)

// A Repo keeps the manifests it read (whole, or their headers and hard-link
// counts). A process that lives long, the mount's owner above all, must not
// answer from them once the file on disk changed: a manifest replaced,
// edited or damaged since must read as it reads to a process that opens the
// repository now (verify must find it damaged, cat must refuse it). So each
// cached entry keeps the stamp of the file it came from, and every use
// compares it with a stat of the file: a manifest is written once, by an
// atomic rename, and any later change to it is someone else's.

// fileStamp identifies a version of a file: a rename brings another inode,
// an edit in place another change time.
type fileStamp struct {
	dev, ino    uint64
	size        int64
	mtime, ctim int64
}

func stampFrom(st *syscall.Stat_t) fileStamp {
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctim: st.Ctim.Nano()}
}

// stampOf stats name; ok is false when it cannot be stat'ed.
func stampOf(name string) (fileStamp, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(name, &st); err != nil {
		return fileStamp{}, false
	}
	return stampFrom(&st), true
}

// readStamped reads name and returns the stamp of the descriptor read.
func readStamped(name string) ([]byte, fileStamp, error) {
	b, fi, err := ReadFileInfo(name)
	if err != nil {
		return nil, fileStamp{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return b, fileStamp{}, nil
	}
	return b, stampFrom(st), nil
}

// ReadFileInfo reads name and returns what fstat says of the descriptor it
// read from: the bytes and the owner, mode and identity that go with them,
// whatever replaced the file at name since (CheckHookFile judges them).
func ReadFileInfo(name string) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	return b, fi, nil
}

// setStampLocked records the stamp of the file an entry of id about to be
// cached was read from. Entries cached from another version of the file
// are dropped first: all of id's entries share one stamp. r.mu is held.
func (r *Repo) setStampLocked(id string, st fileStamp) {
	if r.stamps == nil {
		r.stamps = map[string]fileStamp{}
	}
	if old, ok := r.stamps[id]; ok && old != st {
		delete(r.manifest, id)
		delete(r.headers, id)
		delete(r.links, id)
	}
	r.stamps[id] = st
}

// dropIfStale forgets what is cached of manifest id when its file is no
// longer the one it was read from, or is gone.
func (r *Repo) dropIfStale(id string) { r.dropIfChanged(id, false) }

// dropIfChanged is dropIfStale; with keepGone, what is cached of a manifest
// whose file is gone stays (HardLinks: the mount still shows a snapshot
// removed since, as it was).
func (r *Repo) dropIfChanged(id string, keepGone bool) {
	r.mu.Lock()
	want, cached := r.stamps[id]
	r.mu.Unlock()
	if !cached {
		return
	}
	st, ok := stampOf(r.manifestPath(id))
	if (ok && st == want) || (!ok && keepGone) {
		return
	}
	r.mu.Lock()
	if r.stamps[id] == want {
		delete(r.manifest, id)
		delete(r.headers, id)
		delete(r.links, id)
		delete(r.stamps, id)
	}
	r.mu.Unlock()
}
