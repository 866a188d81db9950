package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A readLimit holds the benchmark, and so every process it starts from then
// on, in a control group whose reads from some disks are limited to a rate:
// the disks of the work directory and of the dataset, made as slow as a
// chosen disk.
//
// Why: on a virtual machine "cold" is not cold. Dropping the guest's page
// cache leaves the host's, so a cold read of the dataset runs at 0.4-2.4 GB/s
// from run to run here, and the baselines that targets are measured against
// (a cold read of the repository, ext4 reading a big file) swing with it.
// Under a limit, every tool and every baseline reads from a disk of the same,
// stated speed (issue 3's reference machine read its dataset cold at about
// 230 MB/s) and the comparison repeats.
//
// Only reads are limited. Buffered writes reach the disk from the kernel's
// flusher threads, which no group of ours holds (cgroup v1 cannot limit them
// at all), so they go at the disk's own speed for every tool alike.
type readLimit struct {
	bps     int64
	disks   []disk
	version int    // 1 (blkio) or 2 (io)
	mount   string // of the hierarchy
	dir     string // the group made for the benchmark
	back    string // the group the process came from
}

// disk is a whole disk: limits apply to disks, not to partitions.
type disk struct {
	dev  string // "MAJOR:MINOR"
	name string // "vda"
}

// limitReads moves this process into a new control group whose reads from
// the disks holding dirs are limited to bps bytes a second each. Close
// moves it back and removes the group. It needs root, directories on block
// devices, and the io controller (cgroup v2) or the blkio one (v1).
func limitReads(dirs []string, bps int64) (*readLimit, error) {
	if bps <= 0 {
		return nil, &usageError{"--read-bps must be positive"}
	}
	l := &readLimit{bps: bps}
	for _, dir := range dirs {
		d, err := diskOf(dir)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(l.disks, d) {
			l.disks = append(l.disks, d)
		}
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("--read-bps: %w", err)
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("--read-bps: %w", err)
	}
	m, cur, err := findBlockCgroup(string(mountinfo), string(own), func(dir string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		return string(b)
	})
	if err != nil {
		return nil, err
	}
	l.version, l.mount = m.version, m.mount
	l.back = filepath.Join(m.mount, cur)
	if _, err := os.Stat(filepath.Join(l.back, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("--read-bps: this process's control group is not where /proc/self/cgroup says (%s): %w", l.back, err)
	}
	sweepStaleGroups(m.mount)
	l.dir = filepath.Join(m.mount, fmt.Sprintf("sfbench-%d", os.Getpid()))
	if err := os.Mkdir(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("--read-bps: make a control group: %w (needs root and a writable %s)", err, m.mount)
	}
	fail := func(err error) (*readLimit, error) {
		os.Remove(l.dir)
		return nil, err
	}
	if l.version == 2 {
		// The root group may hold processes and still give its children a controller.
		if err := writeCgroup(filepath.Join(m.mount, "cgroup.subtree_control"), "+io"); err != nil {
			hint := ""
			if errors.Is(err, syscall.EBUSY) {
				hint = " (cgroup v2 will not enable a controller below a group that holds processes: inside a container, run the benchmark on the host)"
			}
			return fail(fmt.Errorf("--read-bps: enable the io controller in %s: %w%s", m.mount, err, hint))
		}
	}
	file := l.ruleFile()
	for _, d := range l.disks {
		if err := writeCgroup(filepath.Join(l.dir, file), l.rule(d)); err != nil {
			return fail(fmt.Errorf("--read-bps: limit reads from %s (%s) with %q in %s: %w", d.name, d.dev, l.rule(d), file, err))
		}
	}
	if err := writeCgroup(filepath.Join(l.dir, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		return fail(fmt.Errorf("--read-bps: move the benchmark into %s: %w", l.dir, err))
	}
	return l, nil
}

func (l *readLimit) ruleFile() string {
	if l.version == 2 {
		return "io.max"
	}
	return "blkio.throttle.read_bps_device"
}

func (l *readLimit) rule(d disk) string {
	if l.version == 2 {
		return fmt.Sprintf("%s rbps=%d", d.dev, l.bps)
	}
	return fmt.Sprintf("%s %d", d.dev, l.bps)
}

// writeCgroup writes s to an existing control file: a missing one (a kernel
// without the controller's file) is ENOENT, not a failed create.
func writeCgroup(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sweepStaleGroups removes the groups left by benchmarks that were killed:
// those whose process is gone (rmdir removes only empty groups anyway).
func sweepStaleGroups(mount string) {
	stale, _ := filepath.Glob(filepath.Join(mount, "sfbench-*"))
	for _, d := range stale {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "sfbench-"))
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
			os.Remove(d)
		}
	}
}

// Close checks that the limit held to the end, moves the process back to
// the group it came from (or to the hierarchy's root when that is gone) and
// removes the benchmark's group.
func (l *readLimit) Close() error {
	if l == nil {
		return nil
	}
	var errs []error
	rules, err := os.ReadFile(filepath.Join(l.dir, l.ruleFile()))
	for _, d := range l.disks {
		if err != nil || !strings.Contains(string(rules), l.rule(d)) {
			errs = append(errs, fmt.Errorf("--read-bps: the limit on %s was no longer in %s at the end (%q, %v): some phases may have run without it", d.name, l.ruleFile(), strings.TrimSpace(string(rules)), err))
		}
	}
	pid := strconv.Itoa(os.Getpid())
	if err := writeCgroup(filepath.Join(l.back, "cgroup.procs"), pid); err != nil {
		if err2 := writeCgroup(filepath.Join(l.mount, "cgroup.procs"), pid); err2 != nil {
			return errors.Join(append(errs, fmt.Errorf("--read-bps: move back to %s (%v) or to %s: %w", l.back, err, l.mount, err2))...)
		}
	}
	if err := os.Remove(l.dir); err != nil {
		errs = append(errs, fmt.Errorf("--read-bps: remove the control group %s: %w (rmdir it when its processes are gone)", l.dir, err))
	}
	return errors.Join(errs...)
}

