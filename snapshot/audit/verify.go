package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Problem kinds, in Problem.Kind.
const (
	KindHashMismatch   = "hash mismatch"   // the line's bytes do not hash to its hash field: edited
	KindChainBreak     = "chain break"     // prev is not the previous line's hash: a line inserted, removed or replaced
	KindSeqGap         = "seq gap"         // seq jumps forward: lines deleted (or a cut head)
	KindDuplicate      = "duplicate"       // a seq seen on an earlier line
	KindReorder        = "reorder"         // seq goes backwards to one not seen yet
	KindCutTail        = "cut tail"        // an anchor names a seq past the end of the trail
	KindHeadMismatch   = "head mismatch"   // HEAD is missing, unreadable, or not the last line (ahead of it: cut tail)
	KindUnparsable     = "unparsable"      // a complete line that is not an event
	KindAnchorMismatch = "anchor mismatch" // an anchor's hash differs from the trail's line at its seq
)

// Anchor is a head recorded outside the trail: a snapshot manifest's
// audit_head, an export descriptor, or a copy the user kept.
type Anchor struct {
	Seq    uint64
	Hash   string
	Source string // for messages, e.g. "snapshot 3f2a…" or "HEAD copy from 2026-03-01"
}

// Report is what Verify found.
type Report struct {
	Events int  // complete, parsable lines
	Head   Head // the last complete, parsable line (what Append continues from)

	// TornTail is set when bytes follow the last newline: an append that did
	// not finish (a crash), reported as "incomplete trailing record at seq
	// Head.Seq+1", not as tampering. TornBytes is their length. Open
	// truncates them.
	TornTail  bool
	TornBytes int64

	// StaleHead is set when HEAD names the line before the last one: a crash
	// between the line's fsync and HEAD's rename. Not tampering; Open
	// rewrites HEAD.
	StaleHead bool

	// AckLine is the line of the last acknowledged_damage event (0: none).
	// Problems on lines up to it were acknowledged by an operator; they are
	// still listed.
	AckLine int

	Problems []Problem // in line order, then HEAD, then anchors; empty when the trail is intact
}

// OK reports whether Verify found no problems. A torn tail and a stale HEAD
// are crash artefacts, not problems, and do not make OK false.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// unacknowledged returns the problems Open refuses: those after AckLine, and
// any HEAD problem.
func (r Report) unacknowledged() []Problem {
	var un []Problem
	for _, p := range r.Problems {
		if p.Line == 0 || p.Line > r.AckLine {
			un = append(un, p)
		}
	}
	return un
}

// String renders the report for people: a summary line, then one line per
// problem.
func (r Report) String() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "audit trail intact: %d records, head seq %d %s", r.Events, r.Head.Seq, r.Head.Hash)
	} else {
		fmt.Fprintf(&b, "audit trail damaged: %d problems in %d records; first: %s", len(r.Problems), r.Events, r.Problems[0])
	}
	if r.TornTail {
		fmt.Fprintf(&b, "\nincomplete trailing record (torn tail) at seq %d, %d bytes: a crash during append, not tampering", r.Head.Seq+1, r.TornBytes)
	}
	if r.StaleHead {
		fmt.Fprintf(&b, "\nHEAD is one record behind: a crash before HEAD was updated, not tampering")
	}
	if r.AckLine > 0 {
		fmt.Fprintf(&b, "\ndamage up to line %d was acknowledged", r.AckLine)
	}
	for _, p := range r.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Problem is one finding of Verify. Line is the 1-based line in audit.jsonl,
// 0 for problems with HEAD or an anchor; Seq is the line's seq (0 when the
// line is unparsable), or the seq HEAD or the anchor names.
type Problem struct {
	Seq    uint64
	Line   int
	Kind   string // one of the Kind constants
	Detail string
}

