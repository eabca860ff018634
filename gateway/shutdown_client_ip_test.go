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

// TestDrainingAnswersLogForwardedClient: the answers the gateway gives while it drains,
// without a runtime bound to the request (503 shutting_down, and its own answers: a
// wrong method, an unknown path, the model listing), are logged behind
// server.trusted_proxies with the client X-Forwarded-For names, as every other
// request is, not with the load balancer's address.
func TestDrainingAnswersLogForwardedClient(t *testing.T) {
	logs := &syncBuffer{}
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", trusted_proxies: ["10.0.0.0/8"]}
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: info, access_log: true}
`, Options{Logger: slogTo(logs)})
	s.draining.Store(true)
	cases := []struct {
		name, method, path string
		status             int
	}{
		{"chat completion refused shutting_down", "POST", "/v1/chat/completions", 503},
		{"MLflow invocation refused shutting_down", "POST", "/endpoints/chat/invocations", 503},
		{"wrong method", "GET", "/v1/chat/completions", 405},
		{"unknown path", "POST", "/v1/nothing", 404},
		{"model listing", "GET", "/v1/models", 503},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := "drain-" + strconv.Itoa(i)
			var req fasthttp.Request
			req.Header.SetMethod(c.method)
			req.SetRequestURI(c.path)
			req.Header.Set("X-Request-Id", id)
			req.Header.Add("X-Forwarded-For", "203.0.113.5")
			if c.method == "POST" {
				req.Header.SetContentType("application/json")
				req.SetBody([]byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
			}
			ctx := &fasthttp.RequestCtx{}
			peer := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 40000}
			ctx.Init2(&peerConn{sinkConn: sinkConn{wake: make(chan bool, 1)}, peer: peer}, nopLogger{}, true)
			req.CopyTo(&ctx.Request)
			s.serveAPI(ctx)
			if got := ctx.Response.StatusCode(); got != c.status {
				t.Fatalf("while draining: %d, want %d", got, c.status)
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
