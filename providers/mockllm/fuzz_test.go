package mockllm

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

var fuzzRoutes = []struct {
	path string
	api  string
}{
	{"/v1/chat/completions", APIOpenAI},
	{"/v1/completions", APIOpenAI},
	{"/v1/embeddings", APIOpenAI},
	{"/v1/messages", APIAnthropic},
	{"/tokenize", APIOpenAI},
	{"/detokenize", APIOpenAI},
	// The Messages API serving a model of its own rules (claude_models.go), so that
	// omitted thinking and structured outputs are answered, not refused.
	{"/v1/messages", fuzzOpus},
	// vLLM's Messages API (vllm_messages.go), and both count_tokens.
	{"/v1/messages", APIOpenAI},
	{"/v1/messages/count_tokens", APIOpenAI},
	{"/v1/messages/count_tokens", APIAnthropic},
}

// fuzzOpus names the server of fuzzRoutes that serves claude-opus-4-7.
const fuzzOpus = "anthropic claude-opus-4-7"

// FuzzRequest feeds arbitrary bodies to every POST route: the server must not
// panic, must answer 200, 400 or 404, and everything it sends must be JSON (or, for a
// stream, SSE events whose data is JSON or [DONE]).
func FuzzRequest(f *testing.F) {
	seeds := []string{
		chatBody("hello", `"max_tokens":3,"stop":["a","b"],"seed":-4`),
		chatBody("x", `"stream":true,"stream_options":{"include_usage":true}`),
		`{"prompt":["a",[1,2]],"max_tokens":2,"stream":true}`,
		`{"input":[[1,2],[3]],"encoding_format":"base64","dimensions":3}`,
		`{"model":"mock-1","max_tokens":9,"stream":true,"stop_sequences":["e"],"tools":[{"name":"t","input_schema":{"properties":{"a":{"type":["string","null"]},"b":{"type":"object","properties":{"c":{"enum":[1]}}}}}}],"messages":[{"role":"user","content":[{"type":"text","text":"use t"}]}]}`,
		`{"model":"mock-1","max_tokens":1,"tool_choice":{"type":"any"},"tools":[{"name":"\u00e9t\"x"}],"messages":[{"role":"user","content":"\ud83d\ude00"}]}`,
		`{"messages":[{"content":[{"text":"\u0000"}]}],"max_tokens":1e3}`,
		`{"model":"mock-1","max_tokens":2000,"stream":true,"thinking":{"type":"enabled","budget_tokens":1024},"tools":[{"name":"t"}],"messages":[{"role":"user","content":"use t"},{"role":"assistant","content":[{"type":"thinking","thinking":"a\u00e9","signature":"x"},{"type":"tool_use","id":"u","name":"t","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"u"}]}]}`,
		`{"model":"mock-1","max_tokens":1,"thinking":{"type":"adaptive"},"top_p":0.97,"messages":[{"role":"user","content":"hi"}]}`,
		// A tool-use history: parallel calls answered out of order, an image and
		// cache breakpoints inside a tool result, text after the results.
		`{"model":"mock-1","max_tokens":9,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"tools":[{"name":"t"},{"name":"\u00e9","cache_control":{}}],"messages":[{"role":"user","content":"use t"},{"role":"assistant","content":[{"type":"tool_use","id":"a_1","name":"t","input":{}},{"type":"tool_use","id":"b-2","name":"\u00e9","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"b-2","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"},"cache_control":{}}]},{"type":"tool_result","tool_use_id":"a_1"},{"type":"text","text":"ok"}]}]}`,
		`{"model":"mock-1","max_tokens":9,"tools":[{"name":"t"}],"metadata":{"user_id":"u"},"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"t","input":{}}]},{"role":"user","content":[{"type":"text","text":"y"},{"type":"tool_result","tool_use_id":"a\u0000"}]}]}`,
		`{"model":"mock-1`,
		`[]`,
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i))
	}
	for _, s := range []struct {
		body  string
		route uint8 // index in fuzzRoutes
	}{
		{chatBody("lp", `"logprobs":true,"top_logprobs":3,"n":2,"stream":true,"stream_options":{"continuous_usage_stats":true},"min_tokens":2,"temperature":0.5,"top_p":0.9`), 0},
		{`{"prompt":["a","bb"],"logprobs":2,"n":2,"max_tokens":null,"stream":true,"stream_options":{"continuous_usage_stats":true}}`, 1},
		{`{"prompt":["caf\u00e9 \ud83d\ude00\n",[0,63,64,-1],""],"echo":true,"logprobs":-1,"n":2,"max_tokens":4,"stream":true,"stop":[" "],"include_stop_str_in_output":true,"min_tokens":2,"request_id":"r\"1"}`, 1},
		{`{"prompt":"x","echo":true,"logprobs":3,"ignore_eos":true,"max_tokens":5,"stop":"e","suffix":null}`, 1},
		{`{"model":null,"prompt":"caf\u00e9","return_token_strs":true}`, 4},
		{`{"model":"mock-1","tokens":[0,63,64,9007199254740993]}`, 5},
		{`{"model":"claude-opus-4-7","max_tokens":40,"stream":true,"thinking":{"type":"adaptive"},"output_config":{"effort":"xhigh","format":{"type":"json_schema","schema":{"type":"object","additionalProperties":false,"properties":{"a":{"enum":["caf\u00e9"]},"b":{"type":"object","additionalProperties":false,"properties":{"c":{"type":["integer","null"]}}},"d":{"type":"array","items":{"type":"string"}}}}}},"stop_sequences":["}"],"messages":[{"role":"user","content":"json"}]}`, 6},
		{`{"model":"claude-opus-4-7","max_tokens":3,"output_config":{"format":{"type":"json_schema","schema":{"type":"string"}}},"messages":[{"role":"user","content":"\u00e9\u00e9"}]}`, 6},
		{`{"model":"claude-opus-4-7","max_tokens":900,"thinking":{"type":"adaptive","display":"omitted"},"tools":[{"name":"t"}],"messages":[{"role":"user","content":"use t"},{"role":"assistant","content":[{"type":"thinking","thinking":"","signature":"EqMock1O2"},{"type":"tool_use","id":"u","name":"t","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"u"}]}]}`, 6},
		{`{"model":"claude-opus-4-7","max_tokens":9,"temperature":1,"top_p":1,"output_config":{"effort":"max","format":{"type":"json_schema","schema":{"type":"object","$defs":{"x":{"type":"object"}},"anyOf":[{"type":"object"}]}}},"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"pre"}]}`, 6},
		{`{"model":"claude-sonnet-4-6","max_tokens":2000,"thinking":{"type":"enabled","budget_tokens":1024,"display":"summarized"},"output_config":null,"messages":[{"role":"user","content":"hi"}]}`, 3},
		// The Claude 5 rules (thinking by default, disabled and between_tools per model,
		// forced tool use) are the request's model's, whichever model is served.
		{`{"model":"claude-opus-5","max_tokens":40,"stream":true,"thinking":{"type":"disabled"},"output_config":{"effort":"high"},"tools":[{"name":"t"}],"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"use t"}]}`, 6},
		{`{"model":"claude-sonnet-5-5","max_tokens":900,"thinking":{"type":"between_tools"},"output_config":{"effort":"xhigh"},"tools":[{"name":"t"}],"messages":[{"role":"user","content":"use t"},{"role":"assistant","content":[{"type":"thinking","thinking":"n","signature":"x"},{"type":"tool_use","id":"u","name":"t","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"u"}]}]}`, 6},
		{`{"model":"anthropic.claude-fable-5","max_tokens":9,"thinking":null,"temperature":1,"tools":[{"name":"t","input_schema":{"properties":{"a":{"type":"integer"}}}}],"tool_choice":{"type":"tool","name":"t"},"messages":[{"role":"user","content":"x"}]}`, 6},
	} {
		f.Add([]byte(s.body), s.route)
	}
	servers := map[string]*Server{}
	for _, o := range []Options{{API: APIOpenAI}, {API: APIAnthropic}, {API: APIAnthropic, Model: "claude-opus-4-7"}} {
		o.MaxTokens, o.Now = 16, fixedNow
		s, err := New(o)
		if err != nil {
			f.Fatal(err)
		}
		key := o.API
		if o.Model != "" {
			key = fuzzOpus
		}
		servers[key] = s
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		r := fuzzRoutes[int(which)%len(fuzzRoutes)]
		s := servers[r.api]
		ctx := requestCtx(r.path, string(body), "anthropic-version", "2023-06-01")
		s.handle(ctx)
		defer ctx.Response.Reset()
		checkAnswer(t, ctx, body)
	})
}

