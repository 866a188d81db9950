package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/zeebo/blake3"
)

// Files in the trail directory.
const (
	LogFile  = "audit.jsonl" // the events, one per line
	HeadFile = "HEAD"        // the newest seq and hash
	headTemp = "HEAD.tmp"    // HEAD being replaced; only written under the lock
)

// Operations recorded by this package itself.
const (
	OpRecoveredTornTail  = "recovered_torn_tail" // Open removed an incomplete last line
	OpAcknowledgedDamage = "acknowledged_damage" // Acknowledge recorded that damage was seen
)

// MaxLine is the longest line, without its newline, that Append writes and
// Verify parses. Longer lines are refused by Append and unparsable to Verify.
// Keep Params small: counts and a few names, not whole file lists. An event
// that would be longer is appended with its largest parameters summarized
// (see shrink), never dropped.
const MaxLine = 1 << 20

const (
	hashField  = `,"hash":"` // starts the last field of every line
	hashPrefix = "blake3:"
)

var (
	// ErrLocked reports that another Log (in this process or another) has the trail open.
	ErrLocked = errors.New("audit: trail is open elsewhere")
	// ErrDamaged is matched by *DamageError: Open found problems nobody acknowledged.
	ErrDamaged = errors.New("audit: trail damaged")
	// ErrClosed reports an Append on a closed Log.
	ErrClosed = errors.New("audit: log closed")
	// ErrBroken reports an Append on a Log whose earlier write, fsync or HEAD
	// update failed. Close it and Open again: Open repairs what the failure left.
	ErrBroken = errors.New("audit: log unusable after a failed write")
)

// DamageError is returned by Open for a trail with problems that were not
// acknowledged. It matches ErrDamaged.
type DamageError struct {
	Report Report // the full verification, as Verify without anchors would give it
}

func (e *DamageError) Error() string {
	un := e.Report.unacknowledged()
	if len(un) == 0 {
		return "audit: trail damaged"
	}
	return fmt.Sprintf("audit: trail damaged: %s (%d unacknowledged problems)", un[0], len(un))
}

// Unwrap returns ErrDamaged.
func (e *DamageError) Unwrap() error { return ErrDamaged }

// Event is one line of the trail.
type Event struct {
	Seq     uint64         `json:"seq"`              // 1, 2, 3, …; set by Append
	Time    time.Time      `json:"time"`             // UTC, RFC3339Nano; Append sets it when zero
	Actor   string         `json:"actor"`            // who, e.g. "cli:root@host pid 123"
	Op      string         `json:"op"`               // init, backup, verify, restore, repair, recovered_torn_tail, …
	Params  map[string]any `json:"params,omitempty"` // file names must go through Escape
	Outcome string         `json:"outcome"`          // "ok", "partial", "failed: <reason>", "interrupted (…)", "integrity failure: …"
	Prev    string         `json:"prev"`             // hash of the previous line; "" for seq 1; set by Append
	Hash    string         `json:"hash"`             // "blake3:<hex>" of this line's bytes before the hash field; set by Append
}

// record is Event without its hash: the hashed part of a line, in line order.
type record struct {
	Seq     uint64         `json:"seq"`
	Time    time.Time      `json:"time"`
	Actor   string         `json:"actor"`
	Op      string         `json:"op"`
	Params  map[string]any `json:"params,omitempty"`
	Outcome string         `json:"outcome"`
	Prev    string         `json:"prev"`
}

// Head names the newest line of a trail. The zero Head names an empty trail.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Anchor returns h as an anchor from source, for Verify.
func (h Head) Anchor(source string) Anchor { return Anchor{Seq: h.Seq, Hash: h.Hash, Source: source} }

// Log appends to the trail in one directory. It is safe for concurrent use.
type Log struct {
	dir string
	now func() time.Time

	mu      sync.Mutex
	f       *os.File     // audit.jsonl, O_APPEND, flocked; nil once closed
	head    Head         // the last line
	next    uint64       // seq of the next line; 0 after overflow
	broken  error        // first write, fsync or HEAD failure; appends stop
	reopen  bool         // f was closed by Check after broken, to be opened again
	damaged *DamageError // found by Check, not yet acknowledged; appends stop
}

