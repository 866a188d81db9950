package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"snapforge/snapshot"
	"snapforge/snapshot/audit"
)

var cmdInit = &command{name: "init", usage: "[--encrypt]", summary: "create a repository",
	run: func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("init", flag.ContinueOnError)
		enc := fs.Bool("encrypt", false, "encrypt the repository at rest (not available in this version)")
		pos, err := parse(a, findCommand("init"), fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return &usageError{"init takes no arguments; pass the directory with --repo"}
		}
		p, err := a.repoPath()
		if err != nil {
			return err
		}
		r, err := snapshot.Init(ctx, p, snapshot.InitOptions{Encrypt: *enc}, a.options("init"))
		if err != nil {
			return err
		}
		defer r.Close()
		cfg := r.Config()
		if a.json {
			return a.printJSON(map[string]any{"repository": r.Path(), "repository_id": cfg.RepositoryID,
				"format_version": cfg.FormatVersion, "chunker": cfg.Chunker})
		}
		fmt.Fprintf(a.stdout, "created repository %s (id %s)\nnext: snapforge --repo %s backup PATH\n", r.Path(), cfg.RepositoryID, shellQuote(r.Path()))
		return nil
	}}

var cmdBackup = &command{name: "backup", usage: "[--strategy S] [--unit U]... [--tag T]... [--one-file-system] [PATH]",
	summary: "snapshot PATH, or the profile's root and units"}

func init() {
	cmdBackup.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("backup", flag.ContinueOnError)
		strategy := fs.String("strategy", "incremental", "full (re-read everything), incremental (trust the newest snapshot's metadata) or differential (trust the last full one)")
		var units, tags stringList
		fs.Var(&units, "unit", "profile unit to back up (repeatable); default: the profile's default units")
		fs.Var(&tags, "tag", "tag recorded in the manifest (repeatable)")
		oneFS := fs.Bool("one-file-system", false, "do not cross into other filesystems")
		ack := fs.Bool("ack-plaintext-secrets", false, "store a guarded unit (keys) in this unencrypted repository; recorded in the audit trail")
		pos, err := parse(a, cmdBackup, fs, args)
		if err != nil {
			return err
		}
		if err := snapshot.ValidStrategy(*strategy); err != nil {
			return &usageError{"--strategy: " + err.Error()}
		}
		if len(pos) > 1 {
			return &usageError{"backup takes at most one PATH"}
		}
		if a.shared == nil && os.Getenv("GOMEMLIMIT") == "" {
			// A backup's live heap is small (chunks being read and in
			// flight, the index's memtable: some 50 MB) but it churns
			// through chunk-sized buffers: collect before garbage piles up
			// past it (issue 3: peak memory no more than the lowest peer's).
			// The limit follows the live heap where a larger tree needs
			// more, so the collector never runs back to back.
			mem := startMemLimit(backupMemoryLimit)
			defer mem.stop()
		}
		r, err := a.open(ctx, "backup")
		if err != nil {
			return err
		}
		defer r.Close()
		live := &snapshot.Live{}
		o := snapshot.BackupOptions{Strategy: *strategy, Tags: tags, OneFileSystem: *oneFS, Live: live, Location: a.loc}
		if len(pos) == 1 {
			if len(units) > 0 {
				return &usageError{"--unit needs the profile's root; leave out PATH"}
			}
			if o.Root, err = a.abs(pos[0]); err != nil {
				return err
			}
		} else {
			prof, err := loadProfile(r.Path())
			if err != nil {
				return err
			}
			if prof == nil {
				return &usageError{fmt.Sprintf("no PATH given and no profile at %s/profile.json; pass the directory to back up", r.Path())}
			}
			if prof.Untrusted != "" {
				// Its root chooses what is read and stored here.
				return fmt.Errorf("the profile may not be used: %s", prof.Untrusted)
			}
			sel, err := prof.Select(units)
			if err != nil {
				return &usageError{err.Error()}
			}
			for _, u := range sel.Includes {
				if prof.Units[u].Guarded && !*ack {
					return &usageError{fmt.Sprintf("unit %s holds secrets and this repository is not encrypted; add --ack-plaintext-secrets to store them anyway (recorded in the audit trail)", u)}
				}
				if prof.Units[u].Guarded {
					r.AuditAs(ctx, "acknowledge_plaintext_secrets", map[string]any{"unit": u}, "ok")
				}
			}
			o.Root, o.Paths, o.SQLite, o.Includes, o.Excludes = prof.Root, sel.Paths, sel.SQLite, sel.Includes, sel.Excludes
			o.UnitPaths = sel.UnitPaths
			o.Exclude, o.Name = prof.Exclude, prof.Name
		}
		if err := a.clientSees(o.Root); err != nil {
			return err
		}
		stop := a.showProgress(live)
		m, err := r.Backup(ctx, o)
		stop()
		if err != nil {
			return err
		}
		if a.json {
			a.printJSON(map[string]any{"backup_id": m.BackupID, "root_hash": m.RootHash, "files": m.Stats.Files,
				"dirs": m.Stats.Dirs, "bytes": m.Stats.Bytes, "new_bytes": m.Stats.NewBytes, "partial": m.Partial,
				"strategy": m.Strategy, "parent": m.Parent, "duration_ms": m.Stats.DurationMS, "warnings": m.Warnings})
		} else {
			fmt.Fprintf(a.stdout, "snapshot %s saved (%s", m.BackupID, m.Strategy)
			if m.Parent != "" {
				fmt.Fprintf(a.stdout, ", parent %s", m.Parent)
			}
			fmt.Fprintf(a.stdout, ")\n  %d files, %d dirs, %s; %s new, in %s\n  root hash %s\n",
				m.Stats.Files, m.Stats.Dirs, humanBytes(m.Stats.Bytes), humanBytes(m.Stats.NewBytes),
				time.Duration(m.Stats.DurationMS)*time.Millisecond, m.RootHash)
			for _, w := range m.Warnings {
				fmt.Fprintf(a.stdout, "  warning: %s: %s\n", snapshot.Shown(w.Path, w.PathB64), w.Problem)
			}
		}
		if m.Partial {
			return &partialError{fmt.Sprintf("snapshot %s is partial: some files could not be read (listed above and in its manifest)", m.BackupID)}
		}
		return nil
	}
}

