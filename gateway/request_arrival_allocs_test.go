//go:build !race

package gateway

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// arrivalServer is a gateway behind trusted proxies, and arrivalCtx a request on an
// API connection (arrivalConn) from one of them, with the client's X-Request-Id and
// the X-Forwarded-For naming the client.
func arrivalServer(tb testing.TB) (*Server, *fasthttp.RequestCtx) {
	tb.Helper()
	s := newTestServer(tb, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", trusted_proxies: ["10.0.0.0/8"]}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
logging: {level: info, access_log: true}
`)
	ctx := &fasthttp.RequestCtx{}
	peer := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 40000}
	ctx.Init2(&arrivalConn{Conn: &peerConn{sinkConn: sinkConn{wake: make(chan bool, 1)}, peer: peer}}, nopLogger{}, true)
	return s, ctx
}

// setArrivalHeader gives ctx the header of the request arrivalServer serves.
func setArrivalHeader(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	h.SetMethod(fasthttp.MethodPost)
	h.SetRequestURI("/v1/chat/completions")
	h.Set("X-Request-Id", "client-chosen-id-0123456789")
	h.Set("X-Forwarded-For", "203.0.113.5, 10.9.9.9")
	h.SetContentLength(100)
}

// TestRequestArrivalAllocs: noting a request's arrival (headerReceived) and dropping it
// at the next request (connState) cost nothing, nor does answering from it a request
// whose header fasthttp has reset (serveParseError's ownRequest and its answer).
func TestRequestArrivalAllocs(t *testing.T) {
	s, ctx := arrivalServer(t)
	setArrivalHeader(ctx)
	arrive := func() {
		s.connState(ctx.Conn(), fasthttp.StateActive)
		s.headerReceived(&ctx.Request.Header)
	}
	arrive()
	a := arrivalOf(ctx.Conn())
	if a == nil || string(a.appendID(nil)) != "client-chosen-id-0123456789" || net.IP(a.client()).String() != "203.0.113.5" {
		t.Fatalf("arrival %+v", a)
	}
	if n := allocsPerRun(200, arrive); n > 0 {
		t.Errorf("%.1f allocations per request arrival, budget 0", n)
	}
	failed := func() {
		arrive()
		ctx.Request.Header.Reset()
		s.ownRequest(ctx).fail(ctx, &errReadTimeout)
		ctx.Response.Reset()
		setArrivalHeader(ctx)
	}
	failed()
	if n := allocsPerRun(200, failed); n > 0 {
		t.Errorf("%.1f allocations per answer to a request whose body could not be read, budget 0", n)
	}
}

// BenchmarkRequestArrival is what every request on the API listener pays to keep its
// arrival for an answer fasthttp's error handler gives.
func BenchmarkRequestArrival(b *testing.B) {
	s, ctx := arrivalServer(b)
	setArrivalHeader(ctx)
	b.ReportAllocs()
	for b.Loop() {
		s.connState(ctx.Conn(), fasthttp.StateActive)
		s.headerReceived(&ctx.Request.Header)
	}
}
