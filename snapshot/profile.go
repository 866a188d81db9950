package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// Profile describes the live system (docs/schemas/profile.schema.json).
type Profile struct {
	Name      string          `json:"name"`
	Root      string          `json:"root"`
	Units     map[string]Unit `json:"units"`
	Exclude   []string        `json:"exclude,omitempty"`
	Hooks     *Hooks          `json:"hooks,omitempty"`
	Schedule  json.RawMessage `json:"schedule,omitempty"`
	Retention json.RawMessage `json:"retention,omitempty"`
	Policies  json.RawMessage `json:"policies,omitempty"`

	// Untrusted, when not empty, says why the file the profile was read
	// from may not steer what snapforge does (it fails CheckHookFile): its
	// root and units choose what a backup reads and what an in-place
	// restore overwrites, its hooks what runs. Set by whoever read it.
	Untrusted string `json:"-"`
}

// Unit is a named part of the live system.
type Unit struct {
	Paths   []string `json:"paths"`
	SQLite  bool     `json:"sqlite,omitempty"`
	Default *bool    `json:"default,omitempty"` // nil: true
	Guarded bool     `json:"guarded,omitempty"`
}

// Hooks are service commands run around in-place restores.
type Hooks struct {
	Stop     string `json:"stop,omitempty"`
	Start    string `json:"start,omitempty"`
	Smoke    string `json:"smoke,omitempty"`
	TimeoutS int    `json:"timeout_s,omitempty"`
}

var unitNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// ParseProfile decodes and checks a profile.
func ParseProfile(b []byte) (*Profile, error) {
	var p Profile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if p.Root == "" || !path.IsAbs(p.Root) {
		return nil, fmt.Errorf("profile: root %q must be an absolute path", p.Root)
	}
	if !backupIDRe.MatchString(p.Name) {
		return nil, fmt.Errorf("profile: name %q is required and may hold only letters, digits, '.', '_' and '-' (it prefixes backup ids)", p.Name)
	}
	if len(p.Units) == 0 {
		return nil, fmt.Errorf("profile: no units defined")
	}
	for name, u := range p.Units {
		if !unitNameRe.MatchString(name) {
			return nil, fmt.Errorf("profile: unit name %q must match %s", name, unitNameRe)
		}
		if len(u.Paths) == 0 {
			return nil, fmt.Errorf("profile: unit %s has no paths", name)
		}
		for _, up := range u.Paths {
			c := path.Clean("/" + up)
			if path.IsAbs(up) || strings.Contains("/"+up+"/", "/../") || c == "/" {
				return nil, fmt.Errorf("profile: unit %s path %q must be relative to the root, without '..'", name, up)
			}
		}
	}
	return &p, nil
}

// Selection is what a backup of some units covers.
type Selection struct {
	Paths     []string
	SQLite    []string
	Includes  []string
	Excludes  []string
	UnitPaths map[string][]string // each included unit's paths
}

// Select resolves unit names into paths. With no names it takes every unit
// that is default and not guarded; a guarded unit or one with
// "default": false is included only when named.
func (p *Profile) Select(names []string) (Selection, error) {
	var s Selection
	chosen := map[string]bool{}
	if len(names) == 0 {
		for name, u := range p.Units {
			if !u.Guarded && (u.Default == nil || *u.Default) {
				chosen[name] = true
			}
		}
	}
	for _, n := range names {
		if _, ok := p.Units[n]; !ok {
			return s, fmt.Errorf("unknown unit %q (the profile has: %s)", n, strings.Join(p.UnitNames(), ", "))
		}
		chosen[n] = true
	}
	for _, name := range p.UnitNames() {
		u := p.Units[name]
		if !chosen[name] {
			s.Excludes = append(s.Excludes, name)
			continue
		}
		s.Includes = append(s.Includes, name)
		s.Paths = append(s.Paths, u.Paths...)
		if s.UnitPaths == nil {
			s.UnitPaths = map[string][]string{}
		}
		s.UnitPaths[name] = slices.Clone(u.Paths)
		if u.SQLite {
			s.SQLite = append(s.SQLite, u.Paths...)
		}
	}
	if s.Excludes == nil {
		s.Excludes = []string{}
	}
	if len(s.Includes) == 0 {
		return s, fmt.Errorf("no units selected: name one with --unit")
	}
	return s, nil
}

// UnitNames returns the unit names sorted.
func (p *Profile) UnitNames() []string {
	var out []string
	for n := range p.Units {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CheckHookFile reports whether the file name, whose open descriptor's
// Stat gave fi, may steer this process: name hooks (commands) it runs, the
// root a backup reads or an in-place restore overwrites. Whoever can change
// the file chooses them: it must belong to this process's user or to root
// (as root: to root), and no group or other may write it. A repository
// another user can write must never choose what root runs, reads or
// overwrites (docs/architecture.md, "Hooks and who may choose them").
func CheckHookFile(name string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot tell who owns it, so its hooks do not run", name)
	}
	euid := os.Geteuid()
	switch {
	case euid == 0 && st.Uid != 0:
		return fmt.Errorf("%s belongs to uid %d: as root, snapforge acts on it only when root owns it (whoever owns it chooses the commands its hooks run and the root it names); check it, then `chown root %s`, or run snapforge as uid %d", name, st.Uid, name, st.Uid)
	case st.Uid != uint32(euid) && st.Uid != 0:
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d): snapforge acts only on such a file that you or root own; check it, then copy it to a file of yours", name, st.Uid, euid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s may be changed by its group or by others (mode %04o): snapforge acts only on such a file that nobody else can change; `chmod go-w %s`", name, fi.Mode().Perm(), name)
	}
	return nil
}
