package gateway

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// hangingUpstream accepts connections and never answers on them: a target whose
// health check hangs until health.timeout.
func hangingUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// readyzOf is /readyz's status and body.
func readyzOf(t *testing.T, g *gw) (int, map[string]any) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + g.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("/readyz body %q: %v", raw, err)
	}
	return resp.StatusCode, body
}

// backendUp is tollgate_backend_up of backend's targets, summed, from a real scrape.
func backendUp(t *testing.T, g *gw, backend string) float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := promtest.Sum(fams, "tollgate_backend_up", func(l map[string]string) bool { return l["backend"] == backend })
	if !ok {
		t.Fatal("no tollgate_backend_up in the scrape")
	}
	return v
}

// Kubernetes: a pod starts while the only backend of its endpoint is down. With the
// default thresholds (three failed checks to take a target out) a gateway that counted
// unchecked targets healthy would be put behind its Service at once, and stay there
// for three health intervals (here an hour), failing every request. The first check
// decides: /readyz fails from the start and goes on failing.
func TestReadyzFailsAtStartWithEveryTargetDown(t *testing.T) {
	dead := holdPort(t).Addr()
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  down: {provider: openai, base_url: "http://`+dead+`/v1", model: up-model, connect_timeout: 500ms,
         health: {interval: 1h, timeout: 2s}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: down}]}
logging: {level: error}
`)
	if code, body := readyzOf(t, g); code != 503 {
		t.Fatalf("/readyz at start: %d %v, want 503: the endpoint's only target is unreachable", code, body)
	}
	if !waitWithin(20*time.Second, func() bool { return backendUp(t, g, "down") == 0 }) {
		t.Fatal("tollgate_backend_up of the unreachable target still 1 after its first check")
	}
	if code, body := readyzOf(t, g); code != 503 {
		t.Fatalf("/readyz after the first check found the only target down: %d %v", code, body)
	}
}

// /readyz waits for the first round of active checks, and no longer than a check may
// take: a target whose check hangs keeps the pod unready until health.timeout, then
// counts down, and the endpoint's fallback (a backend without active checks, healthy
// at once) makes it ready.
func TestReadyzWaitsForFirstHealthChecks(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	hang := hangingUpstream(t)
	_, spare := startMock(t, mockllm.Options{MaxTokens: 2})
	start := time.Now()
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stuck: {provider: openai, base_url: "http://`+hang+`/v1", model: up-model,
          health: {interval: 1h, timeout: `+timeout.String()+`}}
  spare: {provider: openai, base_url: "http://`+spare+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: stuck}], fallbacks: [spare]}
logging: {level: error}
`)
	code, body := readyzOf(t, g)
	// Only an answer given before the hung check can have timed out tells anything.
	if time.Since(start) < timeout {
		if code != 503 {
			t.Fatalf("/readyz before the first health check ended: %d %v, want 503", code, body)
		}
		if r, _ := body["reason"].(string); !strings.Contains(r, "health checks") {
			t.Errorf("/readyz reason %q, want it to say the health checks have not run yet", r)
		}
	} else {
		t.Logf("first /readyz answered %s after start, past the check's timeout", time.Since(start))
	}
	if !waitWithin(timeout+20*time.Second, func() bool { c, _ := readyzOf(t, g); return c == 200 }) {
		t.Fatalf("/readyz still not 200 %s after start: a hanging health check must not hold readiness past health.timeout (%s)", time.Since(start), timeout)
	}
	if up := backendUp(t, g, "stuck"); up != 0 {
		t.Errorf("tollgate_backend_up of the target whose first check timed out: %v, want 0", up)
	}
}

// A reload that adds a backend with active checks to a ready gateway does not take it
// out of its load balancer while the new target's first check runs: readiness of a
// running gateway does not flap on a reload.
func TestReadyzSteadyWhileReloadedTargetsAreChecked(t *testing.T) {
	_, spare := startMock(t, mockllm.Options{MaxTokens: 2})
	release := make(chan struct{})
	var once sync.Once
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		once.Do(func() { close(release) })
		health.Close()
	})
	base := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  spare: {provider: openai, base_url: "http://` + spare + `/v1", model: up-model}
`
	g := startGateway(t, base+`
endpoints:
  - {name: chat, type: chat, routes: [{backend: spare}]}
logging: {level: error}
`)
	if !waitWithin(20*time.Second, func() bool { c, _ := readyzOf(t, g); return c == 200 }) {
		t.Fatal("/readyz not 200 without any active check")
	}
	next := base + `  slow: {provider: openai, base_url: "` + health.URL + `/v1", model: up-model, health: {interval: 1h, timeout: 30s}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: spare}]}
  - {name: added, type: chat, routes: [{backend: slow}]}
logging: {level: error}
`
	if err := os.WriteFile(g.path, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	// The new target's first check is held until release: readiness must hold.
	for range 5 {
		if code, body := readyzOf(t, g); code != 200 {
			t.Fatalf("/readyz %d %v while a target the reload added awaits its first check", code, body)
		}
	}
	once.Do(func() { close(release) })
	if !waitWithin(20*time.Second, func() bool { return backendUp(t, g, "slow") == 1 }) {
		t.Fatal("the added target not up after its first check passed")
	}
	if code, body := readyzOf(t, g); code != 200 {
		t.Fatalf("/readyz %d %v after the added target's first check passed", code, body)
	}
}
