package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// A tool is one backup program bound to one repository and one source
// directory. Methods that return a command only build it; the runner times
// it. The source path stays the same for all three backups.
type tool interface {
	// Init creates the repository. It is not timed.
	Init(ctx context.Context) error
	// Backup returns the command for the n-th backup (1 initial, 2 no
	// change, 3 after the mutation).
	Backup(ctx context.Context, n int) (*exec.Cmd, error)
	// Restore returns the command restoring the newest snapshot into the
	// existing empty directory target, and where the source root lands.
	Restore(ctx context.Context, target string) (cmd *exec.Cmd, root string, err error)
	// RestoreFile restores only rel (slash-separated, relative to the source
	// root) into target, and says where the file lands.
	RestoreFile(ctx context.Context, rel, target string) (cmd *exec.Cmd, path string, err error)
	// Verify returns the command that reads and checks all stored data.
	Verify(ctx context.Context) (*exec.Cmd, error)
	// WarningExit reports whether an exit code means "done, with warnings".
	WarningExit(code int) bool
}

// toolSpec is a tool before it is bound to a repository.
type toolSpec struct {
	name      string
	snapforge bool     // a snapforge variant: the numerators of the ratios
	version   string   // what the binary says, one line
	settings  string   // how it is configured, for the notes
	sqlite    []string // files restored from SQLite read snapshots: compared by rows
	bind      func(toolPaths) tool
}

// toolPaths are one binding's locations, all under the work directory.
type toolPaths struct {
	repo string    // the repository, created by Init
	src  string    // the absolute source root
	home string    // the tool's private state: caches, config
	log  io.Writer // every command's output
}

// defaultTools are run when --tools is not given; kopia joins when on PATH.
var defaultTools = []string{"snapforge", "snapforge-sqlite", "restic", "borg"}

// resolveTools checks that every named tool can run and describes it.
func resolveTools(ctx context.Context, names []string, snapforgeBin, borgEncryption string) ([]toolSpec, error) {
	if len(names) == 0 {
		names = defaultTools
		if _, err := exec.LookPath("kopia"); err == nil {
			names = append(names, "kopia")
		}
	}
	var specs []toolSpec
	for _, name := range names {
		var s toolSpec
		var bin string
		var versionArgs []string
		switch name {
		case "snapforge", "snapforge-sqlite":
			profile := name == "snapforge-sqlite"
			bin = snapforgeBin
			s = toolSpec{name: name, snapforge: true,
				settings: "unencrypted (the only mode in this version); `backup PATH`, no profile: the database is a plain file",
				bind: func(p toolPaths) tool {
					return &snapforgeTool{cli: cli{bin: bin, log: p.log}, p: p, profile: profile}
				}}
			if profile {
				s.settings = "unencrypted; profile.json with data/app.db in a `sqlite` unit (one read snapshot, page by page, + integrity_check), every other top-level directory a default unit; `backup` without PATH"
				s.sqlite = []string{dbPath}
			}
		case "restic":
			bin, versionArgs = "restic", []string{"version"}
			s = toolSpec{name: name,
				settings: "encrypted (mandatory; RESTIC_PASSWORD set), repository version \"stable\", default compression, cache in WORK/home",
				bind: func(p toolPaths) tool {
					return &resticTool{cli: cli{bin: bin, log: p.log, env: []string{
						"RESTIC_PASSWORD=sfbench", "RESTIC_CACHE_DIR=" + filepath.Join(p.home, "cache")}}, p: p}
				}}
		case "borg":
			bin, versionArgs = "borg", []string{"--version"}
			s = toolSpec{name: name,
				settings: fmt.Sprintf("`borg init -e %s` (BORG_PASSPHRASE set), default lz4 compression, cache in WORK/home", borgEncryption),
				bind: func(p toolPaths) tool {
					return &borgTool{cli: cli{bin: bin, log: p.log, env: []string{
						"BORG_PASSPHRASE=sfbench", "BORG_BASE_DIR=" + p.home,
						"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes"}},
						p: p, encryption: borgEncryption}
				}}
		case "kopia":
			bin, versionArgs = "kopia", []string{"--version"}
			s = toolSpec{name: name,
				settings: "filesystem repository, encrypted (mandatory; KOPIA_PASSWORD set), default settings (no compression), cache in WORK/home",
				bind: func(p toolPaths) tool {
					return &kopiaTool{cli: cli{bin: bin, log: p.log, env: []string{
						"KOPIA_PASSWORD=sfbench", "KOPIA_CHECK_FOR_UPDATES=false",
						"KOPIA_CONFIG_PATH=" + filepath.Join(p.home, "repository.config"),
						"KOPIA_CACHE_DIRECTORY=" + filepath.Join(p.home, "cache"),
						"KOPIA_LOG_DIR=" + filepath.Join(p.home, "logs")}}, p: p}
				}}
		default:
			return nil, &usageError{fmt.Sprintf("unknown tool %q (known: snapforge, snapforge-sqlite, restic, borg, kopia)", name)}
		}
		path, err := exec.LookPath(bin)
		if err != nil {
			return nil, fmt.Errorf("tool %s: %w", name, err)
		}
		s.version = path
		if versionArgs != nil {
			out, err := exec.CommandContext(ctx, path, versionArgs...).Output()
			if err != nil {
				return nil, fmt.Errorf("tool %s: %s %s: %w", name, path, strings.Join(versionArgs, " "), err)
			}
			s.version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
		}
		if s.snapforge {
			// Its version and what it compresses with (a build without
			// cgo compresses with the slower pure-Go encoder). A binary
			// too old to answer is named by its path alone.
			if out, err := exec.CommandContext(ctx, path, "version").Output(); err == nil {
				s.version = path + ": " + strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; ")
			}
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// cli runs one binary with extra environment, its output going to log.
type cli struct {
	bin string
	env []string
	log io.Writer
}

// cmd builds a command and writes its command line to the log.
func (c cli) cmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = c.log, c.log
	fmt.Fprintf(c.log, "\n$ %s %s\n", c.bin, strings.Join(args, " "))
	return cmd
}

// run runs an untimed command.
func (c cli) run(ctx context.Context, args ...string) error {
	if err := c.cmd(ctx, "", args...).Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(c.bin), strings.Join(args, " "), err)
	}
	return nil
}

