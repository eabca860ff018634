package gateway

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// peerConn is a sinkConn whose peer is the given address.
type peerConn struct {
	sinkConn
	peer net.Addr
}

func (c *peerConn) RemoteAddr() net.Addr { return c.peer }

// TestDrainingAnswersLogForwardedClient: the answers the gateway gives while it drains
// (a request that came on a connection open when the drain began, served, its answer
// closing the connection) and once shutdown_grace has run out (503 shutting_down
// without a runtime bound to the request, and its own answers: a wrong method, an
// unknown path, the model listing) are logged behind server.trusted_proxies with the
// client X-Forwarded-For names, as every other request is, not with the load
// balancer's address.
func TestDrainingAnswersLogForwardedClient(t *testing.T) {
	logs := &syncBuffer{}
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", trusted_proxies: ["10.0.0.0/8"]}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
logging: {level: info, access_log: true}
`, Options{Logger: slogTo(logs)})
	const (
		chat   = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
		invoke = `{"messages":[{"role":"user","content":"hi"}]}`
	)
	cases := []struct {
		name, method, path, body string
		graceOver                bool
		status                   int
	}{
		{"draining: chat completion served", "POST", "/v1/chat/completions", chat, false, 200},
		{"draining: MLflow invocation served", "POST", "/endpoints/chat/invocations", invoke, false, 200},
		{"draining: wrong method", "GET", "/v1/chat/completions", "", false, 405},
		{"draining: unknown path", "POST", "/v1/nothing", chat, false, 404},
		{"draining: model listing served", "GET", "/v1/models", "", false, 200},
		{"grace over: chat completion refused shutting_down", "POST", "/v1/chat/completions", chat, true, 503},
		{"grace over: MLflow invocation refused shutting_down", "POST", "/endpoints/chat/invocations", invoke, true, 503},
		{"grace over: wrong method", "GET", "/v1/chat/completions", "", true, 405},
		{"grace over: unknown path", "POST", "/v1/nothing", chat, true, 404},
		{"grace over: model listing", "GET", "/v1/models", "", true, 503},
	}
	s.draining.Store(true)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.cut.Store(c.graceOver)
			id := "drain-" + strconv.Itoa(i)
			var req fasthttp.Request
			req.Header.SetMethod(c.method)
			req.SetRequestURI(c.path)
			req.Header.Set("X-Request-Id", id)
			req.Header.Add("X-Forwarded-For", "203.0.113.5")
			if c.body != "" {
				req.Header.SetContentType("application/json")
				req.SetBody([]byte(c.body))
			}
			ctx := &fasthttp.RequestCtx{}
			peer := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 40000}
			ctx.Init2(&peerConn{sinkConn: sinkConn{wake: make(chan bool, 1)}, peer: peer}, nopLogger{}, true)
			req.CopyTo(&ctx.Request)
			s.serveAPI(ctx)
			if got := ctx.Response.StatusCode(); got != c.status {
				t.Fatalf("while draining: %d, want %d", got, c.status)
			}
			if !ctx.Response.ConnectionClose() {
				t.Errorf("answer while draining without Connection: close: the client would send its next request on a connection the drain closes")
			}
			var line string
			for l := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(l, `"request_id":"`+id+`"`) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no access log line for request %s:\n%s", id, logs.String())
			}
			if !strings.Contains(line, `"client_ip":"203.0.113.5"`) {
				t.Errorf("access log while draining, want client_ip 203.0.113.5 (X-Forwarded-For behind a trusted proxy):\n%s", line)
			}
		})
	}
}
