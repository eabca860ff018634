//go:build !race

package gateway

import "testing"

// TestResponsesAllocs: a Responses call costs the allocations a chat call does.
func TestResponsesAllocs(t *testing.T) {
	addr := startStaticResponsesUpstream(t, false)
	s := newTestServer(t, benchConfig(addr))
	for _, body := range []string{
		`{"model":"chat","input":"hi","max_output_tokens":64}`,
		`{"model":"chat","input":"hi","previous_response_id":"resp_0123456789abcdef` + responseTag("up", "http://"+addr+"/v1") + `"}`,
	} {
		ctx := newResponsesCtx(body)
		proxyOnce(s, ctx)
		if n := testing.AllocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
			t.Errorf("%s: %v allocations per call", body, n)
		}
		if ctx.Response.StatusCode() != 200 {
			t.Errorf("%s: status %d %s", body, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// TestResponsesByIDAllocs: a call on a stored response allocates nothing either.
func TestResponsesByIDAllocs(t *testing.T) {
	addr := startStaticResponsesUpstream(t, false)
	s := newTestServer(t, benchConfig(addr))
	ctx := newResponsesCtx("")
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI("/v1/responses/resp_0123456789abcdef" + responseTag("up", "http://"+addr+"/v1"))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := testing.AllocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations per call by ID", n)
	}
}
