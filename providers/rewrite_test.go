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
		{"other stream options kept", `{"model":"chat","stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":false}}`, true,
			map[string]string{"model": `"up/model"`, "stream_options": `{"include_usage":true,"continuous_usage_stats":true}`}},
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
