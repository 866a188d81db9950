package snapshot

import (
	"context"

	"golang.org/x/sys/unix"
)

// A backup's file readers take one file at a time each, and a small file
// read cold is one disk request that the reader waits for: with two readers
// the disk has at most two requests to work on, and the cores wait with it
// (the reference dataset's 11,478 source files, 155 MB: 1.9 s cold against
// 0.8 to 1.0 s with their pages cached). So as the walk queues a small file
// for the readers, it also hands the file to one of readaheadWorkers, which
// opens it and asks the kernel to start reading it (POSIX_FADV_WILLNEED)
// without waiting for the data. By the time a reader takes the file, its
// pages are in the cache or on their way, and the disk serves many files
// at once. The readers still read and check every file themselves; a
// readahead that fails or is skipped changes nothing but the time.
//
// The readahead keeps pace with the walk, which waits when the readers'
// queue is full: it runs ahead of the readers by that queue (64 files)
// plus readaheadQueue and the workers' files. For typical small files that
// is a few MiB of page cache, at most some 140 MiB (files just under 1 MiB),
// which the readers take next and the kernel may reclaim. Only the size the
// walk saw is read ahead. Files of directFileMin bytes and more are read
// directly, one block ahead (directReader), and are not read ahead here.
const (
	readaheadWorkers = 8
	readaheadQueue   = 64
)

// startReadahead starts the readahead workers; the returned function stops
// them once no more files are offered.
func (b *backup) startReadahead(ctx context.Context) (stop func()) {
	ahead := make(chan aheadFile, readaheadQueue)
	b.ahead = ahead
	done := make(chan struct{})
	for range readaheadWorkers {
		go func() {
			defer func() { done <- struct{}{} }()
			for f := range ahead {
				if ctx.Err() == nil {
					readahead(f.path, f.size)
				}
			}
		}()
	}
	return func() {
		b.ahead = nil // offers after this are no-ops
		close(ahead)
		for range readaheadWorkers {
			<-done
		}
	}
}

// aheadFile is a file offered for readahead, with the size the walk saw.
type aheadFile struct {
	path string
	size int64
}

// offerReadahead hands the file at abs, size bytes, to the readahead
// workers when it is small and they have room; it never waits.
func (b *backup) offerReadahead(abs string, size int64) {
	if b.ahead == nil || size == 0 || size >= directFileMin {
		return
	}
	select {
	case b.ahead <- aheadFile{abs, size}:
	default: // the workers are behind: the reader will read it as before
	}
}

// readahead asks the kernel to read the first size bytes of the file at p
// into the page cache. It opens the file as saveFile does (sourceOpenFlags);
// errors are the reader's to find and report.
func readahead(p string, size int64) {
	fd, err := unix.Open(p, sourceOpenFlags, 0)
	if err != nil {
		return
	}
	unix.Fadvise(fd, 0, size, unix.FADV_WILLNEED)
	unix.Close(fd)
}