// Open opens the trail in dir for appending, creating dir, audit.jsonl and
// HEAD if absent, and locks it (ErrLocked if another Log holds it). now
// supplies the times of events that have none; nil means time.Now. It is
// called with the Log's lock held and must not call the Log.
//
// Open verifies the whole trail first (it reads the whole file). It repairs
// the two states a crash can leave: a torn last line is truncated and a
// recovered_torn_tail event appended; a HEAD one line behind is rewritten.
// Any other problem makes Open return a *DamageError and write nothing (at
// most an empty audit.jsonl is created where none was); see Acknowledge.
func Open(dir string, now func() time.Time) (*Log, error) {
	l, t, err := openLocked(dir, now)
	if err != nil {
		return nil, err
	}
	if len(t.report.unacknowledged()) > 0 {
		l.f.Close()
		return nil, &DamageError{Report: t.report}
	}
	l.mu.Lock()
	err = l.repair(t)
	l.mu.Unlock()
	if err != nil {
		l.f.Close()
		return nil, err
	}
	return l, nil
}

// Acknowledge records that the damage Verify reports in dir has been seen, so
// that Open accepts the trail again. It appends an acknowledged_damage event
// by actor listing the unacknowledged problems and the HEAD it found,
// continues the chain from the last parsable line, and rewrites HEAD. The old
// problems stay in the file and Verify keeps reporting them.
//
// Acknowledge returns the event it appended, or a zero Event when there was
// nothing to acknowledge. It fails with ErrLocked while a Log is open.
func Acknowledge(dir string, now func() time.Time, actor string) (Event, error) {
	l, t, err := openLocked(dir, now)
	if err != nil {
		return Event{}, err
	}
	defer l.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acknowledge(t, actor)
}

// Acknowledge is the package's Acknowledge through a Log held open (the
// process that owns the repository holds its trail for as long as it
// runs): the trail is read again from disk first (opened again if a failed
// write broke the Log, or if the file was replaced).
func (l *Log) Acknowledge(actor string) (Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.reopenIfNeeded(); err != nil {
		return Event{}, err
	}
	t, err := l.rescan(true) // what Check finds, a cut after our last event too
	if err != nil {
		return Event{}, err
	}
	l.damaged = nil // what it found is what this acknowledges
	l.adopt(t)
	return l.acknowledge(t, actor)
}

// acknowledge appends the acknowledged_damage event for t's unacknowledged
// problems. l.mu is held.
func (l *Log) acknowledge(t *trail, actor string) (Event, error) {
	un := t.report.unacknowledged()
	if len(un) == 0 {
		return Event{}, nil
	}
	if err := l.repairTorn(t); err != nil {
		return Event{}, err
	}
	const maxListed = 100
	list := make([]string, 0, min(len(un), maxListed))
	for _, p := range un[:min(len(un), maxListed)] {
		list = append(list, p.String())
	}
	found := "missing"
	if t.headPresent {
		found = Escape(bytes.TrimSpace(t.headRaw))
	}
	return l.appendLocked(Event{
		Actor: actor,
		Op:    OpAcknowledgedDamage,
		Params: map[string]any{
			"problems":      list,
			"problem_count": len(un),
			"head_found":    found,
		},
		Outcome: fmt.Sprintf("integrity failure: %s (%d problems)", un[0], len(un)),
	})
}

// Check verifies the trail on disk again, as Open does, for a Log held open
// long (the mount's owner runs every client's command on one Log). A trail
// damaged or altered since it was opened makes Check return a
// *DamageError, as Open would now, and appends are refused until the
// damage is acknowledged (Acknowledge); beyond what Open sees, the trail
// must still hold the last event this Log wrote, so a trail cut short with
// HEAD rewritten to match is caught too. A Log that a failed write broke
// (a full disk), or whose file was replaced (a rename over it), is opened
// again on a new descriptor, and what a failed write left is repaired (a
// torn line cut and recorded, a stale HEAD), so that appends work again
// once the cause is gone; reopened says so.
func (l *Log) Check() (reopened bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if reopened, err = l.reopenIfNeeded(); err != nil {
		return reopened, err
	}
	t, err := l.rescan(true)
	if err != nil {
		return reopened, err
	}
	if len(t.report.unacknowledged()) > 0 {
		// The last event known stays the one to anchor on: head is not
		// moved to what the altered file ends with.
		l.damaged = &DamageError{Report: t.report}
		return reopened, l.damaged
	}
	l.damaged = nil
	l.adopt(t)
	return reopened, l.repair(t)
}

