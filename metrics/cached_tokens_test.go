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
func TestCachedInputTokens(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	vllm := m.Route("chat", "llama", "stable")
	claude := m.Route("chat", "claude", "canary")
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
		{"no writes is a zero series", "tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "cache_write"}, 0},
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
	if f := fams["tollgate_cached_input_tokens_total"]; f.GetType().String() != "COUNTER" || len(f.GetMetric()) != 4 {
		t.Errorf("tollgate_cached_input_tokens_total: %v with %d series, want a counter with 4", f.GetType(), len(f.GetMetric()))
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
