package snapshot

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Verify runs in three stages: the walk of a snapshot's trees hands each
// file to a planner, which looks its chunks up, decides which chunks must
// be read (spans.go) and queues their pack ranges for read-ahead, then hands
// the file to the workers, which check it. The read-ahead keeps the disk
// busy ahead of the workers, up to a window of bytes: without it a phase of
// files that cost CPU (a database and logs, decompressed) left the disk
// idle, and a phase of files that cost reading (model files, stored as they
// are) left a core idle, one after the other (reference dataset, cold:
// reading the packs took 1.0 s, verify 1.9 s, and 1.2 s with the packs in
// the page cache).

// verifyJob is one file for verify's workers, as the planner left it.
type verifyJob struct {
	rel     string
	n       *Node
	planned bool  // by the planner, or by the worker (without ReadData)
	ahead   int64 // what the planner took of planAhead for it
	key     ID    // contentKey(n)
	// Found by plan unless the content was proven already (then looked is
	// false): each chunk's location, or the error looking it up, and the
	// error of the lookup as a whole, after visited chunks.
	looked  bool
	locs    []Location
	errs    []error
	err     error
	visited int
	// proof is the plan of a file of several chunks, when data is read.
	proof *spanPlan
	// costs[i] is what the read-ahead counted for the i-th chunk read (of
	// the chunks proof says to read, or the one chunk); the worker gives it
	// back when the chunk is read, and what is left of cost once the file
	// is done.
	costs []int64
	cost  int64
}

// readAhead asks the kernel to read pack ranges into the page cache
// (POSIX_FADV_WILLNEED) in the order the workers will read them, at most
// window bytes ahead of what they have consumed.
type readAhead struct {
	r      *Repo
	window int64
	ranges chan raRange
	// queued and consumed count bytes along the plan: every range's bytes
	// once, each counted to the chunk that added them.
	queued   int64 // planner only
	consumed atomic.Int64
	last     raRange // the range being grown (planner only)
}

// raRange is a stretch of one pack; end is where it ends in the plan's
// count of bytes.
type raRange struct {
	pack     ID
	off, len int64
	end      int64
}

const (
	// raMax is the longest range queued: the read-ahead follows the workers
	// in steps of it at most.
	raMax = 4 << 20
	// raGap joins two ranges of a pack this close: reading the bytes between
	// costs less than a second request.
	raGap = 64 << 10
	// raPiece is what one fadvise call asks for: the kernel reads at most
	// the device's read-ahead size (128 KiB by default) per call.
	raPiece = 128 << 10
	// raOpenMax is how many packs the read-ahead keeps open.
	raOpenMax = 8
)

// raWindow is how far the read-ahead runs ahead of the workers, in bytes
// of packs. Past a few MiB it only helps across files: the packs of model
// files, which only cost reading, are read while the workers decompress a
// database and logs. Reference repository, cold, 3 interleaved runs each:
// 64 MiB 1.61-1.83 s, 192 MiB 1.48-1.84 s, 512 MiB 1.34-1.85 s.
const raWindow = 256 << 20

// newReadAhead returns a read-ahead with a window of raWindow, less where
// memory is short (an eighth of what is available), or nil when there is
// nothing to gain: memory too short, or packs on tmpfs or ramfs, which are
// in memory already.
func newReadAhead(r *Repo) *readAhead {
	w := int64(raWindow)
	if avail := memAvailable(); avail > 0 {
		w = min(w, avail/8)
	}
	if w < 8<<20 {
		return nil
	}
	var st unix.Statfs_t
	if unix.Statfs(r.dir("packs"), &st) == nil && (st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC) {
		return nil // the packs are in memory: nothing to read ahead
	}
	return &readAhead{r: r, window: w, ranges: make(chan raRange, 4096)}
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes, or 0.
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// plan queues the ranges of the chunks j will read and sets j.costs, before
// j goes to the workers. It never waits: when the queue is full (the
// read-ahead is a window behind and its queue longer still), the rest of
// j is not read ahead.
func (ra *readAhead) plan(j *verifyJob, badPack map[ID]string) {
	var locs []Location // the chunks to be read: all of j.locs, or those of j.proof.read
	switch {
	case j.proof != nil && j.proof.read != nil:
		locs = make([]Location, len(j.proof.read))
		for k, i := range j.proof.read {
			locs[k] = j.locs[i]
		}
	case j.proof != nil:
		locs = j.locs
	case j.looked && j.err == nil && len(j.locs) == 1 && j.errs[0] == nil:
		locs = j.locs
	}
	j.costs = make([]int64, len(locs))
	for i, loc := range locs {
		if _, bad := badPack[loc.Pack]; bad {
			continue
		}
		off, end := int64(loc.Offset), int64(loc.Offset)+int64(loc.Stored)
		l := &ra.last
		switch {
		case l.len > 0 && l.pack == loc.Pack && off >= l.off && end <= l.off+l.len:
			continue // inside the range already (a group's other chunks)
		case l.len > 0 && l.pack == loc.Pack && off >= l.off && off <= l.off+l.len+raGap && end-l.off <= raMax:
			grow := end - (l.off + l.len)
			l.len += grow
			j.costs[i] = grow
		default:
			if !ra.flush() {
				return
			}
			*l = raRange{pack: loc.Pack, off: off, len: end - off}
			j.costs[i] = end - off
		}
		ra.queued += j.costs[i]
		j.cost += j.costs[i]
	}
}

// flush queues the range being grown, unless the queue is full.
func (ra *readAhead) flush() bool {
	if ra.last.len == 0 {
		return true
	}
	ra.last.end = ra.queued
	select {
	case ra.ranges <- ra.last:
	default:
		// Its bytes were counted and will be given back by the workers:
		// the count stays right, the range is just not read ahead.
	}
	ra.last = raRange{}
	return !ra.full()
}

// full reports whether the queue has no room.
func (ra *readAhead) full() bool { return len(ra.ranges) == cap(ra.ranges) }

// done ends the plan: the last range is queued and the queue closed.
func (ra *readAhead) done() {
	ra.flush()
	close(ra.ranges)
}

// run asks for the ranges queued, each once the workers have consumed
// enough of what came before, until the queue is closed. Ranges the
// workers are past are skipped.
func (ra *readAhead) run(ctx context.Context) {
	open := map[ID]*os.File{} // a few packs stay open: ranges alternate between them
	defer func() {
		for _, f := range open {
			f.Close()
		}
	}()
	for rg := range ra.ranges {
		for rg.end-rg.len-ra.consumed.Load() > ra.window {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
		if rg.end <= ra.consumed.Load() {
			continue
		}
		f := open[rg.pack]
		if f == nil {
			if len(open) >= raOpenMax {
				for id, o := range open {
					o.Close()
					delete(open, id)
				}
			}
			var err error
			if f, err = os.Open(ra.r.packPath(rg.pack)); err != nil {
				continue // a hint only: the worker reading it reports the error
			}
			open[rg.pack] = f
		}
		for off := rg.off; off < rg.off+rg.len; off += raPiece {
			unix.Fadvise(int(f.Fd()), off, min(raPiece, rg.off+rg.len-off), unix.FADV_WILLNEED)
		}
	}
}