// reopenIfNeeded opens the trail again when a failed write broke the Log
// (never retry on that descriptor; its lock goes with it) or when the file
// at the trail's path is no longer the one held. l.mu is held.
func (l *Log) reopenIfNeeded() (reopened bool, err error) {
	if l.f == nil && !l.reopen {
		return false, ErrClosed
	}
	if l.broken == nil && l.f != nil && sameFile(l.f, filepath.Join(l.dir, LogFile)) {
		return false, nil
	}
	if l.f != nil {
		l.f.Close()
		l.f, l.reopen = nil, true
	}
	nl, _, err := openLocked(l.dir, l.now)
	if err != nil {
		if l.broken != nil {
			return false, fmt.Errorf("%w: %w (reopening: %w)", ErrBroken, l.broken, err)
		}
		return false, fmt.Errorf("audit: reopen the trail: %w", err)
	}
	l.f, l.broken, l.reopen = nl.f, nil, false
	return true, nil
}

// sameFile reports whether f is the file at name.
func sameFile(f *os.File, name string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(name)
	return err == nil && os.SameFile(a, b)
}

// rescan reads the trail again from l.f (see adopt). With known, the last event this Log wrote must still be there, as it
// wrote it (checked as an anchor). l.mu is held.
func (l *Log) rescan(known bool) (*trail, error) {
	var want map[uint64]bool
	if known && l.head.Seq > 0 {
		want = map[uint64]bool{l.head.Seq: true}
	}
	t, err := scan(io.NewSectionReader(l.f, 0, math.MaxInt64), want, nil)
	if err != nil {
		return nil, fmt.Errorf("audit: read trail: %w", err)
	}
	raw, present, err := readHeadRaw(l.dir)
	if err != nil {
		return nil, err
	}
	t.checkHead(raw, present)
	if want != nil {
		t.checkAnchors([]Anchor{l.head.Anchor("the last event this process wrote")})
	}
	return t, nil
}

// adopt continues the chain after t's last line. l.mu is held.
func (l *Log) adopt(t *trail) { l.head, l.next = t.report.Head, t.maxSeq+1 }

// openLocked opens and locks the trail and verifies it without anchors.
func openLocked(dir string, now func() time.Time) (*Log, *trail, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: open trail: %w", err)
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, nil, err
	}
	t, err := func() (*trail, error) {
		if err := syncDir(dir); err != nil { // the file may have just been created
			return nil, err
		}
		if err := os.Remove(filepath.Join(dir, headTemp)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("audit: remove stale %s: %w", headTemp, err)
		}
		t, err := scan(io.NewSectionReader(f, 0, math.MaxInt64), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("audit: read trail: %w", err)
		}
		raw, present, err := readHeadRaw(dir)
		if err != nil {
			return nil, err
		}
		t.checkHead(raw, present)
		return t, nil
	}()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	l := &Log{dir: dir, now: now, f: f, head: t.report.Head, next: t.maxSeq + 1}
	return l, t, nil
}

// lock takes an exclusive, non-blocking flock on f.
func lock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	}
	if err != nil {
		return fmt.Errorf("audit: lock trail: %w", err)
	}
	return nil
}

// repair fixes what a crash leaves: a torn tail, a stale or missing HEAD.
// l.mu is held.
func (l *Log) repair(t *trail) error {
	if t.report.TornTail {
		return l.repairTorn(t) // its event rewrites HEAD
	}
	if !t.headPresent || t.report.StaleHead {
		if err := writeHead(l.dir, l.head); err != nil {
			return err
		}
	}
	return nil
}

// repairTorn truncates the bytes after the last newline and records them.
// l.mu is held.
func (l *Log) repairTorn(t *trail) error {
	if !t.report.TornTail {
		return nil
	}
	n := t.report.TornBytes
	h := blake3.New()
	if _, err := io.Copy(h, io.NewSectionReader(l.f, t.goodLen, n)); err != nil {
		return fmt.Errorf("audit: read torn tail: %w", err)
	}
	first := make([]byte, min(n, 256))
	if _, err := l.f.ReadAt(first, t.goodLen); err != nil {
		return fmt.Errorf("audit: read torn tail: %w", err)
	}
	if err := l.f.Truncate(t.goodLen); err != nil {
		return fmt.Errorf("audit: truncate torn tail: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: truncate torn tail: %w", err)
	}
	_, err := l.appendLocked(Event{
		Actor: fmt.Sprintf("audit:open pid %d", os.Getpid()),
		Op:    OpRecoveredTornTail,
		Params: map[string]any{
			"at_seq":         l.next,
			"removed_bytes":  n,
			"removed_blake3": hashPrefix + hex.EncodeToString(h.Sum(nil)),
			"removed_start":  Escape(first),
		},
		Outcome: "ok",
	})
	return err
}

