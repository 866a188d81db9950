package restore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/restore"
	"snapforge/restore/restoretest"
	"snapforge/snapshot"
	"snapforge/snapshot/pack"
)

// Restore-side attacks (FAULTS E1–E7, E15): crafted snapshots and a live
// tree with planted symlinks and hard links. Nothing is ever written
// outside the live root, and a refused restore writes nothing inside it.

// rtEncodeTree encodes nodes in the tree format of snapshot/tree.go
// without Tree.Encode's checks, so a test can store names a real backup
// never writes.
func rtEncodeTree(nodes ...*snapshot.Node) []byte {
	var b bytes.Buffer
	b.WriteString("SFT1")
	var tmp [binary.MaxVarintLen64]byte
	uv := func(v uint64) { b.Write(tmp[:binary.PutUvarint(tmp[:], v)]) }
	sv := func(v int64) { b.Write(tmp[:binary.PutVarint(tmp[:], v)]) }
	str := func(s string) { uv(uint64(len(s))); b.WriteString(s) }
	uv(uint64(len(nodes)))
	for _, n := range nodes {
		str(n.Name)
		b.WriteByte(byte(n.Type))
		b.WriteByte(n.Flags)
		uv(uint64(n.Mode))
		uv(uint64(n.UID))
		uv(uint64(n.GID))
		sv(n.MTime)
		sv(n.CTime)
		uv(n.Inode)
		uv(n.Rdev)
		sv(n.Size)
		uv(uint64(len(n.Chunks)))
		for _, c := range n.Chunks {
			b.Write(c.ID[:])
			uv(uint64(c.Size))
		}
		b.Write(n.Hash[:])
		str(n.Target)
		b.Write(n.Subtree[:])
		uv(uint64(len(n.Xattrs)))
		for _, x := range n.Xattrs {
			str(x.Name)
			str(string(x.Value))
		}
	}
	return b.Bytes()
}

// rtAdoptTrees writes the encoded trees into a new pack of the repository
// and reopens it: startup recovery adopts the pack into the index, as it
// would a pack written by a crashed backup. It returns the reopened
// repository and the trees' IDs.
func rtAdoptTrees(t *testing.T, r *snapshot.Repo, repo string, trees ...[]byte) (*snapshot.Repo, []snapshot.ID) {
	t.Helper()
	var buf bytes.Buffer
	w := pack.NewWriter(&buf)
	var ids []snapshot.ID
	for _, tr := range trees {
		id := snapshot.Hash(tr)
		ids = append(ids, id)
		if _, err := w.Add(id, pack.KindTree, pack.CodecRaw, tr, uint32(len(tr))); err != nil {
			t.Fatal(err)
		}
	}
	pid, _, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	hexID := snapshot.ID(pid).String()
	indextest.WriteFile(t, filepath.Join(repo, "packs", hexID[:2], hexID+".pack"), buf.Bytes())
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = indextest.OpenRepo(t, repo)
	for _, id := range ids {
		if _, err := r.Index().Lookup(t.Context(), id); err != nil {
			t.Fatalf("crafted tree %s not adopted: %v", id.Short(), err)
		}
	}
	return r, ids
}

// rtCrafted returns a copy of m whose root tree is tree.
func rtCrafted(m *snapshot.Manifest, tree snapshot.ID) *snapshot.Manifest {
	c := *m
	c.Tree = tree.String()
	return &c
}

func rtDirNode(name string, sub snapshot.ID) *snapshot.Node {
	return &snapshot.Node{Name: name, Type: snapshot.TypeDir, Mode: 0o755, MTime: 1e18, Subtree: sub}
}

// rtRefusedUntouched runs an in-place restore that must be refused and
// checks that the live root (and the victim, if any) did not change.
func rtRefusedUntouched(t *testing.T, r *snapshot.Repo, repo string, m *snapshot.Manifest, o restore.Options, want string, victims ...string) error {
	t.Helper()
	before := restoretest.State(t, o.Target)
	var vbefore []map[string]string
	for _, v := range victims {
		vbefore = append(vbefore, restoretest.State(t, v))
	}
	_, err := restore.Run(t.Context(), r, m, o)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("restore: %v; want it refused with %q", err, want)
	}
	restoretest.Equal(t, "the live root after the refused restore", before, restoretest.State(t, o.Target))
	for i, v := range victims {
		restoretest.Equal(t, "the victim "+v, vbefore[i], restoretest.State(t, v))
	}
	rtNoLeftovers(t, o.Target, repo)
	return err
}

