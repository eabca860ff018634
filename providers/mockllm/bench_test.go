package mockllm

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// requestCtx builds a POST to path the way fasthttp hands it to a handler.
func requestCtx(path, body string, hdr ...string) *fasthttp.RequestCtx {
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.SetMethod(fasthttp.MethodPost)
	ctx.Request.SetRequestURI(path)
	ctx.Request.Header.SetContentType("application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		ctx.Request.Header.Set(hdr[i], hdr[i+1])
	}
	ctx.Request.SetBodyString(body)
	return ctx
}

// serveOnce runs the handler and, for a stream, writes the whole stream out.
func serveOnce(s *Server, ctx *fasthttp.RequestCtx) {
	s.handle(ctx)
	if wt, ok := ctx.Response.BodyStream().(io.WriterTo); ok {
		_, _ = wt.WriteTo(io.Discard)
	}
	ctx.Response.Reset()
}

const benchChat = `{"model":"mock-1","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about load balancers and GPUs, and explain it in one sentence."}],"max_tokens":64,"temperature":0.7}`

// benchResponses is a Responses API request as the gateway forwards one: not stored,
// so that the answer allocates nothing; benchResponsesStored keeps it.
const benchResponses = `{"model":"mock-1","instructions":"You are a helpful assistant.","input":[{"role":"user","content":"Write a haiku about load balancers and GPUs, and explain it in one sentence."}],"max_output_tokens":64,"temperature":0.7,"store":false}`

const benchResponsesStored = `{"model":"mock-1","instructions":"You are a helpful assistant.","input":[{"role":"user","content":"Write a haiku about load balancers and GPUs, and explain it in one sentence."}],"max_output_tokens":64,"temperature":0.7}`

const benchEmbed = `{"model":"mock-1","input":["the quick brown fox","jumps over the lazy dog"],"encoding_format":"base64"}`

// benchRerank is a rerank of 8 short documents, two of them as Jina's objects;
// benchScore scores one text against 8.
const benchRerank = `{"model":"mock-1","query":"how do load balancers spread GPU traffic?","top_n":3,"documents":[` +
	`"Load balancers spread traffic across GPU replicas.","The capital of France is Paris.",` +
	`{"text":"A canary takes a small share of traffic."},"Token buckets limit requests per key.",` +
	`"GPU memory holds the KV cache.",{"text":"Sticky sessions keep users on one variant."},` +
	`"Horses and cows are both animals.","Least-loaded balancing reads each replica's queue."]}`

const benchScore = `{"model":"mock-1","text_1":"how do load balancers spread GPU traffic?","text_2":[` +
	`"Load balancers spread traffic across GPU replicas.","The capital of France is Paris.",` +
	`"A canary takes a small share of traffic.","Token buckets limit requests per key.",` +
	`"GPU memory holds the KV cache.","Sticky sessions keep users on one variant.",` +
	`"Horses and cows are both animals.","Least-loaded balancing reads each replica's queue."]}`

const benchMessages = `{"model":"mock-1","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"Write a haiku about load balancers."}]}`

// benchOpus is a Messages request of the newest models' settings: adaptive thinking
// (its text omitted), an effort, and a structured-outputs answer.
const benchOpus = `{"model":"claude-opus-4-7","max_tokens":64,"thinking":{"type":"adaptive"},"output_config":{"effort":"xhigh","format":{"type":"json_schema","schema":` +
	`{"type":"object","additionalProperties":false,"properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"enum":["celsius","fahrenheit"]}}}}},` +
	`"messages":[{"role":"user","content":"Forecast for Paris as JSON."}]}`

// benchClaude5 is a Messages request to a Claude 5 model without a thinking field: it
// thinks by default (as one of major version 5 or later that no entry names does, the
// model value searched to its end).
const benchClaude5 = `{"model":"claude-opus-5","max_tokens":64,"messages":[{"role":"user","content":"Write a haiku about load balancers."}]}`

