package snapshot_test

// Round trips of the backup engine and plain restore through the public API:
// a declarative source tree (restic's TestDir style) is built on disk, backed
// up into a real repository (real Badger index), restored into an empty
// directory and compared byte for byte with indextest.Digest.
//
// Helpers shared by roundtrip_test.go, strategy_test.go and manifest_test.go
// carry the prefix "rt" so they do not collide with other files of the
// package.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/chunker"
)

// ---------------------------------------------------------------------------
// Declarative trees.

// rtEntry describes one path of a source tree.
type rtEntry struct {
	kind   byte   // 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'p' fifo
	data   []byte // file content
	target string // symlink target, or the first name (root-relative) of a hard link
	mode   uint32 // permission and special bits; 0 means 0644 (files) / 0755 (dirs) / 0644 (fifos)
	uid    int    // -1: leave the creator's
	gid    int
	kids   map[string]*rtEntry
}

func rtFile(data []byte, mode uint32) *rtEntry {
	return &rtEntry{kind: 'f', data: data, mode: mode, uid: -1, gid: -1}
}

func rtDir(mode uint32, kids map[string]*rtEntry) *rtEntry {
	if kids == nil {
		kids = map[string]*rtEntry{}
	}
	return &rtEntry{kind: 'd', mode: mode, kids: kids, uid: -1, gid: -1}
}

func rtSym(target string) *rtEntry { return &rtEntry{kind: 'l', target: target, uid: -1, gid: -1} }
func rtHard(first string) *rtEntry { return &rtEntry{kind: 'h', target: first, uid: -1, gid: -1} }
func rtFifo(mode uint32) *rtEntry  { return &rtEntry{kind: 'p', mode: mode, uid: -1, gid: -1} }
func rtOwned(e *rtEntry, uid, gid int) *rtEntry {
	e.uid, e.gid = uid, gid
	return e
}

