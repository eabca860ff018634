//go:build !race

package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestRequestArrivalCleanedPathAllocs: noting the arrival of a request whose path is
// cleaned before it is routed (/v1/%6Dessages) costs nothing either, and finds it
// to be a Messages call.
func TestRequestArrivalCleanedPathAllocs(t *testing.T) {
	s, ctx := arrivalServer(t)
	setArrivalHeader(ctx)
	ctx.Request.Header.SetRequestURI("/v1//%6Dessages?beta=true")
	arrive := func() {
		s.connState(ctx.Conn(), fasthttp.StateActive)
		s.headerReceived(&ctx.Request.Header)
	}
	arrive()
	if a := arrivalOf(ctx.Conn()); a == nil || !a.anthropic {
		t.Fatalf("arrival %+v: not taken for a Messages call", a)
	}
	if n := allocsPerRun(200, arrive); n > 0 {
		t.Errorf("%.1f allocations per request arrival, budget 0", n)
	}
}