// backupMemoryLimit is a backup's soft memory limit at rest (GOMEMLIMIT
// overrides it); see memLimit. Since chunks are read straight into the
// buffers that carry them to the packs (no chunker window), a backup of the
// reference dataset peaks at some 50 MB of live heap, with Badger's 10 MB
// memtable arena mostly untouched; the initial backup, by hand, 4
// interleaved runs: 56 MiB 6.9-7.4 s and 75-81 MB of RSS, 64 MiB 6.9-7.5 s
// and 85-87 MB.
const backupMemoryLimit = 56 << 20

var cmdSnapshots = &command{name: "snapshots", usage: "", summary: "list snapshots",
	run: func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("snapshots", flag.ContinueOnError)
		pos, err := parse(a, findCommand("snapshots"), fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return &usageError{fmt.Sprintf("snapshots takes no arguments (got %q); `snapforge ls SNAP` lists one snapshot's files", pos[0])}
		}
		r, err := a.open(ctx, "snapshots")
		if err != nil {
			return err
		}
		defer r.Close()
		list, err := r.Snapshots(ctx)
		if err != nil {
			return err
		}
		type row struct {
			BackupID   string   `json:"backup_id"`
			CreatedUTC string   `json:"created_utc,omitempty"`
			Strategy   string   `json:"strategy,omitempty"`
			Parent     string   `json:"parent,omitempty"`
			Root       string   `json:"root,omitempty"`
			Units      []string `json:"units,omitempty"`
			Files      int64    `json:"files"`
			Bytes      int64    `json:"bytes"`
			RootHash   string   `json:"root_hash,omitempty"`
			Partial    bool     `json:"partial"`
			Damaged    string   `json:"damaged,omitempty"`
			NeedsNewer string   `json:"needs_newer,omitempty"` // what it requires that this build does not know
			Tags       []string `json:"tags,omitempty"`
			Verified   string   `json:"last_full_verify,omitempty"`
			VerifiedOK *bool    `json:"last_full_verify_ok,omitempty"`
			Checked    string   `json:"last_verify,omitempty"` // the newest check of any level
			CheckedOK  *bool    `json:"last_verify_ok,omitempty"`
		}
		var rows []row
		for _, e := range list {
			rw := row{BackupID: e.BackupID}
			if ne := new(snapshot.NewerError); errors.As(e.Err, &ne) {
				rw.NeedsNewer = ne.Feature
			} else if e.Err != nil {
				rw.Damaged = e.Err.Error()
			} else {
				m := e.Manifest
				rw.CreatedUTC, rw.Strategy, rw.Parent, rw.Root = m.CreatedUTC, m.Strategy, m.Parent, m.Source.Root
				rw.Units, rw.Files, rw.Bytes, rw.RootHash, rw.Partial = m.Includes, m.Stats.Files, m.Stats.Bytes, m.RootHash, m.Partial
				rw.Tags = m.Tags
			}
			if rec, ok := r.VerifyRecordOf(e.BackupID); ok {
				if rec.ReadData != nil {
					rw.Verified = rec.ReadData.FinishedUTC
					okv := rec.Good()
					rw.VerifiedOK = &okv
				}
				if c := rec.Latest(); c != nil {
					okc := c.OK
					rw.Checked, rw.CheckedOK = c.FinishedUTC, &okc
				}
			}
			rows = append(rows, rw)
		}
		if a.json {
			if rows == nil {
				rows = []row{}
			}
			return a.printJSON(rows)
		}
		if len(rows) == 0 {
			fmt.Fprintln(a.stdout, "no snapshots yet; take one with `snapforge backup`")
			return nil
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCREATED\tSTRATEGY\tUNITS\tFILES\tSIZE\tSTATUS")
		for _, rw := range rows {
			status := "ok"
			switch {
			case rw.NeedsNewer != "":
				status = fmt.Sprintf("NEEDS A NEWER SNAPFORGE (it requires %q)", rw.NeedsNewer)
			case rw.Damaged != "":
				status = "DAMAGED: " + rw.Damaged
			case rw.Partial:
				status = "partial"
			}
			if slices.Contains(rw.Tags, snapshot.TagSafety) {
				status += ", safety (pinned)" // taken before an in-place restore
			}
			switch {
			case rw.CheckedOK != nil && !*rw.CheckedOK, rw.VerifiedOK != nil && !*rw.VerifiedOK:
				status += ", VERIFY FAILED" // the newest check, of any level, failed
			case rw.VerifiedOK != nil:
				status += ", verified"
			}
			created := rw.CreatedUTC
			if t, err := time.Parse(time.RFC3339, created); err == nil {
				created = a.local(t).Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", rw.BackupID, created, rw.Strategy, strings.Join(rw.Units, ","), rw.Files, humanBytes(rw.Bytes), status)
		}
		return tw.Flush()
	}}

var cmdLs = &command{name: "ls", usage: "SNAP [PATH]", summary: "list the contents of a snapshot (recursively under PATH)"}

func init() {
	cmdLs.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("ls", flag.ContinueOnError)
		pos, err := parse(a, cmdLs, fs, args)
		if err != nil {
			return err
		}
		if len(pos) < 1 || len(pos) > 2 {
			return &usageError{"ls needs SNAP and at most one PATH"}
		}
		r, err := a.open(ctx, "ls")
		if err != nil {
			return err
		}
		defer r.Close()
		m, err := r.Resolve(ctx, pos[0])
		if err != nil {
			return err
		}
		start := ""
		if len(pos) == 2 {
			start = strings.Trim(pos[1], "/")
		}
		n, err := r.FindNode(ctx, m, start)
		if err != nil {
			return err
		}
		type entry struct {
			Path    string `json:"path"`
			PathB64 string `json:"path_b64,omitempty"`
			Type    string `json:"type"`
			Mode    string `json:"mode"`
			Size    int64  `json:"size"`
			MTime   string `json:"mtime"`
			Blake3  string `json:"blake3,omitempty"`
			Target  string `json:"target,omitempty"`
			// TargetB64 is the exact target when it is not UTF-8, as in
			// manifests.
			TargetB64 string `json:"target_b64,omitempty"`
		}
		var out []entry
		emit := func(rel string, n *snapshot.Node) {
			it := snapshot.NewItem(rel, n)
			e := entry{Path: it.Path, PathB64: it.PathB64, Type: it.Type, Mode: fmt.Sprintf("%04o", n.Mode&0o7777),
				Size: n.Size, MTime: time.Unix(0, n.MTime).UTC().Format(time.RFC3339Nano), Blake3: it.Blake3, Target: it.Target, TargetB64: it.TargetB64}
			if a.json {
				out = append(out, e)
				return
			}
			line := fmt.Sprintf("%-8s %s %12d %s %s", e.Type, e.Mode, e.Size, a.local(time.Unix(0, n.MTime)).Format("2006-01-02 15:04:05"), snapshot.DisplayName(it.RawPath()))
			if n.Type == snapshot.TypeSymlink {
				line += " -> " + snapshot.DisplayName(n.Target)
			}
			if n.Type == snapshot.TypeHardlink {
				line += " => " + snapshot.DisplayName(n.Target)
			}
			fmt.Fprintln(a.stdout, line)
		}
		if n.Type != snapshot.TypeDir {
			emit(start, n)
		} else if err := r.Walk(ctx, n.Subtree, start, func(rel string, n *snapshot.Node) error { emit(rel, n); return nil }); err != nil {
			return err
		}
		if a.json {
			if out == nil {
				out = []entry{}
			}
			return a.printJSON(out)
		}
		return nil
	}
}

