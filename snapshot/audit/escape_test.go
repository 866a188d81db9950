package audit

import (
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FAULTS D6: names are shown escaped; invalid UTF-8 names do not collapse.
func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain.txt", "plain.txt"},
		{"", ""},
		{"café", "café"},
		{"日本語 ファイル", "日本語 ファイル"},
		{`"quoted" <script>`, `"quoted" <script>`},
		{"a\nb", `a\nb`},
		{"\n{\"seq\":99}", `\n{"seq":99}`},
		{"tab\there", `tab\there`},
		{`back\slash`, `back\\slash`},
		{"\xff\xfe", `\xff\xfe`},
		{"caf\xe9", `caf\xe9`},           // Latin-1 é: invalid UTF-8
		{"\xed\xa0\x80", `\xed\xa0\x80`}, // an encoded surrogate
		{"\uFFFD", "\uFFFD"},             // a real U+FFFD is kept, unlike \xff
		{"\x00\x1b[31m\x7f", `\x00\x1b[31m\x7f`},
		{"\r\a\b\f\v", `\r\a\b\f\v`},
		{"rtl\u202Etxt.exe", `rtl\u202etxt.exe`}, // bidi override
		{"nb\u00a0sp", `nb\u00a0sp`},
		{"line\u2028sep", `line\u2028sep`},
		{"\U000E0001tag", `\U000e0001tag`},
	} {
		if got := Escape([]byte(c.in)); got != c.want {
			t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if Escape([]byte("\xff")) == Escape([]byte("\xfe")) {
		t.Error("two invalid names collapse")
	}
}

// FuzzEscape checks that the result is clean UTF-8 and that
// strconv.Unquote gives the name back, so Escape is injective.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"café", "a\nb", "\xff\xfe", `\x41`, "\u202e", "\"", `\"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, name []byte) {
		got := Escape(name)
		if !utf8.ValidString(got) {
			t.Fatalf("Escape(%q) = %q: invalid UTF-8", name, got)
		}
		for _, r := range got {
			if !unicode.IsPrint(r) {
				t.Fatalf("Escape(%q) = %q: contains %U", name, got, r)
			}
		}
		back, err := strconv.Unquote(`"` + strings.ReplaceAll(got, `"`, `\"`) + `"`)
		if err != nil || back != string(name) {
			t.Fatalf("Escape(%q) = %q, which unquotes to %q, %v", name, got, back, err)
		}
	})
}
