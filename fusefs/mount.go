package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"snapforge/snapshot"
)

var readme = []byte(`This folder is snapforge's read-only view of your backups.

  snapshots/<date and time>/   one folder per snapshot (local time), oldest first
  latest                       the newest snapshot (safety snapshots taken before an in-place restore aside)
  by-id/<backup id>/           the same snapshots, by their id
  by-unit/<unit>/<date>/       only that unit's files (config, db, …), per snapshot
  history/<path>/<date>        every version of a file, named by the snapshot
                               where it first appeared

Nothing here can be changed or deleted: the folders are a window onto the
repository, not copies. Every byte read is checked against its BLAKE3 hash;
a damaged file reads as an I/O error (and is recorded in the audit trail)
while all others stay readable. b3sum of a file here prints the hash in the
snapshot's manifest (snapforge manifest SNAP).

To restore a file or folder, copy it out: drag it to your desktop, or
  cp -a snapshots/<date>/path/to/file ~/restored/
To restore many files, or in place with verification and rollback, use
  snapforge restore SNAP --target DIR
`)

// Mount is a mounted file system.
type Mount struct {
	Dir    string // where it was mounted; Unmount updates it if it moved
	dev    uint64 // the mount's device number: finds it wherever it went
	fs     *FS
	server *fuse.Server
	raw    *dirlessFS
	stop   chan struct{}
	halt   sync.Once // closes stop
	done   sync.WaitGroup
}

// MountpointError reports a mountpoint that cannot be used.
type MountpointError struct {
	Dir    string
	Reason string
}

func (e *MountpointError) Error() string { return fmt.Sprintf("mountpoint %s: %s", e.Dir, e.Reason) }

// PrepareMountpoint checks dir before mounting (CheckMountpoint). A dead
// mount left by a killed process ("transport endpoint is not connected")
// is unmounted first; the returned note says so.
func PrepareMountpoint(dir, repo string, sources []string) (note string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", &MountpointError{dir, err.Error()}
	}
	if deadMount(abs) {
		if err := forceUnmount(abs); err != nil {
			return "", &MountpointError{abs, fmt.Sprintf("a dead mount left by a stopped snapforge is in the way and could not be removed (%v); run `fusermount3 -uz %s` and try again", err, abs)}
		}
		note = fmt.Sprintf("removed a dead mount left at %s by a process that was killed", abs)
	}
	return note, checkMountpoint(abs, repo, sources)
}

// deadMount reports whether a dead FUSE mount sits at abs. statfs always
// reaches the file system (a stat may be answered from the kernel's
// cache), so a dead one shows as ENOTCONN here.
func deadMount(abs string) bool {
	var sfs unix.Statfs_t
	err := unix.Statfs(abs, &sfs)
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// CheckMountpoint reports whether dir can be mounted on, changing nothing:
// it must be an existing, empty directory outside the repository and
// outside every backed-up root (a mount inside what is backed up would be
// backed up into itself). A dead mount there passes: PrepareMountpoint
// removes it.
func CheckMountpoint(dir, repo string, sources []string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return &MountpointError{dir, err.Error()}
	}
	if deadMount(abs) {
		return nil
	}
	return checkMountpoint(abs, repo, sources)
}

// checkMountpoint is CheckMountpoint of an absolute path with no dead
// mount on it.
func checkMountpoint(abs, repo string, sources []string) error {
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &MountpointError{abs, "does not exist; create an empty directory first (mkdir -p " + abs + ")"}
	case err != nil:
		return &MountpointError{abs, err.Error()}
	case !fi.IsDir():
		return &MountpointError{abs, "is not a directory; mount on an empty directory (for example mkdir -p ~/Backups)"}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return &MountpointError{abs, err.Error()}
	}
	if isMountpoint(real) {
		return &MountpointError{abs, "something is already mounted there; unmount it or choose another directory"}
	}
	if ents, err := os.ReadDir(real); err != nil {
		return &MountpointError{abs, err.Error()}
	} else if len(ents) > 0 {
		return &MountpointError{abs, "is not empty; choose an empty directory (the mount would hide its files)"}
	}
	within := func(root string) bool {
		r, err := filepath.EvalSymlinks(root)
		if err != nil {
			r = filepath.Clean(root)
		}
		return real == r || strings.HasPrefix(real, strings.TrimSuffix(r, "/")+"/")
	}
	if within(repo) {
		return &MountpointError{abs, "is inside the repository; choose a directory outside " + repo}
	}
	for _, s := range sources {
		// A backup of the whole system ("/") contains every directory; it
		// skips snapforge's own mounts while walking (FAULTS D15), which is
		// what keeps a mount out of the backup there.
		if s != "" && filepath.Clean(s) != "/" && within(s) {
			return &MountpointError{abs, "is inside " + s + ", which is backed up; a mount there would be backed up into itself; choose a directory outside it"}
		}
	}
	return nil
}