var cmdCat = &command{name: "cat", usage: "SNAP PATH", summary: "write a file from a snapshot to standard output (hash-checked)"}

func init() {
	cmdCat.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("cat", flag.ContinueOnError)
		pos, err := parse(a, cmdCat, fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return &usageError{"cat needs SNAP and PATH"}
		}
		r, err := a.open(ctx, "cat")
		if err != nil {
			return err
		}
		defer r.Close()
		m, err := r.Resolve(ctx, pos[0])
		if err != nil {
			return err
		}
		n, err := r.FindNode(ctx, m, pos[1])
		if err != nil {
			return err
		}
		if n.Type == snapshot.TypeSymlink {
			_, err := fmt.Fprint(a.stdout, n.Target)
			return err
		}
		_, err = r.WriteContent(ctx, n, a.stdout)
		return err
	}
}

var cmdManifest = &command{name: "manifest", usage: "SNAP", summary: "print a snapshot's manifest (JSON)"}

func init() {
	cmdManifest.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("manifest", flag.ContinueOnError)
		pos, err := parse(a, cmdManifest, fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return &usageError{"manifest needs SNAP"}
		}
		r, err := a.open(ctx, "manifest")
		if err != nil {
			return err
		}
		defer r.Close()
		m, err := r.Resolve(ctx, pos[0])
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(r.Path(), "snapshots", m.BackupID+".json"))
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
}

