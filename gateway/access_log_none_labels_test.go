package gateway

import (
	"strconv"
	"testing"
)

// SRE: a request no backend served (refused before its model was read, naming no
// endpoint, refused by a limit) is counted under backend="none", variant="none", and
// one a fallback served under its backend with variant="none"; their access log lines
// said "backend":"" and "variant":"", so a log query joined to the metrics by backend
// or variant lost them. The access log names them as the metrics do.
func TestAccessLogBackendVariantNoneAsMetrics(t *testing.T) {
	var logs syncBuffer
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+startStaticUpstream(t)+`/v1", model: m}
  dead: {provider: openai, base_url: "http://`+deadAddr(t)+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up, variant: stable}]}
  - {name: tight, type: chat, routes: [{backend: up}], limits: [{per: endpoint, requests: 1, window: minute}]}
  - {name: spare, type: chat, routes: [{backend: dead, variant: stable}], fallbacks: [up]}
`, Options{Logger: slogTo(&logs)})
	cases := []struct {
		name, method, body                  string
		status                              int
		endpoint, backend, variant, errKind string
	}{
		{"unknown model", "POST", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "unknown", "none", "none", "model_not_found"},
		{"body not JSON", "POST", `{"model":`, 400, "unknown", "none", "none", "invalid_json"},
		{"wrong method", "GET", ``, 405, "unknown", "none", "none", "method_not_allowed"},
		{"served by its route", "POST", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, 200, "chat", "up", "stable", ""},
		{"under its limit", "POST", `{"model":"tight","messages":[{"role":"user","content":"hi"}]}`, 200, "tight", "up", "up", ""},
		{"refused by a limit", "POST", `{"model":"tight","messages":[{"role":"user","content":"hi"}]}`, 429, "tight", "none", "none", "rate_limit_exceeded"},
		{"served by a fallback", "POST", `{"model":"spare","messages":[{"role":"user","content":"hi"}]}`, 200, "spare", "up", "none", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := newProxyCtx([]byte(tc.body))
			ctx.Request.Header.SetMethod(tc.method)
			labels := []string{"endpoint", tc.endpoint, "backend", tc.backend, "variant", tc.variant, "code", strconv.Itoa(tc.status)}
			before := counterValue(t, s, "tollgate_requests_total", labels...)
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d: %s", ctx.Response.StatusCode(), tc.status, ctx.Response.Body())
			}
			if after := counterValue(t, s, "tollgate_requests_total", labels...); after != before+1 {
				t.Fatalf("tollgate_requests_total%v went from %v to %v", labels, before, after)
			}
			id := string(ctx.Response.Header.Peek("X-Request-Id"))
			for _, l := range jsonLogLines(t, logs.String()) {
				if l["msg"] != "request" || l["request_id"] != id {
					continue
				}
				if l["endpoint"] != tc.endpoint || l["backend"] != tc.backend || l["variant"] != tc.variant {
					t.Fatalf("access log endpoint %q backend %q variant %q, want %q %q %q as the metrics count it: %v",
						l["endpoint"], l["backend"], l["variant"], tc.endpoint, tc.backend, tc.variant, l)
				}
				if l["error"] != tc.errKind {
					t.Fatalf("access log error %q, want %q: %v", l["error"], tc.errKind, l)
				}
				return
			}
			t.Fatalf("no access log line for request %s:\n%s", id, logs.String())
		})
	}
}