// Append completes e and writes it as the trail's next line. It sets Seq and
// Prev (overwriting any caller values), Time when zero (and converts it to
// UTC), and Hash; e.Op must not be empty. The line goes out in a single
// write, the file is fsynced, then HEAD is replaced. Append returns the
// completed event, which is what ReadAll will return for it except that Params
// come back decoded from JSON (numbers as json.Number).
//
// If the write or the fsync fails, the event may be partly on disk; if only
// the HEAD update fails, the event is durable and Append returns it together
// with the error. Either way the Log refuses further appends (ErrBroken):
// Close it and Open again, which repairs the torn line or the stale HEAD.
func (l *Log) Append(e Event) (Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(e)
}

// appendLocked is Append with l.mu held.
func (l *Log) appendLocked(e Event) (Event, error) {
	switch {
	case l.f == nil && l.reopen:
		return Event{}, ErrBroken // Check opens it again
	case l.f == nil:
		return Event{}, ErrClosed
	case l.damaged != nil && e.Op != OpAcknowledgedDamage:
		return Event{}, l.damaged
	case l.broken != nil:
		return Event{}, fmt.Errorf("%w: %w", ErrBroken, l.broken)
	case e.Op == "":
		return Event{}, errors.New("audit: append: empty op")
	case l.next == 0:
		return Event{}, errors.New("audit: append: seq overflow")
	}
	e.Seq, e.Prev = l.next, l.head.Hash
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC() // also drops the monotonic reading
	line, hash, err := encodeLine(e)
	if errors.Is(err, errTooLong) {
		// Still recorded, in short: a command's event must not be lost
		// for the length of its arguments (5,000 --include paths).
		e = shrink(e)
		line, hash, err = encodeLine(e)
	}
	if err != nil {
		return Event{}, fmt.Errorf("audit: append %s: %w", e.Op, err)
	}
	e.Hash = hash
	if _, err := l.f.Write(line); err != nil {
		l.broken = err
		return Event{}, fmt.Errorf("audit: append seq %d: %w", e.Seq, err)
	}
	if err := l.f.Sync(); err != nil {
		l.broken = err // never retry fsync on the same fd
		return Event{}, fmt.Errorf("audit: append seq %d: %w", e.Seq, err)
	}
	l.head, l.next = Head{Seq: e.Seq, Hash: e.Hash}, e.Seq+1
	if err := writeHead(l.dir, l.head); err != nil {
		l.broken = err
		return e, fmt.Errorf("audit: seq %d recorded, but HEAD not updated: %w", e.Seq, err)
	}
	return e, nil
}

// Head returns the newest line's seq and hash (the zero Head for an empty trail).
func (l *Log) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Close releases the lock and closes the trail. Closing twice is harmless.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reopen = false
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}

// encodeLine returns e's line (with its newline) and hash. e.Hash is ignored.
func encodeLine(e Event) (line []byte, hash string, err error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(record{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Op: e.Op, Params: e.Params, Outcome: e.Outcome, Prev: e.Prev}); err != nil {
		return nil, "", err
	}
	prefix, ok := bytes.CutSuffix(buf.Bytes(), []byte("}\n"))
	if !ok || bytes.IndexByte(prefix, '\n') >= 0 {
		return nil, "", errors.New("encoder produced more than one line") // cannot happen with encoding/json
	}
	hash = hashOf(prefix)
	line = append(prefix, hashField...)
	line = append(line, hash...)
	line = append(line, "\"}\n"...)
	if len(line)-1 > MaxLine {
		return nil, "", fmt.Errorf("event is %d bytes, longer than %d: %w", len(line)-1, MaxLine, errTooLong)
	}
	return line, hash, nil
}

var errTooLong = errors.New("event too long")

