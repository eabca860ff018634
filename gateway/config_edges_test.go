package gateway

import (
	"errors"
	"strings"
	"testing"
)

// parseProblems parses y as t.yaml and returns its problems (nil when it loads).
func parseProblems(t *testing.T, y string, e map[string]string) (*Config, []string) {
	t.Helper()
	cfg, err := ParseConfig("t.yaml", []byte(y), env(e))
	if err == nil {
		return cfg, nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	return nil, ce.Problems
}

// An operator keeps numbers and switches in the environment, as with secrets:
// `retries: ${RETRIES:-2}`, `sample_ratio: ${TRACE_RATIO}`, `access_log: ${ACCESS_LOG}`.
// README says ${VAR} is read in values: an unquoted one is typed by what it holds once
// expanded, as if the file had held it, so numbers and switches can be set per
// environment too (it was "cannot unmarshal !!str into float64", even for a default).
func TestEnvInNumberAndBoolValues(t *testing.T) {
	y := `backends:
  up: {provider: mock, model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    retries: ${RETRIES:-2}
tracing:
  sample_ratio: ${TRACE_RATIO}
logging:
  access_log: ${ACCESS_LOG}
`
	cfg, problems := parseProblems(t, y, map[string]string{"TRACE_RATIO": "0.25", "ACCESS_LOG": "false"})
	if problems != nil {
		t.Fatalf("config with ${VAR} in number/bool values refused:\n%s\nwant: retries 2, sample_ratio 0.25, access_log false", strings.Join(problems, "\n"))
	}
	if cfg.Endpoints[0].Retries != 2 || cfg.Tracing.SampleRatio == nil || *cfg.Tracing.SampleRatio != 0.25 ||
		cfg.Logging.AccessLog == nil || *cfg.Logging.AccessLog {
		t.Fatalf("retries=%d sample_ratio=%v access_log=%v, want 2, 0.25, false",
			cfg.Endpoints[0].Retries, cfg.Tracing.SampleRatio, cfg.Logging.AccessLog)
	}
}

// A file holding two YAML documents (two configs concatenated, or a kubectl-style
// `---` between sections) is refused at the second: read as the first alone, every key
// of the second would be dropped without a word (here a bad logging.level and a whole
// endpoints list).
func TestSecondDocumentRefused(t *testing.T) {
	y := `backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
---
logging: {level: bogus}
endpoints:
  - {name: chat2, type: chat, routes: [{backend: up}]}
`
	cfg, problems := parseProblems(t, y, nil)
	if problems == nil {
		t.Fatalf("a second YAML document was silently ignored (logging.level=%q, %d endpoints); want an error at t.yaml:5 naming the extra document",
			cfg.Logging.Level, len(cfg.Endpoints))
	}
}

// An empty file, or one of comments only, is refused ("the file is empty"), so a
// truncated file is never swapped in as a config with no endpoints and no auth; so is
// one holding only a document start `---` (the first line of many configs, and all a
// half-written file may hold) or a bare `~`.
func TestDocumentMarkerOnlyIsEmpty(t *testing.T) {
	for _, y := range []string{"---\n", "---\n# to be written\n", "~\n", "--- ~\n"} {
		t.Run(strings.ReplaceAll(y, "\n", `\n`), func(t *testing.T) {
			cfg, problems := parseProblems(t, y, nil)
			if problems == nil {
				t.Fatalf("loaded as a config (auth.mode=%s, %d endpoints); want t.yaml:1: the file is empty",
					cfg.Auth.Mode, len(cfg.Endpoints))
			}
		})
	}
}

// A mapping or list written where one value belongs (a nested value under the wrong
// key, `model: {name: x}`) is reported at its key, in flow and block style and under a
// size alike (the message named another key on the line, or none).
func TestCollectionWhereValueBelongsNamesKey(t *testing.T) {
	cases := []struct{ name, y, want string }{
		{"flow", "backends:\n  up: {provider: openai, base_url: \"http://x/v1\", model: m, headers: {X-A: {b: 1}}}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n", "t.yaml:2: backends.up.headers.X-A: "},
		{"block", "backends:\n  up:\n    provider: mock\n    model: {name: m}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n", "t.yaml:4: backends.up.model: "},
		{"size", "backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n" +
			"server:\n  max_body_bytes: {mib: 8}\n", "t.yaml:6: server.max_body_bytes: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if len(problems) != 1 || !strings.HasPrefix(problems[0], c.want) {
				t.Fatalf("problems = %q, want one starting %q", problems, c.want)
			}
		})
	}
}

// A size too large for int64 (a typo with an extra digit or unit) is "too large": the
// conversion wrapped it to "must not be negative" here, and would saturate and accept
// it on arm64.
func TestSizeOverflowRefused(t *testing.T) {
	for _, v := range []string{"9223372036854775808", "9000000000GiB"} {
		t.Run(v, func(t *testing.T) {
			y := "backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n" +
				"server:\n  max_body_bytes: " + v + "\n"
			cfg, problems := parseProblems(t, y, nil)
			if problems == nil {
				t.Fatalf("loaded with max_body_bytes=%d", cfg.Server.MaxBodyBytes)
			}
			if !strings.Contains(problems[0], "too large") || !strings.Contains(problems[0], "server.max_body_bytes") {
				t.Fatalf("problem = %q, want server.max_body_bytes: cannot use `%s` as a size (too large)", problems[0], v)
			}
		})
	}
}

// Backend `headers:` are sent on every upstream request: as for tracing.headers, a name
// that is no HTTP token and a value with CR/LF (a `${VAR}` holding "v\r\nX-Other: 1")
// are refused. Sent, fasthttp turns the CR/LF into spaces (the upstream gets a value
// other than the one masked in its errors), and a bad name makes every request one the
// upstream refuses. A bad name is not quoted (a key pasted as a name may be it).
func TestBackendHeadersValidated(t *testing.T) {
	cases := []struct{ name, headers, want string }{
		{"value CRLF", `{X-Team: "${TEAM}"}`, "backends.up.headers.X-Team"},
		{"name with space", `{"X Team": a}`, "t.yaml:2: backends.up.headers: holds a header whose name is not an HTTP token"},
		{"name with colon", `{"X-Team:": a}`, "t.yaml:2: backends.up.headers: holds a header whose name is not an HTTP token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m, headers: " + c.headers + "}\n" +
				"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
			cfg, problems := parseProblems(t, y, map[string]string{"TEAM": "a\r\nX-Injected: 1"})
			if problems == nil {
				t.Fatalf("validate accepted headers %q; want an error naming %s", cfg.Backends["up"].Headers, c.want)
			}
			if !strings.Contains(strings.Join(problems, "\n"), c.want) {
				t.Fatalf("problems = %q, want one naming %s", problems, c.want)
			}
		})
	}
}
