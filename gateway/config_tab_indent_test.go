package gateway

import (
	"slices"
	"testing"
)

// A tab where YAML wants indentation (an editor set to insert tabs, a paste from a
// terminal) is a syntax error at its line, and yaml.v3's words for it, "found
// character that cannot start any token", do not say what the character is: the
// tab is invisible in most editors. The message says so; a tab that YAML takes
// (between a key's colon and its value, before a comment) is no error.
func TestConfigTabIndentSaysTab(t *testing.T) {
	const head = "backends:\n  up: {provider: mock, model: m}\n"
	const hint = ": found character that cannot start any token (a tab indents this line: YAML indents with spaces)"
	for _, tc := range []struct{ name, yaml, want string }{
		{"mapping key", "backends:\n\tup: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n", "t.yaml:2" + hint},
		{"after spaces", "backends:\n  up:\n  \t provider: mock\n    model: m\n", "t.yaml:3" + hint},
		{"list item", head + "endpoints:\n\t- {name: chat, type: chat, routes: [{backend: up}]}\n", "t.yaml:4" + hint},
		{"after a list's dash", head + "endpoints:\n  -\tname: chat\n    type: chat\n    routes: [{backend: up}]\n", "t.yaml:4" + hint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := parseProblems(t, tc.yaml, nil)
			if want := []string{tc.want}; !slices.Equal(problems, want) {
				t.Errorf("problems = %q, want %q", problems, want)
			}
		})
	}
	t.Run("a tab YAML takes", func(t *testing.T) {
		y := head + "endpoints:\n  - name: chat\t# the chat endpoint\n    type:\tchat\n    routes: [{backend: up}]\n"
		if _, problems := parseProblems(t, y, nil); len(problems) > 0 {
			t.Errorf("problems = %q, want none", problems)
		}
	})
}
