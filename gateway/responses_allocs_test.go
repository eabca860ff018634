//go:build !race

package gateway

import (
	"strings"
	"testing"
)

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
		if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
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
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations per call by ID", n)
	}
}

// TestResponsesSignedAllocs: signing the answer's ID, and checking a follow-up's or a
// call by ID's signature, allocate nothing.
func TestResponsesSignedAllocs(t *testing.T) {
	addr := startStaticResponsesUpstream(t, false)
	s := newTestServer(t, signedBenchConfig(addr))
	for _, body := range []string{
		`{"model":"chat","input":"hi","max_output_tokens":64}`,
		`{"model":"chat","input":"hi","previous_response_id":"` + signedID(addr, "resp_0123456789abcdef") + `"}`,
	} {
		ctx := newResponsesCtx(body)
		ctx.Request.Header.Set("Authorization", "Bearer sk-a")
		proxyOnce(s, ctx)
		if want := signedID(addr, "resp_0123456789abcdef"); ctx.Response.StatusCode() != 200 || !strings.Contains(string(ctx.Response.Body()), want) {
			t.Errorf("%s: answer %s without %s", body, ctx.Response.Body(), want)
		}
		if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
			t.Errorf("%s: %v allocations per call", body, n)
		}
	}
	ctx := newResponsesCtx("")
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.Header.Set("Authorization", "Bearer sk-a")
	ctx.Request.SetRequestURI("/v1/responses/" + signedID(addr, "resp_0123456789abcdef"))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations per call by ID", n)
	}
}

// TestResponsesBridgedAllocs: a Responses call through a backend's chat API, its
// request and answer translated, allocates nothing either.
func TestResponsesBridgedAllocs(t *testing.T) {
	s := newTestServer(t, bridgedBenchConfig(startStaticUpstream(t)))
	ctx := newResponsesCtx(`{"model":"chat","input":"hi","instructions":"Be brief.","max_output_tokens":64}`)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || !strings.Contains(string(ctx.Response.Body()), `"object":"response"`) {
		t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations per bridged call", n)
	}
}
