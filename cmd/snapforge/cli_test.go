package main

// Tests of the CLI contract (DESIGN.md, "CLI contract"), run as real
// processes: TestMain re-executes this test binary as the snapforge command
// when $SNAPFORGE_TEST_MAIN is 1, so every test drives the real binary (built
// with -race when the tests are) against real repositories in temporary
// directories, and sees real exit codes and output.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	_ "modernc.org/sqlite"

	"snapforge/index/indextest"
	"snapforge/snapshot"
	"snapforge/snapshot/b3"
	"snapforge/snapshot/pack"
)

const (
	envTestMain = "SNAPFORGE_TEST_MAIN" // "1": this process is the snapforge command
	envTestHold = "SNAPFORGE_TEST_HOLD" // "1": open $SNAPFORGE_REPO, say "holding", sleep until killed
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envTestHold) == "1":
		os.Exit(holdRepository())
	case os.Getenv(envTestMain) == "1":
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// holdRepository opens the repository exactly as a command does (owner lock,
// index, audit trail) and keeps it open until the process is killed.
func holdRepository() int {
	a := &app{stdout: os.Stdout, stderr: os.Stderr, repo: os.Getenv("SNAPFORGE_REPO")}
	r, err := a.open(context.Background(), "test-hold")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hold:", err)
		return 1
	}
	defer r.Close()
	fmt.Println("holding")
	for {
		time.Sleep(time.Hour)
	}
}

// ---- running the command ----

type cliOpts struct {
	env  []string            // extra KEY=VALUE entries
	exe  string              // binary to run; default: this test binary
	cred *syscall.Credential // run as another user
	dir  string              // working directory
}

type cliResult struct {
	args   []string
	code   int            // exit code; -1 when killed by a signal
	signal syscall.Signal // the signal that killed it, or 0
	stdout string
	stderr string
}

func (r cliResult) String() string {
	clip := func(s string) string {
		if len(s) > 4000 {
			return s[:4000] + "…(clipped)"
		}
		return s
	}
	return fmt.Sprintf("`snapforge %s`: exit %d (signal %v)\n--- stdout:\n%s\n--- stderr:\n%s", strings.Join(r.args, " "), r.code, r.signal, clip(r.stdout), clip(r.stderr))
}

// proc is a started snapforge process.
type proc struct {
	cmd            *exec.Cmd
	cancel         context.CancelFunc
	args           []string
	stdout, stderr bytes.Buffer
	done           chan struct{} // closed when the process has exited
	err            error         // from Wait, set before done is closed
	begin, end     time.Time     // start, and exit (set before done is closed)
}

// exited reports, without blocking, whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cliEnv returns the environment for a child: ours without any SNAPFORGE_*
// variable, plus the re-exec switch and extra.
func cliEnv(extra ...string) []string {
	var env []string
	gorace := "GORACE=atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "SNAPFORGE_"):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = kv + " atexit_sleep_ms=0"
		default:
			env = append(env, kv)
		}
	}
	// Under -race every process would otherwise sleep 1 s at exit (waiting
	// for late race reports); with ~150 commands per run that is most of the
	// test time. Races are still reported, and fail the command (exit 66).
	env = append(env, gorace, envTestMain+"=1")
	return append(env, extra...)
}

func startCLI(t testing.TB, o cliOpts, args ...string) *proc {
	t.Helper()
	exe := o.exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	// A generous deadline only so that a hung child cannot hang the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	p := &proc{cancel: cancel, args: args, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, exe, args...)
	p.cmd.Env = cliEnv(o.env...)
	p.cmd.Dir = o.dir
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if o.cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start snapforge %v: %v", args, err)
	}
	p.begin = time.Now()
	go func() {
		p.err = p.cmd.Wait()
		p.end = time.Now()
		close(p.done)
	}()
	return p
}

func (p *proc) wait(t testing.TB) cliResult {
	t.Helper()
	defer p.cancel()
	<-p.done
	err := p.err
	res := cliResult{args: p.args, stdout: p.stdout.String(), stderr: p.stderr.String(), code: p.cmd.ProcessState.ExitCode()}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.signal = ws.Signal()
	}
	if err != nil && res.code == 0 && res.signal == 0 {
		t.Fatalf("snapforge %v: %v", p.args, err)
	}
	return res
}

func runCLI(t testing.TB, o cliOpts, args ...string) cliResult {
	t.Helper()
	return startCLI(t, o, args...).wait(t)
}

// expectCode fails the test unless res exited normally with code.
func expectCode(t testing.TB, res cliResult, code int) cliResult {
	t.Helper()
	if res.signal != 0 || res.code != code {
		t.Fatalf("want exit %d, got %v", code, res)
	}
	return res
}

// repoCLI runs commands against one repository.
type repoCLI struct {
	t   testing.TB
	dir string
}

// newRepo runs `snapforge --repo DIR init` in a new temporary directory.
func newRepo(t testing.TB) *repoCLI {
	t.Helper()
	r := &repoCLI{t: t, dir: filepath.Join(t.TempDir(), "repo")}
	res := r.ok("init")
	if !strings.Contains(res.stdout, "created repository") {
		t.Fatalf("init output: %v", res)
	}
	return r
}

func (r *repoCLI) run(args ...string) cliResult {
	r.t.Helper()
	return runCLI(r.t, cliOpts{}, append([]string{"--repo", r.dir}, args...)...)
}

func (r *repoCLI) expect(code int, args ...string) cliResult {
	r.t.Helper()
	return expectCode(r.t, r.run(args...), code)
}

func (r *repoCLI) ok(args ...string) cliResult {
	r.t.Helper()
	return r.expect(0, args...)
}

// backupSummary is the JSON summary `backup --json` ends with.
type backupSummary struct {
	BackupID string `json:"backup_id"`
	RootHash string `json:"root_hash"`
	Files    int64  `json:"files"`
	Bytes    int64  `json:"bytes"`
	NewBytes int64  `json:"new_bytes"`
	Partial  bool   `json:"partial"`
	Strategy string `json:"strategy"`
	Parent   string `json:"parent"`
	Warnings []struct {
		Path    string `json:"path"`
		Problem string `json:"problem"`
	} `json:"warnings"`
}

// parseSummary decodes the last JSON document of a `backup --json` output
// and checks that the contract's keys are all present.
func parseSummary(t testing.TB, res cliResult) backupSummary {
	t.Helper()
	raw := lastJSON(t, res)
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatalf("backup summary is not a JSON object: %v\n%v", err, res)
	}
	for _, k := range []string{"backup_id", "root_hash", "files", "bytes", "new_bytes", "partial"} {
		if _, ok := keys[k]; !ok {
			t.Fatalf("backup summary lacks %q: %s", k, raw)
		}
	}
	var s backupSummary
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("backup summary: %v: %s", err, raw)
	}
	if s.BackupID == "" || !strings.HasPrefix(s.RootHash, "blake3:") {
		t.Fatalf("backup summary without id or root hash: %s", raw)
	}
	return s
}

// lastJSON returns the last JSON document of stdout (progress lines, if any,
// come before the summary).
func lastJSON(t testing.TB, res cliResult) json.RawMessage {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	var last json.RawMessage
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stdout is not JSON: %v\n%v", err, res)
		}
		last = v
	}
	if last == nil {
		t.Fatalf("no JSON on stdout: %v", res)
	}
	return last
}

