// Command snapforge is the command-line interface of snapforge: a
// local-first backup and recovery tool. It alone reads flags, environment
// and config files, and wires the concrete types (the Badger index) into
// the core (package snapshot).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"snapforge/restore"
	"snapforge/snapshot"
	"snapforge/snapshot/b3"
)

// Exit codes (the CLI contract).
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitIntegrity = 3
	exitPartial   = 4
)

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// partialError reports a backup that completed with files skipped.
type partialError struct{ msg string }

func (e *partialError) Error() string { return e.msg }

// integrityError reports damaged or missing data found by a check.
type integrityError struct{ msg string }

func (e *integrityError) Error() string { return e.msg }

type app struct {
	stdout, stderr io.Writer
	repo           string
	json           bool
	tty            bool   // stderr is a terminal: show progress
	cwd            string // relative path arguments are resolved against it (a.abs); "": unknown
	// shared is set in the owner process for the commands it serves on a
	// client's behalf: a.open lends them this repository (owner.go).
	shared *snapshot.Repo
	// mem is the mount's memory limit (memlimit.go), which the owner
	// lifts while it runs commands; nil: none set.
	mem *memLimit
	// loc is the time zone to print times in: the client's, for a command
	// run by the owner; nil: this process's (time.Local).
	loc *time.Location
	// view is, in the owner, the client's view of the filesystem when it
	// is not the owner's (another mount namespace or root): every path the
	// command opens for the client must name the same file there
	// (clientSees). nil: the same view, or a local run.
	view *clientView
}

// local returns t in the zone the user reads times in.
func (a *app) local(t time.Time) time.Time {
	if a.loc != nil {
		return t.In(a.loc)
	}
	return t.Local()
}

type command struct {
	name    string
	summary string
	usage   string
	run     func(ctx context.Context, a *app, args []string) error
}

var commands []*command

