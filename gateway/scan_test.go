package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers"
)

func TestScanBody(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		err    *apiError
		model  string
		stream bool
		usage  bool
		max    int64
		user   string
	}{
		{"chat", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"user":"u1"}`, nil, `"chat"`, false, false, 16, "u1"},
		{"stream with usage", `{"stream":true,"stream_options":{"include_usage":true},"model":"c"}`, nil, `"c"`, true, true, 0, ""},
		{"max_completion_tokens", ` {"model":"c","max_completion_tokens":9} `, nil, `"c"`, false, false, 9, ""},
		{"stream null", `{"model":"c","stream":null}`, nil, `"c"`, false, false, 0, ""},
		{"escaped model", `{"model":"a\"b"}`, nil, `"a\"b"`, false, false, 0, ""},
		{"malformed", `{"model":"c",}`, &errMalformed, "", false, false, 0, ""},
		{"trailing garbage", `{"model":"c"} x`, &errMalformed, "", false, false, 0, ""},
		{"empty", ``, &errMalformed, "", false, false, 0, ""},
		{"array", `[1]`, &errNotObject, "", false, false, 0, ""},
		{"no model", `{"messages":[]}`, &errNoModel, "", false, false, 0, ""},
		{"model not a string", `{"model":5}`, &errModelType, "", false, false, 0, ""},
		{"stream not a bool", `{"model":"c","stream":"yes"}`, &errStreamType, "", false, false, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			body := []byte(c.body)
			err := scanBody(body, &f)
			if err != c.err {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			if got := string(body[f.model[0]:f.model[1]]); got != c.model {
				t.Errorf("model = %s, want %s", got, c.model)
			}
			if f.stream != c.stream || f.includeUsage != c.usage || f.maxTokens != c.max {
				t.Errorf("fields = %+v", f)
			}
			user := ""
			if f.user[0] >= 0 {
				user = string(body[f.user[0]:f.user[1]])
			}
			if user != c.user {
				t.Errorf("user = %q, want %q", user, c.user)
			}
		})
	}
}

// The completions a request asks for, each bounded by max_tokens: the token estimate
// multiplies max_tokens by them and the time per output token divides by them. An
// embeddings call has none; chat has n; a legacy completion has the larger of n and
// best_of for each of its prompts, where an array of strings or of token arrays is
// several prompts and a flat array of token IDs is one.
func TestCompletionsAskedFor(t *testing.T) {
	for _, c := range []struct {
		name string
		kind providers.Kind
		body string
		want int64
	}{
		{"chat", providers.Chat, `{"model":"m"}`, 1},
		{"chat with n", providers.Chat, `{"model":"m","n":3}`, 3},
		{"chat ignores best_of and prompt", providers.Chat, `{"model":"m","best_of":4,"prompt":["a","b"]}`, 1},
		{"embeddings", providers.Embeddings, `{"model":"m","input":["a","b"],"n":2}`, 0},
		{"prompt string", providers.Completions, `{"model":"m","prompt":"a, b"}`, 1},
		{"prompt strings", providers.Completions, `{"model":"m","prompt":["a","b","c"]}`, 3},
		{"prompt token IDs", providers.Completions, `{"model":"m","prompt":[1, 2, 3]}`, 1},
		{"prompt token arrays", providers.Completions, `{"model":"m","prompt":[[1,2],[3],[4]]}`, 3},
		{"prompt empty array", providers.Completions, `{"model":"m","prompt":[]}`, 1},
		{"prompt escaped key", providers.Completions, `{"model":"m","pr\u006fmpt":["a","b"]}`, 2},
		{"prompts times n", providers.Completions, `{"model":"m","prompt":["a","b"],"n":3}`, 6},
		{"best_of over n", providers.Completions, `{"model":"m","prompt":["a","b"],"n":2,"best_of":5}`, 10},
		{"n over best_of", providers.Completions, `{"model":"m","n":4,"best_of":2}`, 4},
		{"prompts bounded", providers.Completions, `{"model":"m","prompt":["a"` + strings.Repeat(`,"a"`, maxPrompts) + `]}`, maxPrompts},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			if e := scanBody([]byte(c.body), &f); e != nil {
				t.Fatal(e.message)
			}
			if got := f.completions(c.kind); got != c.want {
				t.Errorf("%s on %s: %d completions, want %d", c.body[:min(len(c.body), 80)], c.kind, got, c.want)
			}
		})
	}
}

// The choices a stream's answer holds, which its end waits for when the body ends
// without [DONE]: chat's n; a legacy completion's n for each prompt, best_of left out
// (it is not streamed); 0 stands for one.
func TestStreamChoices(t *testing.T) {
	for _, c := range []struct {
		name string
		kind providers.Kind
		body string
		want int64
	}{
		{"chat", providers.Chat, `{"model":"m"}`, 0},
		{"chat with n", providers.Chat, `{"model":"m","n":3}`, 3},
		{"chat ignores prompt", providers.Chat, `{"model":"m","prompt":["a","b"]}`, 0},
		{"prompt string", providers.Completions, `{"model":"m","prompt":"a"}`, 0},
		{"prompt string with n", providers.Completions, `{"model":"m","prompt":"a","n":2}`, 2},
		{"prompt strings", providers.Completions, `{"model":"m","prompt":["a","b","c"]}`, 3},
		{"prompt token arrays times n", providers.Completions, `{"model":"m","prompt":[[1],[2]],"n":3}`, 6},
		{"best_of left out", providers.Completions, `{"model":"m","prompt":["a","b"],"best_of":4}`, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			if e := scanBody([]byte(c.body), &f); e != nil {
				t.Fatal(e.message)
			}
			if got := f.streamChoices(c.kind); got != c.want {
				t.Errorf("%s on %s: %d choices, want %d", c.body, c.kind, got, c.want)
			}
		})
	}
}

func TestErrorBody(t *testing.T) {
	e := modelNotFound([]byte("gpt-</script>\"x"))
	var got struct {
		Error struct {
			Message, Type, Code string
			Param               *string
		}
	}
	if err := json.Unmarshal(appendError(nil, &e), &got); err != nil {
		t.Fatal(err)
	}
	if got.Error.Type != "invalid_request_error" || got.Error.Code != "model_not_found" || got.Error.Param == nil || *got.Error.Param != "model" {
		t.Fatalf("error body = %+v", got)
	}
	if err := json.Unmarshal(appendError(nil, &errNoKey), &got); err != nil || got.Error.Param != nil {
		t.Fatalf("param should be null: %+v %v", got, err)
	}
}

func FuzzScanBody(f *testing.F) {
	for _, s := range []string{`{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		`{"model":"m","stream_options":{"include_usage":true},"max_tokens":5,"user":"x"}`, `{"model":1}`, `[]`, `{`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":"yes","continuous_usage_stats":1}}`,
		`{"mod\u0065l":"chat","\u0073tream":true}`, `{"model":"a","model":"b"}`, `{"model":"m","prompt":[[1],"a",2]}`,
		`{"model":"m","user":"a","safety_identifier":"b"}`, `{"model":"m","safety_identifier":"","user":"u","user":null}`,
		`{"model":"m","safety\u005fidentifier":7,"user":"jos\u00e9"}`,
		`{"model":"chat","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"instructions":"be brief","max_output_tokens":64,"previous_response_id":"resp_1-tg0123456789ab"}`,
		`{"model":"m","previous_response_id":"a","previous_response_id":null,"max_output_tokens":1.5e3}`,
		`{"model":"rank","query":"which","documents":["a",{"text":"b"}],"top_n":1}`, `{"model":"r","documents":[],"documents":["x","y"],"query":"q"}`,
		`{"model":"c","max_tokens":9,"system":[{"type":"text","text":"s"}],"metadata":{"user_id":"a","user\u005fid":"b"},"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"QUJD"}}]}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fl fields
		if e := scanBody(body, &fl); e != nil {
			// What a JSON parser reads as an object with one string model is refused
			// only for what the gateway refuses on purpose. null decodes into a map
			// as a nil one: not an object.
			if e == &errMalformed || e == &errNotObject {
				var m map[string]json.RawMessage
				if json.Unmarshal(body, &m) == nil && m != nil && json.Valid(body) {
					t.Fatalf("refused %q as %s, a valid JSON object", body, e.code)
				}
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted non-object %q", body)
		}
		var model string
		if err := json.Unmarshal(body[fl.model[0]:fl.model[1]], &model); err != nil {
			t.Fatalf("model span %q is not a string", body[fl.model[0]:fl.model[1]])
		}
		// The span the gateway rewrites is the model every parser upstream reads,
		// however its key is spelled.
		if got := body[fl.model[0]:fl.model[1]]; string(m["model"]) != string(got) {
			t.Fatalf("rewrites model %s, a JSON parser reads %s in %q", got, m["model"], body)
		}
		// The end user (sticky key, per: user bucket) is the one a JSON parser reads:
		// safety_identifier when a non-empty string, else user when a string.
		var want, got []byte
		if s := m["safety_identifier"]; len(s) > 2 && s[0] == '"' {
			want = s
		} else if u := m["user"]; len(u) > 0 && u[0] == '"' {
			want = u
		}
		if span := fl.endUser(); span[0] >= 0 {
			got = body[span[0]-1 : span[1]+1]
		}
		if string(got) != string(want) {
			t.Fatalf("reads end user %s, a JSON parser reads %s in %q", got, want, body)
		}
		// The response continued (untag) is the one a JSON parser reads.
		want, got = nil, nil
		if p := m["previous_response_id"]; len(p) > 0 && p[0] == '"' {
			want = p
		}
		if span := fl.prevResponse; span[0] >= 0 {
			got = body[span[0]-1 : span[1]+1]
		}
		if string(got) != string(want) {
			t.Fatalf("reads previous_response_id %s, a JSON parser reads %s in %q", got, want, body)
		}
		// A rerank's documents are those of the list a JSON parser keeps (the last
		// member), and its query is counted once a document.
		// vLLM's multimodal form, an object, holds its documents in content.
		var docs []json.RawMessage
		if json.Unmarshal(m["documents"], &docs) != nil {
			docs = nil
			var exact map[string]json.RawMessage
			if json.Unmarshal(m["documents"], &exact) == nil && json.Unmarshal(exact["content"], &docs) != nil {
				docs = nil
			}
		}
		if fl.documents != int64(len(docs)) {
			t.Fatalf("counts %d documents, a JSON parser reads %d in %q", fl.documents, len(docs), body)
		}
		rt, rm := fl.input(providers.Rerank)
		if ct, cm := fl.input(providers.Chat); ct < 0 || cm < 0 || rt < ct || rm < cm {
			t.Fatalf("input %d bytes %d media as a rerank, %d %d as chat in %q", rt, rm, ct, cm, body)
		}
		checkScoreScan(t, body, m, &fl)
		// As a Messages API call: the end user is metadata.user_id as a JSON parser
		// reads it (when a string), and the input is never negative.
		mf := fl
		mf.messagesAPI(body)
		want, got = nil, nil
		var meta map[string]json.RawMessage
		if json.Unmarshal(m["metadata"], &meta) == nil {
			if u := meta["user_id"]; len(u) > 0 && u[0] == '"' {
				want = u
			}
		}
		if span := mf.endUser(); span[0] >= 0 {
			got = body[span[0]-1 : span[1]+1]
		}
		if string(got) != string(want) {
			t.Fatalf("reads metadata.user_id %s, a JSON parser reads %s in %q", got, want, body)
		}
		if text, media := mf.input(providers.Messages); text < 0 || media < 0 {
			t.Fatalf("input %d bytes %d media as a Messages API call in %q", text, media, body)
		}
	})
}

// checkScoreScan checks a score call's scan against what a JSON parser reads: the
// pair of sides is the first of vLLM's union order whose two members (the last of
// each name) are sides: a string, an object whose content is a list, or a list of
// both; its sides hold the items a parser counts; its input is the sides' bytes, the
// left side's once a pair when it is one item, exactly so when they hold no media.
func checkScoreScan(t *testing.T, body []byte, m map[string]json.RawMessage, fl *fields) {
	t.Helper()
	multimodal := func(raw json.RawMessage) bool {
		var obj map[string]json.RawMessage
		var list []json.RawMessage
		return len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &obj) == nil &&
			len(obj["content"]) > 0 && obj["content"][0] == '[' && json.Unmarshal(obj["content"], &list) == nil
	}
	side := func(raw json.RawMessage) bool {
		var list []json.RawMessage
		switch {
		case len(raw) == 0:
			return false
		case raw[0] == '"':
			return true
		case raw[0] == '{':
			return multimodal(raw)
		case raw[0] != '[' || json.Unmarshal(raw, &list) != nil:
			return false
		}
		for _, e := range list {
			if e[0] != '"' && !multimodal(e) {
				return false
			}
		}
		return true
	}
	items := func(raw json.RawMessage, right bool) int64 {
		var list []json.RawMessage
		switch {
		case raw[0] == '"', raw[0] == '{' && !right:
			return 1
		case raw[0] == '{':
			var obj map[string]json.RawMessage
			if json.Unmarshal(raw, &obj) != nil || json.Unmarshal(obj["content"], &list) != nil {
				return 0
			}
		case json.Unmarshal(raw, &list) != nil:
			return 0
		}
		return int64(len(list))
	}
	var left, right json.RawMessage
	for _, p := range [][2]string{{"queries", "documents"}, {"queries", "items"}, {"data_1", "data_2"}, {"text_1", "text_2"}} {
		if side(m[p[0]]) && side(m[p[1]]) {
			left, right = m[p[0]], m[p[1]]
			break
		}
	}
	text, media := fl.input(providers.Score)
	if left == nil {
		if fl.scoreLeft != 0 || fl.scoreRight != 0 || text != 0 || media != 0 || fl.pairs(providers.Score) != 0 {
			t.Fatalf("score sides %d:%d, input %d bytes %d media, where a JSON parser reads no pair in %q", fl.scoreLeft, fl.scoreRight, text, media, body)
		}
		return
	}
	l, r := items(left, false), items(right, true)
	if fl.scoreLeft != l || fl.scoreRight != r || fl.pairs(providers.Score) != max(l, r) {
		t.Fatalf("score sides %d:%d, a JSON parser reads %d:%d in %q", fl.scoreLeft, fl.scoreRight, l, r, body)
	}
	reps := int64(1)
	if l == 1 && r > 1 {
		reps = r
	}
	whole := int64(len(left))*reps + int64(len(right))
	if text < 0 || media < 0 || text > whole || media == 0 && text != whole {
		t.Fatalf("score input %d bytes %d media, the sides %d bytes (the left %d times) in %q", text, media, whole, reps, body)
	}
}

func BenchmarkScanBody(b *testing.B) {
	body := []byte(`{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Tell me a story about a gateway."}],"stream":false,"max_tokens":64,"user":"u-123"}`)
	var f fields
	b.ReportAllocs()
	for b.Loop() {
		if scanBody(body, &f) != nil {
			b.Fatal("scan failed")
		}
	}
}

// benchPromptsBody is a legacy completion with several prompts, whose count the scan
// reads.
var benchPromptsBody = []byte(`{"model":"legacy","prompt":["Once upon a time","A gateway is",[1,2,3]],"max_tokens":64,"n":2,"best_of":3}`)

func BenchmarkScanBodyPrompts(b *testing.B) {
	var f fields
	b.ReportAllocs()
	for b.Loop() {
		if scanBody(benchPromptsBody, &f) != nil {
			b.Fatal("scan failed")
		}
	}
}
