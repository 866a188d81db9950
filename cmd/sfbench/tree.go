package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/zeebo/blake3"
)

// Tree is the content of a directory tree: per entry its type, permission
// bits, size and content hash (Entries, and Root over them), and apart from
// that its owner, mtime and inode (Meta). A restore's content is correct
// when its Entries equal the source's; MetaDiff then compares the rest.
type Tree struct {
	Root    string           // BLAKE3 over all entries in path order, hex
	Files   int              // regular files
	Bytes   int64            // their apparent size
	Entries map[string]entry // by slash-separated path relative to the root
	Meta    map[string]meta  // the same paths
}

// meta is what a restore should keep besides the content.
type meta struct {
	uid, gid uint32
	mtime    int64  // ns
	ino      uint64 // for hard-link groups
	nlink    uint64
}

type entry struct {
	mode fs.FileMode // type and permission bits
	size int64
	sum  [32]byte // BLAKE3 of the content, or of the link target
}

func (e entry) line(rel string) string {
	return fmt.Sprintf("%s %d %x %s\n", e.mode, e.size, e.sum, rel)
}

// HashTree reads every file under root once and returns its Tree. The root
// directory itself is not an entry, so a tree restored under another name
// and mode compares equal.
func HashTree(root string) (*Tree, error) {
	t := &Tree{Entries: map[string]entry{}, Meta: map[string]meta{}}
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := entry{mode: fi.Mode().Type() | fi.Mode().Perm()}
		switch {
		case fi.Mode().IsRegular():
			e.size = fi.Size()
			h := blake3.New()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(h, onlyReader{f}, buf)
			f.Close()
			if err != nil {
				return fmt.Errorf("hash %s: %w", p, err)
			}
			h.Sum(e.sum[:0])
			t.Files++
			t.Bytes += e.size
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.sum = blake3.Sum256([]byte(target))
		}
		t.Entries[filepath.ToSlash(rel)] = e
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			t.Meta[filepath.ToSlash(rel)] = meta{uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), ino: st.Ino, nlink: uint64(st.Nlink)}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hash tree %s: %w", root, err)
	}
	paths := make([]string, 0, len(t.Entries))
	for p := range t.Entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := blake3.New()
	for _, p := range paths {
		io.WriteString(h, t.Entries[p].line(p))
	}
	t.Root = hex.EncodeToString(h.Sum(nil))
	return t, nil
}

// onlyReader hides WriterTo/ReaderFrom so that io.CopyBuffer uses our buffer.
type onlyReader struct{ io.Reader }

// Diff lists, sorted, the paths whose entries differ between t and u:
// missing on either side, or with another type, mode, size or content.
func (t *Tree) Diff(u *Tree) []string {
	var out []string
	for p, e := range t.Entries {
		if f, ok := u.Entries[p]; !ok || e != f {
			out = append(out, p)
		}
	}
	for p := range u.Entries {
		if _, ok := t.Entries[p]; !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// MetaDiff lists, sorted, how the paths of t (wanted) that u (got) holds too
// differ in owner, group or mtime, and hard links of t that are not one
// inode in u, leaving out the paths skip names. Each line names the path and
// the difference.
func (t *Tree) MetaDiff(u *Tree, skip func(string) bool) []string {
	var out []string
	groups := map[uint64][]string{}
	for p, want := range t.Meta {
		got, ok := u.Meta[p]
		if !ok || skip(p) {
			continue
		}
		switch {
		case got.uid != want.uid || got.gid != want.gid:
			out = append(out, fmt.Sprintf("%s: owner %d:%d, want %d:%d", p, got.uid, got.gid, want.uid, want.gid))
		case got.mtime != want.mtime:
			out = append(out, fmt.Sprintf("%s: mtime %s, want %s", p, time.Unix(0, got.mtime).UTC().Format(time.RFC3339Nano), time.Unix(0, want.mtime).UTC().Format(time.RFC3339Nano)))
		}
		if want.nlink > 1 && t.Entries[p].mode.IsRegular() {
			groups[want.ino] = append(groups[want.ino], p)
		}
	}
	for _, names := range groups {
		sort.Strings(names)
		for _, p := range names[1:] {
			if u.Meta[p].ino != u.Meta[names[0]].ino {
				out = append(out, fmt.Sprintf("%s: not hard-linked to %s", p, names[0]))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Describe says how path p differs between t (wanted) and u (got).
func (t *Tree) Describe(u *Tree, p string) string {
	e, inT := t.Entries[p]
	f, inU := u.Entries[p]
	switch {
	case !inU:
		return "missing"
	case !inT:
		return "unexpected"
	case e == f:
		return "same"
	}
	return fmt.Sprintf("got %s %d bytes %x…, want %s %d bytes %x…", f.mode, f.size, f.sum[:4], e.mode, e.size, e.sum[:4])
}

// readAll reads every regular file under root once, in walk order, with a
// 1 MiB buffer: the "cold read" baseline. It returns the bytes read.
func readAll(root string) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			n, err := f.Read(buf)
			total += int64(n)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	return total, err
}

// apparentSize sums the sizes of the regular files under root, as
// `du --apparent-size` would without directories.
func apparentSize(root string) (int64, error) {
	return sumFiles(root, func(fi fs.FileInfo) int64 { return fi.Size() })
}

// allocatedSize sums the disk blocks of the regular files under root: less
// than apparentSize when files are sparse (Badger preallocates some).
func allocatedSize(root string) (int64, error) {
	return sumFiles(root, func(fi fs.FileInfo) int64 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return st.Blocks * 512
		}
		return 0
	})
}

// sumFiles adds up size(fi) over the regular files under root.
func sumFiles(root string, size func(fs.FileInfo) int64) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += size(fi)
		return nil
	})
	return total, err
}

