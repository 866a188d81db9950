package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HookRun records one run of a profile hook.
type HookRun struct {
	Kind       string `json:"kind"` // stop, start, smoke
	Command    string `json:"command"`
	ExitCode   int    `json:"exit_code"`
	TimedOut   bool   `json:"timed_out"`
	DurationMS int64  `json:"duration_ms"`
	Output     string `json:"output,omitempty"` // the last 4 KiB of stdout and stderr
}

const hookOutputMax = 4 << 10

// runHook runs a profile hook with sh -c in the live root, with
// SNAPFORGE_ROOT, SNAPFORGE_SNAPSHOT and SNAPFORGE_SCOPE set. A non-zero
// exit, a signal or the timeout is a failure; on timeout (or when ctx ends)
// the hook's whole process group is killed. Output goes to a file rather
// than a pipe, so a start hook that leaves a daemon running returns as soon
// as the hook itself exits.
func runHook(ctx context.Context, kind, command string, timeout time.Duration, root, backupID, scope string, log io.Writer) (HookRun, error) {
	run := HookRun{Kind: kind, Command: command, ExitCode: -1}
	out, err := os.CreateTemp("", "snapforge-hook-*")
	if err != nil {
		return run, fmt.Errorf("%s hook: %w", kind, err)
	}
	os.Remove(out.Name()) // nothing left behind; the descriptor keeps it
	defer out.Close()
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "SNAPFORGE_ROOT="+root, "SNAPFORGE_SNAPSHOT="+backupID, "SNAPFORGE_SCOPE="+scope, "SNAPFORGE_HOOK="+kind)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return run, fmt.Errorf("%s hook %q: %w", kind, command, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var werr error
	select {
	case werr = <-done:
	case <-timer.C:
		run.TimedOut = true
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		werr = <-done
	case <-ctx.Done():
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-done
		werr = ctx.Err()
	}
	run.DurationMS = time.Since(start).Milliseconds()
	run.Output = tail(out)
	if run.Output != "" {
		fmt.Fprintf(log, "%s hook output:\n%s\n", kind, strings.TrimRight(run.Output, "\n"))
	}
	var ee *exec.ExitError
	switch {
	case run.TimedOut:
		return run, fmt.Errorf("%s hook %q did not finish within %s and was killed", kind, command, timeout)
	case errors.Is(werr, context.Canceled), errors.Is(werr, context.DeadlineExceeded):
		return run, fmt.Errorf("%s hook %q: %w", kind, command, werr)
	case errors.As(werr, &ee):
		run.ExitCode = ee.ExitCode()
		if run.ExitCode < 0 {
			return run, fmt.Errorf("%s hook %q was killed by a signal (%v)", kind, command, ee.ProcessState)
		}
		return run, fmt.Errorf("%s hook %q failed with exit code %d%s", kind, command, run.ExitCode, quoteTail(run.Output))
	case werr != nil:
		return run, fmt.Errorf("%s hook %q: %w", kind, command, werr)
	}
	run.ExitCode = 0
	return run, nil
}

func tail(f *os.File) string {
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-hookOutputMax, 0)
	b := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(b, off)
	return string(b[:n])
}

func quoteTail(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	lines := strings.Split(out, "\n")
	return ": " + strings.TrimSpace(lines[len(lines)-1])
}

// holder is a process with a file open.
type holder struct {
	PID  int
	Comm string
}

// openBy finds the processes (other than this one) that hold open one of
// rels (paths below the directory fd root), by scanning /proc/*/fd.
func openBy(root int, rels []string) map[string][]holder {
	want := map[fileKey]string{}
	for _, rel := range rels {
		dir, name := splitRel(rel)
		fd, err := openDirAt(root, dir)
		if err != nil {
			continue
		}
		if st, err := lstatAt(fd, name); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			want[fileKey{st.Dev, st.Ino}] = rel
		}
		unix.Close(fd)
	}
	return holders(want, false)
}

// heldOpen reports whether a process other than this one holds one of
// paths open.
func heldOpen(paths []string) bool {
	want := map[fileKey]string{}
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil {
			want[fileKey{st.Dev, st.Ino}] = p
		}
	}
	return len(holders(want, true)) > 0
}

// fileKey names an inode.
type fileKey struct{ dev, ino uint64 }

// holders scans /proc/*/fd for processes other than this one holding the
// inodes of want open, by want's name; first stops at the first one found.
func holders(want map[fileKey]string, first bool) map[string][]holder {
	out := map[string][]holder{}
	if len(want) == 0 {
		return out
	}
	procs, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		seen := map[string]bool{}
		for _, f := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/proc", p.Name(), "fd", f.Name()), &st) != nil {
				continue
			}
			if name, ok := want[fileKey{st.Dev, st.Ino}]; ok && !seen[name] {
				seen[name] = true
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				out[name] = append(out[name], holder{PID: pid, Comm: strings.TrimSpace(string(comm))})
				if first {
					return out
				}
			}
		}
	}
	return out
}

func describeHolders(hs []holder) string {
	sort.Slice(hs, func(i, j int) bool { return hs[i].PID < hs[j].PID })
	var parts []string
	for _, h := range hs {
		parts = append(parts, fmt.Sprintf("pid %d (%s)", h.PID, h.Comm))
	}
	return strings.Join(parts, ", ")
}

// fuseSuperMagic is statfs's f_type of a FUSE filesystem.
const fuseSuperMagic = 0x65735546
