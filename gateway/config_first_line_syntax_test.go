package gateway

import (
	"slices"
	"strings"
	"testing"
)

// yaml.v3 leaves the line out of a scanner problem on the file's first line (its
// line 0): a syntax error there is still reported at line 1, as on any other line,
// and a tab indenting the first line gets the same hint as elsewhere.
func TestConfigFirstLineSyntaxErrorNamesLine(t *testing.T) {
	for _, c := range []struct{ name, y, want string }{
		{"unclosed quote", "server: 'x", "t.yaml:1: found unexpected end of stream"},
		{"character that cannot start a token", "server: @x\n", "t.yaml:1: found character that cannot start any token"},
		{"tab", "\tserver: 1\n", "t.yaml:1: found character that cannot start any token (a tab indents this line: YAML indents with spaces)"},
		{"too deep", "server: " + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "\n", "t.yaml:1: exceeded max depth of 10000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if want := []string{c.want}; !slices.Equal(problems, want) {
				t.Fatalf("problems = %q, want %q", problems, want)
			}
		})
	}
}
