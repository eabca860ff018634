package providers

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// sentMaxUses is the max_uses of the web search tool in an Anthropic request body the
// translation wrote: -1 without the tool, 0 for the tool without max_uses.
func sentMaxUses(t *testing.T, sent []byte) int64 {
	t.Helper()
	tools, ok := jsonscan.Field(sent, "tools")
	if !ok {
		return -1
	}
	var a jsonscan.Array
	if !a.Reset(tools) {
		t.Fatalf("tools %s", tools)
	}
	for {
		raw, ok := a.Next()
		if !ok {
			return -1
		}
		if typ, _ := jsonscan.Field(raw, "type"); string(typ) != `"web_search_20250305"` {
			continue
		}
		v, ok := jsonscan.Field(raw, "max_uses")
		if !ok {
			return 0
		}
		n, ok := jsonscan.Int(v)
		if !ok {
			t.Fatalf("max_uses %s", v)
		}
		return n
	}
}

// TestWebSearchBoundChat: a chat request's bound is the max_uses the Anthropic
// translation sends for its web_search_options, read as its decoder reads them (keys in
// any case and escaped, the last of a name winning); a request the translation refuses,
// or whose tool goes without max_uses, is bounded by none.
func TestWebSearchBoundChat(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"What is new?"}]`
	cases := []struct {
		name, members string
		want          int64
		refused       bool
	}{
		{"no tool", ``, 0, false},
		{"low", `"web_search_options":{"search_context_size":"low"}`, 1, false},
		{"medium", `"web_search_options":{"search_context_size":"medium"}`, 5, false},
		{"high", `"web_search_options":{"search_context_size":"high"}`, 10, false},
		{"no size: no max_uses", `"web_search_options":{}`, 0, false},
		{"null size", `"web_search_options":{"search_context_size":null}`, 0, false},
		{"location only", `"web_search_options":{"user_location":{"type":"approximate","approximate":{"country":"GB"}}}`, 0, false},
		{"null options", `"web_search_options":null`, 0, false},
		{"key in another case", `"Web_Search_Options":{"Search_Context_Size":"high"}`, 10, false},
		{"escaped key and value", `"web_search_option\u0073":{"search_context_size":"hig\u0068"}`, 10, false},
		{"the last one wins", `"web_search_options":{"search_context_size":"low"},"WEB_SEARCH_OPTIONS":{"search_context_size":"high"}`, 10, false},
		{"the last size wins", `"web_search_options":{"search_context_size":"high","search_context_size":"low"}`, 1, false},
		{"a last null turns it off", `"web_search_options":{"search_context_size":"high"},"web_search_options":null`, 0, false},
		{"bad size refused", `"web_search_options":{"search_context_size":"huge"}`, 0, true},
		{"not an object refused", `"web_search_options":"high"`, 0, true},
		{"search in the text only", `"metadata":{"web_search_options":{"search_context_size":"high"}}`, 0, false},
		{"tool_choice none: no search", `"web_search_options":{"search_context_size":"high"},"tool_choice":"none"`, 0, false},
		{"tool_choice none in another case", `"web_search_options":{"search_context_size":"high"},"Tool_Choice":"none"`, 0, false},
		{"the last tool_choice wins", `"web_search_options":{"search_context_size":"low"},"tool_choice":"none","tool_choice":"auto"`, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(`{"model":"claude",` + msgs)
			if tc.members != "" {
				body = append(append(body, ','), tc.members...)
			}
			body = append(body, '}')
			if got := WebSearchBound(Chat, body); got != tc.want {
				t.Fatalf("WebSearchBound = %d, want %d", got, tc.want)
			}
			sent, err := appendAnthropicRequest(nil, body, quoteModel("claude-sonnet-4-5"), 1024, claudeModel{}, false)
			if (err != nil) != tc.refused {
				t.Fatalf("translation refused: %v, want %v", err, tc.refused)
			}
			if err == nil {
				// With tool_choice none the tool goes with Anthropic's none: no search.
				uses := sentMaxUses(t, sent)
				if bytes.Contains(sent, []byte(`"tool_choice":{"type":"none"}`)) {
					uses = 0
				}
				if max(uses, 0) != tc.want {
					t.Errorf("the translation sent max_uses %d (-1: no tool), the bound is %d: %s", uses, tc.want, sent)
				}
			}
			for _, k := range []Kind{Completions, Embeddings} {
				if got := WebSearchBound(k, body); got != 0 {
					t.Errorf("kind %v: %d", k, got)
				}
			}
		})
	}
}

// TestWebSearchBoundResponses: a Responses API call's bound is the max_uses its web
// search tool reaches Anthropic with through the bridge and the translation.
func TestWebSearchBoundResponses(t *testing.T) {
	cases := []struct {
		name, tools string
		want        int64
		refused     bool
	}{
		{"no tools", ``, 0, false},
		{"a function only", `[{"type":"function","name":"f","parameters":{"type":"object"}}]`, 0, false},
		{"web_search high", `[{"type":"web_search","search_context_size":"high"}]`, 10, false},
		{"web_search_preview low", `[{"type":"function","name":"f"},{"type":"web_search_preview","search_context_size":"low"}]`, 1, false},
		{"dated medium", `[{"type":"web_search_2025_08_26","search_context_size":"medium"}]`, 5, false},
		{"escaped type", `[{"type":"web_searc\u0068","search_context_size":"high"}]`, 10, false},
		{"a null size passed over", `[{"type":"web_search","search_context_size":"high","search_context_size":null}]`, 10, false},
		{"no size: no max_uses", `[{"type":"web_search"}]`, 0, false},
		{"two search tools refused", `[{"type":"web_search","search_context_size":"low"},{"type":"web_search_preview"}]`, 0, true},
		{"null tools", `null`, 0, false},
		{"tool_choice none: no search", `[{"type":"web_search","search_context_size":"high"}],"tool_choice":"none"`, 0, false},
		{"tool_choice auto", `[{"type":"web_search","search_context_size":"high"}],"tool_choice":"auto"`, 10, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"claude","input":"What is new?"`
			if tc.tools != "" {
				body += `,"tools":` + tc.tools
			}
			body += `}`
			if got := WebSearchBound(Responses, []byte(body)); got != tc.want {
				t.Fatalf("WebSearchBound = %d, want %d", got, tc.want)
			}
			var r respRequest
			chat, _, err, _ := appendBridgeRequest(nil, []byte(body), &r, []byte(`"claude"`), false, false)
			if err == nil {
				var terr *requestError
				chat, terr = appendAnthropicRequest(nil, chat, quoteModel("claude-sonnet-4-5"), 1024, claudeModel{}, false)
				if terr != nil {
					err = terr
				}
			}
			if (err != nil) != tc.refused {
				t.Fatalf("refused: %v, want %v", err, tc.refused)
			}
			if err == nil {
				uses := sentMaxUses(t, chat)
				if bytes.Contains(chat, []byte(`"tool_choice":{"type":"none"}`)) {
					uses = 0
				}
				if max(uses, 0) != tc.want {
					t.Errorf("sent max_uses %d (-1: no tool), the bound is %d: %s", uses, tc.want, chat)
				}
			}
		})
	}
}