func rtSortedNames(m map[string]*rtEntry) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// rtBuild creates spec's children under root (which must exist). Every
// entry gets a distinct mtime with nanoseconds: base plus k*(1s+123ns) in
// walk order. Metadata is applied bottom-up after all content exists, so
// directory mtimes and read-only modes stick.
func rtBuild(t testing.TB, root string, spec *rtEntry, base time.Time) {
	t.Helper()
	type meta struct {
		abs string
		e   *rtEntry
		mt  time.Time
	}
	var metas []meta
	var links [][2]string
	k := 0
	var mk func(abs, rel string, d *rtEntry)
	mk = func(abs, rel string, d *rtEntry) {
		for _, name := range rtSortedNames(d.kids) {
			e := d.kids[name]
			cabs := filepath.Join(abs, name)
			crel := path.Join(rel, name)
			k++
			mt := base.Add(time.Duration(k) * (time.Second + 123*time.Nanosecond))
			switch e.kind {
			case 'd':
				if err := os.Mkdir(cabs, 0o700); err != nil {
					t.Fatalf("build %q: %v", crel, err)
				}
				mk(cabs, crel, e)
			case 'f':
				if err := os.WriteFile(cabs, e.data, 0o600); err != nil {
					t.Fatalf("build %q: %v", crel, err)
				}
			case 'l':
				if err := os.Symlink(e.target, cabs); err != nil {
					t.Fatalf("build %q: %v", crel, err)
				}
			case 'p':
				if err := unix.Mkfifo(cabs, 0o600); err != nil {
					t.Fatalf("build %q: %v", crel, err)
				}
			case 'h':
				links = append(links, [2]string{filepath.Join(root, e.target), cabs})
				continue
			}
			metas = append(metas, meta{cabs, e, mt})
		}
	}
	mk(root, "", spec)
	rtWritableOnCleanup(t, root)
	for _, l := range links {
		if err := os.Link(l[0], l[1]); err != nil {
			t.Fatalf("build hard link %q: %v", l[1], err)
		}
	}
	// Deepest first: a child's metadata before its directory's.
	sort.SliceStable(metas, func(i, j int) bool {
		return strings.Count(metas[i].abs, "/") > strings.Count(metas[j].abs, "/")
	})
	for _, m := range metas {
		if m.e.uid >= 0 {
			if err := os.Lchown(m.abs, m.e.uid, m.e.gid); err != nil {
				t.Fatalf("chown %q: %v", m.abs, err)
			}
		}
		if m.e.kind != 'l' {
			mode := m.e.mode
			if mode == 0 {
				mode = 0o644
				if m.e.kind == 'd' {
					mode = 0o755
				}
			}
			if err := unix.Chmod(m.abs, mode); err != nil {
				t.Fatalf("chmod %q: %v", m.abs, err)
			}
		}
		ts := []unix.Timespec{unix.NsecToTimespec(m.mt.UnixNano()), unix.NsecToTimespec(m.mt.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, m.abs, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("set mtime %q: %v", m.abs, err)
		}
	}
}

// rtWritableOnCleanup makes every directory under root writable again when
// the test ends, so that t.TempDir's removal works for non-root users too.
// Register it after t.TempDir so that it runs first.
func rtWritableOnCleanup(t testing.TB, root string) {
	t.Cleanup(func() {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
}

var rtBase = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

// rtLongName is a 255-byte name (NAME_MAX) of two-byte runes and one ASCII byte.
var rtLongName = strings.Repeat("é", 127) + "x"

// rtWeirdNames maps awkward names (FAULTS D6) to their file content.
var rtWeirdNames = map[string]string{
	"new\nline":                    "newline",
	"tab\there":                    "tab",
	`back\slash`:                   "backslash",
	"-leading-dash":                "dash",
	`quote"double`:                 "dq",
	"quote'single":                 "sq",
	"<script>alert(1)":             "xss",
	"<img src=x onerror=alert(1)>": "img",
	"\xff":                         "ff",
	"\xfe":                         "fe",
	"caf\u00e9":                    "NFC",
	"cafe\u0301":                   "NFD",
	rtLongName:                     "long",
	" space ":                      "spaces",
	"a-b":                          "a-b sorts between a and a/b",
	"\x01ctl\x7f":                  "control bytes",
}

// rtMainSpec is the round-trip tree. With big, it holds files of the
// chunker's boundary sizes (FAULTS D17); root adds ownership and setuid,
// which need root to create.
func rtMainSpec(p chunker.Params, big, root bool) *rtEntry {
	files := map[string]*rtEntry{
		"empty": rtFile(nil, 0o644),
		"one":   rtFile([]byte{'x'}, 0o600),
		"ro":    rtFile([]byte("read only\n"), 0o444),
		"exec":  rtFile([]byte("#!/bin/sh\necho hi\n"), 0o755),
		"small": rtFile(indextest.RandomBytes(1, 5000), 0o640),
	}
	if big {
		sizes := map[string]int{
			"min-1": p.Min - 1, "min": p.Min, "min+1": p.Min + 1,
			"avg-1": p.Avg - 1, "avg": p.Avg, "avg+1": p.Avg + 1,
			"max-1": p.Max - 1, "max": p.Max, "max+1": p.Max + 1,
			"3max+17": 3*p.Max + 17,
		}
		for i, name := range rtKeys(sizes) {
			files[name] = rtFile(indextest.RandomBytes(uint64(100+i), sizes[name]), 0o644)
		}
		// Constant bytes have no cut point: chunks are exactly Max, Max, Max, 17.
		files["const-3max+17"] = rtFile(bytes.Repeat([]byte{'A'}, 3*p.Max+17), 0o644)
	}
	if root {
		files["suid"] = rtFile([]byte("#!/bin/sh\n"), 0o4755)
		files["sgid"] = rtFile([]byte("sgid"), 0o2750)
		files["owned"] = rtOwned(rtFile([]byte("owned by 1234:5678"), 0o640), 1234, 5678)
	}
	names := map[string]*rtEntry{
		"a":                rtDir(0o755, map[string]*rtEntry{"b": rtFile([]byte("a/b"), 0)}),
		"dir\xffinvalid":   rtDir(0o700, map[string]*rtEntry{"file\nx": rtFile([]byte("nested weird"), 0)}),
		"é-dir\ttab":       rtDir(0, map[string]*rtEntry{"-x": rtFile([]byte("dash in dir"), 0)}),
		"link\nto\xffname": rtSym("tar\nget\xfe"),
	}
	for n, c := range rtWeirdNames {
		names[n] = rtFile([]byte(c), 0o644)
	}
	spec := rtDir(0, map[string]*rtEntry{
		"files": rtDir(0o755, files),
		"names": rtDir(0o750, names),
		"links": rtDir(0o755, map[string]*rtEntry{
			"rel":      rtSym("../files/one"),
			"abs-root": rtSym("/"), // FAULTS D11: never followed
			"dangling": rtSym("does/not/exist"),
			"loop-a":   rtSym("loop-b"),
			"loop-b":   rtSym("loop-a"),
			"self":     rtSym("self"),
			"dir-link": rtSym("../names"),
		}),
		"hard": rtDir(0o755, map[string]*rtEntry{
			"one": rtFile([]byte("hard-linked content\n"), 0o640),
			"two": rtHard("hard/one"),
		}),
		"hard-elsewhere": rtDir(0o755, map[string]*rtEntry{"three": rtHard("hard/one")}),
		"pipe":           rtFifo(0o640),
		"empty-dir":      rtDir(0o755, nil),
		"ro-dir":         rtDir(0o555, map[string]*rtEntry{"inside": rtFile([]byte("in a read-only dir"), 0o644)}),
		"sticky":         rtDir(0o1777, nil),
		"setgid-dir":     rtDir(0o2775, map[string]*rtEntry{"f": rtFile([]byte("f"), 0)}),
		"deep": rtDir(0o711, map[string]*rtEntry{"a": rtDir(0, map[string]*rtEntry{"b": rtDir(0, map[string]*rtEntry{
			"c": rtDir(0, map[string]*rtEntry{"d": rtDir(0o700, map[string]*rtEntry{"leaf": rtFile([]byte("leaf"), 0o600)})}),
		})})}),
	})
	return spec
}

// ---------------------------------------------------------------------------
// Engine helpers.

func rtIsRoot() bool { return os.Geteuid() == 0 }

// rtSkipMarker leaves the restore marker out of digests.
func rtSkipMarker(rel string) bool { return rel == ".snapforge-restore-in-progress" }

func rtBackup(t testing.TB, r *snapshot.Repo, o snapshot.BackupOptions) *snapshot.Manifest {
	t.Helper()
	m, err := r.Backup(context.Background(), o)
	if err != nil {
		t.Fatalf("backup %s: %v", o.Root, err)
	}
	return m
}

func rtRestore(t testing.TB, r *snapshot.Repo, m *snapshot.Manifest, o snapshot.RestoreOptions) *snapshot.RestoreResult {
	t.Helper()
	o.Special = true // devices and setuid bits come back as root (FAULTS E15 only without it)
	res, err := r.Restore(context.Background(), m, o)
	if err != nil {
		t.Fatalf("restore %s into %s: %v", m.BackupID, o.Target, err)
	}
	return res
}

// rtWalk returns every node of snapshot m by raw path.
func rtWalk(t testing.TB, r *snapshot.Repo, m *snapshot.Manifest) map[string]*snapshot.Node {
	t.Helper()
	id, err := m.TreeID()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*snapshot.Node{}
	err = r.Walk(context.Background(), id, "", func(rel string, n *snapshot.Node) error {
		if _, dup := out[rel]; dup {
			return fmt.Errorf("walk visited %q twice", rel)
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", m.BackupID, err)
	}
	return out
}

// rtItems returns m's items by raw path.
func rtItems(t testing.TB, m *snapshot.Manifest) map[string]snapshot.Item {
	t.Helper()
	out := map[string]snapshot.Item{}
	for _, it := range m.Items {
		p := it.RawPath()
		if _, dup := out[p]; dup {
			t.Fatalf("manifest %s lists %q twice", m.BackupID, p)
		}
		out[p] = it
	}
	return out
}

// rtPackBytes sums the sizes of all pack files of the repository at dir.
func rtPackBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var sum int64
	err := filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			sum += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func rtB3(b []byte) string {
	s := blake3.Sum256(b)
	return fmt.Sprintf("%x", s[:])
}

func rtFileB3(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := blake3.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func rtLstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %q: %v", p, err)
	}
	return st
}

// rtRaceEnabled reports whether the test binary was built with -race.
func rtRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// rtKeys returns m's keys sorted.
func rtKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------
// Tests.

// TestRoundTripDeclarativeTree backs up the weird tree and restores it into
// an empty directory: content, modes (setuid/setgid/sticky), owners, mtimes
// with nanoseconds (files, dirs, symlinks), symlinks never followed, hard
// link groups, a FIFO and awkward names all come back exactly.
// FAULTS D6 D10 D11 D12 D17
func TestRoundTripDeclarativeTree(t *testing.T) {
	ctx := context.Background()
	r, _ := indextest.NewRepo(t)
	p := r.Config().Chunker
	src := t.TempDir()
	rtBuild(t, src, rtMainSpec(p, true, rtIsRoot()), rtBase)
	want := indextest.Digest(t, src, nil)

	// FAULTS D12: the FIFO is never opened; a blocking open would hang here.
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull})
	if m.Partial || len(m.Warnings) > 0 {
		t.Fatalf("backup partial=%v warnings=%v", m.Partial, m.Warnings)
	}

	// The snapshot's own view: every source path, nothing more (no path
	// below a symlink: links are stored, never followed — FAULTS D11).
	nodes := rtWalk(t, r, m)
	if got, exp := rtKeys(nodes), rtKeys(want); !slices.Equal(got, exp) {
		t.Fatalf("walk paths differ from source:\n got  %q\n want %q", got, exp)
	}
	items := rtItems(t, m)
	if len(items) != len(want) {
		t.Fatalf("manifest has %d items, source has %d paths", len(items), len(want))
	}
	var files int64
	for rel, e := range want {
		n, it := nodes[rel], items[rel]
		wantType := e.Type
		if e.Type == "file" && e.Link != "" && e.Link != rel {
			wantType = "hardlink" // FAULTS D10: later names of a link group
		}
		if n.Type.String() != wantType || it.Type != wantType {
			t.Errorf("%q: node type %s, item type %s, want %s", rel, n.Type, it.Type, wantType)
		}
		switch wantType {
		case "file", "hardlink":
			files++
			data, err := os.ReadFile(filepath.Join(src, rel))
			if err != nil {
				t.Fatal(err)
			}
			if it.Blake3 != rtB3(data) || n.Size != int64(len(data)) || it.Size != n.Size {
				t.Errorf("%q: item blake3 %s size %d, want %s size %d", rel, it.Blake3, it.Size, rtB3(data), len(data))
			}
			if wantType == "hardlink" && n.Target != e.Link {
				t.Errorf("%q: hard link target %q, want %q", rel, n.Target, e.Link)
			}
			// Chunk bounds: sizes add up, none above Max, all but the last at least Min.
			var sum int64
			for i, c := range n.Chunks {
				sum += int64(c.Size)
				if int(c.Size) > p.Max || (i < len(n.Chunks)-1 && int(c.Size) < p.Min) || c.Size == 0 {
					t.Errorf("%q: chunk %d has %d bytes (min %d, max %d)", rel, i, c.Size, p.Min, p.Max)
				}
			}
			if sum != n.Size {
				t.Errorf("%q: chunks add up to %d, size %d", rel, sum, n.Size)
			}
		case "symlink":
			target, _ := os.Readlink(filepath.Join(src, rel))
			if n.Target != target || it.RawTarget() != target || it.Size != int64(len(target)) {
				t.Errorf("%q: stored target %q (item %q, size %d), want %q", rel, n.Target, it.RawTarget(), it.Size, target)
			}
		}
		if e.Type != "symlink" && n.Mode != e.Mode {
			t.Errorf("%q: stored mode %o, want %o", rel, n.Mode, e.Mode)
		}
	}
	if m.Stats.Files != files {
		t.Errorf("stats.files = %d, want %d", m.Stats.Files, files)
	}
	// FAULTS D17: a constant 3*Max+17 file has no cut point.
	var sizes []uint32
	for _, c := range nodes["files/const-3max+17"].Chunks {
		sizes = append(sizes, c.Size)
	}
	if exp := []uint32{uint32(p.Max), uint32(p.Max), uint32(p.Max), 17}; fmt.Sprint(sizes) != fmt.Sprint(exp) {
		t.Errorf("const-3max+17 chunk sizes %v, want %v", sizes, exp)
	}
	if n := nodes["files/empty"]; len(n.Chunks) != 0 || n.Size != 0 || items["files/empty"].Blake3 != rtB3(nil) {
		t.Errorf("empty file stored as %d chunks, size %d, blake3 %s", len(n.Chunks), n.Size, items["files/empty"].Blake3)
	}
	if n := nodes["pipe"]; n.Type != snapshot.TypeFIFO || n.Size != 0 || len(n.Chunks) != 0 {
		t.Errorf("FIFO stored as %s size %d chunks %d", n.Type, n.Size, len(n.Chunks))
	}

	// FindNode + WriteContent give the exact bytes of awkward names.
	for _, rel := range []string{"names/\xff", "names/\xfe", "names/caf\u00e9", "names/cafe\u0301", "names/" + rtLongName,
		"names/new\nline", "names/dir\xffinvalid/file\nx", "files/3max+17", "hard-elsewhere/three"} {
		n, err := r.FindNode(ctx, m, rel)
		if err != nil {
			t.Fatalf("FindNode(%q): %v", rel, err)
		}
		var buf bytes.Buffer
		if _, err := r.WriteContent(ctx, n, &buf); err != nil {
			t.Fatalf("WriteContent(%q): %v", rel, err)
		}
		src, _ := os.ReadFile(filepath.Join(src, rel))
		if !bytes.Equal(buf.Bytes(), src) {
			t.Errorf("WriteContent(%q) differs from the source (%d vs %d bytes)", rel, buf.Len(), len(src))
		}
	}
	// FAULTS D6: the two invalid-UTF-8 names and the NFC/NFD twins stay distinct.
	for _, pair := range [][2]string{{"names/\xff", "names/\xfe"}, {"names/caf\u00e9", "names/cafe\u0301"}} {
		a, b := items[pair[0]], items[pair[1]]
		if a.Blake3 == b.Blake3 || a.Path == b.Path && a.PathB64 == b.PathB64 {
			t.Errorf("names %q and %q collapsed: %+v %+v", pair[0], pair[1], a, b)
		}
	}
	if it := items["names/\xff"]; it.PathB64 == "" || strings.ContainsRune(it.Path, 0xfffd) {
		t.Errorf("invalid UTF-8 path item %+v: want path_b64 and an escaped display form", it)
	}

	rep, err := r.Verify(ctx, []string{m.BackupID}, snapshot.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Snapshots[0].Files != files {
		t.Fatalf("verify: ok=%v files=%d (want %d) %+v", rep.OK(), rep.Snapshots[0].Files, files, rep)
	}

	dst := filepath.Join(t.TempDir(), "restore")
	rtWritableOnCleanup(t, dst)
	res := rtRestore(t, r, m, snapshot.RestoreOptions{Target: dst})
	if len(res.Warnings) > 0 || len(res.Failed) > 0 {
		t.Fatalf("restore warnings %v failed %v", res.Warnings, res.Failed)
	}
	if res.Reused != 0 {
		t.Errorf("fresh restore reused %d files", res.Reused)
	}
	got := indextest.Digest(t, dst, rtSkipMarker)
	indextest.CompareDigests(t, want, got)
	if _, err := os.Lstat(filepath.Join(dst, ".snapforge-restore-in-progress")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("restore marker left behind: %v", err)
	}

	// What Digest leaves out: directory and symlink mtimes, owners, link counts.
	for rel, e := range want {
		s, d := rtLstat(t, filepath.Join(src, rel)), rtLstat(t, filepath.Join(dst, rel))
		if (e.Type == "dir" || e.Type == "symlink") && s.Mtim != d.Mtim {
			t.Errorf("%s %q: mtime %d, want %d", e.Type, rel, d.Mtim.Nano(), s.Mtim.Nano())
		}
		if rtIsRoot() && (s.Uid != d.Uid || s.Gid != d.Gid) {
			t.Errorf("%q: owner %d:%d, want %d:%d", rel, d.Uid, d.Gid, s.Uid, s.Gid)
		}
		if e.Type == "file" && s.Nlink != d.Nlink {
			t.Errorf("%q: %d links, want %d", rel, d.Nlink, s.Nlink)
		}
		if d.Ino == s.Ino && d.Dev == s.Dev {
			t.Errorf("%q: restored entry is the source inode", rel)
		}
	}
	if st := rtLstat(t, filepath.Join(dst, "hard/one")); st.Nlink != 3 {
		t.Errorf("hard/one has %d links, want 3", st.Nlink)
	}
	if rtIsRoot() {
		if st := rtLstat(t, filepath.Join(dst, "files/owned")); st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("files/owned restored as %d:%d", st.Uid, st.Gid)
		}
		if st := rtLstat(t, filepath.Join(dst, "files/suid")); st.Mode&0o7777 != 0o4755 {
			t.Errorf("files/suid restored with mode %o", st.Mode&0o7777)
		}
	}
}

// TestRoundTripHardLinkOutsidePath backs up one directory whose file has
// another name outside the backed-up PATH: it is restored as a plain file,
// never linked to anything outside the target. FAULTS D10
func TestRoundTripHardLinkOutsidePath(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	rtBuild(t, src, rtDir(0, map[string]*rtEntry{
		"other": rtDir(0, map[string]*rtEntry{"b": rtFile([]byte("shared inode"), 0o640)}),
		"sel": rtDir(0, map[string]*rtEntry{
			"a": rtHard("other/b"),
			"c": rtHard("other/b"), // a second name inside the selection
		}),
	}), rtBase)
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src, Paths: []string{"sel"}})
	items := rtItems(t, m)
	if got := rtKeys(items); !slices.Equal(got, []string{"sel", "sel/a", "sel/c"}) {
		t.Fatalf("items %q, want sel, sel/a, sel/c", got)
	}
	if items["sel/a"].Type != "file" || items["sel/c"].Type != "hardlink" || items["sel/c"].Target != "sel/a" {
		t.Fatalf("link group inside the selection: %+v %+v", items["sel/a"], items["sel/c"])
	}
	dst := filepath.Join(t.TempDir(), "restore")
	rtRestore(t, r, m, snapshot.RestoreOptions{Target: dst})
	srcSt := rtLstat(t, filepath.Join(src, "other/b"))
	a, c := rtLstat(t, filepath.Join(dst, "sel/a")), rtLstat(t, filepath.Join(dst, "sel/c"))
	if a.Ino != c.Ino || a.Nlink != 2 {
		t.Errorf("sel/a and sel/c: inodes %d/%d, links %d; want one inode with 2 links", a.Ino, c.Ino, a.Nlink)
	}
	if a.Ino == srcSt.Ino || srcSt.Nlink != 3 {
		t.Errorf("restored file shares the source inode (or the source gained links: %d)", srcSt.Nlink)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "sel/a")); string(b) != "shared inode" {
		t.Errorf("sel/a content %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dst, "other")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("other/ restored although outside the PATH: %v", err)
	}
}

