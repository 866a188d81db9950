package main

// Crash, kill, signal and lock tests of the snapforge process (FAULTS B1,
// B8, G3, G6). The crash points are the ones the engine calls
// Options.Hook with; $SNAPFORGE_CRASHPOINT makes the CLI SIGKILL itself there
// (see crashHook in wire.go).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"snapforge/index/indextest"
)

// packFiles returns the pack files in repo.
func packFiles(t testing.TB, repo string) []string {
	t.Helper()
	p, err := filepath.Glob(filepath.Join(repo, "packs", "*", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// afterCrash checks the invariants that must hold whatever moment a backup
// died at, and returns the snapshots now listed: the ones before plus at most
// the one the killed backup committed (then complete), never a partial one.
// want is the source tree the killed backup was reading.
func afterCrash(t *testing.T, r *repoCLI, before []string, want map[string]indextest.Entry) []snapRow {
	t.Helper()
	rows := r.snapshots()
	ids := snapIDs(rows)
	switch {
	case slices.Equal(ids, before):
	case len(ids) == len(before)+1 && slices.Equal(ids[:len(before)], before):
		// The kill came after the commit point: the snapshot must be whole.
		if rows[len(rows)-1].Partial || rows[len(rows)-1].Damaged != "" {
			t.Fatalf("committed snapshot after the kill: %+v", rows[len(rows)-1])
		}
		r.restoreCompare(ids[len(ids)-1], want)
	default:
		t.Fatalf("snapshots after the kill: %v, before: %v", ids, before)
	}
	// `snapshots` opened the repository, so startup recovery ran: no
	// temporary pack is left behind.
	if tmp := indextest.Names(t, filepath.Join(r.dir, "tmp")); len(tmp) != 0 {
		t.Errorf("repo tmp/ not cleaned by startup recovery: %v", tmp)
	}
	v := r.ok("verify", "--read-data")
	if strings.Contains(v.stdout, "DAMAGED") || strings.Contains(v.stdout, "orphan") {
		t.Errorf("verify after the kill: %v", v)
	}
	return rows
}

// TestCrashPoints: FAULTS B1 at every named crash point. Each point starts
// from the repository the previous one left (its recovery backup is the next
// point's "first" snapshot).
func TestCrashPoints(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	for i := range 4 {
		indextest.WriteFile(t, filepath.Join(src, fmt.Sprintf("base/%d.bin", i)), indextest.RandomBytes(uint64(100+i), 1<<20))
	}
	indextest.WriteFile(t, filepath.Join(src, "notes.txt"), []byte("version 0\n"))
	latest := r.backup(src).BackupID

	const mutated = 3 << 20 // new bytes each point adds
	points := []struct {
		name string
		// the written pack survives the crash, so the next backup dedups
		dedup bool
		// the crash is after the commit point: the snapshot is visible
		committed bool
	}{
		{"chunking", false, false},
		{"pack-temp-written", false, false},
		{"pack-synced", false, false},
		{"pack-renamed", true, false},
		{"index-committed", true, false},
		{"manifest-committed", true, true},
	}
	for i, p := range points {
		ok := t.Run(p.name, func(t *testing.T) {
			r := &repoCLI{t: t, dir: r.dir}
			before := snapIDs(r.snapshots())
			if before[len(before)-1] != latest {
				t.Fatalf("latest snapshot is %s, want %s", before[len(before)-1], latest)
			}
			indextest.WriteFile(t, filepath.Join(src, fmt.Sprintf("new/%d.bin", i)), indextest.RandomBytes(uint64(200+i), mutated))
			indextest.WriteFile(t, filepath.Join(src, "notes.txt"), []byte(fmt.Sprintf("version %d, crash at %s\n", i+1, p.name)))
			want := indextest.Digest(t, src, nil)
			packsBefore := len(packFiles(t, r.dir))

			res := runCLI(t, cliOpts{env: []string{"SNAPFORGE_CRASHPOINT=" + p.name}}, "--repo", r.dir, "backup", src, "--json")
			if res.signal != syscall.SIGKILL {
				t.Fatalf("backup with crash point %s did not die by SIGKILL: %v", p.name, res)
			}
			if res.stdout != "" {
				t.Errorf("killed backup printed a summary: %v", res)
			}
			if p.name == "pack-temp-written" || p.name == "pack-synced" {
				if tmp := indextest.Names(t, filepath.Join(r.dir, "tmp")); len(tmp) == 0 {
					t.Errorf("crash at %s should leave the temp pack for recovery to clean", p.name)
				}
			}
			// A crash at pack-renamed leaves the first pack renamed (the data
			// pack); once the index is committed both the data pack and the
			// tree pack are in place.
			wantPacks := packsBefore + boolInt(p.dedup)
			if p.name == "index-committed" || p.name == "manifest-committed" {
				wantPacks = packsBefore + 2
			}
			if got := len(packFiles(t, r.dir)); got != wantPacks {
				t.Errorf("crash at %s: %d packs, had %d, want %d", p.name, got, packsBefore, wantPacks)
			}

			rows := afterCrash(t, r, before, want)
			if p.committed != (len(rows) == len(before)+1) {
				t.Fatalf("crash at %s: snapshot visible = %v, want %v", p.name, len(rows) == len(before)+1, p.committed)
			}

			next := r.backup(src)
			if p.dedup {
				// What the killed backup wrote is reused, not stored again.
				if next.NewBytes >= 1<<20 {
					t.Errorf("backup after a crash at %s stored %d new bytes; the %d bytes written before the crash should be reused", p.name, next.NewBytes, mutated)
				}
			} else if next.NewBytes < mutated {
				t.Errorf("backup after a crash at %s stored only %d new bytes of %d that were never committed", p.name, next.NewBytes, mutated)
			}
			latest = next.BackupID
			r.restoreCompare(next.BackupID, want)
		})
		if !ok {
			break // the next point starts from this one's state
		}
	}
	if ids := snapIDs(r.snapshots()); ids[len(ids)-1] != latest {
		t.Errorf("latest snapshot is %s, want %s", ids[len(ids)-1], latest)
	}
	if av := r.ok("audit", "verify"); !strings.Contains(av.stdout, "audit trail intact") {
		t.Errorf("audit verify after the crashes: %v", av)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRandomKills: FAULTS B1, kill -9 at random moments of a backup of a
// ~64 MiB source. Each round rewrites one 8 MiB file, so the killed backup
// has new data to chunk, pack and commit. (Early kills land in Badger's own
// open, which once left an empty memtable file that Badger refused to reopen;
// see removeEmptyLogs in package index.)
func TestRandomKills(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	const files, size = 8, 8 << 20
	for i := range files {
		indextest.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%d.bin", i)), indextest.RandomBytes(uint64(i), size))
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill delays seeded with %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	// Kills come after a random delay of up to 1.5 s, or up to a little more
	// than an uninterrupted backup of the same work took (measured each
	// round), whichever is shorter: so that they spread over all phases
	// whether the binary is fast or slowed down by -race.
	window := 1500 * time.Millisecond
	killed := 0
	before := []string{r.backup(src).BackupID}
	for round := range 8 {
		indextest.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%d.bin", round%files)), indextest.RandomBytes(uint64(1000+round), size))
		want := indextest.Digest(t, src, nil)
		packsBefore := len(packFiles(t, r.dir))

		delay := time.Duration(rng.Int64N(int64(window)))
		p := startCLI(t, cliOpts{}, "--repo", r.dir, "backup", src, "--json")
		time.Sleep(delay)
		p.cmd.Process.Signal(syscall.SIGKILL) // fails harmlessly when it already finished
		res := p.wait(t)
		used := window
		if res.signal == 0 && res.code != 0 {
			t.Fatalf("round %d: backup failed on its own: %v", round, res)
		}
		if res.signal != 0 {
			killed++
		} else {
			window = min(1500*time.Millisecond, p.end.Sub(p.begin)*5/4)
		}
		t.Logf("round %d: kill after %v (window %v): %s", round, delay.Round(time.Millisecond), used.Round(time.Millisecond), map[bool]string{true: "killed", false: "had finished"}[res.signal != 0])

		rows := afterCrash(t, r, before, want)
		renamed := len(packFiles(t, r.dir)) > packsBefore
		start := time.Now()
		next := r.backup(src)
		if !renamed {
			// It redid all the killed backup's work: the size of the next window.
			window = min(1500*time.Millisecond, time.Since(start)*5/4)
		}
		switch {
		case renamed && next.NewBytes >= 1<<20:
			t.Errorf("round %d: a pack survived the kill, yet the next backup stored %d new bytes", round, next.NewBytes)
		case !renamed && next.NewBytes < size:
			t.Errorf("round %d: no pack survived the kill, yet the next backup stored only %d new bytes", round, next.NewBytes)
		}
		r.restoreCompare(next.BackupID, want)
		before = append(snapIDs(rows), next.BackupID)
	}
	t.Logf("%d of 8 backups killed before they finished", killed)
}

// TestSIGTERMDuringBackup: FAULTS B8. SIGTERM cancels the backup: exit 1,
// "interrupted", nothing committed, the repository verifies and the next
// backup succeeds.
func TestSIGTERMDuringBackup(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	for i := range 8 {
		indextest.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%d.bin", i)), indextest.RandomBytes(uint64(50+i), 8<<20))
	}
	want := indextest.Digest(t, src, nil)
	p := startCLI(t, cliOpts{}, "--repo", r.dir, "backup", src)
	// Wait until the backup is writing its first pack (so the signal handler
	// is installed and work is under way), then interrupt it.
	for {
		if m, _ := filepath.Glob(filepath.Join(r.dir, "tmp", "pack-*.tmp")); len(m) > 0 {
			break
		}
		if p.exited() {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p.exited() {
		t.Fatalf("the backup ended before it could be interrupted: %v", p.wait(t))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal: %v", err)
	}
	res := p.wait(t)
	expectCode(t, res, exitError)
	if !strings.Contains(res.stderr, "interrupted") {
		t.Errorf("stderr does not say interrupted: %v", res)
	}
	if rows := r.snapshots(); len(rows) != 0 {
		t.Fatalf("an interrupted backup committed %v", snapIDs(rows))
	}
	if tmp := indextest.Names(t, filepath.Join(r.dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ after an interrupted backup and a reopen: %v", tmp)
	}
	r.ok("verify", "--read-data")
	s := r.backup(src)
	if s.Files != 8 || s.Bytes != 64<<20 {
		t.Errorf("backup after the interruption: %+v", s)
	}
	r.restoreCompare("latest", want)
	var evs []struct {
		Op      string `json:"op"`
		Outcome string `json:"outcome"`
	}
	if err := json.Unmarshal([]byte(r.ok("audit", "--json").stdout), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) < 2 || evs[1].Op != "backup" || evs[1].Outcome != "interrupted (cancelled before it finished)" {
		t.Errorf("audit should record the backup as interrupted: %+v", evs)
	}
}

// TestRepositoryInUse: FAULTS G3 and G6. While another process holds the
// repository, commands fail fast naming its pid; once that holder is killed
// with SIGKILL, the kernel releases the lock and the next command proceeds.
func TestRepositoryInUse(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("a\n"))
	r.backup(src)

	holder, kill := startHolder(t, r.dir)

	want := fmt.Sprintf("in use by pid %d", holder.Process.Pid)
	for _, args := range [][]string{{"snapshots"}, {"backup", src}, {"verify"}, {"repair", "index"}} {
		res := r.expect(exitError, args...)
		if !strings.Contains(res.stderr, want) {
			t.Errorf("%v while held: stderr lacks %q: %v", args, want, res)
		}
	}

	kill()
	if ws := holder.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("holder ended with %v", holder.ProcessState)
	}
	if rows := r.snapshots(); len(rows) != 1 {
		t.Fatalf("snapshots after the holder died: %+v", rows)
	}
	s := r.backup(src)
	if s.Partial || s.Files != 1 {
		t.Errorf("backup after the holder died: %+v", s)
	}
}

// startHolder starts a process that holds repo open as a command does
// (envTestHold) and returns once it says so. kill ends it with SIGKILL and
// waits for it (once; the test's cleanup calls it too).
func startHolder(t *testing.T, repo string) (holder *exec.Cmd, kill func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	holder = exec.Command(exe)
	holder.Env = append(cliEnv(), envTestHold+"=1", "SNAPFORGE_REPO="+repo)
	var herr strings.Builder
	holder.Stderr = &herr
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			holder.Process.Signal(syscall.SIGKILL)
			holder.Wait()
		})
	}
	t.Cleanup(kill)
	if line := readLine(t, bufio.NewReader(out)); line != "holding" {
		t.Fatalf("holder said %q; stderr: %s", line, herr.String())
	}
	return holder, kill
}
