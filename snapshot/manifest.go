package snapshot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
)

// Manifest is the human-readable proof of a snapshot
// (docs/schemas/manifest.schema.json). A snapshot exists exactly when its
// manifest file exists.
type Manifest struct {
	BackupID   string   `json:"backup_id"`
	CreatedUTC string   `json:"created_utc"`
	Strategy   string   `json:"strategy"`
	Parent     string   `json:"parent,omitempty"`
	Source     Source   `json:"source"`
	Includes   []string `json:"includes"`
	// UnitPaths are the included profile units' paths as the profile
	// named them at backup time (by-unit/ in the mount shows these, not
	// today's profile's). Absent in snapshots without units and in those
	// taken before it was recorded.
	UnitPaths  map[string][]string `json:"unit_paths,omitempty"`
	Excludes   []string            `json:"excludes"`
	Tags       []string            `json:"tags,omitempty"`
	RootHash   string              `json:"root_hash"`
	Tree       string              `json:"tree"`
	Items      []Item              `json:"items"`
	Stats      Stats               `json:"stats"`
	Partial    bool                `json:"partial"`
	Warnings   []Warning           `json:"warnings,omitempty"`
	AuditHead  string              `json:"audit_head"`
	AuditSeq   uint64              `json:"audit_seq"`
	WFVersion  string              `json:"wf_version"`
	EngineVer  string              `json:"engine_ver"`
	Governance Governance          `json:"governance"`
	// Requires names what a reader must know to use this snapshot: a
	// reader that does not know one refuses the snapshot ("needs a newer
	// snapforge"). Any other field a reader does not know it ignores, so
	// a field added later may add to a snapshot but never change what the
	// fields before it mean (docs/repository-format.md, "Manifests:
	// additions"). Nothing is required yet.
	Requires []string `json:"requires,omitempty"`
}

// manifestRequires is what this build knows of Manifest.Requires.
var manifestRequires = map[string]bool{}

// NewerError says a snapshot needs what this build does not know.
type NewerError struct {
	Feature string
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("it needs a newer snapforge: it requires %q, which snapforge %s does not know; read it with a newer snapforge", e.Feature, Version)
}

// Source names what was backed up.
type Source struct {
	Host string `json:"host"`
	Root string `json:"root"`
	// RootDir is the source root directory's own attributes, which no item
	// carries (items are relative to it); nil in manifests written before
	// it was recorded.
	RootDir *RootDir `json:"root_dir,omitempty"`
}

// RootDir holds a directory's permission bits, owner and mtime.
type RootDir struct {
	Mode  uint32 `json:"mode"` // permission and special bits (07777)
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	MTime int64  `json:"mtime_ns"`
}

// Stats are a backup's counters.
type Stats struct {
	Files      int64 `json:"files"`
	Dirs       int64 `json:"dirs"`
	Bytes      int64 `json:"bytes"`
	NewBytes   int64 `json:"new_bytes"`
	DurationMS int64 `json:"duration_ms"`
}

// Governance records the product's promises at the time of the backup.
type Governance struct {
	LocalFirst bool `json:"local_first"`
	UIPresence bool `json:"ui_presence"`
}

// Item is one entry of the manifest. Paths and targets that are not valid
// UTF-8 carry their exact bytes in the _b64 fields; Path then holds a
// display form.
type Item struct {
	Path      string `json:"path"`
	PathB64   string `json:"path_b64,omitempty"`
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	Blake3    string `json:"blake3,omitempty"`
	Target    string `json:"target,omitempty"`
	TargetB64 string `json:"target_b64,omitempty"`
}

// Warning is a problem met during a backup.
type Warning struct {
	Path    string `json:"path"`
	PathB64 string `json:"path_b64,omitempty"`
	Problem string `json:"problem"`
}

// RawPath returns the item's exact path bytes.
func (it Item) RawPath() string {
	if it.PathB64 != "" {
		if b, err := base64.StdEncoding.DecodeString(it.PathB64); err == nil {
			return string(b)
		}
	}
	return it.Path
}

// RawTarget returns the item's exact target bytes.
func (it Item) RawTarget() string {
	if it.TargetB64 != "" {
		if b, err := base64.StdEncoding.DecodeString(it.TargetB64); err == nil {
			return string(b)
		}
	}
	return it.Target
}

// Created returns the creation time.
func (m *Manifest) Created() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, m.CreatedUTC)
	return t
}

// TreeID returns the root tree id.
func (m *Manifest) TreeID() (ID, error) { return ParseID(m.Tree) }

