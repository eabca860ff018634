package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CheckConfig returns a valid config's warnings, each FILE:LINE: key: warning: what,
// the line the key's: the admin API beyond loopback without a token, a backend that
// skips certificate checks, a key already expired, stored responses shared by keys
// without auth.response_secret. The default config has none.
func TestCheckConfigWarnings(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	conf := `server: {listen: "127.0.0.1:0", admin_listen: "0.0.0.0:0"}
auth:
  keys:
    - {name: team-a, key: sk-a}
    - name: old
      key: sk-old
      expires_at: "2020-01-01T00:00:00Z"
backends:
  up: {provider: openai, base_url: "https://127.0.0.1:1/v1", model: m,
       tls: {insecure_skip_verify: true}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	warnings, err := CheckConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		path + ":1: server.admin_listen: warning: " + warnAdminOpen,
		path + ":10: backends.up.tls.insecure_skip_verify: warning: " + warnInsecureTLS,
		path + ":7: auth.keys[1].expires_at: warning: client key old expired at 2020-01-01T00:00:00Z: its requests are refused (401 expired_api_key)",
		path + ":2: auth.response_secret: warning: " + warnNoRespSecret,
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
	if warnings, err := CheckConfig(filepath.Join("..", "configs", "tollgate.yaml")); err != nil || len(warnings) > 0 {
		t.Errorf("the default config: %q %v, want no warnings", warnings, err)
	}
	if err := Validate(path); err != nil {
		t.Errorf("Validate refuses a config with warnings only: %v", err)
	}

	// An MLflow-style API key naming a file not there: its path shown only when its
	// directory is there (a value that merely reads as a path may be a key).
	dir := t.TempDir()
	for _, c := range []struct{ key, tail string }{
		{filepath.Join(dir, "openai.key"), " (" + filepath.Join(dir, "openai.key") + ")"},
		{filepath.Join(dir, "none", "openai.key"), ", and its directory, not there either"},
	} {
		mlflow := filepath.Join(dir, "mlflow.yaml")
		if err := os.WriteFile(mlflow, []byte(mlflowKeyFileConfig("127.0.0.1:1", c.key)), 0o644); err != nil {
			t.Fatal(err)
		}
		warnings, err := CheckConfig(mlflow)
		want := mlflow + ":6: endpoints[0].model.config.openai_api_key: warning: " + warnAbsentKeyFile + c.tail
		if err != nil || len(warnings) != 1 || warnings[0] != want {
			t.Errorf("key file %s: %q %v, want %q", c.key, warnings, err, want)
		}
	}
}

// A canary with none of the gates (max_error_rate, max_p99, max_ttft_p99) is a timed
// rollout that no failure stops: a config that means a canary has forgotten them.
// One with any gate, max_error_rate 0 included, earns no warning.
func TestCheckConfigWarnsUngatedCanary(t *testing.T) {
	t.Parallel()
	conf := func(gates string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  a: {provider: mock, model: m}
  b: {provider: mock, model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: a, weight: 90}, {backend: b, weight: 10}]
    canary: {backend: b` + gates + `}
`
	}
	for _, c := range []struct {
		gates string
		want  bool
	}{
		{"", true},
		{", interval: 1m, min_requests: 10", true},
		{", max_error_rate: 0", false},
		{", max_p99: 2s", false},
		{", max_ttft_p99: 500ms", false},
	} {
		path := filepath.Join(t.TempDir(), "tollgate.yaml")
		if err := os.WriteFile(path, []byte(conf(c.gates)), 0o644); err != nil {
			t.Fatal(err)
		}
		warnings, err := CheckConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		want := []string(nil)
		if c.want {
			want = []string{path + ":9: endpoints[0].canary: warning: " + warnUngatedCanary}
		}
		if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
			t.Errorf("canary {backend: b%s}: warnings %q, want %q", c.gates, warnings, want)
		}
	}
}
