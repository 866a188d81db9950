package snapshot

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	blake3 "snapforge/snapshot/b3"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// ReadData reads, decompresses and hash-checks every chunk, and
	// recomputes every file's whole hash against the manifest.
	ReadData bool
	Live     *Live
	// Workers read files in parallel; default 2 (each loads chunks ahead
	// of its hashing, so two keep both cores busy).
	Workers int
}

// Problem is one integrity finding.
type Problem struct {
	Path    string `json:"path,omitempty"` // display form
	PathB64 string `json:"path_b64,omitempty"`
	Problem string `json:"problem"`
}

// SnapshotCheck is the verify result of one snapshot.
type SnapshotCheck struct {
	BackupID string    `json:"backup_id"`
	OK       bool      `json:"ok"`
	Files    int64     `json:"files"`
	Problems []Problem `json:"problems,omitempty"`
}

// PackProblem is a finding about a pack file.
type PackProblem struct {
	Pack    string `json:"pack"`
	Problem string `json:"problem"`
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	ReadData  bool            `json:"read_data"`
	Snapshots []SnapshotCheck `json:"snapshots"`
	Packs     []PackProblem   `json:"packs,omitempty"`
	Warnings  []string        `json:"warnings,omitempty"`
	// Read is how many bytes of file content were read, decoded and
	// hashed; Reused how many were proven without being read again: spans
	// of later file versions equal to spans hashed earlier in the run (see
	// spans.go). Content seen before in whole files is neither.
	Read     int64         `json:"read_bytes,omitempty"`
	Reused   int64         `json:"reused_bytes,omitempty"`
	Duration time.Duration `json:"-"`
}

// OK reports whether nothing was found.
func (v *VerifyReport) OK() bool {
	if len(v.Packs) > 0 {
		return false
	}
	for _, s := range v.Snapshots {
		if !s.OK {
			return false
		}
	}
	return true
}

// VerifyRecord is stored per snapshot in verify/<backup_id>.json
// (docs/repository-format.md). The newest snapshot whose read-data verify
// passed, with no later failure, is the last known good.
type VerifyRecord struct {
	BackupID   string `json:"backup_id"`
	Structural *Check `json:"structural,omitempty"`
	ReadData   *Check `json:"read_data,omitempty"`
	Smoke      *Check `json:"smoke,omitempty"`
}

// Check is the outcome of one verify level.
type Check struct {
	OK          bool     `json:"ok"`
	FinishedUTC string   `json:"finished_utc"`
	Problems    []string `json:"problems,omitempty"`
}

