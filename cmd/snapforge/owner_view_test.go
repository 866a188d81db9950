package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/index/indextest"
	"snapforge/snapshot/audit"
)

// TestOwnerRefusesOtherViews: the owner opens a backup's source and a
// restore's target for its client, so it refuses those commands from a
// client that sees other files (another mount namespace: a container, a
// service's private /tmp) or would act with other rights (root's command
// sent to a user's mount). Before, the owner backed up its own view of the
// path and restored into a directory the client could not see, exit 0
// (acceptance run 3, A1 and C5). Commands that only read the repository
// are still served.
func TestOwnerRefusesOtherViews(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: another mount namespace, and an owner running as another user")
	}
	t.Parallel()

	t.Run("mount namespace", func(t *testing.T) {
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("util-linux's unshare is not installed")
		}
		repo := initRepo(t)
		src := filepath.Join(t.TempDir(), "src")
		smallTree(t, src)
		out := filepath.Join(t.TempDir(), "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		serveRepo(t, repo)
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		// inNS runs snapforge in a mount namespace of its own, after setup
		// (shell commands, there).
		inNS := func(setup string, args ...string) cliResult {
			t.Helper()
			cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-ec", setup + `; exec "$@"`, "sh", exe}, args...)...)
			cmd.Env = cliEnv()
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			res := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
			if err != nil && res.code <= 0 {
				t.Fatalf("unshare: %v (%v)", err, res)
			}
			return res
		}
		// The same files there (a service with its own /tmp sees the rest
		// as everyone does): served.
		res := inNS("true", "--repo", repo, "backup", src)
		if res.code != exitOK || !strings.Contains(res.stdout, "saved") {
			t.Fatalf("backup from another namespace that sees the same files: %v", res)
		}
		// Other files at the same paths: refused, nothing taken or written.
		hide := fmt.Sprintf("mount -t tmpfs none %s; mount -t tmpfs none %s; echo theirs > %s/only-here", src, out, src)
		for _, args := range [][]string{
			{"backup", src},
			{"restore", "latest", "--target", filepath.Join(out, "r")},
		} {
			res := inNS(hide, append([]string{"--repo", repo}, args...)...)
			if res.code != exitError || !strings.Contains(res.stderr, "is not the same for this command as for the process that owns the repository") ||
				!strings.Contains(res.stderr, "stop that process, pid ") {
				t.Errorf("from a namespace with other files there: %v", res)
			}
		}
		// The same root, other files below it: a file system mounted on a
		// subdirectory for the client only (acceptance run 4: the owner
		// backed up its own view of it), or for the owner only.
		sub := filepath.Join(src, "mounted-below")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		res = inNS("mount -t tmpfs none "+sub+"; echo theirs > "+sub+"/only-here", "--repo", repo, "backup", src)
		if res.code != exitError || !strings.Contains(res.stderr, "(a file system is mounted at "+sub+" for this command and not for that process)") {
			t.Errorf("from a namespace with a file system mounted below the root: %v", res)
		}
		if err := unix.Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		res = inNS("umount "+sub, "--repo", repo, "backup", src)
		unix.Unmount(sub, unix.MNT_DETACH)
		if res.code != exitError || !strings.Contains(res.stderr, "(a file system is mounted at "+sub+" for that process and not for this command)") {
			t.Errorf("from a namespace without the owner's file system below the root: %v", res)
		}
		if ids := backupIDs(t, repo); len(ids) != 1 {
			t.Fatalf("snapshots: %v, want the one taken where the files were the same", ids)
		}
		if _, err := os.Stat(filepath.Join(out, "r")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the owner restored into its own %s: %v", out, err)
		}
		if res := inNS(hide, "--repo", repo, "snapshots"); res.code != exitOK || strings.Count(res.stdout, "snap-") != 1 {
			t.Errorf("snapshots from another mount namespace: %v", res)
		}
	})

	t.Run("another user's owner", func(t *testing.T) {
		base, err := os.MkdirTemp("", "snapforge-view-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatal(err)
		}
		repo := filepath.Join(base, "repo")
		if code := run([]string{"--repo", repo, "init"}, io.Discard, io.Discard); code != 0 {
			t.Fatalf("init exited %d", code)
		}
		src := filepath.Join(base, "src")
		smallTree(t, src)
		for _, dir := range []string{repo, src} {
			if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(p, 65534, 65534)
			}); err != nil {
				t.Fatal(err)
			}
		}
		exe := indextest.ExecutableCopy(t, base, "snapforge.test")
		ownerProcess(t, exe, repo, &syscall.Credential{Uid: 65534, Gid: 65534})
		backupRefused(t, repo, src, "root's backup through a user's owner",
			"this command runs as uid 0, and the process that owns this repository as uid 65534")
	})

	t.Run("other groups", func(t *testing.T) {
		// The owner runs as root too, with a supplementary group this
		// test (the client) lacks: a file only that group may read would
		// be backed up for the client.
		base := t.TempDir()
		repo := filepath.Join(base, "repo")
		if code := run([]string{"--repo", repo, "init"}, io.Discard, io.Discard); code != 0 {
			t.Fatalf("init exited %d", code)
		}
		src := filepath.Join(base, "src")
		smallTree(t, src)
		exe := indextest.ExecutableCopy(t, base, "snapforge.test")
		ownerProcess(t, exe, repo, &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{4242}})
		backupRefused(t, repo, src, "a backup through an owner with other groups",
			"this command runs with gid 0 and ", "and the process that owns this repository with gid 0 and supplementary groups 4242:")
	})
}

