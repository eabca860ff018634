package gateway

import (
	"errors"
	"strings"
	"testing"
)

// TestConfigYAMLParserProblemLines checks that each problem yaml.v3's parser reports
// is placed on its line of the file. yaml.v3 v3.0.1 gives a parser problem's line
// 0-based (its scanner's 1-based), and its error holds only the text to tell them
// apart: a case per parser problem (parserc.go), but "did not find expected
// <stream-start>", which its scanner never lets happen.
func TestConfigYAMLParserProblemLines(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"flow list left open", "a: 1\nb:\n  c: [x\n\n# end\n",
			"t.yaml:3: did not find expected ',' or ']'"},
		{"flow list left open on the first line", "[a, b\n",
			"t.yaml:1: did not find expected ',' or ']'"},
		{"flow list left open, no final line break", "a: 1\nb: [c, d",
			"t.yaml:2: did not find expected ',' or ']'"},
		{"flow mapping left open", "a: 1\nb: {c: d\ne: f\n",
			"t.yaml:2: did not find expected ',' or '}'"},
		{"flow mapping missing a comma", "a: 1\nb: {c: d e: f}\n",
			"t.yaml:2: did not find expected ',' or '}'"},
		{"node content", "a: 1\nb: ,\n",
			"t.yaml:2: did not find expected node content"},
		{"node content at the end of the file", "a: [\n",
			"t.yaml:1: did not find expected node content"},
		{"key in a nested mapping", "a: 1\nb:\n  c: d\n  - e\n",
			"t.yaml:4: did not find expected key (in the mapping that begins on line 3)"},
		{"key in the top mapping", "a: 1\n- b\n",
			"t.yaml:2: did not find expected key"},
		{"'-' indicator in a nested list", "a: 1\nb:\n  - c\n  d: e\n",
			"t.yaml:4: did not find expected '-' indicator (in the list that begins on line 3)"},
		{"'-' indicator in the top list", "- a\nb: c\n",
			"t.yaml:2: did not find expected '-' indicator"},
		{"undefined tag handle", "a: 1\nb: !e!x y\n",
			"t.yaml:2: found undefined tag handle"},
		{"undefined tag handle on the first line", "a: !e!x y\n",
			"t.yaml:1: found undefined tag handle"},
		{"document start", "# c\n%YAML 1.1\nfoo\n",
			"t.yaml:3: did not find expected <document start>"},
		{"duplicate %YAML directive", "# c\n%YAML 1.1\n%YAML 1.1\n---\na: b\n",
			"t.yaml:3: found duplicate %YAML directive"},
		{"incompatible YAML document", "# c\n%YAML 1.2\n---\na: b\n",
			"t.yaml:2: found incompatible YAML document"},
		{"duplicate %TAG directive", "# c\n%TAG ! tag:a,2000:\n%TAG ! tag:b,2000:\n---\na: b\n",
			"t.yaml:3: found duplicate %TAG directive"},
		// The scanner's lines are 1-based already.
		{"scanner: mapping values", "a: 1\nb: c: d\n",
			"t.yaml:2: mapping values are not allowed in this context"},
		{"scanner: indentation", "a: 1\nb: 2\n c: 3\n",
			"t.yaml:3: mapping values are not allowed in this context"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(nil))
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0] != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// A mistake that breaks the YAML inside a long mapping (a key indented one space
// short, a list item among a mapping's keys) is reported at the line of the mistake,
// not only where the enclosing mapping begins: yaml.v3 gives its parser's context mark
// (the mapping's start) rather than its problem mark, and in a real file the
// backend's first line can be dozens of lines above. DESIGN: errors "name the file,
// line and key".
func TestConfigSyntaxErrorNamesTheLineOfTheMistake(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"key indented one space short", `server:
  listen: ":8080"
  admin_listen: "127.0.0.1:9090"
backends:
  llama:
    provider: openai
    base_url: "http://10.0.0.1:8000/v1"
    model: meta-llama/Llama-3.1-8B-Instruct
    timeout: 10m
    connect_timeout: 5s
   api_key: "abc"
endpoints:
  - name: chat
    type: chat
    routes: [{backend: llama}]
`, "t.yaml:11: "},
		{"list item among an endpoint's keys", `backends:
  llama:
    provider: openai
    base_url: "http://10.0.0.1:8000/v1"
    model: m
endpoints:
  - name: chat
    type: chat
    retries: 2
    fallbacks: [llama]
    timeout: 30s
    - routes: [{backend: llama}]
`, "t.yaml:12: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("problem %q: want it at the mistake's line, %q", err, c.want)
			}
		})
	}
}

// The mistake's line is counted as YAML counts lines (CR LF, CR, LF, NEL, LS, PS each
// end one), wherever in the file the mapping begins, and a mapping begun on the
// mistake's line is said once.
func TestConfigSyntaxErrorLineBreaks(t *testing.T) {
	lines := []string{"a: 1", "b:", "  c:", "    d: e", "    f: g", "   h: i", "k: l", ""}
	for _, c := range []struct{ name, br string }{
		{"LF", "\n"}, {"CR LF", "\r\n"}, {"CR", "\r"}, {"NEL", "\u0085"}, {"LS", "\u2028"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(strings.Join(lines, c.br)), env(nil))
			want := "t.yaml:6: did not find expected key (in the mapping that begins on line 3)"
			if err == nil || err.Error() != want {
				t.Errorf("err = %v, want %q", err, want)
			}
		})
	}
	t.Run("mistake on the mapping's line", func(t *testing.T) {
		_, err := ParseConfig("t.yaml", []byte("a: 1\n- b\n"), env(nil))
		if want := "t.yaml:2: did not find expected key"; err == nil || err.Error() != want {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}