// benchToolLoop is a Messages request of an agent's tool loop: two tools, one of them
// with a cache breakpoint, two tool calls answered, and the system prompt cached.
const benchToolLoop = `{"model":"mock-1","max_tokens":64,"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],` +
	`"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},` +
	`{"name":"get_time","input_schema":{"type":"object","properties":{"tz":{"type":"string"}}},"cache_control":{"type":"ephemeral"}}],` +
	`"messages":[{"role":"user","content":"Weather and time in Oslo?"},` +
	`{"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Oslo"}},` +
	`{"type":"tool_use","id":"toolu_01B","name":"get_time","input":{"tz":"Europe/Oslo"}}]},` +
	`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01B","content":"12:00"},{"type":"tool_result","tool_use_id":"toolu_01A","content":[{"type":"text","text":"12C"}]},` +
	`{"type":"text","text":"Thanks.","cache_control":{"type":"ephemeral"}}]}]}`

var benchCases = []struct {
	name, path, body string
	api              string
	hdr              []string
	model            string // the served model; empty for mock-1
}{
	{"chat", "/v1/chat/completions", benchChat, APIOpenAI, nil, ""},
	{"chat-stream", "/v1/chat/completions", benchChat[:len(benchChat)-1] + `,"stream":true,"stream_options":{"include_usage":true}}`, APIOpenAI, nil, ""},
	{"responses", "/v1/responses", benchResponses, APIOpenAI, nil, ""},
	{"responses-stream", "/v1/responses", benchResponses[:len(benchResponses)-1] + `,"stream":true}`, APIOpenAI, nil, ""},
	{"completions", "/v1/completions", `{"model":"mock-1","prompt":"Once upon a time","max_tokens":64}`, APIOpenAI, nil, ""},
	// The gateway's requests: X-Request-Id names the answer.
	{"chat-request-id", "/v1/chat/completions", benchChat, APIOpenAI, []string{"X-Request-Id", "0123456789abcdef0123456789abcdef"}, ""},
	{"completions-echo-logprobs", "/v1/completions", `{"model":"mock-1","prompt":"Once upon a time","max_tokens":8,"echo":true,"logprobs":2,"ignore_eos":true}`, APIOpenAI, nil, ""},
	{"embeddings-base64", "/v1/embeddings", benchEmbed, APIOpenAI, nil, ""},
	{"rerank-8-docs", "/rerank", benchRerank, APIOpenAI, nil, ""},
	{"score-1-to-8", "/score", benchScore, APIOpenAI, nil, ""},
	{"messages", "/v1/messages", benchMessages, APIAnthropic, []string{"anthropic-version", "2023-06-01"}, ""},
	{"messages-stream", "/v1/messages", benchMessages[:len(benchMessages)-1] + `,"stream":true}`, APIAnthropic, []string{"anthropic-version", "2023-06-01"}, ""},
	{"messages-opus-format", "/v1/messages", benchOpus, APIAnthropic, []string{"anthropic-version", "2023-06-01"}, "claude-opus-4-7"},
	{"messages-opus-format-stream", "/v1/messages", benchOpus[:len(benchOpus)-1] + `,"stream":true}`, APIAnthropic, []string{"anthropic-version", "2023-06-01"}, "claude-opus-4-7"},
	{"messages-tool-loop", "/v1/messages", benchToolLoop, APIAnthropic, []string{"anthropic-version", "2023-06-01"}, ""},
	{"messages-claude5-thinking", "/v1/messages", benchClaude5, APIAnthropic, []string{"anthropic-version", "2023-06-01"}, "claude-opus-5"},
	{"messages-claude5-later-thinking", "/v1/messages", strings.Replace(benchClaude5, "claude-opus-5", "anthropic.claude-haiku-6-v1:0", 1), APIAnthropic, []string{"anthropic-version", "2023-06-01"}, "anthropic.claude-haiku-6-v1:0"},
	{"messages-count-tokens", "/v1/messages/count_tokens", benchCount, APIAnthropic, []string{"anthropic-version", "2023-06-01"}, ""},
	// vLLM's Messages API, as the gateway forwards an Anthropic client's request to a
	// vLLM backend (vllm_messages.go).
	{"vllm-messages", "/v1/messages", benchVLLMMessages, APIOpenAI, []string{"X-Request-Id", "0123456789abcdef0123456789abcdef"}, ""},
	{"vllm-messages-stream", "/v1/messages", benchVLLMMessages[:len(benchVLLMMessages)-1] + `,"stream":true}`, APIOpenAI, nil, ""},
	{"vllm-messages-tool-stream", "/v1/messages", benchVLLMTool, APIOpenAI, nil, ""},
	{"vllm-count-tokens", "/v1/messages/count_tokens", benchCount, APIOpenAI, nil, ""},
}

