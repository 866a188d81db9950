package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// The dataset at scale 1.0: the reference application data directory of
// issue 3 (1.7 GB, 11,760 files).
const (
	refDBBytes     = 300_000_000   // data/app.db
	refLogBytes    = 212_000_000   // logs/
	refModelBytes  = 1_070_000_000 // models/, four files
	refSrcFiles    = 11_478        // src/, about 11.5 kB each
	refConfigFiles = 220           // config/
	refKeyFiles    = 16            // keys/
	refLogArchives = 30            // logs/archive/
)

// dbPath is the database, relative to the dataset root.
const dbPath = "data/app.db"

// epoch is the base of every generated timestamp (mtimes, log lines, rows).
var epoch = time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)

// GenOptions configure Generate.
type GenOptions struct {
	Dir        string  // created; must be absent or empty
	Scale      float64 // multiplies sizes and counts; 1.0 is about 1.7 GB
	FilesScale float64 // further multiplies the source tree's file count; 0 means 1
	Seed       uint64
}

// TreeStats summarise a directory tree.
type TreeStats struct {
	Files int
	Bytes int64
	Root  string // tree hash, see HashTree
}

// Generate writes the dataset. The same options give a byte-identical tree
// with identical permissions and mtimes. The components are written
// concurrently, each from its own random stream.
func Generate(ctx context.Context, o GenOptions) (TreeStats, error) {
	if o.Scale <= 0 {
		return TreeStats{}, errors.New("gen: --scale must be positive")
	}
	if o.FilesScale <= 0 {
		o.FilesScale = 1
	}
	if ents, err := os.ReadDir(o.Dir); err == nil && len(ents) > 0 {
		return TreeStats{}, fmt.Errorf("gen: %s is not empty", o.Dir)
	}
	for _, d := range []string{"config", "data", "logs/archive", "models", "keys", "src"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return TreeStats{}, fmt.Errorf("gen: %w", err)
		}
	}
	sc := func(n float64) int64 { return int64(math.Round(n * o.Scale)) }
	atLeast := func(min int, n float64) int { return max(min, int(math.Round(n))) }
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return genDB(ctx, filepath.Join(o.Dir, dbPath), sc(refDBBytes), o.Seed)
	})
	g.Go(func() error {
		return genModels(ctx, filepath.Join(o.Dir, "models"), sc(refModelBytes), o.Seed)
	})
	g.Go(func() error {
		return genLogs(filepath.Join(o.Dir, "logs"), sc(refLogBytes), atLeast(1, refLogArchives*o.Scale), o.Seed)
	})
	g.Go(func() error {
		if err := genSource(ctx, filepath.Join(o.Dir, "src"), atLeast(1, refSrcFiles*o.Scale*o.FilesScale), o.Seed); err != nil {
			return err
		}
		if err := genConfig(filepath.Join(o.Dir, "config"), atLeast(4, refConfigFiles*o.Scale), o.Seed); err != nil {
			return err
		}
		return genKeys(filepath.Join(o.Dir, "keys"), atLeast(2, refKeyFiles*o.Scale), o.Seed)
	})
	if err := g.Wait(); err != nil {
		return TreeStats{}, fmt.Errorf("gen: %w", err)
	}
	if err := fixMetadata(o.Dir); err != nil {
		return TreeStats{}, fmt.Errorf("gen: %w", err)
	}
	t, err := HashTree(o.Dir)
	if err != nil {
		return TreeStats{}, err
	}
	return TreeStats{Files: t.Files, Bytes: t.Bytes, Root: t.Root}, nil
}

// newChaCha returns the random stream named stream for seed. Streams are
// independent, so components can be generated in any order.
func newChaCha(seed uint64, stream string) *rand.ChaCha8 {
	return rand.NewChaCha8(blake3.Sum256([]byte("sfbench " + strconv.FormatUint(seed, 10) + " " + stream)))
}

func newRNG(seed uint64, stream string) *rand.Rand { return rand.New(newChaCha(seed, stream)) }

// fixMetadata gives every entry a fixed permission and an mtime from its
// position in the walk, so the tree does not depend on umask or the clock.
func fixMetadata(root string) error {
	i := 0
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		secret := rel == "keys" || strings.HasPrefix(rel, "keys/")
		mode := fs.FileMode(0o644)
		switch {
		case d.IsDir() && secret:
			mode = 0o700
		case d.IsDir():
			mode = 0o755
		case secret:
			mode = 0o600
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		t := epoch.Add(time.Duration(i) * time.Minute)
		i++
		return os.Chtimes(p, t, t)
	})
}

// words is the vocabulary of every generated text.
var words = strings.Fields(`the of and to in is for on with as by at from this that be are was it an or
not have has had will can may should would could must data user file item order account session request
response cache index query table column value record model layer weight tensor batch epoch token embedding
vector score result error warning status config setting option profile theme panel window timeline library
project folder document page section note comment draft review update create delete insert select commit
rollback backup restore snapshot verify checksum hash chunk pack tree manifest audit key secret certificate
policy schedule retention export import mount server client worker queue job task event metric trace span
latency throughput memory disk network socket buffer stream reader writer parser encoder decoder handler
router middleware service module package function method struct interface channel context deadline timeout`)

