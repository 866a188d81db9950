package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // driver "sqlite" for the demo's live database

	"snapforge/snapshot"
)

var cmdDemo = &command{name: "demo", usage: "[--dir DIR]",
	summary: "create a sample live system and repository, back it up twice, verify, and show how to look around"}

// demoMarker marks a directory the demo created, so a re-run may replace it.
const demoMarker = ".snapforge-demo"

func init() {
	cmdDemo.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		dir := fs.String("dir", defaultDemoDir(), "state directory for the sample live system and its repository (replaced on re-run)")
		pos, err := parse(a, cmdDemo, fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return &usageError{fmt.Sprintf("demo takes no arguments (got %q); --dir names where it works", pos[0])}
		}
		return runDemo(ctx, a, *dir)
	}
}

func defaultDemoDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "snapforge", "demo")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "snapforge", "demo")
	}
	return filepath.Join(os.TempDir(), "snapforge-demo")
}

func runDemo(ctx context.Context, a *app, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return fmt.Errorf("demo: %s exists and was not made by the demo; pass --dir with a new directory", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("demo: clear previous run: %w", err)
		}
	}
	live := filepath.Join(dir, "live")
	repo := filepath.Join(dir, "repo")
	if err := os.MkdirAll(live, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, demoMarker), []byte("created by snapforge demo\n"), 0o644); err != nil {
		return err
	}
	say := func(format string, args ...any) {
		if !a.json {
			fmt.Fprintf(a.stdout, format+"\n", args...)
		}
	}
	say("1. creating a sample live system in %s", live)
	if err := makeLiveSystem(ctx, live); err != nil {
		return fmt.Errorf("demo: create live system: %w", err)
	}
	r, err := snapshot.Init(ctx, repo, snapshot.InitOptions{}, a.options("demo"))
	if err != nil {
		return err
	}
	defer r.Close()
	prof := snapshot.Profile{Name: "wf", Root: live, Units: map[string]snapshot.Unit{
		"config": {Paths: []string{"config/", "data/config.json"}},
		"db":     {Paths: []string{"data/wirthforge.db"}, SQLite: true},
		"models": {Paths: []string{"models/"}, Default: new(bool)},
		"logs":   {Paths: []string{"logs/"}},
		"keys":   {Paths: []string{"keys/"}, Guarded: true},
	}, Exclude: []string{"**/*.tmp"}}
	pb, _ := json.MarshalIndent(prof, "", "  ")
	if err := os.WriteFile(filepath.Join(repo, "profile.json"), append(pb, '\n'), 0o600); err != nil {
		return err
	}
	say("2. created repository %s with profile.json (units config, db, logs by default; models and keys only when named)", repo)
	sel, err := prof.Select(nil)
	if err != nil {
		return err
	}
	opts := func(strategy string, s snapshot.Selection) snapshot.BackupOptions {
		return snapshot.BackupOptions{Strategy: strategy, Root: live, Paths: s.Paths, SQLite: s.SQLite,
			Includes: s.Includes, UnitPaths: s.UnitPaths, Excludes: s.Excludes, Exclude: prof.Exclude, Name: prof.Name}
	}
	m1, err := r.Backup(ctx, opts(snapshot.StrategyFull, sel))
	if err != nil {
		return err
	}
	say("3. full backup %s: %d files, %s, root hash %s", m1.BackupID, m1.Stats.Files, humanBytes(m1.Stats.Bytes), m1.RootHash)
	msel, _ := prof.Select([]string{"models"})
	mm, err := r.Backup(ctx, opts(snapshot.StrategyFull, msel))
	if err != nil {
		return err
	}
	say("   models backup %s: %s (named explicitly: models are not in the default set)", mm.BackupID, humanBytes(mm.Stats.Bytes))
	if err := changeLiveSystem(ctx, live); err != nil {
		return fmt.Errorf("demo: change live system: %w", err)
	}
	say("4. changed the live system: edited config/app.json, added 500 database rows, appended to logs/app.log, added logs/new.log")
	m2, err := r.Backup(ctx, opts(snapshot.StrategyIncremental, sel))
	if err != nil {
		return err
	}
	say("5. incremental backup %s (parent %s): %s new of %s", m2.BackupID, m2.Parent, humanBytes(m2.Stats.NewBytes), humanBytes(m2.Stats.Bytes))
	rep, err := r.Verify(ctx, nil, snapshot.VerifyOptions{ReadData: true})
	if err != nil {
		return err
	}
	if !rep.OK() {
		return &integrityError{"demo: verify found problems; run `snapforge verify --read-data` for details"}
	}
	say("6. verify --read-data: all %d snapshots ok (every chunk read and hash-checked, every file's BLAKE3 recomputed)", len(rep.Snapshots))
	changes := snapshot.Diff(m1, m2)
	if a.json {
		return a.printJSON(map[string]any{"repository": repo, "live": live, "snapshots": []string{m1.BackupID, mm.BackupID, m2.BackupID},
			"root_hashes": []string{m1.RootHash, mm.RootHash, m2.RootHash}, "changes": len(changes), "verified": rep.OK()})
	}
	q := shellQuote(repo)
	say("\nlook around (copy and paste):")
	say("  export SNAPFORGE_REPO=%s", q)
	say("  go run ./cmd/snapforge snapshots")
	say("  go run ./cmd/snapforge ls latest")
	say("  go run ./cmd/snapforge diff %s %s      # %d changes", m1.BackupID, m2.BackupID, len(changes))
	say("  go run ./cmd/snapforge cat latest config/app.json")
	say("  go run ./cmd/snapforge manifest latest")
	say("  go run ./cmd/snapforge restore latest --target %s", shellQuote(filepath.Join(dir, "restored")))
	say("  b3sum %s   # same value as the manifest's blake3 for config/app.json", shellQuote(filepath.Join(dir, "restored", "config", "app.json")))
	say("  go run ./cmd/snapforge restore %s --in-place --scope config,db --dry-run   # the recovery plan: what goes back to the first backup", m1.BackupID)
	say("  go run ./cmd/snapforge restore %s --in-place --scope config,db             # safety snapshot, staged and verified swap, checks; rolled back on any failure", m1.BackupID)
	say("  go run ./cmd/snapforge audit verify")
	say("  mkdir -p %s && go run ./cmd/snapforge mount %s   # browse every snapshot in a file manager; Ctrl-C unmounts",
		shellQuote(filepath.Join(dir, "browse")), shellQuote(filepath.Join(dir, "browse")))
	return nil
}