var cmdDiff = &command{name: "diff", usage: "SNAP SNAP", summary: "show what was added, removed and changed between two snapshots"}

func init() {
	cmdDiff.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("diff", flag.ContinueOnError)
		pos, err := parse(a, cmdDiff, fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return &usageError{"diff needs two snapshots"}
		}
		r, err := a.open(ctx, "diff")
		if err != nil {
			return err
		}
		defer r.Close()
		m1, err := r.Resolve(ctx, pos[0])
		if err != nil {
			return err
		}
		m2, err := r.Resolve(ctx, pos[1])
		if err != nil {
			return err
		}
		ch := snapshot.Diff(m1, m2)
		if a.json {
			type row struct {
				Change  string `json:"change"`
				Path    string `json:"path"`
				PathB64 string `json:"path_b64,omitempty"`
				Type    string `json:"type"`
				OldSize int64  `json:"old_size"`
				NewSize int64  `json:"new_size"`
			}
			rows := []row{}
			for _, c := range ch {
				rows = append(rows, row{c.Kind, c.Path, c.PathB64, c.Type, c.OldSize, c.NewSize})
			}
			return a.printJSON(map[string]any{"from": m1.BackupID, "to": m2.BackupID, "changes": rows})
		}
		var added, removed, changed int
		for _, c := range ch {
			switch c.Kind {
			case "added":
				added++
				fmt.Fprintf(a.stdout, "+ %s (%s, %s)\n", snapshot.Shown(c.Path, c.PathB64), c.Type, humanBytes(c.NewSize))
			case "removed":
				removed++
				fmt.Fprintf(a.stdout, "- %s (%s, %s)\n", snapshot.Shown(c.Path, c.PathB64), c.Type, humanBytes(c.OldSize))
			default:
				changed++
				fmt.Fprintf(a.stdout, "M %s (%s, %s → %s)\n", snapshot.Shown(c.Path, c.PathB64), c.Type, humanBytes(c.OldSize), humanBytes(c.NewSize))
			}
		}
		fmt.Fprintf(a.stdout, "%d added, %d removed, %d changed\n", added, removed, changed)
		return nil
	}
}

