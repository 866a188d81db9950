package restore

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"snapforge/snapshot"
)

// Scope is what an in-place restore covers: units of the profile, include
// patterns, or the whole root. Inside the scope the live tree ends up equal
// to the snapshot; outside it nothing is touched.
type Scope struct {
	Name  string   `json:"name"`  // "full", or the units and patterns as given
	Units []string `json:"units"` // unit names
	Paths []string `json:"paths"` // the units' paths, relative to the root
	// UnitPaths are Paths by unit, for the safety snapshot's manifest.
	UnitPaths map[string][]string `json:"-"`
	Include   []string            `json:"include"` // patterns (** spans directories)
	Whole     bool                `json:"whole"`   // the whole root
	Exclude   []string            `json:"exclude"` // the profile's excludes: never touched
	SQLite    []string            `json:"sqlite"`  // paths of units marked sqlite
	Config    []string            `json:"config"`  // paths of the config unit: its JSON files must parse
}

// ResolveScope turns --scope names (units, "config", "db", "full"; comma
// lists allowed) and --include patterns into a Scope for snapshot m. No
// names and no patterns mean full. Full covers the units the snapshot holds
// except guarded ones, which are restored only when named; without a
// profile (or for a snapshot of a whole directory) it is the whole root.
func ResolveScope(prof *snapshot.Profile, m *snapshot.Manifest, names, include []string) (Scope, []Problem, error) {
	var s Scope
	var warns []Problem
	var units []string
	full := false
	for _, n := range names {
		for _, u := range strings.Split(n, ",") {
			switch u = strings.TrimSpace(u); u {
			case "":
			case "full":
				full = true
			default:
				units = append(units, u)
			}
		}
	}
	if len(units) == 0 && len(include) == 0 {
		full = true
	}
	s.Include = append([]string{}, include...)
	holds := map[string]bool{}
	whole := len(m.Includes) == 0
	for _, u := range m.Includes {
		holds[u] = true
		if u == "." {
			whole = true
		}
	}
	if prof != nil {
		s.Exclude = append([]string{}, prof.Exclude...)
	}
	if len(units) > 0 && prof == nil {
		return s, nil, fmt.Errorf("scope %s names units, but the repository has no profile; use --include PATTERN or --scope full", strings.Join(units, ","))
	}
	named := map[string]bool{}
	for _, u := range units {
		if _, ok := prof.Units[u]; !ok {
			return s, nil, fmt.Errorf("unknown unit %q in --scope (the profile has: %s)", u, strings.Join(prof.UnitNames(), ", "))
		}
		if !whole && !holds[u] {
			return s, nil, fmt.Errorf("snapshot %s does not hold unit %s (it holds: %s)", m.BackupID, u, strings.Join(m.Includes, ", "))
		}
		named[u] = true
	}
	if full {
		if prof == nil || whole {
			s.Whole = true
		} else {
			for _, u := range m.Includes {
				unit, ok := prof.Units[u]
				if !ok {
					warns = append(warns, Problem{Problem: "the snapshot holds unit " + u + ", which the profile no longer defines; it is not restored"})
					continue
				}
				if unit.Guarded && !named[u] {
					warns = append(warns, Problem{Problem: "guarded unit " + u + " is not restored unless named (--scope full," + u + ")"})
					continue
				}
				named[u] = true
			}
		}
	}
	for u := range named {
		s.Units = append(s.Units, u)
	}
	sort.Strings(s.Units)
	if prof != nil {
		for _, u := range s.Units {
			unit := prof.Units[u]
			// The unit's paths as the snapshot took them, when it recorded
			// them: a unit grown in profile.json since would otherwise put
			// live files the snapshot never covered in scope, and an
			// in-place restore removes what is in scope and not in the
			// snapshot.
			paths := unit.Paths
			if rec, ok := m.UnitPaths[u]; ok {
				paths = rec
			}
			if s.UnitPaths == nil {
				s.UnitPaths = map[string][]string{}
			}
			s.UnitPaths[u] = slices.Clone(paths)
			for _, p := range paths {
				p = strings.Trim(path.Clean("/"+filepath.ToSlash(p)), "/")
				s.Paths = append(s.Paths, p)
				if unit.SQLite {
					s.SQLite = append(s.SQLite, p)
				}
				if u == "config" {
					s.Config = append(s.Config, p)
				}
			}
		}
	}
	switch {
	case s.Whole:
		s.Name = "full"
	default:
		parts := append([]string{}, s.Units...)
		if full {
			parts = []string{"full"}
		}
		for _, i := range include {
			parts = append(parts, "include:"+i)
		}
		s.Name = strings.Join(parts, ",")
	}
	if s.Units == nil {
		s.Units = []string{}
	}
	if s.Paths == nil {
		s.Paths = []string{}
	}
	if s.Exclude == nil {
		s.Exclude = []string{}
	}
	if s.SQLite == nil {
		s.SQLite = []string{}
	}
	if s.Config == nil {
		s.Config = []string{}
	}
	return s, warns, nil
}

