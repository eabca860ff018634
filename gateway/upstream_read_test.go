package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The upstreams read the body the gateway scanned with their own parser: Python's json
// (vLLM, OpenAI-compatible servers: exact keys, the last of equal keys wins) or Go's
// encoding/json (Ollama, and this gateway's own Anthropic translation: keys matched
// case-insensitively with Unicode folding, the last match wins, null leaves a bool as
// it was). What the gateway reads for limits and stream mode must be what they read.

// pyRead is what a Python server reads of the fields the gateway also reads.
type pyRead struct {
	stream       bool
	includeUsage bool
	// maxTokens is vLLM's effective output bound: max_completion_tokens or max_tokens.
	maxTokens int64
}

func readLikePython(t *testing.T, body []byte) pyRead {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	var r pyRead
	_ = json.Unmarshal(m["stream"], &r.stream)
	var so map[string]json.RawMessage
	if json.Unmarshal(m["stream_options"], &so) == nil {
		_ = json.Unmarshal(so["include_usage"], &r.includeUsage)
	}
	var mt, mct int64
	_ = json.Unmarshal(m["max_tokens"], &mt)
	_ = json.Unmarshal(m["max_completion_tokens"], &mct)
	// vLLM's ChatCompletionRequest.to_sampling_params: max_completion_tokens or max_tokens.
	r.maxTokens = mct
	if r.maxTokens == 0 {
		r.maxTokens = mt
	}
	return r
}

// The gateway never believes the client asked for usage when the upstream reads
// include_usage as false: it would not force usage, none would come back, and the token
// limit would keep the up-front estimate however long the answer was. Such bodies are
// refused.
func TestIncludeUsageAsUpstreamReads(t *testing.T) {
	cases := []struct{ name, body string }{
		{"include_usage twice, last false", `{"model":"c","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`},
		{"stream_options twice, last empty", `{"model":"c","stream":true,"stream_options":{"include_usage":true},"stream_options":{}}`},
		{"stream_options twice, last null", `{"model":"c","stream":true,"stream_options":{"include_usage":true},"stream_options":null}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			body := []byte(c.body)
			if !scanAccepted(t, body, &f) {
				return
			}
			if up := readLikePython(t, body); f.includeUsage && !up.includeUsage {
				t.Fatalf("gateway reads include_usage true (no usage forced), the upstream reads false: no usage comes back")
			}
		})
	}
}

// The gateway charges the token limit up front for no fewer output tokens than the
// upstream may generate: vLLM (and the gateway's own Anthropic translation) take
// max_completion_tokens when both bounds are given, whatever their order.
func TestMaxTokensAsUpstreamReads(t *testing.T) {
	cases := []struct{ name, body string }{
		{"max_completion_tokens then max_tokens", `{"model":"c","max_completion_tokens":100000,"max_tokens":1}`},
		{"max_tokens then max_completion_tokens", `{"model":"c","max_tokens":1,"max_completion_tokens":100000}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			body := []byte(c.body)
			if e := scanBody(body, &f); e != nil {
				t.Fatalf("refused: %s", e.message)
			}
			if up := readLikePython(t, body); f.maxTokens < up.maxTokens {
				t.Fatalf("gateway charges for max_tokens %d, the upstream generates up to %d", f.maxTokens, up.maxTokens)
			}
		})
	}
}

