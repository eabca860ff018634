//go:build !race

package mockllm

import "testing"

// TestHandlerAllocs pins the zero-delay paths to their allocation budget: every
// benchmark behind the gateway measures against this server, so it must not be the
// one allocating.
func TestHandlerAllocs(t *testing.T) {
	for _, bc := range benchCases {
		t.Run(bc.name, func(t *testing.T) {
			s, err := New(Options{API: bc.api, Model: bc.model, MaxTokens: 64})
			if err != nil {
				t.Fatal(err)
			}
			ctx := requestCtx(bc.path, bc.body, bc.hdr...)
			// A refusal is cheap: the budget is for the answer.
			s.handle(ctx)
			if code := ctx.Response.StatusCode(); code != 200 {
				t.Fatalf("status %d: %s", code, ctx.Response.Body())
			}
			serveOnce(s, ctx)
			for range 3 {
				serveOnce(s, ctx)
			}
			if n := testing.AllocsPerRun(200, func() { serveOnce(s, ctx) }); n > 0 {
				t.Errorf("%v allocations per request, budget 0", n)
			}
		})
	}
}
