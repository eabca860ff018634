package gateway

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

var benchResponsesResp = []byte(respObjectID("resp_0123456789abcdef", "completed", respUsage))

// startStaticResponsesUpstream answers a Responses call with one response object,
// or, streamed, with a 32-delta stream, allocating nothing per request.
func startStaticResponsesUpstream(tb testing.TB, stream bool) string {
	tb.Helper()
	body := benchResponsesResp
	if stream {
		body = nil
		seq := 0
		ev := func(typ, rest string) {
			body = append(body, "event: "+typ+"\ndata: {\"type\":\""+typ+"\",\"sequence_number\":"+strconv.Itoa(seq)+rest+"}\n\n"...)
			seq++
		}
		ev("response.created", `,"response":`+respObjectID("resp_0123456789abcdef", "in_progress", "null"))
		ev("response.in_progress", `,"response":`+respObjectID("resp_0123456789abcdef", "in_progress", "null"))
		for range 32 {
			ev("response.output_text.delta", `,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" word","logprobs":[]`)
		}
		ev("response.completed", `,"response":`+respObjectID("resp_0123456789abcdef", "completed", respUsage))
	}
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		if stream {
			ctx.Response.Header.SetContentType("text/event-stream")
		} else {
			ctx.Response.Header.SetContentTypeBytes(strJSON)
		}
		ctx.Response.SetBodyRaw(body)
	})
}

func newResponsesCtx(body string) *fasthttp.RequestCtx {
	ctx := newProxyCtx([]byte(body))
	ctx.Request.SetRequestURI("/v1/responses")
	return ctx
}

// BenchmarkProxyResponses is BenchmarkProxyChat for a Responses API call: the same
// path, plus the tag written into the answer's ID.
func BenchmarkProxyResponses(b *testing.B) {
	s := newTestServer(b, benchConfig(startStaticResponsesUpstream(b, false)))
	ctx := newResponsesCtx(`{"model":"chat","input":"hi","max_output_tokens":64}`)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyResponsesFollowUp continues a response: the tag cut from
// previous_response_id, the body scanned again, the call pinned to its target.
func BenchmarkProxyResponsesFollowUp(b *testing.B) {
	addr := startStaticResponsesUpstream(b, false)
	s := newTestServer(b, benchConfig(addr))
	ctx := newResponsesCtx(`{"model":"chat","input":"hi","previous_response_id":"resp_0123456789abcdef` + responseTag("up", "http://"+addr+"/v1") + `"}`)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyResponsesStream relays a 35-event Responses stream.
func BenchmarkProxyResponsesStream(b *testing.B) {
	s := newTestServer(b, benchConfig(startStaticResponsesUpstream(b, true)))
	ctx := newResponsesCtx(`{"model":"chat","input":"hi","stream":true}`)
	sink := make([]byte, 4096)
	streamOnce(b, s, ctx, sink)
	b.ReportAllocs()
	for b.Loop() {
		streamOnce(b, s, ctx, sink)
	}
}

// BenchmarkProxyResponsesSigned is BenchmarkProxyResponsesFollowUp with keys and
// auth.response_secret: the follow-up's signature checked, the answer's ID signed.
func BenchmarkProxyResponsesSigned(b *testing.B) {
	addr := startStaticResponsesUpstream(b, false)
	s := newTestServer(b, signedBenchConfig(addr))
	ctx := newResponsesCtx(`{"model":"chat","input":"hi","previous_response_id":"` + signedID(addr, "resp_0123456789abcdef") + `"}`)
	ctx.Request.Header.Set("Authorization", "Bearer sk-a")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// bridgedBenchConfig is benchConfig with its backend serving the Responses API
// through its chat completions API.
func bridgedBenchConfig(addr string) string {
	return strings.Replace(benchConfig(addr), "model: up-model}", "model: up-model, responses_api: chat}", 1)
}

// BenchmarkProxyResponsesBridged is BenchmarkProxyResponses on a backend without the
// Responses API: the call translated to chat, the chat answer to a response object.
func BenchmarkProxyResponsesBridged(b *testing.B) {
	s := newTestServer(b, bridgedBenchConfig(startStaticUpstream(b)))
	ctx := newResponsesCtx(`{"model":"chat","input":"hi","max_output_tokens":64}`)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte(`"object":"response"`)) {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyResponsesBridgedStream relays a 32-chunk chat stream as a Responses
// API stream.
func BenchmarkProxyResponsesBridgedStream(b *testing.B) {
	s := newTestServer(b, bridgedBenchConfig(startStaticSSEUpstream(b)))
	ctx := newResponsesCtx(`{"model":"chat","input":"hi","stream":true}`)
	sink := make([]byte, 4096)
	streamOnce(b, s, ctx, sink)
	b.ReportAllocs()
	for b.Loop() {
		streamOnce(b, s, ctx, sink)
	}
}
