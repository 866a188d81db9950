package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/zeebo/blake3"
)

// clock returns a fake now that advances one second per call, in a non-UTC
// zone so that the conversion to UTC is exercised.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

// newTrail appends n events to a fresh trail and closes it.
func newTrail(t *testing.T, n int) (string, []Event) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var evs []Event
	for i := 1; i <= n; i++ {
		e, err := l.Append(Event{Actor: "test", Op: "backup", Params: map[string]any{"i": i}, Outcome: "ok"})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, evs
}

// lines returns audit.jsonl's lines, each with its newline.
func lines(t *testing.T, dir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t *testing.T, dir string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, LogFile), bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeHeadFile(t *testing.T, dir string, h Head) {
	t.Helper()
	if err := writeHead(dir, h); err != nil {
		t.Fatal(err)
	}
}

func verify(t *testing.T, dir string, anchors ...Anchor) Report {
	t.Helper()
	r, err := Verify(dir, anchors)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantProblems fails unless r's problems are exactly want (kind, seq, line).
func wantProblems(t *testing.T, r Report, want ...Problem) {
	t.Helper()
	var got []Problem
	for _, p := range r.Problems {
		got = append(got, Problem{Seq: p.Seq, Line: p.Line, Kind: p.Kind})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems:\n%s\nwant (kind, seq, line): %v", r, want)
	}
}

func TestAppendVerifyReadAll(t *testing.T) {
	dir, evs := newTrail(t, 5)
	r := verify(t, dir)
	if !r.OK() || r.Events != 5 || r.Head != (Head{5, evs[4].Hash}) || r.TornTail || r.StaleHead {
		t.Fatalf("report: %+v", r)
	}
	h, err := ReadHead(dir)
	if err != nil || h != r.Head {
		t.Fatalf("ReadHead = %+v, %v; want %+v", h, err, r.Head)
	}
	got, err := ReadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("ReadAll: %d events", len(got))
	}
	for i, e := range got {
		want := evs[i]
		if e.Seq != uint64(i+1) || e.Hash != want.Hash || e.Prev != want.Prev || !e.Time.Equal(want.Time) ||
			e.Time.Location() != time.UTC || e.Params["i"] != json.Number(fmt.Sprint(i+1)) {
			t.Errorf("event %d: got %+v, want %+v", i, e, want)
		}
	}
	if evs[0].Prev != "" || evs[1].Prev != evs[0].Hash {
		t.Errorf("chain: %q, %q", evs[0].Prev, evs[1].Prev)
	}

	// Reopening continues the chain.
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Head() != r.Head {
		t.Fatalf("Head after reopen = %+v", l.Head())
	}
	e, err := l.Append(Event{Actor: "test", Op: "verify", Outcome: "ok"})
	if err != nil || e.Seq != 6 || e.Prev != evs[4].Hash {
		t.Fatalf("append after reopen: %+v, %v", e, err)
	}
	if r := verify(t, dir); !r.OK() || r.Events != 6 {
		t.Fatalf("after reopen:\n%s", r)
	}
}