var cmdVerify = &command{name: "verify", usage: "[SNAP]... [--read-data]", summary: "check snapshots; exit 3 when anything does not match"}

func init() {
	cmdVerify.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("verify", flag.ContinueOnError)
		readData := fs.Bool("read-data", false, "read and hash-check every chunk and recompute every file's BLAKE3")
		pos, err := parse(a, cmdVerify, fs, args)
		if err != nil {
			return err
		}
		r, err := a.open(ctx, "verify")
		if err != nil {
			return err
		}
		defer r.Close()
		live := &snapshot.Live{}
		stop := a.showProgress(live)
		rep, err := r.Verify(ctx, pos, snapshot.VerifyOptions{ReadData: *readData, Live: live})
		stop()
		if err != nil {
			return err
		}
		if a.json {
			a.printJSON(map[string]any{"ok": rep.OK(), "read_data": rep.ReadData, "snapshots": rep.Snapshots,
				"packs": rep.Packs, "warnings": rep.Warnings, "read_bytes": rep.Read, "reused_bytes": rep.Reused, "duration_ms": rep.Duration.Milliseconds()})
		} else {
			level := "structure"
			if rep.ReadData {
				level = "structure and all data"
			}
			for _, p := range rep.Packs {
				fmt.Fprintf(a.stdout, "pack %s: %s\n", p.Pack, p.Problem)
			}
			for _, w := range rep.Warnings {
				fmt.Fprintf(a.stdout, "warning: %s\n", w)
			}
			for _, s := range rep.Snapshots {
				if s.OK {
					fmt.Fprintf(a.stdout, "%s: ok (%d files)\n", s.BackupID, s.Files)
					continue
				}
				fmt.Fprintf(a.stdout, "%s: DAMAGED, %d problem(s)\n", s.BackupID, len(s.Problems))
				for _, p := range s.Problems {
					if p.Path != "" {
						fmt.Fprintf(a.stdout, "  %s: %s\n", snapshot.Shown(p.Path, p.PathB64), p.Problem)
					} else {
						fmt.Fprintf(a.stdout, "  %s\n", p.Problem)
					}
				}
			}
			fmt.Fprintf(a.stdout, "checked %s of %d snapshot(s) in %s\n", level, len(rep.Snapshots), rep.Duration.Round(time.Millisecond))
		}
		if !rep.OK() {
			return &integrityError{"integrity problems found (listed above); affected files cannot be restored from the damaged snapshots"}
		}
		return nil
	}
}

