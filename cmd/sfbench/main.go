// Command sfbench compares snapforge with its peers (restic, borg, and kopia
// when it is on PATH) on a generated application data directory: the
// peer-comparison harness of issue 3.
//
// # Usage
//
//	sfbench gen    --dir D [--scale S] [--files-scale F] [--seed N]
//	sfbench mutate --dir D [--seed N]
//	sfbench hash   --dir D
//	sfbench run    --work W [--dir D] [--quick] [--scale S] [--files-scale F] [--seed N]
//	               [--runs 4] [--tools snapforge,snapforge-sqlite,restic,borg]
//	               [--json out.json] [--snapforge BIN] [--borg-encryption none] [--keep]
//	               [--read-bps 250M]
//	sfbench scale  --work W [--scale 0.25] [--files 1,4,16] [--bytes 1,4] [--runs 1]
//	               [--json out.json] [--snapforge BIN] [--no-drop]    (see scale.go)
//	sfbench mount  --work W [--scale 1] [--runs 4] [--dir D] [--json out.json]
//	               [--tools snapforge,restic,borg] [--entries 100000]
//	               [--read-bps 250M]                                   (see mount.go)
//	sfbench inplace --work W [--dir D] [--scale 1] [--runs 4] [--json out.json]
//	               [--snapforge BIN] [--no-drop] [--keep]              (see inplace.go)
//
// Try it with
//
//	go run ./cmd/sfbench run --quick --runs 1 --work /var/tmp/sfbench
//
// which generates a 0.05-scale dataset (about 85 MB) and takes a couple of
// minutes. The reference comparison is --scale 1 --runs 4 (1.7 GB).
//
// # Dataset
//
// gen writes, at scale 1.0, the shape of the reference data directory:
// data/app.db, a 300 MB SQLite database (WAL mode, rows with text and blob
// payloads, one secondary index) built through modernc.org/sqlite; 212 MB of
// compressible logs; 1.07 GB of incompressible model files in four large
// files; about 220 config JSON files; a keys folder; and a source tree of
// 11,478 small files in nested directories. Sizes and counts scale with
// --scale; --files-scale multiplies only the source-tree file count (for the
// memory-flatness runs at 1×, 4× and 16× files). Every byte, permission and
// mtime comes from the seed: the same seed gives the same tree hash (sfbench
// hash prints it), a different seed a different one.
//
// mutate applies the "~1 % change": 1.5 % of the database rows updated
// (among the newest fifth, as an application touches its recent records) and
// 1 % inserted (through SQLite), 1 % of the log volume appended to each of two
// logs, two config files edited, and 1 MiB rewritten inside the largest model
// file. It is deterministic too.
//
// # Run
//
// For every run and every tool, run copies the pristine dataset to W/live
// (timed: the "cp -a cold" baseline), makes a fresh repository under W/repos
// on the same disk, and times, each after dropping the page cache: the initial
// backup (with the child's peak RSS and CPU time from wait4), a no-change
// backup, the mutated backup (after mutate on W/live), a full restore (then
// compared with W/live by tree hash), the restore of one small file, and a
// verify that reads all data. Repository sizes are apparent bytes of the
// repository's files. Raw baselines per run: ls -lR cold and a cold read of
// the dataset; for snapforge also a cold read of its repository before verify.
//
// snapforge runs twice: "snapforge" backs up the directory as a PATH (the
// database is a plain file), "snapforge-sqlite" uses a profile.json whose db
// unit is marked sqlite, so the database goes through the online backup API.
// That restore is compared row by row for the database, since an online copy
// need not be byte-identical to the file it came from.
//
// The output is one table of medians with the ratios snapforge/peer,
// snapforge/fastest peer and snapforge/raw baseline, and the same as JSON with
// --json. Dropping the page cache needs root; without it sfbench warns and
// says so in the notes.
//
// --read-bps RATE (run and mount) limits the reads of the harness and of
// every tool it starts from the disks of the work directory and the dataset
// to RATE (250M: 250 MB/s), through a control group (throttle.go): on a VM
// whose host caches the disk, "cold" reads otherwise run at whatever speed
// the host's cache gives that minute.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(os.Stderr, "sfbench: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "sfbench: %v\n", err)
		os.Exit(1)
	}
}

// readBPSHelp documents --read-bps of run and mount.
const readBPSHelp = "limit reads from the disks of the work directory and the dataset to this rate for the harness and every tool it runs, e.g. 250M (MB/s): a disk of stated speed where the page cache of a VM's host makes cold reads fast (needs root and cgroup blkio or io)"

// usageError is a bad command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

