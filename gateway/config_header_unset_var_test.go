package gateway

import (
	"strings"
	"testing"
)

// A headers entry (a backend's, the trace exporter's) whose value names a variable
// that is not set is reported once, for the variable: an entry whose name is not an
// HTTP token (a key pasted as the name, say, with a space in it) too, not again as a
// name run into its value, and under the headers key without its name, which may be
// the secret.
func TestConfigHeaderUnsetVariableOnce(t *testing.T) {
	const secret = "ak_live_Rk9vQ2xZmW7pT4Lq"
	config := func(backend, tracing string) string {
		return `
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m,
       headers: {` + backend + `}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing:
  exporter: otlp-http
  endpoint: http://127.0.0.1:4318
  headers: {` + tracing + `}
`
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"tracing, a token", config("x-a: b", `x-api-key: "${UNSET}"`), "t.yaml:10: tracing.headers.x-api-key: environment variable UNSET is not set"},
		{"tracing, not a token", config("x-a: b", `"`+secret+` k": "${UNSET}"`), "t.yaml:10: tracing.headers: environment variable UNSET is not set"},
		{"backend, a token", config(`x-api-key: "${UNSET}"`, "x-a: b"), "t.yaml:4: backends.up.headers.x-api-key: environment variable UNSET is not set"},
		{"backend, not a token", config(`"`+secret+` k": "${UNSET}"`, "x-a: b"), "t.yaml:4: backends.up.headers: environment variable UNSET is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("config taken")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error\n%s\nwant\n%s", got, tc.want)
			}
			if strings.Contains(err.Error(), "Rk9vQ2xZ") {
				t.Errorf("the error quotes the name:\n%v", err)
			}
		})
	}
}