func init() {
	commands = []*command{
		cmdInit, cmdBackup, cmdSnapshots, cmdLs, cmdCat, cmdManifest, cmdDiff, cmdVerify,
		cmdRestore, cmdAudit, cmdRepair, cmdDemo, cmdMount, cmdVersion,
		later("serve", "[--listen ADDR] [--mount DIR]", "run the web UI, local API and scheduler"),
		later("forget", "[--dry-run]", "apply the retention policy to snapshots"),
		later("prune", "[--dry-run]", "remove data no snapshot needs"),
		later("export", "SNAP --scope S --out FILE --consent", "write a scoped snapshot as one encrypted file"),
		later("import", "FILE --target DIR", "check and unpack an export"),
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, repo: os.Getenv("SNAPFORGE_REPO")}
	a.cwd, _ = os.Getwd()
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			a.tty = true
		}
	}
	rest, err := a.globalFlags(args)
	if err == nil {
		err = b3.EnvError()
	}
	if err != nil {
		fmt.Fprintf(stderr, "snapforge: %v\n", err)
		return exitUsage
	}
	if len(rest) == 0 || rest[0] == "help" || rest[0] == "-h" || rest[0] == "--help" {
		if len(rest) > 1 {
			if c := findCommand(rest[1]); c != nil {
				printCommandHelp(stdout, c, nil)
				return exitOK
			}
		}
		printHelp(stdout)
		if len(rest) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c := findCommand(rest[0])
	if c == nil {
		fmt.Fprintf(stderr, "snapforge: unknown command %q; run `snapforge help` for the list\n", rest[0])
		return exitUsage
	}
	if os.Getenv("GOGC") == "" {
		// Backups and restores churn through chunk-sized buffers with a
		// modest live heap (chunker windows, chunks in flight, the index's
		// memtable): collecting at half the live heap instead of all of it
		// keeps peak memory ~30 % lower for a few percent more CPU (issue 3).
		debug.SetGCPercent(50)
	}
	if p := os.Getenv("SNAPFORGE_CPUPROFILE"); p != "" { // for profiling (issue 3); off by default
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if p := os.Getenv("SNAPFORGE_TRACE"); p != "" { // execution trace, for `go tool trace` (issue 3); off by default
		if f, err := os.Create(p); err == nil {
			trace.Start(f)
			defer func() { trace.Stop(); f.Close() }()
		}
	}
	if p := os.Getenv("SNAPFORGE_MEMPROFILE"); p != "" { // heap profile at the peak of in-use memory (issue 3)
		defer peakHeapProfile(p)()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.runCommand(ctx, c, rest[1:]) // through the repository's owner process when one runs
}

// exitCode maps an error to the CLI contract's exit code, printing it.
func (a *app) exitCode(c *command, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	// The command's name starts the line: an error that starts with it
	// again ("backup: source …") drops the repetition.
	code, text := exitError, strings.TrimPrefix(err.Error(), c.name+": ")
	var ue *usageError
	var pe *partialError
	var ie *integrityError
	var rie *restore.IntegrityError
	var rb *restore.RolledBackError
	var ab *restore.AbandonedError
	switch {
	case errors.As(err, &ue):
		code, text = exitUsage, text+"\nusage: snapforge "+c.name+" "+c.usage
	case errors.As(err, &pe):
		code = exitPartial
	case errors.As(err, &rb), errors.As(err, &ab) && !errors.As(err, &rie):
		// Exit 1 even when the cause was damage: the live system is as it was.
	case errors.As(err, &ie), errors.As(err, &rie), isIntegrity(err):
		code = exitIntegrity
	case errors.Is(err, context.Canceled) && c.name == "restore":
		text = "interrupted; the target holds a partial restore: run the same command again to finish it"
	case errors.Is(err, context.Canceled) && c.name == "backup":
		text = "interrupted; nothing partial was committed"
	case errors.Is(err, context.Canceled):
		text = "interrupted"
	}
	fmt.Fprintf(a.stderr, "snapforge %s: %s\n", c.name, text)
	return code
}

// globalFlags removes --repo and --json wherever they appear.
func (a *app) globalFlags(args []string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			rest = append(rest, args[i:]...)
			return rest, nil
		case arg == "--json" || arg == "-json":
			a.json = true
		case arg == "--repo" || arg == "-repo":
			if i+1 >= len(args) {
				return nil, errors.New("--repo needs a directory")
			}
			a.repo = args[i+1]
			i++
		case strings.HasPrefix(arg, "--repo=") || strings.HasPrefix(arg, "-repo="):
			a.repo = arg[strings.Index(arg, "=")+1:]
		default:
			rest = append(rest, arg)
		}
	}
	return rest, nil
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `snapforge — local-first backup and recovery

usage: snapforge [--repo DIR] [--json] COMMAND [ARGS]

--repo falls back to $SNAPFORGE_REPO. Global flags may come before or after the command.
SNAP is a backup id, a unique prefix of one, or "latest".

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
exit codes: 0 ok, 1 error, 2 usage, 3 integrity failure, 4 done with files skipped
run 'snapforge COMMAND --help' for a command's flags
`)
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: snapforge [--repo DIR] [--json] %s %s\n\n%s\n", c.name, c.usage, c.summary)
	if fs != nil {
		fmt.Fprintln(w, "\nflags:")
		printFlags(w, fs)
	}
}

// printFlags lists fs's flags as the usage lines spell them (--name, not
// the flag package's -name), each with its argument, help and default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" {
			if arg == "string" {
				d = strconv.Quote(d)
			}
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	})
}

// parse parses a command's flags, allowing flags after positional
// arguments, and returns the positionals.
func parse(a *app, c *command, fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printCommandHelp(a.stdout, c, fs)
				return nil, flag.ErrHelp
			}
			return nil, &usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func later(name, usage, summary string) *command {
	c := &command{name: name, usage: usage, summary: summary + " (not in this version yet)"}
	c.run = func(ctx context.Context, a *app, args []string) error {
		for _, arg := range args {
			if arg == "-h" || arg == "-help" || arg == "--help" {
				printCommandHelp(a.stdout, c, nil) // the CLI contract: --help works for every command
				return flag.ErrHelp
			}
		}
		return fmt.Errorf("%s is not available in this version of snapforge yet; snapshots can be browsed with `snapforge ls`/`cat` and restored with `snapforge restore`", name)
	}
	return c
}

// peakHeapProfile samples the heap every 50 ms and, each time in-use memory
// reaches a new high, writes the heap profile to path. It returns the
// function that stops it. For finding what holds memory; off by default.
func peakHeapProfile(path string) func() {
	runtime.MemProfileRate = 64 << 10
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		var peak uint64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak {
				peak = ms.HeapInuse
				if f, err := os.Create(path); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}