var cmdRestore = &command{name: "restore", usage: "SNAP (--target DIR | --in-place [--target ROOT]) [--scope S]... [--include P]... [--keep-extra] [--no-smoke] [--special] [--dry-run]",
	summary: "restore a snapshot into a new or empty directory, or in place over the live system (with plan, safety snapshot, verified swap, smoke test and rollback)"}

func init() {
	cmdRestore.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("restore", flag.ContinueOnError)
		target := fs.String("target", "", "directory to restore into (new or empty, or an interrupted restore of the same snapshot); with --in-place: the live root (default: the profile's root)")
		var includes, scopes stringList
		fs.Var(&includes, "include", "restore only paths matching this pattern and their contents (repeatable; ** spans directories)")
		fs.Var(&scopes, "scope", "restore only these units: config, db, full or any unit of the profile (repeatable or comma-separated)")
		dry := fs.Bool("dry-run", false, "show what would be restored (with --in-place: the recovery plan), change nothing")
		inPlace := fs.Bool("in-place", false, "restore over the live system: plan, safety snapshot, stop hook, staged and verified swap, start hook, smoke test; rolled back on any failure")
		keepExtra := fs.Bool("keep-extra", false, "with --in-place: keep live files of the scope that the snapshot does not have (default: removed; they are in the safety snapshot)")
		special := fs.Bool("special", false, "restore device nodes and setuid/setgid bits (only as root)")
		noSmoke := fs.Bool("no-smoke", false, "with --in-place: skip the smoke test after the start hook (the profile's command, database and JSON checks), e.g. to undo with a safety snapshot of a state that failed it; the check that the scope equals the snapshot still runs")
		pos, err := parse(a, cmdRestore, fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return &usageError{"restore needs exactly one SNAP"}
		}
		if *target == "" && !*dry && !*inPlace {
			return &usageError{"restore needs --target DIR (a new or empty directory), or --in-place to restore over the live system"}
		}
		if *keepExtra && !*inPlace {
			return &usageError{"--keep-extra goes with --in-place"}
		}
		if *target != "" {
			if *target, err = a.abs(*target); err != nil {
				return err
			}
			if err := a.clientSees(*target); err != nil {
				return err
			}
		}
		r, err := a.open(ctx, "restore")
		if err != nil {
			return err
		}
		defer r.Close()
		m, err := r.Resolve(ctx, pos[0])
		if err != nil {
			return err
		}
		prof, err := loadProfile(r.Path())
		if err != nil {
			return err
		}
		if err := unmatchedIncludes(m, includes); err != nil {
			return err
		}
		if *inPlace {
			return a.restoreInPlace(ctx, r, m, prof, inPlaceFlags{target: *target, scopes: scopes, includes: includes, keepExtra: *keepExtra, special: *special, dry: *dry, noSmoke: *noSmoke})
		}
		for _, sc := range scopes {
			for _, u := range strings.Split(sc, ",") {
				if u == "full" || u == "" {
					continue
				}
				if prof == nil {
					return &usageError{"--scope needs a profile; use --include PATTERN instead"}
				}
				unit, ok := prof.Units[u]
				if !ok {
					return &usageError{fmt.Sprintf("unknown unit %q in --scope (the profile has: %s)", u, strings.Join(prof.UnitNames(), ", "))}
				}
				for _, p := range unit.Paths {
					includes = append(includes, "/"+strings.Trim(p, "/"))
				}
			}
		}
		if *dry {
			return a.restorePlan(ctx, r, m, includes)
		}
		live := &snapshot.Live{}
		live.FilesTotal.Store(m.Stats.Files)
		live.BytesTotal.Store(m.Stats.Bytes)
		live.WalkDone.Store(true)
		stop := a.showProgress(live)
		res, err := r.Restore(ctx, m, snapshot.RestoreOptions{Target: *target, Include: includes, Special: *special, Live: live})
		stop()
		if res != nil {
			if a.json {
				a.printJSON(res)
			} else {
				fmt.Fprintf(a.stdout, "restored %s into %s: %d files (%s), %d dirs, %d links", m.BackupID, res.Target, res.Files, humanBytes(res.Bytes), res.Dirs, res.Links)
				if res.Reused > 0 {
					fmt.Fprintf(a.stdout, "; %d files already correct from an interrupted run", res.Reused)
				}
				fmt.Fprintln(a.stdout)
				for _, w := range res.Warnings {
					fmt.Fprintf(a.stdout, "  warning: %s: %s\n", snapshot.Shown(w.Path, w.PathB64), w.Problem)
				}
				for _, f := range res.Failed {
					fmt.Fprintf(a.stdout, "  FAILED: %s: %s\n", snapshot.Shown(f.Path, f.PathB64), f.Problem)
				}
			}
		}
		return err
	}
}

