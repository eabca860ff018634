package mockllm

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
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
}

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
		{`{"model":null,"prompt":"caf\u00e9","return_token_strs":true}`, 4},
		{`{"model":"mock-1","tokens":[0,63,64,9007199254740993]}`, 5},
	} {
		f.Add([]byte(s.body), s.route)
	}
	servers := map[string]*Server{}
	for _, api := range []string{APIOpenAI, APIAnthropic} {
		s, err := New(Options{API: api, MaxTokens: 16, Now: fixedNow})
		if err != nil {
			f.Fatal(err)
		}
		servers[api] = s
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		r := fuzzRoutes[int(which)%len(fuzzRoutes)]
		s := servers[r.api]
		ctx := requestCtx(r.path, string(body), "anthropic-version", "2023-06-01")
		s.handle(ctx)
		defer ctx.Response.Reset()
		switch st := ctx.Response.StatusCode(); st {
		case 200, 400, 404:
		default:
			t.Fatalf("status %d for %q", st, body)
		}
		wt, ok := ctx.Response.BodyStream().(io.WriterTo)
		if !ok {
			if out := ctx.Response.Body(); !json.Valid(out) {
				t.Fatalf("invalid JSON %q for %q", out, body)
			}
			return
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
	})
}