// appendText appends exactly n bytes of words separated by spaces.
func appendText(b []byte, r *rand.Rand, n int) []byte {
	end := len(b) + n
	for len(b) < end {
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b[:end]
}

// docRow is one row of the documents table.
type docRow struct {
	title, body string
	attachment  []byte // nil for about a third of the rows
	created     int64
	updated     int64
}

// newDocRow draws a row of about 1.1 kB: 0.2–1.4 kB of text and, mostly,
// a 64–800 byte random blob.
func newDocRow(r *rand.Rand, id int) docRow {
	row := docRow{
		title:   string(appendText(nil, r, 20+r.IntN(60))),
		body:    string(appendText(nil, r, 200+r.IntN(1200))),
		created: epoch.Unix() + int64(id)*7,
	}
	row.updated = row.created + int64(r.IntN(86400))
	if r.IntN(3) > 0 {
		row.attachment = make([]byte, 64+r.IntN(736))
		for i := range row.attachment {
			row.attachment[i] = byte(r.Uint32())
		}
	}
	return row
}

// openDB opens a SQLite database in WAL mode, as a live application would
// run it, through one connection.
func openDB(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// genDB fills a database until its file reaches target bytes. Closing the
// last connection checkpoints the WAL and removes it.
func genDB(ctx context.Context, path string, target int64, seed uint64) (err error) {
	db, err := openDB(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close database: %w", cerr)
		}
	}()
	_, err = db.ExecContext(ctx, `CREATE TABLE documents (
		id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL,
		attachment BLOB, created INTEGER NOT NULL, updated INTEGER NOT NULL);
		CREATE INDEX documents_updated ON documents(updated);`)
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	r := newRNG(seed, "db")
	batch := int(min(5000, max(20, target/1100/20)))
	for id := 0; ; {
		if err := insertDocs(ctx, db, r, id+1, batch); err != nil {
			return err
		}
		id += batch
		var pages, size int64
		if err := db.QueryRowContext(ctx, `SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&pages, &size); err != nil {
			return fmt.Errorf("database size: %w", err)
		}
		if pages*size >= target {
			return nil
		}
	}
}

// insertDocs inserts n new rows with ids from first, in one transaction.
func insertDocs(ctx context.Context, db *sql.DB, r *rand.Rand, first, n int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO documents (id, title, body, attachment, created, updated) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	for id := first; id < first+n; id++ {
		row := newDocRow(r, id)
		if _, err := st.ExecContext(ctx, id, row.title, row.body, row.attachment, row.created, row.updated); err != nil {
			return fmt.Errorf("insert row %d: %w", id, err)
		}
	}
	return tx.Commit()
}

// models are the incompressible files and their shares of refModelBytes.
var models = []struct {
	name  string
	share float64
}{
	{"base-7b-q4.gguf", 0.50},
	{"adapter-lora.safetensors", 0.25},
	{"embeddings.onnx", 0.15},
	{"reranker.bin", 0.10},
}

func genModels(ctx context.Context, dir string, total int64, seed uint64) error {
	buf := make([]byte, 4<<20)
	for _, m := range models {
		if err := ctx.Err(); err != nil {
			return err
		}
		src := newChaCha(seed, "model "+m.name)
		f, err := os.Create(filepath.Join(dir, m.name))
		if err != nil {
			return err
		}
		for left := int64(float64(total) * m.share); left > 0; {
			n := min(left, int64(len(buf)))
			src.Read(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return err
			}
			left -= n
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// logShares split the log volume; the rest goes to the archives.
var logShares = []struct {
	name  string
	share float64
}{
	{"app.log", 0.30},
	{"access.log", 0.25},
	{"worker.log", 0.10},
}

func genLogs(dir string, total int64, archives int, seed uint64) error {
	write := func(name string, size int64) error {
		return writeLog(filepath.Join(dir, name), size, newRNG(seed, "log "+name), epoch)
	}
	rest := total
	for _, l := range logShares {
		n := int64(float64(total) * l.share)
		rest -= n
		if err := write(l.name, n); err != nil {
			return err
		}
	}
	for i := range archives {
		name := fmt.Sprintf("archive/app-%s.log", epoch.AddDate(0, 0, -archives+i).Format("2006-01-02"))
		if err := write(name, rest/int64(archives)); err != nil {
			return err
		}
	}
	return nil
}

// writeLog appends about size bytes of log lines to path, with timestamps
// from start on.
func writeLog(path string, size int64, r *rand.Rand, start time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var b []byte
	var written int64
	ts := start
	levels := []string{"INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"}
	methods := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	for written < size {
		ts = ts.Add(time.Duration(r.IntN(80)) * time.Millisecond)
		b = ts.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, ' ')
		b = append(b, levels[r.IntN(len(levels))]...)
		b = append(b, " req="...)
		b = strconv.AppendUint(b, r.Uint64()>>40, 16)
		b = append(b, ' ')
		b = append(b, methods[r.IntN(len(methods))]...)
		b = append(b, " /api/v1/"...)
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
		b = append(b, " status="...)
		b = strconv.AppendInt(b, int64([]int{200, 200, 200, 201, 204, 304, 404, 500}[r.IntN(8)]), 10)
		b = append(b, " ms="...)
		b = strconv.AppendInt(b, int64(r.IntN(900)), 10)
		b = append(b, " msg=\""...)
		b = appendText(b, r, 10+r.IntN(50))
		b = append(b, "\"\n"...)
		if len(b) >= 1<<20 || written+int64(len(b)) >= size {
			if _, err := f.Write(b); err != nil {
				f.Close()
				return err
			}
			written += int64(len(b))
			b = b[:0]
		}
	}
	return f.Close()
}

// srcExts are the source tree's file types, repeated by weight.
var srcExts = []string{".go", ".go", ".go", ".ts", ".ts", ".py", ".md", ".json", ".css", ".html"}

// genSource writes n small text files (log-normal sizes, median 7 kB, mean
// about 11.5 kB) into about n/12 nested directories, up to six deep.
func genSource(ctx context.Context, root string, n int, seed uint64) error {
	r := newRNG(seed, "src")
	pool := make([][]byte, 8192) // lines the files are made of
	for i := range pool {
		line := []byte(strings.Repeat("\t", r.IntN(4)))
		pool[i] = append(appendText(line, r, 8+r.IntN(70)), '\n')
	}
	dirs := []string{root}
	taken := map[string]bool{}
	unique := func(parent, name, ext string) string {
		p := filepath.Join(parent, name+ext)
		for i := 2; taken[p]; i++ {
			p = filepath.Join(parent, name+strconv.Itoa(i)+ext)
		}
		taken[p] = true
		return p
	}
	for len(dirs) < max(1, n/12) {
		parent := dirs[r.IntN(len(dirs))]
		rel, _ := filepath.Rel(root, parent)
		if strings.Count(rel, "/") >= 5 {
			continue
		}
		d := unique(parent, words[r.IntN(len(words))], "")
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		dirs = append(dirs, d)
	}
	var b []byte
	for range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := unique(dirs[r.IntN(len(dirs))], words[r.IntN(len(words))]+"_"+words[r.IntN(len(words))], srcExts[r.IntN(len(srcExts))])
		size := int(math.Exp(math.Log(7000) + r.NormFloat64()))
		size = min(max(size, 60), 400_000)
		b = append(b[:0], "// "...)
		b = append(b, filepath.Base(p)...)
		b = append(b, '\n')
		for len(b) < size {
			b = append(b, pool[r.IntN(len(pool))]...)
		}
		if err := os.WriteFile(p, b[:size], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// genConfig writes the four main config files and n-4 plugin settings.
func genConfig(dir string, n int, seed uint64) error {
	r := newRNG(seed, "config")
	doc := func(keys int) map[string]any {
		m := map[string]any{"revision": 1, "updated_at": epoch.Format(time.RFC3339)}
		for range keys {
			k := words[r.IntN(len(words))] + "_" + words[r.IntN(len(words))]
			switch r.IntN(4) {
			case 0:
				m[k] = r.IntN(10000)
			case 1:
				m[k] = r.IntN(2) == 0
			case 2:
				m[k] = string(appendText(nil, r, 5+r.IntN(40)))
			default:
				m[k] = []string{words[r.IntN(len(words))], words[r.IntN(len(words))]}
			}
		}
		return m
	}
	write := func(p string, v any) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, append(b, '\n'), 0o644)
	}
	for _, name := range []string{"app.json", "ui.json", "database.json", "server.json"} {
		if err := write(filepath.Join(dir, name), doc(20+r.IntN(40))); err != nil {
			return err
		}
	}
	for i := range n - 4 {
		p := filepath.Join(dir, "plugins", fmt.Sprintf("%s-%03d", words[r.IntN(len(words))], i), "settings.json")
		if err := write(p, doc(5+r.IntN(60))); err != nil {
			return err
		}
	}
	return nil
}

// genKeys writes n small secrets: PEM-like blocks and API tokens.
func genKeys(dir string, n int, seed uint64) error {
	src := newChaCha(seed, "keys")
	for i := range n {
		raw := make([]byte, 32+(i%3)*512)
		src.Read(raw)
		name := fmt.Sprintf("api-%02d.token", i)
		body := fmt.Sprintf("%x\n", raw)
		if i%2 == 0 {
			name = fmt.Sprintf("service-%02d.pem", i)
			body = "-----BEGIN PRIVATE KEY-----\n" + body + "-----END PRIVATE KEY-----\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return nil
}
