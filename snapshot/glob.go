package snapshot

import (
	"path"
	"strings"
)

// MatchGlob reports whether the slash-separated relative path p matches
// pattern. Segments match with path.Match; "**" matches any number of
// segments (including none). A pattern without '/' matches the last
// segment at any depth, as in .gitignore; a trailing '/' is ignored.
func MatchGlob(pattern, p string) bool {
	pattern = strings.TrimSuffix(pattern, "/")
	if pattern == "" {
		return false
	}
	if !strings.Contains(pattern, "/") {
		pattern = "**/" + pattern
	}
	return matchSegs(strings.Split(strings.TrimPrefix(pattern, "/"), "/"), strings.Split(p, "/"))
}

func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(segs); i++ {
				if matchSegs(pat[1:], segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], segs[0]); !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}

// Included reports whether a restore with these include patterns selects
// rel: when rel or one of its ancestors matches a pattern (MatchGlob, or the
// exact path with or without slashes). No patterns select everything.
func Included(patterns []string, rel string) bool {
	if len(patterns) == 0 {
		return true
	}
	for p := rel; p != "." && p != "" && p != "/"; p = path.Dir(p) {
		for _, pat := range patterns {
			if MatchGlob(pat, p) || strings.Trim(pat, "/") == p {
				return true
			}
		}
	}
	return false
}
