package main

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/fusefs/fusetest"
	"snapforge/index/indextest"
)

// The mount command end to end: real processes, a real FUSE mount, the
// owner socket. The file system itself is tested in package fusefs.

// startMount runs `snapforge mount` and waits until it serves.
func startMount(t *testing.T, o cliOpts, repo, mnt string) *proc {
	t.Helper()
	p := startCLI(t, o, "--repo", repo, "mount", mnt)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Mounted, and the owner socket is up (it starts right after the
		// mount). Not a stat inside the mount: without --allow-other only
		// the mounting user may look, and the test may be another.
		if c, err := net.Dial("unix", filepath.Join(repo, "run", "owner.sock")); err == nil {
			c.Close()
			if fusetest.Mounted(mnt) {
				break
			}
		}
		if p.exited() || time.Now().After(deadline) {
			p.cmd.Process.Kill()
			t.Fatalf("mount did not come up: %v", p.wait(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cleanupMount(t, p, mnt)
	return p
}

// cleanupMount makes sure, when the test ends, that the mount process p is
// gone and nothing is left mounted at mnt.
func cleanupMount(t *testing.T, p *proc, mnt string) {
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if fusetest.Mounted(mnt) {
			unix.Unmount(mnt, unix.MNT_DETACH)
			exec.Command("fusermount3", "-uz", mnt).Run()
		}
	})
}

// newMountpoint returns a new empty directory to mount on.
func newMountpoint(t *testing.T) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// stopMount sends SIGINT and returns the result.
func stopMount(t *testing.T, p *proc) cliResult {
	t.Helper()
	return signalMount(t, p, syscall.SIGINT)
}

func signalMount(t *testing.T, p *proc, sig syscall.Signal) cliResult {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

// TestMountHangup: SIGTERM and SIGHUP (a supervisor stopping it, a closed
// terminal or dropped ssh session) unmount as cleanly as Ctrl-C: no dead
// mount, no socket left, the unmount in the audit trail.
func TestMountHangup(t *testing.T) {
	fusetest.RequireFUSE(t)
	r := newRepo(t)
	r.ok("backup", mountSource(t))
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		mnt := newMountpoint(t)
		if sig == syscall.SIGHUP {
			// A mountpoint whose name holds a newline and a tab is
			// named escaped, each message on one line.
			mnt = filepath.Join(t.TempDir(), "odd\nname\there")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		p := startMount(t, cliOpts{}, r.dir, mnt)
		res := signalMount(t, p, sig)
		if res.code != exitOK || res.signal != 0 || !strings.Contains(res.stderr, "unmounted") {
			t.Fatalf("%v: %v", sig, res)
		}
		shown := strings.ReplaceAll(strings.ReplaceAll(mnt, "\n", `\n`), "\t", `\t`)
		if !strings.Contains(res.stdout, " at "+shown+" (read-only)\n") || !strings.Contains(res.stderr, "unmounted "+shown+"\n") {
			t.Errorf("%v: the mountpoint %q is not named as %q on one line: %v", sig, mnt, shown, res)
		}
		if fusetest.Mounted(mnt) {
			t.Errorf("%v: still mounted", sig)
		}
		if _, err := os.Stat(filepath.Join(r.dir, "run", "owner.sock")); !os.IsNotExist(err) {
			t.Errorf("%v: owner socket left behind: %v", sig, err)
		}
	}
	if audit := r.ok("audit"); strings.Count(audit.stdout, "unmount") != 2 {
		t.Errorf("want 2 unmount events in the audit trail:\n%s", audit.stdout)
	}
}

func mountSource(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	indextest.WriteFile(t, filepath.Join(src, "config.json"), []byte(`{"v":1}`+"\n"))
	indextest.WriteFile(t, filepath.Join(src, "data/blob.bin"), indextest.RandomBytes(9, 3<<20))
	return src
}

// TestMountCommand: mount, browse, back up through the owner while mounted
// (the new snapshot shows as latest within 2 s), other commands through the
// owner, repair refused naming the mount, Ctrl-C unmounts cleanly.
func TestMountCommand(t *testing.T) {
	fusetest.RequireFUSE(t)
	r := newRepo(t)
	src := mountSource(t)
	first := parseSummary(t, r.ok("backup", src, "--json"))
	mnt := newMountpoint(t)
	p := startMount(t, cliOpts{}, r.dir, mnt)

	b, err := os.ReadFile(filepath.Join(mnt, "latest", "config.json"))
	if err != nil || string(b) != `{"v":1}`+"\n" {
		t.Fatalf("latest/config.json = %q (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "by-id", first.BackupID, "data", "blob.bin")); err != nil {
		t.Errorf("by-id: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(r.dir, "run", "owner.sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("owner socket: %v %v", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(r.dir, "run", "owner.sock.new")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket's name while it is made 0600 is left behind: %v", err)
	}

	// A backup while mounted runs through the owner (the mount holds the
	// lock, so a local open would be refused) and lands as latest.
	time.Sleep(1100 * time.Millisecond) // a new second, a new folder name
	indextest.WriteFile(t, filepath.Join(src, "config.json"), []byte(`{"v":2}`+"\n"))
	second := parseSummary(t, r.ok("backup", src, "--json"))
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(mnt, "latest", "config.json"))
		if err == nil && string(b) == `{"v":2}`+"\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("2 s after backup %s, latest/config.json = %q (%v)", second.BackupID, b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(mnt, "by-id", second.BackupID)); err != nil {
		t.Errorf("by-id of the new snapshot: %v", err)
	}
	if res := r.ok("snapshots"); !strings.Contains(res.stdout, first.BackupID) || !strings.Contains(res.stdout, second.BackupID) {
		t.Errorf("snapshots through the owner: %v", res)
	}
	if res := r.ok("cat", "latest", "config.json"); res.stdout != `{"v":2}`+"\n" {
		t.Errorf("cat through the owner: %v", res)
	}
	if res := r.run("repair", "index"); res.code != exitError || !strings.Contains(res.stderr, "snapforge mount") {
		t.Errorf("repair while mounted should be refused naming the mount: %v", res)
	}
	// The audit trail names the mount.
	if res := r.ok("audit"); !strings.Contains(res.stdout, "mount") {
		t.Errorf("no mount event in the audit trail: %v", res)
	}

	// The mount is never backed up (FAULTS B6, D15): a backup of the
	// directory holding it leaves the mounted tree out.
	indextest.WriteFile(t, filepath.Join(filepath.Dir(mnt), "other.txt"), []byte("x"))
	third := parseSummary(t, r.ok("backup", filepath.Dir(mnt), "--json"))
	if ls := r.ok("ls", third.BackupID); !strings.Contains(ls.stdout, "other.txt") || strings.Contains(ls.stdout, "README.txt") || strings.Contains(ls.stdout, "config.json") {
		t.Errorf("a backup of the mount's parent walked into the mount: %v", ls)
	}

	// Nor is a backup of the mount, or of a folder in it, taken: refused,
	// saying why (through the owner, as every backup while mounted).
	for _, p := range []string{mnt, filepath.Join(mnt, "by-id", first.BackupID, "data")} {
		res := r.run("backup", p)
		if res.code != exitError || !strings.Contains(res.stderr, "is inside the snapforge mount at "+mnt) {
			t.Errorf("backup of %s: %v, want it refused naming the mount", p, res)
		}
	}

	res := stopMount(t, p)
	if res.code != exitOK || !strings.Contains(res.stderr, "unmounted") {
		t.Fatalf("Ctrl-C: %v", res)
	}
	if fusetest.Mounted(mnt) {
		t.Error("still mounted after Ctrl-C")
	}
	if _, err := os.Stat(filepath.Join(r.dir, "run", "owner.sock")); !os.IsNotExist(err) {
		t.Errorf("owner socket left behind: %v", err)
	}
	r.ok("snapshots") // local again
}

// TestMountKilled: SIGKILL of the mount loses nothing; commands run locally
// at once, and the next mount cleans up the dead mount (FAULTS B6, G6).
func TestMountKilled(t *testing.T) {
	fusetest.RequireFUSE(t)
	r := newRepo(t)
	src := mountSource(t)
	r.ok("backup", src)
	mnt := newMountpoint(t)
	p := startMount(t, cliOpts{}, r.dir, mnt)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done

	indextest.WriteFile(t, filepath.Join(src, "config.json"), []byte(`{"v":3}`+"\n"))
	s := parseSummary(t, r.ok("backup", src, "--json")) // locally: the stale socket answers no one
	r.ok("verify", "--read-data")

	p2 := startMount(t, cliOpts{}, r.dir, mnt)
	b, err := os.ReadFile(filepath.Join(mnt, "latest", "config.json"))
	if err != nil || string(b) != `{"v":3}`+"\n" {
		t.Errorf("after the restart latest/config.json = %q (%v), want snapshot %s", b, err, s.BackupID)
	}
	res := stopMount(t, p2)
	if res.code != exitOK || !strings.Contains(res.stderr, "dead mount") {
		t.Errorf("the second mount should say it removed the dead mount: %v", res)
	}
}

// TestMountBusy: Ctrl-C while a file is open unmounts lazily and says so;
// the open file stays readable, commands still run through the process,
// and it ends once the file is closed.
func TestMountBusy(t *testing.T) {
	fusetest.RequireFUSE(t)
	r := newRepo(t)
	r.ok("backup", mountSource(t))
	mnt := newMountpoint(t)
	p := startMount(t, cliOpts{}, r.dir, mnt)
	f, err := os.Open(filepath.Join(mnt, "latest", "data", "blob.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fusetest.Mounted(mnt) {
		if time.Now().After(deadline) {
			t.Fatal("still mounted 10 s after Ctrl-C")
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	if n, err := f.ReadAt(buf, 1<<20); err != nil || n != len(buf) || string(buf) != string(indextest.RandomBytes(9, 3<<20)[1<<20:2<<20]) {
		t.Errorf("reading the open file after the lazy unmount: %d %v", n, err)
	}
	if p.exited() {
		t.Fatalf("the mount exited while a file was open: %v", p.wait(t))
	}
	// Meanwhile the repository is not locked away: commands, a backup too,
	// run through the process that still owns it.
	if res := r.run("snapshots"); res.code != exitOK || strings.Contains(res.stderr, "in use by") {
		t.Errorf("snapshots while lazily unmounted: %v", res)
	}
	if res := r.run("backup", mountSource(t)); res.code != exitOK {
		t.Errorf("backup while lazily unmounted: %v", res)
	}
	f.Close()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the mount did not exit after the last open file was closed")
	}
	res := p.wait(t)
	if res.code != exitOK || !strings.Contains(res.stderr, "lazily") {
		t.Errorf("busy unmount: %v", res)
	}
}

// TestMountRefuses: bad mountpoints get clear errors and no mount.
func TestMountRefuses(t *testing.T) {
	r := newRepo(t)
	src := mountSource(t)
	r.ok("backup", src)
	inRepo := filepath.Join(r.dir, "browse")
	inSrc := filepath.Join(src, "browse")
	full := filepath.Join(t.TempDir(), "full")
	for _, d := range []string{inRepo, inSrc, full} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	indextest.WriteFile(t, filepath.Join(full, "x"), []byte("x"))
	for dir, want := range map[string]string{
		inRepo:                                "inside the repository",
		inSrc:                                 "backed up",
		full:                                  "not empty",
		filepath.Join(t.TempDir(), "missing"): "does not exist",
	} {
		res := r.run("mount", dir)
		if res.code != exitError || !strings.Contains(res.stderr, want) {
			t.Errorf("mount %s: want exit 1 saying %q, got %v", dir, want, res)
		}
		if fusetest.Mounted(dir) {
			t.Errorf("%s got mounted", dir)
		}
	}
	if res := r.run("mount"); res.code != exitUsage {
		t.Errorf("mount without DIR: %v", res)
	}

	// While another mount holds the repository, what is wrong with the
	// mountpoint is still said first: inside the repository, inside the
	// profile's root, not empty, missing. (A root known only from the
	// snapshots needs the repository.)
	indextest.WriteFile(t, filepath.Join(r.dir, "profile.json"), []byte(`{"name": "app", "root": "`+src+`", "units": {"config": {"paths": ["config.json"]}}}`))
	startMount(t, cliOpts{}, r.dir, newMountpoint(t))
	for dir, want := range map[string]string{
		inRepo:                                "inside the repository",
		inSrc:                                 "is inside " + src + ", which is backed up",
		full:                                  "not empty",
		filepath.Join(t.TempDir(), "missing"): "does not exist",
	} {
		res := r.run("mount", dir)
		if res.code != exitError || !strings.Contains(res.stderr, want) || strings.Contains(res.stderr, "in use") {
			t.Errorf("mount %s while another mount runs: want exit 1 saying %q, got %v", dir, want, res)
		}
	}
	if res := r.run("mount", newMountpoint(t)); res.code != exitError || !strings.Contains(res.stderr, "unmount it first") {
		t.Errorf("a second mount of the repository: %v", res)
	}
}

// TestMountAsUser: a normal user mounts through fusermount3 (setuid root,
// Debian's fuse3) and unmounts cleanly.
func TestMountAsUser(t *testing.T) {
	fusetest.RequireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("the test switches to another user, which needs root; as a normal user every mount test above is this case")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 (Debian's fuse3) is not installed")
	}
	base, err := os.MkdirTemp("", "sf-user-mount-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := indextest.ExecutableCopy(t, base, "snapforge")
	home := filepath.Join(base, "home")
	src := filepath.Join(home, "src")
	indextest.WriteFile(t, filepath.Join(src, "note.txt"), []byte("mine\n"))
	if err := os.MkdirAll(filepath.Join(home, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := filepath.Walk(home, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
	o := cliOpts{exe: exe, cred: &syscall.Credential{Uid: 65534, Gid: 65534}, dir: home}
	repo, mnt := filepath.Join(home, "repo"), filepath.Join(home, "mnt")
	expectCode(t, runCLI(t, o, "--repo", repo, "init"), exitOK)
	expectCode(t, runCLI(t, o, "--repo", repo, "backup", src), exitOK)
	if res := runCLI(t, o, "--repo", repo, "mount", "--help"); res.code != exitOK {
		t.Fatalf("mount --help as a normal user: %v", res)
	}
	// fusermount3 opens /dev/fuse as the calling user: Debian makes it
	// crw-rw-rw-; some containers keep it private to root. Open it up for
	// this test (we are root) and put it back after.
	if fi, err := os.Stat("/dev/fuse"); err == nil && fi.Mode().Perm()&0o006 != 0o006 {
		old := fi.Mode().Perm()
		if err := os.Chmod("/dev/fuse", 0o666); err != nil {
			t.Skipf("normal users cannot use FUSE here (/dev/fuse is %v) and it cannot be opened up: %v", fi.Mode(), err)
		}
		t.Logf("/dev/fuse was %v; made it crw-rw-rw- (Debian's default) for this test", fi.Mode())
		t.Cleanup(func() { os.Chmod("/dev/fuse", old) })
	}
	if !fuseConfAllows(fuseConf, "user_allow_other") { // as Debian ships it
		// fusermount3 would refuse; the message named /dev/fuse
		// (acceptance run 3).
		res := runCLI(t, o, "--repo", repo, "mount", "--allow-other", mnt)
		if res.code != exitError || !strings.Contains(res.stderr, "--allow-other: a normal user may let others in only when /etc/fuse.conf has a line `user_allow_other`") || fusetest.Mounted(mnt) {
			t.Errorf("--allow-other without user_allow_other: %v", res)
		}
	}
	p := startMount(t, o, repo, mnt)
	// Without --allow-other a FUSE mount admits only the user who mounted
	// it (root included among the others): read as that user.
	cat := exec.Command("cat", filepath.Join(mnt, "latest", "note.txt"))
	cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if got, err := cat.Output(); err != nil || string(got) != "mine\n" {
		t.Errorf("latest/note.txt read by its owner = %q (%v)", got, err)
	}
	if !fusetest.Mounted(mnt) {
		t.Fatal("not in the mount table")
	}
	res := stopMount(t, p)
	if res.code != exitOK || fusetest.Mounted(mnt) {
		t.Errorf("unmount as a normal user: %v (still mounted: %v)", res, fusetest.Mounted(mnt))
	}
}

// TestAwaitServedDropsFirstSignal: after a lazy unmount the command waits
// for the last open file to be closed; the Ctrl-C that started the
// unmount, still queued when the wait loop left through ctx.Done, must not
// count as the second Ctrl-C that stops it at once.
func TestAwaitServedDropsFirstSignal(t *testing.T) {
	served := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	sigs <- syscall.SIGINT // the first Ctrl-C, seen through ctx.Done
	res := make(chan bool, 1)
	go func() { res <- awaitServed(served, sigs) }()
	select {
	case <-res:
		t.Fatal("the Ctrl-C that started the unmount ended the wait for open files")
	case <-time.After(200 * time.Millisecond):
	}
	sigs <- syscall.SIGINT // a second Ctrl-C stops it
	select {
	case interrupted := <-res:
		if !interrupted {
			t.Error("a second Ctrl-C was not reported as such")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second Ctrl-C did not end the wait")
	}
	sigs <- syscall.SIGINT // queued again; the last file then closes
	close(served)
	if awaitServed(served, sigs) {
		t.Error("the end of serving was reported as a Ctrl-C")
	}
}

// TestMountUnmountedOutside: `umount`/`fusermount3 -u` from outside ends
// the command, which says so and exits 0 (it used to keep waiting).
func TestMountUnmountedOutside(t *testing.T) {
	fusetest.RequireFUSE(t)
	r := newRepo(t)
	r.ok("backup", mountSource(t))
	mnt := newMountpoint(t)
	p := startMount(t, cliOpts{}, r.dir, mnt)
	var err error
	if os.Geteuid() == 0 {
		err = unix.Unmount(mnt, 0)
	} else {
		err = exec.Command("fusermount3", "-u", mnt).Run()
	}
	if err != nil {
		t.Fatalf("unmount from outside: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the mount command still runs 15 s after its file system was unmounted from outside")
	}
	if res := p.wait(t); res.code != exitOK || !strings.Contains(res.stderr, "was unmounted") {
		t.Errorf("unmounted from outside: %v", res)
	}
}

// TestMountWaitsForHolder: a mount started while a command that ends by
// itself holds the repository (a backup from cron, a verify) waits for it,
// saying so, and mounts once it is done, instead of failing.
func TestMountWaitsForHolder(t *testing.T) {
	fusetest.RequireFUSE(t)
	r := newRepo(t)
	r.ok("backup", mountSource(t))
	_, release := startHolder(t, r.dir)

	mnt := newMountpoint(t)
	p := startCLI(t, cliOpts{}, "--repo", r.dir, "mount", mnt)
	cleanupMount(t, p, mnt)
	time.Sleep(time.Second)
	if p.exited() || fusetest.Mounted(mnt) {
		t.Fatalf("while the repository was held the mount did not wait (exited %v, mounted %v): %v", p.exited(), fusetest.Mounted(mnt), func() any {
			if p.exited() {
				return p.wait(t)
			}
			return ""
		}())
	}
	release()
	deadline := time.Now().Add(30 * time.Second)
	for !fusetest.Mounted(mnt) {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("the mount did not come up once the holder was gone")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "latest", "config.json")); err != nil || string(b) != `{"v":1}`+"\n" {
		t.Errorf("latest/config.json = %q (%v)", b, err)
	}
	res := stopMount(t, p)
	if res.code != exitOK || !strings.Contains(res.stderr, "(snapforge test-hold)") || !strings.Contains(res.stderr, "waiting for it to finish") {
		t.Errorf("mount after waiting: %v, want it to have said whom it waited for", res)
	}
}

// TestFuseConfAllows reads /etc/fuse.conf as fusermount3 does: only an
// uncommented line counts.
func TestFuseConfAllows(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		conf string
		want bool
	}{
		{"# mount_max = 1000\n#user_allow_other\n", false}, // Debian's
		{"# user_allow_other\n", false},
		{"mount_max = 10\nuser_allow_other\n", true},
		{"  user_allow_other  \n", true},
		{"user_allow_others\n", false},
		{"user_allow_other # for the family's shared backups\n", true},
		{"", false},
	} {
		p := filepath.Join(dir, "fuse.conf")
		if err := os.WriteFile(p, []byte(c.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := fuseConfAllows(p, "user_allow_other"); got != c.want {
			t.Errorf("%q: %v, want %v", c.conf, got, c.want)
		}
	}
	if fuseConfAllows(filepath.Join(dir, "missing"), "user_allow_other") {
		t.Error("a missing file allows")
	}
}
