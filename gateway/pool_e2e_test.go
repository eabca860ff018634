package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// holdPort keeps a loopback port for the whole test: connections to it are refused
// while nothing listens on it, and no other test's server or connection can take it
// meanwhile (a closed port can be handed to the next Listen at once).
func holdPort(t testing.TB) *freeport.Held {
	t.Helper()
	h, err := freeport.Hold()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// startMockOn runs a mockllm on a held port (a replica that is stopped and brought back).
func startMockOn(t *testing.T, h *freeport.Held) *mockllm.Server {
	t.Helper()
	srv, err := mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := h.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return srv
}

// Not t.Parallel: one health check late past 200 ms ejects a replica and skews the count.
func TestPoolBalancingEjectionAndRecovery(t *testing.T) {
	var mocks []*mockllm.Server
	var addrs []string
	held := holdPort(t) // the replica that goes and comes back
	for i := range 3 {
		if i == 1 {
			mocks, addrs = append(mocks, startMockOn(t, held)), append(addrs, held.Addr())
			continue
		}
		m, a := startMock(t, mockllm.Options{MaxTokens: 2})
		mocks, addrs = append(mocks, m), append(addrs, a)
	}
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool:
    provider: openai
    targets: ["http://`+addrs[0]+`/v1", "http://`+addrs[1]+`/v1", "http://`+addrs[2]+`/v1"]
    model: up-model
    balance: round_robin
    connect_timeout: 300ms
    health: {interval: 100ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 1, eject_after: 1, eject_for: 200ms}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}], retries: 2}
logging: {level: error, access_log: false}
`)
	c := g.client()
	call := func(n int) int {
		failed := 0
		for range n {
			if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")}); err != nil {
				failed++
			}
		}
		return failed
	}
	if f := call(90); f != 0 {
		t.Fatalf("%d failures with every replica up", f)
	}
	for i, m := range mocks {
		if n := m.Stats().Requests["/v1/chat/completions"]; n < 25 || n > 35 {
			t.Errorf("replica %d served %d of 90 under round_robin", i, n)
		}
	}

	mocks[1].Shutdown()
	if f := call(60); f != 0 {
		t.Fatalf("%d requests failed after a replica died; retries should hide it", f)
	}
	waitFor(t, func() bool {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		up, ok := promtest.Sum(fams, "tollgate_backend_up", func(l map[string]string) bool {
			return l["backend"] == "pool" && l["target"] == addrs[1]
		})
		return ok && up == 0
	})
	before := [3]int64{mocks[0].Stats().Requests["/v1/chat/completions"], 0, mocks[2].Stats().Requests["/v1/chat/completions"]}
	call(20)
	if got := mocks[0].Stats().Requests["/v1/chat/completions"] + mocks[2].Stats().Requests["/v1/chat/completions"] - before[0] - before[2]; got != 20 {
		t.Fatalf("live replicas served %d of 20 while one was ejected", got)
	}

	back := startMockOn(t, held)
	waitFor(t, func() bool {
		call(3)
		return back.Stats().Requests["/v1/chat/completions"] > 0
	})
}

func TestRetriesThenFallbacksInOrder(t *testing.T) {
	dead := func() string { return holdPort(t).Addr() }
	_, alive := startMock(t, mockllm.Options{MaxTokens: 2})
	failing, failingAddr := startMock(t, mockllm.Options{MaxTokens: 2, ErrorRate: 1})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  primary: {provider: openai, base_url: "http://`+dead()+`/v1", model: up-model, connect_timeout: 200ms}
  second: {provider: openai, base_url: "http://`+failingAddr+`/v1", model: up-model}
  third: {provider: openai, base_url: "http://`+alive+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: primary}], retries: 1, fallbacks: [second, third]}
logging: {level: info}
`)
	c := g.client()
	var resp *http.Response
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")},
		option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("the last fallback should have answered: %v", err)
	}
	if got := resp.Header.Get("X-Tollgate-Backend"); got != "third" {
		t.Fatalf("served by %q, want third", got)
	}
	if n := failing.Stats().Requests["/v1/chat/completions"]; n != 1 {
		t.Fatalf("second backend tried %d times, want once", n)
	}
	if !strings.Contains(g.logs.String(), `"attempts":4`) {
		t.Fatalf("want 4 attempts (primary, its retry, second, third) in the access log:\n%s", g.logs.String())
	}
}

// TestReadyzFollowsHealth: /readyz fails only while an endpoint has no healthy target.
func TestReadyzFollowsHealth(t *testing.T) {
	t.Parallel()
	held := holdPort(t)
	m, addr := startMockOn(t, held), held.Addr()
	_, other := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  solo: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, connect_timeout: 200ms,
         health: {interval: 100ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 1}}
  spare: {provider: openai, base_url: "http://`+other+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: solo}]}
  - {name: other, type: chat, routes: [{backend: spare}]}
logging: {level: error}
`)
	ready := func() int {
		resp, err := http.Get("http://" + g.AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != 200 {
		t.Fatalf("readyz %d with every target up", code)
	}
	m.Shutdown()
	waitFor(t, func() bool { return ready() == 503 })
	startMockOn(t, held)
	waitFor(t, func() bool { return ready() == 200 })
}
