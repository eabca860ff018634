package providers

import (
	"encoding/json"
	"testing"
)

func spanOf(t *testing.T, body, key string) [2]int {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	raw, ok := m[key]
	if !ok {
		return [2]int{-1, -1}
	}
	for i := 0; i+len(raw) <= len(body); i++ {
		if body[i:i+len(raw)] == string(raw) && i > 0 {
			return [2]int{i, i + len(raw)}
		}
	}
	t.Fatalf("value of %s not found", key)
	return [2]int{}
}

func TestAppendBody(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		force bool
		want  map[string]string
	}{
		{"model only", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}`, false,
			map[string]string{"model": `"up/model"`, "messages": `[{"role":"user","content":"hi"}]`, "tools": `[{"type":"function"}]`}},
		{"usage added", `{"model":"chat","stream":true}`, true,
			map[string]string{"model": `"up/model"`, "stream": "true", "stream_options": `{"include_usage":true}`}},
		{"usage replaced after model", `{"model":"chat","stream":true,"stream_options":{"include_usage":false}}`, true,
			map[string]string{"model": `"up/model"`, "stream_options": `{"include_usage":true}`}},
		{"usage replaced before model", `{"stream_options":{},"stream":true, "model" : "chat" }`, true,
			map[string]string{"model": `"up/model"`, "stream_options": `{"include_usage":true}`}},
		{"continuous usage turned off with forced usage", `{"model":"chat","stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":false}}`, true,
			map[string]string{"model": `"up/model"`, "stream_options": `{"include_usage":true,"continuous_usage_stats":false}`}},
		{"escaped include_usage replaced", `{"model":"chat","stream":true,"stream_options":{"include\u005fusage":false,"x":[1,{"y":2}]}}`, true,
			map[string]string{"stream_options": `{"include_usage":true,"x":[1,{"y":2}]}`}},
		{"stream_options null", `{"model":"chat","stream":true,"stream_options":null}`, true,
			map[string]string{"stream_options": `{"include_usage":true}`}},
		{"logprobs and response_format untouched", `{"model":"x","logprobs":true,"top_logprobs":2,"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}}}`, false,
			map[string]string{"logprobs": "true", "top_logprobs": "2", "response_format": `{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}}`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			call := &Call{Body: []byte(c.body), Model: spanOf(t, c.body, "model"), StreamOptions: spanOf(t, c.body, "stream_options")}
			out := appendBody(nil, call, quoteModel("up/model"), c.force)
			var m map[string]json.RawMessage
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("rewritten body %s is not JSON: %v", out, err)
			}
			for k, v := range c.want {
				if string(m[k]) != v {
					t.Errorf("%s = %s, want %s (body %s)", k, m[k], v, out)
				}
			}
		})
	}
}

func BenchmarkAppendBody(b *testing.B) {
	body := `{"model":"chat","messages":[{"role":"user","content":"Tell me a story about a fast gateway."}],"max_tokens":64}`
	call := &Call{Body: []byte(body), Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1}}
	model := quoteModel("meta-llama/Llama-3.1-8B-Instruct")
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendBody(buf[:0], call, model, false)
	}
}

// Token counts an upstream reports are believed from 0 to 2^40; one outside that (or
// not an integer) makes the whole usage unknown, so that the other is not settled
// alone. null is no count.
func TestParseUsageBounds(t *testing.T) {
	for _, c := range []struct {
		raw       string
		in, out   int64
		wellBuilt bool
	}{
		{`{"prompt_tokens":12,"completion_tokens":3}`, 12, 3, true},
		{`{"prompt_tokens":null,"completion_tokens":3}`, 0, 3, true},
		{`{"prompt_tokens":-5,"completion_tokens":10}`, 0, 0, true},
		{`{"prompt_tokens":1099511627776,"completion_tokens":1}`, 1 << 40, 1, true},
		{`{"prompt_tokens":1099511627777,"completion_tokens":1}`, 0, 0, true},
		{`{"prompt_tokens":12.5,"completion_tokens":1}`, 0, 0, true},
		{`{"prompt_tokens":"12","completion_tokens":1}`, 0, 0, true},
		// The prompt cache's count prices the input: it is believed as the others are.
		{`{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":-1}}`, 0, 0, true},
	} {
		var u Usage
		if ok := parseUsage([]byte(c.raw), &u); ok != c.wellBuilt || u.Input != c.in || u.Output != c.out {
			t.Errorf("%s: %+v %v, want %d/%d", c.raw, u, ok, c.in, c.out)
		}
	}
	// Anthropic's message_delta may name a count as null: message_start's stands.
	var a anthropicUsage
	a.read([]byte(`{"input_tokens":40,"cache_read_input_tokens":60,"output_tokens":1}`))
	a.read([]byte(`{"input_tokens":null,"cache_read_input_tokens":null,"output_tokens":7,"service_tier":"standard"}`))
	if u := a.usage(); u.Input != 100 || u.Output != 7 {
		t.Errorf("anthropic usage %+v, want 100 in, 7 out", u)
	}
	a.read([]byte(`{"output_tokens":-3}`))
	if u := a.usage(); u.Counted() {
		t.Errorf("anthropic usage after a negative count %+v, want unknown", u)
	}
}