// TestRoundTripSparseFile backs up a 1 GiB file with a few KiB of data at
// its start, middle and end. The zero chunks dedup, so the repository grows
// by far less than 1 MiB; the restore is byte-identical and sparse.
// Under the race detector, which slows the byte loops over every zero about
// tenfold, the file is 128 MiB. FAULTS D9
func TestRoundTripSparseFile(t *testing.T) {
	r, repoDir := indextest.NewRepo(t)
	src := t.TempDir()
	size := int64(1 << 30)
	if rtRaceEnabled() {
		size = 128 << 20
	}
	name := filepath.Join(src, "sparse.img")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, off := range []int64{0, size/2 + 12345, size - 3000} {
		if _, err := f.WriteAt(indextest.RandomBytes(uint64(900+i), 3000), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	srcSt := rtLstat(t, name)
	if srcSt.Blocks*512 > 1<<20 {
		t.Skipf("the filesystem of %s does not keep the source sparse (%d bytes allocated)", src, srcSt.Blocks*512)
	}
	wantHash := rtFileB3(t, name)

	before := rtPackBytes(t, repoDir)
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src})
	grown := rtPackBytes(t, repoDir) - before
	if grown >= 1<<20 {
		t.Errorf("repository grew by %d bytes for a sparse file; want far less than 1 MiB", grown)
	}
	// new_bytes counts plaintext of new chunks: a handful of chunks, never the 1 GiB.
	if limit := int64(8 * r.Config().Chunker.Max); m.Stats.NewBytes > limit || m.Stats.Bytes != size {
		t.Errorf("stats bytes=%d new_bytes=%d; want bytes=%d and new_bytes <= %d", m.Stats.Bytes, m.Stats.NewBytes, size, limit)
	}
	it := rtItems(t, m)["sparse.img"]
	if it.Blake3 != wantHash || it.Size != size {
		t.Fatalf("item %+v, want blake3 %s size %d", it, wantHash, size)
	}

	dst := filepath.Join(t.TempDir(), "restore")
	rtRestore(t, r, m, snapshot.RestoreOptions{Target: dst})
	out := filepath.Join(dst, "sparse.img")
	st := rtLstat(t, out)
	if st.Size != size {
		t.Fatalf("restored size %d, want %d", st.Size, size)
	}
	if got := rtFileB3(t, out); got != wantHash {
		t.Fatalf("restored content blake3 %s, want %s", got, wantHash)
	}
	// All-zero chunks are left as holes; the three chunks holding data are
	// written whole, so at most 3*Max plus some metadata blocks is allocated.
	if limit := int64(3*r.Config().Chunker.Max) + 1<<20; st.Blocks*512 > limit {
		t.Errorf("restored file is not sparse: %d bytes allocated for %d apparent (limit %d)", st.Blocks*512, st.Size, limit)
	}
}