// DisplayName renders raw name bytes for humans: UTF-8 without control
// characters or a backslash stays as it is (spaces of every script too);
// anything else is quoted as Go quotes it, the backslash as \\, so two names
// never print alike (a name holding the byte 0xff and one spelled `\xff`
// printed the same).
func DisplayName(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return s // never holds a backslash: no escaped name prints alike
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// Shown is DisplayName of the name a JSON path pair (path, path_b64) holds:
// for a manifest item, warning, change or problem, whose path field is
// already a display form when the name is not UTF-8 (printed as it is, a
// name holding the byte 0xff and one spelled `\xff` looked alike).
func Shown(path, b64 string) string {
	return DisplayName(Item{Path: path, PathB64: b64}.RawPath())
}

// pathFields returns the JSON fields for raw path bytes: a name that is not
// UTF-8 gets path_b64, and a readable form quoted as Go quotes it (kept as
// it always was, so a manifest's bytes do not depend on the build).
func pathFields(raw string) (display, b64 string) {
	if utf8.ValidString(raw) {
		return raw, ""
	}
	q := strconv.QuoteToGraphic(raw)
	return q[1 : len(q)-1], base64.StdEncoding.EncodeToString([]byte(raw))
}

// NewItem builds a manifest item for a node at raw path p.
func NewItem(p string, n *Node) Item {
	it := Item{Type: n.Type.String()}
	it.Path, it.PathB64 = pathFields(p)
	switch n.Type {
	case TypeFile, TypeHardlink:
		it.Size = n.Size
		it.Blake3 = n.Hash.String()
		if n.Type == TypeHardlink {
			it.Target, it.TargetB64 = pathFields(n.Target)
		}
	case TypeSymlink:
		it.Size = int64(len(n.Target))
		it.Target, it.TargetB64 = pathFields(n.Target)
	}
	return it
}

// RootHash computes the root hash of items (docs/root-hash.md): BLAKE3 over
// the items sorted by raw path bytes, one line each of
// `path NUL type NUL size NUL value LF`, value being the file BLAKE3 for
// files and hardlinks, the raw target for symlinks, empty otherwise.
func RootHash(items []Item) string {
	type row struct{ path, line string }
	rows := make([]row, len(items))
	for i, it := range items {
		p := it.RawPath()
		val := ""
		switch it.Type {
		case "file", "hardlink":
			val = it.Blake3
		case "symlink":
			val = it.RawTarget()
		}
		rows[i] = row{p, p + "\x00" + it.Type + "\x00" + strconv.FormatInt(it.Size, 10) + "\x00" + val + "\n"}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].path < rows[j].path })
	h := blake3.New()
	for _, r := range rows {
		h.WriteString(r.line)
	}
	return "blake3:" + fmt.Sprintf("%x", h.Sum(nil))
}

var backupIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (r *Repo) manifestPath(id string) string {
	return filepath.Join(r.path, "snapshots", id+".json")
}

// writeManifest commits m: temp file, fsync, rename, fsync dir. The items
// are encoded one at a time into the file, so a snapshot of many files
// does not also hold its whole manifest text in memory.
func (r *Repo) writeManifest(m *Manifest) error {
	err := writeFileAtomicFunc(r.manifestPath(m.BackupID), r.opts.WrapPackFile, func(w io.Writer) error {
		return encodeManifest(w, m)
	})
	if err != nil {
		return fmt.Errorf("commit snapshot %s: %w", m.BackupID, err)
	}
	st, _ := stampOf(r.manifestPath(m.BackupID))
	r.mu.Lock()
	r.setStampLocked(m.BackupID, st)
	r.manifest[m.BackupID] = m
	r.mu.Unlock()
	return nil
}

// encodeManifest writes m as indented JSON with one item per line (easy to
// read and to grep, a third smaller than an item over five lines: the
// manifest is stored with every snapshot), encoding the items one by one.
func encodeManifest(w io.Writer, m *Manifest) error {
	head := *m
	head.Items = nil
	b, err := json.MarshalIndent(&head, "", " ")
	if err != nil {
		return err
	}
	const slot = "\n \"items\": null"
	i := bytes.Index(b, []byte(slot))
	if i < 0 {
		return errors.New("encode manifest: no items field")
	}
	i += len(slot) - len("null")
	if _, err := w.Write(b[:i]); err != nil {
		return err
	}
	switch {
	case m.Items == nil:
		_, err = io.WriteString(w, "null")
	case len(m.Items) == 0:
		_, err = io.WriteString(w, "[]")
	default:
		_, err = io.WriteString(w, "[\n  ")
		for k := range m.Items {
			if err != nil {
				break
			}
			var ib []byte
			if ib, err = json.Marshal(&m.Items[k]); err != nil {
				break
			}
			if k > 0 {
				_, err = io.WriteString(w, ",\n  ")
			}
			if err == nil {
				_, err = w.Write(ib)
			}
		}
		if err == nil {
			_, err = io.WriteString(w, "\n ]")
		}
	}
	if err != nil {
		return err
	}
	if _, err := w.Write(b[i+len("null"):]); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}

