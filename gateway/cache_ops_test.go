package gateway

import (
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// cacheReloadTo writes yaml to g's config file and reloads it.
func cacheReloadTo(t *testing.T, g *gw, yaml string) {
	t.Helper()
	if err := os.WriteFile(g.path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
}

// A reload that removes (or renames) an endpoint with a cache keeps its counted
// tollgate_cache_* series for Prometheus's last scrape, as its other series are kept
// (README, Observability), rather than losing the hits since the last scrape.
func TestCacheRemovedEndpointKeepsCacheSeries(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := cacheGatewayConfig(addr, "{ttl: 1h}", "")
	g := startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	for i, want := range []string{"miss", "hit", "hit"} {
		if resp, b := contractPost(t, g, "/v1/chat/completions", body, nil); resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != want {
			t.Fatalf("request %d: %d %q, want 200 %s: %s", i, resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), want, b)
		}
	}
	removed := strings.Replace(cfg, "  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}\n", "", 1)
	if removed == cfg {
		t.Fatal("the config did not change")
	}
	cacheReloadTo(t, g, removed)
	fams := contractScrape(t, g)
	if n := endpointSeries(fams, "tollgate_requests_total", "chat"); n == 0 {
		t.Fatalf("tollgate_requests_total{endpoint=chat} already gone: the premise (its series are kept after the reload) does not hold")
	}
	hits, _ := promtest.Sum(fams, "tollgate_cache_requests_total", func(l map[string]string) bool {
		return l["endpoint"] == "chat" && l["result"] == "hit"
	})
	if n := endpointSeries(fams, "tollgate_cache_requests_total", "chat"); n == 0 || hits != 2 {
		t.Errorf("right after the reload that removed endpoint chat: got %d tollgate_cache_requests_total{endpoint=chat} series (hits %v) "+
			"while tollgate_requests_total{endpoint=chat} keeps %d, want the cache series kept, hits at 2, for 10 minutes as the endpoint's other series are",
			n, hits, endpointSeries(fams, "tollgate_requests_total", "chat"))
	}
}

// A miss still waiting on its upstream when shutdown_grace runs out is answered 503
// shutting_down with x-tollgate-cache, as every answer on the endpoint is.
func TestCacheShutdownCutSaysCache(t *testing.T) {
	t.Parallel()
	up, arrived, release := heldChatUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 300ms}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, timeout: 1m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}
logging: {level: info, format: json}
`)
	type answer struct {
		code  int
		cache string
		err   error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			done <- answer{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- answer{code: resp.StatusCode, cache: resp.Header.Get("X-Tollgate-Cache")}
	}()
	waitFor(t, func() bool { return arrived.Load() == 1 })
	g.stopWithin(t, 15*time.Second)
	close(release)
	var a answer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	if a.err != nil || a.code != 503 {
		t.Fatalf("the request cut at shutdown: %d %v, want 503 shutting_down", a.code, a.err)
	}
	logged := ""
	for _, l := range contractAccessLines(t, g) {
		if l["status"] == float64(503) {
			logged, _ = l["cache"].(string)
		}
	}
	if a.cache != "miss" {
		t.Errorf("503 shutting_down on an endpoint with a cache: got x-tollgate-cache %q (access line's cache %q), want \"miss\", as on every answer on the endpoint", a.cache, logged)
	}
}

// An entry's ttl passes and the next request on the endpoint is a stream (or carries
// Cache-Control: no-store): it frees the entry all the same, the gauges and the
// expired evictions saying so.
func TestCacheExpiredFreedByNextRequest(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 10m}", ""))
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	g.rt.Load().endpoints["chat"].cache.setClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	if resp, b := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, nil); resp.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Fatalf("first request: %d %q: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	mu.Lock()
	now = now.Add(11 * time.Minute)
	mu.Unlock()
	resp, b := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"other"}]}`, nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "bypass" {
		t.Fatalf("stream: %d %q: %.200s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	// The stream is recorded (and its endpoint's expired entries freed) once its last
	// byte is written, which its client may have read before: the scrape waits for it.
	var entries, expired float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := contractScrape(t, g)
		entries, _ = promtest.Sum(fams, "tollgate_cache_entries", func(l map[string]string) bool { return l["endpoint"] == "chat" })
		expired, _ = promtest.Sum(fams, "tollgate_cache_evictions_total", func(l map[string]string) bool {
			return l["endpoint"] == "chat" && l["reason"] == "expired"
		})
		if entries == 0 && expired == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if entries != 0 || expired != 1 {
		t.Errorf("after the ttl passed and the next request on the endpoint (a stream) was served: got tollgate_cache_entries %v, "+
			"evictions{reason=expired} %v, want 0 and 1 (the next request frees the expired entry)", entries, expired)
	}
}
