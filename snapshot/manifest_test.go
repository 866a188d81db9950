package snapshot_test

// The manifest as an external contract: its root hash recomputed from the
// JSON file alone (docs/root-hash.md), item hashes checked with b3sum, and
// real manifests and profiles validated against docs/schemas.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/zeebo/blake3"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

// rtMF is the part of a manifest file the root-hash recipe reads, decoded
// independently of the engine's types.
type rtMF struct {
	BackupID string     `json:"backup_id"`
	RootHash string     `json:"root_hash"`
	Items    []rtMFItem `json:"items"`
}

// rtMFItem is one manifest item as the recipe reads it.
type rtMFItem struct {
	Path      string  `json:"path"`
	PathB64   *string `json:"path_b64"`
	Type      string  `json:"type"`
	Size      int64   `json:"size"`
	Blake3    string  `json:"blake3"`
	Target    *string `json:"target"`
	TargetB64 *string `json:"target_b64"`
}

func rtReadMF(t *testing.T, file string) rtMF {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m rtMF
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return m
}

func rtRaw(s string, b64 *string) ([]byte, error) {
	if b64 != nil {
		return base64.StdEncoding.Strict().DecodeString(*b64)
	}
	return []byte(s), nil
}

// rtRecomputeRootHash implements docs/root-hash.md from scratch: raw paths,
// byte-wise sort, `path NUL type NUL size NUL value LF`, unkeyed BLAKE3-256.
// It also checks what the framing relies on (unique paths, symlink size =
// target length, 64-hex blake3).
func rtRecomputeRootHash(m rtMF) (string, error) {
	type line struct{ path, data []byte }
	lines := make([]line, 0, len(m.Items))
	seen := map[string]bool{}
	for _, it := range m.Items {
		p, err := rtRaw(it.Path, it.PathB64)
		if err != nil {
			return "", fmt.Errorf("%q: path_b64: %w", it.Path, err)
		}
		if seen[string(p)] {
			return "", fmt.Errorf("duplicate path %q", p)
		}
		seen[string(p)] = true
		var val []byte
		switch it.Type {
		case "file", "hardlink":
			if _, err := hex.DecodeString(it.Blake3); err != nil || len(it.Blake3) != 64 || strings.ToLower(it.Blake3) != it.Blake3 {
				return "", fmt.Errorf("%q: blake3 %q is not 64 lowercase hex digits", p, it.Blake3)
			}
			val = []byte(it.Blake3)
		case "symlink":
			tgt := ""
			if it.Target != nil {
				tgt = *it.Target
			}
			if val, err = rtRaw(tgt, it.TargetB64); err != nil {
				return "", fmt.Errorf("%q: target_b64: %w", p, err)
			}
			if int64(len(val)) != it.Size {
				return "", fmt.Errorf("%q: symlink size %d, target has %d bytes", p, it.Size, len(val))
			}
		case "dir", "fifo", "device":
		default:
			return "", fmt.Errorf("%q: unknown type %q", p, it.Type)
		}
		var b bytes.Buffer
		b.Write(p)
		b.WriteByte(0)
		b.WriteString(it.Type)
		b.WriteByte(0)
		b.WriteString(strconv.FormatInt(it.Size, 10))
		b.WriteByte(0)
		b.Write(val)
		b.WriteByte('\n')
		lines = append(lines, line{p, b.Bytes()})
	}
	sort.Slice(lines, func(i, j int) bool { return bytes.Compare(lines[i].path, lines[j].path) < 0 })
	h := blake3.New()
	for _, l := range lines {
		h.Write(l.data)
	}
	return "blake3:" + hex.EncodeToString(h.Sum(nil)), nil
}

func rtManifestFile(repoDir, id string) string {
	return filepath.Join(repoDir, "snapshots", id+".json")
}

