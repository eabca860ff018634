package gateway

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// fairConfig is chat on a backend that serves one request at a time, its queue shared
// by API key, with two keys: heavy and light.
func fairConfig(upstream string, size int) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 2s}
auth:
  mode: keys
  keys:
    - {name: heavy, key: heavy-secret-1}
    - {name: light, key: light-secret-1}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, max_concurrency: 1,
       queue: {size: ` + strconv.Itoa(size) + `, timeout: 20s, fair: api_key, weights: {heavy: 1, light: 1}}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
}

// askAs sends a chat request with key and name (as X-Test-Client), its result on out.
func askAs(g *gw, key, name string, out chan<- error) {
	askChat(g, name, out, option.WithAPIKey(key))
}

// askChat sends a chat request named name (X-Test-Client and X-Request-Id), with opts,
// its result on out.
func askChat(g *gw, name string, out chan<- error, opts ...option.RequestOption) {
	c := g.client(append([]option.RequestOption{option.WithHeader("X-Test-Client", name), option.WithHeader("X-Request-Id", name)}, opts...)...)
	go func() {
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model: "chat", Messages: userMsg("hi"),
		})
		out <- err
	}()
}

// queueGauge waits until the backend's queue gauge reads n.
func queueGauge(t *testing.T, g *gw, n float64) {
	t.Helper()
	var got float64
	if !pollFor(10*time.Second, func() bool {
		_, got = seriesWith(scrapeAdmin(t, g), "tollgate_backend_queue_waiting", "backend", "up")
		return got == n
	}) {
		t.Fatalf("tollgate_backend_queue_waiting %v, want %v", got, n)
	}
}

// README, Replica pools: with queue.fair: api_key, a key that floods a backend at
// max_concurrency waits behind its own requests: another key's request, sent after the
// flood, is served in its turn, second, not after the whole flood. The queue's series
// say what happened.
func TestFairQueueByAPIKey(t *testing.T) {
	t.Parallel()
	u := startHeldUpstream(t)
	g := startGateway(t, fairConfig(u.addr, 8))
	t.Cleanup(func() { close(u.release) }) // before the gateway stops
	done := make(chan error, 8)
	askAs(g, "heavy-secret-1", "h1", done)
	if c := u.next(t); c != "h1" {
		t.Fatalf("upstream got %s first, want h1", c)
	}
	fams := scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_backend_in_flight", "backend", "up"); v != 1 {
		t.Fatalf("tollgate_backend_in_flight %v, want 1", v)
	}
	for i, name := range []string{"h2", "h3", "h4", "h5"} {
		askAs(g, "heavy-secret-1", name, done)
		queueGauge(t, g, float64(i+1))
	}
	askAs(g, "light-secret-1", "l1", done)
	queueGauge(t, g, 5)
	if _, v := seriesWith(scrapeAdmin(t, g), "tollgate_backend_queue_tenants", "backend", "up"); v != 2 {
		t.Fatalf("tollgate_backend_queue_tenants %v, want 2", v)
	}
	var order []string
	for range 5 {
		u.release <- struct{}{}
		order = append(order, u.next(t))
	}
	u.release <- struct{}{}
	want := []string{"h2", "l1", "h3", "h4", "h5"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("upstream served %v after h1, want %v", order, want)
		}
	}
	for range 6 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	fams = scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_backend_queue_requests_total", "backend", "up", "outcome", "served"); v != 5 {
		t.Errorf("served from the queue %v, want 5", v)
	}
	if n, _ := seriesWith(fams, "tollgate_backend_queue_requests_total", "backend", "up"); n != 6 {
		t.Errorf("%d outcome series, want 6 (every outcome from the start)", n)
	}
	h := fams["tollgate_backend_queue_wait_seconds"]
	if h == nil || len(h.Metric) != 1 || h.Metric[0].GetHistogram().GetSampleCount() != 5 || h.Metric[0].GetHistogram().GetSampleSum() <= 0 {
		t.Errorf("tollgate_backend_queue_wait_seconds %v, want 5 waits", h)
	}
	for _, name := range []string{"tollgate_backend_queue_waiting", "tollgate_backend_queue_tenants", "tollgate_backend_in_flight"} {
		if _, v := seriesWith(fams, name, "backend", "up"); v != 0 {
			t.Errorf("%s %v once every request is done, want 0", name, v)
		}
	}
	// The access log says how long each request waited in the queue; h1 never did.
	if q, ok := accessLine(t, g, "h5")["queue_ms"].(float64); !ok || q <= 0 {
		t.Errorf("h5's access line: queue_ms %v, want its wait", accessLine(t, g, "h5")["queue_ms"])
	}
	if _, ok := accessLine(t, g, "h1")["queue_ms"]; ok {
		t.Error("h1's access line has a queue_ms: it never waited")
	}
}

// A full fair queue gives the place of the flooding key's newest request to the other
// key's: that request fails 503 upstream_overloaded, counted as pushed_out.
func TestFairQueuePushOutAnswers503(t *testing.T) {
	t.Parallel()
	u := startHeldUpstream(t)
	g := startGateway(t, fairConfig(u.addr, 2))
	t.Cleanup(func() { close(u.release) })
	done := make(chan error, 8)
	askAs(g, "heavy-secret-1", "h1", done)
	if c := u.next(t); c != "h1" {
		t.Fatalf("upstream got %s first, want h1", c)
	}
	askAs(g, "heavy-secret-1", "h2", done)
	queueGauge(t, g, 1)
	pushed := make(chan error, 1)
	askAs(g, "heavy-secret-1", "h3", pushed)
	queueGauge(t, g, 2)
	askAs(g, "light-secret-1", "l1", done)
	var apiErr *openai.Error
	select {
	case err := <-pushed:
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "upstream_overloaded" {
			t.Fatalf("h3: %v, want 503 upstream_overloaded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("h3 still waiting once l1 came to the full queue")
	}
	var order []string
	for range 2 {
		u.release <- struct{}{}
		order = append(order, u.next(t))
	}
	u.release <- struct{}{}
	if order[0] != "h2" || order[1] != "l1" {
		t.Fatalf("upstream served %v after h1, want [h2 l1]", order)
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	fams := scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_backend_queue_requests_total", "backend", "up", "outcome", "pushed_out"); v != 1 {
		t.Errorf("pushed_out %v, want 1", v)
	}
}