// benchVLLMMessages is an Anthropic client's request with the members vLLM drops
// (metadata, thinking) and sampling it reads; benchVLLMTool calls a tool, streamed.
const benchVLLMMessages = `{"model":"mock-1","max_tokens":64,"system":[{"type":"text","text":"be brief"}],"temperature":0.7,"top_p":0.9,` +
	`"metadata":{"user_id":"u-1"},"thinking":{"type":"enabled","budget_tokens":1024},` +
	`"messages":[{"role":"user","content":"Write a haiku about load balancers."}]}`

const benchVLLMTool = `{"model":"mock-1","max_tokens":64,"stream":true,"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}],` +
	`"messages":[{"role":"user","content":"What does get_weather say for Oslo?"}]}`

// benchCount is a count_tokens request of a tool loop's prompt.
const benchCount = `{"model":"mock-1","system":"be brief","tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],` +
	`"messages":[{"role":"user","content":"Weather in Oslo?"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Oslo"}}]},` +
	`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01A","content":"12C"}]}]}`

// BenchmarkHandler measures one request through the handler with zero delays: parse,
// generate, encode (and for streams every event).
func BenchmarkHandler(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(Options{API: bc.api, Model: bc.model, MaxTokens: 64})
			if err != nil {
				b.Fatal(err)
			}
			ctx := requestCtx(bc.path, bc.body, bc.hdr...)
			serveOnce(s, ctx)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				serveOnce(s, ctx)
			}
		})
	}
}

// BenchmarkResponsesStored measures a stored Responses API answer: while the store
// fills (emptied, off the clock, whenever it is full), the store's copy is its one
// allocation; once it is full, entries' buffers are reused and it allocates nothing.
func BenchmarkResponsesStored(b *testing.B) {
	const size = 4096
	for _, name := range []string{"filling", "full"} {
		b.Run(name, func(b *testing.B) {
			s, err := New(Options{MaxTokens: 64, ResponsesStore: size})
			if err != nil {
				b.Fatal(err)
			}
			ctx := requestCtx("/v1/responses", benchResponsesStored)
			for range size {
				serveOnce(s, ctx)
			}
			if name == "filling" {
				s.stored = newResponseStore(size)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(benchResponsesStored)))
			for b.Loop() {
				if name == "filling" && len(s.stored.byID) == size {
					b.StopTimer()
					s.stored = newResponseStore(size)
					b.StartTimer()
				}
				serveOnce(s, ctx)
			}
		})
	}
}

// BenchmarkChatHTTP is the chat path as a client sees it: a fasthttp client over an
// in-memory connection, so the figure includes HTTP parsing and writing on both ends.
func BenchmarkChatHTTP(b *testing.B) {
	s, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := &fasthttp.HostClient{Addr: "mock", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("http://mock/v1/chat/completions")
	req.SetBodyString(benchChat)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("http://mock/v1/chat/completions")
		req.Header.SetContentType("application/json")
		req.SetBodyString(benchChat)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("%v %d", err, resp.StatusCode())
				return
			}
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	})
	b.StopTimer()
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)
	c.CloseIdleConnections()
	if err := s.Shutdown(); err != nil {
		b.Error(err)
	}
	_ = ln.Close()
	<-served
}
