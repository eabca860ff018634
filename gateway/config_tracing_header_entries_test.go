package gateway

import (
	"strings"
	"testing"
)

// The trace exporter's headers follow a backend's rule: an entry that is a collector's
// key pasted as a header's name with nothing after it ({key} or {key:} in a flow
// mapping), an empty value, or a name that is not an HTTP token, is refused at its
// file, line and headers key, without the name. Taken, it would go out as a header's
// name on every export and authenticate nothing.
func TestConfigTracingHeaderEntriesRefused(t *testing.T) {
	const secret = "ak_live_Rk9vQ2xZmW7pT4Lq"
	config := func(headers string) string {
		return `
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing:
  exporter: otlp-http
  endpoint: http://127.0.0.1:4318
` + headers + "\n"
	}
	const empty = ": tracing.headers: holds a header with an empty value"
	const notToken = ": tracing.headers: holds a header whose name is not an HTTP token"
	for _, tc := range []struct{ name, yaml, want string }{
		{"key alone in a flow mapping", config("  headers: {x-team: obs, " + secret + "}"), "t.yaml:9" + empty},
		{"key as a name in a flow mapping", config("  headers: {x-team: obs, " + secret + ":}"), "t.yaml:9" + empty},
		{"key as a name, empty string", config("  headers:\n    x-team: obs\n    " + secret + `: ""`), "t.yaml:11" + empty},
		{"key as a name, empty variable", config("  headers:\n    x-team: obs\n    " + secret + `: "${EMPTY}"`), "t.yaml:11" + empty},
		{"name with a space", config("  headers:\n    x-team: obs\n    \"" + secret + " x\": v"), "t.yaml:11" + notToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(tc.yaml), env(map[string]string{"EMPTY": ""}))
			if err == nil {
				t.Fatal("config taken")
			}
			if strings.Contains(err.Error(), "Rk9vQ2xZ") {
				t.Errorf("the error quotes the name:\n%v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\nwant\n%s", err, tc.want)
			}
			if n := strings.Count(err.Error(), "tracing.headers"); n != 1 {
				t.Errorf("%d problems of tracing.headers, want 1:\n%v", n, err)
			}
		})
	}
	if _, err := ParseConfig("t.yaml", []byte(config("  headers: {x-team: obs, authorization: \"Bearer k\"}")), env(nil)); err != nil {
		t.Errorf("headers with values: %v", err)
	}
	// An unset variable is reported for that alone, not again as an empty value.
	_, err := ParseConfig("t.yaml", []byte(config("  headers:\n    x-api-key: \"${UNSET}\"")), env(nil))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:10: tracing.headers.x-api-key: environment variable UNSET is not set") ||
		strings.Contains(err.Error(), "empty value") {
		t.Errorf("error\n%v\nwant the unset variable alone", err)
	}
}
