// Package archtest enforces the import direction of DESIGN.md over
// `go list -deps`: snapshot (and its subpackages) imports nothing above
// it; index only snapshot; planner, restore and fusefs only snapshot;
// server only planner, restore and snapshot; cmd anything.
package archtest

import (
	"bytes"
	"encoding/json"
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
	checked := 0
	for _, p := range pkgs {
		from := top(p.ImportPath)
		rules, ok := allowed[from]
		if !ok {
			t.Errorf("package %s is under %q, which DESIGN.md's import table does not know: add it there and here", p.ImportPath, from)
			continue
		}
		if len(rules) == 1 && rules[0] == "*" {
			continue
		}
		ok2 := map[string]bool{from: true}
		for _, r := range rules {
			ok2[r] = true
		}
		for _, d := range p.Deps {
			if d != module && !strings.HasPrefix(d, module+"/") {
				continue
			}
			checked++
			if to := top(d); !ok2[to] {
				t.Errorf("%s depends on %s: %s may not import %s (DESIGN.md import direction)", p.ImportPath, d, from, to)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no project dependencies were checked")
	}
}

// TestRuleCatchesViolation proves the check can fail: a fake listing where
// snapshot imports index must be flagged.
func TestRuleCatchesViolation(t *testing.T) {
	p := pkg{ImportPath: module + "/snapshot/pack", Deps: []string{module + "/index"}}
	from, to := top(p.ImportPath), top(p.Deps[0])
	okSet := map[string]bool{from: true}
	for _, r := range allowed[from] {
		okSet[r] = true
	}
	if okSet[to] {
		t.Fatal("snapshot importing index was not flagged")
	}
}
