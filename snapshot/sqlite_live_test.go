package snapshot_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"snapforge/index/indextest"
	"snapforge/snapshot"
)

const (
	liveAccounts = 50
	liveTotal    = liveAccounts * 1000
)

// TestHelperLiveWriter is not a test: run as a child process, it commits
// transfers between accounts until its stop file appears, keeping the
// total balance constant.
func TestHelperLiveWriter(t *testing.T) {
	db := os.Getenv("SNAPFORGE_LIVE_DB")
	if db == "" {
		t.Skip("helper process for TestLiveSQLiteBackup")
	}
	conn, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conn.SetMaxOpenConns(1)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; ; i++ {
		if _, err := os.Stat(db + ".stop"); err == nil {
			os.Exit(0)
		}
		a, b, amt := rng.IntN(liveAccounts), rng.IntN(liveAccounts), rng.IntN(100)
		tx, err := conn.Begin()
		if err == nil {
			_, err = tx.Exec(`UPDATE accounts SET balance = balance - ? WHERE id = ?`, amt, a)
			if err == nil {
				_, err = tx.Exec(`UPDATE accounts SET balance = balance + ? WHERE id = ?`, amt, b)
			}
			if err == nil {
				_, err = tx.Exec(`INSERT INTO ledger (src, dst, amount, note) VALUES (?, ?, ?, ?)`, a, b, amt, fmt.Sprintf("transfer %d padding %0200d", i, i))
			}
			if err == nil {
				err = tx.Commit()
			} else {
				tx.Rollback()
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(3)
		}
	}
}

// TestLiveSQLiteBackup backs up a database while another process commits
// transactions to it; every restored copy passes integrity_check and holds
// the invariant. FAULTS D19.
func TestLiveSQLiteBackup(t *testing.T) {
	for _, mode := range []string{"WAL", "DELETE"} {
		t.Run(mode, func(t *testing.T) { liveSQLite(t, mode) })
	}
}

func liveSQLite(t *testing.T, journal string) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(src, "data", "app.db")
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=journal_mode("+journal+")")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)`,
		`CREATE TABLE ledger (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, note TEXT)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < liveAccounts; i++ {
		if _, err := db.Exec(`INSERT INTO accounts VALUES (?, 1000)`, i); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLiveWriter$")
	cmd.Env = append(os.Environ(), "SNAPFORGE_LIVE_DB="+dbPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		os.WriteFile(dbPath+".stop", nil, 0o644)
		if err := cmd.Wait(); err != nil {
			t.Errorf("writer process failed (it must see no errors beyond bounded busy waits): %v", err)
		}
		os.Remove(dbPath + ".stop")
	}
	defer stop()
	time.Sleep(200 * time.Millisecond) // let the writer get going

	r, _ := indextest.NewRepo(t)
	ctx := context.Background()
	var lastLedger int64 = -1
	for i := 0; i < 5; i++ {
		m, err := r.Backup(ctx, snapshot.BackupOptions{Root: src, SQLite: []string{"data/app.db"}, Strategy: snapshot.StrategyIncremental})
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		if m.Partial {
			t.Fatalf("backup %d partial: %+v", i, m.Warnings)
		}
		for _, it := range m.Items {
			if filepath.Base(it.Path) != "app.db" && it.Type == "file" {
				t.Errorf("backup %d stored %s: sidecar files of a captured database must not be copied raw", i, it.Path)
			}
		}
		dst := filepath.Join(t.TempDir(), "restore")
		if _, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: dst}); err != nil {
			t.Fatalf("restore %d: %v", i, err)
		}
		n := checkRestoredDB(t, filepath.Join(dst, "data", "app.db"))
		if n < lastLedger {
			t.Errorf("backup %d holds %d ledger rows, fewer than the previous backup's %d", i, n, lastLedger)
		}
		lastLedger = n
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if lastLedger <= 0 {
		t.Errorf("the writer committed nothing that the backups saw (ledger rows %d)", lastLedger)
	}
}

// openCheckedDB opens the database at p read-only and fails the test
// unless it passes integrity_check.
func openCheckedDB(t testing.TB, p string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+p+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var ok string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		db.Close()
		t.Fatalf("%s: integrity_check = %q, %v", p, ok, err)
	}
	return db
}

// checkRestoredDB asserts integrity and the balance invariant and returns
// the ledger row count.
func checkRestoredDB(t *testing.T, p string) int64 {
	t.Helper()
	db := openCheckedDB(t, p)
	defer db.Close()
	var total, n int64
	if err := db.QueryRow(`SELECT SUM(balance) FROM accounts`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != liveTotal {
		t.Fatalf("restored %s: balance total %d, want %d (torn copy)", p, total, liveTotal)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM ledger`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