// TestBackupRepositoryInsideSource puts the repository inside the source
// root: it is never backed up. A source inside the repository is refused,
// and so is a restore target that overlaps it. FAULTS D15
func TestBackupRepositoryInsideSource(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	rtBuild(t, src, rtDir(0, map[string]*rtEntry{
		"data": rtDir(0, map[string]*rtEntry{"a.txt": rtFile([]byte("a"), 0)}),
		"var":  rtDir(0, map[string]*rtEntry{"keep.txt": rtFile([]byte("keep"), 0)}),
	}), rtBase)
	repoDir := filepath.Join(src, "var", "backups", "repo")
	if err := os.MkdirAll(filepath.Dir(repoDir), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := snapshot.Init(ctx, repoDir, snapshot.InitOptions{}, indextest.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src})
	m2 := rtBackup(t, r, snapshot.BackupOptions{Root: src}) // the repository now holds packs and a manifest
	for _, mm := range []*snapshot.Manifest{m, m2} {
		items := rtItems(t, mm)
		for p := range items {
			if p == "var/backups/repo" || strings.HasPrefix(p, "var/backups/repo/") {
				t.Errorf("%s: repository path %q was backed up", mm.BackupID, p)
			}
		}
		for _, p := range []string{"data/a.txt", "var/keep.txt", "var/backups"} {
			if _, ok := items[p]; !ok {
				t.Errorf("%s: %q missing", mm.BackupID, p)
			}
		}
	}
	if m2.RootHash != m.RootHash {
		t.Errorf("second backup root hash %s differs from first %s: repository content leaked in", m2.RootHash, m.RootHash)
	}

	for _, inside := range []string{repoDir, filepath.Join(repoDir, "packs")} {
		_, err := r.Backup(ctx, snapshot.BackupOptions{Root: inside})
		if err == nil || !strings.Contains(err.Error(), "inside the repository") {
			t.Errorf("backup of %s: err %v, want a refusal naming the repository", inside, err)
		}
	}
	_, err = r.Restore(ctx, m, snapshot.RestoreOptions{Target: filepath.Join(repoDir, "restore-here")})
	if err == nil || !strings.Contains(err.Error(), "overlaps the repository") {
		t.Errorf("restore into the repository: err %v, want a refusal", err)
	}
	if _, err := os.Lstat(filepath.Join(repoDir, "restore-here")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused restore created its target: %v", err)
	}
}