// Verify checks the given snapshots (all when ids is empty). Structurally:
// manifests parse, trees load and hash-check, every chunk is indexed and
// inside its pack's bounds, and the root hash recomputed from the trees
// matches the manifest. With ReadData it also reads every chunk and
// recomputes every file's whole hash.
func (r *Repo) Verify(ctx context.Context, ids []string, opts VerifyOptions) (*VerifyReport, error) {
	if err := r.errIfNoIndex(); err != nil {
		return nil, err
	}
	if opts.Live == nil {
		opts.Live = &Live{}
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	start := time.Now()
	opts.Live.start("verify")
	rep := &VerifyReport{ReadData: opts.ReadData}
	ps, err := r.scanPacks(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	badPack, onDisk := ps.bad, ps.onDisk
	for _, id := range ps.orphans {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("pack %s (%d bytes) is not in the index (orphan; prune removes it)", id.Short(), onDisk[id]))
	}
	if opts.ReadData {
		for id := range onDisk {
			if _, bad := badPack[id]; bad || slices.Contains(ps.orphans, id) {
				continue
			}
			if _, _, err := r.readPackTrailer(id); err != nil {
				badPack[id] = "trailer damaged: " + err.Error()
			}
		}
	}
	for id, p := range badPack {
		rep.Packs = append(rep.Packs, PackProblem{Pack: id.String(), Problem: p})
	}
	sort.Slice(rep.Packs, func(i, j int) bool { return rep.Packs[i].Pack < rep.Packs[j].Pack })

	var entries []SnapshotEntry
	if len(ids) == 0 {
		if entries, err = r.Snapshots(ctx); err != nil {
			return nil, err
		}
	} else {
		for _, ref := range ids {
			m, err := r.Resolve(ctx, ref)
			var de *DamagedError
			if errors.As(err, &de) {
				entries = append(entries, SnapshotEntry{BackupID: de.BackupID, Err: err})
				continue
			}
			if err != nil {
				return nil, err
			}
			entries = append(entries, SnapshotEntry{BackupID: m.BackupID, Manifest: m})
		}
	}
	for _, e := range entries {
		if e.Manifest != nil {
			opts.Live.FilesTotal.Add(e.Manifest.Stats.Files)
			opts.Live.BytesTotal.Add(e.Manifest.Stats.Bytes)
		}
	}
	opts.Live.WalkDone.Store(true)
	v := &verifier{r: r, opts: opts, badPack: badPack, onDisk: onDisk, memo: map[ID]string{}, pr: r.newPackReader(64)}
	v.spans.cvs = map[ID]blake3.CV{}
	defer v.pr.Close()
	for _, e := range entries {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if ne := new(NewerError); errors.As(e.Err, &ne) {
			// Not damage: this build cannot judge it. Nothing is recorded
			// (a newer build's verdict stands), and the run is not failed.
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("snapshot %s skipped: %v", e.BackupID, ne))
			continue
		}
		sc := SnapshotCheck{BackupID: e.BackupID}
		if e.Err != nil {
			sc.Problems = append(sc.Problems, Problem{Problem: e.Err.Error()})
		} else {
			sc.Files, sc.Problems = v.snapshot(ctx, e.Manifest)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sc.OK = len(sc.Problems) == 0
		rep.Snapshots = append(rep.Snapshots, sc)
		r.recordVerify(sc, opts.ReadData)
	}
	rep.Read, rep.Reused = v.read.Load(), v.spans.reused.Load()
	rep.Duration = time.Since(start)
	outcome := "ok"
	if !rep.OK() {
		outcome = "integrity failure"
	}
	var idsDone []string
	for _, s := range rep.Snapshots {
		idsDone = append(idsDone, s.BackupID)
	}
	r.AuditAs(ctx, "verify", map[string]any{"snapshots": idsDone, "read_data": opts.ReadData,
		"pack_problems": len(rep.Packs), "duration_ms": rep.Duration.Milliseconds()}, outcome)
	return rep, nil
}

type verifier struct {
	r       *Repo
	opts    VerifyOptions
	badPack map[ID]string
	onDisk  map[ID]int64
	pr      *packReader // packs stay open across files
	mu      sync.Mutex
	memo    map[ID]string // content key → problem ("" when sound)
	spans   spanCVs       // CVs of the spans of files proven (spans.go)
	read    atomic.Int64  // bytes of file content read
}

// snapshot checks one snapshot and returns its file count and problems.
func (v *verifier) snapshot(ctx context.Context, m *Manifest) (int64, []Problem) {
	var probs []Problem
	var mu sync.Mutex
	add := func(rel, p string) {
		d, b64 := pathFields(rel)
		mu.Lock()
		probs = append(probs, Problem{Path: d, PathB64: b64, Problem: p})
		mu.Unlock()
	}
	tree, err := m.TreeID()
	if err != nil {
		return 0, []Problem{{Problem: err.Error()}}
	}
	var items []Item
	var files int64
	// With ReadData a planner looks files up ahead of the workers, and the
	// read-ahead follows it (verifyplan.go); the plans' memory waiting for
	// the workers is bounded (planAhead). Without, the workers look their
	// files up themselves, in parallel.
	walk := make(chan *verifyJob, 64)
	jobs := walk
	var ra *readAhead
	var ahead *semaphore.Weighted
	if v.opts.ReadData {
		jobs = make(chan *verifyJob, 4096)
		ra = newReadAhead(v.r)
		ahead = semaphore.NewWeighted(planAhead)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i := 0; i < v.opts.Workers; i++ {
		g.Go(func() error {
			for j := range jobs {
				if !j.planned {
					v.plan(gctx, j)
				}
				if p := v.file(gctx, j, ra); p != "" {
					add(j.rel, p)
				}
				if j.ahead > 0 {
					ahead.Release(j.ahead)
				}
			}
			return nil
		})
	}
	if v.opts.ReadData {
		g.Go(func() error { // the planner
			defer close(jobs)
			if ra != nil {
				defer ra.done()
			}
			for j := range walk {
				j.ahead = min(planCost(j.n), planAhead)
				if err := ahead.Acquire(gctx, j.ahead); err != nil {
					return err
				}
				v.plan(gctx, j)
				if ra != nil {
					ra.plan(j, v.badPack)
				}
				select {
				case jobs <- j:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	if ra != nil {
		g.Go(func() error {
			ra.run(gctx)
			return nil
		})
	}
	werr := v.r.Walk(ctx, tree, "", func(rel string, n *Node) error {
		items = append(items, NewItem(rel, n))
		if n.Type == TypeFile || n.Type == TypeHardlink {
			files++
			select {
			case walk <- &verifyJob{rel: rel, n: n}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	close(walk)
	g.Wait()
	if werr != nil {
		add("", "trees unreadable: "+werr.Error())
		return files, probs
	}
	if got := RootHash(items); got != m.RootHash {
		add("", fmt.Sprintf("root hash recomputed from the trees is %s, manifest says %s", got, m.RootHash))
	}
	// Items against the root hash were checked when the manifest was parsed.
	sort.Slice(probs, func(i, j int) bool { return probs[i].Path < probs[j].Path })
	return files, probs
}

// contentKey identifies a file's content for memoisation across snapshots.
func contentKey(n *Node) ID {
	b := make([]byte, 0, 40+len(n.Chunks)*36)
	b = append(b, n.Hash[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(n.Size))
	for _, c := range n.Chunks {
		b = append(b, c.ID[:]...)
		b = binary.LittleEndian.AppendUint32(b, c.Size)
	}
	return Hash(b)
}

// planAhead bounds the memory of the plans made and not yet checked (their
// chunk locations and span keys, planCost): the planner runs ahead of the
// workers by files, as far as the read-ahead's window, which bounds the
// reading, and this allow. A file whose plan is larger is planned alone.
const planAhead = 64 << 20

// planCost is what plan may allocate for n.
func planCost(n *Node) int64 {
	spans := min(max(n.Size/blake3.SubtreeSize, 0), spanCVsMax)
	return int64(len(n.Chunks))*int64(unsafe.Sizeof(Location{})+unsafe.Sizeof(error(nil))) + spans*(int64(len(ID{}))+1) + 256
}

// plan prepares the check of j's file: unless its content was proven
// already, its chunks are looked up, and with ReadData the proof of a file
// of several chunks is planned (which chunks to read, spans.go).
func (v *verifier) plan(ctx context.Context, j *verifyJob) {
	n := j.n
	j.planned = true
	j.key = contentKey(n)
	v.mu.Lock()
	_, done := v.memo[j.key]
	v.mu.Unlock()
	if done {
		return
	}
	j.looked = true
	j.locs = make([]Location, len(n.Chunks))
	j.errs = make([]error, len(n.Chunks))
	var sum int64
	ok := true
	j.err = v.r.idx.LookupEach(ctx, n.Chunks, func(i int, loc Location, err error) bool {
		j.locs[i], j.errs[i] = loc, err
		j.visited = i + 1
		sum += int64(n.Chunks[i].Size)
		ok = ok && err == nil && loc.Raw == n.Chunks[i].Size
		return true
	})
	if v.opts.ReadData && j.err == nil && ok && sum == n.Size && len(n.Chunks) > 1 {
		j.proof = v.planSpans(n)
	}
}

// file checks one file and returns a problem, or "". The read-ahead, when
// not nil, gets back what it counted for the file's chunks.
func (v *verifier) file(ctx context.Context, j *verifyJob, ra *readAhead) string {
	n := j.n
	var given int64
	if ra != nil {
		defer func() { ra.consumed.Add(j.cost - given) }()
	}
	if ctx.Err() != nil {
		return "" // cancelled: Verify returns the context's error
	}
	v.mu.Lock()
	p, done := v.memo[j.key]
	v.mu.Unlock()
	if done || !j.looked {
		v.opts.Live.FilesDone.Add(1)
		v.opts.Live.BytesDone.Add(n.Size)
		return p
	}
	p = v.checkFile(ctx, j, func(i, size int) {
		v.read.Add(int64(size))
		v.opts.Live.BytesDone.Add(int64(size))
		if ra != nil && i < len(j.costs) {
			ra.consumed.Add(j.costs[i])
			given += j.costs[i]
		}
	})
	v.mu.Lock()
	v.memo[j.key] = p
	v.mu.Unlock()
	v.opts.Live.FilesDone.Add(1)
	return p
}

// checkFile checks the file of j, looked up by the planner. Each chunk read
// is passed to progress, with its index among those read.
func (v *verifier) checkFile(ctx context.Context, j *verifyJob, progress func(i, size int)) string {
	n := j.n
	var sum int64
	for i, c := range n.Chunks[:j.visited] {
		loc := j.locs[i]
		sum += int64(c.Size)
		why, bad := v.badPack[loc.Pack]
		size, known := v.onDisk[loc.Pack]
		switch {
		case j.errs[i] != nil:
			return fmt.Sprintf("chunk %s is not in the index", c.ID.Short())
		case bad:
			return fmt.Sprintf("chunk %s: pack %s %s", c.ID.Short(), loc.Pack.Short(), why)
		case known && int64(loc.Offset)+int64(loc.Stored) > size:
			return fmt.Sprintf("chunk %s lies outside pack %s (size mismatch with index)", c.ID.Short(), loc.Pack.Short())
		case loc.Raw != c.Size:
			return fmt.Sprintf("chunk %s: index says %d bytes, tree says %d", c.ID.Short(), loc.Raw, c.Size)
		}
	}
	switch {
	case j.err != nil && ctx.Err() != nil:
		return "" // cancelled: Verify returns the context's error
	case j.err != nil:
		return fmt.Sprintf("chunks could not be looked up: %v", j.err)
	}
	if sum != n.Size {
		return fmt.Sprintf("chunk sizes add up to %d, file size is %d", sum, n.Size)
	}
	if !v.opts.ReadData {
		v.opts.Live.BytesDone.Add(n.Size)
		return ""
	}
	var err error
	if j.proof != nil {
		var read int64
		err = v.proveFile(ctx, n, j.locs, j.proof, func(i, size int) {
			read += int64(size)
			progress(i, size)
		})
		v.opts.Live.BytesDone.Add(n.Size - read) // the spans proven before
		err = v.r.nameDamage(ctx, v.pr, n, j.locs, err)
	} else {
		// Without a proof the read-ahead counted a file of one chunk only
		// (j.costs has at most one entry): every chunk here is index 0.
		err = v.r.streamContent(ctx, v.pr, n, checkFile, j.locs, func(data []byte, _ int64) error {
			progress(0, len(data))
			return nil
		})
	}
	if err != nil {
		if ctx.Err() != nil {
			return ""
		}
		return err.Error()
	}
	return ""
}

func (r *Repo) recordVerify(sc SnapshotCheck, full bool) {
	name := filepath.Join(r.path, "verify", sc.BackupID+".json")
	var rec VerifyRecord
	if b, err := os.ReadFile(name); err == nil {
		json.Unmarshal(b, &rec)
	}
	rec.BackupID = sc.BackupID
	c := &Check{OK: sc.OK, FinishedUTC: r.opts.Now().UTC().Format(checkTime), Problems: []string{}}
	for _, p := range sc.Problems {
		if p.Path != "" {
			c.Problems = append(c.Problems, p.Path+": "+p.Problem)
		} else {
			c.Problems = append(c.Problems, p.Problem)
		}
	}
	if full {
		rec.ReadData = c
	} else {
		rec.Structural = c
	}
	b, _ := json.MarshalIndent(rec, "", " ")
	os.MkdirAll(filepath.Dir(name), 0o700)
	if err := writeFileAtomic(name, append(b, '\n'), nil); err != nil {
		r.opts.Logger.Warn("verify record not written", "snapshot", sc.BackupID, "err", err)
	}
}

// VerifyRecordOf returns the stored verify record of a snapshot.
func (r *Repo) VerifyRecordOf(id string) (VerifyRecord, bool) {
	var rec VerifyRecord
	b, err := os.ReadFile(filepath.Join(r.path, "verify", id+".json"))
	if err != nil || json.Unmarshal(b, &rec) != nil {
		return rec, false
	}
	return rec, true
}

// LastKnownGood returns the newest snapshot (by creation time) whose
// read-data verify passed with no failure recorded after it, and which is
// not partial; "" when there is none.
func (r *Repo) LastKnownGood(ctx context.Context) (string, error) {
	list, err := r.Snapshots(ctx)
	if err != nil {
		return "", err
	}
	for i := len(list) - 1; i >= 0; i-- {
		e := list[i]
		if e.Manifest == nil || e.Manifest.Partial {
			continue
		}
		rec, ok := r.VerifyRecordOf(e.BackupID)
		if ok && rec.Good() {
			return e.BackupID, nil
		}
	}
	return "", nil
}

// checkTime is Check.FinishedUTC's form: RFC 3339 with nanoseconds always
// written out, so that checks finished within one second are ordered
// (records written before have whole seconds; see finishedBefore).
const checkTime = "2006-01-02T15:04:05.000000000Z07:00"

// Latest returns the newest check recorded, of any level (nil: none).
func (v VerifyRecord) Latest() *Check {
	var last *Check
	for _, c := range []*Check{v.Structural, v.ReadData, v.Smoke} {
		if c != nil && (last == nil || !finishedBefore(c, last)) {
			last = c
		}
	}
	return last
}

// finishedBefore reports whether check a finished before b. Times are
// compared, not strings: records written before checkTime have whole
// seconds ("…05Z" sorts after "…05.3Z" as a string).
func finishedBefore(a, b *Check) bool {
	ta, errA := time.Parse(time.RFC3339Nano, a.FinishedUTC)
	tb, errB := time.Parse(time.RFC3339Nano, b.FinishedUTC)
	if errA != nil || errB != nil {
		return a.FinishedUTC < b.FinishedUTC
	}
	return ta.Before(tb)
}

// Good reports whether the read-data verify passed and nothing recorded
// after it failed.
func (v VerifyRecord) Good() bool {
	if v.ReadData == nil || !v.ReadData.OK {
		return false
	}
	for _, c := range []*Check{v.Structural, v.Smoke} {
		if c != nil && !c.OK && !finishedBefore(c, v.ReadData) {
			return false
		}
	}
	return true
}