// dbDigest hashes the user version and application id of a SQLite
// database, its schema and the rows of every table in rowid order: equal digests mean equal content even when the files
// differ, as an online-backup copy may. A database that fails SQLite's
// integrity check (a damaged index or free-list page leaves the rows
// readable) is an error, never a digest.
func dbDigest(ctx context.Context, path string) (string, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var verdict []string
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return "", fmt.Errorf("integrity check: %w", err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return "", fmt.Errorf("integrity check: %w", err)
		}
		verdict = append(verdict, line)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("integrity check: %w", err)
	}
	if len(verdict) != 1 || verdict[0] != "ok" {
		return "", fmt.Errorf("integrity check: %s", strings.Join(verdict[:min(3, len(verdict))], "; "))
	}
	h := blake3.New()
	for _, pragma := range []string{"user_version", "application_id"} { // the header fields an application sets
		var v int64
		if err := db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&v); err != nil {
			return "", fmt.Errorf("%s: %w", pragma, err)
		}
		fmt.Fprintf(h, "%s %d\n", pragma, v)
	}
	var tables []string
	rows, err = db.QueryContext(ctx, `SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name`)
	if err != nil {
		return "", err
	}
	for rows.Next() {
		var typ, name, tbl, text string
		if err := rows.Scan(&typ, &name, &tbl, &text); err != nil {
			rows.Close()
			return "", err
		}
		fmt.Fprintf(h, "schema %q %q %q %q\n", typ, name, tbl, text)
		if typ == "table" {
			tables = append(tables, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	for _, tbl := range tables {
		io.WriteString(h, "table "+tbl+"\n")
		if err := hashRows(ctx, db, tbl, h); err != nil {
			return "", fmt.Errorf("table %s: %w", tbl, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashRows(ctx context.Context, db *sql.DB, table string, w io.Writer) error {
	rows, err := db.QueryContext(ctx, `SELECT * FROM "`+table+`" ORDER BY rowid`)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n [8]byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for _, v := range vals {
			switch v := v.(type) {
			case nil:
				w.Write([]byte{0})
			case int64:
				binary.LittleEndian.PutUint64(n[:], uint64(v))
				w.Write(append([]byte{1}, n[:]...))
			case float64:
				binary.LittleEndian.PutUint64(n[:], math.Float64bits(v))
				w.Write(append([]byte{2}, n[:]...))
			case string:
				binary.LittleEndian.PutUint64(n[:], uint64(len(v)))
				w.Write(append([]byte{3}, n[:]...))
				io.WriteString(w, v)
			case []byte:
				binary.LittleEndian.PutUint64(n[:], uint64(len(v)))
				w.Write(append([]byte{4}, n[:]...))
				w.Write(v)
			default:
				fmt.Fprintf(w, "%T %v", v, v)
			}
		}
	}
	return rows.Err()
}