// jsonOf is v as a line encodes it (no HTML escaping), without a newline.
func jsonOf(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// maxOutcome is the longest outcome an event too long for a line keeps.
const maxOutcome = 64 << 10

// shrink returns e made to fit in a line: the largest parameters, one at a
// time, are replaced by what identifies them (their JSON's size, the number
// of items of a list, and the BLAKE3 of the JSON as a line would hold it),
// until the line fits; an outcome over maxOutcome bytes is cut, saying how
// much was left out, when the line cannot fit with it whole. The event still says what was
// done, by whom and how it ended.
func shrink(e Event) Event {
	fits := func() bool { _, _, err := encodeLine(e); return !errors.Is(err, errTooLong) }
	cutOutcome := func() {
		if len(e.Outcome) <= maxOutcome {
			return
		}
		cut := maxOutcome
		for cut > 0 && !utf8.RuneStart(e.Outcome[cut]) {
			cut--
		}
		e.Outcome = fmt.Sprintf("%s… (%d more bytes left out: too long for the audit trail)", e.Outcome[:cut], len(e.Outcome)-cut)
	}
	// An outcome that does not fit even without parameters is cut first;
	// any other is kept whole if summarizing parameters is enough.
	params := e.Params
	e.Params = nil
	if !fits() {
		cutOutcome()
	}
	e.Params = params
	if len(e.Params) > 0 {
		params := make(map[string]any, len(e.Params))
		size := map[string]int{}
		for k, v := range e.Params {
			params[k] = v
			size[k] = len(jsonOf(v))
		}
		e.Params = params
		for !fits() && len(size) > 0 {
			largest := ""
			for k, n := range size {
				if largest == "" || n > size[largest] || (n == size[largest] && k < largest) {
					largest = k
				}
			}
			b := jsonOf(params[largest])
			sum := blake3.Sum256(b)
			short := map[string]any{"left_out_bytes": len(b), "blake3": hashPrefix + hex.EncodeToString(sum[:])}
			if rv := reflect.ValueOf(params[largest]); rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
				short["items"] = rv.Len()
			}
			params[largest] = short
			delete(size, largest)
		}
	}
	if !fits() {
		cutOutcome()
	}
	return e
}

// hashOf returns "blake3:<hex>" of b.
func hashOf(b []byte) string {
	sum := blake3.Sum256(b)
	return hashPrefix + hex.EncodeToString(sum[:])
}

// validHash reports whether s is "blake3:" and 64 lowercase hex digits.
func validHash(s string) bool {
	hexPart, ok := strings.CutPrefix(s, hashPrefix)
	if !ok || len(hexPart) != 64 {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ReadHead reads dir/HEAD without opening (or locking) the trail, for the
// audit_head of a manifest or an export. A missing HEAD is an error that
// matches fs.ErrNotExist; Open writes HEAD, so it only happens before the
// first Open or after HEAD was deleted.
func ReadHead(dir string) (Head, error) {
	raw, present, err := readHeadRaw(dir)
	if err != nil {
		return Head{}, err
	}
	if !present {
		return Head{}, fmt.Errorf("audit: read HEAD: %w", fs.ErrNotExist)
	}
	h, err := parseHead(raw)
	if err != nil {
		return Head{}, fmt.Errorf("audit: read HEAD: %w", err)
	}
	return h, nil
}

// readHeadRaw returns HEAD's bytes; present is false when it does not exist.
func readHeadRaw(dir string) (raw []byte, present bool, err error) {
	raw, err = os.ReadFile(filepath.Join(dir, HeadFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit: read HEAD: %w", err)
	}
	return raw, true, nil
}

func parseHead(raw []byte) (Head, error) {
	var h Head
	if err := json.Unmarshal(raw, &h); err != nil {
		return Head{}, fmt.Errorf("parse HEAD: %w", err)
	}
	if h.Seq == 0 && h.Hash != "" || h.Seq > 0 && !validHash(h.Hash) {
		return Head{}, fmt.Errorf("parse HEAD: invalid seq %d with hash %q", h.Seq, h.Hash)
	}
	return h, nil
}

// writeHead replaces dir/HEAD atomically: temp file, fsync, rename, fsync dir.
func writeHead(dir string, h Head) error {
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("audit: write HEAD: %w", err)
	}
	tmp := filepath.Join(dir, headTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit: write HEAD: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, HeadFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("audit: write HEAD: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit: sync dir: %w", err)
	}
	return nil
}
