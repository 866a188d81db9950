// Package indextest provides helpers for tests that need a real repository:
// a snapshot.Repo in a temporary directory backed by the real Badger index,
// and tools to build and compare directory trees byte for byte.
//
// It lives under index (which may import snapshot) so that snapshot itself
// never imports the Badger adapter.
package indextest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"snapforge/index"
	"snapforge/snapshot"
)

// Opener returns the IndexOpener that cmd wires in production.
func Opener() snapshot.IndexOpener {
	return func(dir string, create bool) (snapshot.Index, error) {
		if create {
			return index.Create(dir, index.Options{})
		}
		return index.Open(dir, index.Options{})
	}
}

// Options returns repository options with the real index.
func Options() snapshot.Options {
	return snapshot.Options{OpenIndex: Opener(), Command: "test"}
}

// NewRepo creates a repository in a new temporary directory and returns it
// open with its path. It is closed when the test ends.
func NewRepo(t testing.TB, mod ...func(*snapshot.Options)) (*snapshot.Repo, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	o := Options()
	for _, m := range mod {
		m(&o)
	}
	r, err := snapshot.Init(context.Background(), dir, snapshot.InitOptions{}, o)
	if err != nil {
		t.Fatalf("init repository: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir
}

// OpenRepo opens an existing repository; it is closed when the test ends
// (closing twice is harmless).
func OpenRepo(t testing.TB, dir string, mod ...func(*snapshot.Options)) *snapshot.Repo {
	t.Helper()
	o := Options()
	for _, m := range mod {
		m(&o)
	}
	r, err := snapshot.Open(context.Background(), dir, o)
	if err != nil {
		t.Fatalf("open repository: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Entry describes one path of a tree for comparison: type, mode, size,
// mtime (nanoseconds), content SHA-256 or link target, and the hard-link
// group (paths sharing an inode get the same group: the first path's name).
type Entry struct {
	Type    string
	Mode    uint32
	Size    int64
	MTime   int64
	Content string
	Link    string
}

func (e Entry) String() string {
	return fmt.Sprintf("%s mode=%o size=%d mtime=%d content=%s link=%s", e.Type, e.Mode, e.Size, e.MTime, e.Content, e.Link)
}

// Digest walks root (without following symlinks) and returns every path
// below it (raw bytes, slash-separated) with its Entry. Directory mtimes are
// included; skip names with the skip function (nil: none).
func Digest(t testing.TB, root string, skip func(rel string) bool) map[string]Entry {
	t.Helper()
	out := map[string]Entry{}
	inodes := map[uint64]string{}
	var walk func(abs, rel string)
	walk = func(abs, rel string) {
		f, err := os.Open(abs)
		if err != nil {
			t.Fatalf("digest %s: %v", abs, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			t.Fatalf("digest %s: %v", abs, err)
		}
		sort.Strings(names)
		for _, name := range names {
			crel := name
			if rel != "" {
				crel = rel + "/" + name
			}
			if skip != nil && skip(crel) {
				continue
			}
			cabs := filepath.Join(abs, name)
			var st unix.Stat_t
			if err := unix.Lstat(cabs, &st); err != nil {
				t.Fatalf("digest lstat %q: %v", cabs, err)
			}
			e := Entry{Mode: st.Mode & 0o7777, MTime: st.Mtim.Nano()}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				e.Type = "dir"
				e.MTime = 0 // set after children; compared separately by DirMTimes
				walk(cabs, crel)
			case unix.S_IFREG:
				e.Type = "file"
				e.Size = st.Size
				e.Content = FileSHA256(t, cabs)
				if st.Nlink > 1 {
					if first, ok := inodes[st.Ino]; ok {
						e.Link = first
					} else {
						inodes[st.Ino] = crel
						e.Link = crel
					}
				}
			case unix.S_IFLNK:
				e.Type = "symlink"
				target, err := os.Readlink(cabs)
				if err != nil {
					t.Fatal(err)
				}
				e.Content = target
				e.Mode = 0
				e.MTime = 0 // symlink mtimes are compared where the test cares
			case unix.S_IFIFO:
				e.Type = "fifo"
			default:
				e.Type = fmt.Sprintf("other(%o)", st.Mode&unix.S_IFMT)
			}
			out[crel] = e
		}
	}
	walk(root, "")
	return out
}

// FileSHA256 returns the hex SHA-256 of a file's content.
func FileSHA256(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatalf("hash %s: %v", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("hash %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CompareDigests fails the test listing every difference between want and got.
func CompareDigests(t testing.TB, want, got map[string]Entry) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("missing %q", p))
			continue
		}
		if w != g {
			diffs = append(diffs, fmt.Sprintf("%q:\n  want %v\n  got  %v", p, w, g))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %q", p))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		t.Fatalf("trees differ (%d):\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

// RandomBytes returns n deterministic pseudo-random (incompressible) bytes
// for seed.
func RandomBytes(seed uint64, n int) []byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// WriteFile writes data to p, creating its parent directories.
func WriteFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Names lists the names in dir, sorted (none when dir does not exist).
func Names(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// ExecutableCopy copies the running test binary to dir/name (mode 0755)
// and returns its path: the binary's own directory is private to the user
// who built it, and a test that runs it as another user needs a copy that
// user may execute.
//
// cp writes the copy, not this process: a file this process held open for
// writing is inherited, until it execs, by any child another goroutine
// forks meanwhile (parallel tests start processes all the time), and
// running the copy then fails with ETXTBSY, "text file busy"
// (golang.org/issue/22315; seen in CI). The child cp's descriptors are
// never in this process.
func ExecutableCopy(t testing.TB, dir, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, name)
	copyExecutable(t, self, exe)
	return exe
}

// WriteExecutable writes data to path as an executable (mode 0755), a
// script to run, safe from ETXTBSY as ExecutableCopy's copy is: the bytes
// go to a file beside it that is never run, which cp then copies.
func WriteExecutable(t testing.TB, path string, data []byte) {
	t.Helper()
	staged := path + ".staged"
	if err := os.WriteFile(staged, data, 0o644); err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, staged, path)
	if err := os.Remove(staged); err != nil {
		t.Fatal(err)
	}
}

// copyExecutable has cp copy src to dst, then makes dst executable.
func copyExecutable(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s to %s: %v: %s", src, dst, err, out)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
}
