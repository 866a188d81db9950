package restore_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"snapforge/restore"
	"snapforge/restore/restoretest"
)

// TestRecoveryRefusesHooksOthersCanChange: the record of an unfinished
// restore (<repo>/restores/ID.json) names the hooks recovery runs and the
// target it rolls back. Whoever can change that file chooses them (a record
// stripped of its hooks would roll back under the running application), so
// recovery acts on a record only when the file is this user's (as root:
// root's) and nobody else may write it (snapshot.CheckHookFile). Otherwise the
// restore is left alone, untouched, with the reason; a new restore into
// the same root is refused; once the file is trusted again the recovery
// rolls back and runs the hooks.
func TestRecoveryRefusesHooksOthersCanChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test gives the record to another user")
	}
	ctx := t.Context()
	s, r, repo, m := rtSetup(t)
	s.Mutate(t)
	before := restoretest.State(t, s.Root)
	o := rtOptions(s, rtScope(t, s, m, nil))
	rvKilledAt(t, r, m, o, "restore-swap-3")
	rtHooks(t, s, "stop")
	ptrs, _ := filepath.Glob(filepath.Join(repo, "restores", "*.json"))
	if len(ptrs) != 1 {
		t.Fatalf("restore records in %s: %v; want one", repo, ptrs)
	}
	ptrRecord, err := os.ReadFile(ptrs[0])
	if err != nil {
		t.Fatal(err)
	}
	killedState := restoretest.State(t, s.Root)
	journal := rvJournal(t, s.Root)
	jb, _ := os.ReadFile(journal)

	for _, c := range []struct {
		name string
		set  func() error
		want string
	}{
		{"another user's record", func() error { return os.Chown(ptrs[0], 65534, 65534) }, "belongs to uid 65534"},
		{"a group-writable record", func() error {
			if err := os.Chown(ptrs[0], 0, 0); err != nil {
				return err
			}
			return os.Chmod(ptrs[0], 0o660)
		}, "chmod go-w"},
		// Without hooks too: a record whose hooks were removed would
		// roll back under the running application, and its target
		// chooses where.
		{"another user's record without hooks", func() error {
			b, err := os.ReadFile(ptrs[0])
			if err != nil {
				return err
			}
			var rec map[string]any
			if err := json.Unmarshal(b, &rec); err != nil {
				return err
			}
			delete(rec, "hooks")
			if b, err = json.Marshal(rec); err != nil {
				return err
			}
			if err := os.WriteFile(ptrs[0], b, 0o600); err != nil {
				return err
			}
			return os.Chown(ptrs[0], 65534, 65534)
		}, "belongs to uid 65534"},
	} {
		if err := c.set(); err != nil {
			t.Fatal(err)
		}
		recs, err := restore.Recover(ctx, r, restore.Options{})
		if err != nil {
			t.Fatalf("%s: recover: %v", c.name, err)
		}
		if len(recs) != 1 || !strings.HasPrefix(recs[0].Outcome, "left alone, nothing changed") ||
			!strings.Contains(recs[0].Outcome, ptrs[0]) || !strings.Contains(recs[0].Outcome, c.want) {
			t.Errorf("%s: recovered %+v; want it left alone, naming %s and %q", c.name, recs, ptrs[0], c.want)
		}
		rtHooks(t, s, "stop") // no hook ran
		restoretest.Equal(t, c.name+": the live root", killedState, restoretest.State(t, s.Root))
		if b, err := os.ReadFile(journal); err != nil || !slices.Equal(b, jb) {
			t.Errorf("%s: the journal changed or went away: %v", c.name, err)
		}
		if _, err := os.Stat(ptrs[0]); err != nil {
			t.Errorf("%s: the record went away: %v", c.name, err)
		}
		// A new restore into the same root must not start over it.
		_, err = restore.Run(ctx, r, m, o)
		if err == nil || !strings.Contains(err.Error(), "must be finished first") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: a new restore into the root: %v; want it refused", c.name, err)
		}
		rtHooks(t, s, "stop")
	}

	// Root's own record, writable by root alone: recovered as before.
	if err := os.WriteFile(ptrs[0], ptrRecord, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ptrs[0], 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ptrs[0], 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := restore.Recover(ctx, r, restore.Options{})
	if err != nil || len(recs) != 1 || recs[0].Outcome != "rolled back" {
		t.Fatalf("recover of a trusted record: %+v, %v; want rolled back", recs, err)
	}
	rtHooks(t, s, "stop", "stop", "start")
	restoretest.Equal(t, "the live system after recovery", before, restoretest.State(t, s.Root))
	rtNoLeftovers(t, s.Root, repo)
}