// backupRefused runs a backup of src through the owner process serving
// repo: it must fail naming each of wants, and take no snapshot, while the
// owner still answers snapshots.
func backupRefused(t *testing.T, repo, src, what string, wants ...string) {
	t.Helper()
	res := expectCode(t, clientRun(t, context.Background(), repo, "/", "backup", src), exitError)
	for _, w := range wants {
		if !strings.Contains(res.stderr, w) {
			t.Errorf("%s: %v, want %q", what, res, w)
		}
	}
	res = expectCode(t, clientRun(t, context.Background(), repo, "/", "snapshots"), exitOK)
	if strings.Contains(res.stdout, "snap-") {
		t.Errorf("%s: a snapshot was taken: %v", what, res)
	}
}

// TestOwnerStartingMount: a command that finds the repository held by a
// mount that is still starting (it holds the lock before it listens) waits
// for the mount's socket and runs through it, instead of failing with
// "repository in use" (acceptance run 3, C7).
func TestOwnerStartingMount(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	smallTree(t, src)
	clientOK(t, repo, "backup", src)

	owner := &app{stdout: io.Discard, stderr: io.Discard, repo: repo}
	r, err := owner.open(context.Background(), "mount")
	if err != nil {
		t.Fatal(err)
	}
	listening := make(chan *ownerServer, 1)
	go func() {
		time.Sleep(400 * time.Millisecond) // the mount's own start
		s, err := startOwner(context.Background(), owner, r)
		if err != nil {
			t.Error(err)
		}
		listening <- s
	}()
	t.Cleanup(func() {
		if s := <-listening; s != nil {
			s.Close()
		}
		r.Close()
	})
	res := expectCode(t, clientRun(t, context.Background(), repo, "/", "snapshots"), exitOK)
	if strings.Count(res.stdout, "snap-") != 1 || strings.Contains(res.stderr, "in use") {
		t.Errorf("snapshots while the mount started: %v", res)
	}
	// A mount that lets go without listening (it failed to start, or
	// closed): the command runs here as soon as the lock is free.
	freed := initRepo(t)
	fa := &app{stdout: io.Discard, stderr: io.Discard, repo: freed}
	fr, err := fa.open(context.Background(), "mount")
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(300 * time.Millisecond); fr.Close() }()
	began := time.Now()
	res = expectCode(t, clientRun(t, context.Background(), freed, "/", "snapshots"), exitOK)
	if took := time.Since(began); took >= ownerStartWait/2 || strings.Contains(res.stderr, "in use") {
		t.Errorf("after a starting mount let go: %v in %v", res, took)
	}
	// A mount that never listens: the command still fails, naming it.
	held := initRepo(t)
	ha := &app{stdout: io.Discard, stderr: io.Discard, repo: held}
	hr, err := ha.open(context.Background(), "mount")
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Close()
	began = time.Now()
	res = expectCode(t, clientRun(t, context.Background(), held, "/", "snapshots"), exitError)
	if !strings.Contains(res.stderr, "repository in use by") || time.Since(began) < ownerStartWait {
		t.Errorf("a mount that never listens: %v after %v", res, time.Since(began))
	}
}