// String renders p as "<kind> at seq n (line l): detail", leaving out what
// p does not have.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Kind)
	switch {
	case p.Line > 0 && p.Seq > 0:
		fmt.Fprintf(&b, " at seq %d (line %d)", p.Seq, p.Line)
	case p.Line > 0:
		fmt.Fprintf(&b, " at line %d", p.Line)
	case p.Seq > 0:
		fmt.Fprintf(&b, " at seq %d", p.Seq)
	}
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	return b.String()
}

// Verify walks the whole trail in dir and checks every line's hash, the chain
// of prev hashes, the sequence, HEAD, and each anchor. An anchor whose seq is
// in the trail must match that line's hash; one past the end means the tail
// was cut. Verify never modifies anything and takes no lock; it may run while
// a Log appends.
//
// Verify returns an error only when the trail cannot be read; a trail with
// neither audit.jsonl nor HEAD is an error matching fs.ErrNotExist.
func Verify(dir string, anchors []Anchor) (Report, error) {
	want := make(map[uint64]bool, len(anchors))
	for _, a := range anchors {
		want[a.Seq] = true
	}
	var t *trail
	// HEAD is written after the line it names, so if it reads the same before
	// and after the scan, the scan saw that line and at most one more (whole
	// or torn). If it changed, an append finished meanwhile: read again.
	for attempt := 0; ; attempt++ {
		before, presentBefore, err := readHeadRaw(dir)
		if err != nil {
			return Report{}, err
		}
		t, err = scanFile(dir, want)
		if errors.Is(err, fs.ErrNotExist) && presentBefore {
			t, err = scan(bytes.NewReader(nil), want, nil) // audit.jsonl deleted, HEAD left
		}
		if err != nil {
			return Report{}, err
		}
		after, presentAfter, err := readHeadRaw(dir)
		if err != nil {
			return Report{}, err
		}
		if presentBefore == presentAfter && bytes.Equal(before, after) || attempt == 9 {
			t.checkHead(after, presentAfter)
			break
		}
	}
	t.checkAnchors(anchors)
	return t.report, nil
}

// ReadAll returns every complete, parsable event of the trail in dir, in file
// order, including any whose hash does not verify: use Verify to judge them.
// A torn last line is left out. Numbers in Params come back as json.Number.
func ReadAll(dir string) ([]Event, error) {
	var evs []Event
	if _, err := scanFileEach(dir, nil, func(e Event) { evs = append(evs, e) }); err != nil {
		return nil, err
	}
	return evs, nil
}

func scanFile(dir string, want map[uint64]bool) (*trail, error) {
	return scanFileEach(dir, want, nil)
}

func scanFileEach(dir string, want map[uint64]bool, each func(Event)) (*trail, error) {
	f, err := os.Open(filepath.Join(dir, LogFile))
	if err != nil {
		return nil, fmt.Errorf("audit: read trail: %w", err)
	}
	defer f.Close()
	t, err := scan(f, want, each)
	if err != nil {
		return nil, fmt.Errorf("audit: read trail: %w", err)
	}
	return t, nil
}

// trail is what one pass over audit.jsonl (and HEAD) found.
type trail struct {
	report   Report
	last     Event          // last complete, parsable line
	lastLine int            // its line number; 0: none yet
	maxSeq   uint64         // highest seq seen
	seen     map[uint64]int // seq → line of its first occurrence
	want     map[uint64]bool
	anchored map[uint64]string // seq → hash of its first occurrence, for wanted seqs
	goodLen  int64             // bytes up to and including the last newline
	each     func(Event)

	headRaw     []byte // HEAD as read, for Acknowledge
	headPresent bool
}

// scan reads a whole trail from r, calling each (if not nil) for every
// parsable line. It reports only problems found in the lines themselves.
func scan(r io.Reader, want map[uint64]bool, each func(Event)) (*trail, error) {
	t := &trail{seen: make(map[uint64]int), want: want, anchored: make(map[uint64]string), each: each}
	n := 0
	err := eachLine(r, func(line []byte, length int64, complete bool) {
		if !complete {
			t.report.TornTail, t.report.TornBytes = true, length
			return
		}
		n++
		t.goodLen += length + 1
		if line == nil {
			t.problem(Problem{Line: n, Kind: KindUnparsable, Detail: fmt.Sprintf("line of %d bytes, longer than %d", length, MaxLine)})
			return
		}
		t.line(line, n)
	})
	return t, err
}

