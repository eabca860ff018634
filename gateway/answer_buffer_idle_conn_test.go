package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// heldByIdleConnection is how much larger the gateway's live heap is, after garbage
// collections, once post (one request whose answer is size bytes, read to the end by
// a client that keeps its connection open and idle) has run: the least seen within
// 5 s, or the first under a quarter of the answer. tr is the client's transport; its
// idle connections are closed before the measure, and left open after it.
func heldByIdleConnection(tr *http.Transport, size int, post func()) int64 {
	tr.CloseIdleConnections()
	liveHeap()
	before := liveHeap()
	post() // its connection stays open and idle in tr
	var kept int64
	for deadline := time.Now().Add(5 * time.Second); ; {
		kept = int64(liveHeap()) - int64(before)
		if kept < int64(size)/4 || time.Now().After(deadline) {
			return kept
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLargeAnswerBufferNotPinnedByIdleConnection: after a client read a large
// non-streamed answer (a 1024 x 3072 float embeddings batch, about 39 MB) and keeps
// its connection open, idle, as every HTTP client's pool does (Go's for 90 s, the
// gateway's idle_timeout too), the gateway does not go on holding that answer.
// fasthttp's server, with ReduceMemoryUsage off (gateway/server.go), keeps a
// response's body buffer for the connection's next request: an answer over
// maxPooledBuffer goes to the client as the response's raw body, let go once written,
// not swapped into that buffer. Eight such idle clients would otherwise pin over
// 300 MB.
func TestLargeAnswerBufferNotPinnedByIdleConnection(t *testing.T) {
	const inputs = 1024
	up, sizeOf := floatEmbeddingsUpstream(t)
	size := sizeOf(inputs)
	g := startGateway(t, embedConfig(up.URL, ""))
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	post := func(n int) {
		resp, err := client.Post(g.url+"/v1/embeddings", "application/json", bytes.NewReader(embeddingsRequest(n)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || int(got) != sizeOf(n) {
			t.Fatalf("status %d, %d bytes, err %v", resp.StatusCode, got, err)
		}
	}
	// Warm up on another connection, then measure.
	post(1)
	if kept := heldByIdleConnection(tr, size, func() { post(inputs) }); kept >= int64(size)/4 {
		t.Fatalf("after one %.1f MB answer, with the client's connection idle and every request done, the gateway's live heap is %.1f MB larger than before it (after garbage collections, for 5 s): the idle connection's fasthttp response keeps the answer's body buffer (ReduceMemoryUsage false keeps body buffers) until the connection's next request or idle_timeout",
			float64(size)/1e6, float64(kept)/1e6)
	}
}

// Every answer the gateway builds or passes on whole lets its buffer go once written,
// as an OpenAI-compatible success does: an Anthropic answer translated, a completion
// served through chat on MLflow's invocations route, an upstream error passed on, and
// one in a flat shape rewritten in OpenAI's.
func TestLargeAnswerBufferNotPinnedOnEveryAnswerPath(t *testing.T) {
	const textSize = 16 << 20
	text := strings.Repeat("All work and no play makes Jack a dull boy. ", textSize/44)
	cases := []struct {
		name   string
		answer string // the upstream's
		status int
		config string // with UP for the upstream's address
		path   string
		body   string
	}{
		{
			name:   "anthropic answer translated",
			answer: `{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"` + text + `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":4000000}}`,
			status: 200,
			config: `backends:
  up: {provider: anthropic, base_url: "http://UP/v1", model: claude-3-5-haiku-latest, api_key: sk-ant-test-123456}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`,
			path: "/v1/chat/completions",
			body: `{"model":"chat","messages":[{"role":"user","content":"Write."}]}`,
		},
		{
			name:   "MLflow completions through chat",
			answer: `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"` + text + `"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4000000,"total_tokens":4000003}}`,
			status: 200,
			config: `endpoints:
  - name: completions
    endpoint_type: llm/v1/completions
    model:
      provider: openai
      name: gpt-4o-mini
      config: {openai_api_key: sk-test-123456789, openai_api_base: "http://UP/v1"}
`,
			path: "/endpoints/completions/invocations",
			body: `{"prompt":"Write."}`,
		},
		{
			name:   "upstream error passed on",
			answer: `{"error":{"message":"` + text + `","type":"invalid_request_error","param":null,"code":null}}`,
			status: 400,
			config: `backends:
  up: {provider: openai, base_url: "http://UP/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`,
			path: "/v1/chat/completions",
			body: `{"model":"chat","messages":[{"role":"user","content":"Write."}]}`,
		},
		{
			name:   "flat upstream error rewritten",
			answer: `{"error":"` + text + `","error_type":"validation"}`,
			status: 400,
			config: `backends:
  up: {provider: openai, base_url: "http://UP/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`,
			path: "/v1/chat/completions",
			body: `{"model":"chat","messages":[{"role":"user","content":"Write."}]}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The warm-up's answer is the same with a short text: a large one could
			// still be held by its connection, closed, when the measure begins.
			large, small := []byte(c.answer), []byte(strings.Replace(c.answer, text, "Warm.", 1))
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				answer := large
				if bytes.Contains(body, []byte("Warm up.")) {
					answer = small
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
				w.WriteHeader(c.status)
				_, _ = w.Write(answer)
			}))
			t.Cleanup(up.Close)
			g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
`+strings.ReplaceAll(c.config, "http://UP", up.URL))
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			t.Cleanup(tr.CloseIdleConnections)
			client := &http.Client{Transport: tr}
			var size int64
			post := func(large bool) {
				body := c.body
				if !large {
					body = strings.Replace(body, "Write.", "Warm up.", 1)
				}
				resp, err := client.Post(g.url+c.path, "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				size, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != c.status || large != (size > textSize/2) {
					t.Fatalf("status %d, %d bytes, err %v; want %d with the text", resp.StatusCode, size, err, c.status)
				}
			}
			// Warm up on another connection, then measure.
			post(false)
			if kept := heldByIdleConnection(tr, textSize, func() { post(true) }); kept >= textSize/4 {
				t.Fatalf("after one %.1f MB answer, with the client's connection idle, the gateway's live heap is %.1f MB larger than before it: the idle connection's response keeps the answer's buffer",
					float64(size)/1e6, float64(kept)/1e6)
			}
		})
	}
}