// DamagedError reports a manifest that cannot be read (FAULTS A9).
type DamagedError struct {
	BackupID string
	Err      error
}

func (e *DamagedError) Error() string {
	if ne := new(NewerError); errors.As(e.Err, &ne) {
		return fmt.Sprintf("snapshot %s cannot be read here: %v", e.BackupID, ne)
	}
	return fmt.Sprintf("snapshot %s is damaged: %v", e.BackupID, e.Err)
}
func (e *DamagedError) Unwrap() error { return e.Err }

// LoadManifest reads the manifest of backup id.
func (r *Repo) LoadManifest(id string) (*Manifest, error) {
	r.dropIfStale(id)
	r.mu.Lock()
	m := r.manifest[id]
	r.mu.Unlock()
	if m != nil {
		return m, nil
	}
	m, st, err := r.readManifestStamp(id)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.setStampLocked(id, st)
	r.manifest[id] = m
	r.mu.Unlock()
	return m, nil
}

// readManifest reads and checks manifest id.
func (r *Repo) readManifest(id string) (*Manifest, error) {
	m, _, err := r.readManifestStamp(id)
	return m, err
}

// readManifestStamp is readManifest, with the stamp of the file the bytes
// were read from.
func (r *Repo) readManifestStamp(id string) (*Manifest, fileStamp, error) {
	if !backupIDRe.MatchString(id) {
		return nil, fileStamp{}, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	b, st, err := readStamped(r.manifestPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, st, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, st, fmt.Errorf("read snapshot %s: %w", id, err)
	}
	m, err := parseManifest(b)
	if err == nil && m.BackupID != id {
		err = fmt.Errorf("manifest names backup %q", m.BackupID)
	}
	if err != nil {
		return nil, st, &DamagedError{BackupID: id, Err: err}
	}
	return m, st, nil
}

func parseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	// Unknown fields are ignored (forward compatibility, see Requires).
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	for _, f := range m.Requires {
		if !manifestRequires[f] {
			return nil, &NewerError{Feature: f}
		}
	}
	if !backupIDRe.MatchString(m.BackupID) {
		return nil, fmt.Errorf("bad backup_id %q", m.BackupID)
	}
	if _, err := ParseID(m.Tree); err != nil {
		return nil, fmt.Errorf("bad tree id: %w", err)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.CreatedUTC); err != nil {
		return nil, fmt.Errorf("bad created_utc: %w", err)
	}
	if RootHash(m.Items) != m.RootHash {
		return nil, errors.New("manifest items do not match its root hash (manifest edited?)")
	}
	return &m, nil
}

// SnapshotEntry is one listed snapshot: its manifest, or why it is damaged.
type SnapshotEntry struct {
	BackupID string
	Manifest *Manifest // without Items (LoadManifest has them); nil when damaged
	Err      error
}

// loadHeader returns manifest id without its items. The manifest is parsed
// and checked in full (items against the root hash) the first time, but only
// the rest is kept: listing many snapshots of many files costs the memory of
// one manifest at a time.
func (r *Repo) loadHeader(id string) (*Manifest, error) {
	r.dropIfStale(id)
	r.mu.Lock()
	h := r.headers[id]
	if h == nil && r.manifest[id] != nil {
		c := *r.manifest[id]
		c.Items = nil
		h = &c
	}
	r.mu.Unlock()
	if h != nil {
		return h, nil
	}
	m, st, err := r.readManifestStamp(id)
	if err != nil {
		return nil, err
	}
	links := hardLinkCounts(m.Items)
	m.Items = nil
	r.mu.Lock()
	r.setStampLocked(id, st)
	r.headers[id] = m
	r.keepLinksLocked(id, links)
	r.mu.Unlock()
	return m, nil
}

// keepLinksLocked records the hard-link counts of snapshot id, so HardLinks
// (the mount asks for them when it first shows a file of the snapshot)
// need not read its manifest again. r.mu is held.
func (r *Repo) keepLinksLocked(id string, links map[string]uint32) {
	if r.links == nil {
		r.links = map[string]map[string]uint32{}
	}
	r.links[id] = links
}

// hardLinkCounts returns the number of names of every hard-linked file of
// items, by the raw path of its first name; nil when there are none.
func hardLinkCounts(items []Item) map[string]uint32 {
	var links map[string]uint32
	for _, it := range items {
		if it.Type == TypeHardlink.String() {
			if links == nil {
				links = map[string]uint32{}
			}
			t := it.RawTarget()
			if links[t] == 0 {
				links[t] = 1
			}
			links[t]++
		}
	}
	return links
}

