package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/promtest"
)

// TestCachedInputTokens: the prompt cache's tokens are counted in a family of their
// own, by endpoint, backend and type (cache_read, cache_write), as a scrape reads
// them; tollgate_tokens_total keeps its two types, whose sum is every token once.
// Every upstream's usage may report cache reads; only Anthropic's reports writes, so
// only a backend whose shape says so has a cache_write series at 0.
func TestCachedInputTokens(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	vllm := m.ShapedRoute("chat", "llama", "stable", Shape{Upstream: true, Stream: true})
	claude := m.ShapedRoute("chat", "claude", "canary", Shape{Upstream: true, Stream: true, CacheWrite: true})
	vllm.Done(200, time.Second, 0, 0, 1000, 100, 0)
	vllm.CachedInput(768, 0)
	vllm.Done(200, time.Second, 0, 0, 500, 50, 0)
	vllm.CachedInput(0, 0)
	claude.Done(200, time.Second, 0, 0, 2213, 9, 0)
	claude.CachedInput(2000, 200)

	fams, err := promtest.Scrape("http://" + serveMetrics(t, reg) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		family string
		labels map[string]string
		want   float64
	}{
		{"reads", "tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "cache_read"}, 768},
		{"Anthropic's reads", "tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": "claude", "type": "cache_read"}, 2000},
		{"Anthropic's writes", "tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": "claude", "type": "cache_write"}, 200},
		{"input tokens count the cached ones once", "tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "input"}, 1500},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := value(series(t, fams, c.family, c.labels)); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
			}
		})
	}
	if f := fams["tollgate_cached_input_tokens_total"]; f.GetType().String() != "COUNTER" || len(f.GetMetric()) != 3 {
		t.Errorf("tollgate_cached_input_tokens_total: %v with %d series, want a counter with 3", f.GetType(), len(f.GetMetric()))
	}
	if hasSeries(fams, "tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "cache_write"}) {
		t.Error("llama, whose usage reports no cache writes, has a cache_write series")
	}
	types := map[string]bool{}
	for _, s := range fams["tollgate_tokens_total"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "type" {
				types[l.GetValue()] = true
			}
		}
	}
	if len(types) != 2 || !types["input"] || !types["output"] {
		t.Errorf("tollgate_tokens_total types %v, want input and output only", types)
	}
}

// TestWebSearchRequests: the web searches an upstream ran are counted by endpoint and
// backend, apart from tokens; only a backend whose shape says it reports them
// (Anthropic's) has the series at 0 from its start.
func TestWebSearchRequests(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	vllm := m.ShapedRoute("chat", "llama", "stable", Shape{Upstream: true, Stream: true})
	claude := m.ShapedRoute("chat", "claude", "stable", Shape{Upstream: true, Stream: true, CacheWrite: true, WebSearch: true})
	m.ShapedRoute("chat", "claude-idle", "stable", Shape{Upstream: true, WebSearch: true})
	vllm.WebSearches(0)
	claude.WebSearches(2)
	claude.WebSearches(0)
	claude.WebSearches(3)

	fams, err := promtest.Scrape("http://" + serveMetrics(t, reg) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got := value(series(t, fams, "tollgate_web_search_requests_total", map[string]string{"endpoint": "chat", "backend": "claude"})); got != 5 {
		t.Errorf("claude's searches = %v, want 5", got)
	}
	if got := value(series(t, fams, "tollgate_web_search_requests_total", map[string]string{"endpoint": "chat", "backend": "claude-idle"})); got != 0 {
		t.Errorf("claude-idle's searches = %v, want 0 from the start", got)
	}
	if f := fams["tollgate_web_search_requests_total"]; f.GetType().String() != "COUNTER" || len(f.GetMetric()) != 2 {
		t.Errorf("tollgate_web_search_requests_total: %v with %d series, want a counter with 2 (none for llama)", f.GetType(), len(f.GetMetric()))
	}
}