// TestMarksPromptCache: a cache_control member anywhere marks the prompt for
// Anthropic's cache, in any case and escaped as the translation's decoder reads it;
// every mark the translation sends on is found.
func TestMarksPromptCache(t *testing.T) {
	cases := []struct {
		name, body string
		want       bool
	}{
		{"none", `{"model":"c","messages":[{"role":"user","content":"hi"}]}`, false},
		{"on a message", `{"model":"c","messages":[{"role":"user","content":"hi","cache_control":{"type":"ephemeral"}}]}`, true},
		{"on a part, one hour", `{"model":"c","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`, true},
		{"on a tool", `{"model":"c","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"},"cache_control":{"type":"ephemeral"}}]}`, true},
		{"another case", `{"model":"c","messages":[{"role":"user","content":"hi","Cache_Control":{"type":"ephemeral"}}]}`, true},
		{"escaped", `{"model":"c","messages":[{"role":"user","content":"hi","cache\u005fcontro\u004C":{"type":"ephemeral"}}]}`, true},
		{"a longer name", `{"model":"c","messages":[{"role":"user","content":"hi","cache_controls":{"type":"ephemeral"}}]}`, false},
		{"a shorter name", `{"model":"c","messages":[{"role":"user","content":"hi","cache_contro":{"type":"ephemeral"}}]}`, false},
		{"in the text", `{"model":"c","messages":[{"role":"user","content":"what does cache_control do?"}]}`, false},
		{"the text whole", `{"model":"c","messages":[{"role":"user","content":"cache_control"}]}`, true},
		{"cut short", `{"model":"c","messages":[{"role":"user","content":"hi","cache_control`, false},
		{"an escape cut short", `{"model":"c","cache\u005`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := MarksPromptCache([]byte(tc.body)); got != tc.want {
				t.Fatalf("MarksPromptCache = %v, want %v", got, tc.want)
			}
			sent, err := appendAnthropicRequest(nil, []byte(tc.body), quoteModel("claude-sonnet-4-5"), 1024, claudeModel{}, false)
			if err == nil && bytes.Contains(sent, []byte(`"cache_control"`)) && !tc.want {
				t.Errorf("the translation sent a mark the scan missed: %s", sent)
			}
		})
	}
}