// TestLineFormat pins the bytes of a line and the hashing rule, computed
// here independently of encodeLine.
func TestLineFormat(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	l, err := Open(dir, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e, err := l.Append(Event{Actor: "cli:root@host pid 1", Op: "init", Params: map[string]any{"b": "<x>&", "a": 1}, Outcome: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	prefix := `{"seq":1,"time":"2026-01-02T03:04:05.000000006Z","actor":"cli:root@host pid 1","op":"init",` +
		`"params":{"a":1,"b":"<x>&"},"outcome":"ok","prev":""`
	sum := blake3.Sum256([]byte(prefix))
	hash := "blake3:" + hex.EncodeToString(sum[:])
	want := prefix + `,"hash":"` + hash + `"}` + "\n"
	if got := string(bytes.Join(lines(t, dir), nil)); got != want {
		t.Fatalf("line:\n%s\nwant\n%s", got, want)
	}
	if e.Hash != hash {
		t.Fatalf("returned hash %s, want %s", e.Hash, hash)
	}
	head, err := os.ReadFile(filepath.Join(dir, HeadFile))
	if err != nil || string(head) != `{"seq":1,"hash":"`+hash+`"}`+"\n" {
		t.Fatalf("HEAD = %q, %v", head, err)
	}
}

func TestOpenEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if _, err := ReadHead(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadHead before Open: %v", err)
	}
	if _, err := Verify(dir, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Verify before Open: %v", err)
	}
	if _, err := ReadAll(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadAll before Open: %v", err)
	}
	l, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if h, err := ReadHead(dir); err != nil || h != (Head{}) {
		t.Fatalf("ReadHead of an empty trail = %+v, %v", h, err)
	}
	if r := verify(t, dir); !r.OK() || r.Events != 0 {
		t.Fatalf("empty trail:\n%s", r)
	}
	if r := verify(t, dir, Anchor{}); !r.OK() {
		t.Fatalf("zero anchor on an empty trail:\n%s", r)
	}
}

func TestOpenLocked(t *testing.T) {
	dir, _ := newTrail(t, 1)
	l, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if _, err := Acknowledge(dir, nil, "test"); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acknowledge while open: %v, want ErrLocked", err)
	}
	if r := verify(t, dir); !r.OK() { // Verify takes no lock
		t.Fatalf("verify while open:\n%s", r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(Event{Op: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	l, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l.Close()
}

func TestAppendRejects(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(Event{Actor: "test"}); err == nil {
		t.Error("empty op accepted")
	}
	if _, err := l.Append(Event{Op: "x", Params: map[string]any{"c": make(chan int)}}); err == nil {
		t.Error("unencodable params accepted")
	}
	// None of these wrote anything or broke the log.
	e, err := l.Append(Event{Op: "x", Seq: 77, Prev: "forged", Hash: "forged"})
	if err != nil || e.Seq != 1 || e.Prev != "" || e.Hash == "forged" {
		t.Fatalf("append after rejects: %+v, %v", e, err)
	}
	if r := verify(t, dir); !r.OK() || r.Events != 1 {
		t.Fatalf("after rejects:\n%s", r)
	}
}

// FAULTS C5: after a failed write or fsync the Log stops; reopening recovers.
func TestAppendBrokenAfterIOError(t *testing.T) {
	dir, _ := newTrail(t, 2)
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	f := l.f
	f.Close() // every write now fails with "file already closed"
	if _, err := l.Append(Event{Op: "x"}); err == nil {
		t.Fatal("append on a closed fd succeeded")
	}
	if _, err := l.Append(Event{Op: "x"}); !errors.Is(err, ErrBroken) {
		t.Fatalf("second append: %v, want ErrBroken", err)
	}
	l.Close()
	l, err = Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if e, err := l.Append(Event{Op: "x"}); err != nil || e.Seq != 3 {
		t.Fatalf("append after reopen: %+v, %v", e, err)
	}
}

func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Append(Event{Actor: fmt.Sprintf("worker %d", w), Op: "backup", Params: map[string]any{"i": i}, Outcome: "ok"}); err != nil {
					errs <- err
				}
				_ = l.Head()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r := verify(t, dir)
	if !r.OK() || r.Events != workers*each || r.Head != l.Head() || r.Head.Seq != workers*each {
		t.Fatalf("report:\n%s", r)
	}
	evs, err := ReadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("line %d has seq %d", i+1, e.Seq)
		}
	}
}

// A crash between the line's fsync and HEAD's rename leaves HEAD one behind:
// not a problem; Open rewrites HEAD.
func TestStaleHead(t *testing.T) {
	for _, n := range []int{1, 4} {
		dir, evs := newTrail(t, n)
		prev := Head{}
		if n > 1 {
			prev = Head{uint64(n - 1), evs[n-2].Hash}
		}
		writeHeadFile(t, dir, prev)
		r := verify(t, dir)
		if !r.OK() || !r.StaleHead || !strings.Contains(r.String(), "HEAD is one record behind") {
			t.Fatalf("n=%d, stale HEAD:\n%s", n, r)
		}
		l, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		if h, _ := ReadHead(dir); h != (Head{uint64(n), evs[n-1].Hash}) {
			t.Fatalf("HEAD after Open = %+v", h)
		}
		if r := verify(t, dir); !r.OK() || r.StaleHead {
			t.Fatalf("after Open:\n%s", r)
		}
	}
}

// Open refuses damage; Acknowledge records it and lets Open continue, while
// Verify keeps reporting it.
func TestOpenRefusesDamageUntilAcknowledged(t *testing.T) {
	dir, evs := newTrail(t, 6)
	ls := lines(t, dir)
	writeLines(t, dir, append(ls[:2:2], ls[3:]...)) // delete seq 3

	_, err := Open(dir, nil)
	var de *DamageError
	if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open of a damaged trail: %v", err)
	}
	if !strings.Contains(err.Error(), "seq gap at seq 4 (line 3)") {
		t.Errorf("error does not name the first bad line: %v", err)
	}
	if !bytes.Equal(bytes.Join(lines(t, dir), nil), bytes.Join(append(ls[:2:2], ls[3:]...), nil)) {
		t.Fatal("refused Open changed the trail")
	}

	ack, err := Acknowledge(dir, clock(), "cli:root@host pid 9")
	if err != nil {
		t.Fatal(err)
	}
	if ack.Op != OpAcknowledgedDamage || ack.Seq != 7 || ack.Prev != evs[5].Hash || !strings.HasPrefix(ack.Outcome, "integrity failure: seq gap") {
		t.Fatalf("ack event: %+v", ack)
	}
	r := verify(t, dir)
	if r.AckLine != 6 || r.OK() {
		t.Fatalf("after ack:\n%s", r)
	}
	wantProblems(t, r, Problem{Seq: 4, Line: 3, Kind: KindSeqGap})

	l, err := Open(dir, clock())
	if err != nil {
		t.Fatalf("Open after ack: %v", err)
	}
	if _, err := l.Append(Event{Op: "backup", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	wantProblems(t, verify(t, dir), Problem{Seq: 4, Line: 3, Kind: KindSeqGap})
	if ev, err := Acknowledge(dir, nil, "x"); err != nil || ev.Seq != 0 {
		t.Fatalf("second Acknowledge: %+v, %v; want nothing to do", ev, err)
	}

	// New damage after the acknowledgement is refused again.
	ls = lines(t, dir)
	ls[len(ls)-1] = bytes.Replace(ls[len(ls)-1], []byte(`"ok"`), []byte(`"partial"`), 1)
	writeLines(t, dir, ls)
	if _, err := Open(dir, nil); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open after new damage: %v", err)
	}
}

// TestCheckHeldOpen: a Log held open for long (the mount's owner) checks
// the trail again on demand. A write that failed (here on a closed
// descriptor, after a torn half line reached the file) broke it: Check
// opens it again, cuts the torn line and records that, and appends work
// again, continuing the chain. A line altered by another process since
// makes Check fail as Open fails (FAULTS I1), appends by others go on
// being refused by callers until the damage is acknowledged through the
// same Log, after which Check passes and the trail verifies as
// acknowledged.
func TestCheckHeldOpen(t *testing.T) {
	dir, _ := newTrail(t, 3)
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if reopened, err := l.Check(); err != nil || reopened {
		t.Fatalf("check of a sound trail: %v (reopened %v)", err, reopened)
	}
	// A write fails midway: half a line is on disk, the Log is broken.
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"time":"2026-`)
	f.Close()
	l.f.Close()
	if _, err := l.Append(Event{Op: "x", Outcome: "ok"}); err == nil {
		t.Fatal("append on a closed descriptor succeeded")
	}
	if _, err := l.Append(Event{Op: "x", Outcome: "ok"}); !errors.Is(err, ErrBroken) {
		t.Fatalf("append on a broken log: %v, want ErrBroken", err)
	}
	if reopened, err := l.Check(); err != nil || !reopened {
		t.Fatalf("check of a broken log: %v (reopened %v); want it reopened and repaired", err, reopened)
	}
	e, err := l.Append(Event{Actor: "test", Op: "verify", Outcome: "ok"})
	if err != nil || e.Seq != 5 {
		t.Fatalf("append after the check: %+v, %v; want seq 5 (4 records the torn line)", e, err)
	}
	r := verify(t, dir)
	if !r.OK() || r.Head.Seq != 5 {
		t.Fatalf("after the repair: %v", r)
	}
	if evs, _ := ReadAll(dir); len(evs) != 5 || evs[3].Op != OpRecoveredTornTail {
		t.Fatalf("events %+v; want the torn line recorded at seq 4", evs)
	}

	// Another process alters line 2.
	ls := lines(t, dir)
	ls[1] = bytes.Replace(ls[1], []byte(`"outcome":"ok"`), []byte(`"outcome":"failed: x"`), 1)
	writeLines(t, dir, ls)
	if _, err := l.Check(); !errors.Is(err, ErrDamaged) {
		t.Fatalf("check of an altered trail: %v, want ErrDamaged", err)
	}
	if _, err := l.Append(Event{Actor: "test", Op: "backup", Outcome: "ok"}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("append to a trail found altered: %v, want it refused until acknowledged", err)
	}
	ack, err := l.Acknowledge("cli:test")
	if err != nil || ack.Op != OpAcknowledgedDamage || ack.Seq != 6 {
		t.Fatalf("acknowledge through the open log: %+v, %v", ack, err)
	}
	if _, err := l.Check(); err != nil {
		t.Fatalf("check after the acknowledgement: %v", err)
	}
	if e, err := l.Append(Event{Actor: "test", Op: "backup", Outcome: "ok"}); err != nil || e.Seq != 7 {
		t.Fatalf("append after the acknowledgement: %+v, %v", e, err)
	}
	r = verify(t, dir)
	if r.OK() || r.AckLine != 6 || len(r.unacknowledged()) != 0 {
		t.Errorf("verify after the acknowledgement: %v; want the damage reported and acknowledged at line 6", r)
	}

	// Cut short, HEAD rewritten to match: Open would see a sound trail;
	// the Log knows the last event it wrote (seq 7) is gone.
	ls = lines(t, dir)
	writeLines(t, dir, ls[:len(ls)-1])
	last, _, err := parseLine(bytes.TrimSuffix(ls[len(ls)-2], []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	writeHeadFile(t, dir, Head{Seq: last.Seq, Hash: last.Hash})
	if _, err := l.Check(); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "the last event this process wrote") {
		t.Fatalf("check of a trail cut short with HEAD matching: %v, want ErrDamaged naming the missing event", err)
	}
	if ack, err := l.Acknowledge("cli:test"); err != nil || ack.Op != OpAcknowledgedDamage || !strings.Contains(ack.Outcome, "the last event this process wrote") {
		t.Fatalf("acknowledging the cut: %+v, %v", ack, err)
	}
	if _, err := l.Check(); err != nil {
		t.Fatalf("check after acknowledging the cut: %v", err)
	}

	// Replaced by a rename (an editor saving a copy): the Log follows the
	// file at the path, so events are not lost to the unlinked one.
	b, _ := os.ReadFile(filepath.Join(dir, LogFile))
	if err := os.WriteFile(filepath.Join(dir, "copy"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "copy"), filepath.Join(dir, LogFile)); err != nil {
		t.Fatal(err)
	}
	if reopened, err := l.Check(); err != nil || !reopened {
		t.Fatalf("check of a trail replaced by an identical copy: %v (reopened %v)", err, reopened)
	}
	e, err = l.Append(Event{Actor: "test", Op: "verify", Outcome: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if evs, _ := ReadAll(dir); len(evs) == 0 || evs[len(evs)-1].Seq != e.Seq {
		t.Errorf("the event after the rename is not in the trail at its path: %+v", e)
	}
	l.Close()
	if _, err := l.Check(); !errors.Is(err, ErrClosed) {
		t.Errorf("check of a closed log: %v, want ErrClosed", err)
	}
}

// An event too long for a line is appended with its largest parameters
// summarized and its outcome cut, never dropped: a restore of 5,000
// --include paths (1.1 MB of arguments) left no event at all (acceptance
// run 3).
func TestAppendShrinksLongEvent(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	paths := make([]string, 50000)
	for i := range paths {
		paths[i] = fmt.Sprintf("srv/data/<%06d>/%s", i, strings.Repeat("p", 24))
	}
	outcome := "failed: " + strings.Repeat("é", 600000) // 1.2 MB, a rune cut in two at the limit
	caller := map[string]any{"paths": paths, "target": "/restore/here", "count": 3}
	e, err := l.Append(Event{Op: "restore", Actor: "test", Params: caller, Outcome: outcome})
	if err != nil {
		t.Fatalf("long event: %v", err)
	}
	if _, ok := caller["paths"].([]string); !ok {
		t.Fatal("the caller's params were changed")
	}
	got, err := ReadAll(dir)
	if err != nil || len(got) != 1 {
		t.Fatalf("read back: %d events, %v", len(got), err)
	}
	r := got[0]
	if r.Hash != e.Hash || r.Op != "restore" || r.Params["target"] != "/restore/here" || fmt.Sprint(r.Params["count"]) != "3" {
		t.Fatalf("event read back: hash %s (appended %s), op %s, target %v, count %v (%T)", r.Hash, e.Hash, r.Op, r.Params["target"], r.Params["count"], r.Params["count"])
	}
	short, ok := r.Params["paths"].(map[string]any)
	if !ok {
		t.Fatalf("paths: %T, want the summary", r.Params["paths"])
	}
	full := jsonOf(paths)
	sum := blake3.Sum256(full)
	if fmt.Sprint(short["items"]) != fmt.Sprint(len(paths)) || fmt.Sprint(short["left_out_bytes"]) != fmt.Sprint(len(full)) ||
		short["blake3"] != "blake3:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("summary %v; want %d items, %d bytes and their hash", short, len(paths), len(full))
	}
	if !bytes.HasPrefix(full, []byte(`["srv/data/<000000>/`)) {
		t.Fatalf("the hashed JSON escapes HTML: %.40s", full)
	}
	if !utf8.ValidString(r.Outcome) || len(r.Outcome) > maxOutcome+200 ||
		!strings.HasPrefix(r.Outcome, "failed: éé") || !strings.Contains(r.Outcome, "more bytes left out") {
		t.Fatalf("outcome (%d bytes) not cut as it should be: …%s", len(r.Outcome), r.Outcome[max(0, len(r.Outcome)-80):])
	}
	if rep := verify(t, dir); !rep.OK() || rep.Events != 1 {
		t.Fatalf("trail after a long event:\n%s", rep)
	}

	// A long outcome is kept whole when summarizing the parameters is enough.
	e, err = l.Append(Event{Op: "backup", Params: map[string]any{"paths": paths}, Outcome: "failed: " + strings.Repeat("x", 200000)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadAll(dir); len(got) != 2 || len(got[1].Outcome) != len("failed: ")+200000 {
		t.Fatalf("second event: %d events, outcome of %d bytes", len(got), len(got[len(got)-1].Outcome))
	}
	// What no summary can shorten (an actor of 2 MB) is still refused, and
	// the trail stays as it was.
	if _, err := l.Append(Event{Op: "x", Actor: strings.Repeat("a", 2<<20)}); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("unshortenable event: %v", err)
	}
	if rep := verify(t, dir); !rep.OK() || rep.Events != 2 {
		t.Fatalf("trail after a refused event:\n%s", rep)
	}
}
