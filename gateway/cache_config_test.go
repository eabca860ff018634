package gateway

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestCacheConfig: cache: is checked as the config's other keys are, each problem
// naming its key; sizes are written as the other sizes.
func TestCacheConfig(t *testing.T) {
	cfg := func(ep, cache string) string {
		return `
backends:
  up: {provider: mock, model: m}
endpoints:
  - ` + ep + `, routes: [{backend: up}], cache: ` + cache + `
`
	}
	for _, tc := range []struct {
		name, ep, cache, want string
	}{
		{"defaults", "{name: chat, type: chat", "{ttl: 1h}}", ""},
		{"sizes as sizes", "{name: embed, type: embeddings", "{ttl: 30s, max_bytes: 256MiB, max_entry_bytes: 512KB, shared: true}}", ""},
		{"thirty days", "{name: chat, type: completions", "{ttl: 720h}}", ""},
		{"no ttl", "{name: chat, type: chat", "{max_bytes: 1MiB}}", "endpoints[0].cache.ttl: is required"},
		{"ttl zero", "{name: chat, type: chat", "{ttl: 0s}}", "endpoints[0].cache.ttl: must be more than 0"},
		{"ttl negative", "{name: chat, type: chat", "{ttl: -1m}}", "endpoints[0].cache.ttl: must be more than 0"},
		{"ttl too long", "{name: chat, type: chat", "{ttl: 721h}}", "endpoints[0].cache.ttl: must be at most 720h"},
		{"max_bytes under an entry", "{name: chat, type: chat", "{ttl: 1h, max_bytes: 512KiB}}", "endpoints[0].cache.max_bytes: must be at least max_entry_bytes (1048576 bytes)"},
		{"max_bytes zero", "{name: chat, type: chat", "{ttl: 1h, max_bytes: 0}}", "endpoints[0].cache.max_bytes: must be at least max_entry_bytes"},
		{"entry zero", "{name: chat, type: chat", "{ttl: 1h, max_entry_bytes: 0}}", "endpoints[0].cache.max_entry_bytes: must be more than 0"},
		{"size misspelled", "{name: chat, type: chat", "{ttl: 1h, max_bytes: 2 lots}}", "endpoints[0].cache.max_bytes"},
		{"unknown key", "{name: chat, type: chat", "{ttl: 1h, max_entries: 10}}", "endpoints[0].cache.max_entries: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(cfg(tc.ep, tc.cache)), env(nil))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a problem with %q", err, tc.want)
			}
		})
	}
	c, err := ParseConfig("c.yaml", []byte(cfg("{name: chat, type: chat", "{ttl: 1h}}")), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.Endpoints[0].Cache; cc.MaxBytes != 64<<20 || cc.MaxEntryBytes != 1<<20 || cc.Shared {
		t.Errorf("defaults %+v", *cc)
	}
}

// TestCacheSpanAttribute: the request's span says what the cache did, and a hit has
// no upstream span.
func TestCacheSpanAttribute(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	yaml := strings.Replace(cacheBenchConfig(startStaticCacheUpstream(t)), "logging:", "tracing: {exporter: otlp-grpc, sample_ratio: 1}\nlogging:", 1)
	s := newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp})
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	proxyOnce(s, ctx)
	ctx.Request.Header.Set("Cache-Control", "no-store")
	proxyOnce(s, ctx)
	flush(t, s)
	spans := byName(exp.GetSpans())
	server := spans["POST /v1/chat/completions"]
	if len(server) != 3 {
		t.Fatalf("%d server spans, want 3", len(server))
	}
	for i, want := range []string{"miss", "hit", "bypass"} {
		if v, _ := attr(server[i].Snapshot(), "tollgate.cache"); v.AsString() != want {
			t.Errorf("request %d: tollgate.cache %q, want %q", i, v.Emit(), want)
		}
	}
	if v, _ := attr(server[1].Snapshot(), "tollgate.backend"); v.AsString() != "up" {
		t.Errorf("hit's tollgate.backend %q", v.Emit())
	}
	if n := len(spans["chat up-model"]); n != 2 {
		t.Errorf("%d upstream spans, want 2 (none for the hit)", n)
	}
}