// decodeOne decodes stdout, which must be exactly one JSON document.
func decodeOne(t testing.TB, res cliResult, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode stdout: %v\n%v", err, res)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document on stdout: %v", res)
	}
}

func (r *repoCLI) backup(args ...string) backupSummary {
	r.t.Helper()
	return parseSummary(r.t, r.ok(append([]string{"backup"}, append(args, "--json")...)...))
}

type snapRow struct {
	BackupID   string   `json:"backup_id"`
	CreatedUTC string   `json:"created_utc"`
	Strategy   string   `json:"strategy"`
	Parent     string   `json:"parent"`
	Root       string   `json:"root"`
	Units      []string `json:"units"`
	Files      int64    `json:"files"`
	Bytes      int64    `json:"bytes"`
	RootHash   string   `json:"root_hash"`
	Partial    bool     `json:"partial"`
	Damaged    string   `json:"damaged"`
	Tags       []string `json:"tags"`
	Verified   string   `json:"last_full_verify"`
	VerifiedOK *bool    `json:"last_full_verify_ok"`
	Checked    string   `json:"last_verify"`
	CheckedOK  *bool    `json:"last_verify_ok"`
}

func (r *repoCLI) snapshots() []snapRow {
	r.t.Helper()
	var rows []snapRow
	decodeOne(r.t, r.ok("snapshots", "--json"), &rows)
	return rows
}

func snapIDs(rows []snapRow) []string {
	var ids []string
	for _, s := range rows {
		ids = append(ids, s.BackupID)
	}
	return ids
}

type lsEntry struct {
	Path    string `json:"path"`
	PathB64 string `json:"path_b64"`
	Type    string `json:"type"`
	Mode    string `json:"mode"`
	Size    int64  `json:"size"`
	MTime   string `json:"mtime"`
	Blake3  string `json:"blake3"`
	Target  string `json:"target"`
}

func (r *repoCLI) ls(args ...string) map[string]lsEntry {
	r.t.Helper()
	var list []lsEntry
	decodeOne(r.t, r.ok(append([]string{"ls", "--json"}, args...)...), &list)
	out := map[string]lsEntry{}
	for _, e := range list {
		out[e.Path] = e
	}
	return out
}

