//go:build !race

package mockllm

import "testing"

// TestHandlerAudioAllocs holds the audio routes to TestHandlerAllocs' budget: the
// form is read in place, so an answer allocates nothing.
func TestHandlerAudioAllocs(t *testing.T) {
	for _, bc := range audioBenchCases {
		t.Run(bc.name, func(t *testing.T) {
			s, err := New(Options{MaxTokens: 64})
			if err != nil {
				t.Fatal(err)
			}
			ctx := requestCtx(bc.path, "", bc.hdr...)
			ctx.Request.Header.SetContentType(bc.ct)
			ctx.Request.SetBody(bc.body)
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
