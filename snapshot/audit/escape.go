package audit

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape renders a file name, or any other byte string, for the audit trail
// and logs. Valid, printable UTF-8 stays as it is (including quotes, which
// the JSON encoding escapes). Everything else is escaped as in Go string
// literals: a backslash becomes \\, control characters become \n, \t, \x1b
// and so on, other non-printable runes (such as U+202E, U+00A0) become \u202e,
// and each byte that is not valid UTF-8 becomes \xff.
//
// The result is valid UTF-8 without control characters, and Escape is
// injective: two different names never render the same, so names that
// encoding/json would both turn into U+FFFD stay apart. strconv.Unquote of
// the result in double quotes (with any " escaped) gives the name back.
func Escape(name []byte) string {
	if plain(name) {
		return string(name)
	}
	var b strings.Builder
	b.Grow(len(name) + 8)
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRune(name[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, name[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.Write(name[i : i+size])
		default:
			escapeRune(&b, r)
		}
		i += size
	}
	return b.String()
}

// plain reports whether Escape would return name unchanged.
func plain(name []byte) bool {
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f || c == '\\' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(name[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsPrint(r) {
			return false
		}
		i += size
	}
	return true
}

// escapeRune writes the Go escape for the valid, non-printable rune r.
func escapeRune(b *strings.Builder, r rune) {
	switch r {
	case '\a':
		b.WriteString(`\a`)
	case '\b':
		b.WriteString(`\b`)
	case '\f':
		b.WriteString(`\f`)
	case '\n':
		b.WriteString(`\n`)
	case '\r':
		b.WriteString(`\r`)
	case '\t':
		b.WriteString(`\t`)
	case '\v':
		b.WriteString(`\v`)
	default:
		switch {
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			fmt.Fprintf(b, `\U%08x`, r)
		}
	}
}