type manifestItem struct {
	Path   string `json:"path"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	Blake3 string `json:"blake3"`
	Target string `json:"target"`
}

type manifestDoc struct {
	BackupID string         `json:"backup_id"`
	RootHash string         `json:"root_hash"`
	Strategy string         `json:"strategy"`
	Parent   string         `json:"parent"`
	Includes []string       `json:"includes"`
	Excludes []string       `json:"excludes"`
	Items    []manifestItem `json:"items"`
	Partial  bool           `json:"partial"`
	Stats    struct {
		Files    int64 `json:"files"`
		Bytes    int64 `json:"bytes"`
		NewBytes int64 `json:"new_bytes"`
	} `json:"stats"`
	AuditHead string `json:"audit_head"`
	AuditSeq  uint64 `json:"audit_seq"`
}

func (r *repoCLI) manifest(snap string) (manifestDoc, cliResult) {
	r.t.Helper()
	res := r.ok("manifest", snap)
	var m manifestDoc
	if err := json.Unmarshal([]byte(res.stdout), &m); err != nil {
		r.t.Fatalf("manifest is not valid JSON: %v\n%v", err, res)
	}
	return m, res
}

// restoreCompare restores snap into a new directory and compares the tree
// byte for byte (content, modes, mtimes, link targets) with want.
func (r *repoCLI) restoreCompare(snap string, want map[string]indextest.Entry) string {
	r.t.Helper()
	target := filepath.Join(r.t.TempDir(), "restored")
	r.ok("restore", snap, "--target", target)
	indextest.CompareDigests(r.t, want, indextest.Digest(r.t, target, nil))
	return target
}

// ---- building sources ----

func b3hex(b []byte) string {
	s := blake3.Sum256(b)
	return hex.EncodeToString(s[:])
}

// rootHashOf recomputes a root hash by the recipe in DESIGN.md, independently
// of the snapshot package: BLAKE3 over the items sorted by path, one line each
// of `path NUL type NUL size NUL blake3-or-link-target LF`.
func rootHashOf(items []manifestItem) string {
	sorted := slices.Clone(items)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := blake3.New()
	for _, it := range sorted {
		val := ""
		switch it.Type {
		case "file", "hardlink":
			val = it.Blake3
		case "symlink":
			val = it.Target
		}
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s\n", it.Path, it.Type, it.Size, val)
	}
	return "blake3:" + hex.EncodeToString(h.Sum(nil))
}

// ---- tests ----

// TestCLIContract walks the documented commands on one repository and checks
// their output against the source tree.
func TestCLIContract(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	readme := []byte("snapforge readme\nsecond line\n")
	notes := []byte("notes v1\n")
	blob := indextest.RandomBytes(1, 1<<20)
	indextest.WriteFile(t, filepath.Join(src, "docs/readme.txt"), readme)
	indextest.WriteFile(t, filepath.Join(src, "docs/notes.md"), notes)
	indextest.WriteFile(t, filepath.Join(src, "data/blob.bin"), blob)
	if err := os.Symlink("docs/readme.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	want1 := indextest.Digest(t, src, nil)

	// Global flags before the command (--repo) and after it (--json).
	s1 := parseSummary(t, expectCode(t, runCLI(t, cliOpts{}, "--repo", r.dir, "backup", src, "--json"), 0))
	if s1.Files != 3 || s1.Bytes != int64(len(readme)+len(notes)+len(blob)) || s1.Partial {
		t.Fatalf("first backup summary: %+v", s1)
	}
	if s1.NewBytes < int64(len(blob)) {
		t.Fatalf("first backup stored %d new bytes, less than the %d-byte blob", s1.NewBytes, len(blob))
	}

	// $SNAPFORGE_REPO fallback, no --repo.
	var rows []snapRow
	decodeOne(t, expectCode(t, runCLI(t, cliOpts{env: []string{"SNAPFORGE_REPO=" + r.dir}}, "snapshots", "--json"), 0), &rows)
	if len(rows) != 1 || rows[0].BackupID != s1.BackupID || rows[0].RootHash != s1.RootHash || rows[0].Partial || rows[0].Files != 3 {
		t.Fatalf("snapshots --json: %+v, want one row for %+v", rows, s1)
	}

	// ls: every entry with its type, size, BLAKE3 (the b3sum value) and link target.
	ents := r.ls("latest")
	for p, want := range map[string]lsEntry{
		"docs/readme.txt": {Type: "file", Size: int64(len(readme)), Blake3: b3hex(readme)},
		"docs/notes.md":   {Type: "file", Size: int64(len(notes)), Blake3: b3hex(notes)},
		"data/blob.bin":   {Type: "file", Size: int64(len(blob)), Blake3: b3hex(blob)},
		"link":            {Type: "symlink", Size: int64(len("docs/readme.txt")), Target: "docs/readme.txt"},
		"empty":           {Type: "dir", Mode: "0750"},
		"docs":            {Type: "dir"},
	} {
		got, ok := ents[p]
		if !ok {
			t.Fatalf("ls latest lacks %s: %+v", p, ents)
		}
		if got.Type != want.Type || got.Type != "dir" && got.Size != want.Size || got.Blake3 != want.Blake3 || got.Target != want.Target || want.Mode != "" && got.Mode != want.Mode {
			t.Errorf("ls %s = %+v, want %+v", p, got, want)
		}
	}
	if len(ents) != 7 { // docs, docs/notes.md, docs/readme.txt, data, data/blob.bin, empty, link
		t.Errorf("ls latest lists %d entries, want 7: %v", len(ents), ents)
	}
	// ls below a path.
	if sub := r.ls(s1.BackupID, "docs"); len(sub) != 2 || sub["docs/notes.md"].Size != int64(len(notes)) {
		t.Errorf("ls SNAP docs: %+v", sub)
	}

	// cat: bytes equal, for text and binary content.
	if got := r.ok("cat", "latest", "docs/readme.txt").stdout; got != string(readme) {
		t.Errorf("cat readme = %q, want %q", got, readme)
	}
	if got := r.ok("cat", s1.BackupID, "data/blob.bin").stdout; got != string(blob) {
		t.Errorf("cat blob.bin: %d bytes differ from the %d-byte source", len(got), len(blob))
	}

	// manifest: valid JSON whose root hash anyone can recompute from its items.
	m1, _ := r.manifest("latest")
	if m1.BackupID != s1.BackupID || m1.RootHash != s1.RootHash {
		t.Fatalf("manifest latest: id %s root %s, want %s %s", m1.BackupID, m1.RootHash, s1.BackupID, s1.RootHash)
	}
	if got := rootHashOf(m1.Items); got != m1.RootHash {
		t.Errorf("root hash recomputed from the manifest's items = %s, manifest says %s", got, m1.RootHash)
	}
	if m1.Stats.Files != 3 || m1.Partial || m1.AuditHead == "" {
		t.Errorf("manifest stats/partial/audit_head: %+v", m1)
	}

	// Second snapshot: one file changed, one added, one removed. Global flags
	// after the command this time.
	notes2 := []byte("notes v2, longer than before\n")
	added := []byte("brand new\n")
	indextest.WriteFile(t, filepath.Join(src, "docs/notes.md"), notes2)
	indextest.WriteFile(t, filepath.Join(src, "docs/new.txt"), added)
	if err := os.Remove(filepath.Join(src, "data/blob.bin")); err != nil {
		t.Fatal(err)
	}
	want2 := indextest.Digest(t, src, nil)
	s2 := parseSummary(t, expectCode(t, runCLI(t, cliOpts{}, "backup", src, "--repo", r.dir, "--json"), 0))
	if s2.BackupID == s1.BackupID || s2.Files != 3 || s2.Parent != s1.BackupID {
		t.Fatalf("second backup summary: %+v", s2)
	}
	if s2.NewBytes >= int64(len(blob)) {
		t.Errorf("second backup stored %d new bytes; only small files changed", s2.NewBytes)
	}

	// diff, text and JSON.
	d := r.ok("diff", s1.BackupID, s2.BackupID).stdout
	for _, line := range []string{
		"+ docs/new.txt (file, 10 B)",
		"- data/blob.bin (file, 1.0 MiB)",
		fmt.Sprintf("M docs/notes.md (file, %d B → %d B)", len(notes), len(notes2)),
		"1 added, 1 removed, 1 changed",
	} {
		if !strings.Contains(d, line) {
			t.Errorf("diff output lacks %q:\n%s", line, d)
		}
	}
	var dj struct {
		From    string `json:"from"`
		To      string `json:"to"`
		Changes []struct {
			Change  string `json:"change"`
			Path    string `json:"path"`
			Type    string `json:"type"`
			OldSize int64  `json:"old_size"`
			NewSize int64  `json:"new_size"`
		} `json:"changes"`
	}
	decodeOne(t, r.ok("diff", "--json", s1.BackupID, s2.BackupID), &dj)
	got := map[string]string{}
	for _, c := range dj.Changes {
		if c.Path == "docs" || c.Path == "data" { // directory entries may differ in nothing the diff shows
			continue
		}
		got[c.Path] = fmt.Sprintf("%s %s %d %d", c.Change, c.Type, c.OldSize, c.NewSize)
	}
	wantDiff := map[string]string{
		"docs/new.txt":  fmt.Sprintf("added file 0 %d", len(added)),
		"data/blob.bin": fmt.Sprintf("removed file %d 0", len(blob)),
		"docs/notes.md": fmt.Sprintf("changed file %d %d", len(notes), len(notes2)),
	}
	if dj.From != s1.BackupID || dj.To != s2.BackupID || fmt.Sprint(got) != fmt.Sprint(wantDiff) {
		t.Errorf("diff --json = %s→%s %v, want %s→%s %v", dj.From, dj.To, got, s1.BackupID, s2.BackupID, wantDiff)
	}

	// SNAP forms: full id, latest, unique prefix; an ambiguous prefix is an
	// error. A profile named "cli" gives the third snapshot an id that no
	// other starts with.
	prof := fmt.Sprintf(`{"name": "cli", "root": %q, "units": {"docs": {"paths": ["docs/"]}}}`, src)
	indextest.WriteFile(t, filepath.Join(r.dir, "profile.json"), []byte(prof))
	s3 := r.backup()
	if !strings.HasPrefix(s3.BackupID, "cli-") || s3.Files != 3 {
		t.Fatalf("profile backup: %+v", s3)
	}
	for _, ref := range []string{s3.BackupID, "cli", "cli-", "latest"} {
		if m, _ := r.manifest(ref); m.BackupID != s3.BackupID {
			t.Errorf("manifest %s resolved to %s, want %s", ref, m.BackupID, s3.BackupID)
		}
	}
	if m, _ := r.manifest(s2.BackupID); m.BackupID != s2.BackupID {
		t.Errorf("manifest by full id %s gave %s", s2.BackupID, m.BackupID)
	}
	amb := r.expect(exitError, "manifest", "snap-")
	if !strings.Contains(amb.stderr, "ambiguous") || amb.stdout != "" {
		t.Errorf("ambiguous prefix: %v", amb)
	}
	if res := r.expect(exitError, "cat", "nosuchsnap", "docs/notes.md"); !strings.Contains(res.stderr, `snapshot "nosuchsnap": not found (list them with`) {
		t.Errorf("unknown snapshot: %v", res)
	}
	// A path the snapshot lacks is named as such, not as a missing snapshot.
	if res := r.expect(exitError, "cat", s2.BackupID, "docs/nope.md"); !strings.Contains(res.stderr, "snapforge cat: docs/nope.md: no such file or directory in snapshot "+s2.BackupID) {
		t.Errorf("missing path: %v", res)
	}

	// verify, structural and read-data.
	v := r.ok("verify")
	if !strings.Contains(v.stdout, s1.BackupID+": ok (3 files)") || !strings.Contains(v.stdout, "checked structure of 3 snapshot(s)") {
		t.Errorf("verify output: %v", v)
	}
	v = r.ok("verify", "--read-data")
	if !strings.Contains(v.stdout, "checked structure and all data of 3 snapshot(s)") {
		t.Errorf("verify --read-data output: %v", v)
	}

	// restore: byte-identical trees, by full id and by latest.
	r.restoreCompare(s1.BackupID, want1)
	r.restoreCompare(s2.BackupID, want2)
	docsOnly := map[string]indextest.Entry{}
	for p, e := range want2 {
		if p == "docs" || strings.HasPrefix(p, "docs/") {
			docsOnly[p] = e
		}
	}
	r.restoreCompare("latest", docsOnly)

	// restore --dry-run writes nothing and lists what would be restored.
	dryTarget := filepath.Join(t.TempDir(), "dry")
	dry := r.ok("restore", s1.BackupID, "--target", dryTarget, "--dry-run")
	if !strings.Contains(dry.stdout, "dry run: would restore 7 items") || !strings.Contains(dry.stdout, "data/blob.bin") {
		t.Errorf("restore --dry-run: %v", dry)
	}
	if _, err := os.Lstat(dryTarget); !os.IsNotExist(err) {
		t.Errorf("restore --dry-run created its target (%v)", err)
	}
	var plan struct {
		BackupID string         `json:"backup_id"`
		Items    []manifestItem `json:"items"`
		Bytes    int64          `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(r.ok("--json", "restore", s1.BackupID, "--dry-run", "--include", "docs/**").stdout), &plan); err != nil {
		t.Fatal(err)
	}
	var planFiles []string
	for _, it := range plan.Items {
		if it.Type == "file" {
			planFiles = append(planFiles, it.Path)
		}
	}
	if plan.BackupID != s1.BackupID || !slices.Equal(planFiles, []string{"docs/notes.md", "docs/readme.txt"}) || plan.Bytes != int64(len(readme)+len(notes)) {
		t.Errorf("restore --dry-run --json --include docs/**: %+v", plan)
	}
	// A pattern that matches nothing (a typo) is an error, not an empty
	// restore that succeeds; nothing is written.
	typo := filepath.Join(t.TempDir(), "typo")
	for _, extra := range [][]string{nil, {"--dry-run"}} {
		args := append([]string{"restore", s1.BackupID, "--target", typo, "--include", "docs/**", "--include", "dosc/**"}, extra...)
		res := expectCode(t, r.run(args...), exitError)
		if !strings.Contains(res.stderr, `--include "dosc/**" matches nothing in snapshot `+s1.BackupID) || strings.Contains(res.stderr, `"docs/**"`) {
			t.Errorf("restore with a pattern matching nothing: %v", res)
		}
		if _, err := os.Lstat(typo); !os.IsNotExist(err) {
			t.Errorf("restore with a pattern matching nothing created its target (%v)", err)
		}
	}

	// audit: every operation is there; the chain verifies.
	var evs []struct {
		Seq     uint64         `json:"seq"`
		Op      string         `json:"op"`
		Outcome string         `json:"outcome"`
		Params  map[string]any `json:"params"`
	}
	if err := json.Unmarshal([]byte(r.ok("audit", "--json").stdout), &evs); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range evs {
		ops = append(ops, e.Op+":"+e.Outcome)
	}
	for _, want := range []string{"init:ok", "backup:ok", "verify:ok", "restore:ok"} {
		if !slices.Contains(ops, want) {
			t.Errorf("audit lacks %s: %v", want, ops)
		}
	}
	if txt := r.ok("audit").stdout; !strings.Contains(txt, "backup") || strings.Count(txt, "\n") != len(evs) {
		t.Errorf("audit (text) should print one line per event (%d):\n%s", len(evs), txt)
	}
	if av := r.ok("audit", "verify"); !strings.Contains(av.stdout, "audit trail intact") || !strings.Contains(av.stdout, "3 snapshot anchors agree") {
		t.Errorf("audit verify: %v", av)
	}

	// repair index rebuilds from the packs; everything still verifies.
	if rep := r.ok("repair", "index"); !strings.Contains(rep.stdout, "index rebuilt from") || !strings.Contains(rep.stdout, "3 snapshots present") {
		t.Errorf("repair index: %v", rep)
	}
	r.ok("verify", "--read-data")

	// FAULTS A1 (through the CLI): flip one byte inside the stored chunk of
	// docs/notes.md; verify --read-data exits 3 and names the file.
	flipBlobByte(t, r.dir, blake3.Sum256(notes2))
	bad := r.expect(exitIntegrity, "verify", "--read-data")
	if !strings.Contains(bad.stdout, "docs/notes.md") || !strings.Contains(bad.stdout, "DAMAGED") || !strings.Contains(bad.stderr, "integrity problems") {
		t.Errorf("verify after damage: %v", bad)
	}
	// Files whose chunks are sound are not blamed.
	if strings.Contains(bad.stdout, "docs/readme.txt:") || strings.Contains(bad.stdout, "docs/new.txt:") {
		t.Errorf("verify blames undamaged files: %v", bad)
	}
}

