package gateway

import (
	"slices"
	"testing"
)

// A merge key whose value is not a mapping (`<<: 5`, `<<: [*base, x]`) or that merges
// the mapping it is in (`demo: &d {<<: *d}`) is one problem, at the merge key's line
// and key path: yaml.v3's own errors for them ("map merge requires map or sequence of
// maps as the value", "anchor 'd' value contains itself") have neither, and once it
// gave one the rest of the file was no longer checked. The mapping holding the merge
// key is not checked for what the merge would have brought (its provider or model is
// not asked for), while the rest of the file still is (the unknown backend below).
func TestConfigMergeKeyProblemsNameLineAndKey(t *testing.T) {
	const tail = "endpoints:\n  - {name: chat, type: chat, routes: [{backend: nope, weight: 100}]}\n"
	const other = "t.yaml:6: endpoints[0].routes[0].backend: unknown backend \"nope\""
	for _, c := range []struct{ name, y, want string }{
		{"a number", "backends:\n  base: &b {provider: mock, model: m}\n  up:\n    <<: 5\n" + tail,
			"t.yaml:4: backends.up.<<: must be a mapping, an alias of one, or a list of them"},
		{"a list holding a string", "backends:\n  base: &b {provider: mock, model: m}\n  up:\n    <<: [*b, x]\n" + tail,
			"t.yaml:4: backends.up.<<: must be a mapping, an alias of one, or a list of them"},
		{"itself", "backends:\n  base: &b {provider: mock, model: m}\n  up: &u\n    <<: *u\n" + tail,
			"t.yaml:4: backends.up.<<: *u is the mapping this merge key is in, or holds it: a mapping cannot merge itself"},
		{"itself in a list", "backends:\n  base: &b {provider: mock, model: m}\n  up: &u\n    <<: [*b, *u]\n" + tail,
			"t.yaml:4: backends.up.<<: *u is the mapping this merge key is in, or holds it: a mapping cannot merge itself"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if want := []string{c.want, other}; !slices.Equal(problems, want) {
				t.Fatalf("problems = %q, want %q", problems, want)
			}
		})
	}
}
