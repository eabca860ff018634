package main

// The real binary under an operator's deployment: readiness, new connections and a
// SIGHUP during a SIGTERM drain; a port in use; no files written to the working
// directory or $TMPDIR.

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Operator (Kubernetes rolling update): SIGTERM while a request is in flight. The pod
// must report not-ready on /readyz during the drain (so the endpoints controller and
// any LB probing it stop sending), the in-flight request must finish with 200, and the
// process must exit 0 (a non-zero exit marks the pod Failed and pages people). A SIGHUP
// (a config-reloader sidecar) arriving during the drain must not disturb it. It runs
// alone: its checks must all be done within the request's 3 s to its first token.
func TestServeSIGTERMDrainsThenExits(t *testing.T) {
	dir := t.TempDir()
	api, admin := freePort(t), freePort(t)
	// The request's first token 3s away: the drain outlasts the checks below.
	path := writeFile(t, dir, "tollgate.yaml", opsCfg(api, admin, "3s", "10s"))
	cmd, logs := startServe(t, path)
	waitUntil(t, func() bool { return statusOf("http://"+admin+"/readyz") == 200 })
	got := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+api+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			got <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	// The drain waits for it only once the gateway has it.
	waitUntil(t, func() bool { return inFlight(admin, "chat") == 1 })
	cmd.Process.Signal(syscall.SIGTERM)
	// The drain begins when the signal has been handled: not ready from then on.
	readyz := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if readyz = statusOf("http://" + admin + "/readyz"); readyz != 200 {
			break
		}
	}
	if readyz != 503 {
		t.Errorf("/readyz during the drain: observed %d, expected 503", readyz)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	// The API listener closes right after /readyz turns: poll for that, not for a
	// scheduling race.
	accepting := true
	for end := time.Now().Add(5 * time.Second); accepting && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", api, 500*time.Millisecond)
		if accepting = err == nil; accepting {
			c.Close()
		}
	}
	if accepting {
		t.Errorf("API listener still accepts new connections during the drain")
	}
	// Still draining (the admin listener closes only after the drain): the refusal
	// above was the drain's, not the exit's.
	if code := statusOf("http://" + admin + "/healthz"); code != 200 {
		t.Errorf("/healthz during the drain: observed %d, expected 200 (liveness must not fail, or the kubelet kills the draining pod)", code)
	}
	select {
	case code := <-got:
		if code != 200 {
			t.Errorf("in-flight request during the drain: observed %d, expected 200\n%s", code, logs.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	code, ok := exitStatus(t, cmd, 5*time.Second)
	if !ok {
		t.Fatalf("did not exit after the drain\n%s", logs.String())
	}
	if code != 0 {
		t.Fatalf("exit status after SIGTERM drain: observed %d, expected 0\n%s", code, logs.String())
	}
}

// Operator: a second replica started on the same host port (or a stale process still
// holding it). The gateway must exit non-zero at once with an error naming the
// address, not hang or exit 0 (systemd Restart=on-failure and the kubelet rely on it).
func TestServePortInUse(t *testing.T) {
	for _, which := range []string{"listen", "admin_listen"} {
		t.Run(which, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			api, admin := freePort(t), freePort(t)
			if which == "listen" {
				api = ln.Addr().String()
			} else {
				admin = ln.Addr().String()
			}
			path := writeFile(t, t.TempDir(), "tollgate.yaml", opsCfg(api, admin, "1ms", "1s"))
			cmd, logs := startServe(t, path)
			code, ok := exitStatus(t, cmd, 10*time.Second)
			if !ok {
				t.Fatalf("%s in use: still running after 10s, expected a prompt non-zero exit\n%s", which, logs.String())
			}
			if code == 0 || !strings.Contains(logs.String(), ln.Addr().String()) || !strings.Contains(logs.String(), "in use") {
				t.Fatalf("%s in use: observed exit %d and log %q; expected non-zero and a message naming %s in use", which, code, logs.String(), ln.Addr())
			}
		})
	}
}

// Operator: the container runs with readOnlyRootFilesystem and a read-only working
// directory. Serving, a reload and a shutdown must write nothing to the working
// directory or $TMPDIR (a write there fails in production and litters hosts elsewhere).
func TestServeWritesNothingToCwdOrTmp(t *testing.T) {
	t.Parallel()
	conf, cwd, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	api, admin := freePort(t), freePort(t)
	path := writeFile(t, conf, "tollgate.yaml", opsCfg(api, admin, "1ms", "2s"))
	logs := &lineBuffer{}
	cmd := exec.Command(binary, "--config", path)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitUntil(t, func() bool { return statusOf("http://"+admin+"/readyz") == 200 })
	resp, err := http.Post("http://"+api+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := exitStatus(t, cmd, 5*time.Second); !ok || code != 0 {
		t.Fatalf("exit: %d %v\n%s", code, ok, logs.String())
	}
	for _, d := range []string{cwd, tmp, conf} {
		ents, _ := os.ReadDir(d)
		var names []string
		for _, e := range ents {
			if e.Name() != "tollgate.yaml" {
				names = append(names, e.Name())
			}
		}
		if len(names) > 0 {
			t.Errorf("files written to %s: observed %v, expected none", d, names)
		}
	}
}