// flipBlobByte flips one byte in the middle of the stored bytes of blob id,
// found through the pack trailers.
func flipBlobByte(t testing.TB, repo string, id [32]byte) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(repo, "packs", "*", "*.pack"))
	for _, p := range packs {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		blobs, err := pack.ReadTrailer(f, fi.Size())
		if err != nil {
			f.Close()
			t.Fatalf("trailer of %s: %v", p, err)
		}
		for _, b := range blobs {
			if b.ID != id || b.Kind != pack.KindData {
				continue
			}
			off := int64(b.Offset) + int64(b.Stored)/2
			one := make([]byte, 1)
			if _, err := f.ReadAt(one, off); err != nil {
				t.Fatal(err)
			}
			one[0] ^= 0x5a
			if _, err := f.WriteAt(one, off); err != nil {
				t.Fatal(err)
			}
			f.Close()
			return
		}
		f.Close()
	}
	t.Fatalf("blob %x not found in any pack", id[:6])
}

// TestCLIVersion: version needs no repository and names what this build
// compresses and hashes with, in text and JSON; it takes no arguments.
func TestCLIVersion(t *testing.T) {
	t.Parallel()
	res := expectCode(t, runCLI(t, cliOpts{}, "version"), 0)
	if !strings.HasPrefix(res.stdout, "snapforge "+snapshot.Version+" (engine "+snapshot.EngineVersion) || !strings.Contains(res.stdout, "\ncompression: "+pack.Encoders()+"\n") ||
		!strings.Contains(res.stdout, "\nhashing: "+b3.Implementation()+"\n") {
		t.Fatalf("version: %v, want the compression line %q and the hashing line %q", res, pack.Encoders(), b3.Implementation())
	}
	var doc map[string]any
	res = expectCode(t, runCLI(t, cliOpts{}, "--json", "version"), 0)
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || doc["compression"] != pack.Encoders() || doc["hashing"] != b3.Implementation() || doc["go"] != runtime.Version() || doc["version"] != snapshot.Version || doc["build"] == "" {
		t.Fatalf("version --json: %v (%v), want compression %q and go %s", res, err, pack.Encoders(), runtime.Version())
	}
	expectCode(t, runCLI(t, cliOpts{}, "version", "extra"), exitUsage)
	// SNAPFORGE_BLAKE3 fixes the implementation, and version says so; a
	// value it does not know is refused, not ignored (acceptance run 4).
	for _, v := range []string{"zeebo", "tree"} {
		res = expectCode(t, runCLI(t, cliOpts{env: []string{"SNAPFORGE_BLAKE3=" + v}}, "version"), 0)
		if !strings.Contains(res.stdout, "(chosen by SNAPFORGE_BLAKE3)") || strings.Contains(res.stdout, "zeebo/blake3 (") != (v == "zeebo") {
			t.Errorf("SNAPFORGE_BLAKE3=%s version: %v", v, res)
		}
	}
	res = expectCode(t, runCLI(t, cliOpts{env: []string{"SNAPFORGE_BLAKE3=Tree"}}, "version"), exitUsage)
	if !strings.Contains(res.stderr, `SNAPFORGE_BLAKE3="Tree": want zeebo or tree`) {
		t.Errorf("SNAPFORGE_BLAKE3=Tree: %v", res)
	}
}