// rtItemRawPath decodes an item's raw path for the b3sum check.
func rtItemRawPath(t *testing.T, path string, b64 *string) string {
	t.Helper()
	p, err := rtRaw(path, b64)
	if err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// TestRootHashIndependent recomputes root hashes from the manifest files on
// disk without the engine, checks item hashes against the source (and,
// where b3sum is installed, against b3sum on the restored files), and
// shows that the root hash covers content only: a copy with other mtimes
// and modes hashes the same, a one-byte change does not. FAULTS D6
func TestRootHashIndependent(t *testing.T) {
	r, repoDir := indextest.NewRepo(t)
	src := t.TempDir()
	spec := rtMainSpec(r.Config().Chunker, false, rtIsRoot())
	rtBuild(t, src, spec, rtBase)
	m1 := rtBackup(t, r, snapshot.BackupOptions{Root: src})

	mf := rtReadMF(t, rtManifestFile(repoDir, m1.BackupID))
	got, err := rtRecomputeRootHash(mf)
	if err != nil {
		t.Fatal(err)
	}
	if got != mf.RootHash || got != m1.RootHash {
		t.Fatalf("recomputed root hash %s; manifest file says %s, Backup returned %s", got, mf.RootHash, m1.RootHash)
	}
	var withB64 int
	for _, it := range mf.Items {
		if it.PathB64 != nil {
			withB64++
		}
		if it.Type != "file" {
			continue
		}
		p := rtItemRawPath(t, it.Path, it.PathB64)
		if want := rtFileB3(t, filepath.Join(src, p)); it.Blake3 != want {
			t.Errorf("%q: item blake3 %s, source file hashes to %s", p, it.Blake3, want)
		}
	}
	if withB64 != 5 { // \xff, \xfe, dir\xffinvalid, dir\xffinvalid/file\nx, link\nto\xffname
		t.Errorf("%d items carry path_b64; the tree has five invalid-UTF-8 paths", withB64)
	}

	t.Run("b3sum", func(t *testing.T) {
		b3sum, err := exec.LookPath("b3sum")
		if err != nil {
			t.Skip("b3sum is not on PATH: the check of restored files with the standard tool is skipped (install it with `apt-get install b3sum` or `cargo install b3sum`)")
		}
		dst := filepath.Join(t.TempDir(), "restore")
		rtWritableOnCleanup(t, dst)
		rtRestore(t, r, m1, snapshot.RestoreOptions{Target: dst})
		n := 0
		for _, it := range mf.Items {
			if it.Type != "file" && it.Type != "hardlink" {
				continue
			}
			p := filepath.Join(dst, rtItemRawPath(t, it.Path, it.PathB64)) // absolute: no leading '-'
			out, err := exec.Command(b3sum, "--no-names", p).Output()
			if err != nil {
				t.Fatalf("b3sum %q: %v", p, err)
			}
			if sum := strings.TrimSpace(string(out)); sum != it.Blake3 {
				t.Errorf("b3sum %q = %s, manifest item says %s", p, sum, it.Blake3)
			}
			n++
		}
		if n < 20 {
			t.Errorf("checked only %d files", n)
		}
	})

	// The same content elsewhere, with other mtimes and one mode changed.
	src2 := t.TempDir()
	rtBuild(t, src2, spec, rtBase.Add(36*time.Hour+777))
	if err := os.Chmod(filepath.Join(src2, "files/small"), 0o600); err != nil {
		t.Fatal(err)
	}
	m2 := rtBackup(t, r, snapshot.BackupOptions{Root: src2})
	if m2.RootHash != m1.RootHash {
		t.Errorf("identical content under %s: root hash %s, original %s", src2, m2.RootHash, m1.RootHash)
	}
	if m2.Tree == m1.Tree {
		t.Errorf("tree ids equal although mtimes differ: the tree should cover metadata")
	}
	// One byte changed, size kept.
	f := filepath.Join(src2, "names/\xff")
	b, _ := os.ReadFile(f)
	b[0] ^= 1
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m3 := rtBackup(t, r, snapshot.BackupOptions{Root: src2})
	if m3.RootHash == m1.RootHash {
		t.Errorf("a one-byte change kept the root hash %s", m3.RootHash)
	}
	for _, m := range []*snapshot.Manifest{m2, m3} {
		got, err := rtRecomputeRootHash(rtReadMF(t, rtManifestFile(repoDir, m.BackupID)))
		if err != nil || got != m.RootHash {
			t.Errorf("%s: recomputed %s (%v), manifest %s", m.BackupID, got, err, m.RootHash)
		}
	}
}

// TestRootHashDocExample checks the recipe against docs/root-hash.md's
// worked example and its empty-list value, with both this test's
// implementation and the engine's.
func TestRootHashDocExample(t *testing.T) {
	file := filepath.Join("..", "docs", "schemas", "examples", "manifest.json")
	mf := rtReadMF(t, file)
	const want = "blake3:8852603fd67a8028ab5cd937e4dd031ca8ad3c58d0f97b3855fb8b9e9b6c700d"
	if got, err := rtRecomputeRootHash(mf); err != nil || got != want || mf.RootHash != want {
		t.Errorf("doc example: recomputed %s (%v), file says %s, doc says %s", got, err, mf.RootHash, want)
	}
	b, _ := os.ReadFile(file)
	var m snapshot.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if got := snapshot.RootHash(m.Items); got != want {
		t.Errorf("engine RootHash of the doc example: %s, want %s", got, want)
	}
	const empty = "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
	if got, _ := rtRecomputeRootHash(rtMF{}); got != empty || snapshot.RootHash(nil) != empty {
		t.Errorf("empty item list: recomputed %s, engine %s, doc %s", got, snapshot.RootHash(nil), empty)
	}
	// The recipe refuses what would break its framing.
	tgt := "x"
	bad := rtMF{}
	bad.Items = append(bad.Items, rtMFItem{Path: "l", Type: "symlink", Size: 3, Target: &tgt})
	if _, err := rtRecomputeRootHash(bad); err == nil {
		t.Errorf("a symlink whose size is not its target length was accepted")
	}
}

// rtSchema compiles a schema of docs/schemas with format and content
// assertions on.
func rtSchema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	file, err := filepath.Abs(filepath.Join("..", "docs", "schemas", name))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	s, err := c.Compile(file)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func rtValidate(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// rtErrReader fails every read.
type rtErrReader struct{}

func (rtErrReader) Read([]byte) (int, error) { return 0, errors.New("injected EIO") }

// TestManifestSchema validates real manifest files (weird names with
// path_b64/target_b64, a partial snapshot with warnings, incremental and
// differential ones with a parent, a unit selection) against
// docs/schemas/manifest.schema.json, and checks that the schema does
// reject broken manifests. FAULTS C7 D2 D6
func TestManifestSchema(t *testing.T) {
	s := rtSchema(t, "manifest.schema.json")
	clk := newRTClock()
	r, repoDir := indextest.NewRepo(t, func(o *snapshot.Options) { o.Now = clk.Now })
	src := t.TempDir()
	rtBuild(t, src, rtMainSpec(r.Config().Chunker, false, rtIsRoot()), rtBase)

	var ms []*snapshot.Manifest
	full := rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull, Tags: []string{"nightly", "before upgrade"}})
	ms = append(ms, full)
	if err := os.WriteFile(filepath.Join(src, "files/one"), []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	inc := rtBackup(t, r, snapshot.BackupOptions{Root: src})
	if inc.Strategy != snapshot.StrategyIncremental || inc.Parent != full.BackupID {
		t.Fatalf("incremental: %s parent %q", inc.Strategy, inc.Parent)
	}
	ms = append(ms, inc)
	ms = append(ms, rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyDifferential}))

	// Partial: two unreadable files (one with an invalid-UTF-8 name), one
	// that vanishes before it is opened.
	partial := rtBackup(t, r, snapshot.BackupOptions{Root: src, Strategy: snapshot.StrategyFull,
		WrapReader: func(rel string, rd io.Reader) io.Reader {
			if rel == "names/\xff" || rel == "files/exec" {
				return rtErrReader{}
			}
			return rd
		},
		BeforeOpen: func(rel string) {
			if rel == "names/quote'single" {
				os.Remove(filepath.Join(src, rel))
			}
		}})
	if !partial.Partial || len(partial.Warnings) != 3 {
		t.Fatalf("partial snapshot: partial=%v warnings %+v", partial.Partial, partial.Warnings)
	}
	var b64Warn bool
	for _, w := range partial.Warnings {
		if w.PathB64 == base64.StdEncoding.EncodeToString([]byte("names/\xff")) && strings.Contains(w.Problem, "injected EIO") {
			b64Warn = true
		}
	}
	if !b64Warn {
		t.Errorf("no warning with path_b64 for names/\\xff: %+v", partial.Warnings)
	}
	items := rtItems(t, partial)
	for _, p := range []string{"names/\xff", "files/exec", "names/quote'single"} {
		if _, ok := items[p]; ok {
			t.Errorf("partial snapshot lists the skipped %q", p)
		}
	}
	ms = append(ms, partial)

	// A profile-style unit selection.
	ms = append(ms, rtBackup(t, r, snapshot.BackupOptions{Root: src, Paths: []string{"files/", "links"},
		Includes: []string{"config", "logs"}, UnitPaths: map[string][]string{"config": {"files/"}, "logs": {"links"}}, Excludes: []string{"keys", "models"}, Name: "wf"}))

	for _, m := range ms {
		b, err := os.ReadFile(rtManifestFile(repoDir, m.BackupID))
		if err != nil {
			t.Fatal(err)
		}
		if err := rtValidate(s, b); err != nil {
			t.Errorf("manifest %s (%s) does not match the schema:\n%v", m.BackupID, m.Strategy, err)
		}
		mf := rtReadMF(t, rtManifestFile(repoDir, m.BackupID))
		if got, err := rtRecomputeRootHash(mf); err != nil || got != m.RootHash {
			t.Errorf("%s: recomputed root hash %s (%v), manifest %s", m.BackupID, got, err, m.RootHash)
		}
	}

	ex, err := os.ReadFile(filepath.Join("..", "docs", "schemas", "examples", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rtValidate(s, ex); err != nil {
		t.Errorf("docs example manifest does not match the schema: %v", err)
	}

	// The schema is not vacuous: broken variants of a real manifest fail.
	good, _ := os.ReadFile(rtManifestFile(repoDir, inc.BackupID))
	for name, mutate := range map[string]func(map[string]any){
		"unknown field":       func(m map[string]any) { m["extra"] = 1 },
		"missing tree":        func(m map[string]any) { delete(m, "tree") },
		"full with parent":    func(m map[string]any) { m["strategy"] = "full" },
		"uppercase root hash": func(m map[string]any) { m["root_hash"] = strings.ToUpper(m["root_hash"].(string)) },
		"item with dot-dot":   func(m map[string]any) { m["items"].([]any)[0].(map[string]any)["path"] = "../etc/passwd" },
		"dir with blake3": func(m map[string]any) {
			m["items"] = append(m["items"].([]any), map[string]any{"path": "zz", "type": "dir", "size": 0, "blake3": strings.Repeat("0", 64)})
		},
		"bad base64": func(m map[string]any) {
			m["items"] = append(m["items"].([]any), map[string]any{"path": "zz", "path_b64": "!!!!", "type": "dir", "size": 0})
		},
	} {
		var doc map[string]any
		if err := json.Unmarshal(good, &doc); err != nil {
			t.Fatal(err)
		}
		mutate(doc)
		b, _ := json.Marshal(doc)
		if err := rtValidate(s, b); err == nil {
			t.Errorf("schema accepted a manifest with %s", name)
		}
	}
}

// TestProfileSchema validates profiles against
// docs/schemas/profile.schema.json: one produced from snapshot.Profile, the
// docs example, and a table of documents on which ParseProfile and the
// schema must agree.
func TestProfileSchema(t *testing.T) {
	s := rtSchema(t, "profile.schema.json")
	no := false
	p := snapshot.Profile{
		Name: "wf",
		Root: "/var/lib/wirthforge",
		Units: map[string]snapshot.Unit{
			"config": {Paths: []string{"config/", "data/config.json"}},
			"db":     {Paths: []string{"data/wirthforge.db"}, SQLite: true},
			"models": {Paths: []string{"models/"}, Default: &no},
			"logs":   {Paths: []string{"logs/"}},
			"keys":   {Paths: []string{"keys/"}, Guarded: true},
		},
		Exclude: []string{"**/*.tmp"},
		Hooks:   &snapshot.Hooks{Stop: "systemctl stop wf", Start: "systemctl start wf", Smoke: "wf --verify", TimeoutS: 60},
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := rtValidate(s, b); err != nil {
		t.Errorf("profile marshalled from snapshot.Profile does not match the schema:\n%s\n%v", b, err)
	}
	if back, err := snapshot.ParseProfile(b); err != nil || back.Root != p.Root || len(back.Units) != 5 {
		t.Errorf("ParseProfile of a marshalled profile: %v", err)
	}
	// Without the optional parts.
	b, _ = json.Marshal(snapshot.Profile{Name: "x", Root: "/r", Units: map[string]snapshot.Unit{"a": {Paths: []string{"a"}}}})
	if err := rtValidate(s, b); err != nil {
		t.Errorf("minimal profile %s does not match the schema: %v", b, err)
	}

	ex, err := os.ReadFile(filepath.Join("..", "docs", "schemas", "examples", "profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rtValidate(s, ex); err != nil {
		t.Errorf("docs example profile does not match the schema: %v", err)
	}
	if _, err := snapshot.ParseProfile(ex); err != nil {
		t.Errorf("ParseProfile rejects the docs example: %v", err)
	}

	// ParseProfile and the schema agree.
	const unitTmpl = `{"name":"wf","root":"/srv/app","units":{"u":{"paths":[%s]}}}`
	for _, tc := range []struct {
		doc string
		ok  bool
	}{
		{fmt.Sprintf(unitTmpl, `"config/"`), true},
		{fmt.Sprintf(unitTmpl, `"data/app..1.log"`), true}, // ".." inside a name is not a parent reference
		{fmt.Sprintf(unitTmpl, `"..hidden"`), true},
		{fmt.Sprintf(unitTmpl, `"/etc"`), false},
		{fmt.Sprintf(unitTmpl, `"../etc"`), false},
		{fmt.Sprintf(unitTmpl, `"a/../../etc"`), false},
		{fmt.Sprintf(unitTmpl, `".."`), false},
		{fmt.Sprintf(unitTmpl, ``), false},
		{`{"name":"wf","root":"relative","units":{"u":{"paths":["a"]}}}`, false},
		{`{"name":"wf","root":"/r","units":{}}`, false},
		{`{"name":"wf","root":"/r","units":{"Config":{"paths":["a"]}}}`, false},
		{`{"name":"wf","root":"/r","units":{"u":{"paths":["a"],"colour":"red"}}}`, false},
		{`{"name":"wf","root":"/r","units":{"u":{"paths":["a"]}},"extra":true}`, false},
		{`{"name":"w f","root":"/r","units":{"u":{"paths":["a"]}}}`, false},
	} {
		_, perr := snapshot.ParseProfile([]byte(tc.doc))
		serr := rtValidate(s, []byte(tc.doc))
		if (perr == nil) != tc.ok || (serr == nil) != tc.ok {
			t.Errorf("%s: ParseProfile err %v, schema err %v; want accepted=%v by both", tc.doc, perr, serr, tc.ok)
		}
	}
}

// TestManifestForwardCompat: a manifest written by a later snapforge, with
// fields this build does not know at the top level and in its items, is
// read, verified and restored all the same (the root hash covers only the
// item fields known here). One that names in `requires` something this
// build does not know is refused as needing a newer snapforge, not as
// damaged, and the repository's other snapshots stay usable.
func TestManifestForwardCompat(t *testing.T) {
	ctx := t.Context()
	r, dir := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("alpha\n"))
	indextest.WriteFile(t, filepath.Join(src, "d", "b.bin"), indextest.RandomBytes(3, 300<<10))
	m1, err := r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	rewrite := func(id string, mutate func(map[string]any)) {
		t.Helper()
		name := rtManifestFile(dir, id)
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		mutate(doc)
		if b, err = json.Marshal(doc); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(m1.BackupID, func(doc map[string]any) {
		doc["future_top"] = map[string]any{"x": 1}
		doc["source"].(map[string]any)["future_source"] = "y"
		for _, it := range doc["items"].([]any) {
			it.(map[string]any)["future_item"] = []int{1, 2}
		}
	})
	r = indextest.OpenRepo(t, dir)
	list, err := r.Snapshots(ctx)
	if err != nil || len(list) != 2 || list[0].Err != nil || list[1].Err != nil {
		t.Fatalf("snapshots with unknown fields: %+v, %v; want both readable", list, err)
	}
	rep, err := r.Verify(ctx, []string{m1.BackupID}, snapshot.VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("verify of a snapshot with unknown fields: %+v, %v", rep, err)
	}
	m, err := r.Resolve(ctx, m1.BackupID)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: out}); err != nil {
		t.Fatal(err)
	}
	indextest.CompareDigests(t, indextest.Digest(t, src, nil), indextest.Digest(t, out, nil))
	r.Close()

	rewrite(m1.BackupID, func(doc map[string]any) { doc["requires"] = []string{"future-encoding"} })
	r = indextest.OpenRepo(t, dir)
	list, err = r.Snapshots(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("snapshots: %+v, %v", list, err)
	}
	var ne *snapshot.NewerError
	if e := list[0].Err; e == nil || !errors.As(e, &ne) || ne.Feature != "future-encoding" ||
		!strings.Contains(e.Error(), "needs a newer snapforge") || strings.Contains(e.Error(), "damaged") {
		t.Errorf("a snapshot requiring an unknown feature: %v; want it refused as needing a newer snapforge", e)
	}
	if list[1].Err != nil || list[1].BackupID != m2.BackupID {
		t.Errorf("the other snapshot: %+v", list[1])
	}
	if rep, err := r.Verify(ctx, []string{m2.BackupID}, snapshot.VerifyOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Errorf("verify of the other snapshot: %+v, %v", rep, err)
	}
	// A verify of everything skips it with a warning: not damage, and no
	// verdict recorded for it (a newer build's stands).
	os.Remove(filepath.Join(dir, "verify", m1.BackupID+".json"))
	rep, err = r.Verify(ctx, nil, snapshot.VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() || len(rep.Snapshots) != 1 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "skipped: it needs a newer snapforge") {
		t.Errorf("verify of all: %+v, %v; want the newer snapshot skipped with a warning", rep, err)
	}
	if _, ok := r.VerifyRecordOf(m1.BackupID); ok {
		t.Errorf("a verify record was written for a snapshot this build cannot read")
	}
	if snapshot.IsIntegrity(list[0].Err) {
		t.Errorf("needing a newer snapforge counts as damage (exit 3)")
	}
}

// TestManifestChangedOnDisk: a Repo that stays open (the mount's owner runs
// every client's command on one) answers from its cached manifests only
// while their files are the ones they were read from. A manifest replaced
// with garbage, or edited in place, after it was cached reads as damaged,
// to verify too, exactly as to a process that opens the repository now;
// put back, it reads as before.
func TestManifestChangedOnDisk(t *testing.T) {
	ctx := t.Context()
	r, dir := indextest.NewRepo(t)
	src := t.TempDir()
	indextest.WriteFile(t, filepath.Join(src, "f.txt"), []byte("v1\n"))
	m, err := r.Backup(ctx, snapshot.BackupOptions{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	name := rtManifestFile(dir, m.BackupID)
	good, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, wantDamaged bool) {
		t.Helper()
		list, err := r.Snapshots(ctx)
		if err != nil || len(list) != 1 {
			t.Fatalf("%s: snapshots %+v, %v", what, list, err)
		}
		var de *snapshot.DamagedError
		if got := errors.As(list[0].Err, &de); got != wantDamaged {
			t.Errorf("%s: listed with error %v; want damaged: %v", what, list[0].Err, wantDamaged)
		}
		_, err = r.LoadManifest(m.BackupID)
		if got := errors.As(err, &de); got != wantDamaged {
			t.Errorf("%s: LoadManifest: %v; want damaged: %v", what, err, wantDamaged)
		}
		rep, err := r.Verify(ctx, nil, snapshot.VerifyOptions{})
		if err != nil || rep.OK() == wantDamaged {
			t.Errorf("%s: verify: %+v, %v; want OK: %v", what, rep, err, !wantDamaged)
		}
	}
	check("as written", false)
	// Replaced by garbage (a new inode), after it was cached.
	if err := os.WriteFile(name+".new", []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name+".new", name); err != nil {
		t.Fatal(err)
	}
	check("replaced by garbage", true)
	// Put back.
	if err := os.WriteFile(name+".new", good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name+".new", name); err != nil {
		t.Fatal(err)
	}
	check("put back", false)
	// Edited in place, same size: one byte of an item's hash.
	i := bytes.Index(good, []byte(`"blake3":"`)) + len(`"blake3":"`)
	if i < len(`"blake3":"`) {
		t.Fatalf("no blake3 field in %s", good)
	}
	edited := bytes.Clone(good)
	edited[i] ^= 1
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(edited, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	check("edited in place", true)
}

// TestDisplayNameInjective: no two names print alike (acceptance run 3: a
// name holding the byte 0xff and one spelled `inv\xff` both printed as
// inv\xff, a newline and a literal `\n` alike). Plain names print as they
// are; the manifest keeps its own form (path_b64 is the name).
func TestDisplayNameInjective(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{"plain name.txt", "plain name.txt"},
		{"héllo wörld", "héllo wörld"},
		{"inv\xff", `inv\xff`},
		{`inv\xff`, `inv\\xff`},
		{"a\nb", `a\nb`},
		{`a\nb`, `a\\nb`},
		{"tab\there", `tab\there`},
		{"ideographic\u3000space", "ideographic\u3000space"}, // spaces of every script print as they are
		{"nbsp\u00a0", "nbsp\u00a0"},
		{`quote"and\`, `quote\"and\\`},
		{`C:\dir`, `C:\\dir`},
	} {
		if got := snapshot.DisplayName(c.raw); got != c.want {
			t.Errorf("DisplayName(%q) = %q, want %q", c.raw, got, c.want)
		}
	}
	it := snapshot.NewItem("inv\xff", &snapshot.Node{Type: snapshot.TypeDir})
	if it.Path != `inv\xff` || it.RawPath() != "inv\xff" {
		t.Errorf("manifest item of a non-UTF-8 name: path %q, raw %q", it.Path, it.RawPath())
	}
	if it := snapshot.NewItem(`inv\xff`, &snapshot.Node{Type: snapshot.TypeDir}); it.Path != `inv\xff` || it.PathB64 != "" {
		t.Errorf("manifest item of a UTF-8 name with a backslash: %+v", it)
	}
	// Printing such pairs (diff, warnings, problems): from the exact name,
	// not from its display form, which would be escaped twice.
	raw, lit := snapshot.NewItem("inv\xff", &snapshot.Node{}), snapshot.NewItem(`inv\xff`, &snapshot.Node{})
	if a, b := snapshot.Shown(raw.Path, raw.PathB64), snapshot.Shown(lit.Path, lit.PathB64); a != `inv\xff` || b != `inv\\xff` {
		t.Errorf("shown: %q and %q, want inv\\xff and inv\\\\xff", a, b)
	}
}
