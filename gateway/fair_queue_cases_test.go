package gateway

import (
	"testing"

	"github.com/openai/openai-go/v3/option"
)

// askFrom sends a chat request as the client at ip (X-Forwarded-For through a trusted
// proxy), named name, its result on out.
func askFrom(g *gw, ip, name string, out chan<- error) {
	askChat(g, name, out, option.WithHeader("X-Forwarded-For", ip))
}

// weightedOrder has h1 from other take the backend's one slot, then queues a2 and a3
// from light and b1..b3 from heavy, and returns the order the upstream served them in.
func weightedOrder(t *testing.T, g *gw, u *heldUpstream, other, light, heavy string) []string {
	t.Helper()
	done := make(chan error, 8)
	askFrom(g, other, "h1", done)
	if c := u.next(t); c != "h1" {
		t.Fatalf("upstream got %s first, want h1", c)
	}
	// The light client (weight 1) queues first, then the weighted one.
	for i, q := range []struct{ ip, name string }{
		{light, "a2"}, {light, "a3"}, {heavy, "b1"}, {heavy, "b2"}, {heavy, "b3"},
	} {
		askFrom(g, q.ip, q.name, done)
		queueGauge(t, g, float64(i+1))
	}
	var order []string
	for range 5 {
		u.release <- struct{}{}
		order = append(order, u.next(t))
	}
	u.release <- struct{}{}
	for range 6 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	return order
}

// queue.fair: ip with queue.weights {"10.0.0.1": 4}: the address, written out as the
// limits count it, is the tenant's name, so that client is handed four slots for each
// of another client's (README, Replica pools).
func TestFairQueueWeightsByAddress(t *testing.T) {
	t.Parallel()
	u := startHeldUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 2s, trusted_proxies: ["127.0.0.1/32"]}
backends:
  up: {provider: openai, base_url: "http://`+u.addr+`/v1", model: up-model, max_concurrency: 1,
       queue: {size: 8, timeout: 20s, fair: ip, weights: {"10.0.0.1": 4}}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	t.Cleanup(func() { close(u.release) })
	order := weightedOrder(t, g, u, "10.0.0.9", "10.0.0.2", "10.0.0.1")
	want := []string{"b1", "b2", "b3", "a2", "a3"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("observed upstream order %v after h1 (10.0.0.1 weighted 4 served as weight 1); expected %v", order, want)
		}
	}
}