// TestCLIUsageAndExitCodes checks help, usage errors (exit 2) and plain
// errors (exit 1).
func TestCLIUsageAndExitCodes(t *testing.T) {
	t.Parallel()
	r := newRepo(t)

	help := expectCode(t, runCLI(t, cliOpts{}, "help"), 0)
	for _, c := range commands {
		if !strings.Contains(help.stdout, "  "+c.name+" ") {
			t.Errorf("help does not list %s:\n%s", c.name, help.stdout)
		}
	}
	if !strings.Contains(help.stdout, "exit codes: 0 ok, 1 error, 2 usage, 3 integrity failure, 4 done with files skipped") {
		t.Errorf("help does not state the exit codes:\n%s", help.stdout)
	}
	if res := expectCode(t, runCLI(t, cliOpts{}, "--help"), 0); res.stdout != help.stdout {
		t.Errorf("--help differs from help")
	}
	if res := expectCode(t, runCLI(t, cliOpts{}), exitUsage); !strings.Contains(res.stdout, "usage: snapforge") {
		t.Errorf("no command: %v", res)
	}
	if res := expectCode(t, runCLI(t, cliOpts{}, "help", "backup"), 0); !strings.Contains(res.stdout, "usage: snapforge [--repo DIR] [--json] backup") {
		t.Errorf("help backup: %v", res)
	}

	// --help works for every command, with or without a repository, and
	// does nothing else.
	for i, c := range commands {
		args := []string{c.name, "--help"}
		if i%2 == 1 {
			args = []string{"--repo", r.dir, c.name, "-h"}
		}
		res := expectCode(t, runCLI(t, cliOpts{}, args...), 0)
		if !strings.Contains(res.stdout, "usage: snapforge [--repo DIR] [--json] "+c.name) {
			t.Errorf("%v: no usage on stdout: %v", args, res)
		}
		// Flags are listed as the usage line spells them.
		for _, line := range strings.Split(res.stdout, "\n") {
			if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") {
				t.Errorf("%v: flag listed with one dash: %q", args, line)
			}
		}
	}
	if res := runCLI(t, cliOpts{}, "mount", "--help"); !strings.Contains(res.stdout, "\n  --allow-other\n") || !strings.Contains(res.stdout, "\n  --cache-mb int\n") {
		t.Errorf("mount --help does not list --allow-other and --cache-mb: %v", res)
	}
	if rows := r.snapshots(); len(rows) != 0 {
		t.Fatalf("--help ran a command: %v", rows)
	}

	// Usage errors: exit 2 with the command's usage on stderr.
	for _, args := range [][]string{
		{"frobnicate"},
		{"backup", "--bogus"},
		{"backup", "a", "b"},
		{"snapshots", "--nope"},
		{"snapshots", "extra"},
		{"backup", "--strategy", "bogus", "/tmp"},
		{"demo", "extra"},
		{"ls"},
		{"cat", "latest"},
		{"manifest"},
		{"diff", "latest"},
		{"restore", "latest"},
		{"restore"},
		{"repair"},
		{"repair", "everything"},
		{"audit", "verify", "more"},
		{"init", "extra"},
		{"verify", "--read-data=maybe"},
	} {
		res := expectCode(t, r.run(args...), exitUsage)
		if res.stderr == "" || res.stdout != "" {
			t.Errorf("%v: want a message on stderr only: %v", args, res)
		}
		if args[0] != "frobnicate" && !strings.Contains(res.stderr, "usage: snapforge "+args[0]) {
			t.Errorf("%v: stderr lacks the usage line: %v", args, res)
		}
	}
	if res := expectCode(t, r.run("frobnicate"), exitUsage); !strings.Contains(res.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %v", res)
	}
	// No repository named at all, or --repo without its value: usage.
	if res := expectCode(t, runCLI(t, cliOpts{}, "snapshots"), exitUsage); !strings.Contains(res.stderr, "SNAPFORGE_REPO") {
		t.Errorf("no repository: %v", res)
	}
	if res := expectCode(t, runCLI(t, cliOpts{}, "snapshots", "--repo"), exitUsage); !strings.Contains(res.stderr, "--repo needs a directory") {
		t.Errorf("--repo without value: %v", res)
	}

	// An error is named once by its command (the engine's own "backup: "
	// is not repeated).
	if res := expectCode(t, r.run("backup", filepath.Join(t.TempDir(), "no-such-dir")), exitError); !strings.HasPrefix(res.stderr, "snapforge backup: source ") || strings.Contains(res.stderr, "backup: backup:") {
		t.Errorf("backup of a missing directory: %v", res)
	}

	// Errors: exit 1. A path that is not a repository says to run init.
	missing := filepath.Join(t.TempDir(), "nothing-here")
	for _, cmd := range [][]string{{"snapshots"}, {"backup", t.TempDir()}, {"audit", "verify"}} {
		res := expectCode(t, runCLI(t, cliOpts{}, append([]string{"--repo", missing}, cmd...)...), exitError)
		if !strings.Contains(res.stderr, "not a snapforge repository") || !strings.Contains(res.stderr, "snapforge init") {
			t.Errorf("%v on a missing repository: %v", cmd, res)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a command on a missing repository created it (%v)", err)
	}
	// init twice refuses; a source that does not exist is an error.
	if res := r.expect(exitError, "init"); !strings.Contains(res.stderr, "already exists") {
		t.Errorf("second init: %v", res)
	}
	if res := r.expect(exitError, "backup", filepath.Join(t.TempDir(), "absent")); !strings.Contains(res.stderr, "no such file or directory") {
		t.Errorf("backup of a missing source: %v", res)
	}
	if res := r.expect(exitError, "cat", "latest", "x"); !strings.Contains(res.stderr, "no snapshots yet") {
		t.Errorf("cat latest on an empty repository: %v", res)
	}
}