// Snapshots lists every snapshot, oldest first; damaged ones are listed
// with their error, never dropped (FAULTS A9).
func (r *Repo) Snapshots(ctx context.Context) ([]SnapshotEntry, error) {
	ents, err := os.ReadDir(filepath.Join(r.path, "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []SnapshotEntry
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		out = append(out, SnapshotEntry{BackupID: strings.TrimSuffix(name, ".json")})
	}
	// A manifest lists every item (2 MB of JSON for the reference dataset's
	// 11,752 files), parsed and checked the first time: one per core at a
	// time.
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range out {
		g.Go(func() error {
			out[i].Manifest, out[i].Err = r.loadHeader(out[i].BackupID)
			return nil
		})
	}
	g.Wait()
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Manifest != nil && b.Manifest != nil && a.Manifest.CreatedUTC != b.Manifest.CreatedUTC {
			return a.Manifest.Created().Before(b.Manifest.Created())
		}
		// Same second (created_utc has whole seconds): the audit head each
		// manifest recorded grows with every backup, so it orders them, also
		// across names ("wf-…" taken after "snap-…" is the latest).
		if a.Manifest != nil && b.Manifest != nil && a.Manifest.AuditSeq != b.Manifest.AuditSeq {
			return a.Manifest.AuditSeq < b.Manifest.AuditSeq
		}
		return a.BackupID < b.BackupID
	})
	return out, nil
}

// TagSafety tags a safety snapshot: the one an in-place restore takes
// before it changes anything. "latest" names one only when no regular
// snapshot exists.
const TagSafety = "safety"

// IsSafety reports whether m is a safety snapshot.
func (m *Manifest) IsSafety() bool { return slices.Contains(m.Tags, TagSafety) }

// Resolve turns a SNAP argument (a backup id, a unique prefix, or "latest")
// into a manifest.
func (r *Repo) Resolve(ctx context.Context, ref string) (*Manifest, error) {
	list, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	if ref == "latest" {
		// The newest regular snapshot: a safety snapshot (taken before an
		// in-place restore, tagged "safety") is named by its id.
		for _, safety := range []bool{false, true} {
			for i := len(list) - 1; i >= 0; i-- {
				if m := list[i].Manifest; m != nil && (safety || !m.IsSafety()) {
					return r.LoadManifest(list[i].BackupID)
				}
			}
		}
		return nil, fmt.Errorf("latest: no snapshots yet: %w", ErrNotFound)
	}
	var hits []SnapshotEntry
	for _, e := range list {
		if e.BackupID == ref {
			hits = []SnapshotEntry{e}
			break
		}
		if strings.HasPrefix(e.BackupID, ref) {
			hits = append(hits, e)
		}
	}
	switch {
	case len(hits) == 0:
		return nil, fmt.Errorf("snapshot %q: %w (list them with `snapforge snapshots`)", ref, ErrNotFound)
	case len(hits) > 1:
		return nil, fmt.Errorf("snapshot %q is ambiguous: %d snapshots start with it; give more of the id (list them with `snapforge snapshots`)", ref, len(hits))
	case hits[0].Err != nil:
		return nil, hits[0].Err
	}
	return r.LoadManifest(hits[0].BackupID)
}

// HardLinks returns, for snapshot id, the number of names of each
// hard-linked file, keyed by the raw path of its first name (the target of
// its other names' items). The counts of a snapshot whose manifest was read
// whole before (Snapshots, LoadManifest) are kept from then and cost
// nothing; otherwise the first call reads the manifest (a snapshot without
// hard links: one scan of its bytes), and only the counts are kept.
func (r *Repo) HardLinks(id string) (map[string]uint32, error) {
	r.dropIfChanged(id, true)
	r.mu.Lock()
	links, ok := r.links[id]
	if full := r.manifest[id]; !ok && full != nil {
		links, ok = hardLinkCounts(full.Items), true
		r.keepLinksLocked(id, links)
	}
	r.mu.Unlock()
	if ok {
		return links, nil
	}
	b, st, err := readStamped(r.manifestPath(id))
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", id, err)
	}
	if bytes.Contains(b, []byte(`"hardlink"`)) {
		m, err := r.readManifest(id)
		if err != nil {
			return nil, err
		}
		links = hardLinkCounts(m.Items)
	}
	r.mu.Lock()
	r.setStampLocked(id, st)
	r.keepLinksLocked(id, links)
	r.mu.Unlock()
	return links, nil
}

// PathFields returns the JSON fields for raw path bytes: the path for
// humans, and its base64 when the bytes are not valid UTF-8 (so the exact
// name survives JSON).
func PathFields(raw string) (display, b64 string) { return pathFields(raw) }