// unmatchedIncludes refuses --include patterns that match nothing in m: a
// mistyped pattern would otherwise "restore" nothing and succeed.
func unmatchedIncludes(m *snapshot.Manifest, patterns []string) error {
	var none []string
	for _, p := range patterns {
		found := false
		for _, it := range m.Items {
			if snapshot.Included([]string{p}, it.RawPath()) {
				found = true
				break
			}
		}
		if !found {
			none = append(none, strconv.Quote(p))
		}
	}
	if len(none) == 0 {
		return nil
	}
	return fmt.Errorf("--include %s matches nothing in snapshot %s; nothing was restored (see what it holds with `snapforge ls %s`)", strings.Join(none, ", "), m.BackupID, m.BackupID)
}

func (a *app) restorePlan(ctx context.Context, r *snapshot.Repo, m *snapshot.Manifest, includes []string) error {
	var items []snapshot.Item
	for _, it := range m.Items {
		if snapshot.Included(includes, it.RawPath()) {
			items = append(items, it)
		}
	}
	var bytes int64
	for _, it := range items {
		bytes += it.Size
	}
	if a.json {
		if items == nil {
			items = []snapshot.Item{}
		}
		return a.printJSON(map[string]any{"backup_id": m.BackupID, "items": items, "bytes": bytes})
	}
	for _, it := range items {
		fmt.Fprintf(a.stdout, "%-8s %12d %s\n", it.Type, it.Size, snapshot.DisplayName(it.RawPath()))
	}
	fmt.Fprintf(a.stdout, "dry run: would restore %d items (%s) from %s; nothing written\n", len(items), humanBytes(bytes), m.BackupID)
	return nil
}

var cmdAudit = &command{name: "audit", usage: "[verify|acknowledge]", summary: "print the audit trail, verify its hash chain, or acknowledge damage found so work can go on"}

func init() {
	cmdAudit.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("audit", flag.ContinueOnError)
		pos, err := parse(a, cmdAudit, fs, args)
		if err != nil {
			return err
		}
		p, err := a.repoPath()
		if err != nil {
			return err
		}
		if _, err := snapshot.ReadConfig(p); err != nil {
			return err
		}
		dir := filepath.Join(p, "audit")
		if len(pos) == 1 && pos[0] == "verify" {
			return a.auditVerify(p, dir)
		}
		if len(pos) == 1 && pos[0] == "acknowledge" {
			var ev audit.Event
			var err error
			if a.shared != nil {
				// The owner holds the trail open: acknowledge through it.
				ev, err = a.shared.AcknowledgeAudit(ctx)
			} else {
				ev, err = audit.Acknowledge(dir, time.Now, a.options("audit acknowledge").Actor)
			}
			if err != nil {
				return err
			}
			if ev.Seq == 0 {
				fmt.Fprintln(a.stdout, "the audit trail has no unacknowledged damage; nothing recorded")
				return nil
			}
			fmt.Fprintf(a.stdout, "recorded acknowledged_damage at seq %d; the damage stays visible to `audit verify`\n", ev.Seq)
			return nil
		}
		if len(pos) > 0 {
			return &usageError{"audit takes only the word verify or acknowledge"}
		}
		evs, err := audit.ReadAll(dir)
		if err != nil {
			return err
		}
		if a.json {
			if evs == nil {
				evs = []audit.Event{}
			}
			return a.printJSON(evs)
		}
		for _, e := range evs {
			var keys []string
			for k := range e.Params {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var ps []string
			for _, k := range keys {
				b, _ := json.Marshal(e.Params[k])
				ps = append(ps, k+"="+string(b))
			}
			fmt.Fprintf(a.stdout, "%5d %s %-8s %-10s %s  [%s]\n", e.Seq, a.local(e.Time).Format("2006-01-02 15:04:05"), e.Op, e.Outcome, strings.Join(ps, " "), e.Actor)
		}
		return nil
	}
}

