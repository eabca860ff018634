package main

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A burst of connections (a retry storm, a load balancer opening its pools) takes the
// gateway to its open-file limit, and accept(2) fails with EMFILE until some close.
// The gateway rides it out, as nginx and net/http do: it keeps serving, the request in
// flight gets its answer, and the connections over the limit wait in the listen queue
// meanwhile. fasthttp alone takes the error for the listener's end. It runs alone: it
// must see the request in flight within the 1.5 s to its first token.
func TestServeRidesOutOpenFileLimit(t *testing.T) {
	dir := t.TempDir()
	api, admin := freePort(t), freePort(t)
	path := writeFile(t, dir, "tollgate.yaml", opsCfg(api, admin, "1500ms", "10s"))
	logs := &lineBuffer{}
	// A low open-file limit, soft and hard (the Go runtime raises the soft one to the
	// hard one at start).
	cmd := exec.Command("sh", "-c", `ulimit -n 64 && exec "$0" --config "$1"`, binary, path)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	waitUntil(t, func() bool { return statusOf("http://"+admin+"/readyz") == 200 })

	// A request in flight, answered 1.5s from now.
	got := make(chan string, 1)
	go func() {
		resp, err := http.Post("http://"+api+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			got <- err.Error()
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- resp.Status
	}()
	// In flight once the gateway has it, before the burst.
	waitUntil(t, func() bool { return inFlight(admin, "chat") == 1 })
	// The burst: more connections than the limit allows, held a moment, then closed.
	var conns []net.Conn
	for range 100 {
		c, err := net.DialTimeout("tcp", api, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
	select {
	case <-done:
		t.Fatalf("the gateway exited (status %d) at the open-file limit; want it to keep serving\nlogs:\n%s",
			cmd.ProcessState.ExitCode(), logs)
	case <-time.After(300 * time.Millisecond):
	}
	select {
	case st := <-got:
		if st != "200 OK" {
			t.Errorf("request in flight during the burst: %q, want 200 OK", st)
		}
	case <-time.After(4 * time.Second):
		t.Error("request in flight during the burst: no answer within 4s")
	}
	if code := statusOf("http://" + admin + "/readyz"); code != 200 {
		t.Errorf("readyz after the burst: %d, want 200", code)
	}
}