// TestCraftedTreeNames: FAULTS E1. Trees holding "..", ".", "a/b", "",
// "/etc/passwd" or a name with NUL are rejected when decoded, and an
// in-place restore of a snapshot holding one (as its root tree, or as the
// subtree of config) refuses and writes nothing.
func TestCraftedTreeNames(t *testing.T) {
	s, r, repo, m := rtSetup(t)
	bad := []string{"..", ".", "a/b", "", "/etc/passwd", "etc\x00passwd", "..\x00"}
	var trees [][]byte
	for _, name := range bad {
		leaf := rtEncodeTree(&snapshot.Node{Name: name, Type: snapshot.TypeFile, Mode: 0o644, MTime: 1e18, Hash: snapshot.Hash(nil)})
		if _, err := snapshot.DecodeTree(leaf); err == nil || !strings.Contains(err.Error(), "decode tree") {
			t.Errorf("DecodeTree accepted the name %q: %v", name, err)
		}
		trees = append(trees, leaf, rtEncodeTree(rtDirNode("config", snapshot.Hash(leaf))))
	}
	// The encoder itself is sound: the same layout with a good name decodes.
	good := rtEncodeTree(&snapshot.Node{Name: "ok", Type: snapshot.TypeFile, Mode: 0o644, MTime: 1e18, Hash: snapshot.Hash(nil)})
	if tr, err := snapshot.DecodeTree(good); err != nil || len(tr.Nodes) != 1 || tr.Nodes[0].Name != "ok" {
		t.Fatalf("the test's encoder is wrong: %v", err)
	}
	r, ids := rtAdoptTrees(t, r, repo, trees...)
	for i, name := range bad {
		leaf, top := ids[2*i], ids[2*i+1]
		if _, err := r.LoadTree(t.Context(), leaf); !isCorrupt(err) {
			t.Errorf("LoadTree of a tree named %q: %v; want a CorruptError", name, err)
		}
		for _, c := range []struct {
			where string
			tree  snapshot.ID
			scope restore.Scope
		}{
			{"root tree, full scope", leaf, rtScope(t, s, m, nil)},
			{"subtree of config, config scope", top, rtScope(t, s, m, []string{"config"})},
		} {
			t.Run(strings.ToValidUTF8(strings.ReplaceAll(name, "\x00", "NUL"), "?")+"/"+c.where, func(t *testing.T) {
				cm := rtCrafted(m, c.tree)
				o := rtOptions(s, c.scope)
				if _, err := restore.NewPlan(t.Context(), r, cm, o); !isCorrupt(err) {
					t.Errorf("plan: %v; want a CorruptError", err)
				}
				s.ResetHooks(t)
				err := rtRefusedUntouched(t, r, repo, cm, o, "decode tree")
				if !isCorrupt(err) {
					t.Errorf("restore error %T %v; want a CorruptError (exit 3)", err, err)
				}
				if runs := s.HookRuns(t); len(runs) != 0 {
					t.Errorf("hooks ran for a refused restore: %v", runs)
				}
			})
		}
	}
}

func isCorrupt(err error) bool {
	var ce *snapshot.CorruptError
	return errors.As(err, &ce) && snapshot.IsIntegrity(err)
}

