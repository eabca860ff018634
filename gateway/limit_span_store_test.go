package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// TestLimitSpanNamesDefaultStore: the limit check's span names the store that answered
// it; with limiter.store left out that is memory, on allowed and refused checks alike.
func TestLimitSpanNamesDefaultStore(t *testing.T) {
	t.Parallel()
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - name: lim
    type: chat
    routes: [{backend: demo}]
    limits: [{per: user, requests: 1, window: minute}]
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	for _, tc := range []struct{ id, want string }{{"lim-1", "allowed"}, {"lim-2", "refused"}} {
		t.Run(tc.want, func(t *testing.T) {
			req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions",
				strings.NewReader(`{"model":"lim","user":"u","messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Request-Id", tc.id)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			ls := requestSpans(t, g, exp, tc.id)["tollgate.ratelimit"]
			if len(ls) != 1 {
				t.Fatalf("%d limit spans", len(ls))
			}
			v, ok := attr(ls[0].Snapshot(), "tollgate.limit.store")
			if ok && v.AsString() != "memory" {
				t.Errorf("tollgate.limit.store = %q, want memory (the store that answered) or no attribute", v.AsString())
			}
			if !ok {
				t.Errorf("no tollgate.limit.store")
			}
		})
	}
}

// TestLimitStoreName: the store the limiter uses when the config leaves it out is
// memory; one named is itself.
func TestLimitStoreName(t *testing.T) {
	for store, want := range map[string]string{"": "memory", "memory": "memory", "redis": "redis"} {
		if got := limitStoreName(store); got != want {
			t.Errorf("limitStoreName(%q) = %q, want %q", store, got, want)
		}
	}
}
