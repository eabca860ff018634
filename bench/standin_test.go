package main

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// standIn is a tiny OpenAI-shaped upstream for the harness's own tests, so
// they run without mockllm or the gateway being built. fault picks one
// misbehaviour for every request: "", "503", "garbage", "cut" (a stream
// ending early, though with the body's end), "error event" (a stream that
// carries the upstream's error event before [DONE]), "event stream" and
// "cut json" (a non-streaming chat answered with an event stream, or with a
// JSON completion cut short; a rerank or a message with its answer cut short),
// "wrong kind" (a rerank or a message answered with a chat completion). A Messages
// API call without anthropic-version is refused 400, as Anthropic's API does.
type standIn struct {
	ln    net.Listener
	srv   *fasthttp.Server
	fault string
	users sync.Map     // X-User-ID values seen
	conns atomic.Int64 // connections accepted
	calls atomic.Int64 // chat, embeddings, rerank and messages requests received
	// delay, when set, holds the n-th call (from 0) that long before it is
	// answered.
	delay func(n int64) time.Duration
	// fail, when set, answers the n-th call (from 0) 503 when it returns true.
	fail func(n int64) bool
}

func startStandIn(t *testing.T, fault string) *standIn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &standIn{ln: ln, fault: fault}
	s.srv = &fasthttp.Server{Handler: s.handle, ConnState: func(_ net.Conn, st fasthttp.ConnState) {
		if st == fasthttp.StateNew {
			s.conns.Add(1)
		}
	}}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Shutdown() })
	return s
}

func (s *standIn) addr() string { return s.ln.Addr().String() }

var streamChunks = []string{
	`{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"alpha"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":" beta"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":" gamma"}}]}`,
	`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
}

// rerankAnswer is mockllm's answer (vLLM's rerank, Jina's shape) to the rerank
// scenario's body.
const rerankAnswer = `{"id":"rerank-dec1469c8d51e97b64cf494d7fba65ee","model":"mock-1","usage":{"total_tokens":202},"results":[` +
	`{"index":0,"document":{"text":"Tollgate is a gateway for LLM requests.","multi_modal":null},"relevance_score":0.2708180313767715},` +
	`{"index":5,"document":{"text":"The least latency comes from no proxy at all.","multi_modal":null},"relevance_score":0.25603750867524194},` +
	`{"index":2,"document":{"text":"Latency is the time a request waits for its answer.","multi_modal":null},"relevance_score":0.11282320721806284}]}`

// messageAnswer is mockllm's answer (the Messages API as vLLM serves it) to the
// messages scenario's body with max_tokens 16.
const messageAnswer = `{"id":"chatcmpl-dec1469c8d51e97b6cd318325ad1841b","type":"message","role":"assistant","content":[` +
	`{"type":"text","text":"and output span quickly answers limits shared under the span one each each low under span"}],` +
	`"model":"mock-1","stop_reason":"max_tokens","usage":{"input_tokens":21,"output_tokens":16}}`

// errorEvent is OpenAI's error event, as vLLM sends it when its engine fails
// mid-stream and the gateway passes it on.
const errorEvent = `{"error":{"message":"engine failed","type":"server_error","param":null,"code":"upstream_error"}}`

func (s *standIn) handle(ctx *fasthttp.RequestCtx) {
	if u := ctx.Request.Header.Peek("X-User-ID"); len(u) > 0 {
		s.users.Store(string(u), true)
	}
	switch string(ctx.Path()) {
	case "/health":
		return
	case "/v1/chat/completions", "/v1/embeddings", "/v1/rerank", "/v1/messages":
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	n := s.calls.Add(1) - 1
	if s.delay != nil {
		time.Sleep(s.delay(n))
	}
	fault := s.fault
	if s.fail != nil && s.fail(n) {
		fault = "503"
	}
	switch fault {
	case "503":
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"error":{"message":"busy"}}`)
		return
	case "garbage":
		ctx.SetBodyString("not json")
		return
	}
	if string(ctx.Path()) == "/v1/messages" {
		ctx.SetContentType("application/json")
		if string(ctx.Request.Header.Peek("anthropic-version")) != anthropicVersion {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			ctx.SetBodyString(`{"type":"error","error":{"type":"invalid_request_error","message":"anthropic-version: header is required"}}`)
			return
		}
		switch fault {
		case "cut json":
			ctx.SetBodyString(messageAnswer[:len(messageAnswer)-2])
		case "wrong kind":
			ctx.SetBodyString(`{"choices":[{"index":0,"message":{"role":"assistant","content":"alpha"}}],"usage":{"output_tokens":1}}`)
		default:
			ctx.SetBodyString(messageAnswer)
		}
		return
	}
	if string(ctx.Path()) == "/v1/rerank" {
		ctx.SetContentType("application/json")
		switch fault {
		case "cut json":
			ctx.SetBodyString(rerankAnswer[:60])
		case "wrong kind":
			ctx.SetBodyString(`{"choices":[{"index":0,"message":{"role":"assistant","content":"alpha"}}]}`)
		default:
			ctx.SetBodyString(rerankAnswer)
		}
		return
	}
	if string(ctx.Path()) == "/v1/embeddings" {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.6,0.8]}]}`)
		return
	}
	if !bytes.Contains(ctx.PostBody(), []byte(`"stream":true`)) {
		switch fault {
		case "event stream":
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString("data: " + streamChunks[1] + "\n\ndata: [DONE]\n\n")
		case "cut json":
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"choices":[{"index":0,"message":{"role":"assistant","content":"al`)
		default:
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"choices":[{"index":0,"message":{"role":"assistant","content":"alpha beta gamma"}}]}`)
		}
		return
	}
	ctx.SetContentType("text/event-stream")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		for i, c := range streamChunks {
			if fault == "cut" && i == 2 {
				return
			}
			if fault == "error event" && i == 2 {
				_, _ = w.WriteString("data: " + errorEvent + "\n\n")
				break
			}
			_, _ = w.WriteString("data: " + c + "\n\n")
			if err := w.Flush(); err != nil {
				return
			}
		}
		_, _ = w.WriteString("data: [DONE]\n\n")
		_ = w.Flush()
	})
}