// eachLine calls fn for every newline-terminated line of r (without the
// newline, complete) and for trailing bytes after the last one (not
// complete). line is nil when length exceeds MaxLine; such a line is skipped
// without being held in memory. line is only valid during the call.
func eachLine(r io.Reader, fn func(line []byte, length int64, complete bool)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	var n int64 // length so far of the current line, newline included
	for {
		chunk, err := br.ReadSlice('\n')
		n += int64(len(chunk))
		if n <= MaxLine+1 {
			buf = append(buf, chunk...)
		} else {
			buf = buf[:0]
		}
		switch {
		case err == nil:
			if n <= MaxLine+1 {
				fn(buf[:len(buf)-1], n-1, true)
			} else {
				fn(nil, n-1, true)
			}
			buf, n = buf[:0], 0
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			if n > 0 {
				fn(nil, n, false)
			}
			return nil
		default:
			return err
		}
	}
}

func (t *trail) problem(p Problem) { t.report.Problems = append(t.report.Problems, p) }

// line checks one complete line, numbered n, against the lines before it.
func (t *trail) line(raw []byte, n int) {
	e, sum, err := parseLine(raw)
	if err != nil {
		t.problem(Problem{Line: n, Kind: KindUnparsable, Detail: err.Error()})
		return
	}
	t.report.Events++
	if t.each != nil {
		t.each(e)
	}
	if sum != e.Hash {
		t.problem(Problem{Seq: e.Seq, Line: n, Kind: KindHashMismatch,
			Detail: fmt.Sprintf("the line records %s, its bytes hash to %s", e.Hash, sum)})
	}
	// At most one ordering problem per line: the first that applies.
	p := Problem{Seq: e.Seq, Line: n}
	switch first, dup := t.lastLine == 0, t.seen[e.Seq]; {
	case first && e.Seq != 1:
		p.Kind, p.Detail = KindSeqGap, fmt.Sprintf("the trail starts at seq %d: %s", e.Seq, missing(1, e.Seq-1))
	case first && e.Prev != "":
		p.Kind, p.Detail = KindChainBreak, fmt.Sprintf("seq 1 has prev %s, want none", Escape([]byte(e.Prev)))
	case first:
	case dup > 0:
		p.Kind, p.Detail = KindDuplicate, fmt.Sprintf("seq %d is already on line %d", e.Seq, dup)
	case e.Seq > t.last.Seq+1:
		p.Kind, p.Detail = KindSeqGap, fmt.Sprintf("seq %d follows seq %d (line %d): %s",
			e.Seq, t.last.Seq, t.lastLine, missing(t.last.Seq+1, e.Seq-1))
	case e.Seq < t.last.Seq+1:
		p.Kind, p.Detail = KindReorder, fmt.Sprintf("seq %d follows seq %d (line %d)", e.Seq, t.last.Seq, t.lastLine)
	case e.Prev != t.last.Hash:
		p.Kind, p.Detail = KindChainBreak, fmt.Sprintf("prev is %s, but the previous line (seq %d, line %d) has hash %s",
			Escape([]byte(e.Prev)), t.last.Seq, t.lastLine, t.last.Hash)
	}
	if p.Kind != "" {
		t.problem(p)
	}
	if t.seen[e.Seq] == 0 {
		t.seen[e.Seq] = n
		if t.want[e.Seq] {
			t.anchored[e.Seq] = e.Hash
		}
	}
	if e.Op == OpAcknowledgedDamage {
		t.report.AckLine = n
	}
	t.last, t.lastLine, t.maxSeq = e, n, max(t.maxSeq, e.Seq)
	t.report.Head = Head{Seq: e.Seq, Hash: e.Hash}
}

// missing describes the absent seqs from..to.
func missing(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("seq %d missing", from)
	}
	return fmt.Sprintf("seq %d to %d missing", from, to)
}