// auditVerify checks the chain against HEAD and the heads every manifest
// recorded (anchors), without opening (and so repairing) the trail.
func (a *app) auditVerify(repo, dir string) error {
	var anchors []audit.Anchor
	ents, _ := os.ReadDir(filepath.Join(repo, "snapshots"))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(repo, "snapshots", e.Name()))
		if err != nil {
			continue
		}
		var m struct {
			AuditHead string `json:"audit_head"`
			AuditSeq  uint64 `json:"audit_seq"`
		}
		if json.Unmarshal(b, &m) == nil && m.AuditHead != "" {
			anchors = append(anchors, audit.Anchor{Seq: m.AuditSeq, Hash: m.AuditHead, Source: "snapshot " + strings.TrimSuffix(e.Name(), ".json")})
		}
	}
	rep, err := audit.Verify(dir, anchors)
	if err != nil {
		return err
	}
	if a.json {
		a.printJSON(map[string]any{"ok": rep.OK(), "events": rep.Events, "head": rep.Head, "torn_tail": rep.TornTail,
			"anchors": len(anchors), "problems": rep.Problems})
	} else {
		for _, p := range rep.Problems {
			fmt.Fprintf(a.stdout, "line %d (seq %d): %s: %s\n", p.Line, p.Seq, p.Kind, p.Detail)
		}
		if rep.TornTail {
			fmt.Fprintf(a.stdout, "incomplete trailing record after seq %d: a crash cut the last append (not tampering); the next command that opens the repository repairs it\n", rep.Head.Seq)
		}
		if rep.OK() {
			fmt.Fprintf(a.stdout, "audit trail intact: %d events, head seq %d %s, %d snapshot anchors agree\n", rep.Events, rep.Head.Seq, rep.Head.Hash, len(anchors))
		}
	}
	if !rep.OK() {
		return &integrityError{"the audit trail has been altered or cut (see above)"}
	}
	return nil
}

var cmdRepair = &command{name: "repair", usage: "index", summary: "rebuild the index from the pack files"}

func init() {
	cmdRepair.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("repair", flag.ContinueOnError)
		pos, err := parse(a, cmdRepair, fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 || pos[0] != "index" {
			return &usageError{"repair needs the word index"}
		}
		p, err := a.repoPath()
		if err != nil {
			return err
		}
		o := a.options("repair index")
		o.AllowMissingIndex = true
		r, err := snapshot.Open(ctx, p, o)
		if err != nil {
			return err
		}
		defer r.Close()
		rep, err := r.RepairIndex(ctx)
		if err != nil {
			return err
		}
		if a.json {
			return a.printJSON(rep)
		}
		fmt.Fprintf(a.stdout, "index rebuilt from %d packs (%d blobs); %d snapshots present\n", rep.Packs, rep.Blobs, rep.Snapshots)
		for _, d := range rep.DamagedPacks {
			fmt.Fprintf(a.stdout, "  damaged pack left out: %s\n", d)
		}
		fmt.Fprintln(a.stdout, "next: snapforge verify --read-data")
		return nil
	}
}