const usage = `usage:
  sfbench gen    --dir D [--scale S] [--files-scale F] [--seed N]
  sfbench mutate --dir D [--seed N]
  sfbench hash   --dir D
  sfbench run    --work W [--dir D] [--quick] [--runs N] [--tools LIST] [--json FILE] [--snapforge BIN] [--read-bps RATE]
  sfbench scale  --work W [--scale S] [--files 1,4,16] [--bytes 1,4] [--runs N] [--json FILE] [--snapforge BIN]
  sfbench mount  --work W [--scale S] [--runs N] [--dir D] [--json FILE] [--tools snapforge,restic,borg] [--entries N] [--read-bps RATE]
  sfbench inplace --work W [--dir D] [--scale S] [--runs N] [--json FILE] [--snapforge BIN] [--no-drop] [--keep]
run 'sfbench COMMAND --help' for a command's flags`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{usage}
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("sfbench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "dataset directory")
	seed := fs.Uint64("seed", 1, "seed of the generator and the mutation")
	switch cmd {
	case "gen":
		scale := fs.Float64("scale", 1, "size and count multiplier; 1.0 is about 1.7 GB")
		filesScale := fs.Float64("files-scale", 1, "further multiplier of the source tree's file count")
		if err := parseFlags(fs, args, dir); err != nil {
			return err
		}
		o := GenOptions{Dir: *dir, Scale: *scale, FilesScale: *filesScale, Seed: *seed}
		st, err := Generate(ctx, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "generated %s: %d files, %s, tree %s\n", *dir, st.Files, mb(st.Bytes), st.Root)
		return nil
	case "mutate":
		if err := parseFlags(fs, args, dir); err != nil {
			return err
		}
		st, err := Mutate(ctx, *dir, *seed)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "mutated %s: %s\n", *dir, st)
		return nil
	case "hash":
		if err := parseFlags(fs, args, dir); err != nil {
			return err
		}
		t, err := HashTree(*dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s  %d files, %s\n", t.Root, t.Files, mb(t.Bytes))
		return nil
	case "run":
		o := runOptions{Seed: 1}
		fs.StringVar(&o.Work, "work", "", "work directory: dataset copy, repositories, restores, logs (same disk for all tools)")
		fs.BoolVar(&o.Quick, "quick", false, "preset for trying it: --scale 0.05")
		fs.Float64Var(&o.Scale, "scale", 1, "scale of the dataset generated when --dir does not exist")
		fs.Float64Var(&o.FilesScale, "files-scale", 1, "files-scale of the dataset generated when --dir does not exist")
		fs.IntVar(&o.Runs, "runs", 4, "repetitions; the table shows medians")
		tools := fs.String("tools", "", "comma-separated tools (default snapforge,snapforge-sqlite,restic,borg, plus kopia when on PATH)")
		fs.StringVar(&o.JSON, "json", "", "also write the report as JSON to this file")
		fs.StringVar(&o.Snapforge, "snapforge", "", "snapforge binary (default: build ./cmd/snapforge into WORK/bin)")
		fs.StringVar(&o.BorgEncryption, "borg-encryption", "none", "borg init -e mode: none (like snapforge's unencrypted repository) or repokey-blake2 etc. (BORG_PASSPHRASE is set)")
		fs.BoolVar(&o.Keep, "keep", false, "keep repositories and restores of the last run for inspection")
		fs.StringVar(&o.ReadBPS, "read-bps", "", readBPSHelp)
		if err := parseFlags(fs, args, nil); err != nil {
			return err
		}
		if o.Work == "" {
			return &usageError{"run needs --work DIR"}
		}
		scaleSet := false
		fs.Visit(func(f *flag.Flag) { scaleSet = scaleSet || f.Name == "scale" })
		if o.Quick && !scaleSet {
			o.Scale = 0.05
		}
		o.Dir, o.Seed, o.Tools = *dir, *seed, splitList(*tools)
		return runBench(ctx, o, stdout, stderr)
	case "scale":
		return scaleCommand(ctx, fs, args, seed, stdout, stderr)
	case "mount":
		return mountCommand(ctx, fs, args, dir, seed, stdout, stderr)
	case "inplace":
		return inplaceCommand(ctx, fs, args, dir, seed, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return &usageError{fmt.Sprintf("unknown command %q\n%s", cmd, usage)}
}

// parseFlags parses args, refusing positional arguments and, when dir is
// not nil, a missing --dir.
func parseFlags(fs *flag.FlagSet, args []string, dir *string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	if dir != nil && *dir == "" {
		return &usageError{fs.Name() + " needs --dir DIR"}
	}
	return nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// mb formats bytes as decimal megabytes, the unit of the report.
func mb(n int64) string { return formatValue(float64(n)/1e6, true) + " MB" }

// checkRunsScale refuses --runs below 1 and a --scale that is not positive.
func checkRunsScale(runs int, scale float64) error {
	if runs < 1 {
		return &usageError{"--runs must be at least 1"}
	}
	if scale <= 0 {
		return &usageError{"--scale must be positive"}
	}
	return nil
}

// workDir returns work as an absolute path, with subdirs made inside it.
func workDir(work string, subdirs ...string) (string, error) {
	work, err := filepath.Abs(work)
	if err != nil {
		return "", err
	}
	for _, d := range subdirs {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return "", err
		}
	}
	return work, nil
}