// String is the report's note.
func (l *readLimit) String() string {
	ctl := "cgroup v1 blkio.throttle.read_bps_device"
	if l.version == 2 {
		ctl = "cgroup v2 io.max rbps"
	}
	var names []string
	for _, d := range l.disks {
		names = append(names, d.name+" "+d.dev)
	}
	return fmt.Sprintf("reads from the disk of the work directory and the dataset (%s) limited to %s/s for the harness and every tool (%s); writes not limited", strings.Join(names, ", "), mb(l.bps), ctl)
}

// diskOf returns the whole disk that holds dir, or that will hold it: a
// path not made yet is looked up by its nearest existing parent.
func diskOf(dir string) (disk, error) {
	var st unix.Stat_t
	p := dir
	for {
		err := unix.Stat(p, &st)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOENT) || filepath.Dir(p) == p {
			return disk{}, fmt.Errorf("--read-bps: %s: %w", dir, err)
		}
		p = filepath.Dir(p)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	sys, err := filepath.EvalSymlinks(filepath.Join("/sys/dev/block", dev))
	if err != nil {
		return disk{}, fmt.Errorf("--read-bps: %s is on device %s, which is not a block device (tmpfs, overlayfs, btrfs subvolume?): put --work and --dir on a disk's file system", dir, dev)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
		b, err := os.ReadFile(filepath.Join(sys, "dev"))
		if err != nil {
			return disk{}, fmt.Errorf("--read-bps: the disk of partition %s: %w", dev, err)
		}
		dev = strings.TrimSpace(string(b))
	}
	return disk{dev: dev, name: filepath.Base(sys)}, nil
}

type cgroupMount struct {
	mount   string // where it is mounted
	root    string // the hierarchy's path mounted there ("/" unless a subtree is bound)
	version int
}

// findBlockCgroup finds, from /proc/self/mountinfo and /proc/self/cgroup,
// the hierarchy that can limit block I/O (v2 when its io controller is
// available, else v1 blkio) and this process's group in it, relative to the
// mount point. controllers returns a v2 mount's cgroup.controllers.
func findBlockCgroup(mountinfo, procCgroup string, controllers func(dir string) string) (cgroupMount, string, error) {
	var v1, v2 cgroupMount
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 {
			continue
		}
		root, mnt := unescapeMount(a[3]), unescapeMount(a[4])
		switch {
		case b[0] == "cgroup2" && v2.mount == "":
			if slices.Contains(strings.Fields(controllers(mnt)), "io") {
				v2 = cgroupMount{mnt, root, 2}
			}
		case b[0] == "cgroup" && v1.mount == "" && slices.Contains(strings.Split(b[2], ","), "blkio"):
			v1 = cgroupMount{mnt, root, 1}
		}
	}
	for _, m := range []cgroupMount{v2, v1} {
		if m.mount == "" {
			continue
		}
		for _, line := range strings.Split(procCgroup, "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			if (m.version == 2 && parts[0] == "0" && parts[1] == "") ||
				(m.version == 1 && slices.Contains(strings.Split(parts[1], ","), "blkio")) {
				rel, ok := relativeGroup(parts[2], m.root)
				if !ok {
					return cgroupMount{}, "", fmt.Errorf("--read-bps: this process's group %s is outside the part of the hierarchy mounted at %s (%s)", parts[2], m.mount, m.root)
				}
				return m, rel, nil
			}
		}
	}
	return cgroupMount{}, "", errors.New("--read-bps: no control group hierarchy with the io (v2) or blkio (v1) controller is mounted")
}

// relativeGroup is group's path below the mounted subtree root.
func relativeGroup(group, root string) (string, bool) {
	if root == "/" || root == "" {
		return group, true
	}
	if group == root {
		return "/", true
	}
	rest, ok := strings.CutPrefix(group, root+"/")
	return "/" + rest, ok
}

// parseRate parses a rate in bytes a second: "250M", "250MB", "250MB/s",
// "1.5G", "512MiB", or a plain number of bytes. K, M, G and T are powers of
// 1000, the report's units; Ki, Mi, Gi, Ti powers of 1024.
func parseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	t = strings.TrimSuffix(t, "B")
	mult := 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"K", 1e3}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = v, u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v*mult >= 1) || v*mult >= math.MaxInt64 { // !(>=) also refuses NaN
		return 0, &usageError{fmt.Sprintf("--read-bps: %q is not a rate (say 250M for 250 MB/s)", s)}
	}
	return int64(v * mult), nil
}

// startReadLimit applies --read-bps (when given) to the disks of dirs and
// says so on progress. stop ends the limit, warning on progress about
// anything that went wrong (the limit lifted during the run); it is a
// no-op without a limit.
func startReadLimit(rate string, progress io.Writer, dirs ...string) (l *readLimit, stop func(), err error) {
	stop = func() {}
	if rate == "" {
		return nil, stop, nil
	}
	bps, err := parseRate(rate)
	if err != nil {
		return nil, stop, err
	}
	var ds []string
	for _, d := range dirs {
		if d != "" {
			ds = append(ds, d)
		}
	}
	if l, err = limitReads(ds, bps); err != nil {
		return nil, stop, err
	}
	fmt.Fprintln(progress, l.String())
	return l, func() {
		if err := l.Close(); err != nil {
			fmt.Fprintf(progress, "warning: %v\n", err)
		}
	}, nil
}
