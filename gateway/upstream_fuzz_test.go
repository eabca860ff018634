package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/ssespec"
	"github.com/tollgate/tollgate/providers"
)

// fuzzUpstream serves, to every request, the bytes last set, as an event stream.
type fuzzUpstream struct {
	mu   sync.Mutex
	body []byte
}

func (u *fuzzUpstream) set(b []byte) {
	u.mu.Lock()
	u.body = append(u.body[:0], b...)
	u.mu.Unlock()
}

func (u *fuzzUpstream) handle(ctx *fasthttp.RequestCtx) {
	u.mu.Lock()
	b := append([]byte(nil), u.body...)
	u.mu.Unlock()
	ctx.SetContentType("text/event-stream")
	ctx.SetBody(b)
}

// fuzzStreamGateway is a gateway in front of u: chat and legacy completions on an
// OpenAI-compatible backend, chat on an Anthropic one; failures never eject the target.
func fuzzStreamGateway(t testing.TB, u *fuzzUpstream) *gw {
	addr := serveUpstream(t, u.handle)
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 2s,
       health: {eject_after: 1000000000}}
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-sonnet-4-5, api_key: sk-ant-x, timeout: 2s,
       health: {eject_after: 1000000000}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
  - {name: legacy, type: completions, routes: [{backend: up}], retries: 0}
  - {name: claude, type: chat, routes: [{backend: claude}], retries: 0}
logging: {level: error, access_log: false}
`)
}

var fuzzStreamRequests = [...]struct{ path, body string }{
	{"/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	{"/v1/completions", `{"model":"legacy","stream":true,"prompt":"hi"}`},
	{"/v1/chat/completions", `{"model":"claude","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`},
	{"/v1/responses", `{"model":"chat","stream":true,"input":"hi"}`},
}