func makeLiveSystem(ctx context.Context, root string) error {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range []string{"config", "data", "logs", "models", "keys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"config/app.json":  `{"theme": "dark", "autosave_minutes": 5, "language": "en"}` + "\n",
		"config/ui.json":   `{"fps_target": 60, "panels": ["library", "timeline"]}` + "\n",
		"data/config.json": `{"schema": 3, "db": "wirthforge.db"}` + "\n",
		"keys/api.key":     "sk-demo-0000000000000000\n",
		"logs/build.tmp":   "scratch file, excluded by the profile\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(root, "keys/api.key"), 0o600)
	var log strings.Builder
	for i := 0; i < 40000; i++ {
		fmt.Fprintf(&log, "2026-11-26T01:%02d:%02dZ INFO request id=%d path=/api/v1/items/%d status=200 ms=%d\n", i/60%60, i%60, i, rng.IntN(5000), rng.IntN(90))
	}
	if err := os.WriteFile(filepath.Join(root, "logs/app.log"), []byte(log.String()), 0o644); err != nil {
		return err
	}
	model := make([]byte, 8<<20)
	for i := range model {
		model[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(root, "models/tiny.bin"), model, 0o644); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(root, "data/wirthforge.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, body TEXT)`); err != nil {
		return err
	}
	return insertRows(ctx, db, rng, 0, 20000)
}

func insertRows(ctx context.Context, db *sql.DB, rng *rand.Rand, from, n int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for i := from; i < from+n; i++ {
		body := strings.Repeat(fmt.Sprintf("%08x", rng.Uint32()), 24)
		if _, err := tx.ExecContext(ctx, `INSERT INTO items (id, name, body) VALUES (?, ?, ?)`, i, fmt.Sprintf("item-%d", i), body); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func changeLiveSystem(ctx context.Context, root string) error {
	if err := os.WriteFile(filepath.Join(root, "config/app.json"), []byte(`{"theme": "light", "autosave_minutes": 2, "language": "en"}`+"\n"), 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(root, "logs/app.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fmt.Fprintln(f, "2026-11-26T02:00:00Z WARN disk usage at 81%")
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "logs/new.log"), []byte("2026-11-26T02:00:01Z INFO new session\n"), 0o644); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(root, "data/wirthforge.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := insertRows(ctx, db, rand.New(rand.NewPCG(3, 4)), 20000, 500); err != nil {
		return errors.Join(errors.New("insert rows"), err)
	}
	return nil
}
