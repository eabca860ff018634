package gateway

import (
	"slices"
	"testing"
)

// newUntracedServer is a gateway with the default tracing (exporter none) in front of
// upstream.
func newUntracedServer(t *testing.T, upstream string) *Server {
	t.Helper()
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error}
`
	return newServerWith(t, yaml, Options{Logger: discardLogger()})
}

// With tracing off the gateway takes no part in the client's trace: its traceparent
// and tracestate reach the upstream as sent, every field in its order, as through
// nginx, so that the upstream continues the client's trace. Fields the gateway would
// not continue with tracing on (two traceparents, a malformed one, a tracestate
// without one) pass too: the upstream judges them as if the client had called it.
func TestUntracedTraceHeadersPassedAsSent(t *testing.T) {
	const (
		tp  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		tp2 = "00-11111111111111111111111111111111-2222222222222222-01"
	)
	up, addr := startTraceHeaderUpstream(t)
	s := newUntracedServer(t, addr)
	for _, tc := range []struct {
		name                    string
		traceparent, tracestate []string
	}{
		{"split tracestate", []string{tp}, []string{"rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"}},
		{"two traceparents", []string{tp, tp2}, nil},
		{"malformed traceparent with tracestate", []string{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"}, []string{"congo=t61rcWkgMzE"}},
		{"tracestate without traceparent", nil, []string{"congo=t61rcWkgMzE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := newProxyCtx(benchChatBody)
			for _, v := range tc.traceparent {
				ctx.Request.Header.Add("traceparent", v)
			}
			for _, v := range tc.tracestate {
				ctx.Request.Header.Add("tracestate", v)
			}
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			gotTP, gotTS := up.last()
			if !slices.Equal(gotTP, tc.traceparent) || !slices.Equal(gotTS, tc.tracestate) {
				t.Errorf("upstream got traceparent %q, tracestate %q; want %q, %q as sent",
					gotTP, gotTS, tc.traceparent, tc.tracestate)
			}
		})
	}
}