// encoding/json matches "Stream", "MAX_TOKENS" and even "ſtream" (U+017F folds to s) or
// "max_to\u212aens" (Kelvin sign) to the fields, and leaves a bool as it was on null:
// the gateway refuses such bodies rather than read them otherwise.
func TestFoldedKeysAsGoUpstreamReads(t *testing.T) {
	cases := []struct{ name, body string }{
		{"Stream", `{"model":"c","Stream":true}`},
		{"long s stream", `{"model":"c","ſtream":true}`},
		{"stream null after true", `{"model":"c","stream":true,"stream":null}`},
		{"MAX_TOKENS after max_tokens", `{"model":"c","max_tokens":1,"MAX_TOKENS":100000}`},
		{"Kelvin max_tokens", `{"model":"c","max_to` + "\u212a" + `ens":100000}`},
		{"Stream_Options after stream_options", `{"model":"c","stream":true,"stream_options":{"include_usage":true},"Stream_Options":{"include_usage":false}}`},
		{"Include_Usage after include_usage", `{"model":"c","stream":true,"stream_options":{"include_usage":true,"Include_Usage":false}}`},
		{"escaped include_usage twice", `{"model":"c","stream":true,"stream_options":{"include_usage":true,"include_u\u0073age":false}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			if body := []byte(c.body); scanAccepted(t, body, &f) {
				t.Errorf("accepted %s, which Go's encoding/json reads otherwise", body)
			}
		})
	}
}

// For every body the gateway accepts, stream is what a Python server reads, the gateway
// never thinks usage was asked for when it was not, and never charges for fewer output
// tokens than vLLM allows.
func FuzzScanBodyAsPython(f *testing.F) {
	for _, s := range []string{
		`{"model":"c","stream":true,"stream_options":{"include_usage":true},"max_tokens":5}`,
		`{"model":"c","max_completion_tokens":7,"max_tokens":3,"stream":false,"stream":true}`,
		`{"model":"c","stream_options":{"include_usage":false},"stream_options":{"include_usage":true}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fl fields
		if scanBody(body, &fl) != nil {
			return
		}
		up := readLikePython(t, body)
		if fl.stream != up.stream {
			t.Fatalf("stream: gateway %v, Python %v in %q", fl.stream, up.stream, body)
		}
		if fl.includeUsage && !up.includeUsage {
			t.Fatalf("include_usage: gateway true, Python false in %q", body)
		}
		if up.maxTokens > 0 && fl.maxTokens < min(up.maxTokens, 1<<40) {
			t.Fatalf("max tokens: gateway %d, vLLM %d in %q", fl.maxTokens, up.maxTokens, body)
		}
	})
}

// End to end against an upstream that reads JSON as Python does (the last of equal keys
// wins): a stream's tokens are counted when the gateway forces usage, and a client that
// gives include_usage twice, true then false (the upstream would send no usage and the
// stream's tokens would go uncounted), is refused.
func TestStreamUsageCountedAsUpstreamReads(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			StreamOptions map[string]json.RawMessage `json:"stream_options"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[{"index":0,"delta":{"role":"assistant","content":"long answer"},"finish_reason":"stop"}]}`+"\n\n")
		if string(req.StreamOptions["include_usage"]) == "true" {
			_, _ = io.WriteString(w, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5000,"total_tokens":5003}}`+"\n\n")
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer up.Close()
	for _, c := range []struct{ name, options string }{
		{"no stream_options: the gateway forces usage", ``},
		{"include_usage true then false", `,"stream_options":{"include_usage":true,"include_usage":false}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, mockConfig(strings.TrimPrefix(up.URL, "http://"), "", ""))
			body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true` + c.options + `}`
			cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := cl.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if c.options != "" {
				if resp.StatusCode != 400 {
					t.Fatalf("status %d, want 400", resp.StatusCode)
				}
				return
			}
			waitFor(t, func() bool { return strings.Contains(g.logs.String(), `"msg":"request"`) })
			if !strings.Contains(g.logs.String(), `"output_tokens":5000`) {
				t.Fatalf("the 5000 generated tokens were not counted: %s", g.logs.String())
			}
		})
	}
}

// scanAccepted scans body into f and reports whether the gateway accepts it; a body
// it refuses must be refused as the client's error, a 400.
func scanAccepted(t *testing.T, body []byte, f *fields) bool {
	t.Helper()
	e := scanBody(body, f)
	if e != nil && e.status != 400 {
		t.Fatalf("%s refused with %d", body, e.status)
	}
	return e == nil
}
