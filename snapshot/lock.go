package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ownerLock is the repository's owner lock: an flock on locks/owner.lock,
// whose content names the holder. The kernel releases it when the holder
// dies, so a kill -9 never leaves the repository locked (FAULTS G6).
type ownerLock struct{ f *os.File }

// LockedError reports a repository held by another process (FAULTS G3).
type LockedError struct {
	Path   string
	Holder string // "pid 123 (snapforge backup)" as written by the holder
}

// Mount reports whether the holder is a `snapforge mount`, which owns the
// repository until it is stopped and serves commands meanwhile.
func (e *LockedError) Mount() bool { return strings.Contains(e.Holder, "snapforge mount") }

func (e *LockedError) Error() string {
	if e.Mount() {
		return fmt.Sprintf("repository in use by %s (lock %s): unmount it first (Ctrl-C where it runs), then try again", e.Holder, e.Path)
	}
	return fmt.Sprintf("repository in use by %s (lock %s): wait for it to finish or stop it", e.Holder, e.Path)
}

func acquireLock(dir, command string) (*ownerLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	name := filepath.Join(dir, "owner.lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			// The holder writes who it is just after it locks: give it a
			// moment, so that a mount that is starting is named as one.
			holder := describeHolder(name)
			for i := 0; i < 20 && holder == unknownHolder; i++ {
				time.Sleep(5 * time.Millisecond)
				holder = describeHolder(name)
			}
			return nil, &LockedError{Path: name, Holder: holder}
		}
		return nil, fmt.Errorf("lock repository %s: %w", name, err)
	}
	if command == "" {
		command = strings.Join(os.Args, " ")
	}
	if len(command) > 200 {
		command = command[:200] + "…"
	}
	b, _ := json.Marshal(lockHolder{PID: os.Getpid(), Command: command, StartedUTC: time.Now().UTC().Format(time.RFC3339)})
	f.Truncate(0)
	f.WriteAt(append(b, '\n'), 0)
	return &ownerLock{f: f}, nil
}

// lockHolder is the content of locks/owner.lock.
type lockHolder struct {
	PID        int    `json:"pid"`
	Command    string `json:"command"`
	StartedUTC string `json:"started_utc"`
}

// unknownHolder is describeHolder's answer for a lock file that does not
// name its holder (yet).
const unknownHolder = "another process"

// describeHolder renders the lock file's content for an error message.
func describeHolder(name string) string {
	b, _ := os.ReadFile(name)
	var h lockHolder
	if json.Unmarshal(b, &h) != nil || h.PID == 0 {
		return unknownHolder
	}
	return fmt.Sprintf("pid %d (%s), since %s", h.PID, h.Command, h.StartedUTC)
}

func (l *ownerLock) release() {
	l.f.Truncate(0)
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}
