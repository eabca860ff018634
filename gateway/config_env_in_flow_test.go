package gateway

import (
	"slices"
	"testing"
)

// In a mapping or list written in braces or brackets, YAML ends an unquoted value at
// '{', so `model: ${MODEL}` there is a syntax error that yaml.v3 words as a missing ','
// and places at the line where the braces open: nothing says the reference is the
// cause. The message names the line of the unquoted ${ and what to write instead; a
// quoted one, or one on a block line, is no error.
func TestConfigUnquotedEnvInFlowCollection(t *testing.T) {
	const tail = "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	e := map[string]string{"MODEL": "m", "KEY": "k", "P": "top_p"}
	for _, tc := range []struct{ name, yaml, want string }{
		{"in a flow mapping", "backends:\n  up: {provider: mock, model: ${MODEL}}\n" + tail,
			"t.yaml:2: did not find expected ',' or '}' (an unquoted ${ on line 2: inside { } or [ ] write \"${VAR}\", or the key on a line of its own)"},
		{"on the mapping's next line", "backends:\n  up: {provider: openai, base_url: \"http://x/v1\", model: m, # the model\n        api_key: ${KEY}}\n" + tail,
			"t.yaml:2: did not find expected ',' or '}' (an unquoted ${ on line 3: inside { } or [ ] write \"${VAR}\", or the key on a line of its own)"},
		{"in a flow list", "backends:\n  up:\n    provider: openai\n    base_url: \"http://x/v1\"\n    model: m\n    drop_params: [\"${P}\", '{', ${P}]\n" + tail,
			"t.yaml:6: did not find expected ',' or ']' (an unquoted ${ on line 6: inside { } or [ ] write \"${VAR}\", or the key on a line of its own)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := parseProblems(t, tc.yaml, e)
			if want := []string{tc.want}; !slices.Equal(problems, want) {
				t.Errorf("problems = %q, want %q", problems, want)
			}
		})
	}
	t.Run("quoted or on a block line", func(t *testing.T) {
		y := "backends:\n  up: {provider: mock, model: \"${MODEL}\"}\n  up2:\n    provider: mock\n    model: ${MODEL}\n" + tail
		if _, problems := parseProblems(t, y, e); len(problems) > 0 {
			t.Errorf("problems = %q, want none", problems)
		}
	})
	t.Run("another mistake in braces", func(t *testing.T) {
		y := "backends:\n  up: {provider: mock model: m}\n" + tail
		_, problems := parseProblems(t, y, e)
		if want := []string{"t.yaml:2: did not find expected ',' or '}'"}; !slices.Equal(problems, want) {
			t.Errorf("problems = %q, want %q", problems, want)
		}
	})
}
