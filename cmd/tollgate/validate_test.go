package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runBinary runs the tollgate binary with args and env added to the environment, and
// returns its exit status, stdout and stderr.
func runBinary(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	// A serve that does start is ended rather than left running.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tollgate %v still running after 60s", args)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// `tollgate validate` reports the problems the runtime build would meet (mock options
// out of mockllm's bounds, a key's limits and an endpoint's together over the most one
// request takes) as FILE:LINE: key.path: what, under the YAML keys.
func TestValidateBuildProblemsNameFileLineKey(t *testing.T) {
	// The gateway's golden config cases, through the CLI.
	for _, c := range []struct{ file, key string }{
		{"bad-mock-options.yaml", "backends.demo.mock."},
		{"bad-combined-limits.yaml", "auth.keys["},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("..", "..", "gateway", "testdata", "config", c.file)
			code, _, stderr := runBinary(t, nil, "validate", "--config", path)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
			}
			for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if !strings.HasPrefix(line, path+":") || !strings.Contains(line, c.key) {
					t.Errorf("problem line %q is not %s:LINE: <key containing %q>: what", line, path, c.key)
				}
			}
		})
	}
}

// `tollgate validate` refuses a server.listen or admin_listen that `tollgate serve`
// cannot listen on, so that a deploy gated on validate does not ship a gateway that
// exits at start.
func TestValidateRejectsBadListenAddress(t *testing.T) {
	dir := t.TempDir()
	same := freePort(t)
	for _, c := range []struct{ name, server, key string }{
		{"listen without port", `{listen: "gateway-host", admin_listen: "127.0.0.1:0"}`, "server.listen"},
		{"listen port out of range", `{listen: ":99999", admin_listen: "127.0.0.1:0"}`, "server.listen"},
		{"admin_listen without port", `{listen: "127.0.0.1:0", admin_listen: "localhost"}`, "server.admin_listen"},
		{"admin_listen same as listen", `{listen: "` + same + `", admin_listen: "` + same + `"}`, "server.admin_listen"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, "listen.yaml", "server: "+c.server+"\n"+
				"backends:\n  demo: {provider: mock, model: mock-1}\n"+
				"endpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n")
			scode, _, serr := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, "serve", "--config", path)
			if scode == 0 {
				t.Fatalf("serve accepted it: %s", serr)
			}
			code, stdout, stderr := runBinary(t, nil, "validate", "--config", path)
			if code != 1 || !strings.Contains(stderr, path+":1: "+c.key) {
				t.Fatalf("validate: exit %d, stdout %q, stderr %q; want exit 1 naming %s:1: %s (serve exits %d: %s)",
					code, stdout, stderr, path, c.key, scode, strings.TrimSpace(serr))
			}
		})
	}
}

// In an MLflow AI Gateway config, a `$VAR` that is unset or empty is reported with the
// line and key path of the value, as a `${VAR}` is.
func TestValidateMLflowEnvProblemNamesKey(t *testing.T) {
	dir := t.TempDir()
	const key = "endpoints[0].model.config.openai_api_key"
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"unset", nil},
		{"empty", []string{"TOLLGATE_TEST_MLFLOW_KEY="}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, "mlflow.yaml", `endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: $TOLLGATE_TEST_MLFLOW_KEY
`)
			code, _, stderr := runBinary(t, c.env, "validate", "--config", path)
			if code != 1 || !strings.Contains(stderr, path+":8: "+key+": ") {
				t.Fatalf("exit %d, stderr %q; want exit 1 with %s:8: %s: ...", code, stderr, path, key)
			}
		})
	}
}

// `tollgate validate` places a YAML syntax error on the line of the construct left
// broken (here an unclosed flow list or mapping, as the compact style writes them),
// not the line above it, where yaml.v3 puts its parser's problems.
func TestValidateYAMLSyntaxErrorNamesLine(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, body string
		line       string
	}{
		{"unclosed routes list", "server:\n  listen: \"127.0.0.1:0\"\nbackends:\n  demo: {provider: mock, model: mock-1}\nendpoints:\n" +
			"  - name: chat\n    type: chat\n    routes: [{backend: demo}\n", "8"},
		{"unclosed backend mapping", "server:\n  listen: \"127.0.0.1:0\"\nbackends:\n  demo: {provider: mock, model: mock-1\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n", "4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, "syntax.yaml", c.body)
			code, _, stderr := runBinary(t, nil, "validate", "--config", path)
			if code != 1 || !strings.HasPrefix(stderr, path+":"+c.line+": ") {
				t.Fatalf("exit %d, stderr %q; want exit 1 and the problem at %s:%s", code, strings.TrimSpace(stderr), path, c.line)
			}
		})
	}
}

// An unset ${VAR} is one problem, at its key: validate adds none for what the empty
// value would break there ("give key or sha256", "is required (or targets)", not a
// duration), and still reports the problems of other keys.
func TestValidateUnsetVariableReportedOnce(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, body string
		keys       []string
		other      string // a problem of another key, still reported
	}{
		{"strings", "auth:\n  keys:\n    - {name: team-a, key: \"${TOLLGATE_TEST_UNSET_KEY}\"}\n" +
			"backends:\n  up:\n    provider: openai\n    base_url: \"${TOLLGATE_TEST_UNSET_URL}\"\n    model: m\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\nlogging: {level: loud}\n",
			[]string{"auth.keys[0].key", "backends.up.base_url"}, "logging.level: must be debug, info, warn or error"},
		{"typed", "server:\n  shutdown_grace: ${TOLLGATE_TEST_UNSET_GRACE}\n  read_timeout: -1s\n" +
			"backends:\n  demo: {provider: mock, model: mock-1}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n",
			[]string{"server.shutdown_grace"}, "server.read_timeout: must not be negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, "env.yaml", c.body)
			code, _, stderr := runBinary(t, nil, "validate", "--config", path)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			for _, key := range c.keys {
				var about []string
				for _, l := range lines {
					if strings.Contains(l, ": "+key+": ") {
						about = append(about, l)
					}
				}
				if len(about) != 1 || !strings.Contains(about[0], "environment variable") {
					t.Errorf("%s: problems %q; want one, that its environment variable is not set", key, about)
				}
			}
			if !strings.Contains(stderr, c.other) {
				t.Errorf("stderr %q; want also %q", stderr, c.other)
			}
		})
	}
}

// `tollgate validate` lists a valid config's warnings (what the gateway would log at
// start: here a key already expired and the admin API beyond loopback without a
// token) on stderr, each FILE:LINE: key: warning: what, and still passes it: the
// gateway starts with them.
func TestValidateListsWarningsAndPasses(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "warn.yaml", `server: {listen: "127.0.0.1:0", admin_listen: "0.0.0.0:0"}
auth:
  keys:
    - {name: old, key: sk-old, expires_at: "2020-01-01T00:00:00Z"}
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	code, stdout, stderr := runBinary(t, nil, "validate", "--config", path)
	if code != 0 || stdout != path+": ok\n" {
		t.Fatalf("exit %d, stdout %q, want 0 and %q; stderr %q", code, stdout, path+": ok\n", stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	want := []string{path + ":1: server.admin_listen: warning: ", path + ":4: auth.keys[0].expires_at: warning: client key old expired"}
	if len(lines) != len(want) {
		t.Fatalf("stderr %q, want %d warnings", stderr, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("warning %q, want it to begin %q", lines[i], w)
		}
	}
	if strings.Contains(stderr, "sk-old") {
		t.Errorf("a warning names the key's secret: %q", stderr)
	}
}
