package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reseal rewrites lines[from:] as an attacker who recomputes every hash
// would, and returns the new last head.
func reseal(t *testing.T, ls [][]byte, from int) Head {
	t.Helper()
	prev := ""
	if from > 0 {
		e, _, err := parseLine(bytes.TrimSuffix(ls[from-1], []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	var h Head
	for i := from; i < len(ls); i++ {
		e, _, err := parseLine(bytes.TrimSuffix(ls[i], []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		e.Prev = prev
		line, hash, err := encodeLine(e)
		if err != nil {
			t.Fatal(err)
		}
		ls[i], prev, h = line, hash, Head{e.Seq, hash}
	}
	return h
}

// FAULTS I1
func TestTamperEditMiddleLine(t *testing.T) {
	dir, _ := newTrail(t, 9)
	ls := lines(t, dir)
	ls[4] = bytes.Replace(ls[4], []byte(`"outcome":"ok"`), []byte(`"outcome":"failed: x"`), 1)
	writeLines(t, dir, ls)
	r := verify(t, dir)
	wantProblems(t, r, Problem{Seq: 5, Line: 5, Kind: KindHashMismatch})
	if !strings.Contains(r.Problems[0].String(), "hash mismatch at seq 5") {
		t.Errorf("message: %s", r.Problems[0])
	}
}

// FAULTS I2
func TestTamperDeleteMiddleLine(t *testing.T) {
	dir, _ := newTrail(t, 9)
	ls := lines(t, dir)
	writeLines(t, dir, append(ls[:4:4], ls[5:]...)) // seq 5 gone
	r := verify(t, dir)
	wantProblems(t, r, Problem{Seq: 6, Line: 5, Kind: KindSeqGap})
	if !strings.Contains(r.Problems[0].Detail, "seq 5 missing") {
		t.Errorf("detail: %s", r.Problems[0])
	}

	// Deleting a line and renumbering the rest by hand still breaks the chain.
	dir, _ = newTrail(t, 3)
	ls = lines(t, dir)
	ls[2] = bytes.Replace(ls[2], []byte(`"seq":3`), []byte(`"seq":2`), 1)
	writeLines(t, dir, [][]byte{ls[0], ls[2]})
	writeHeadFile(t, dir, Head{})
	r = verify(t, dir)
	if r.OK() || r.Problems[0].Kind != KindHashMismatch {
		t.Fatalf("renumbered:\n%s", r)
	}
}

// FAULTS I3
func TestTamperReorderAndDuplicate(t *testing.T) {
	dir, _ := newTrail(t, 8)
	ls := lines(t, dir)
	ls[3], ls[4] = ls[4], ls[3] // seq 5 before seq 4
	writeLines(t, dir, ls)
	r := verify(t, dir)
	if r.OK() || r.Problems[0].Line != 4 || r.Problems[0].Kind != KindSeqGap {
		t.Fatalf("reorder:\n%s", r)
	}
	if !hasKind(r, KindReorder) {
		t.Fatalf("reorder not named:\n%s", r)
	}

	dir, _ = newTrail(t, 8)
	ls = lines(t, dir)
	writeLines(t, dir, append(ls[:5:5], ls[4:]...)) // seq 5 twice
	wantProblems(t, verify(t, dir), Problem{Seq: 5, Line: 6, Kind: KindDuplicate})

	dir, _ = newTrail(t, 8)
	ls = lines(t, dir)
	writeLines(t, dir, append(ls, ls[7])) // the last line twice: HEAD still matches
	wantProblems(t, verify(t, dir), Problem{Seq: 8, Line: 9, Kind: KindDuplicate})
}

func hasKind(r Report, kind string) bool {
	for _, p := range r.Problems {
		if p.Kind == kind {
			return true
		}
	}
	return false
}

// FAULTS I4
func TestTamperTruncateTail(t *testing.T) {
	const n, k = 10, 3
	setup := func(t *testing.T) (string, Anchor) {
		dir, evs := newTrail(t, n)
		writeLines(t, dir, lines(t, dir)[:n-k])
		return dir, Head{n, evs[n-1].Hash}.Anchor("snapshot 3f2a")
	}
	t.Run("HEAD left as is", func(t *testing.T) {
		dir, _ := setup(t)
		r := verify(t, dir)
		wantProblems(t, r, Problem{Seq: n, Kind: KindHeadMismatch})
		if !strings.Contains(r.Problems[0].Detail, "the tail was cut") {
			t.Errorf("detail: %s", r.Problems[0])
		}
	})
	t.Run("HEAD rewritten", func(t *testing.T) {
		dir, anchor := setup(t)
		ls := lines(t, dir)
		e, _, err := parseLine(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		writeHeadFile(t, dir, Head{e.Seq, e.Hash})
		if r := verify(t, dir); !r.OK() {
			t.Fatalf("without anchors, a cut tail with a rewritten HEAD should pass (documented limit):\n%s", r)
		}
		r := verify(t, dir, anchor)
		wantProblems(t, r, Problem{Seq: n, Kind: KindCutTail})
		if !strings.Contains(r.Problems[0].Detail, "snapshot 3f2a") {
			t.Errorf("detail does not name the anchor: %s", r.Problems[0])
		}
		// An anchor inside the remaining trail is satisfied.
		if r := verify(t, dir, Anchor{Seq: 2, Hash: lineHash(t, ls[1]), Source: "old"}); !r.OK() {
			t.Fatalf("anchor at seq 2:\n%s", r)
		}
	})
}

func lineHash(t *testing.T, line []byte) string {
	t.Helper()
	e, _, err := parseLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	return e.Hash
}

// FAULTS I5: a consistent rewrite is undetectable without anchors (the
// documented limit of an unkeyed chain) and detected with one.
func TestTamperConsistentRewrite(t *testing.T) {
	dir, evs := newTrail(t, 8)
	ls := lines(t, dir)
	ls[2] = bytes.Replace(ls[2], []byte(`"outcome":"ok"`), []byte(`"outcome":"failed: covered up"`), 1)
	writeHeadFile(t, dir, reseal(t, ls, 2))
	writeLines(t, dir, ls)
	if r := verify(t, dir); !r.OK() {
		t.Fatalf("a consistent rewrite was detected without anchors; update the package doc:\n%s", r)
	}
	before := Head{2, evs[1].Hash}.Anchor("snapshot a") // before the edit: still matches
	after := Head{6, evs[5].Hash}.Anchor("snapshot b")  // after it: caught
	wantProblems(t, verify(t, dir, before, after), Problem{Seq: 6, Kind: KindAnchorMismatch})
}

// FAULTS I6, D6: a value that looks like a line stays inside its string.
func TestInjectedLine(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	evil := "evil\n{\"seq\":99,\"op\":\"forged\"}\r\n\u2028<script>"
	bad := Escape([]byte("inv\xff\xfe\nalid"))
	for _, name := range []string{evil, bad} {
		if _, err := l.Append(Event{Actor: "test", Op: "backup", Params: map[string]any{"name": name}, Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("\n")); n != 2 {
		t.Fatalf("%d lines for 2 events:\n%s", n, raw)
	}
	if !bytes.Contains(raw, []byte("<script>")) || bytes.Contains(raw, []byte(`\u003c`)) {
		t.Errorf("HTML escaping should be off:\n%s", raw)
	}
	if r := verify(t, dir); !r.OK() || r.Events != 2 {
		t.Fatalf("verify:\n%s", r)
	}
	evs, err := ReadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Params["name"] != evil || evs[1].Params["name"] != bad {
		t.Fatalf("ReadAll: %+v", evs)
	}
}

// FAULTS I7, B7: a torn last line is a crash, not tampering; Open repairs it.
func TestTornTail(t *testing.T) {
	dir, evs := newTrail(t, 5)
	line, _, err := encodeLine(Event{Seq: 6, Time: evs[4].Time, Actor: "test", Op: "backup", Outcome: "ok", Prev: evs[4].Hash})
	if err != nil {
		t.Fatal(err)
	}
	half := line[:len(line)/2]
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(half); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r := verify(t, dir)
	if !r.OK() || !r.TornTail || r.TornBytes != int64(len(half)) || r.Events != 5 || r.Head.Seq != 5 {
		t.Fatalf("torn tail:\n%s", r)
	}
	if !strings.Contains(r.String(), "incomplete trailing record (torn tail) at seq 6") {
		t.Errorf("message:\n%s", r)
	}
	if evs, err := ReadAll(dir); err != nil || len(evs) != 5 {
		t.Fatalf("ReadAll of a torn trail: %d events, %v", len(evs), err)
	}

	l, err := Open(dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	r = verify(t, dir)
	if !r.OK() || r.TornTail || r.Events != 6 {
		t.Fatalf("after repair:\n%s", r)
	}
	got, err := ReadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := got[5]
	if rec.Op != OpRecoveredTornTail || rec.Prev != evs[4].Hash ||
		rec.Params["removed_bytes"] != jsonInt(len(half)) ||
		rec.Params["removed_start"] != Escape(half) || rec.Params["at_seq"] != jsonInt(6) {
		t.Fatalf("recovery event: %+v", rec)
	}
}

func jsonInt(n int) json.Number {
	b, _ := json.Marshal(n)
	return json.Number(b)
}

// FAULTS I1, I7: a torn tail is never taken for tampering, and an unparsable
// complete last line is never taken for a torn tail.
func TestUnparsableLastLine(t *testing.T) {
	dir, _ := newTrail(t, 3)
	ls := lines(t, dir)
	writeLines(t, dir, append(ls, []byte("{\"seq\":4,garbage\n")))
	r := verify(t, dir)
	wantProblems(t, r, Problem{Line: 4, Kind: KindUnparsable})
	if r.TornTail {
		t.Fatal("a complete line reported as torn")
	}
}
