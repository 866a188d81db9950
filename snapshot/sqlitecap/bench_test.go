package sqlitecap

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// benchDB creates a database of about 50 MB: 36,000 rows of 1 KiB random
// blobs with an index, in WAL mode and fully checkpointed.
func benchDB(b *testing.B) (path string, size int64) {
	b.Helper()
	path = filepath.Join(b.TempDir(), "bench.db")
	db := openApp(b, path, "&_pragma=journal_mode(wal)")
	mustExec(b, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
	mustExec(b, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 36000)
		INSERT INTO t SELECT i, random(), randomblob(1024) FROM n`)
	mustExec(b, db, "CREATE INDEX t_k ON t(k)")
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return path, fi.Size()
}

// BenchmarkCapture measures Capture of a ~50 MB database into a new file and
// the two parts of a Snapshot: Read (the image of one snapshot, page by page)
// and Check (integrity_check). MB/s is of the source's size.
func BenchmarkCapture(b *testing.B) {
	src, size := benchDB(b)
	out := b.TempDir()
	b.Logf("source %.1f MB", float64(size)/1e6)
	i := 0
	next := func() string {
		i++
		return filepath.Join(out, "copy"+strconv.Itoa(i)+".db")
	}

	b.Run("Capture", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			dst := next()
			if err := Capture(b.Context(), src, dst, Options{}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			removeDB(dst)
			b.StartTimer()
		}
	})
	b.Run("Read", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			s, err := Open(b.Context(), src, Options{})
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, s); err != nil || n != size {
				b.Fatalf("read %d bytes of %d: %v", n, size, err)
			}
			s.Close()
		}
	})
	b.Run("Check", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := Check(b.Context(), src); err != nil {
				b.Fatal(err)
			}
		}
	})
}
