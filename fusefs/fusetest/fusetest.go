// Package fusetest holds helpers for tests that mount a real FUSE file
// system (package fusefs and the mount command).
package fusetest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"snapforge/snapshot"
)

// RequireFUSE skips a test that needs a real mount where FUSE is missing:
// no /dev/fuse, or not root and no fusermount3 (Debian's fuse3).
func RequireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("skipping a real FUSE mount test: /dev/fuse is not available here (%v)", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Skip("skipping a real FUSE mount test: not root and fusermount3 (Debian's fuse3) is not installed")
		}
	}
}

// MountOptions returns the options the mount table lists for dir, or nil
// when nothing is mounted there.
func MountOptions(dir string) map[string]bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && snapshot.UnescapeMount(f[1]) == dir {
			out := map[string]bool{}
			for _, o := range strings.Split(f[3], ",") {
				out[o] = true
			}
			return out
		}
	}
	return nil
}

// Mounted reports whether something is mounted at dir.
func Mounted(dir string) bool { return MountOptions(dir) != nil }