// TestProfileUnits backs up a live system described by profile.json:
// default units, a unit named with --unit, a guarded unit, and a live SQLite
// database whose newest rows are only in its WAL.
func TestProfileUnits(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	root := filepath.Join(t.TempDir(), "live")
	files := map[string][]byte{
		"config/app.json":  []byte(`{"theme": "dark"}` + "\n"),
		"config/ui.json":   []byte(`{"fps": 60}` + "\n"),
		"data/config.json": []byte(`{"schema": 3}` + "\n"),
		"logs/app.log":     []byte(strings.Repeat("INFO request ok\n", 500)),
		"models/m.bin":     indextest.RandomBytes(7, 1<<20),
		"keys/api.key":     []byte("sk-test-000\n"),
		"scratch.tmp":      []byte("not in any unit\n"),
	}
	for p, b := range files {
		indextest.WriteFile(t, filepath.Join(root, p), b)
	}
	// A live database: WAL mode, automatic checkpoints off and our connection
	// kept open, so the rows live only in the -wal file. A raw copy of the
	// .db file would have no table at all.
	dbPath := filepath.Join(root, "data/wirthforge.db")
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	const rows = 300
	if _, err := db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if _, err := tx.Exec(`INSERT INTO items (id, body) VALUES (?, ?)`, i, strings.Repeat("x", 200)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dbPath + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("test setup: the rows should be in the WAL (%v)", err)
	}
	// Control: a plain copy of the .db file alone has none of the rows, so
	// only a real SQLite capture can pass the checks below.
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	rawCopy := filepath.Join(t.TempDir(), "raw.db")
	indextest.WriteFile(t, rawCopy, raw)
	if cdb, err := sql.Open("sqlite", "file:"+rawCopy); err == nil {
		var n int
		if err := cdb.QueryRow(`SELECT count(*) FROM items`).Scan(&n); err == nil && n > 0 {
			t.Fatalf("test setup: a raw copy of the database already holds %d rows", n)
		}
		cdb.Close()
	}
	prof := map[string]any{
		"name": "wf",
		"root": root,
		"units": map[string]any{
			"config": map[string]any{"paths": []string{"config/", "data/config.json"}},
			"db":     map[string]any{"paths": []string{"data/wirthforge.db"}, "sqlite": true},
			"models": map[string]any{"paths": []string{"models/"}, "default": false},
			"logs":   map[string]any{"paths": []string{"logs/"}},
			"keys":   map[string]any{"paths": []string{"keys/"}, "guarded": true},
		},
	}
	pb, _ := json.Marshal(prof)
	indextest.WriteFile(t, filepath.Join(r.dir, "profile.json"), pb)

	// Default units: config, db, logs; never models (default false) or keys (guarded).
	s := r.backup()
	if !strings.HasPrefix(s.BackupID, "wf-") || s.Partial {
		t.Fatalf("default backup: %+v", s)
	}
	paths := func(ents map[string]lsEntry) []string {
		var out []string
		for p, e := range ents {
			if e.Type != "dir" {
				out = append(out, p)
			}
		}
		sort.Strings(out)
		return out
	}
	if got, want := paths(r.ls("latest")), []string{"config/app.json", "config/ui.json", "data/config.json", "data/wirthforge.db", "logs/app.log"}; !slices.Equal(got, want) {
		t.Errorf("default units hold %v, want %v", got, want)
	}
	m, _ := r.manifest("latest")
	if !slices.Equal(m.Includes, []string{"config", "db", "logs"}) || !slices.Equal(m.Excludes, []string{"keys", "models"}) {
		t.Errorf("manifest includes %v excludes %v", m.Includes, m.Excludes)
	}
	target := filepath.Join(t.TempDir(), "restored")
	r.ok("restore", "latest", "--target", target)
	for _, p := range []string{"config/app.json", "data/config.json", "logs/app.log"} {
		if got, err := os.ReadFile(filepath.Join(target, p)); err != nil || !bytes.Equal(got, files[p]) {
			t.Errorf("restored %s differs (%v)", p, err)
		}
	}
	// The database was captured consistently, WAL content included.
	rdb, err := sql.Open("sqlite", "file:"+filepath.Join(target, "data/wirthforge.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var check string
	var n int
	if err := rdb.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("restored database integrity_check = %q, %v", check, err)
	}
	if err := rdb.QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil || n != rows {
		t.Errorf("restored database has %d rows (%v), want %d", n, err, rows)
	}
	rdb.Close()

	// --unit models: only models.
	sm := r.backup("--unit", "models")
	if got := paths(r.ls(sm.BackupID)); !slices.Equal(got, []string{"models/m.bin"}) {
		t.Errorf("--unit models holds %v", got)
	}
	if m, _ := r.manifest(sm.BackupID); !slices.Equal(m.Includes, []string{"models"}) {
		t.Errorf("--unit models manifest includes %v", m.Includes)
	}

	// --unit keys needs the explicit acknowledgement: usage error otherwise,
	// and nothing is stored.
	before := len(r.snapshots())
	res := r.expect(exitUsage, "backup", "--unit", "keys")
	if !strings.Contains(res.stderr, "secrets") || !strings.Contains(res.stderr, "--ack-plaintext-secrets") {
		t.Errorf("keys without acknowledgement: %v", res)
	}
	if after := len(r.snapshots()); after != before {
		t.Errorf("refused keys backup left a snapshot (%d → %d)", before, after)
	}
	sk := r.backup("--unit", "keys", "--ack-plaintext-secrets")
	if got := paths(r.ls(sk.BackupID)); !slices.Equal(got, []string{"keys/api.key"}) {
		t.Errorf("--unit keys holds %v", got)
	}
	var evs []struct {
		Op      string         `json:"op"`
		Outcome string         `json:"outcome"`
		Params  map[string]any `json:"params"`
	}
	if err := json.Unmarshal([]byte(r.ok("audit", "--json").stdout), &evs); err != nil {
		t.Fatal(err)
	}
	acks := 0
	for _, e := range evs {
		if e.Op == "acknowledge_plaintext_secrets" {
			acks++
			if e.Params["unit"] != "keys" || e.Outcome != "ok" {
				t.Errorf("acknowledgement event: %+v", e)
			}
		}
	}
	if acks != 1 {
		t.Errorf("want exactly one acknowledge_plaintext_secrets event, got %d", acks)
	}
	// A unit the profile does not have is a usage error.
	if res := r.expect(exitUsage, "backup", "--unit", "nosuch"); !strings.Contains(res.stderr, `unknown unit "nosuch"`) {
		t.Errorf("unknown unit: %v", res)
	}
}

// TestBackupUnreadableFile: FAULTS D4. A file the backup user cannot read is
// reported by name, the snapshot is marked partial (exit 4), and every other
// file restores. As root the backup runs as uid/gid 65534, so that the mode
// really denies the read.
func TestBackupUnreadableFile(t *testing.T) {
	t.Parallel()
	base, err := os.MkdirTemp("", "snapforge-d4-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(base, "src")
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("readable\n"))
	indextest.WriteFile(t, filepath.Join(src, "sub/b.bin"), indextest.RandomBytes(4, 256<<10))
	indextest.WriteFile(t, filepath.Join(src, "secret.bin"), []byte("nobody may read this\n"))
	if err := os.Chmod(filepath.Join(src, "secret.bin"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "secret.bin"), 0o600) })
	repo := filepath.Join(base, "repo")

	o := cliOpts{}
	if os.Geteuid() == 0 {
		o = cliOpts{exe: indextest.ExecutableCopy(t, base, "snapforge"), cred: &syscall.Credential{Uid: 65534, Gid: 65534}, dir: base}
	} else {
		t.Log("not root: running as the current user with the file at mode 000")
	}
	expectCode(t, runCLI(t, o, "--repo", repo, "init"), 0)
	res := expectCode(t, runCLI(t, o, "--repo", repo, "backup", src, "--json"), exitPartial)
	s := parseSummary(t, res)
	if !s.Partial || s.Files != 2 || len(s.Warnings) != 1 || s.Warnings[0].Path != "secret.bin" || !strings.Contains(s.Warnings[0].Problem, "permission denied") {
		t.Errorf("partial backup summary: %+v", s)
	}
	if !strings.Contains(res.stderr, "is partial") {
		t.Errorf("stderr does not say partial: %v", res)
	}
	// Text output names the file too.
	res = expectCode(t, runCLI(t, o, "--repo", repo, "backup", src), exitPartial)
	if !strings.Contains(res.stdout, "warning: secret.bin: unreadable: permission denied") {
		t.Errorf("text backup output does not name the unreadable file: %v", res)
	}

	// From here on as ourselves (root may read the other user's repository).
	r := &repoCLI{t: t, dir: repo}
	rows := r.snapshots()
	if len(rows) != 2 || !rows[0].Partial || !rows[1].Partial || rows[0].Files != 2 {
		t.Fatalf("snapshots --json: %+v", rows)
	}
	if _, ok := r.ls("latest")["secret.bin"]; ok {
		t.Errorf("the unreadable file is listed in the snapshot")
	}
	want := indextest.Digest(t, src, func(rel string) bool { return rel == "secret.bin" })
	r.restoreCompare("latest", want)
	if os.Geteuid() == 0 {
		// What root created in nobody's repository is nobody's again, and
		// nobody's next command works.
		filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
			var st syscall.Stat_t
			if err == nil && syscall.Lstat(p, &st) == nil && st.Uid != 65534 {
				t.Errorf("%s: uid %d after root worked in nobody's repository", p, st.Uid)
			}
			return nil
		})
		expectCode(t, runCLI(t, o, "--repo", repo, "snapshots"), 0)
	}
}