// checkFuzzedStream posts request kind to g and checks what a client reads: an error
// answer is OpenAI's error JSON; a stream's every event, read as the SSE spec reads
// it, is a JSON object or [DONE], and nothing follows [DONE].
func checkFuzzedStream(t *testing.T, g *gw, cl *http.Client, kind uint8, upstream []byte) {
	t.Helper()
	r := fuzzStreamRequests[int(kind)%len(fuzzStreamRequests)]
	resp, err := cl.Post(g.url+r.path, "application/json", strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var e struct {
			Error *struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == nil {
			t.Fatalf("status %d answer is not OpenAI's error JSON: %q", resp.StatusCode, raw)
		}
		return
	}
	done := false
	for i, d := range ssespec.Events(raw) {
		if done {
			t.Fatalf("event %d after [DONE]", i)
		}
		if d == "[DONE]" {
			done = true
			continue
		}
		obj := strings.TrimLeft(d, " \t\r\n")
		if !json.Valid([]byte(d)) || obj == "" || obj[0] != '{' {
			t.Fatalf("%s, upstream %q:\nthe client reads event %d as %q, not a JSON object\nwhole answer: %q", r.body, upstream, i, d, raw)
		}
	}
}

// FuzzUpstreamStreamRelay: whatever bytes an upstream streams, through the OpenAI
// passthrough and the Anthropic translation, the client reads well-formed SSE events
// whose data is a JSON object or [DONE] (README: "Reverse proxy for chat … streaming
// (SSE) passed through chunk by chunk"; the SDKs parse each event's data as JSON).
func FuzzUpstreamStreamRelay(f *testing.F) {
	u := &fuzzUpstream{}
	g := fuzzStreamGateway(f, u)
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, s := range []string{
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
		"data: {\"id\":\"cmpl\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"Hi\"}]}\n\ndata: [DONE]\n\n",
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n" +
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n" +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
		"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}\n\n" +
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n" +
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
	} {
		for kind := range uint8(len(fuzzStreamRequests)) {
			f.Add([]byte(s), kind)
		}
	}
	f.Fuzz(func(t *testing.T, upstream []byte, kind uint8) {
		u.set(upstream)
		checkFuzzedStream(t, g, cl, kind, upstream)
	})
}

// TestRelayLoneCR: an upstream chunk with a CR between two members (JSON
// whitespace, RFC 8259 §2; the stream's lines end in LF) reaches the client as one
// JSON object on its data: line. The SSE spec ends a line at a lone CR, and so do
// openai-python (bytes.splitlines) and browsers: relayed as it came, the client would
// read `{"id":"c",` and fail to parse it.
func TestRelayLoneCR(t *testing.T) {
	u := &fuzzUpstream{}
	g := fuzzStreamGateway(t, u)
	up := []byte("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
		"data: {\"id\":\"c\",\r\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"data: [DONE]\n\n")
	u.set(up)
	checkFuzzedStream(t, g, &http.Client{Timeout: 5 * time.Second}, 0, up)
}

// bodyRecorder is an upstream that records the body of the last request and
// answers a chat completion, streamed when asked.
type bodyRecorder struct {
	mu   sync.Mutex
	body []byte
	n    int
}

func (u *bodyRecorder) handle(ctx *fasthttp.RequestCtx) {
	u.mu.Lock()
	u.body = append(u.body[:0], ctx.PostBody()...)
	u.n++
	u.mu.Unlock()
	var m map[string]json.RawMessage
	_ = json.Unmarshal(ctx.PostBody(), &m)
	if string(m["stream"]) == "true" {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyString("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
			"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n")
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
}

func (u *bodyRecorder) last() ([]byte, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]byte(nil), u.body...), u.n
}

// FuzzForwardedBody: what an OpenAI-compatible upstream receives for a body the
// gateway forwards is the client's body as a Python server reads it (the last of equal
// keys wins), but for model, the backend's, and for a stream, stream_options asking for
// usage (README: "the body goes through untouched but for model").
func FuzzForwardedBody(f *testing.F) {
	u := &bodyRecorder{}
	addr := serveUpstream(f, u.handle)
	g := startGateway(f, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 2s, health: {eject_after: 1000000000}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
logging: {level: error, access_log: false}
`)
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, s := range []string{
		`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[{"role":"user","content":"hi"}],"stream":true,"model":"chat","temperature":0.5}`,
		`{"model":"chat","stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true},"messages":[]}`,
		`{"stream_options":{"x":1},"model":"chat","stream":true,"user":"u"}`,
		` {"model" : "chat" , "stream" : true } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, before := u.last()
		resp, err := cl.Post(g.url+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		sent, after := u.last()
		if after == before {
			return // refused before the upstream
		}
		var in, out map[string]json.RawMessage
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("forwarded a body a JSON parser refuses: %q", body)
		}
		if err := json.Unmarshal(sent, &out); err != nil || !json.Valid(sent) {
			t.Fatalf("client body %q\nreached the upstream as invalid JSON: %q", body, sent)
		}
		if string(out["model"]) != `"up-model"` {
			t.Fatalf("client body %q\nupstream reads model %s: %q", body, out["model"], sent)
		}
		stream := string(in["stream"]) == "true"
		if stream {
			var so map[string]json.RawMessage
			if json.Unmarshal(out["stream_options"], &so) != nil || string(so["include_usage"]) != "true" {
				t.Fatalf("client body %q\nstream without include_usage upstream: %q", body, sent)
			}
		}
		for k, v := range in {
			if k == "model" || (stream && k == "stream_options") {
				continue
			}
			if ov, ok := out[k]; !ok || !jsonEqualFuzz(v, ov) {
				t.Fatalf("client body %q\nmember %q was %s, upstream reads %s: %q", body, k, v, out[k], sent)
			}
		}
		for k := range out {
			if _, ok := in[k]; !ok && k != "model" && k != "stream_options" {
				t.Fatalf("client body %q\nupstream reads a member %q the client did not send: %q", body, k, sent)
			}
		}
	})
}

func jsonEqualFuzz(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// FuzzScanChoices: for every body the gateway accepts, the completions it
// reckons a chat request asks for (n) are no fewer than a Python server (the last of
// equal keys wins; pydantic's lax int takes 3, 3.0 and "3") generates, up to OpenAI's
// 128: the token estimate is max_tokens times that.
func FuzzScanChoices(f *testing.F) {
	for _, s := range []string{`{"model":"c","n":3}`, `{"model":"c","n":1,"n":4}`, `{"model":"c","n":"5","max_tokens":3}`,
		`{"model":"c","\u006e":2.0}`, `{"n":7,"model":"c","n":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fl fields
		if scanBody(body, &fl) != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			t.Fatalf("accepted %q, which encoding/json refuses", body)
		}
		raw, ok := m["n"]
		if !ok {
			return
		}
		var n float64
		var s string
		switch {
		case json.Unmarshal(raw, &n) == nil:
		case json.Unmarshal(raw, &s) == nil:
			i, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return
			}
			n = float64(i)
		default:
			return
		}
		if n != float64(int64(n)) || n < 2 {
			return
		}
		if got, want := fl.completions(providers.Chat), min(int64(n), 128); got < want {
			t.Fatalf("%q: gateway reckons %d completions, a Python server generates %d", body, got, want)
		}
	})
}
