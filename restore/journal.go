package restore

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"snapforge/snapshot"
)

// The journal is the record a crashed or failed restore is undone from. It
// lives in the staging area (the same filesystem as every rename it
// records) as JSON lines; each line is written and fsynced before the step
// it announces is carried out, so a step without its line never happened.
// A torn last line (a kill mid-write) announces a step that was not started.
// Steps record the inode numbers involved, so recovery tells by looking at
// the live path whether an announced rename took place.
//
// A pointer in the repository (restores/<id>.json) names the target and
// staging area, so the next snapforge start finds unfinished restores
// without scanning the disk.

// Record kinds.
const (
	recBegin      = "begin"       // header: what, where, hooks
	recSafety     = "safety"      // safety snapshot taken (ID)
	recStopped    = "stopped"     // the stop hook ran: the application is down
	recStarted    = "started"     // the start hook ran: the application is up
	recMkdir      = "mkdir"       // a missing parent directory was created
	recCreate     = "create"      // staged entry renamed to a free live path
	recExchange   = "exchange"    // staged entry and live entry exchanged
	recMove       = "move"        // live entry moved into the staging area (removal)
	recMeta       = "meta"        // metadata of a live entry changed (old values kept)
	recDirTime    = "dirtime"     // a kept directory's times before the swap renamed in it
	recSwapped    = "swapped"     // every swap step done and synced
	recCommit     = "commit"      // smoke test passed: the new state stays
	recRollback   = "rollback"    // rollback started (reason)
	recRolledBack = "rolled_back" // every step undone and synced
)

// record is one journal line. Paths are raw bytes (base64 in JSON) so any
// name round-trips exactly.
type record struct {
	Seq  int    `json:"seq"`
	T    string `json:"t"`
	Time string `json:"time,omitempty"`

	// begin
	RestoreID string          `json:"restore_id,omitempty"`
	BackupID  string          `json:"backup_id,omitempty"`
	Target    string          `json:"target,omitempty"`
	Scope     string          `json:"scope,omitempty"`
	Hooks     *snapshot.Hooks `json:"hooks,omitempty"`

	// safety
	Safety string `json:"safety,omitempty"`

	// steps
	Path   []byte `json:"p,omitempty"`     // live path, relative to the target
	Staged []byte `json:"stage,omitempty"` // path relative to the staging area
	Dev    uint64 `json:"dev,omitempty"`
	NewIno uint64 `json:"new_ino,omitempty"`
	OldIno uint64 `json:"old_ino,omitempty"`
	Mode   uint32 `json:"mode,omitempty"`
	UID    uint32 `json:"uid,omitempty"`
	GID    uint32 `json:"gid,omitempty"`
	MTime  int64  `json:"mtime,omitempty"`
	ATime  int64  `json:"atime,omitempty"`

	Reason string `json:"reason,omitempty"`
}

type journal struct {
	f   *os.File
	seq int
}

const journalName = "journal"

func createJournal(dir string) (*journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create restore journal: %w", err)
	}
	return &journal{f: f}, nil
}

// openJournal reopens an existing journal for appending (recovery), cut
// to its valid length first so a torn last line never ends up in the middle.
func openJournal(dir string, seq int, valid int64) (*journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open restore journal: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > valid {
		if err := f.Truncate(valid); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut the torn end of the restore journal: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync restore journal: %w", err)
		}
	}
	return &journal{f: f, seq: seq}, nil
}

// errNoHeader is a journal without its begin record: the restore was killed
// before it changed anything.
var errNoHeader = errors.New("restore journal has no header")

// add appends rec and makes it durable before returning.
func (j *journal) add(rec record) error { return j.addAll([]record{rec}) }

// addAll appends recs and syncs once.
func (j *journal) addAll(recs []record) error {
	var b []byte
	for _, rec := range recs {
		j.seq++
		rec.Seq = j.seq
		rec.Time = time.Now().UTC().Format(time.RFC3339Nano)
		line, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		b = append(append(b, line...), '\n')
	}
	if len(b) == 0 {
		return nil
	}
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("write restore journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync restore journal: %w", err)
	}
	return nil
}

func (j *journal) close() error {
	if j == nil || j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// readJournal returns the records of the journal in dir and the length of
// the valid ones. A last line that does not parse is a torn write: it is
// dropped (its step never started) and the length says where it starts. A
// bad line before the end is damage, reported as an error.
func readJournal(dir string) ([]record, int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		return nil, 0, err
	}
	var recs []record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var lines [][]byte
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("read restore journal %s: %w", dir, err)
	}
	var valid int64
	for i, l := range lines {
		var rec record
		if err := json.Unmarshal(l, &rec); err != nil || rec.Seq != len(recs)+1 {
			if i == len(lines)-1 && !bytes.HasSuffix(b, []byte("\n")) {
				break // torn tail: its step never started
			}
			return nil, 0, fmt.Errorf("restore journal %s is damaged at line %d", dir, i+1)
		}
		recs = append(recs, rec)
		valid += int64(len(l)) + 1
	}
	if len(recs) == 0 || recs[0].T != recBegin {
		if len(recs) == 0 {
			return nil, 0, errNoHeader
		}
		return nil, 0, fmt.Errorf("restore journal %s has no header", dir)
	}
	return recs, valid, nil
}

// pointer is <repo>/restores/<id>.json: where an unfinished restore is.
type pointer struct {
	RestoreID string          `json:"restore_id"`
	BackupID  string          `json:"backup_id"`
	Target    string          `json:"target"`
	Staging   string          `json:"staging"`
	Started   string          `json:"started_utc"`
	PID       int             `json:"pid"`
	Hooks     *snapshot.Hooks `json:"hooks,omitempty"` // run by recovery (never the journal's: it lives in the live root)

	// untrusted says why the record may not steer a recovery
	// (snapshot.CheckHookFile of its file): its target and hooks, even
	// their absence, choose what is undone where and what runs. Recovery
	// then leaves the restore alone.
	untrusted string
}

func pointerDir(repo string) string { return filepath.Join(repo, "restores") }

func writePointer(repo string, p pointer) error {
	dir := pointerDir(repo)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("record restore in repository: %w", err)
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	name := filepath.Join(dir, p.RestoreID+".json")
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("record restore in repository: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("record restore in repository: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("record restore in repository: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("record restore in repository: %w", err)
	}
	return syncPath(dir)
}

func removePointer(repo, id string) error {
	err := os.Remove(filepath.Join(pointerDir(repo), id+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncPath(pointerDir(repo))
}

func readPointers(repo string) ([]pointer, error) {
	ents, err := os.ReadDir(pointerDir(repo))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []pointer
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		name := filepath.Join(pointerDir(repo), e.Name())
		b, fi, err := snapshot.ReadFileInfo(name)
		if err != nil {
			return nil, err
		}
		var p pointer
		if err := json.Unmarshal(b, &p); err != nil || p.RestoreID == "" {
			return nil, fmt.Errorf("restore record %s is damaged; remove it after checking %s by hand", e.Name(), pointerDir(repo))
		}
		if err := snapshot.CheckHookFile(name, fi); err != nil {
			p.untrusted = err.Error()
		}
		out = append(out, p)
	}
	return out, nil
}

func syncPath(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