// TestAuditTamperViaCLI: FAULTS I4, I7, I1 through `snapforge audit verify`.
func TestAuditTamperViaCLI(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "f.txt"), []byte("audit me\n"))
	lines := func(t *testing.T, r *repoCLI) []string {
		b, err := os.ReadFile(filepath.Join(r.dir, "audit", "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	writeTrail := func(t *testing.T, r *repoCLI, ls []string) {
		s := strings.Join(ls, "")
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		if err := os.WriteFile(filepath.Join(r.dir, "audit", "audit.jsonl"), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("I4 cut tail with HEAD rewritten", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		for range 3 {
			r.backup(src)
		}
		ls := lines(t, r)
		if len(ls) != 4 { // init + 3 backups
			t.Fatalf("want 4 audit lines, got %d", len(ls))
		}
		ls = ls[:len(ls)-2]
		writeTrail(t, r, ls)
		// The attacker also points HEAD at the new last line.
		var last struct {
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal([]byte(ls[len(ls)-1]), &last); err != nil {
			t.Fatal(err)
		}
		head, _ := json.Marshal(last)
		if err := os.WriteFile(filepath.Join(r.dir, "audit", "HEAD"), append(head, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		res := r.expect(exitIntegrity, "audit", "verify")
		// Only the snapshot manifests' anchors can see this cut: the chain
		// and HEAD are consistent.
		if !strings.Contains(res.stdout, "cut tail") || !strings.Contains(res.stdout, "snapshot ") || !strings.Contains(res.stdout, "trail ends at seq 2") {
			t.Errorf("audit verify after a cut: %v", res)
		}
		if strings.Contains(res.stdout, "head mismatch") || strings.Contains(res.stdout, "hash mismatch") {
			t.Errorf("the cut should be caught by the anchors, not by HEAD or hashes: %v", res)
		}
		if !strings.Contains(res.stderr, "altered or cut") {
			t.Errorf("stderr: %v", res)
		}
	})

	t.Run("I7 torn tail", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		r.backup(src)
		f, err := os.OpenFile(filepath.Join(r.dir, "audit", "audit.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"seq":3,"time":"2026-11-26T01:15:00Z","actor":"cli","op":"bac`)
		f.Close()
		res := r.ok("audit", "verify")
		if !strings.Contains(res.stdout, "incomplete trailing record after seq 2") || !strings.Contains(res.stdout, "not tampering") || !strings.Contains(res.stdout, "audit trail intact") {
			t.Errorf("audit verify of a torn tail: %v", res)
		}
		// Any command that opens the repository repairs it.
		r.ok("snapshots")
		res = r.ok("audit", "verify")
		if strings.Contains(res.stdout, "incomplete") || !strings.Contains(res.stdout, "audit trail intact: 3 events") {
			t.Errorf("audit verify after repair: %v", res)
		}
		var evs []struct {
			Seq    uint64         `json:"seq"`
			Op     string         `json:"op"`
			Params map[string]any `json:"params"`
		}
		if err := json.Unmarshal([]byte(r.ok("audit", "--json").stdout), &evs); err != nil {
			t.Fatal(err)
		}
		if len(evs) != 3 || evs[2].Op != "recovered_torn_tail" || evs[2].Seq != 3 {
			t.Fatalf("audit after repair: %+v", evs)
		}
		if n, _ := strconv.Atoi(fmt.Sprint(evs[2].Params["removed_bytes"])); n != len(`{"seq":3,"time":"2026-11-26T01:15:00Z","actor":"cli","op":"bac`) {
			t.Errorf("recovered_torn_tail removed_bytes = %v", evs[2].Params["removed_bytes"])
		}
	})

	t.Run("I1 edited middle line", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		r.backup(src)
		r.backup(src)
		ls := lines(t, r)
		if len(ls) != 3 || !strings.Contains(ls[1], `"outcome":"ok"`) {
			t.Fatalf("audit lines: %q", ls)
		}
		ls[1] = strings.Replace(ls[1], `"outcome":"ok"`, `"outcome":"no"`, 1)
		writeTrail(t, r, ls)
		res := r.expect(exitIntegrity, "audit", "verify")
		if !strings.Contains(res.stdout, "line 2 (seq 2): hash mismatch") {
			t.Errorf("audit verify after an edit: %v", res)
		}
	})
}

// TestIndexMissing: FAULTS A6. With index/ deleted every command that needs
// it refuses with a pointer to `repair index`, never treating the repository
// as empty; after the repair everything verifies and restores.
func TestIndexMissing(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "a.bin"), indextest.RandomBytes(9, 300<<10))
	indextest.WriteFile(t, filepath.Join(src, "d/b.txt"), []byte("bee\n"))
	want := indextest.Digest(t, src, nil)
	s := r.backup(src)
	if err := os.RemoveAll(filepath.Join(r.dir, "index")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	for _, args := range [][]string{
		{"snapshots"},
		{"backup", src},
		{"verify"},
		{"verify", "--read-data"},
		{"restore", "latest", "--target", target},
	} {
		res := r.expect(exitError, args...)
		if !strings.Contains(res.stderr, "index missing") || !strings.Contains(res.stderr, "repair index") {
			t.Errorf("%v without an index: %v", args, res)
		}
		if strings.Contains(res.stdout, "no snapshots") {
			t.Errorf("%v treated the repository as empty: %v", args, res)
		}
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("restore without an index touched its target (%v)", err)
	}
	if rep := r.ok("repair", "index"); !strings.Contains(rep.stdout, "1 snapshots present") {
		t.Errorf("repair index: %v", rep)
	}
	if rows := r.snapshots(); len(rows) != 1 || rows[0].BackupID != s.BackupID {
		t.Fatalf("snapshots after repair: %+v", rows)
	}
	r.ok("verify", "--read-data")
	r.restoreCompare("latest", want)
	// The repaired index deduplicates again.
	// (Only directory trees may be new: file metadata flags can change.)
	if s2 := r.backup(src, "--strategy", "full"); s2.NewBytes >= 64<<10 {
		t.Errorf("backup after repair stored %d new bytes of unchanged data", s2.NewBytes)
	}
}

// TestDemo runs `snapforge demo` twice in the same directory and checks that
// it refuses a directory it did not make.
func TestDemo(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "demo")
	for i := range 2 {
		res := expectCode(t, runCLI(t, cliOpts{}, "demo", "--dir", dir), 0)
		for _, want := range []string{
			"look around",
			"export SNAPFORGE_REPO=" + filepath.Join(dir, "repo"),
			"snapforge snapshots",
			"snapforge ls latest",
			"snapforge restore latest --target",
			"snapforge audit verify",
		} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("run %d: demo output lacks %q:\n%s", i+1, want, res.stdout)
			}
		}
		// The repository it made is real and sound: three snapshots, verified.
		r := &repoCLI{t: t, dir: filepath.Join(dir, "repo")}
		rows := r.snapshots()
		if len(rows) != 3 {
			t.Fatalf("run %d: demo repository has %d snapshots", i+1, len(rows))
		}
		for _, row := range rows {
			if row.Damaged != "" || row.Partial || row.VerifiedOK == nil || !*row.VerifiedOK {
				t.Errorf("run %d: demo snapshot %+v", i+1, row)
			}
		}
	}
	other := filepath.Join(t.TempDir(), "mine")
	indextest.WriteFile(t, filepath.Join(other, "precious.txt"), []byte("keep me\n"))
	res := expectCode(t, runCLI(t, cliOpts{}, "demo", "--dir", other), exitError)
	if !strings.Contains(res.stderr, "was not made by the demo") {
		t.Errorf("demo over a foreign directory: %v", res)
	}
	if b, err := os.ReadFile(filepath.Join(other, "precious.txt")); err != nil || string(b) != "keep me\n" {
		t.Errorf("demo touched a foreign directory: %q, %v", b, err)
	}
}

// readLine reads one line from r, failing the test at EOF.
func readLine(t testing.TB, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimSpace(line)
}

// TestCLIEscapesControlCharacters: names holding a newline or another
// control character print escaped in ls, diff and restore --dry-run, one
// entry per line, as names that are not UTF-8 already did; --json keeps
// the raw name.
func TestCLIEscapesControlCharacters(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "new\nline"), []byte("x"))
	s1 := parseSummary(t, r.ok("backup", src, "--json"))
	indextest.WriteFile(t, filepath.Join(src, "tab\there"), []byte("y"))
	s2 := parseSummary(t, r.ok("backup", src, "--json"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ls", s2.BackupID}, `new\nline`},
		{[]string{"ls", s2.BackupID}, `tab\there`},
		{[]string{"diff", s1.BackupID, s2.BackupID}, `+ tab\there (file`},
		{[]string{"restore", s2.BackupID, "--target", filepath.Join(t.TempDir(), "t"), "--dry-run"}, `new\nline`},
	} {
		res := r.ok(c.args...)
		if !strings.Contains(res.stdout, c.want) || strings.Contains(res.stdout, "new\nline") || strings.Contains(res.stdout, "tab\there") {
			t.Errorf("%q: want %q, escaped, on one line:\n%s", c.args, c.want, res.stdout)
		}
	}
	if res := r.ok("--json", "ls", s2.BackupID); !strings.Contains(res.stdout, `"new\nline"`) {
		t.Errorf("ls --json: want the raw name (JSON-escaped): %s", res.stdout)
	}
}