// TestOwnerLongCommandLine: a command line over a frame (1 MiB) runs
// through the owner as it runs alone, and its audit event is kept, with
// the long list summarized (acceptance run 3, A2 and C6).
func TestOwnerLongCommandLine(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	smallTree(t, src)
	name := func(i int) string { return fmt.Sprintf("many/%s-%05d", strings.Repeat("d", 200), i) }
	for i := range 5000 {
		indextest.WriteFile(t, filepath.Join(src, name(i)), []byte(fmt.Sprint(i)))
	}
	clientOK(t, repo, "backup", src)
	o := serveRepo(t, repo)
	target := filepath.Join(t.TempDir(), "out")
	args := []string{"restore", "latest", "--target", target, "--include", "a.txt"}
	for i := range 5000 { // a user's selection of files: 1.1 MB of arguments
		args = append(args, "--include", name(i))
	}
	res := clientOK(t, repo, args...)
	if got, err := os.ReadFile(filepath.Join(target, "a.txt")); err != nil || string(got) != "alpha\n" {
		t.Fatalf("restored a.txt: %q, %v (%v)", got, err, res)
	}
	if got, err := os.ReadFile(filepath.Join(target, name(4999))); err != nil || string(got) != "4999" {
		t.Fatalf("restored %s: %q, %v", name(4999), got, err)
	}
	o.close()
	events, err := audit.ReadAll(filepath.Join(repo, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	var restore *audit.Event
	for i := range events {
		if events[i].Op == "restore" {
			restore = &events[i]
		}
	}
	if restore == nil || restore.Outcome != "ok" {
		t.Fatalf("no restore event kept: %d events, last %+v", len(events), events[len(events)-1].Op)
	}
	short, ok := restore.Params["include"].(map[string]any)
	if !ok || fmt.Sprint(short["items"]) != "5001" {
		t.Errorf("the restore's include list: %T %v; want its summary, 5001 items", restore.Params["include"], short)
	}
	if rep, err := audit.Verify(filepath.Join(repo, "audit"), nil); err != nil || !rep.OK() {
		t.Errorf("audit verify: %v, %v", rep, err)
	}
}

// TestMountsBelow: mountinfo's mount points are unescaped (a space is
// \040) and matched at or below a path, not by a shared prefix of names.
func TestMountsBelow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	info := "1 0 8:1 / / rw - ext4 /dev/vda rw\n" +
		"2 1 0:40 / /srv/app\\040data rw - tmpfs none rw\n" +
		"3 1 0:41 /sub /srv/app\\040data/config rw - ext4 /dev/vdb rw\n" +
		"4 1 0:42 / /srv/app\\040database rw - tmpfs none rw\n"
	if err := os.WriteFile(p, []byte(info), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := mountsBelow(p, "/srv/app data")
	want := []mountEntry{{"/srv/app data", "0:40", "/"}, {"/srv/app data/config", "0:41", "/sub"}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("mounts below /srv/app data: %v (%v), want %v", got, err, want)
	}
	if got, _ := mountsBelow(p, "/"); len(got) != 4 {
		t.Fatalf("mounts below /: %v, want all 4", got)
	}
}