// checkAnswer fails t unless the answer in ctx is 200, 400 or 404 and all JSON (a
// stream: SSE events whose data is JSON or [DONE]); it returns what was sent.
func checkAnswer(t *testing.T, ctx *fasthttp.RequestCtx, body []byte) []byte {
	t.Helper()
	switch st := ctx.Response.StatusCode(); st {
	case 200, 400, 404:
	default:
		t.Fatalf("status %d for %q", st, body)
	}
	wt, ok := ctx.Response.BodyStream().(io.WriterTo)
	if !ok {
		out := ctx.Response.Body()
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q for %q", out, body)
		}
		return out
	}
	var out bytes.Buffer
	if _, err := wt.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	for ev := range bytes.SplitSeq(bytes.TrimSuffix(out.Bytes(), []byte("\n\n")), []byte("\n\n")) {
		_, data, ok := bytes.Cut(ev, []byte("data: "))
		if !ok || !json.Valid(data) && string(data) != "[DONE]" {
			t.Fatalf("bad event %q for %q", ev, body)
		}
	}
	return out.Bytes()
}

// FuzzResponses feeds arbitrary bodies to POST /v1/responses, $PREV standing for the
// id of a stored response, and lists the input items of each stored answer: the
// server must answer 200, 400 or 404, in JSON (or SSE events of JSON).
func FuzzResponses(f *testing.F) {
	for _, s := range []string{
		`{"model":"mock-1","input":"hello","instructions":"be brief","max_output_tokens":3}`,
		`{"input":"x","previous_response_id":"$PREV","stream":true,"store":false}`,
		`{"previous_response_id":"$PREV"}`,
		`{"input":[{"role":"user","content":[{"type":"input_text","text":"caf\u00e9"},{"type":"input_image","image_url":"data:,"}]},{"type":"message","role":"assistant","content":"a\"b"},` +
			`{"type":"function_call","call_id":"c","name":"f","arguments":"{\"a\": 1}"},{"type":"function_call_output","id":"x\\y","call_id":"c","output":[ {"type":"input_text", "text":"1"} ]},` +
			`{"type":"reasoning","summary":[]},{"type":"item_reference","id":"msg_1"}],"tools":[ {"type":"function","name":"f"} ],"tool_choice":{ "type": "function" ,"name":"f"},` +
			`"text":{"format":{"type":"json_schema","name":"s","schema":{}}},"reasoning":{"effort":"low"},"metadata":{"k":"v\n"},"user":"u","service_tier":"flex","truncation":"auto",` +
			`"temperature":0.2,"top_p":0.5,"top_logprobs":3,"parallel_tool_calls":false,"prompt_cache_key":"k","safety_identifier":"s"}`,
		`{"input":"x","background":false,"store":null,"stream":null,"max_output_tokens":"2","model":null}`,
		`{"input":[{"role":"user","content":"x"}],"max_output_tokens":9000}`,
		`{"input":"x","background":true}`,
		`{"input":[],"previous_response_id":"resp_000000000000000000000000000000000000000000000000"}`,
	} {
		f.Add([]byte(s))
	}
	s, err := New(Options{MaxTokens: 16, Now: fixedNow, ResponsesStore: 64})
	if err != nil {
		f.Fatal(err)
	}
	seed := requestCtx("/v1/responses", `{"input":"first turn"}`)
	s.handle(seed)
	prev, _ := jsonscan.Field(seed.Response.Body(), "id")
	if len(prev) < 2 {
		f.Fatalf("no stored response: %s", seed.Response.Body())
	}
	prev = bytes.Clone(prev[1 : len(prev)-1])
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.ReplaceAll(body, []byte("$PREV"), prev)
		ctx := requestCtx("/v1/responses", string(body))
		s.handle(ctx)
		defer ctx.Response.Reset()
		out := checkAnswer(t, ctx, body)
		id, ok := jsonscan.Field(out, "id")
		if ctx.Response.StatusCode() != 200 || !ok || !jsonscan.IsString(id) {
			return
		}
		for _, path := range []string{"", "/input_items?order=asc"} {
			get := requestCtx("/v1/responses/"+string(id[1:len(id)-1])+path, "")
			get.Request.Header.SetMethod(fasthttp.MethodGet)
			s.handle(get)
			if st := get.Response.StatusCode(); st != 200 && st != 404 || !json.Valid(get.Response.Body()) {
				t.Fatalf("GET %s: %d %s for %q", path, st, get.Response.Body(), body)
			}
		}
	})
}
