package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
)

// /readyz?exclude=upstreams is the gateway's own readiness, for Kubernetes' probe: an
// endpoint whose every target is down fails /readyz but not it (the gateway answers
// that endpoint's calls itself, and stays in its Service so that calls reach it to
// try the targets again); a drain fails both.
func TestReadyzExcludeUpstreams(t *testing.T) {
	t.Parallel()
	p, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  down: {provider: openai, base_url: "http://127.0.0.1:`+strconv.Itoa(p)+`/v1", model: m, health: {path: /health, interval: 1s, timeout: 200ms}}
  demo: {provider: mock, model: m}
endpoints:
  - {name: down, type: chat, routes: [{backend: down}]}
  - {name: chat, type: chat, routes: [{backend: demo}]}
`)
	status := func(path string) int {
		resp, err := http.Get("http://" + g.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(5 * time.Second)
	for status("/readyz?exclude=upstreams") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz?exclude=upstreams never 200")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := status("/readyz"); n != 503 {
		t.Fatalf("/readyz with an endpoint down: %d", n)
	}
	for model, want := range map[string]int{"down": 503, "chat": 200} {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The endpoint down is answered by the gateway (no healthy target, or its
		// last-resort try unreachable), the other served.
		if want == 503 && (resp.StatusCode < 500 || !strings.Contains(string(b), `"error"`)) || want == 200 && resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", model, resp.StatusCode, b)
		}
	}
	g.draining.Store(true)
	defer g.draining.Store(false)
	for _, path := range []string{"/readyz", "/readyz?exclude=upstreams"} {
		if n := status(path); n != 503 {
			t.Fatalf("%s while draining: %d", path, n)
		}
	}
}
