package gateway

import (
	"slices"
	"testing"
)

// A backend's (or the trace exporter's) headers are a YAML mapping, so `X-Team` and
// `x-team` pass the duplicate-key check as two keys; HTTP header names ignore case,
// so they are one header, and which value went out would change from one build of the
// backend to the next (Go's map order), at start and at every reload: an
// Authorization or OpenAI-Organization header would switch the account billed. Such
// a config is refused, naming the later key.
func TestConfigHeaderNamesDifferingOnlyInCase(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"backend", `
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m,
       headers: {X-Team: alpha, Y-Other: v, x-team: beta}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:4: backends.up.headers.x-team: is the same header as X-Team (header names ignore case)"},
		{"tracing", `
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing:
  exporter: otlp-http
  endpoint: "127.0.0.1:4318"
  headers: {Api-Key: a, api-key: b}
`, "t.yaml:9: tracing.headers.api-key: is the same header as Api-Key (header names ignore case)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := parseProblems(t, tc.yaml, nil)
			if !slices.Contains(problems, tc.want) {
				t.Errorf("problems %q, want %q", problems, tc.want)
			}
		})
	}
}