// TestSymlinkedParent: FAULTS E2. The live data directory is a symlink to
// a directory outside the root; a scope holding data/config.json but not
// data itself is refused ("parent is a symlink") and nothing is written,
// there or in the root. When the symlink itself is in the scope, it is
// replaced by the snapshot's directory; the outside directory is never
// touched.
func TestSymlinkedParent(t *testing.T) {
	s, r, repo, m := rtSetup(t)
	victim := filepath.Join(t.TempDir(), "etc")
	restoretest.WriteFile(t, filepath.Join(victim, "config.json"), []byte(`{"victim": true}`+"\n"))
	restoretest.WriteFile(t, filepath.Join(victim, "app.db"), []byte("victim database\n"))
	moved := filepath.Join(t.TempDir(), "data-moved")
	if err := os.Rename(s.Path("data"), moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, s.Path("data")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		units   []string
		include []string
	}{
		{"include data/config.json", nil, []string{"/data/config.json"}},
		{"unit config", []string{"config"}, nil},
		{"unit db", []string{"db"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := rtOptions(s, rtScope(t, s, m, c.units, c.include...))
			plan, err := restore.NewPlan(t.Context(), r, m, o)
			if err != nil {
				t.Fatal(err)
			}
			var pe *restore.PlanError
			if perr := plan.Err(); !errors.As(perr, &pe) || !strings.Contains(perr.Error(), "parent is a symlink") || pe.Problems[0].Path != "data" {
				t.Fatalf("plan: %v; want a PlanError naming data: parent is a symlink", perr)
			}
			rtRefusedUntouched(t, r, repo, m, o, "parent is a symlink", victim)
		})
	}
	t.Run("the symlink in scope", func(t *testing.T) {
		vbefore := restoretest.State(t, victim)
		o := rtOptions(s, rtScope(t, s, m, nil, "/data"))
		res, err := restore.Run(t.Context(), r, m, o)
		if err != nil {
			t.Fatal(err)
		}
		restoretest.Equal(t, "the victim directory", vbefore, restoretest.State(t, victim))
		fi, err := os.Lstat(s.Path("data"))
		if err != nil || !fi.IsDir() {
			t.Fatalf("data is not a directory again: %v %v", fi, err)
		}
		snap, _ := restoretest.SnapshotState(t, r, m, false)
		in := restoretest.Under("data")
		restoretest.Equal(t, "data", restoretest.Restrict(snap, in), restoretest.Restrict(restoretest.State(t, s.Root), in))
		warned := false
		for _, w := range res.Plan.Warnings {
			warned = warned || (w.Path == "data" && strings.Contains(w.Problem, "symlink"))
		}
		if !warned {
			t.Errorf("the plan did not warn that data is a symlink now: %+v", res.Plan.Warnings)
		}
		rtNoLeftovers(t, s.Root, repo)
	})
}

// TestScopeStaysInScope: FAULTS E2's other side. A symlink in the live
// tree that the scope does not reach (logs → an outside directory, while
// config or the database is restored) is neither followed nor a reason to
// refuse: the restore runs and leaves the symlink and its target alone.
func TestScopeStaysInScope(t *testing.T) {
	for _, unit := range []string{"db", "config"} {
		t.Run(unit, func(t *testing.T) {
			s, r, repo, m := rtSetup(t)
			outside := filepath.Join(t.TempDir(), "var-log")
			if err := os.Rename(s.Path("logs"), outside); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, s.Path("logs")); err != nil {
				t.Fatal(err)
			}
			restoretest.ExecSQL(t, s.DB(), `DELETE FROM items WHERE id > 200`)
			restoretest.WriteFile(t, s.Path("config/app.json"), []byte(`{"edited": true}`+"\n"))
			obefore := restoretest.State(t, outside)
			before := restoretest.State(t, s.Root)
			o := rtOptions(s, rtScope(t, s, m, []string{unit}))
			plan, err := restore.NewPlan(t.Context(), r, m, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := plan.Err(); err != nil {
				t.Fatalf("a %s restore is refused because of logs, which is outside its scope: %v", unit, err)
			}
			if _, err := restore.Run(t.Context(), r, m, o); err != nil {
				t.Fatalf("restore: %v", err)
			}
			restoretest.Equal(t, "the outside directory", obefore, restoretest.State(t, outside))
			snap, _ := restoretest.SnapshotState(t, r, m, false)
			paths := dbPaths
			if unit == "config" {
				paths = configPaths
			}
			rtCheckScope(t, unit, snap, before, restoretest.State(t, s.Root), inScope(paths...))
			rtNoLeftovers(t, s.Root, repo)
		})
	}
}

// victimFile creates a file outside every root and returns its path and
// State-like description (content, inode, link count, mtime).
func victimFile(t *testing.T, content string) (string, func() string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim-secret")
	restoretest.WriteFile(t, p, []byte(content))
	describe := func() string {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		return string(b) + "|" + strings.Join([]string{itoa(st.Ino), itoa(uint64(st.Nlink)), itoa(uint64(st.Mtim.Nano())), itoa(uint64(st.Size))}, "|")
	}
	return p, describe
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// noInode fails if any entry below root is the inode ino.
func noInode(t *testing.T, root string, ino uint64) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && st.Ino == ino {
			t.Errorf("%s is the victim's inode %d", p, ino)
		}
		return nil
	})
}

