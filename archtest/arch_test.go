// Package archtest enforces the import direction of DESIGN.md over
// `go list -deps`: snapshot (and its subpackages) imports nothing above
// it; index only snapshot; planner, restore and fusefs only snapshot;
// server only planner, restore and snapshot; cmd anything.
package archtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

const module = "snapforge"

// allowed lists, per top-level package, the top-level project packages it
// may depend on (itself always allowed). archtest is test-only.
var allowed = map[string][]string{
	"snapshot": {},
	"index":    {"snapshot"},
	"planner":  {"snapshot"},
	"restore":  {"snapshot"},
	"fusefs":   {"snapshot"},
	"server":   {"planner", "restore", "snapshot"},
	"cmd":      {"*"},
	"archtest": {},
}

type pkg struct {
	ImportPath string
	Deps       []string
}

func top(path string) string {
	rest := strings.TrimPrefix(path, module+"/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i]
	}
	return rest
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages; the check would prove nothing", len(pkgs))
	}
	problems, checked := violations(pkgs)
	for _, p := range problems {
		t.Error(p)
	}
	if checked == 0 {
		t.Fatal("no project dependencies were checked")
	}
}

// violations applies the import table to a package listing and returns one
// message per forbidden dependency, and how many project edges it checked.
func violations(pkgs []pkg) (problems []string, checked int) {
	for _, p := range pkgs {
		from := top(p.ImportPath)
		rules, ok := allowed[from]
		if !ok {
			problems = append(problems, fmt.Sprintf("package %s is under %q, which DESIGN.md's import table does not know: add it there and here", p.ImportPath, from))
			continue
		}
		if len(rules) == 1 && rules[0] == "*" {
			continue
		}
		okSet := map[string]bool{from: true}
		for _, r := range rules {
			okSet[r] = true
		}
		for _, d := range p.Deps {
			if d != module && !strings.HasPrefix(d, module+"/") {
				continue
			}
			checked++
			if to := top(d); !okSet[to] {
				problems = append(problems, fmt.Sprintf("%s depends on %s: %s may not import %s (DESIGN.md import direction)", p.ImportPath, d, from, to))
			}
		}
	}
	return problems, checked
}

// TestRuleCatchesViolation proves the check can fail: the same function
// that checks the real listing must flag fake forbidden edges.
func TestRuleCatchesViolation(t *testing.T) {
	fake := []pkg{
		{ImportPath: module + "/snapshot/pack", Deps: []string{module + "/index"}},
		{ImportPath: module + "/index", Deps: []string{module + "/snapshot", module + "/cmd/snapforge"}},
		{ImportPath: module + "/cmd/snapforge", Deps: []string{module + "/index"}},
	}
	problems, checked := violations(fake)
	if checked != 3 || len(problems) != 2 {
		t.Fatalf("checked %d edges, problems %q; want 3 edges and 2 problems (snapshot→index, index→cmd)", checked, problems)
	}
}
