package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"

	"snapforge/snapshot"
	"snapforge/snapshot/b3"
	"snapforge/snapshot/pack"
)

var cmdVersion = &command{name: "version", usage: "", summary: "print the version (the one manifests record as wf_version), and what this build compresses and hashes with"}

func init() {
	cmdVersion.run = func(ctx context.Context, a *app, args []string) error {
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		pos, err := parse(a, cmdVersion, fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return &usageError{"version takes no arguments"}
		}
		build := buildVersion()
		if a.json {
			return a.printJSON(map[string]any{"version": snapshot.Version, "engine": snapshot.EngineVersion,
				"repository_format": snapshot.FormatVersion, "build": build, "go": runtime.Version(),
				"platform": runtime.GOOS + "/" + runtime.GOARCH, "compression": pack.Encoders(), "hashing": b3.Implementation()})
		}
		fmt.Fprintf(a.stdout, "snapforge %s (engine %s, repository format %d; build %s, %s, %s/%s)\ncompression: %s\nhashing: %s\n",
			snapshot.Version, snapshot.EngineVersion, snapshot.FormatVersion, build, runtime.Version(), runtime.GOOS, runtime.GOARCH, pack.Encoders(), b3.Implementation())
		return nil
	}
}

// buildVersion is the module's version, else the commit it was built from
// (with "+changes" when the tree was modified), else "devel".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+changes"
	}
	return rev
}
