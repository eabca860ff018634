package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// opsCfg is a config on api/admin with one mock chat endpoint whose first token
// comes after ttft.
func opsCfg(api, admin, ttft, grace string) string {
	return "server: {listen: \"" + api + "\", admin_listen: \"" + admin + "\", shutdown_grace: " + grace + "}\n" +
		"backends:\n  slow: {provider: mock, model: m, mock: {ttft: " + ttft + ", max_tokens: 2}}\n" +
		"endpoints:\n  - {name: chat, type: chat, routes: [{backend: slow}]}\n" +
		"logging: {level: info, access_log: false}\n"
}

func statusOf(url string) int {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// exitStatus waits for cmd with a limit and returns its exit code (-1 on a signal).
func exitStatus(t *testing.T, cmd *exec.Cmd, within time.Duration) (int, bool) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), true
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, true
	case <-time.After(within):
		return 0, false
	}
}

// Operator: the gateway's stderr is a pipe to a log shipper (systemd-journald's stream,
// `tollgate 2>&1 | logger`, a supervisord or sidecar pipe) and that reader goes away
// (journald restarted, the shipper crashed). Go kills a process with SIGPIPE on a write
// to a broken pipe on fd 1 or 2 unless SIGPIPE is notified or ignored, so the next log
// line (an access-log line) takes the whole gateway down with every stream in flight.
// Losing log lines is expected; losing the gateway is not.
func TestServeSurvivesBrokenStderrPipe(t *testing.T) {
	dir := t.TempDir()
	api, admin := freePort(t), freePort(t)
	path := writeFile(t, dir, "tollgate.yaml", strings.Replace(opsCfg(api, admin, "1ms", "1s"), "access_log: false", "access_log: true", 1))
	cmd := exec.Command(binary, "--config", path)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	go io.Copy(io.Discard, r)
	waitUntil(t, func() bool { return statusOf("http://"+admin+"/readyz") == 200 })
	r.Close() // the log reader goes away
	post := func() int {
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Post("http://"+api+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			return -1
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 5; i++ {
		post()
		time.Sleep(20 * time.Millisecond)
	}
	if code := post(); code != 200 {
		state := "still running"
		if code, ok := exitStatus(t, cmd, time.Second); ok {
			state = "exited with status " + strconv.Itoa(code)
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				state = "killed by " + ws.Signal().String()
			}
		}
		t.Fatalf("after its stderr reader went away: observed request status %d, gateway %s; expected 200 and the gateway serving (log lines dropped)", code, state)
	}
}