// TestHardlinkToSymlink: FAULTS E3. A hard link whose first name is a
// symlink to a file outside the root (made with link(2), which does not
// follow the symlink), backed up and restored in place, comes back as
// symlinks; and a crafted hardlink entry naming a symlink is restored as a
// link to the symlink, as a plain file, or refused. The victim's inode is
// never linked and its content never changes. (The links live in app/, not
// at the top of the root: see TestTopLevelEntries.)
func TestHardlinkToSymlink(t *testing.T) {
	victim, describe := victimFile(t, "victim secret\n")
	var vst unix.Stat_t
	if err := unix.Lstat(victim, &vst); err != nil {
		t.Fatal(err)
	}
	vbefore := describe()
	root := filepath.Join(t.TempDir(), "live")
	links := filepath.Join(root, "app/links")
	restoretest.WriteFile(t, filepath.Join(root, "app/app.conf"), []byte("conf\n"))
	if err := os.MkdirAll(links, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(links, "a-ln")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, filepath.Join(links, "a-ln"), unix.AT_FDCWD, filepath.Join(links, "b-hl"), 0); err != nil {
		t.Fatalf("link(2) to a symlink: %v", err)
	}
	if restoretest.Ino(t, filepath.Join(links, "a-ln")) != restoretest.Ino(t, filepath.Join(links, "b-hl")) {
		t.Fatal("the two names are not one symlink inode")
	}
	r, repo := indextest.NewRepo(t)
	m, err := r.Backup(t.Context(), snapshot.BackupOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	sc, _, err := restore.ResolveScope(nil, m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T) {
		t.Helper()
		if got := describe(); got != vbefore {
			t.Errorf("the victim changed: %s, was %s", got, vbefore)
		}
		noInode(t, root, vst.Ino)
		rtNoLeftovers(t, root, repo)
	}

	t.Run("backed up", func(t *testing.T) {
		if err := os.RemoveAll(links); err != nil {
			t.Fatal(err)
		}
		if _, err := restore.Run(t.Context(), r, m, restore.Options{Target: root, Scope: sc}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"a-ln", "b-hl"} {
			l, err := os.Readlink(filepath.Join(links, n))
			if err != nil || l != victim {
				t.Errorf("app/links/%s: %q, %v; want a symlink to %s", n, l, err, victim)
			}
		}
		check(t)
	})

	content, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		content []byte
	}{
		{"crafted, claiming the victim's content", content}, // following the symlink would even verify
		{"crafted, empty", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			sub := rtEncodeTree(
				&snapshot.Node{Name: "a-ln", Type: snapshot.TypeSymlink, Mode: 0o777, MTime: 1e18, Target: victim, Size: int64(len(victim))},
				&snapshot.Node{Name: "b-hl", Type: snapshot.TypeHardlink, Mode: 0o644, MTime: 1e18, Target: "app/links/a-ln", Size: int64(len(c.content)), Hash: snapshot.Hash(c.content)},
			)
			if _, err := snapshot.DecodeTree(sub); err != nil {
				t.Fatal(err)
			}
			app := rtEncodeTree(rtDirNode("links", snapshot.Hash(sub)))
			top := rtEncodeTree(rtDirNode("app", snapshot.Hash(app)))
			var ids []snapshot.ID
			r, ids = rtAdoptTrees(t, r, repo, sub, app, top)
			cm := rtCrafted(m, ids[2])
			if err := os.RemoveAll(links); err != nil {
				t.Fatal(err)
			}
			before := restoretest.State(t, root)
			_, err := restore.Run(t.Context(), r, cm, restore.Options{Target: root, Scope: sc, KeepExtra: true})
			check(t)
			if err != nil {
				t.Logf("refused: %v", err)
				restoretest.Equal(t, "the live root after the refused restore", before, restoretest.State(t, root))
				return
			}
			if l, err := os.Readlink(filepath.Join(links, "a-ln")); err != nil || l != victim {
				t.Errorf("app/links/a-ln: %q, %v", l, err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(links, "b-hl"), &st); err != nil {
				t.Fatal(err)
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFLNK:
				if st.Ino != restoretest.Ino(t, filepath.Join(links, "a-ln")) {
					t.Errorf("app/links/b-hl is a separate symlink, not a link to app/links/a-ln")
				}
			case unix.S_IFREG:
				if b, _ := os.ReadFile(filepath.Join(links, "b-hl")); !bytes.Equal(b, c.content) {
					t.Errorf("app/links/b-hl holds %q, want the entry's own content %q", b, c.content)
				}
			default:
				t.Errorf("app/links/b-hl has mode %o", st.Mode)
			}
			t.Logf("restored app/links/b-hl with mode %o", st.Mode)
		})
	}
}

