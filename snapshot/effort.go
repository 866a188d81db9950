package snapshot

import (
	"sync/atomic"

	"snapforge/snapshot/pack"
)

// levelPick chooses how hard zstd works (pack.Effort) on one stream of new
// blobs: the chunks, or the pages, of one large file. The fast effort
// compresses a database's pages and logs nearly as well as the default in
// about three quarters of the time, but source files a fifth worse (see
// pack's encoders_cgo.go): the data decides, not the file's name. So the
// first job of a stream, and every pickEvery-th after it, is a trial:
// compressed at the default effort (what is stored) and at the fast one,
// and the stream goes on at the fast effort while the fast frame is within
// 1/pickSlack of the default's. Jobs compressed while a trial runs take the
// choice as it stands (the default until a first trial says otherwise).
//
// What the repository gives up is bounded by the trials: a stream goes on
// fast only while its sampled fast frames are within 1/32 of the default
// ones, and a fast frame that saves too little to be kept (pack's 1/32 rule)
// is made again at the default effort, so no job loses its whole saving.
// On the benchmark's data (seed 5) the database's pages and the logs went
// fast in every trial (their fast frames 2.2-3.0 % larger): 3.9 MB more of
// 1.29 GB, and the initial backup's user CPU 5.3 s instead of 5.7 s
// (medians of five, cold).
//
// Small files (below pickFileMin) are not picked for: they share their
// reader's groups, and a stream of them was tried and dropped. Its first
// trial, on a few configuration files, went fast; the source files grouped
// after it, which lose a fifth at the fast effort, followed until the next
// trial 31 groups later (7.3 MB more in all). A group that holds blobs of
// several streams is at the default effort (grouper.add).
type levelPick struct {
	jobs atomic.Uint32
	fast atomic.Bool
}

const (
	pickEvery = 32
	pickSlack = 32
	// pickFileMin: a file this large is a stream of its own and picked
	// for; smaller ones are compressed at the default effort.
	pickFileMin = 8 << 20
)

// next returns the effort of the stream's next job, and whether the job is
// a trial (compressed at both efforts, then judge). A nil pick is the
// default effort (trees, meta).
func (p *levelPick) next() (e pack.Effort, trial bool) {
	if p == nil {
		return pack.EffortDefault, false
	}
	if p.jobs.Add(1)%pickEvery == 1 {
		return pack.EffortDefault, true
	}
	if p.fast.Load() {
		return pack.EffortFast, false
	}
	return pack.EffortDefault, false
}

// judge records a trial: def bytes stored at the default effort, fast at
// the fast one (0: the fast frame saved too little to be stored).
func (p *levelPick) judge(def, fast int) {
	p.fast.Store(fast > 0 && fast <= def+def/pickSlack)
}

// compressAt compresses j at effort e; probed says j's bytes are known not
// to be incompressible. A group that saves too little comes back as raw
// with CodecRaw (each member then stored raw, see addJob).
func compressAt(dst []byte, j *blobJob, e pack.Effort, probed bool) (stored []byte, codec uint8) {
	switch {
	case j.members == nil && probed:
		return pack.CompressProbedAt(dst, j.raw, e)
	case j.members == nil:
		return pack.CompressAt(dst, j.raw, e)
	}
	if frame, ok := pack.CompressGroupAt(dst, j.raw, e); ok {
		return frame, pack.CodecGroup
	}
	return j.raw, pack.CodecRaw
}