// TestRoundTripManyFilesOneDir backs up, verifies and restores 100,000
// empty files in one directory. FAULTS D7
func TestRoundTripManyFilesOneDir(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 files: skipped with -short")
	}
	ctx := context.Background()
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	dir := filepath.Join(src, "many")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	for i := range n {
		fd, err := unix.Open(filepath.Join(dir, fmt.Sprintf("f%06d", i)), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src})
	if m.Stats.Files != n || len(m.Items) != n+1 {
		t.Fatalf("backup: %d files, %d items; want %d files", m.Stats.Files, len(m.Items), n)
	}
	rep, err := r.Verify(ctx, []string{m.BackupID}, snapshot.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Snapshots[0].Files != n {
		t.Fatalf("verify: ok=%v files=%d", rep.OK(), rep.Snapshots[0].Files)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	res := rtRestore(t, r, m, snapshot.RestoreOptions{Target: dst})
	if res.Files != n {
		t.Errorf("restore reported %d files, want %d", res.Files, n)
	}
	d, err := os.Open(filepath.Join(dst, "many"))
	if err != nil {
		t.Fatal(err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n {
		t.Fatalf("restored directory holds %d entries, want %d", len(names), n)
	}
	sort.Strings(names)
	if names[0] != "f000000" || names[n-1] != fmt.Sprintf("f%06d", n-1) {
		t.Errorf("restored names run %q..%q", names[0], names[n-1])
	}
}

// rtCancelAfter is a context that is cancelled as soon as it is consulted
// after live has counted n restored files: a deterministic interruption.
type rtCancelAfter struct {
	context.Context
	cancel context.CancelFunc
	live   *snapshot.Live
	n      int64
}

func newRTCancelAfter(live *snapshot.Live, n int64) *rtCancelAfter {
	ctx, cancel := context.WithCancel(context.Background())
	return &rtCancelAfter{Context: ctx, cancel: cancel, live: live, n: n}
}

func (c *rtCancelAfter) Err() error {
	if c.live.FilesDone.Load() >= c.n {
		c.cancel()
	}
	return c.Context.Err()
}

// TestRestoreResumesAfterInterruption interrupts a restore after 20 of 50
// files, damages the partial result (files deleted, one corrupted with its
// size and mtime kept, temporary files of a killed run left behind), and
// restores again (FAULTS B8 for a plain restore: a cancelled context leaves
// a consistent, resumable target): the result equals the source,
// the files that were already correct are reused (same inodes, counted in
// Reused), the others rewritten. A non-empty target without the marker,
// or with another snapshot's marker, is refused.
func TestRestoreResumesAfterInterruption(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	kids := map[string]*rtEntry{}
	for d := range 5 {
		files := map[string]*rtEntry{}
		for i := range 10 {
			files[fmt.Sprintf("f%02d", i)] = rtFile(indextest.RandomBytes(uint64(d*10+i), 1000+d*7919+i*997), 0o640)
		}
		kids[fmt.Sprintf("d%d", d)] = rtDir(0o750, files)
	}
	rtBuild(t, src, rtDir(0, kids), rtBase)
	want := indextest.Digest(t, src, nil)
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src})

	dst := filepath.Join(t.TempDir(), "restore")
	live := &snapshot.Live{}
	ctx := newRTCancelAfter(live, 20)
	_, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: dst, Live: live})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: err %v, want context.Canceled", err)
	}
	marker := filepath.Join(dst, ".snapforge-restore-in-progress")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("interrupted restore left no marker: %v", err)
	}
	// The partial state: the files restored before the cancellation (20, plus
	// those the other workers had in hand), each complete at its final name.
	var done []string
	for _, rel := range rtKeys(want) {
		if want[rel].Type != "file" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dst, rel)); err == nil {
			if indextest.FileSHA256(t, filepath.Join(dst, rel)) != want[rel].Content {
				t.Fatalf("interrupted restore left %q incomplete at its final name", rel)
			}
			done = append(done, rel)
		}
	}
	if len(done) < 20 || len(done) >= 40 {
		t.Fatalf("interrupted restore wrote %d files, want 20 and a few in flight: %q", len(done), done)
	}
	// Damage it: delete three, corrupt one keeping size and mtime.
	for _, rel := range []string{done[0], done[7], done[19]} {
		if err := os.Remove(filepath.Join(dst, rel)); err != nil {
			t.Fatal(err)
		}
	}
	corrupt := filepath.Join(dst, done[12])
	cst := rtLstat(t, corrupt)
	b, _ := os.ReadFile(corrupt)
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(corrupt, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.UtimesNano(corrupt, []unix.Timespec{cst.Mtim, cst.Mtim}); err != nil {
		t.Fatal(err)
	}
	// A run killed while writing leaves its temporary files behind: one at
	// the top and one in a directory.
	for _, tmp := range []string{".sfr-00112233445566aa", "d1/.sfr-ffeeddccbbaa9988"} {
		if err := os.WriteFile(filepath.Join(dst, tmp), []byte("half a file"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inodes := map[string]uint64{}
	for i, rel := range done {
		if i != 0 && i != 7 && i != 19 && i != 12 {
			inodes[rel] = rtLstat(t, filepath.Join(dst, rel)).Ino
		}
	}

	// Refusals: another snapshot's restore, and a foreign non-empty target.
	m2 := rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull})
	if _, err := r.Restore(context.Background(), m2, snapshot.RestoreOptions{Target: dst}); err == nil ||
		!strings.Contains(err.Error(), "interrupted restore of snapshot "+m.BackupID) {
		t.Errorf("restore of another snapshot over an interrupted one: err %v", err)
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "precious"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Restore(context.Background(), m, snapshot.RestoreOptions{Target: foreign}); err == nil ||
		!strings.Contains(err.Error(), "is not empty") {
		t.Errorf("restore into a non-empty directory without marker: err %v, want a refusal", err)
	}
	if ents, _ := os.ReadDir(foreign); len(ents) != 1 {
		t.Errorf("refused restore wrote into the target: %d entries", len(ents))
	}

	res := rtRestore(t, r, m, snapshot.RestoreOptions{Target: dst})
	if res.Reused != int64(len(inodes)) || res.Files != 50 {
		t.Errorf("resumed restore: reused %d files of %d; want %d reused of 50", res.Reused, res.Files, len(inodes))
	}
	indextest.CompareDigests(t, want, indextest.Digest(t, dst, nil)) // marker and temporary files gone too
	for rel, ino := range inodes {
		if got := rtLstat(t, filepath.Join(dst, rel)).Ino; got != ino {
			t.Errorf("%q was rewritten (inode %d -> %d) although it was already correct", rel, ino, got)
		}
	}
	if got := rtLstat(t, corrupt).Ino; got == cst.Ino {
		t.Errorf("corrupted %q kept its inode: not rewritten", done[12])
	}
	for rel := range want {
		if want[rel].Type == "dir" && rtLstat(t, filepath.Join(src, rel)).Mtim != rtLstat(t, filepath.Join(dst, rel)).Mtim {
			t.Errorf("dir %q: mtime not restored by the resumed run", rel)
		}
	}
}

// TestRestoreInclude restores only what include patterns select: a
// subtree, a single file, and a name pattern at any depth.
func TestRestoreInclude(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	rtBuild(t, src, rtDir(0, map[string]*rtEntry{
		"app": rtDir(0, map[string]*rtEntry{
			"config": rtDir(0o750, map[string]*rtEntry{
				"a.yaml": rtFile([]byte("a"), 0),
				"sub":    rtDir(0, map[string]*rtEntry{"b.yaml": rtFile([]byte("b"), 0)}),
			}),
			"data": rtDir(0, map[string]*rtEntry{"x.db": rtFile([]byte("x"), 0), "y.db": rtFile([]byte("y"), 0)}),
			"logs": rtDir(0, map[string]*rtEntry{"app.log": rtFile([]byte("log"), 0)}),
		}),
		"top.txt":  rtFile([]byte("top"), 0),
		"root.log": rtFile([]byte("root log"), 0),
	}), rtBase)
	m := rtBackup(t, r, snapshot.BackupOptions{Root: src})
	full := indextest.Digest(t, src, nil)

	for _, tc := range []struct {
		include []string
		want    []string // files and selected dirs (ancestors are created but not listed)
		absent  []string
	}{
		{[]string{"app/config", "app/data/x.db"},
			[]string{"app/config", "app/config/a.yaml", "app/config/sub", "app/config/sub/b.yaml", "app/data/x.db"},
			[]string{"app/data/y.db", "app/logs", "top.txt", "root.log"}},
		{[]string{"*.log"},
			[]string{"app/logs/app.log", "root.log"},
			[]string{"app/config", "app/data", "top.txt"}},
	} {
		dst := filepath.Join(t.TempDir(), "restore")
		rtRestore(t, r, m, snapshot.RestoreOptions{Target: dst, Include: tc.include})
		got := indextest.Digest(t, dst, nil)
		for _, p := range tc.want {
			g, ok := got[p]
			if !ok {
				t.Errorf("include %q: %q missing", tc.include, p)
				continue
			}
			if w := full[p]; g != w {
				t.Errorf("include %q: %q is %v, want %v", tc.include, p, g, w)
			}
		}
		for _, p := range tc.absent {
			if _, ok := got[p]; ok {
				t.Errorf("include %q: %q restored although not selected", tc.include, p)
			}
		}
		// Nothing beyond the selection and its ancestor directories.
		for p, e := range got {
			if e.Type == "dir" {
				continue
			}
			if !slices.Contains(tc.want, p) {
				t.Errorf("include %q: unexpected %q", tc.include, p)
			}
		}
	}
}

// TestDiffSnapshots compares two snapshots: added, removed and changed
// items with their sizes; a touch alone is no change (content only).
func TestDiffSnapshots(t *testing.T) {
	r, _ := indextest.NewRepo(t)
	src := t.TempDir()
	rtBuild(t, src, rtDir(0, map[string]*rtEntry{
		"keep":     rtFile([]byte("unchanged"), 0),
		"touched":  rtFile([]byte("same content"), 0),
		"grow":     rtFile([]byte("12345"), 0),
		"same-len": rtFile([]byte("abcde"), 0),
		"gone":     rtFile([]byte("deleted later"), 0),
		"gone-dir": rtDir(0, map[string]*rtEntry{"inner": rtFile([]byte("in"), 0)}),
		"link":     rtSym("keep"),
	}), rtBase)
	a := rtBackup(t, r, snapshot.BackupOptions{Root: src})

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "grow"), []byte("1234567890"), 0o644))
	must(os.WriteFile(filepath.Join(src, "same-len"), []byte("abcdX"), 0o644))
	must(os.Remove(filepath.Join(src, "gone")))
	must(os.RemoveAll(filepath.Join(src, "gone-dir")))
	must(os.Remove(filepath.Join(src, "link")))
	must(os.Symlink("grow", filepath.Join(src, "link")))
	must(os.WriteFile(filepath.Join(src, "new"), []byte("brand new file"), 0o644))
	must(os.Mkdir(filepath.Join(src, "new-dir"), 0o755))
	now := time.Now()
	must(os.Chtimes(filepath.Join(src, "touched"), now, now))
	b := rtBackup(t, r, snapshot.BackupOptions{Root: src})

	got := map[string]snapshot.Change{}
	for _, c := range snapshot.Diff(a, b) {
		got[c.Path] = c
	}
	want := map[string]snapshot.Change{
		"grow":           {Kind: "changed", Path: "grow", Type: "file", OldSize: 5, NewSize: 10},
		"same-len":       {Kind: "changed", Path: "same-len", Type: "file", OldSize: 5, NewSize: 5},
		"link":           {Kind: "changed", Path: "link", Type: "symlink", OldSize: 4, NewSize: 4},
		"gone":           {Kind: "removed", Path: "gone", Type: "file", OldSize: 13},
		"gone-dir":       {Kind: "removed", Path: "gone-dir", Type: "dir"},
		"gone-dir/inner": {Kind: "removed", Path: "gone-dir/inner", Type: "file", OldSize: 2},
		"new":            {Kind: "added", Path: "new", Type: "file", NewSize: 14},
		"new-dir":        {Kind: "added", Path: "new-dir", Type: "dir"},
	}
	if len(got) != len(want) {
		t.Errorf("diff has %d changes, want %d: %+v", len(got), len(want), got)
	}
	for p, w := range want {
		if g, ok := got[p]; !ok || g != w {
			t.Errorf("diff %q: got %+v, want %+v", p, g, w)
		}
	}
	if len(snapshot.Diff(b, b)) != 0 {
		t.Errorf("a snapshot differs from itself: %+v", snapshot.Diff(b, b))
	}
	// The reverse diff swaps added and removed.
	for _, c := range snapshot.Diff(b, a) {
		if w := want[c.Path]; (w.Kind == "added") != (c.Kind == "removed") || (w.Kind == "changed") != (c.Kind == "changed") {
			t.Errorf("reverse diff %q: %s, forward %s", c.Path, c.Kind, w.Kind)
		}
	}
}

