package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// headerLinesUpstream answers like startStaticUpstream and keeps every header line of
// the last request it got, by canonical name, in the order they came.
type headerLinesUpstream struct {
	mu    sync.Mutex
	lines map[string][]string
}

func startHeaderLinesUpstream(t *testing.T) (*headerLinesUpstream, string) {
	t.Helper()
	u := &headerLinesUpstream{}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		lines := map[string][]string{}
		for k, v := range ctx.Request.Header.All() {
			name := http.CanonicalHeaderKey(string(k))
			lines[name] = append(lines[name], string(v))
		}
		u.mu.Lock()
		u.lines = lines
		u.mu.Unlock()
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	return u, addr
}

func (u *headerLinesUpstream) get(name string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lines[name]
}

// A request header sent on several lines (one list, RFC 9110 5.3; W3C baggage and
// tracestate are often split so) reaches the upstream as the client sent it: every
// line, in order. A header the backend's headers: sets reaches it once, with the
// operator's value, however many lines of it the client sent.
func TestRepeatedRequestHeadersForwarded(t *testing.T) {
	up, addr := startHeaderLinesUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, headers: {X-Env: operator}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error}
`)
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Baggage: userId=alice\r\nX-Team-Tag: one\r\nBaggage: tenant=acme\r\n" +
		"Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n" +
		"Tracestate: vendora=x\r\nx-team-tag: two\r\nTracestate: vendorb=y\r\n" +
		"X-Env: client-1\r\nX-Env: client-2\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	resp, answer := exchange(t, strings.TrimPrefix(g.url, "http://"), raw)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, answer)
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"Baggage", []string{"userId=alice", "tenant=acme"}},
		{"Tracestate", []string{"vendora=x", "vendorb=y"}},
		{"X-Team-Tag", []string{"one", "two"}},
		{"X-Env", []string{"operator"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := up.get(tc.name); !slices.Equal(got, tc.want) {
				t.Errorf("upstream got %s lines %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}
