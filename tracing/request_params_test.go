package tracing

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// The attempt span's gen_ai.request.* describe the request body the model was sent,
// OpenAI's or Anthropic's: the conventions' Recommended request attributes beside
// the Conditionally Required ones.
func TestSentRequestAttributes(t *testing.T) {
	all := []string{"gen_ai.request.max_tokens", "gen_ai.request.temperature", "gen_ai.request.top_p",
		"gen_ai.request.top_k", "gen_ai.request.frequency_penalty", "gen_ai.request.presence_penalty",
		"gen_ai.request.choice.count", "gen_ai.request.seed", "gen_ai.output.type",
		"gen_ai.request.stop_sequences", "gen_ai.request.encoding_formats"}
	sixteen := `"1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16"`
	for _, tt := range []struct {
		name, body string
		want       map[string]any
	}{
		{"openai chat", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":64,"temperature":0.5,` +
			`"top_p":0.9,"stop":["x","y"],"frequency_penalty":0.1,"presence_penalty":-0.2,"seed":7,"n":2,` +
			`"response_format":{"type":"json_schema","json_schema":{"name":"x"}},"stream":true}`,
			map[string]any{"gen_ai.request.max_tokens": int64(64), "gen_ai.request.temperature": 0.5,
				"gen_ai.request.top_p": 0.9, "gen_ai.request.stop_sequences": "x,y",
				"gen_ai.request.frequency_penalty": 0.1, "gen_ai.request.presence_penalty": -0.2,
				"gen_ai.request.seed": int64(7), "gen_ai.request.choice.count": int64(2),
				"gen_ai.output.type": "json", "gen_ai.request.stream": true}},
		{"anthropic messages", `{"model":"claude","max_tokens":4096,"output_config":{"format":{"type":"json_schema","schema":{}}},` +
			`"messages":[{"role":"user","content":"hi"}],"stop_sequences":["END"],"temperature":1,"top_k":40,"stream":true}`,
			map[string]any{"gen_ai.request.max_tokens": int64(4096), "gen_ai.request.temperature": 1.0,
				"gen_ai.request.top_k": 40.0, "gen_ai.request.stop_sequences": "END", "gen_ai.output.type": "json",
				"gen_ai.request.stream": true}},
		{"embeddings", `{"model":"e","input":"hi","encoding_format":"base64"}`,
			map[string]any{"gen_ai.request.encoding_formats": "base64", "gen_ai.request.stream": false}},
		{"nothing given", `{"model":"m","messages":[]}`, map[string]any{"gen_ai.request.stream": false}},
		{"nulls are not given", `{"max_tokens":null,"temperature":null,"top_p":null,"stop":null,"seed":null,"n":null}`,
			map[string]any{}},
		{"one stop string", `{"stop":"\n\n"}`, map[string]any{"gen_ai.request.stop_sequences": "\n\n"}},
		{"max_completion_tokens wins", `{"max_completion_tokens":32,"max_tokens":64}`,
			map[string]any{"gen_ai.request.max_tokens": int64(32)}},
		{"counts as vLLM reads them", `{"max_tokens":"64","n":2.0}`,
			map[string]any{"gen_ai.request.max_tokens": int64(64), "gen_ai.request.choice.count": int64(2)}},
		{"last of a name wins", `{"temperature":0.1,"temperature":0.2}`, map[string]any{"gen_ai.request.temperature": 0.2}},
		{"escaped name", `{"temp\u0065rature":0.3}`, map[string]any{"gen_ai.request.temperature": 0.3}},
		{"name in another case is another member", `{"Temperature":0.3,"TOP_P":1}`, map[string]any{}},
		{"wrong types", `{"temperature":"hot","top_p":true,"stop":[1,"x"],"seed":1.5,"encoding_format":["float"]}`,
			map[string]any{"gen_ai.request.stop_sequences": "x"}},
		{"stop sequences bounded", `{"stop":[` + sixteen + `,"17"]}`,
			map[string]any{"gen_ai.request.stop_sequences": strings.ReplaceAll(sixteen, `"`, "")}},
		{"not an object", `[1]`, map[string]any{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), upstream)
			s := SentRequest{Span: span}
			s.ReadSent([]byte(tt.body))
			span.End()
			got := attrs(exported(t, tr, exp)[0].Attributes)
			for _, k := range all {
				v, ok := got[k]
				want, wanted := tt.want[k]
				switch {
				case ok != wanted:
					t.Errorf("%s present %v (%v), want present %v", k, ok, v.Emit(), wanted)
				case ok && attrValue(v) != want:
					t.Errorf("%s = %v, want %v", k, attrValue(v), want)
				}
			}
			if want, ok := tt.want["gen_ai.request.stream"]; ok && got["gen_ai.request.stream"].AsInterface() != want {
				t.Errorf("gen_ai.request.stream = %v, want %v", got["gen_ai.request.stream"].AsInterface(), want)
			}
		})
	}
}

// attrValue is v for comparison: a string slice joined with commas.
func attrValue(v attribute.Value) any {
	if v.Type() == attribute.STRINGSLICE {
		return strings.Join(v.AsStringSlice(), ",")
	}
	return v.AsInterface()
}
