package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify writes arbitrary bytes as audit.jsonl (and HEAD) and checks
// that Verify and ReadAll never panic, and that whenever Open accepts the
// trail, one more append leaves no unacknowledged problem and no crash
// artefact. FAULTS I1–I7 (FZ).
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	l, err := Open(dir, clock())
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"a", "b\n{\"seq\":9}", "\\x"} {
		if _, err := l.Append(Event{Actor: "fuzz", Op: "backup", Params: map[string]any{"name": name, "n": 1}, Outcome: "ok"}); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	trail, _ := os.ReadFile(filepath.Join(dir, LogFile))
	head, _ := os.ReadFile(filepath.Join(dir, HeadFile))
	f.Add(trail, head)
	f.Add(trail[:len(trail)-7], head)                   // torn
	f.Add(trail[:bytes.IndexByte(trail, '\n')+1], head) // cut
	f.Add(trail, []byte(nil))
	f.Add([]byte{}, []byte(`{"seq":0,"hash":""}`))
	f.Add([]byte(`{,"hash":"}`+"\n"), []byte(nil))
	f.Add([]byte("\n\n\x00"), []byte("{"))

	f.Fuzz(func(t *testing.T, data, head []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, LogFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if len(head) > 0 {
			if err := os.WriteFile(filepath.Join(dir, HeadFile), head, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		r, err := Verify(dir, []Anchor{{Seq: 2, Hash: "x"}, {Seq: 1 << 40}, {}})
		if err != nil {
			t.Fatal(err)
		}
		_ = r.String()
		if _, err := ReadAll(dir); err != nil {
			t.Fatal(err)
		}

		l, err := Open(dir, clock())
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open: %v, want ErrDamaged or success", err)
			}
			return
		}
		defer l.Close()
		if _, err := l.Append(Event{Actor: "fuzz", Op: "check", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
		r, err = Verify(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if un := r.unacknowledged(); len(un) > 0 || r.TornTail || r.StaleHead {
			t.Fatalf("after Open and Append:\n%s", r)
		}
	})
}
