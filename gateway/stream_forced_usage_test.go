package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// usageOnChoiceUpstream streams chat chunks the way Gemini's OpenAI-compatible
// endpoint (and llama.cpp's server before its PR #15444) answers stream_options
// include_usage: the usage rides on the last chunk that carries a choice (its
// finish_reason), not on a separate "choices":[] chunk. Without include_usage the
// stream carries no usage at all. chunks are the choice chunks; usage is put on the
// last one.
func usageOnChoiceUpstream(t *testing.T, usage string, chunks ...string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			StreamOptions *struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &req)
		asked := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i, c := range chunks {
			if i == len(chunks)-1 && asked {
				c = strings.TrimSuffix(c, "}") + `,"usage":` + usage + `}`
			}
			_, _ = io.WriteString(w, "data: "+c+"\n\n")
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// chunkUsages is the usage member of each chunk of a relayed stream body, "" for a
// chunk without one.
func chunkUsages(t *testing.T, body string) []string {
	t.Helper()
	var usages []string
	for _, l := range strings.Split(body, "\n") {
		data, ok := strings.CutPrefix(l, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Usage json.RawMessage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		usages = append(usages, string(chunk.Usage))
	}
	return usages
}

var usageOnChoiceChunks = []string{
	`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}`,
	`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"stop"}]}`,
}

// TestForcedUsageHiddenOnChoiceChunk: a client that did not ask for
// stream_options.include_usage gets no chunk with usage, also from an upstream that
// puts the usage the gateway asked for on its behalf on the chunk with the
// finish_reason (Gemini's OpenAI endpoint, older llama.cpp servers). README: "Tollgate
// asks the upstream for it (to count tokens) and removes that extra usage chunk again
// ... so that no chunk carries usage the client refused." The gateway still counts it.
func TestForcedUsageHiddenOnChoiceChunk(t *testing.T) {
	up := usageOnChoiceUpstream(t, `{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}`, usageOnChoiceChunks...)
	g := startGateway(t, usageConfig(up, ""))
	resp, body := usagePost(t, g, "forced-choice", `{"model":"chat","user":"u1","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	// The gateway did count the usage it asked for...
	line := usageAccess(t, g, "forced-choice")
	if afNum(line, "input_tokens") != 7 || afNum(line, "output_tokens") != 2 {
		t.Fatalf("access log %v, want input_tokens 7 and output_tokens 2 (the setup is off)", line)
	}
	// ...and must not pass it to a client that did not ask for it.
	usages := chunkUsages(t, body)
	for i, u := range usages {
		if u != "" && u != "null" {
			t.Errorf("client sent no stream_options.include_usage, yet chunk %d carries the usage the gateway asked for on its behalf: %s", i, u)
		}
	}
	// The chunk itself goes out whole but for its usage.
	if len(usages) != 2 || !strings.Contains(body, `"delta":{"content":" there"},"finish_reason":"stop"}]}`) {
		t.Errorf("want both chunks relayed, the last without its usage:\n%s", body)
	}
}

// TestAskedUsageKeptOnChoiceChunk: a client that asked for include_usage gets the
// upstream's usage where the upstream put it, on the last choice chunk.
func TestAskedUsageKeptOnChoiceChunk(t *testing.T) {
	const usage = `{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}`
	up := usageOnChoiceUpstream(t, usage, usageOnChoiceChunks...)
	g := startGateway(t, usageConfig(up, ""))
	resp, body := usagePost(t, g, "asked-choice", `{"model":"chat","user":"u1","stream":true,"stream_options":{"include_usage":true},"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	if got := chunkUsages(t, body); len(got) != 2 || got[0] != "" || got[1] != usage {
		t.Errorf("chunk usages %q, want the upstream's usage on the last chunk as it came:\n%s", got, body)
	}
	if line := usageAccess(t, g, "asked-choice"); afNum(line, "input_tokens") != 7 || afNum(line, "output_tokens") != 2 {
		t.Errorf("access log %v, want input_tokens 7 and output_tokens 2", line)
	}
}

// appendWithoutUsage takes the usage member out of a chunk wherever it stands, and
// keeps every other member as it came.
func TestAppendWithoutUsage(t *testing.T) {
	for _, c := range []struct{ name, chunk, want string }{
		{"last", `{"id":"x","choices":[{"index":0}],"usage":{"prompt_tokens":1}}`, `{"id":"x","choices":[{"index":0}]}`},
		{"first", `{"usage":{"prompt_tokens":1},"id":"x","choices":[]}`, `{"id":"x","choices":[]}`},
		{"middle", `{"id":"x","usage":{"prompt_tokens":1},"choices":[]}`, `{"id":"x","choices":[]}`},
		{"only", `{"usage":{"prompt_tokens":1}}`, `{}`},
		{"spaced", "{ \"id\" : \"x\" ,\n \"usage\" : { \"prompt_tokens\" : 1 } ,\n \"choices\" : [ ] }", `{"id" : "x","choices" : [ ]}`},
		{"given twice", `{"usage":null,"id":"x","usage":{"prompt_tokens":1}}`, `{"id":"x"}`},
		{"nested usage kept", `{"choices":[{"usage":1}],"usage":{}}`, `{"choices":[{"usage":1}]}`},
		{"not an object", `[1]`, `[1]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := string(appendWithoutUsage([]byte("data: "), []byte(c.chunk)))
			if got != "data: "+c.want {
				t.Errorf("appendWithoutUsage(%s) = %s, want %s", c.chunk, got, "data: "+c.want)
			}
			if c.name != "not an object" && !json.Valid([]byte(strings.TrimPrefix(got, "data: "))) {
				t.Errorf("%s is not JSON", got)
			}
		})
	}
}

// rawStreamUpstream answers every chat request with the given chunks as an event stream.
func rawStreamUpstream(t *testing.T, chunks ...string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, c := range chunks {
			_, _ = io.WriteString(w, "data: "+c+"\n\n")
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestForcedUsageChunkWithoutChoicesHidden: a usage chunk whose choices are null or
// absent (not every OpenAI-compatible server writes []) is the usage chunk the gateway
// asked for on the client's behalf: removed, not sent emptied of its usage (a client
// reading chunk.choices[0] would fail on it).
func TestForcedUsageChunkWithoutChoicesHidden(t *testing.T) {
	for _, c := range []struct{ name, last string }{
		{"choices null", `{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":null,"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`},
		{"no choices", `{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := rawStreamUpstream(t,
				`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}`,
				c.last)
			g := startGateway(t, usageConfig(up, ""))
			resp, body := usagePost(t, g, "nochoices-"+strings.ReplaceAll(c.name, " ", "-"), `{"model":"chat","user":"u1","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			n := strings.Count(body, "data: {")
			if n != 1 {
				t.Errorf("client that did not ask for usage got %d chunks, want 1 (the usage chunk removed):\n%s", n, body)
			}
		})
	}
}
