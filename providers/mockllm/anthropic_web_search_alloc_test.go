//go:build !race

package mockllm

import "testing"

// TestHandlerWebSearchAllocs holds answers that search to TestHandlerAllocs' budget.
func TestHandlerWebSearchAllocs(t *testing.T) {
	for _, bc := range webSearchBenchCases {
		t.Run(bc.name, func(t *testing.T) {
			s, err := New(Options{API: APIAnthropic, MaxTokens: 64})
			if err != nil {
				t.Fatal(err)
			}
			ctx := requestCtx("/v1/messages", bc.body, "anthropic-version", "2023-06-01")
			s.handle(ctx)
			if code := ctx.Response.StatusCode(); code != 200 {
				t.Fatalf("status %d: %s", code, ctx.Response.Body())
			}
			for range 4 {
				serveOnce(s, ctx)
			}
			if n := testing.AllocsPerRun(200, func() { serveOnce(s, ctx) }); n > 0 {
				t.Errorf("%v allocations per request, budget 0", n)
			}
		})
	}
}