// TestSnapshotsStatusAfterVerify: `snapshots` says what the newest verify
// of a snapshot found, of any level: "verified" after a read-data verify
// passed, "VERIFY FAILED" once a later verify, structural too, found it
// damaged (a pack gone: FAULTS A3). It said "ok" while only a structural
// verify had failed.
func TestSnapshotsStatusAfterVerify(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("alpha\n"))
	s := r.backup(src)
	status := func() string {
		t.Helper()
		for _, l := range strings.Split(r.ok("snapshots").stdout, "\n") {
			if strings.HasPrefix(l, s.BackupID) {
				return l
			}
		}
		t.Fatalf("snapshots does not list %s", s.BackupID)
		return ""
	}
	r.ok("verify")
	if l := status(); !strings.HasSuffix(l, "  ok") {
		t.Errorf("after a structural verify: %q, want ok (not verified: no data read)", l)
	}
	r.ok("verify", "--read-data")
	if l := status(); !strings.HasSuffix(l, "ok, verified") {
		t.Errorf("after verify --read-data: %q", l)
	}
	packs, _ := filepath.Glob(filepath.Join(r.dir, "packs", "*", "*.pack"))
	for _, p := range packs {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	r.expect(exitIntegrity, "verify")
	if l := status(); !strings.HasSuffix(l, "ok, VERIFY FAILED") {
		t.Errorf("after a structural verify found packs missing: %q, want VERIFY FAILED", l)
	}
	rows := r.snapshots()
	if len(rows) != 1 || rows[0].CheckedOK == nil || *rows[0].CheckedOK || rows[0].Checked == "" || rows[0].VerifiedOK == nil || *rows[0].VerifiedOK {
		t.Errorf("snapshots --json after the failed verify: %+v", rows)
	}
}

// failingWriter fails every write as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// TestOutputWriteErrorsFail: output that cannot be written (stdout
// redirected to a full disk) fails the command with exit 1 and says so, as
// it does through the owner; `verify > report.txt` ended 0 with the report
// empty.
func TestOutputWriteErrorsFail(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "a.txt"), []byte("alpha\n"))
	r.backup(src)
	for _, args := range [][]string{{"ls", "latest"}, {"verify"}, {"audit"}, {"snapshots"}, {"diff", "latest", "latest"}} {
		var stderr bytes.Buffer
		code := run(append([]string{"--repo", r.dir}, args...), failingWriter{}, &stderr)
		if code != exitError || !strings.Contains(stderr.String(), "snapforge "+args[0]+": ") || !strings.Contains(stderr.String(), "write output: ") || !strings.Contains(stderr.String(), "no space left") {
			t.Errorf("%v with stdout on a full disk: exit %d, stderr %q; want exit 1 saying the output was not written", args, code, stderr.String())
		}
	}
}

// TestUnreadableIndex: an index the user may not read is not "missing":
// the message says what is wrong (permission denied, check owner and
// permissions) and does not advise `repair index`, which would fail the
// same way or replace a sound index.
func TestUnreadableIndex(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs snapforge as another user")
	}
	base, err := os.MkdirTemp("", "snapforge-idx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(base, 0o777))
	repo := filepath.Join(base, "repo")
	o := cliOpts{exe: indextest.ExecutableCopy(t, base, "snapforge"), cred: &syscall.Credential{Uid: 65534, Gid: 65534}, dir: base}
	expectCode(t, runCLI(t, o, "--repo", repo, "init"), 0)
	must(os.Chown(filepath.Join(repo, "index"), 0, 0))
	must(os.Chmod(filepath.Join(repo, "index"), 0o700))
	res := expectCode(t, runCLI(t, o, "--repo", repo, "snapshots"), exitError)
	if !strings.Contains(res.stderr, "permission denied") || !strings.Contains(res.stderr, "check its owner and permissions") || strings.Contains(res.stderr, "missing") {
		t.Errorf("an unreadable index: %v", res)
	}
}
