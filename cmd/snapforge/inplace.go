package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"snapforge/restore"
	"snapforge/snapshot"
)

type inPlaceFlags struct {
	target             string
	scopes, includes   []string
	keepExtra, special bool
	dry, noSmoke       bool
}

// restoreInPlace runs `restore SNAP --in-place`: the recovery plan (printed
// with --dry-run), then package restore's protocol.
func (a *app) restoreInPlace(ctx context.Context, r *snapshot.Repo, m *snapshot.Manifest, prof *snapshot.Profile, f inPlaceFlags) error {
	scope, warns, err := restore.ResolveScope(prof, m, f.scopes, f.includes)
	if err != nil {
		return &usageError{err.Error()}
	}
	o := restore.Options{Target: f.target, Scope: scope, KeepExtra: f.keepExtra, Special: f.special, NoSmoke: f.noSmoke, Log: a.stderr, Hook: crashHook(), Fault: faultHook(),
		Location: a.loc}
	if prof != nil {
		if prof.Untrusted != "" {
			// Refused before anything is planned or changed: the profile
			// names the hooks that run and the root that is overwritten,
			// and an in-place restore without its hooks would swap files
			// under a running application.
			return fmt.Errorf("restore --in-place: the profile may not be used: %s", prof.Untrusted)
		}
		o.Hooks = prof.Hooks
		if o.Target == "" {
			o.Target = prof.Root
		}
		o.Name = prof.Name + "-safety"
	}
	if o.Target != "" {
		if err := a.clientSees(o.Target); err != nil {
			return err
		}
	}
	if f.dry {
		plan, err := restore.NewPlan(ctx, r, m, o)
		if err != nil {
			return err
		}
		plan.Warnings = append(append([]restore.Problem{}, warns...), plan.Warnings...)
		if a.json {
			a.printJSON(plan)
		} else {
			a.printPlan(plan)
		}
		return plan.Err()
	}
	live := &snapshot.Live{}
	o.Live = live
	stop := a.showProgress(live)
	res, err := restore.Run(ctx, r, m, o)
	stop()
	if res != nil && res.Plan != nil {
		res.Warnings = append(append([]restore.Problem{}, warns...), res.Warnings...)
	}
	if a.json && res != nil {
		a.printJSON(res)
	} else if res != nil && res.Plan != nil {
		if pe := new(restore.PlanError); errors.As(err, &pe) {
			a.printPlan(res.Plan)
		}
		a.printInPlace(res, err)
	}
	return err
}

func (a *app) printPlan(p *restore.Plan) {
	w := a.stdout
	fmt.Fprintf(w, "recovery plan: snapshot %s (%s) into %s, scope %s\n", p.BackupID, p.SnapshotCreated, p.Target, p.Scope.Name)
	for _, ac := range p.Actions {
		size := ""
		if ac.Op == "create" || ac.Op == "replace" {
			size = humanBytes(ac.Size)
		}
		fmt.Fprintf(w, "  %-8s %-8s %10s  %s  (%s)\n", ac.Op, ac.Type, size, snapshot.Shown(ac.Path, ac.PathB64), ac.Reason)
	}
	s := p.Summary
	fmt.Fprintf(w, "%d to create, %d to replace, %d to remove, %d to update, %d unchanged; %s to stage\n", s.Create, s.Replace, s.Remove, s.Update, s.Unchanged, humanBytes(s.Bytes))
	if h := p.Hooks; h != nil {
		fmt.Fprintf(w, "hooks: stop %q, start %q, smoke %q\n", h.Stop, h.Start, h.Smoke)
	} else {
		fmt.Fprintln(w, "hooks: none in the profile")
	}
	fmt.Fprintf(w, "checks: %d (BLAKE3 of the scope", len(p.Checks))
	for _, c := range p.Checks {
		switch c.Kind {
		case "sqlite_integrity":
			fmt.Fprintf(w, ", integrity_check of %s", c.Path)
		case "json":
			fmt.Fprintf(w, ", JSON of %s", c.Path)
		case "command":
			fmt.Fprintf(w, ", smoke command")
		}
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "space: %s needed, %s free\n", humanBytes(p.Space.NeededBytes), humanBytes(p.Space.FreeBytes))
	for _, x := range p.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", problemText(x))
	}
	for _, x := range p.Errors {
		fmt.Fprintf(w, "  ERROR: %s\n", problemText(x))
	}
}

func problemText(p restore.Problem) string {
	if p.Path == "" {
		return p.Problem
	}
	return p.Path + ": " + p.Problem
}

func (a *app) printInPlace(res *restore.Result, err error) {
	w := a.stdout
	for _, st := range res.Stages {
		fmt.Fprintf(w, "  %-16s %-7s %6d ms  %s\n", st.Name, st.Outcome, st.DurationMS, st.Detail)
	}
	for _, x := range res.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", problemText(x))
	}
	if err != nil {
		return // exitCode prints the error
	}
	if res.Plan != nil && len(res.Plan.Actions) == 0 {
		fmt.Fprintf(w, "%s already equals snapshot %s in scope %s; nothing changed\n", res.Target, res.BackupID, res.Scope)
		return
	}
	s := res.Plan.Summary
	fmt.Fprintf(w, "restored %s in place into %s (scope %s): %d created, %d replaced, %d removed, %d updated, %d unchanged; safety snapshot %s\n",
		res.BackupID, res.Target, res.Scope, s.Create, s.Replace, s.Remove, s.Update, s.Unchanged, strings.Join(res.Safety, ", "))
}

// faultHook injects an EIO at the point named by $SNAPFORGE_FAULT (tests
// of FAULTS E13, E14 through the CLI). Unset: no effect.
func faultHook() func(string) error {
	point := os.Getenv("SNAPFORGE_FAULT")
	if point == "" {
		return nil
	}
	return func(p string) error {
		if p == point {
			return fmt.Errorf("injected fault at %s: %w", p, syscall.EIO)
		}
		return nil
	}
}

// recoverRestores finishes restores that a kill or a failed rollback left
// unfinished (FAULTS B3, E14). It runs whenever a command opens the
// repository; what it did is said on stderr.
func (a *app) recoverRestores(ctx context.Context, r *snapshot.Repo) error {
	recs, err := restore.Recover(ctx, r, restore.Options{Log: a.stderr, Hook: crashHook(), Fault: faultHook()})
	for _, rc := range recs {
		fmt.Fprintf(a.stderr, "snapforge: an unfinished in-place restore (%s of snapshot %s into %s) was %s (%d steps undone)\n", rc.RestoreID, rc.BackupID, rc.Target, rc.Outcome, rc.Steps)
	}
	return err
}
