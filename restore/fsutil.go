package restore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
	blake3 "snapforge/snapshot/b3"
)

// The live tree is only ever touched through directory descriptors opened
// one name at a time with O_NOFOLLOW, so a symlink planted anywhere in the
// live tree (or swapped in during the restore) is never followed: the
// operation fails with ELOOP or ENOTDIR instead (FAULTS E2, E4, E6).

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openRoot opens the live root itself. The root path comes from the profile
// or the command line and may contain symlinks above it; below it nothing
// is followed.
func openRoot(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// openDirAt opens directory rel below the directory fd root, one component
// at a time without following symlinks. rel "" or "." is root itself (a
// new descriptor).
func openDirAt(root int, rel string) (int, error) {
	fd, err := unix.Openat(root, ".", dirFlags, 0)
	if err != nil {
		return -1, err
	}
	if rel == "" || rel == "." {
		return fd, nil
	}
	for _, name := range strings.Split(rel, "/") {
		next, err := unix.Openat(fd, name, dirFlags, 0)
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return -1, fmt.Errorf("%s is not a directory (a symlink or another kind of file is in the way): %w", snapshot.DisplayName(rel), err)
			}
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// lstatAt is fstatat without following a symlink.
func lstatAt(dir int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// hashAt returns the BLAKE3 of regular file name in dir, opened without
// following a symlink and without blocking on a FIFO. st is the file's
// status as read from the open descriptor.
func hashAt(dir int, name string) (snapshot.ID, unix.Stat_t, error) {
	var sum snapshot.ID
	var st unix.Stat_t
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return sum, st, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return sum, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return sum, st, fmt.Errorf("%s is not a regular file", name)
	}
	unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)
	h := blake3.Get()
	defer blake3.Put(h)
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, st, err
		}
	}
	copy(sum[:], h.Sum(nil))
	return sum, st, nil
}

// hashBufs recycles read buffers: hashing a tree of small files must not
// allocate a buffer per file.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// splitRel returns the parent directory and last name of rel.
func splitRel(rel string) (dir, name string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// joinRel joins a relative directory and a name (either may be empty).
func joinRel(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	if name == "" {
		return dir
	}
	return dir + "/" + name
}

// typeOf names a stat mode like manifest items do.
func typeOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

// readlinkAt reads symlink name in dir.
func readlinkAt(dir int, name string) (string, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// readNames lists directory fd (sorted by bytes by the caller).
func readNames(fd int) ([]string, error) {
	d, err := unix.Openat(fd, ".", dirFlags, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// fsFlags reports the inode flags (chattr) of fd, 0 where unsupported.
func fsFlags(fd int) uint32 {
	v, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return 0
	}
	return v
}

// immutable reports whether name in dir (or dir itself, name "") carries
// chattr +i or +a, which make renames fail.
func immutable(dir int, name string) bool {
	fd := dir
	if name != "" {
		st, err := lstatAt(dir, name)
		if err != nil || (st.Mode&unix.S_IFMT != unix.S_IFREG && st.Mode&unix.S_IFMT != unix.S_IFDIR) {
			return false // only files and directories carry the flags
		}
		fd, err = unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		defer unix.Close(fd)
	}
	return fsFlags(fd)&(fsImmutableFL|fsAppendFL) != 0
}

// Inode flags of FS_IOC_GETFLAGS (linux/fs.h).
const (
	fsImmutableFL = 0x10
	fsAppendFL    = 0x20
)

// removeAt removes name in dir and everything below it, never following a
// symlink and never entering another filesystem (dev): a directory with a
// filesystem mounted inside is left in place and reported.
func removeAt(dir int, name string, dev uint64, display string) error {
	st, err := lstatAt(dir, name)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dir, name, 0); err != nil && err != unix.ENOENT {
			return fmt.Errorf("remove %s: %w", display, err)
		}
		return nil
	}
	if st.Dev != dev {
		return fmt.Errorf("%s is another filesystem's mount point; left in place", display)
	}
	if st.Mode&0o700 != 0o700 {
		unix.Fchmodat(dir, name, st.Mode&0o7777|0o700, 0)
	}
	fd, err := unix.Openat(dir, name, dirFlags, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", display, err)
	}
	names, err := readNames(fd)
	var firstErr error
	if err != nil {
		firstErr = err
	}
	for _, n := range names {
		if err := removeAt(fd, n, dev, display+"/"+n); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	unix.Close(fd)
	if firstErr != nil {
		return firstErr
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove %s: %w", display, err)
	}
	return nil
}

// treeSize counts the files and bytes below directory name in dir, and
// names the first directory inside that is another filesystem.
func treeSize(dir int, name string, dev uint64, rel string) (files, bytes int64, mount string) {
	fd, err := unix.Openat(dir, name, dirFlags, 0)
	if err != nil {
		return 0, 0, ""
	}
	defer unix.Close(fd)
	names, _ := readNames(fd)
	for _, n := range names {
		st, err := lstatAt(fd, n)
		if err != nil {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			files++
			bytes += st.Size
		case unix.S_IFDIR:
			if st.Dev != dev {
				return files, bytes, joinRel(rel, n)
			}
			f, b, m := treeSize(fd, n, dev, joinRel(rel, n))
			files, bytes = files+f, bytes+b
			if m != "" {
				return files, bytes, m
			}
		}
	}
	return files, bytes, ""
}

// renameAt is renameat2. A user other than root may be refused (EACCES) by
// a directory it owns but made read-only (a snapshot's mode 0555): then it
// lends itself write permission on the two parents and on a directory being
// moved (whose ".." changes), renames, and puts the modes back at once.
func renameAt(odir int, oname string, ndir int, nname string, flags uint) error {
	err := unix.Renameat2(odir, oname, ndir, nname, flags)
	if err != unix.EACCES || os.Geteuid() == 0 {
		return err
	}
	var fds []int
	for _, e := range []struct {
		dir  int
		name string
	}{{odir, oname}, {ndir, nname}} {
		if st, err := lstatAt(e.dir, e.name); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if fd, err := unix.Openat(e.dir, e.name, dirFlags, 0); err == nil {
				defer unix.Close(fd)
				fds = append(fds, fd)
			}
		}
	}
	return asOwner(func() error { return unix.Renameat2(odir, oname, ndir, nname, flags) }, append([]int{odir, ndir}, fds...)...)
}

// asOwner runs fn with owner write and search permission on directories
// dirs (those this user owns and lacks it on), then puts their modes back.
func asOwner(fn func() error, dirs ...int) error {
	type saved struct {
		fd   int
		mode uint32
	}
	var put []saved
	for _, fd := range dirs {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && int(st.Uid) == os.Geteuid() && st.Mode&0o300 != 0o300 {
			if unix.Fchmod(fd, st.Mode&0o7777|0o300) == nil {
				put = append(put, saved{fd, st.Mode & 0o7777})
			}
		}
	}
	err := fn()
	for i := len(put) - 1; i >= 0; i-- {
		unix.Fchmod(put[i].fd, put[i].mode)
	}
	return err
}