// isMountpoint reports whether dir is the root of a mount (its device
// differs from its parent's).
func isMountpoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(dir, &a) != nil || unix.Lstat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// forceUnmount detaches a (dead or busy) mount lazily.
func forceUnmount(dir string) error { return unmountAt(dir, true) }

// unmountAt unmounts dir, lazily (detached, open files keep working) or
// not: directly as root, else (or when that fails) through fusermount3.
func unmountAt(dir string, lazy bool) error {
	flags, opt := 0, "-u"
	if lazy {
		flags, opt = unix.MNT_DETACH, "-uz"
	}
	if os.Geteuid() == 0 {
		if err := unix.Unmount(dir, flags); err == nil {
			return nil
		}
	}
	if out, err := exec.Command("fusermount3", opt, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("fusermount3 %s: %v: %s", opt, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Start mounts the file system f at dir (prepared by PrepareMountpoint)
// and serves it in the background until Unmount.
func Start(ctx context.Context, f *FS, dir string) (*Mount, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root := os.Geteuid() == 0
	mo := fuse.MountOptions{
		FsName:        "snapforge:" + f.repo.Path(),
		Name:          "snapforge",
		Options:       []string{"ro", "nosuid", "nodev"},
		DisableXAttrs: !f.opts.Xattrs,
		MaxWrite:      1 << 20, // largest read request the kernel may send
		MaxReadAhead:  1 << 20,
		DirectMount:   root,
		DisableSplice: true, // reads are served from memory; a 1 MiB read does not fit a pipe
		// The kernel keeps link targets: every path through latest/ would
		// otherwise ask for latest's target once more. Refresh invalidates
		// latest when it moves; stored links never change.
		EnableSymlinkCaching: true,
		Debug:                f.opts.Debug,
	}
	if !f.opts.Debug {
		mo.Logger = log.New(io.Discard, "", 0)
	}
	if f.opts.AllowOther {
		// Other users see the files only as the stored modes and owners
		// allow: the kernel checks them (default_permissions).
		mo.AllowOther = true
		mo.Options = append(mo.Options, "default_permissions")
	}
	if root {
		mo.DirectMountFlags = syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV
	}
	// A name missing from a snapshot stays missing: the kernel may remember
	// that for as long as it remembers the names that exist (a file manager
	// probes for .hidden, desktop.ini … in every folder). Lookups outside
	// snapshot content set their own, short, answer.
	negative := contentTimeout
	raw := newDirlessFS(fs.NewNodeFS(f.root, &fs.Options{MountOptions: mo, RootStableAttr: &fs.StableAttr{Ino: 1}, NegativeTimeout: &negative,
		// Modes as stored, also none at all: without this go-fuse shows a
		// file of mode 000 as 0644 (a directory as 0755), which
		// default_permissions would let every user read.
		NullPermissions: true}))
	server, err := fuse.NewServer(raw, abs, &mo)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", abs, err) // the serve loop ends with the failed mount
	}
	k := server.KernelSettings()
	raw.start(k)
	if k != nil && k.Flags&fuse.CAP_NO_OPEN_SUPPORT != 0 {
		f.noOpen.Store(true)
	}
	m := &Mount{Dir: abs, fs: f, server: server, raw: raw, stop: make(chan struct{})}
	var st unix.Stat_t
	if unix.Stat(abs, &st) == nil {
		m.dev = st.Dev
		if root {
			raiseReadahead(st.Dev)
		}
	}
	m.done.Add(1)
	go m.poll()
	return m, nil
}

// raiseReadahead lets the kernel read ahead 4 MiB instead of 128 KiB on
// this mount (only root may): a sequential reader then has up to four 1 MiB
// requests in flight, whose chunks are read, checked and answered in
// parallel (one big file, cold: 0.8 GB/s at 1 MiB, 0.9 to 1.1 GB/s at 4 MiB;
// 16 MiB was no faster).
func raiseReadahead(dev uint64) {
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev))
	os.WriteFile(p, []byte("4096"), 0o644)
}

