package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"snapforge/fusefs"
	"snapforge/snapshot"
	"snapforge/snapshot/audit"
)

// mountMemoryLimit is the mount process's soft memory limit (GOMEMLIMIT
// overrides it). Reading every file of the benchmark's dataset through a
// fresh mount peaked at 88-102 MB of RSS with 80 MiB, 87-89 MB with 72 MiB
// in the same time and CPU (3 interleaved pairs): the peak is the heap the
// limit allows (decoded chunks and frames, go-fuse's request buffers) plus
// 10-15 MB it does not count or has not reclaimed yet (the index's mapped
// tables, the binary's pages, a collection's overshoot).
const mountMemoryLimit = 72 << 20

var cmdMount = &command{name: "mount", usage: "[--allow-other] [--xattrs] [--cache-mb N] [--debug] DIR",
	summary: "mount every snapshot read-only through FUSE; owns the repository until Ctrl-C"}

func init() {
	cmdMount.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("mount", flag.ContinueOnError)
		allowOther := fs.Bool("allow-other", false, "let other users browse too; the kernel then checks each file's stored mode and owner (default_permissions)")
		xattrs := fs.Bool("xattrs", false, "serve stored extended attributes (costs a round trip per file for most tools)")
		cacheMB := fs.Int("cache-mb", fusefs.DefaultCacheBytes>>20, "memory for decoded chunks, in MiB")
		debugFUSE := fs.Bool("debug", false, "log every FUSE request to stderr")
		pos, err := parse(a, cmdMount, fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return &usageError{"mount needs one DIR, an empty directory to mount on"}
		}
		if *cacheMB < 1 {
			return &usageError{"--cache-mb must be at least 1"}
		}
		if os.Getenv("GOMEMLIMIT") == "" {
			// A mount lives long and mostly serves reads: keep its memory
			// near what it uses (chunk cache, index, FUSE buffers) instead
			// of letting garbage pile up to a multiple of it between
			// collections (issue 4: the mount process under 100 MB), but
			// above the live heap when the kernel holds many nodes.
			a.mem = startMemLimit(mountMemoryLimit)
			defer a.mem.stop()
		}
		if _, err := os.Stat("/dev/fuse"); err != nil {
			return fmt.Errorf("FUSE is not available on this machine (/dev/fuse: %v); install fuse3 or load the fuse module, or browse with `snapforge ls`/`cat` instead", err)
		}
		if *allowOther && os.Geteuid() != 0 && !fuseConfAllows(fuseConf, "user_allow_other") {
			return fmt.Errorf("--allow-other: a normal user may let others in only when %s has a line `user_allow_other` (root adds it); or mount without --allow-other", fuseConf)
		}
		// What is wrong with the mountpoint itself first (inside the
		// repository or the profile's root, not empty, missing): it is
		// known without the repository, which another mount may hold. The
		// roots of every snapshot are checked once it is open.
		rp, err := a.repoPath()
		if err != nil {
			return err
		}
		prof, err := loadProfile(rp)
		if err != nil {
			return err
		}
		var roots []string
		if prof != nil {
			roots = []string{prof.Root}
		}
		if err := fusefs.CheckMountpoint(pos[0], rp, roots); err != nil {
			return err
		}
		r, err := a.openWaiting(ctx, "mount")
		if err != nil {
			return err
		}
		defer r.Close()
		// Damage is said on the terminal by a goroutine of its own: a read
		// through the mount must never wait on a stalled terminal or pipe
		// (reports beyond those queued are in the audit trail only).
		damaged := make(chan string, 64)
		go func() {
			for line := range damaged {
				fmt.Fprint(a.stderr, line)
			}
		}()
		defer close(damaged)
		o := fusefs.Options{CacheBytes: int64(*cacheMB) << 20, Xattrs: *xattrs, AllowOther: *allowOther, Debug: *debugFUSE,
			Damaged: func(snap, path string, err error) {
				select {
				case damaged <- fmt.Sprintf("snapforge mount: %s in snapshot %s is damaged (%v): it reads as an I/O error, other files stay readable; run `snapforge verify --read-data`\n", path, snap, err):
				default:
				}
			}}
		sources := fusefs.Sources(ctx, r)
		if prof != nil {
			sources = append(sources, prof.Root)
			o.Units = map[string][]string{}
			for name, u := range prof.Units {
				o.Units[name] = u.Paths
			}
		}
		note, err := fusefs.PrepareMountpoint(pos[0], r.Path(), sources)
		if note != "" {
			fmt.Fprintf(a.stderr, "snapforge mount: %s\n", note)
		}
		if err != nil {
			return err
		}
		f, err := fusefs.New(ctx, r, o)
		if err != nil {
			return err
		}
		defer f.Close()
		if a.mem != nil {
			a.mem.pinnedBy(f.LiveNodes)
		}
		// Listing the snapshots parsed and checked every manifest in full;
		// give that garbage back before settling down to serve.
		debug.FreeOSMemory()
		refresh := make(chan struct{}, 1)
		r.OnCommit(func(*snapshot.Manifest) {
			select {
			case refresh <- struct{}{}:
			default:
			}
		})
		// SIGHUP too: a closed terminal or a dropped ssh session must
		// unmount cleanly, not leave a dead mount behind. Watched from
		// before the mount exists, so that none arrives unhandled (SIGHUP's
		// default ends the process).
		// Not where SIGHUP is ignored (`nohup snapforge mount …`): the
		// mount is then meant to outlive the terminal, and Notify would
		// undo the ignore.
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		if !signal.Ignored(syscall.SIGHUP) {
			signal.Notify(sigs, syscall.SIGHUP)
		}
		defer signal.Stop(sigs)
		m, err := fusefs.Start(ctx, f, pos[0])
		if err != nil {
			if os.Geteuid() != 0 {
				return fmt.Errorf("%s: this user could not mount; a normal user mounts through fusermount3 (Debian's fuse3, installed setuid root), which must be able to open /dev/fuse; or run snapforge mount as root", strings.TrimSpace(err.Error()))
			}
			return err
		}
		served := make(chan struct{})
		go func() { m.Wait(); close(served) }()
		// The owner serves until this process ends (the deferred Close), not
		// until the Ctrl-C that unmounts: a lazily unmounted file system
		// keeps the repository until its last open file closes, and
		// meanwhile commands must still run, through us.
		own, err := startOwner(context.WithoutCancel(ctx), a, r)
		if err != nil {
			if _, uerr := m.Unmount(); uerr == nil {
				<-served
			}
			return err
		}
		defer own.Close()
		shown := snapshot.DisplayName(m.Dir)                             // a name with a newline stays on its line
		auditDir := func() string { return audit.Escape([]byte(m.Dir)) } // Dir moves if the mountpoint did
		r.Audit("mount", map[string]any{"dir": auditDir(), "allow_other": *allowOther}, "ok")
		n := f.Snapshots()
		if a.json {
			a.printJSON(map[string]any{"mounted": m.Dir, "snapshots": n, "repository": r.Path()})
		} else {
			noun := "snapshots"
			if n == 1 {
				noun = "snapshot"
			}
			fmt.Fprintf(a.stdout, "mounted %d %s of %s at %s (read-only)\nbrowse %s/latest, or copy files out; press Ctrl-C to unmount\n",
				n, noun, snapshot.DisplayName(r.Path()), shown, shown)
		}
	wait:
		for {
			select {
			case <-refresh:
				f.Refresh(context.Background())
			case <-served: // unmounted from outside (fusermount3 -u)
				fmt.Fprintf(a.stderr, "snapforge mount: %s was unmounted\n", shown)
				r.Audit("unmount", map[string]any{"dir": auditDir(), "by": "outside"}, "ok")
				return nil
			case <-ctx.Done():
				break wait
			case <-sigs:
				break wait
			}
		}
		lazy, err := m.Unmount()
		if now := snapshot.DisplayName(m.Dir); now != shown {
			fmt.Fprintf(a.stderr, "snapforge mount: the mountpoint moved to %s while mounted\n", now)
			shown = now
		}
		if err != nil {
			r.Audit("unmount", map[string]any{"dir": auditDir()}, "failed: "+err.Error())
			return err
		}
		if !lazy {
			<-served
			r.Audit("unmount", map[string]any{"dir": auditDir()}, "ok")
			fmt.Fprintf(a.stderr, "unmounted %s\n", shown)
			return nil
		}
		r.Audit("unmount", map[string]any{"dir": auditDir(), "lazy": true}, "ok")
		fmt.Fprintf(a.stderr, "snapforge mount: files under %s are still open, so it was unmounted lazily: the folder is gone, and open files stay readable until they are closed; snapforge exits then, and until then commands on the repository still run through it (press Ctrl-C again to stop now)\n", shown)
		awaitServed(served, sigs)
		return nil
	}
}

