package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	for _, bad := range []string{"", "fast", "0", "-5M", "0.5", "1e30G", "M", "12X", "NaN", "NaNM", "Inf", "-Inf"} {
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
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if !strings.Contains(string(mi), " - cgroup") {
		t.Skip("no control group hierarchy is mounted here")
	}
	dir := t.TempDir()
	if _, err := diskOf(dir); err != nil {
		// t.TempDir on tmpfs: the error must say so; then use the package's own disk.
		if !strings.Contains(err.Error(), "not a block device") {
			t.Fatalf("diskOf(%s): %v; want it to say the directory is not on a block device", dir, err)
		}
		if dir, err = os.MkdirTemp(".", ".throttle-test-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if _, err := diskOf(dir); err != nil {
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

	l, err := limitReads([]string{dir, filepath.Join(dir, "not/made/yet")}, 64e6)
	if err != nil && strings.Contains(err.Error(), "no control group hierarchy with the io") {
		t.Skipf("no block I/O controller here: %v", err)
	}
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
	if len(l.disks) != 1 {
		t.Fatalf("disks %v: want the one disk of %s (a path not made yet is on its parent's)", l.disks, dir)
	}
	d := l.disks[0]
	ruleFile, wantRule := "blkio.throttle.read_bps_device", d.dev+" 64000000"
	if l.version == 2 {
		ruleFile, wantRule = "io.max", d.dev+" rbps=64000000"
	}
	rule, err := os.ReadFile(filepath.Join(l.dir, ruleFile))
	if err != nil || !strings.Contains(string(rule), wantRule) {
		t.Fatalf("%s = %q, %v; want it to hold %q", ruleFile, rule, err, wantRule)
	}

	// readCold drops the file's pages, reads it with read and returns how
	// many bytes the group read from the disk meanwhile.
	readCold := func(how string, read func() ([]byte, error)) int64 {
		t.Helper()
		before := groupReadBytes(t, l, d)
		dropPages(t, path)
		got, err := read()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, %v: content differs", how, len(got), err)
		}
		return groupReadBytes(t, l, d) - before
	}
	if n := readCold("read in-process", func() ([]byte, error) { return os.ReadFile(path) }); n < int64(len(data)) {
		t.Fatalf("the group read %d bytes from %s; want at least the file's %d", n, d.name, len(data))
	}
	// A child inherits the group.
	if n := readCold("cat", exec.Command("cat", path).Output); n < int64(len(data)) {
		t.Fatalf("the group read %d bytes from %s while a child read the file; want at least %d", n, d.name, len(data))
	}
	if !strings.Contains(l.String(), "64.0 MB/s") || !strings.Contains(l.String(), d.name) {
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

	// A limit taken away during the run (by hand, by systemd) is reported at
	// Close, which still moves the process back and removes the group.
	l2, err := limitReads([]string{dir}, 64e6)
	if err != nil {
		t.Fatal(err)
	}
	lift := l2.disks[0].dev + " 0" // v1: a rate of 0 removes the rule
	if l2.version == 2 {
		lift = l2.disks[0].dev + " rbps=max"
	}
	if err := writeCgroup(filepath.Join(l2.dir, l2.ruleFile()), lift); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err == nil || !strings.Contains(err.Error(), "no longer") {
		t.Fatalf("Close after the limit was lifted: %v; want an error saying it no longer held", err)
	}
	if after, _ := os.ReadFile("/proc/self/cgroup"); !bytes.Equal(after, before) {
		t.Fatalf("after the second Close /proc/self/cgroup is\n%s\nwant\n%s", after, before)
	}
	if _, err := os.Stat(l2.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the group %s is still there after Close: %v", l2.dir, err)
	}
}

// groupReadBytes is how many bytes l's group has read from disk d so far,
// from its counters (blkio.throttle.io_service_bytes or io.stat).
func groupReadBytes(t *testing.T, l *readLimit, d disk) int64 {
	t.Helper()
	name, key := "blkio.throttle.io_service_bytes", "Read"
	if l.version == 2 {
		name, key = "io.stat", "rbytes"
	}
	b, err := os.ReadFile(filepath.Join(l.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != d.dev {
			continue
		}
		for i, f := range fields[1:] { // v1: "254:0 Read 4096"; v2: "254:0 rbytes=4096 wbytes=0 …"
			v, ok := strings.CutPrefix(f, key+"=")
			if l.version == 1 && f == key && i+2 < len(fields) {
				v, ok = fields[i+2], true
			}
			if ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("%s: %q: %v", name, line, err)
				}
				return n
			}
		}
	}
	return 0 // nothing read from the disk yet
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
	_, err := diskOf("/dev/shm")
	if err == nil || !strings.Contains(err.Error(), "not a block device") || !strings.Contains(err.Error(), "/dev/shm") {
		t.Fatalf("diskOf(/dev/shm) = %v; want an error naming it and saying it is not on a block device", err)
	}
}

func TestFindBlockCgroup(t *testing.T) {
	const (
		v1 = `25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 25 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 25 0:28 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
33 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
		v1Bound = `412 400 0:28 /docker/abc /sys/fs/cgroup/blkio ro,nosuid - cgroup cgroup rw,blkio,net_cls
`
		v2 = `30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
`
		v2Space = `30 25 0:26 / /mnt/cg\040two rw - cgroup2 none rw
`
	)
	ctl := func(m map[string]string) func(string) string { return func(d string) string { return m[d] } }
	for _, c := range []struct {
		name, mountinfo, cgroup string
		ctl                     map[string]string
		mount, rel              string
		version                 int
		err                     string
	}{
		{"hybrid: v2 without io, v1 blkio", v1, "7:blkio:/\n1:cpu:/\n0::/user.slice\n", map[string]string{"/sys/fs/cgroup/unified": ""}, "/sys/fs/cgroup/blkio", "/", 1, ""},
		{"hybrid, in a group", v1, "7:blkio:/system.slice/x.service\n0::/\n", nil, "/sys/fs/cgroup/blkio", "/system.slice/x.service", 1, ""},
		{"v1 subtree bound (container)", v1Bound, "5:net_cls,blkio:/docker/abc\n", nil, "/sys/fs/cgroup/blkio", "/", 1, ""},
		{"v1 subtree bound, deeper", v1Bound, "5:net_cls,blkio:/docker/abc/inner\n", nil, "/sys/fs/cgroup/blkio", "/inner", 1, ""},
		{"v1 group outside the bound subtree", v1Bound, "5:blkio:/other\n", nil, "", "", 0, "outside"},
		{"v2 with io", v2, "0::/user.slice/session-1.scope\n", map[string]string{"/sys/fs/cgroup": "cpuset cpu io memory pids"}, "/sys/fs/cgroup", "/user.slice/session-1.scope", 2, ""},
		{"v2 mounted at a path with a space", v2Space, "0::/\n", map[string]string{"/mnt/cg two": "io"}, "/mnt/cg two", "/", 2, ""},
		{"v2 without io, no v1", v2, "0::/\n", map[string]string{"/sys/fs/cgroup": "cpu memory"}, "", "", 0, "no control group hierarchy"},
		{"nothing mounted", "", "0::/\n", nil, "", "", 0, "no control group hierarchy"},
	} {
		m, rel, err := findBlockCgroup(c.mountinfo, c.cgroup, ctl(c.ctl))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one saying %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || m.mount != c.mount || rel != c.rel || m.version != c.version {
			t.Errorf("%s: %+v %q %v; want mount %s, group %s, v%d", c.name, m, rel, err, c.mount, c.rel, c.version)
		}
	}
}