// FuzzMarksPromptCache: whenever the translation sends a cache mark upstream, the
// request was found to mark its prompt.
func FuzzMarksPromptCache(f *testing.F) {
	f.Add(`{"model":"c","messages":[{"role":"user","content":"hi","cache_control":{"type":"ephemeral"}}]}`)
	f.Add(`{"model":"c","messages":[{"role":"user","content":[{"type":"text","text":"hi","CACHE_CONTROL":{"type":"ephemeral"}}]}]}`)
	f.Add(`{"model":"c","messages":[{"role":"system","content":"s","cache\u005fcontrol":{}},{"role":"user","content":"hi"}]}`)
	model := quoteModel("claude-sonnet-4-5")
	f.Fuzz(func(t *testing.T, body string) {
		sent, err := appendAnthropicRequest(nil, []byte(body), model, 1024, claudeModel{}, false)
		if err == nil && bytes.Contains(sent, []byte(`"cache_control"`)) && !MarksPromptCache([]byte(body)) {
			t.Fatalf("the translation sent a cache mark for %q, the scan found none", body)
		}
	})
}

// benchSpendBody is a chat request of about 20 KB (a long conversation) that marks its
// system prompt for the cache and asks for web search.
var benchSpendBody = []byte(`{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant.","cache_control":{"type":"ephemeral"}},` +
	strings.Repeat(`{"role":"user","content":"What is the weather in Paris today, and should I take an umbrella?"},{"role":"assistant","content":"It is raining in Paris: take one."},`, 128) +
	`{"role":"user","content":"And tomorrow?"}],"web_search_options":{"search_context_size":"medium"},"max_tokens":256}`)

// benchPlainBody is benchSpendBody without the mark and the search: the scans read it
// whole.
var benchPlainBody = bytes.Replace(bytes.Replace(benchSpendBody, []byte(`,"cache_control":{"type":"ephemeral"}`), nil, 1),
	[]byte(`"web_search_options":{"search_context_size":"medium"},`), nil, 1)

// BenchmarkSpendBounds is what a spend budget's estimate reads of a request body for
// an anthropic backend with cache-write and search prices: the cache mark and the
// search bound, on a body with both (the mark found early) and on one with neither.
func BenchmarkSpendBounds(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{{"marked", benchSpendBody}, {"plain", benchPlainBody}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			var n int64
			for b.Loop() {
				if MarksPromptCache(bc.body) {
					n++
				}
				n += WebSearchBound(Chat, bc.body)
			}
			if (n > 0) != (bc.name == "marked") {
				b.Fatalf("%s: %d", bc.name, n)
			}
		})
	}
}