// poll refreshes the catalog when the repository's snapshot folder changes,
// for snapshots committed by anyone (the owner's own backups also call
// Refresh directly).
func (m *Mount) poll() {
	defer m.done.Done()
	dir := filepath.Join(m.fs.repo.Path(), "snapshots")
	last := snapshotsStamp(dir)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		if s := snapshotsStamp(dir); s != last {
			last = s
			m.fs.Refresh(context.Background())
		}
	}
}

func snapshotsStamp(dir string) string {
	fi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	return fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
}

// Refresh shows snapshots committed since the last refresh.
func (m *Mount) Refresh(ctx context.Context) error { return m.fs.Refresh(ctx) }

// Unmount unmounts. When files are still open it falls back to a lazy
// unmount (the folder disappears now, open files keep working until
// closed) and reports lazy; Wait then returns once they are closed.
//
// A mountpoint moved meanwhile (its parent renamed) is found by the mount's
// device number in /proc/self/mountinfo and unmounted where it is now; Dir
// says where. Unmounting by the old path failed there and left a dead
// mount behind that the next start could not find.
func (m *Mount) Unmount() (lazy bool, err error) {
	m.stopPolling()
	if now := m.movedTo(); now != "" {
		m.Dir = now
		if err = unmountAt(now, false); err == nil {
			return false, nil
		}
	} else if err = m.server.Unmount(); err == nil {
		return false, nil
	}
	if ferr := forceUnmount(m.Dir); ferr != nil {
		return false, fmt.Errorf("unmount %s: %v; lazy unmount: %v; run `fusermount3 -uz %s`", m.Dir, err, ferr, m.Dir)
	}
	return true, nil
}

// movedTo returns where the mount is now when it is no longer at Dir
// (looked up by its device number), else "". A Dir reached through a
// symlink, or a mount seen at more places (bind mounts), is still at Dir.
func (m *Mount) movedTo() string {
	var st unix.Stat_t
	if m.dev == 0 || (unix.Stat(m.Dir, &st) == nil && st.Dev == m.dev) {
		return ""
	}
	return mountedAt(m.dev)
}

// mountedAt returns where the mount of device dev is in this process's
// mount namespace, or "" (dev 0, not mounted, not readable).
func mountedAt(dev uint64) string {
	if dev == 0 {
		return ""
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	want := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	for _, line := range strings.Split(string(b), "\n") {
		// ID parent major:minor root mountpoint …
		if f := strings.Fields(line); len(f) >= 5 && f[2] == want {
			return snapshot.UnescapeMount(f[4])
		}
	}
	return ""
}

func (m *Mount) stopPolling() { m.halt.Do(func() { close(m.stop) }) }

// Wait blocks until the file system is no longer served: after Unmount,
// or once it was unmounted from outside (fusermount3 -u, umount), which
// Unmount never saw, so the poller is stopped here too.
func (m *Mount) Wait() {
	m.server.Wait()
	m.stopPolling()
	m.done.Wait()
}

// FS returns the mounted file system.
func (m *Mount) FS() *FS { return m.fs }

// DirHandles reports whether the kernel opens directories (false: it sends
// no OPENDIR, see dirlessFS) and how many directory handles are kept
// between the requests of unfinished listings.
func (m *Mount) DirHandles() (opendir bool, kept int) {
	m.raw.mu.Lock()
	defer m.raw.mu.Unlock()
	return !m.raw.on.Load(), len(m.raw.kept)
}

// Sources returns the distinct source roots of the repository's snapshots
// (on this host), for PrepareMountpoint.
func Sources(ctx context.Context, repo *snapshot.Repo) []string {
	list, err := repo.Snapshots(ctx)
	if err != nil {
		return nil
	}
	host, _ := os.Hostname()
	seen := map[string]bool{}
	var out []string
	for _, e := range list {
		if e.Manifest == nil || (e.Manifest.Source.Host != "" && e.Manifest.Source.Host != host) {
			continue
		}
		if r := e.Manifest.Source.Root; r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}
