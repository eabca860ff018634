package gateway

import (
	"strings"
	"testing"
)

// HTTP server span conventions: url.query is Conditionally Required "if and only if
// one was received". A client that puts a query on its request (the Azure OpenAI SDK
// always sends ?api-version=) has it on the server span, with the value of a
// parameter that may hold a credential redacted: a key in the query never reaches a
// span.
func TestServerSpanURLQuery(t *testing.T) {
	_, addr := startFlakyUpstream(t, 0)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	for _, tc := range []struct{ name, uri, want string }{
		{"api-version", "/v1/chat/completions?api-version=2024-10-21", "api-version=2024-10-21"},
		{"key redacted", "/v1/chat/completions?api-version=2024-10-21&api-key=sk-client-secret",
			"api-version=2024-10-21&api-key=REDACTED"},
		{"none received", "/v1/chat/completions", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			ctx := newProxyCtx(benchChatBody)
			ctx.Request.SetRequestURI(tc.uri)
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			flush(t, s)
			server := byName(exp.GetSpans())["POST /v1/chat/completions"]
			if len(server) != 1 {
				t.Fatalf("%d server spans", len(server))
			}
			v, ok := attr(server[0].Snapshot(), "url.query")
			if ok != (tc.want != "") || v.AsString() != tc.want {
				t.Errorf("server span url.query = %q (present %v), want %q", v.AsString(), ok, tc.want)
			}
			for _, sp := range exp.GetSpans() {
				for _, kv := range sp.Attributes {
					if strings.Contains(kv.Value.Emit(), "sk-client-secret") {
						t.Errorf("span %s: %s holds the client's key", sp.Name, kv.Key)
					}
				}
			}
		})
	}
}