// output runs an untimed command and returns its standard output.
func (c cli) output(ctx context.Context, args ...string) ([]byte, error) {
	cmd := c.cmd(ctx, "", args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", filepath.Base(c.bin), strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

// snapforgeTool backs up the source as PATH, or through a profile that marks
// the database as SQLite.
type snapforgeTool struct {
	cli
	p       toolPaths
	profile bool
}

func (t *snapforgeTool) Init(ctx context.Context) error {
	if err := t.run(ctx, "--repo", t.p.repo, "init"); err != nil {
		return err
	}
	if !t.profile {
		return nil
	}
	units := map[string]any{"db": map[string]any{"paths": []string{dbPath}, "sqlite": true}}
	for _, d := range []string{"config", "logs", "models", "keys", "src"} {
		units[d] = map[string]any{"paths": []string{d + "/"}}
	}
	b, err := json.MarshalIndent(map[string]any{"name": "sfbench", "root": t.p.src, "units": units}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(t.p.repo, "profile.json"), append(b, '\n'), 0o600)
}

func (t *snapforgeTool) Backup(ctx context.Context, n int) (*exec.Cmd, error) {
	if t.profile {
		return t.cmd(ctx, "", "--repo", t.p.repo, "backup"), nil
	}
	return t.cmd(ctx, "", "--repo", t.p.repo, "backup", t.p.src), nil
}

func (t *snapforgeTool) Restore(ctx context.Context, target string) (*exec.Cmd, string, error) {
	return t.cmd(ctx, "", "--repo", t.p.repo, "restore", "latest", "--target", target), target, nil
}

func (t *snapforgeTool) RestoreFile(ctx context.Context, rel, target string) (*exec.Cmd, string, error) {
	return t.cmd(ctx, "", "--repo", t.p.repo, "restore", "latest", "--target", target, "--include", rel),
		filepath.Join(target, rel), nil
}

func (t *snapforgeTool) Verify(ctx context.Context) (*exec.Cmd, error) {
	return t.cmd(ctx, "", "--repo", t.p.repo, "verify", "--read-data"), nil
}

func (t *snapforgeTool) WarningExit(int) bool { return false } // 4 means files were skipped

// resticTool stores the absolute source path; restores recreate it under
// the target.
type resticTool struct {
	cli
	p toolPaths
}

func (t *resticTool) Init(ctx context.Context) error { return t.run(ctx, "-r", t.p.repo, "init") }

func (t *resticTool) Backup(ctx context.Context, n int) (*exec.Cmd, error) {
	return t.cmd(ctx, "", "-r", t.p.repo, "backup", t.p.src), nil // the parent is found by path
}

func (t *resticTool) Restore(ctx context.Context, target string) (*exec.Cmd, string, error) {
	return t.cmd(ctx, "", "-r", t.p.repo, "restore", "latest", "--target", target), filepath.Join(target, t.p.src), nil
}

func (t *resticTool) RestoreFile(ctx context.Context, rel, target string) (*exec.Cmd, string, error) {
	p := filepath.Join(t.p.src, rel)
	return t.cmd(ctx, "", "-r", t.p.repo, "restore", "latest", "--target", target, "--include", p), filepath.Join(target, p), nil
}

func (t *resticTool) Verify(ctx context.Context) (*exec.Cmd, error) {
	return t.cmd(ctx, "", "-r", t.p.repo, "check", "--read-data"), nil
}

func (t *resticTool) WarningExit(int) bool { return false }

// borgTool names archives b1, b2, b3; extract writes into its working
// directory, recreating the source path without its leading slash.
type borgTool struct {
	cli
	p          toolPaths
	encryption string
	last       string // the newest archive
}

func (t *borgTool) Init(ctx context.Context) error {
	return t.run(ctx, "init", "-e", t.encryption, t.p.repo)
}

func (t *borgTool) Backup(ctx context.Context, n int) (*exec.Cmd, error) {
	t.last = fmt.Sprintf("%s::b%d", t.p.repo, n)
	return t.cmd(ctx, "", "create", t.last, t.p.src), nil
}

func (t *borgTool) Restore(ctx context.Context, target string) (*exec.Cmd, string, error) {
	return t.cmd(ctx, target, "extract", t.last), filepath.Join(target, t.p.src), nil
}

func (t *borgTool) RestoreFile(ctx context.Context, rel, target string) (*exec.Cmd, string, error) {
	p := strings.TrimPrefix(filepath.Join(t.p.src, rel), "/")
	return t.cmd(ctx, target, "extract", t.last, p), filepath.Join(target, p), nil
}

func (t *borgTool) Verify(ctx context.Context) (*exec.Cmd, error) {
	return t.cmd(ctx, "", "check", "--verify-data", t.p.repo), nil
}

// WarningExit: borg exits 1 for "completed with warnings".
func (t *borgTool) WarningExit(code int) bool { return code == 1 }

// kopiaTool keeps its connection config in home. Restores name a snapshot
// by id, looked up (untimed) before the command is built.
type kopiaTool struct {
	cli
	p toolPaths
}

func (t *kopiaTool) Init(ctx context.Context) error {
	return t.run(ctx, "repository", "create", "filesystem", "--path", t.p.repo)
}

func (t *kopiaTool) Backup(ctx context.Context, n int) (*exec.Cmd, error) {
	return t.cmd(ctx, "", "snapshot", "create", t.p.src), nil
}

func (t *kopiaTool) latest(ctx context.Context) (string, error) {
	out, err := t.output(ctx, "snapshot", "list", t.p.src, "--json")
	if err != nil {
		return "", err
	}
	var snaps []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &snaps); err != nil {
		return "", fmt.Errorf("kopia snapshot list: %w", err)
	}
	if len(snaps) == 0 {
		return "", fmt.Errorf("kopia snapshot list %s: no snapshots", t.p.src)
	}
	return snaps[len(snaps)-1].ID, nil
}

func (t *kopiaTool) Restore(ctx context.Context, target string) (*exec.Cmd, string, error) {
	id, err := t.latest(ctx)
	if err != nil {
		return nil, "", err
	}
	return t.cmd(ctx, "", "snapshot", "restore", id, target), target, nil
}

func (t *kopiaTool) RestoreFile(ctx context.Context, rel, target string) (*exec.Cmd, string, error) {
	id, err := t.latest(ctx)
	if err != nil {
		return nil, "", err
	}
	p := filepath.Join(target, filepath.Base(rel))
	return t.cmd(ctx, "", "restore", id+"/"+rel, p), p, nil
}

func (t *kopiaTool) Verify(ctx context.Context) (*exec.Cmd, error) {
	return t.cmd(ctx, "", "snapshot", "verify", "--verify-files-percent=100"), nil
}

func (t *kopiaTool) WarningExit(int) bool { return false }