// parseLine decodes one line (without its newline) and returns the event and
// the hash of the bytes before its hash field.
func parseLine(raw []byte) (e Event, sum string, err error) {
	i := bytes.LastIndex(raw, []byte(hashField))
	start := i + len(hashField)
	if i < 0 || !bytes.HasSuffix(raw, []byte(`"}`)) || start > len(raw)-2 {
		return Event{}, "", errors.New("no hash field at the end of the line")
	}
	recorded := string(raw[start : len(raw)-2])
	if !validHash(recorded) {
		return Event{}, "", fmt.Errorf("malformed hash %s", Escape([]byte(recorded)))
	}
	if raw[0] != '{' || !json.Valid(raw) {
		return Event{}, "", errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return Event{}, "", fmt.Errorf("not an event: %w", err)
	}
	if e.Seq == 0 {
		return Event{}, "", errors.New("no seq")
	}
	if e.Hash != recorded { // a duplicate "hash" key earlier in the line would not get here
		return Event{}, "", errors.New("ambiguous hash field")
	}
	return e, hashOf(raw[:i]), nil
}

// checkHead compares HEAD (raw, if present) with the last line.
func (t *trail) checkHead(raw []byte, present bool) {
	t.headRaw, t.headPresent = raw, present
	last := t.report.Head
	if !present {
		if t.lastLine > 0 {
			t.problem(Problem{Seq: last.Seq, Kind: KindHeadMismatch, Detail: "HEAD is missing"})
		}
		return // an empty trail before its first Open finished
	}
	h, err := parseHead(raw)
	switch {
	case err != nil:
		t.problem(Problem{Kind: KindHeadMismatch, Detail: "HEAD is unreadable: " + Escape([]byte(err.Error()))})
	case h == last:
	case h.Seq > last.Seq:
		t.problem(Problem{Seq: h.Seq, Kind: KindHeadMismatch,
			Detail: fmt.Sprintf("HEAD names seq %d (%s) but the trail ends at seq %d: the tail was cut", h.Seq, h.Hash, last.Seq)})
	case t.lastLine > 0 && h.Seq+1 == last.Seq && h.Hash == t.last.Prev:
		t.report.StaleHead = true
	default:
		t.problem(Problem{Seq: h.Seq, Kind: KindHeadMismatch,
			Detail: fmt.Sprintf("HEAD names seq %d (%s), the last line is seq %d (%s)", h.Seq, h.Hash, last.Seq, last.Hash)})
	}
}

// checkAnchors compares each anchor with the line at its seq.
func (t *trail) checkAnchors(anchors []Anchor) {
	last := t.report.Head
	for _, a := range anchors {
		src := a.Source
		if src == "" {
			src = "anchor"
		}
		src = Escape([]byte(src))
		hash, ok := t.anchored[a.Seq]
		switch {
		case a.Seq == 0 && a.Hash == "": // anchors an empty trail: always a prefix
		case a.Seq == 0:
			t.problem(Problem{Kind: KindAnchorMismatch, Detail: fmt.Sprintf("%s names seq 0 with hash %s", src, Escape([]byte(a.Hash)))})
		case a.Seq > last.Seq:
			t.problem(Problem{Seq: a.Seq, Kind: KindCutTail,
				Detail: fmt.Sprintf("%s names seq %d (%s), but the trail ends at seq %d", src, a.Seq, Escape([]byte(a.Hash)), last.Seq)})
		case !ok:
			t.problem(Problem{Seq: a.Seq, Kind: KindAnchorMismatch,
				Detail: fmt.Sprintf("%s names seq %d, which is not in the trail", src, a.Seq)})
		case hash != a.Hash:
			t.problem(Problem{Seq: a.Seq, Kind: KindAnchorMismatch,
				Detail: fmt.Sprintf("%s names seq %d as %s, the trail has %s", src, a.Seq, Escape([]byte(a.Hash)), hash)})
		}
	}
}