func (s Scope) patterns() []string {
	out := make([]string, 0, len(s.Paths)+len(s.Include))
	for _, p := range s.Paths {
		out = append(out, "/"+p)
	}
	return append(out, s.Include...)
}

// contains reports whether rel (or an ancestor) is in the scope.
func (s Scope) contains(rel string) bool {
	if s.Whole {
		return true
	}
	pats := s.patterns()
	return len(pats) > 0 && snapshot.Included(pats, rel)
}

// below reports whether the scope may hold something inside directory rel.
func (s Scope) below(rel string) bool {
	if s.Whole {
		return true
	}
	pats := s.patterns()
	return len(pats) > 0 && snapshot.IncludedBelow(pats, rel)
}

// excluded reports whether the profile's excludes leave rel out.
func (s Scope) excluded(rel string) bool {
	for _, ex := range s.Exclude {
		if snapshot.MatchGlob(ex, rel) {
			return true
		}
	}
	return false
}

// isConfig reports whether rel lies in the config unit.
func (s Scope) isConfig(rel string) bool { return within(s.Config, rel) }

// isSQLite reports whether rel lies in a unit marked sqlite.
func (s Scope) isSQLite(rel string) bool { return within(s.SQLite, rel) }

func within(paths []string, rel string) bool {
	for _, p := range paths {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// Options configure an in-place restore. Target and Scope are required in
// effect; the zero value of the rest is ready to use.
type Options struct {
	// Target is the live root. Default: the snapshot's source root.
	Target    string
	Scope     Scope
	KeepExtra bool // keep live entries of the scope that the snapshot lacks
	// NoSmoke skips the smoke test after the start hook (the profile's
	// command, database and JSON checks); the check that the swapped scope
	// equals the snapshot still runs. For undoing with a safety snapshot of
	// a state that failed them.
	NoSmoke bool
	// Special restores device nodes and setuid/setgid bits (as root only).
	Special bool
	Hooks   *snapshot.Hooks // the profile's; nil: none
	// Name prefixes the safety snapshot's id; default "safety".
	Name string
	// Location is the time zone of the safety snapshot id's date and time
	// (snapshot.BackupOptions.Location): the caller's, which a command run
	// through the repository's owner process brings with it. nil: local.
	Location *time.Location
	Live     *snapshot.Live // nil: not reported
	// Log receives stage messages and hook output; nil: discarded.
	Log io.Writer
	// Hook is called at named crash points (tests SIGKILL there). nil: none.
	Hook func(point string)
	// Fault injects an error at named points (tests). nil: none.
	Fault func(point string) error
}

func (o Options) withDefaults(r *snapshot.Repo, m *snapshot.Manifest) (Options, error) {
	if o.Target == "" {
		o.Target = m.Source.Root
	}
	if o.Target == "" {
		return o, fmt.Errorf("restore: snapshot %s names no source root; give the live root with --target DIR", m.BackupID)
	}
	t, err := filepath.Abs(o.Target)
	if err != nil {
		return o, err
	}
	o.Target = filepath.Clean(t)
	if o.Name == "" {
		o.Name = "safety"
	}
	if o.Live == nil {
		o.Live = &snapshot.Live{}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Hook == nil {
		o.Hook = func(string) {}
	}
	if o.Fault == nil {
		o.Fault = func(string) error { return nil }
	}
	if o.Scope.Name == "" && !o.Scope.Whole && len(o.Scope.Paths) == 0 && len(o.Scope.Include) == 0 {
		o.Scope.Whole, o.Scope.Name = true, "full"
	}
	return o, nil
}

// modeOf returns the permission bits a restore gives node n: setuid and
// setgid only with Special as root (FAULTS E15).
func (o Options) modeOf(n *snapshot.Node) uint32 {
	m := n.Mode & 0o7777
	if m&0o6000 != 0 && n.Type != snapshot.TypeDir && !o.special() {
		m &^= 0o6000
	}
	return m
}

// special reports whether device nodes and setuid/setgid bits are restored.
func (o Options) special() bool { return o.Special && os.Geteuid() == 0 }

// hookTimeoutS is the profile's hook timeout, 60 s by default.
func (o Options) hookTimeoutS() int {
	if o.Hooks != nil && o.Hooks.TimeoutS > 0 {
		return o.Hooks.TimeoutS
	}
	return 60
}

// checkTarget refuses live roots that no restore may write: the
// filesystem root, kernel filesystems, the repository or anything inside
// it, and a FUSE mount (ours, or anyone's) (FAULTS E7).
func checkTarget(target, repo string) error {
	if err := checkTargetPath(target, repo); err != nil {
		return err
	}
	// The same for where the path leads: a symlink to / or into the
	// repository is refused like the path itself.
	real, err := filepath.EvalSymlinks(target)
	if err != nil {
		return nil // absent: opening it says so
	}
	if realRepo, err := filepath.EvalSymlinks(repo); err == nil {
		repo = realRepo
	}
	if err := checkTargetPath(real, repo); err != nil {
		return fmt.Errorf("%w (%s leads to %s)", err, target, real)
	}
	var st, rst unix.Stat_t
	if unix.Stat(real, &st) == nil && unix.Stat("/", &rst) == nil && st.Dev == rst.Dev && st.Ino == rst.Ino {
		return fmt.Errorf("restore: refusing to restore in place into / (%s); give the application's root", target)
	}
	return nil
}

func checkTargetPath(target, repo string) error {
	if target == "/" {
		return fmt.Errorf("restore: refusing to restore in place into /; give the application's root")
	}
	for _, p := range []string{"/proc", "/sys", "/dev", "/run"} {
		if target == p || strings.HasPrefix(target, p+"/") {
			return fmt.Errorf("restore: refusing to restore into %s (a kernel or runtime filesystem)", target)
		}
	}
	if repoAbs, err := filepath.Abs(repo); err == nil && (target == repoAbs || strings.HasPrefix(target, repoAbs+"/")) {
		return fmt.Errorf("restore: target %s is inside the repository %s; choose the application's root", target, repoAbs)
	}
	var sfs unix.Statfs_t
	if unix.Statfs(target, &sfs) == nil {
		switch sfs.Type {
		case fuseSuperMagic:
			return fmt.Errorf("restore: target %s is on a FUSE mount (a snapshot folder is read-only); give the application's root", target)
		case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.DEVPTS_SUPER_MAGIC, unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC, unix.DEBUGFS_MAGIC, unix.SECURITYFS_MAGIC:
			return fmt.Errorf("restore: refusing to restore into %s (a kernel filesystem)", target)
		}
	}
	return nil
}