// TestPlantedSymlinkReplaced: FAULTS E4. A symlink planted at a file of
// the scope (config/app.json → an outside file) and one planted at a
// directory of the scope (config/sub → an outside directory) are replaced
// by the snapshot's entries through the swap; nothing outside changes.
func TestPlantedSymlinkReplaced(t *testing.T) {
	s, r, repo, m := rtSetup(t)
	victim, describe := victimFile(t, `{"victim": "shadow"}`+"\n")
	vbefore := describe()
	vdir := filepath.Join(t.TempDir(), "victim-dir")
	restoretest.WriteFile(t, filepath.Join(vdir, "feature.toml"), []byte("victim = true\n"))
	vdirBefore := restoretest.State(t, vdir)
	if err := os.Remove(s.Path("config/app.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, s.Path("config/app.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(s.Path("config/sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(vdir, s.Path("config/sub")); err != nil {
		t.Fatal(err)
	}
	before := restoretest.State(t, s.Root)
	res, err := restore.Run(t.Context(), r, m, rtOptions(s, rtScope(t, s, m, []string{"config"})))
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(); got != vbefore {
		t.Errorf("the victim file changed: %s, was %s", got, vbefore)
	}
	restoretest.Equal(t, "the victim directory", vdirBefore, restoretest.State(t, vdir))
	snap, _ := restoretest.SnapshotState(t, r, m, false)
	rtCheckScope(t, "planted symlinks", snap, before, restoretest.State(t, s.Root), inScope(configPaths...))
	for _, p := range []string{"config/app.json", "config/sub"} {
		fi, err := os.Lstat(s.Path(p))
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s is still a symlink: %v", p, err)
		}
		warned := false
		for _, w := range res.Plan.Warnings {
			warned = warned || (w.Path == p && strings.Contains(w.Problem, "symlink"))
		}
		if !warned {
			t.Errorf("the plan did not warn that %s is a symlink now", p)
		}
	}
	rtNoLeftovers(t, s.Root, repo)
}

// TestHardLinkedLiveFileReplaced: FAULTS E5. The live config/app.json is a
// hard link to a file outside the root: it is replaced, not written
// through; the outside file keeps its content and is left with one link.
func TestHardLinkedLiveFileReplaced(t *testing.T) {
	s, r, repo, m := rtSetup(t)
	victim, _ := victimFile(t, `{"outside": "hard link"}`+"\n")
	if err := os.Remove(s.Path("config/app.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, s.Path("config/app.json")); err != nil {
		t.Fatal(err)
	}
	vcontent, _ := os.ReadFile(victim)
	vino := restoretest.Ino(t, victim)
	before := restoretest.State(t, s.Root)
	if !strings.Contains(before["config/app.json"], "nlink=2") {
		t.Fatalf("config/app.json: %s; want two links", before["config/app.json"])
	}
	if _, err := restore.Run(t.Context(), r, m, rtOptions(s, rtScope(t, s, m, []string{"config"}))); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, vcontent) {
		t.Errorf("the outside file was written through: %q", b)
	}
	var st unix.Stat_t
	if err := unix.Lstat(victim, &st); err != nil || st.Nlink != 1 || st.Ino != vino {
		t.Errorf("the outside file: nlink %d ino %d (was %d), %v; want one link left", st.Nlink, st.Ino, vino, err)
	}
	if restoretest.Ino(t, s.Path("config/app.json")) == vino {
		t.Error("config/app.json is still the outside file's inode")
	}
	snap, _ := restoretest.SnapshotState(t, r, m, false)
	rtCheckScope(t, "hard-linked live file", snap, before, restoretest.State(t, s.Root), inScope(configPaths...))
	rtNoLeftovers(t, s.Root, repo)
}

// fuseRoot is an empty read-only file system for the FUSE target case.
type fuseRoot struct{ gofs.Inode }

// TestForbiddenTargets: FAULTS E7. "/", kernel filesystems, the repository
// or a directory inside it, and a FUSE mount are refused before anything
// happens; so are the same places reached through a symlink.
func TestForbiddenTargets(t *testing.T) {
	s, r, repo, m := rtSetup(t)
	// An include with a slash: a plan that is not refused only looks at
	// config/ of the target (a unit path like "config" makes the planner
	// read every directory below the target; see TestScopeStaysInScope).
	sc := rtScope(t, s, m, nil, "/config/app.json")
	links := t.TempDir()
	link := func(name, to string) string {
		p := filepath.Join(links, name)
		if err := os.Symlink(to, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, rootStagingErr := os.Lstat("/" + snapshot.StagingDir)
	cases := []struct{ name, target, want string }{
		{"/", "/", "refusing"},
		{"/proc", "/proc", "refusing"},
		{"/proc/self", "/proc/self", "refusing"},
		{"/sys", "/sys", "refusing"},
		{"the repository", repo, "inside the repository"},
		{"inside the repository", filepath.Join(repo, "snapshots"), "inside the repository"},
		{"the repository with dot-dot", filepath.Join(repo, "snapshots", ".."), "inside the repository"},
		{"a symlink to the repository", link("repo", repo), "repository"},
		{"a symlink to /", link("slash", "/"), "/"},
		{"a symlink to /proc", link("proc", "/proc"), "refusing"},
	}
	if mnt, stop := rtMountFUSE(t); mnt != "" {
		defer stop()
		cases = append(cases, struct{ name, target, want string }{"a FUSE mount", mnt, "FUSE"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := rtAuditSeq(t, repo)
			o := rtOptions(s, sc)
			o.Target = c.target
			s.ResetHooks(t)
			plan, err := restore.NewPlan(t.Context(), r, m, o)
			if err == nil {
				// Not refused: never run it (it would write there).
				t.Fatalf("NewPlan into %s was not refused (%d actions, errors %v)", c.target, len(plan.Actions), plan.Errors)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("plan error %q; want %q", err, c.want)
			}
			_, err = restore.Run(t.Context(), r, m, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("restore into %s: %v; want it refused with %q", c.target, err, c.want)
			}
			if runs := s.HookRuns(t); len(runs) != 0 {
				t.Errorf("hooks ran: %v", runs)
			}
			for _, e := range rtAudit(t, repo, seq) {
				if e.Op != "restore" || !strings.HasPrefix(e.Outcome, "failed") {
					t.Errorf("audit event %s %s after a refused restore", e.Op, e.Outcome)
				}
			}
			if names := indextest.Names(t, filepath.Join(repo, "restores")); len(names) > 0 {
				t.Errorf("restore pointers: %v", names)
			}
			if _, err := os.Lstat("/" + snapshot.StagingDir); err == nil && rootStagingErr != nil {
				t.Errorf("/%s was created", snapshot.StagingDir)
			}
		})
	}
}

// rtMountFUSE mounts an empty FUSE file system and returns its mountpoint
// and a function that unmounts it; "" when FUSE is not available here.
func rtMountFUSE(t *testing.T) (string, func()) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Logf("skipping the FUSE target case: /dev/fuse is not available (%v)", err)
		return "", nil
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := gofs.Mount(mnt, &fuseRoot{}, &gofs.Options{})
	if err != nil {
		t.Logf("skipping the FUSE target case: mount failed: %v", err)
		return "", nil
	}
	return mnt, func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	}
}

// TestSpecialFiles: FAULTS E15. As root without Special, a setuid bit is
// stripped and a device node is not created, each with a warning, and the
// restore still succeeds; with Special both come back exactly.
func TestSpecialFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a device node and a setuid file")
	}
	root := filepath.Join(t.TempDir(), "live")
	restoretest.WriteFile(t, filepath.Join(root, "bin/tool"), []byte("#!/bin/sh\necho tool\n"))
	restoretest.WriteFile(t, filepath.Join(root, "etc/app.conf"), []byte("conf\n"))
	if err := os.Chmod(filepath.Join(root, "bin/tool"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, "dev/null1"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("cannot create a device node here: %v", err)
	}
	if err := os.Chmod(filepath.Join(root, "dev/null1"), 0o666); err != nil { // mknod applies the umask
		t.Fatal(err)
	}
	r, repo := indextest.NewRepo(t)
	m, err := r.Backup(t.Context(), snapshot.BackupOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	sc, _, err := restore.ResolveScope(nil, m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := restoretest.SnapshotState(t, r, m, true)
	if !strings.HasPrefix(snap["dev/null1"], "chardev mode=0666") || !strings.Contains(snap["dev/null1"], "rdev=1:3") || !strings.Contains(snap["bin/tool"], "mode=4755") {
		t.Fatalf("the snapshot lacks the device or the setuid bit: %q %q", snap["dev/null1"], snap["bin/tool"])
	}
	mutate := func() {
		os.Remove(filepath.Join(root, "dev/null1"))
		os.Chmod(filepath.Join(root, "bin/tool"), 0o700)
		restoretest.WriteFile(t, filepath.Join(root, "etc/app.conf"), []byte("changed\n"))
	}

	t.Run("without special", func(t *testing.T) {
		mutate()
		res, err := restore.Run(t.Context(), r, m, restore.Options{Target: root, Scope: sc})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		after := restoretest.State(t, root)
		if _, ok := after["dev/null1"]; ok {
			t.Errorf("the device node was created without Special: %s", after["dev/null1"])
		}
		if !strings.Contains(after["bin/tool"], "mode=0755") {
			t.Errorf("bin/tool: %s; want mode 0755, the setuid bit stripped", after["bin/tool"])
		}
		warned := map[string]string{}
		for _, w := range res.Warnings {
			warned[w.Path] += w.Problem
		}
		if !strings.Contains(warned["bin/tool"], "setuid") || !strings.Contains(warned["dev/null1"], "device") {
			t.Errorf("warnings %+v; want bin/tool setuid and dev/null1 device", res.Warnings)
		}
		in := restoretest.Not(restoretest.Under("dev/null1", "bin/tool"))
		restoretest.Equal(t, "the rest", restoretest.Restrict(snap, in), restoretest.Restrict(after, in))
		rtNoLeftovers(t, root, repo)
	})

	t.Run("with special", func(t *testing.T) {
		mutate()
		if _, err := restore.Run(t.Context(), r, m, restore.Options{Target: root, Scope: sc, Special: true}); err != nil {
			t.Fatalf("restore: %v", err)
		}
		restoretest.Equal(t, "the live root", snap, restoretest.State(t, root))
		rtNoLeftovers(t, root, repo)
	})
}

// TestParentSwappedDuringSwap: while the swap runs, the live config/
// directory is moved away and a symlink to a victim directory outside the
// root takes its name. Every later step reaches config/ through no-follow
// descriptors, so the restore fails (and its rollback stops at the same
// wall) without writing into the victim. Once the directory is put back,
// Recover finishes the rollback: the live system is exactly as before.
// FAULTS E6
func TestParentSwappedDuringSwap(t *testing.T) {
	s, r, repo, m := rtSetup(t)
	s.Mutate(t)
	before := restoretest.State(t, s.Root)
	victim := filepath.Join(t.TempDir(), "victim")
	restoretest.WriteFile(t, filepath.Join(victim, "app.json"), []byte("victim's own\n"))
	vbefore := restoretest.State(t, victim)
	cfg, moved := s.Path("config"), s.Path("config.moved")
	o := rtOptions(s, rtScope(t, s, m, nil))
	o.Hook = func(p string) {
		if p == "restore-swap-1" {
			if err := os.Rename(cfg, moved); err != nil {
				t.Errorf("move config away: %v", err)
			}
			if err := os.Symlink(victim, cfg); err != nil {
				t.Errorf("plant the symlink: %v", err)
			}
		}
	}
	_, err := restore.Run(t.Context(), r, m, o)
	var rb *restore.RolledBackError
	var ce *restore.CriticalError
	if !errors.As(err, &rb) && !errors.As(err, &ce) {
		t.Fatalf("restore with config/ swapped for a symlink mid-swap: %v; want it to fail and roll back (or stop, critical)", err)
	}
	t.Logf("the restore: %v", err)
	restoretest.Equal(t, "the victim directory", vbefore, restoretest.State(t, victim))
	// The administrator puts the directory back; the next start finishes.
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Recover(t.Context(), r, restore.Options{}); err != nil {
		t.Fatalf("recover: %v", err)
	}
	restoretest.Equal(t, "the live root after recovery", before, restoretest.State(t, s.Root))
	restoretest.Equal(t, "the victim directory", vbefore, restoretest.State(t, victim))
	rtNoLeftovers(t, s.Root, repo)
}
