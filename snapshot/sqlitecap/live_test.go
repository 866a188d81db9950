package sqlitecap

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"
)

// The helper process is this test binary run again with -test.run naming
// TestHelperWriter and helperEnv set to one of the modes below.
const (
	helperEnv  = "SQLITECAP_HELPER" // "writer" or "trywrite"
	helperDB   = "SQLITECAP_DB"     // the database to write
	helperStop = "SQLITECAP_STOP"   // writer: stop when this file exists
	helperUp   = "SQLITECAP_READY"  // writer: created after the first commit
	helperBusy = "SQLITECAP_BUSY"   // writer: its busy_timeout in ms
)

const (
	accounts       = 100
	initialBalance = 1000
)

// TestHelperWriter is not a test: it is the application in a separate
// process. In "writer" mode it moves random amounts between accounts, one
// transaction each with a ledger row, until the stop file appears, then
// prints how many it committed. In "trywrite" mode it tries one transaction
// without waiting for locks and prints "ok" or "busy". Any other error goes
// to stderr with exit status 1.
func TestHelperWriter(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for TestCaptureUnderWriteLoad and TestReadLockSurvivesForeignClose")
	}
	// Lock like a C application: POSIX locks, not the OFD locks this
	// package's init chose. Nothing is locked yet, so this still works.
	if _, err := sqlite.OFDLocking(false); err != nil && !errors.Is(err, sqlite.ErrOFDLockingUnavailable) {
		helperFail("OFDLocking: %v", err)
	}
	switch mode {
	case "writer":
		runWriter(os.Getenv(helperDB), os.Getenv(helperStop), os.Getenv(helperUp), os.Getenv(helperBusy))
	case "trywrite":
		tryWrite(os.Getenv(helperDB))
	default:
		helperFail("unknown helper mode %q", mode)
	}
	os.Exit(0) // skip the testing framework's own output
}

func helperFail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "helper: "+format+"\n", args...)
	os.Exit(1)
}

func runWriter(path, stop, ready, busyMS string) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout("+busyMS+")&_txlock=immediate")
	if err != nil {
		helperFail("open: %v", err)
	}
	db.SetMaxOpenConns(1)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	var n int
	var slowest time.Duration
	for {
		if _, err := os.Stat(stop); err == nil {
			break
		}
		a := rng.IntN(accounts) + 1
		b := (a+rng.IntN(accounts-1))%accounts + 1 // any other account
		amount := rng.IntN(500) + 1
		start := time.Now()
		tx, err := db.Begin()
		if err != nil {
			helperFail("transaction %d: begin: %v", n, err)
		}
		for _, s := range []struct {
			q    string
			args []any
		}{
			{"UPDATE accounts SET balance = balance - ? WHERE id = ?", []any{amount, a}},
			{"UPDATE accounts SET balance = balance + ? WHERE id = ?", []any{amount, b}},
			{"INSERT INTO ledger(src, dst, amount) VALUES (?, ?, ?)", []any{a, b, amount}},
		} {
			if _, err := tx.Exec(s.q, s.args...); err != nil {
				helperFail("transaction %d: %s: %v", n, s.q, err)
			}
		}
		if err := tx.Commit(); err != nil {
			helperFail("transaction %d: commit: %v", n, err)
		}
		slowest = max(slowest, time.Since(start))
		if n++; n == 1 {
			if err := os.WriteFile(ready, nil, 0o600); err != nil {
				helperFail("%v", err)
			}
		}
	}
	if err := db.Close(); err != nil {
		helperFail("close: %v", err)
	}
	fmt.Printf("%d %d\n", n, slowest)
}

func tryWrite(path string) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)&_txlock=immediate")
	if err != nil {
		helperFail("open: %v", err)
	}
	defer db.Close()
	err = func() error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.Exec("UPDATE accounts SET balance = balance WHERE id = 1"); err != nil {
			return err
		}
		return tx.Commit()
	}()
	switch {
	case err == nil:
		fmt.Println("ok")
	case errors.Is(translate(err), ErrBusy):
		fmt.Println("busy")
	default:
		helperFail("%v", err)
	}
}

