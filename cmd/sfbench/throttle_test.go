package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"250M", 250e6}, {"250MB", 250e6}, {"250MB/s", 250e6}, {"1.5G", 1.5e9}, {"512MiB", 512 << 20},
		{"64Ki", 64 << 10}, {"800k", 800e3}, {"1000000", 1e6}, {" 2G ", 2e9},
	} {
		got, err := parseRate(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "fast", "0", "-5M", "0.5", "1e30G", "M", "12X"} {
		_, err := parseRate(bad)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--read-bps") {
			t.Errorf("parseRate(%q) = %v; want a usage error naming --read-bps", bad, err)
		}
	}
}

// TestReadLimit moves the test process into a limited group, reads a file
// whose pages were dropped, in-process and through a child, and checks that
// the group's counters saw those reads from the disk, then that Close puts
// the process back and removes the group.
func TestReadLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes a control group and moves the test process into it")
	}
	if _, _, err := findBlockCgroup(); err != nil {
		t.Skipf("no block I/O controller here: %v", err)
	}
	dir := t.TempDir()
	if _, _, err := diskOf(dir); err != nil {
		// t.TempDir on tmpfs: the error must say so; then use the package's own disk.
		if !strings.Contains(err.Error(), "not a block device") {
			t.Fatalf("diskOf(%s): %v; want it to say the directory is not on a block device", dir, err)
		}
		if dir, err = os.MkdirTemp(".", ".throttle-test-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if _, _, err := diskOf(dir); err != nil {
			t.Skipf("neither the temporary directory nor the package directory is on a block device: %v", err)
		}
	}
	data := make([]byte, 4<<20)
	rand.Read(data)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}

	l, err := limitReads(dir, 64e6)
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EOPNOTSUPP) {
		t.Skipf("control groups cannot be made or limited here (a container?): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	inside, _ := os.ReadFile("/proc/self/cgroup")
	if !strings.Contains(string(inside), "/"+filepath.Base(l.dir)+"\n") {
		t.Fatalf("/proc/self/cgroup does not name %s:\n%s", l.dir, inside)
	}
	ruleFile, wantRule := "blkio.throttle.read_bps_device", l.dev+" 64000000"
	if l.version == 2 {
		ruleFile, wantRule = "io.max", l.dev+" rbps=64000000"
	}
	rule, err := os.ReadFile(filepath.Join(l.dir, ruleFile))
	if err != nil || !strings.Contains(string(rule), wantRule) {
		t.Fatalf("%s = %q, %v; want it to hold %q", ruleFile, rule, err, wantRule)
	}

	start, err := l.readBytes()
	if err != nil {
		t.Fatal(err)
	}
	dropPages(t, path)
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v: content differs", len(got), err)
	}
	mid, err := l.readBytes()
	if err != nil {
		t.Fatal(err)
	}
	if mid-start < int64(len(data)) {
		t.Fatalf("the group read %d bytes from %s; want at least the file's %d", mid-start, l.disk, len(data))
	}
	dropPages(t, path)
	out, err := exec.Command("cat", path).Output() // a child inherits the group
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("cat: %d bytes, %v: content differs", len(out), err)
	}
	end, err := l.readBytes()
	if err != nil {
		t.Fatal(err)
	}
	if end-mid < int64(len(data)) {
		t.Fatalf("the group read %d bytes from %s while a child read the file; want at least %d", end-mid, l.disk, len(data))
	}
	if !strings.Contains(l.String(), "64.0 MB/s") || !strings.Contains(l.String(), l.disk) {
		t.Errorf("note %q does not give the rate and the disk", l.String())
	}

	closed = true
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile("/proc/self/cgroup")
	if !bytes.Equal(after, before) {
		t.Fatalf("after Close /proc/self/cgroup is\n%s\nwant, as before,\n%s", after, before)
	}
	if _, err := os.Stat(l.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the group %s is still there after Close: %v", l.dir, err)
	}
}

// dropPages writes back and drops path's pages from the page cache, so the
// next read goes to the disk.
func dropPages(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

func TestReadLimitRefusesTmpfs(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm here")
	}
	_, _, err := diskOf("/dev/shm")
	if err == nil || !strings.Contains(err.Error(), "not a block device") || !strings.Contains(err.Error(), "/dev/shm") {
		t.Fatalf("diskOf(/dev/shm) = %v; want an error naming it and saying it is not on a block device", err)
	}
}
