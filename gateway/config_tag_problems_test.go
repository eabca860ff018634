package gateway

import (
	"errors"
	"strings"
	"testing"
)

// A value whose explicit tag it does not fit stops yaml.v3's decoder, and a !!binary
// value that is not base64 stops it with a message naming neither line nor key. Each
// is placed at its key and set aside, and the rest of the file is still checked
// (README: "`tollgate validate` reports every problem at once"): a bad timeout and a
// route to a missing backend further down are reported too.
func TestConfigTagProblemKeepsCheckingTheFile(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"binary not base64", "model: !!binary m*m", "t.yaml:5: backends.up.model: "},
		{"bool tag on a string", "model: !!bool mmm", "t.yaml:5: backends.up.model: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := `backends:
  up:
    provider: openai
    base_url: "http://127.0.0.1:1/v1"
    ` + c.value + `
    timeout: 5x
endpoints:
  - name: chat
    type: chat
    routes: [{backend: upp}]
`
			_, err := ParseConfig("t.yaml", []byte(yaml), env(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			for _, want := range []string{c.want, "t.yaml:6: backends.up.timeout: ", "t.yaml:10: endpoints[0].routes[0].backend: "} {
				if !strings.Contains(msg, want) {
					t.Errorf("problems %q: none starts %q", msg, want)
				}
			}
		})
	}
}

// Every value its tag does not fit is reported with its line and key, each once, with
// the type errors the decoder found before it (it drops them when it stops), and
// nothing the checks would find in the values set aside ("model: is required").
func TestConfigTagProblemsEachPlaced(t *testing.T) {
	const secret = "Zq7Xsecret*Part"
	yaml := `server:
  read_timeout: 5x
backends:
  up:
    provider: !!int openai
    base_url: "http://127.0.0.1:1/v1"
    model: !!binary m*m
    api_key: !!binary ` + secret + `
    max_connections: !!float ten
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	_, err := ParseConfig("t.yaml", []byte(yaml), env(nil))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	want := []string{
		"t.yaml:5: backends.up.provider: cannot decode !!str `openai` as a !!int",
		"t.yaml:7: backends.up.model: is tagged !!binary, but is not base64: remove the tag",
		"t.yaml:8: backends.up.api_key: is tagged !!binary, but is not base64: remove the tag",
		"t.yaml:9: backends.up.max_connections: cannot decode !!str `ten` as a !!float",
		"t.yaml:2: server.read_timeout: cannot use `5x` as a duration (use e.g. 100ms, 30s, 5m, 1h)",
	}
	got := strings.Join(ce.Problems, "\n")
	if got != strings.Join(want, "\n") {
		t.Errorf("problems\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if strings.Contains(got, secret) {
		t.Errorf("problems quote the secret")
	}
}

// An anchored value its tag does not fit is placed at the first key it is read at,
// with the anchor's line, and not quoted when any key reading it is a secret; the
// checks find nothing more at those keys ("model: is required").
func TestConfigTagProblemOfAnchoredValue(t *testing.T) {
	const secret = "Zq7Xsecret"
	yaml := "x: &a !!bool " + secret + "\nbackends:\n  up: {provider: mock, model: *a, api_key: *a}\n" +
		"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	_, problems := parseProblems(t, yaml, nil)
	want := []string{
		"t.yaml:1: x: unknown key (known keys: auth, backends, endpoints, limiter, logging, server, tracing)",
		"t.yaml:1: backends.up.model: is tagged !!bool, which the value is not: remove the tag",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems\n%s\nwant\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}
