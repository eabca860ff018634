package gateway

import (
	"strconv"
	"testing"
)

// SRE: requests refused before an endpoint is known (a model no endpoint has, a body
// that is no JSON, a wrong method) are counted under endpoint="unknown", but their
// access log lines said "endpoint":"": a log query joined to the metrics by endpoint
// lost them. The access log names them as the metrics do.
func TestAccessLogEndpointUnknownAsMetrics(t *testing.T) {
	var logs syncBuffer
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+startStaticUpstream(t)+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, Options{Logger: slogTo(&logs)})
	cases := []struct {
		name, method, body string
		status             int
	}{
		{"unknown model", "POST", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404},
		{"body not JSON", "POST", `{"model":`, 400},
		{"wrong method", "GET", ``, 405},
		{"known endpoint", "POST", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := newProxyCtx([]byte(tc.body))
			ctx.Request.Header.SetMethod(tc.method)
			want := "unknown"
			if tc.status == 200 {
				want = "chat"
			}
			before := counterValue(t, s, "tollgate_requests_total", "endpoint", want, "code", strconv.Itoa(tc.status))
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d: %s", ctx.Response.StatusCode(), tc.status, ctx.Response.Body())
			}
			if after := counterValue(t, s, "tollgate_requests_total", "endpoint", want, "code", strconv.Itoa(tc.status)); after != before+1 {
				t.Fatalf("tollgate_requests_total{endpoint=%q,code=\"%d\"} went from %v to %v", want, tc.status, before, after)
			}
			id := string(ctx.Response.Header.Peek("X-Request-Id"))
			for _, l := range jsonLogLines(t, logs.String()) {
				if l["msg"] == "request" && l["request_id"] == id {
					if l["endpoint"] != want {
						t.Fatalf("access log endpoint %q, want %q as the metrics count it: %v", l["endpoint"], want, l)
					}
					return
				}
			}
			t.Fatalf("no access log line for request %s:\n%s", id, logs.String())
		})
	}
}
