package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/tollgate/tollgate/internal/promtest"
)

// binary and mockBinary are the tollgate and mockllm programs, built once for the package.
var binary, mockBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tollgate")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	mockBinary = filepath.Join(dir, "mockllm")
	if out, err := exec.Command("go", "build", "-o", mockBinary, "../mockllm").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort is a loopback address on a port no other caller in this test binary was
// given (internal/freeport). Another process can still take it before ours binds;
// startReplicas retries such a start.
func freePort(t *testing.T) string {
	t.Helper()
	p, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n")
	bad := writeFile(t, dir, "bad.yaml", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\nendpoints:\n  - name: chat\n    type: chat\n    routes: [{backend: upp}]\n")
	shape := writeFile(t, dir, "shape.yaml", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\nendpoints: chat\n")
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"good config", []string{"validate", "--config", good}, 0, "good.yaml: ok"},
		{"bad config names file line and key", []string{"validate", "--config", bad}, 1, bad + ":6: endpoints[0].routes[0].backend: unknown backend \"upp\""},
		{"one value where a list belongs", []string{"validate", "--config", shape}, 1, shape + ":3: endpoints: must be a list, not a string\n"},
		{"missing file", []string{"validate", "--config", filepath.Join(dir, "none.yaml")}, 1, "no such file"},
		{"version", []string{"version"}, 0, "tollgate "},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"file without --config refused", []string{"validate", bad}, 2, "unexpected argument \"" + bad + "\": name the config file with --config"},
		{"command after the flags refused", []string{"--config", bad, "validate"}, 2, "the command comes first (tollgate validate --config " + bad + ")"},
		{"argument after serve refused", []string{"serve", "--config", good, "extra"}, 2, "unexpected argument \"extra\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(binary, c.args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != c.code || !strings.Contains(out.String(), c.out) {
				t.Fatalf("exit %d, output %q; want exit %d containing %q", code, out.String(), c.code, c.out)
			}
		})
	}
}

// TestSignals runs the binary: SIGHUP reloads the config, SIGTERM exits cleanly.
func TestSignals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	api, admin := freePort(t), freePort(t)
	cfg := func(endpoints string) string {
		return "server: {listen: \"" + api + "\", admin_listen: \"" + admin + "\", shutdown_grace: 2s}\n" +
			"backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\nendpoints:\n" + endpoints
	}
	path := writeFile(t, dir, "tollgate.yaml", cfg("  - {name: one, type: chat, routes: [{backend: up}]}\n"))
	cmd, logs := startServe(t, path)
	models := func() string {
		resp, err := http.Get("http://" + api + "/v1/models")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var body struct{ Data []struct{ ID string } }
		json.NewDecoder(resp.Body).Decode(&body)
		var ids []string
		for _, d := range body.Data {
			ids = append(ids, d.ID)
		}
		return strings.Join(ids, ",")
	}
	waitUntil(t, func() bool { return models() == "one" })
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v", err)
	}
	// Write in place (no rename) so only SIGHUP, not the watcher's rename handling, is
	// certain to be what reloads.
	if err := os.WriteFile(path, []byte(cfg("  - {name: one, type: chat, routes: [{backend: up}]}\n  - {name: two, type: chat, routes: [{backend: up}]}\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, func() bool { return models() == "one,two" })
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
}

// A second SIGTERM while the gateway drains a request ends it at once, instead of
// after shutdown_grace. It runs alone: the second SIGTERM, sent 1 s after the first,
// ends the process only if the gateway has taken the first in by then.
func TestSecondSignalStopsDraining(t *testing.T) {
	dir := t.TempDir()
	api, admin := freePort(t), freePort(t)
	path := writeFile(t, dir, "tollgate.yaml", "server: {listen: \""+api+"\", admin_listen: \""+admin+"\", shutdown_grace: 60s}\n"+
		"backends:\n  slow: {provider: mock, model: m, mock: {ttft: 60s}}\n"+
		"endpoints:\n  - {name: chat, type: chat, routes: [{backend: slow}]}\n")
	cmd, logs := startServe(t, path)
	waitUntil(t, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// A request the drain waits for: its first token is a minute away.
	go func() {
		resp, err := http.Post("http://"+api+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	// The drain waits for it only once the gateway has it.
	waitUntilWithin(t, 20*time.Second, func() bool { return inFlight(admin, "chat") == 1 })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		t.Fatalf("exited (%v) while a request was in flight, before shutdown_grace:\n%s", err, logs.String())
	case <-time.After(time.Second):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("a second SIGTERM did not end the drain:\n%s", logs.String())
	}
}

// lineBuffer collects a child process's log lines, written from another goroutine.
type lineBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// String is what was written so far: a child process's stderr, read while the
// process writes it (exec copies it in from a pipe on a goroutine of its own).
func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// startServe runs the binary on the config at path until the test ends; logs gathers
// its stderr.
func startServe(t *testing.T, path string) (*exec.Cmd, *lineBuffer) {
	t.Helper()
	logs := &lineBuffer{}
	cmd := exec.Command(binary, "--config", path)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, logs
}

// waitUntil polls cond for up to 20 s: a gateway process starting, reloading or
// draining beside the whole -race suite on two cores can take seconds to get there.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	waitUntilWithin(t, 20*time.Second, cond)
}

// inFlight is the gateway's tollgate_in_flight_requests for endpoint, read from its
// admin listener; -1 when it cannot be read.
func inFlight(admin, endpoint string) float64 {
	fams, err := promtest.Scrape("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	n, _ := promtest.Sum(fams, "tollgate_in_flight_requests", func(l map[string]string) bool { return l["endpoint"] == endpoint })
	return n
}

func waitUntilWithin(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
