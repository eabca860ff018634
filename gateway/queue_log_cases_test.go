package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// A request refused at once because the backend's queue is full (503
// upstream_overloaded, outcome full) never waited: its access line has no queue_ms.
func TestQueueMSAbsentWhenRefusedByFullQueue(t *testing.T) {
	t.Parallel()
	u := startHeldUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 2s}
backends:
  up: {provider: openai, base_url: "http://`+u.addr+`/v1", model: up-model, max_concurrency: 1,
       queue: {size: 1, timeout: 20s}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	t.Cleanup(func() { close(u.release) })
	done := make(chan error, 4)
	askChat(g, "h1", done)
	if c := u.next(t); c != "h1" {
		t.Fatalf("upstream got %s first, want h1", c)
	}
	askChat(g, "h2", done)
	queueGauge(t, g, 1)
	refused := make(chan error, 1)
	askChat(g, "h3", refused)
	var apiErr *openai.Error
	select {
	case err := <-refused:
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
			t.Fatalf("h3: %v; expected 503 upstream_overloaded (queue full)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("h3 still waiting; expected 503 at once (queue full)")
	}
	line := accessLine(t, g, "h3")
	for range 2 {
		u.release <- struct{}{}
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if q, ok := line["queue_ms"]; ok {
		t.Fatalf("observed queue_ms %v on the access line of h3, refused at once by a full queue (outcome full); "+
			"expected no queue_ms: it never waited", q)
	}
}

// queue.fair: ip with a weight for an IPv6 address in capital hex digits
// ({"2001:DB8::1": 4}): any spelling of the address names the tenant.
func TestFairIPWeightOfAddressInCapitals(t *testing.T) {
	t.Parallel()
	u := startHeldUpstream(t)
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 2s, trusted_proxies: ["127.0.0.1/32"]}
backends:
  up: {provider: openai, base_url: "http://`+u.addr+`/v1", model: up-model, max_concurrency: 1,
       queue: {size: 8, timeout: 20s, fair: ip, weights: {"2001:DB8::1": 4}}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Validate(path); err != nil {
		return // refused with its key named: no weight silently dead
	}
	g := serveConfig(t, path)
	t.Cleanup(func() { close(u.release) })
	order := weightedOrder(t, g, u, "2001:db8::9", "2001:db8::2", "2001:db8::1")
	want := []string{"b1", "b2", "b3", "a2", "a3"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("observed upstream order %v after h1 (2001:db8::1, weighted 4 as \"2001:DB8::1\", served as weight 1, "+
				"the config accepted); expected %v, or the config refused", order, want)
		}
	}
}
