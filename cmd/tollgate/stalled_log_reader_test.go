package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chatBody is a chat request to opsCfg's endpoint.
const chatBody = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`

// startStalledStderr runs the binary on opsCfg (mock backend, access log on,
// shutdown_grace 1s) with its stderr a pipe the test holds open and never reads, as a
// log shipper under back-pressure (its sink slow, a GC pause, SIGSTOP) holds it, and
// returns once the gateway is ready.
func startStalledStderr(t *testing.T) (cmd *exec.Cmd, api, admin string) {
	t.Helper()
	dir := t.TempDir()
	api, admin = freePort(t), freePort(t)
	path := writeFile(t, dir, "tollgate.yaml", strings.Replace(opsCfg(api, admin, "0ms", "1s"), "access_log: false", "access_log: true", 1))
	cmd = exec.Command(binary, "--config", path)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() }) // held open, never read: the reader is stalled, not gone
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitUntil(t, func() bool { return statusOf("http://"+admin+"/readyz") == 200 })
	return cmd, api, admin
}

// Once the pipe's 64 KiB buffer is full every write to it blocks. The access line is
// written before the answer leaves; written straight to stderr under one lock, it made
// every request wait for the log reader, while /readyz kept saying 200. Envoy and nginx
// keep serving and drop or buffer log lines: the gateway queues them (logq) and drops
// what exceeds the queue, never an answer.
func TestStalledStderrReaderKeepsAnswering(t *testing.T) {
	t.Parallel()
	_, api, admin := startStalledStderr(t)
	c := &http.Client{Timeout: 5 * time.Second}
	post := func() (int, error) {
		resp, err := c.Post("http://"+api+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// ~400 B an access line: 1000 requests write ~400 KB, six times the pipe's buffer.
	const n = 1000
	for i := 0; i < n; i++ {
		code, err := post()
		if err != nil || code != 200 {
			ready := statusOf("http://" + admin + "/readyz")
			t.Fatalf("request %d of %d with stderr's reader stalled: observed status %d, error %v (admin /readyz still %d); expected 200: a stalled log reader must cost log lines, not the gateway's answers",
				i+1, n, code, err, ready)
		}
	}
}

// With the log reader stalled, the gateway is stopped (a rollout, a node drain).
// README: SIGTERM drains "for up to server.shutdown_grace ... then exit", and "the
// process exits within about shutdown_grace plus 2 s even behind an upstream that never
// answers". The "shutting down" line and the handlers writing their access lines used
// to wait on the blocked write, and the process on them, until the orchestrator's
// SIGKILL; the queued lines now get 1 s to be written at exit.
func TestStalledStderrReaderLetsShutdownFinish(t *testing.T) {
	t.Parallel()
	cmd, api, _ := startStalledStderr(t)
	c := &http.Client{Timeout: time.Second}
	// Fill the pipe: ~400 B an access line, 64 KiB of buffer.
	for i := 0; i < 1000; i++ {
		resp, err := c.Post("http://"+api+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// shutdown_grace is 1s: README bounds the exit at about grace + 2 s; 15 s is ample.
	if _, ok := exitStatus(t, cmd, 15*time.Second); !ok {
		t.Fatalf("with stderr's reader stalled, SIGTERM with shutdown_grace 1s: observed the process still running 15 s later; expected it to drain and exit within about shutdown_grace + 2 s (log lines dropped rather than the process held)")
	}
}

// With a reader that reads, the queue costs nothing at exit: every access line and the
// shutdown's own lines are written before the process ends.
func TestShutdownWritesEveryQueuedLogLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	api, admin := freePort(t), freePort(t)
	path := writeFile(t, dir, "tollgate.yaml", strings.Replace(opsCfg(api, admin, "0ms", "1s"), "access_log: false", "access_log: true", 1))
	cmd, logs := startServe(t, path)
	waitUntil(t, func() bool { return statusOf("http://"+admin+"/readyz") == 200 })
	const n = 50
	for i := 0; i < n; i++ {
		resp, err := http.Post("http://"+api+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, ok := exitStatus(t, cmd, 10*time.Second)
	if !ok || code != 0 {
		t.Fatalf("SIGTERM: exited %v with status %d, want 0", ok, code)
	}
	out := logs.String()
	if got := strings.Count(out, `"msg":"request"`); got != n {
		t.Errorf("%d access lines written, want %d:\n%s", got, n, out)
	}
	if !strings.Contains(out, `"msg":"shutting down"`) {
		t.Errorf("no shutting down line:\n%s", out)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(l, "{") || !strings.HasSuffix(l, "}") {
			t.Errorf("line not whole: %q", l)
		}
	}
}
