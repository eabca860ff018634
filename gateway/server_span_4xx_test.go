package gateway

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/codes"
)

// The HTTP semantic conventions leave a server span's status unset on a 4xx (the
// client's fault, no failure of the server) and have error.type name what failed. A
// 4xx the gateway answers itself, or an upstream's passed on (a 401 as any other),
// marks the request's span with the error type its access log line has, and never
// with an Error status, which keep_errors would keep whatever the sampling ratio.
func TestServerSpanOf4xxHasErrorTypeNotErrorStatus(t *testing.T) {
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		// "user":"NNN" asks for status NNN.
		body := ctx.PostBody()
		if i := bytes.Index(body, []byte(`"user":"`)); i >= 0 && len(body) >= i+11 {
			st, _ := strconv.Atoi(string(body[i+8 : i+11]))
			ctx.SetStatusCode(st)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"refused","type":"invalid_request_error","param":null,"code":null}}`)
			return
		}
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	g, exp := startTracedGateway(t, mockConfig(addr, "", `  - {name: limited, type: chat, routes: [{backend: up}], limits: [{per: endpoint, requests: 1, window: hour}]}
`)+`auth: {mode: keys, keys: [{name: team-a, key: sk-team-a-1234}]}
tracing: {exporter: none, sample_ratio: 1}
`)
	good := [][2]string{{"Authorization", "Bearer sk-team-a-1234"}}
	limited := strings.Replace(authChatBody, `"chat"`, `"limited"`, 1)
	if st, b, _ := authCall(t, "POST", g.url+"/v1/chat/completions", limited, good); st != 200 {
		t.Fatalf("first call to the limited endpoint: %d %s", st, b)
	}
	asking := func(status string) string {
		return strings.Replace(authChatBody, `"max_tokens"`, `"user":"`+status+`","max_tokens"`, 1)
	}
	for _, tc := range []struct {
		name, method, body string
		hdr                [][2]string
		status             int
		errType            string
	}{
		{"malformed JSON", "POST", `{"model":`, good, 400, "invalid_json"},
		{"unknown model", "POST", strings.Replace(authChatBody, `"chat"`, `"nope"`, 1), good, 404, "model_not_found"},
		{"no key", "POST", authChatBody, nil, 401, "missing_api_key"},
		{"wrong key", "POST", authChatBody, [][2]string{{"Authorization", "Bearer sk-wrong-0000"}}, 401, "invalid_api_key"},
		{"body too large", "POST", `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", 70<<10) + `"}]}`, good, 413, "request_too_large"},
		{"limit refused", "POST", limited, good, 429, "rate_limit_exceeded"},
		{"method not allowed", "GET", "", good, 405, "method_not_allowed"},
		{"upstream 400 passed on", "POST", asking("400"), good, 400, "upstream_400"},
		{"upstream 401 passed on", "POST", asking("401"), good, 401, "upstream_401"},
		{"upstream 404 passed on", "POST", asking("404"), good, 404, "upstream_404"},
		{"upstream 429 passed on", "POST", asking("429"), good, 429, "upstream_429"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b, h := authCall(t, tc.method, g.url+"/v1/chat/completions", tc.body, tc.hdr)
			if st != tc.status {
				t.Fatalf("status %d %.200s, want %d", st, b, tc.status)
			}
			name := tc.method + " /v1/chat/completions"
			server := requestSpans(t, g, exp, h.Get("X-Request-Id"))[name]
			if len(server) != 1 {
				t.Fatalf("%d %q spans, want 1", len(server), name)
			}
			ro := server[0].Snapshot()
			if v, _ := attr(ro, "error.type"); v.AsString() != tc.errType {
				t.Errorf("server span error.type %q, want %q", v.AsString(), tc.errType)
			}
			if v, _ := attr(ro, "http.response.status_code"); v.AsInt64() != int64(tc.status) {
				t.Errorf("server span http.response.status_code %v, want %d", v.Emit(), tc.status)
			}
			if ro.Status().Code != codes.Unset {
				t.Errorf("server span status %v, want Unset for a %d", ro.Status().Code, tc.status)
			}
		})
	}
}
