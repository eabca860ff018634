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

// TestResponsesStoredAllocs pins a stored Responses API answer, plain or streamed, to
// one allocation, the store's copy, while the store fills; once it is full its
// entries' buffers are reused and the answer allocates nothing.
func TestResponsesStoredAllocs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		store  int
		stream bool
		budget float64
	}{
		{"filling", 0, false, 1},
		{"filling-stream", 0, true, 1},
		{"full", 8, false, 0},
		{"full-stream", 8, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Options{MaxTokens: 64, ResponsesStore: tc.store})
			if err != nil {
				t.Fatal(err)
			}
			body := benchResponsesStored
			if tc.stream {
				body = body[:len(body)-1] + `,"stream":true}`
			}
			ctx := requestCtx("/v1/responses", body)
			for range 16 {
				serveOnce(s, ctx)
			}
			if n := testing.AllocsPerRun(200, func() { serveOnce(s, ctx) }); n > tc.budget {
				t.Errorf("%v allocations per request, budget %v", n, tc.budget)
			}
			if len(s.stored.byID) == 0 {
				t.Error("nothing stored")
			}
		})
	}
}