// helper starts this test binary as the helper process in mode.
func helper(t *testing.T, ctx context.Context, mode string, env ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+mode)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stdout, &stderr
}

// newBank creates the accounts/ledger database at path in journal mode.
func newBank(t *testing.T, path, mode string) {
	t.Helper()
	db := openApp(t, path, "&_pragma=journal_mode("+mode+")")
	mustExec(t, db, `CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
		CREATE TABLE ledger(id INTEGER PRIMARY KEY, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL)`)
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO accounts SELECT i, ? FROM n`, accounts, initialBalance)
	if got := queryString(t, db, "PRAGMA journal_mode"); got != mode {
		t.Fatalf("journal_mode = %q, want %q", got, mode)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCaptureUnderWriteLoad is FAULTS D19: another process commits
// transfers without pause while we capture its database again and again.
// Every copy must be a database as of one commit: integrity_check ok, the
// total balance unchanged, and every account's balance equal to its start
// plus the ledger rows in that same copy. The writer must see no error.
func TestCaptureUnderWriteLoad(t *testing.T) {
	for _, tc := range []struct {
		mode string
		busy time.Duration // the writer's busy_timeout
	}{
		// WAL writers never wait for readers: the writer runs without a
		// busy timeout, so any lock we took from it would fail the test.
		{"wal", 0},
		// A rollback-journal commit waits for our SHARED lock to go: the
		// writer needs a busy timeout longer than one capture.
		{"delete", 10 * time.Second},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "bank.db")
			newBank(t, src, tc.mode)
			stop, ready := filepath.Join(t.TempDir(), "stop"), filepath.Join(t.TempDir(), "ready")

			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
			defer cancel()
			cmd, stdout, stderr := helper(t, ctx, "writer", helperDB+"="+src, helperStop+"="+stop,
				helperUp+"="+ready, fmt.Sprintf("%s=%d", helperBusy, tc.busy.Milliseconds()))
			waited := false
			defer func() {
				if !waited {
					cmd.Process.Kill()
					cmd.Wait()
				}
			}()
			for _, err := os.Stat(ready); err != nil; _, err = os.Stat(ready) {
				if ctx.Err() != nil {
					t.Fatalf("writer never committed; stderr: %s", stderr)
				}
				time.Sleep(5 * time.Millisecond)
			}

			// progress is another reader of the source, used only to wait for
			// the writer to commit more between two captures.
			progress, err := sql.Open("sqlite", dsn(src, "ro")+"&_pragma=busy_timeout(100)")
			if err != nil {
				t.Fatal(err)
			}
			defer progress.Close()
			out := t.TempDir()
			var prev int64
			var slowest time.Duration
			for i := range 20 {
				for {
					var n int64
					err := progress.QueryRowContext(ctx, "SELECT count(*) FROM ledger").Scan(&n)
					if err == nil && n > prev {
						break
					}
					if ctx.Err() != nil {
						t.Fatalf("writer stopped committing (%v); stderr: %s", err, stderr)
					}
					time.Sleep(2 * time.Millisecond)
				}
				dst := filepath.Join(out, fmt.Sprintf("copy%02d.db", i))
				start := time.Now()
				if err := Capture(ctx, src, dst, Options{}); err != nil {
					t.Fatalf("capture %d: %v", i, err)
				}
				slowest = max(slowest, time.Since(start))
				assertNoSideFiles(t, dst) // before verifyBank opens it
				n := verifyBank(t, dst)
				if n <= prev {
					t.Errorf("copy %d has %d ledger rows, the one before %d", i, n, prev)
				}
				prev = n
			}
			progress.Close()
			if err := os.WriteFile(stop, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			waited = true
			if err != nil || stderr.Len() > 0 {
				t.Fatalf("writer: %v\nstderr: %s", err, stderr)
			}
			var committed int64
			var writerSlowest time.Duration
			if _, err := fmt.Sscanf(stdout.String(), "%d %d", &committed, &writerSlowest); err != nil {
				t.Fatalf("writer output %q: %v", stdout, err)
			}
			t.Logf("writer committed %d transactions, the slowest in %s; slowest capture %s; last copy has %d",
				committed, writerSlowest, slowest, prev)
			if prev > committed {
				t.Errorf("last copy has %d ledger rows, the writer committed only %d", prev, committed)
			}

			// The source is intact, in its journal mode, and its file set is
			// what the application's last close left: the database alone.
			app := openApp(t, src, "")
			if got := queryInt(t, app, "SELECT count(*) FROM ledger"); got != committed {
				t.Errorf("source has %d ledger rows, writer committed %d", got, committed)
			}
			if got := queryString(t, app, "PRAGMA journal_mode"); got != tc.mode {
				t.Errorf("journal_mode = %q, want %q", got, tc.mode)
			}
			app.Close()
			if got := dirState(t, dir); len(got) != 1 {
				t.Errorf("beside the source: %q, want the database alone", got)
			}
		})
	}
}

// verifyBank checks one copy and returns its number of ledger rows.
func verifyBank(t *testing.T, path string) int64 {
	t.Helper()
	if err := Check(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	db := openCopy(t, path)
	defer db.Close()
	if n := queryInt(t, db, "SELECT count(*) FROM accounts"); n != accounts {
		t.Errorf("%s: %d accounts", filepath.Base(path), n)
	}
	if sum := queryInt(t, db, "SELECT sum(balance) FROM accounts"); sum != accounts*initialBalance {
		t.Errorf("%s: total balance %d, want %d", filepath.Base(path), sum, accounts*initialBalance)
	}
	// Each balance is its start plus the ledger of the same copy: accounts
	// and ledger come from the same commit.
	off := queryInt(t, db, `
		WITH moves(id, delta) AS (SELECT dst, amount FROM ledger UNION ALL SELECT src, -amount FROM ledger),
		     net(id, delta) AS (SELECT id, sum(delta) FROM moves GROUP BY id)
		SELECT count(*) FROM accounts a LEFT JOIN net n USING (id)
		WHERE a.balance != `+fmt.Sprint(initialBalance)+` + coalesce(n.delta, 0)`)
	if off != 0 {
		t.Errorf("%s: %d accounts disagree with the ledger", filepath.Base(path), off)
	}
	return queryInt(t, db, "SELECT count(*) FROM ledger")
}

// TestReadLockSurvivesForeignClose checks that our read lock in rollback
// mode holds off another process's commit, also after this process opened
// and closed the database file elsewhere, which drops POSIX locks (the
// package doc explains the OFD locks that prevent that).
func TestReadLockSurvivesForeignClose(t *testing.T) {
	if !sqlite.OFDLockingEnabled() {
		t.Skip("no OFD locks here: a foreign close does drop our lock")
	}
	src := filepath.Join(t.TempDir(), "bank.db")
	newBank(t, src, "delete")
	try := func() string {
		t.Helper()
		cmd, stdout, stderr := helper(t, t.Context(), "trywrite", helperDB+"="+src)
		if err := cmd.Wait(); err != nil || stderr.Len() > 0 {
			t.Fatalf("trywrite: %v\n%s", err, stderr)
		}
		return strings.TrimSpace(stdout.String())
	}

	r, err := openReader(t.Context(), src, "ro", Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if got := try(); got != "busy" {
		t.Fatalf("write while we read: %q, want busy", got)
	}
	for range 3 { // what a backup walker or IsSQLite does
		if _, err := IsSQLite(src); err != nil {
			t.Fatal(err)
		}
	}
	if got := try(); got != "busy" {
		t.Errorf("write after a foreign close: %q, want busy: our lock was dropped", got)
	}
	r.close()
	if got := try(); got != "ok" {
		t.Errorf("write after we closed: %q, want ok", got)
	}
}
