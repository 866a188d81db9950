package audit

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"
)

const crashChildEnv = "SNAPFORGE_AUDIT_CRASH_CHILD" // the trail directory the child appends to

// TestCrashChild is the child of TestKilledMidAppend: it appends until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("child process of TestKilledMidAppend")
	}
	l, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := l.Append(Event{Actor: "child", Op: "backup", Params: map[string]any{"pad": "0123456789abcdef"}, Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
}

// FAULTS B7: SIGKILL a process in the middle of appending, several times.
// Every time, Verify finds no problem (at most a torn tail or a stale HEAD),
// and Open recovers so that the trail verifies clean.
func TestKilledMidAppend(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	for round := range 4 {
		start := uint64(0)
		if h, err := ReadHead(dir); err == nil {
			start = h.Seq
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the child is appending, then kill it at a random moment.
		deadline := time.Now().Add(time.Minute)
		for {
			if h, err := ReadHead(dir); err == nil && h.Seq >= start+3 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: the child did not append", round)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		r := verify(t, dir)
		if !r.OK() {
			t.Fatalf("round %d, after SIGKILL:\n%s", round, r)
		}
		t.Logf("round %d: %d events, torn tail %v, stale HEAD %v", round, r.Events, r.TornTail, r.StaleHead)
		l, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("round %d: Open after SIGKILL: %v", round, err)
		}
		l.Close()
		if r := verify(t, dir); !r.OK() || r.TornTail || r.StaleHead {
			t.Fatalf("round %d, after Open:\n%s", round, r)
		}
	}
}