// openWaiting opens the repository for a process that will own it for
// long (the mount). While a command that ends by itself holds it (a
// backup, a verify, a restore) it waits for that, saying so once, instead
// of failing; another mount is refused at once, since waiting for it would
// be waiting for somebody's Ctrl-C.
func (a *app) openWaiting(ctx context.Context, command string) (*snapshot.Repo, error) {
	said := false
	for {
		r, err := a.open(ctx, command)
		var le *snapshot.LockedError
		if err == nil || !errors.As(err, &le) || strings.Contains(le.Holder, "(snapforge mount)") {
			return r, err
		}
		if !said {
			fmt.Fprintf(a.stderr, "snapforge %s: the repository is in use by %s; waiting for it to finish (Ctrl-C to stop waiting)\n", command, le.Holder)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting for %s, which holds the repository: %w", le.Holder, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// awaitServed waits until a lazily unmounted file system is no longer
// served (its last open file closed) or for another Ctrl-C, and reports
// which. The Ctrl-C that started the unmount may still sit in sigs: the
// loop can leave through ctx.Done, which the same signal cancels. It was
// delivered long before (a lazy unmount is tried only after the plain one
// failed for a while), so it is dropped here and is not taken for the
// second one.
func awaitServed(served <-chan struct{}, sigs <-chan os.Signal) (interrupted bool) {
	for len(sigs) > 0 {
		<-sigs
	}
	select {
	case <-served:
		return false
	case <-sigs:
		return true
	}
}

// fuseConf is fuse3's configuration, read by fusermount3.
const fuseConf = "/etc/fuse.conf"

// fuseConfAllows reports whether the fuse configuration at path has option
// on a line of its own, as fusermount3 reads it: text from a '#' on is a
// comment ("#user_allow_other", as Debian ships it, does not count).
func fuseConfAllows(path, option string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if strings.TrimSpace(line) == option {
			return true
		}
	}
	return false
}
