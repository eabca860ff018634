package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
)

// keepingHandler is an slog.Handler that keeps the records it is given, as buffering
// and asynchronous handlers do: slog's Handler contract lets a handler retain a Record
// once it has cloned it, and its string values are Go strings, which never change.
type keepingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *keepingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *keepingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *keepingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *keepingHandler) WithGroup(string) slog.Handler      { return h }

// With a logger handed in through Options, whose handler keeps its records, each
// access line keeps its own request's request_id and trace_id after later requests
// have reused the pooled request they came from.
func TestAccessLogKeptRecordsKeepTheirRequest(t *testing.T) {
	h := &keepingHandler{}
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+startStaticUpstream(t)+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: info}
`, Options{Logger: slog.New(h)})
	const n = 20
	traceID := func(i int) string { return fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e47%02d", i) }
	for i := range n {
		ctx := newProxyCtx(benchChatBody)
		ctx.Request.Header.Set("X-Request-Id", fmt.Sprintf("request-%02d", i))
		ctx.Request.Header.Set("traceparent", "00-"+traceID(i)+"-00f067aa0ba902b7-01")
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	i := 0
	for _, r := range h.recs {
		if r.Message != "request" {
			continue
		}
		want := map[string]string{"request_id": fmt.Sprintf("request-%02d", i), "trace_id": traceID(i), "client_ip": "127.0.0.1"}
		r.Attrs(func(a slog.Attr) bool {
			if w, ok := want[a.Key]; ok && a.Value.String() != w {
				t.Errorf("access line %d: %s %q, want %q (the string changed after it was logged)", i, a.Key, a.Value.String(), w)
			}
			return true
		})
		i++
	}
	if i != n {
		t.Fatalf("%d access lines, want %d", i, n)
	}
}
