package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"

	"snapforge/index"
	"snapforge/snapshot"
)

var _ snapshot.Index = (*index.DB)(nil)

func (a *app) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func (a *app) options(command string) snapshot.Options {
	log := a.logger()
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return snapshot.Options{
		OpenIndex: func(dir string, create bool) (snapshot.Index, error) {
			if create {
				return index.Create(dir, index.Options{Logger: log})
			}
			return index.Open(dir, index.Options{Logger: log})
		},
		Logger:  log,
		Actor:   fmt.Sprintf("%s pid %d", cliActor(name), os.Getpid()),
		Command: "snapforge " + command,
		Hook:    crashHook(),
	}
}

// cliActor names a user of the CLI in the audit trail: "cli:USER@HOST"
// (either part left out when unknown).
func cliActor(user string) string {
	actor := "cli"
	if user != "" {
		actor += ":" + user
	}
	if h, err := os.Hostname(); err == nil {
		actor += "@" + h
	}
	return actor
}

// crashHook kills the process at the crash point named by
// $SNAPFORGE_CRASHPOINT (tests of FAULTS B1). Unset: no effect.
func crashHook() func(string) {
	point := os.Getenv("SNAPFORGE_CRASHPOINT")
	if point == "" {
		return nil
	}
	return func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

func (a *app) repoPath() (string, error) {
	if a.repo == "" {
		return "", &usageError{"no repository: pass --repo DIR or set SNAPFORGE_REPO"}
	}
	return a.repo, nil
}

// open opens the repository for command; in the owner process it lends the
// owner's open repository instead (the caller's Close releases the share).
func (a *app) open(ctx context.Context, command string) (*snapshot.Repo, error) {
	if a.shared != nil {
		// The owner opened the repository long ago: its audit trail is
		// checked again, as an open here would check it now.
		r := a.shared.Share()
		if err := r.CheckAudit(); err != nil {
			r.Close()
			return nil, err
		}
		return r, nil
	}
	p, err := a.repoPath()
	if err != nil {
		return nil, err
	}
	r, err := snapshot.Open(ctx, p, a.options(command))
	if err != nil {
		return nil, err
	}
	if err := a.recoverRestores(ctx, r); err != nil {
		if command == "backup" || command == "restore" {
			r.Close()
			return nil, err
		}
		fmt.Fprintf(a.stderr, "snapforge: %v\n", err)
	}
	return r, nil
}

// abs resolves a path argument against the working directory of the user
// who typed it (a.cwd): in the owner process that is the client's, not ours.
func (a *app) abs(p string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	if a.cwd == "" {
		return "", fmt.Errorf("cannot resolve the relative path %q: the working directory is unknown; pass an absolute path", p)
	}
	return filepath.Join(a.cwd, p), nil
}

// loadProfile reads <repo>/profile.json; absent: nil. It is marked
// untrusted (Profile.Untrusted) when the file fails snapshot.CheckHookFile,
// judged on the descriptor the bytes were read from: a backup of its units
// and an in-place restore refuse it (browsing its units does not).
func loadProfile(repo string) (*snapshot.Profile, error) {
	name := filepath.Join(repo, "profile.json")
	b, fi, err := snapshot.ReadFileInfo(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	p, err := snapshot.ParseProfile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := snapshot.CheckHookFile(name, fi); err != nil {
		p.Untrusted = err.Error()
	}
	return p, nil
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func isIntegrity(err error) bool {
	var rf *snapshot.RestoreFailedError
	return snapshot.IsIntegrity(err) || errors.As(err, &rf)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// shellQuote quotes s for a copy-pasted shell command.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '_' || r == '.' || r == ':' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
