package gateway

import (
	"slices"
	"testing"
)

// DESIGN: errors name the file, line and key. A byte the YAML reader refuses (a comment
// or a model name saved as Latin-1 by an editor, a stray control character from a
// paste) was reported with the file alone: yaml.v3 gives no line for its reader's
// errors, so the gateway finds the character itself, counting lines as YAML does.
func TestConfigUnreadableCharacterNamesLine(t *testing.T) {
	for _, c := range []struct{ name, y, want string }{
		{"Latin-1 e-acute in a comment",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  # caf\xe9 team\n  - {name: chat, type: chat, routes: [{backend: up}]}\n",
			"t.yaml:4: invalid trailing UTF-8 octet"},
		{"Latin-1 e-acute in a value",
			"backends:\n  up: {provider: mock, model: caf\xe9}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n",
			"t.yaml:2: invalid trailing UTF-8 octet"},
		{"a lone continuation byte", "backends:\n  up: {provider: mock, model: \x80}\n",
			"t.yaml:2: invalid leading UTF-8 octet"},
		{"control character in a quoted value",
			"backends:\n  up: {provider: mock, model: \"m\x01\"}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n",
			"t.yaml:2: control characters are not allowed"},
		{"DEL after CR LF line ends",
			"backends:\r\n  up: {provider: mock, model: m}\r\nendpoints:\r\n  # \x7f\r\n",
			"t.yaml:4: control characters are not allowed"},
		{"control character in a UTF-16 file", "\xff\xfeb\x00:\x00 \x00x\x00\n\x00\x01\x00",
			"t.yaml:2: control characters are not allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, []string{c.want}) {
				t.Fatalf("problems = %q, want [%q]", problems, c.want)
			}
		})
	}
}

// A file that begins with two byte order marks (a tool that adds one to a file that
// has one) is refused on its first line: yaml.v3 takes the first and misreads the
// text after the second, reporting a misspelled key further down ("ndpoints"). One
// byte order mark is read as none.
func TestConfigTwoByteOrderMarks(t *testing.T) {
	const body = "backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	const want = "t.yaml:1: the file begins with two byte order marks (U+FEFF): save it with one or none"
	for _, c := range []struct{ name, y, want string }{
		{"UTF-8, two", "\ufeff\ufeff" + body, want},
		{"UTF-16LE, two", "\xff\xfe\xff\xfeb\x00:\x00 \x00x\x00\n\x00", want},
		{"UTF-8, one", "\ufeff" + body, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if c.want == "" {
				if len(problems) > 0 {
					t.Fatalf("problems = %q, want none", problems)
				}
				return
			}
			if !slices.Equal(problems, []string{c.want}) {
				t.Fatalf("problems = %q, want [%q]", problems, c.want)
			}
		})
	}
}