// ---------------------------------------------------------------------------
// Benchmarks.

// rtBenchTree writes ~64 MiB: half incompressible, half compressible text.
func rtBenchTree(b *testing.B) (string, int64) {
	b.Helper()
	src := b.TempDir()
	var total int64
	words := strings.Fields("backup restore snapshot chunk pack manifest tree index verify prune")
	for i := range 32 {
		var data []byte
		if i%2 == 0 {
			data = indextest.RandomBytes(uint64(5000+i), 2<<20)
		} else {
			rnd := indextest.RandomBytes(uint64(6000+i), 2<<20)
			data = make([]byte, 0, 2<<20)
			for j := 0; len(data) < 2<<20; j++ {
				data = append(data, words[int(rnd[2*j])%len(words)]...)
				data = append(data, fmt.Sprintf(" %d\n", rnd[2*j+1])...)
			}
			data = data[:2<<20]
		}
		dir := filepath.Join(src, fmt.Sprintf("d%d", i%4))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	return src, total
}

func BenchmarkBackup(b *testing.B) {
	src, total := rtBenchTree(b)
	b.SetBytes(total)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "repo")
		r, err := snapshot.Init(ctx, dir, snapshot.InitOptions{}, indextest.Options())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		m, err := r.Backup(ctx, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull})
		b.StopTimer()
		if err != nil || m.Stats.Bytes != total {
			b.Fatalf("backup: %v (bytes %d)", err, m.Stats.Bytes)
		}
		r.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}

func BenchmarkRestore(b *testing.B) {
	src, total := rtBenchTree(b)
	r, _ := indextest.NewRepo(b)
	ctx := context.Background()
	m, err := r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	base := b.TempDir()
	var once sync.Once
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(base, fmt.Sprint(i))
		res, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: dst})
		if err != nil || res.Bytes != total {
			b.Fatalf("restore: %v", err)
		}
		b.StopTimer()
		once.Do(func() { indextest.CompareDigests(b, indextest.Digest(b, src, nil), indextest.Digest(b, dst, nil)) })
		os.RemoveAll(dst)
		b.StartTimer()
	}
}
