package providers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/freeport"
)

// upstream is a fasthttp server on a loopback port that records what it was sent.
type upstream struct {
	URL string
	mu  sync.Mutex
	// last request's URI, headers and body
	uri     string
	headers map[string]string
	body    []byte
	calls   int
}

func startUpstream(t *testing.T, answer func(ctx *fasthttp.RequestCtx)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{URL: "http://" + ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		u.mu.Lock()
		u.calls++
		u.uri = string(ctx.RequestURI())
		u.headers = map[string]string{}
		for k, v := range ctx.Request.Header.All() {
			u.headers[strings.ToLower(string(k))] = string(v)
		}
		u.body = append([]byte(nil), ctx.PostBody()...)
		u.mu.Unlock()
		answer(ctx)
	}}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	// Closing the listener as well ends a Serve that had not yet started when Shutdown ran.
	t.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close(); <-done })
	return u
}

func (u *upstream) last() (uri string, h map[string]string, body []byte, calls int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.uri, u.headers, u.body, u.calls
}

func answerFile(t *testing.T, status int, ctype, path string) func(*fasthttp.RequestCtx) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(status)
		ctx.SetContentType(ctype)
		ctx.SetBody(b)
	}
}

func newTestBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := New("test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func clientHeader() *fasthttp.RequestHeader {
	var h fasthttp.RequestHeader
	h.Set("Authorization", "Bearer gateway-key")
	h.Set("X-Api-Key", "client-supplied")
	h.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	h.Set("Anthropic-Version", "1999-01-01")
	return &h
}

const chatBody = `{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":32}`

func chatCall(body string, stream bool) *Call {
	return &Call{Kind: Chat, Body: []byte(body), Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1},
		Stream: stream, Header: clientHeader(), Deadline: time.Now().Add(10 * time.Second)}
}

func anthropicConfig(base string) Config {
	return Config{Provider: "anthropic", BaseURL: base + "/v1/", Model: "claude-test", APIKey: "sk-ant-test"}
}

func TestAnthropicSend(t *testing.T) {
	up := startUpstream(t, answerFile(t, 200, "application/json", "testdata/anthropic/response_tool_use.json"))
	b := newTestBackend(t, anthropicConfig(up.URL))
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(chatBody, false), &out, &res); err != nil {
		t.Fatal(err)
	}
	uri, h, body, _ := up.last()
	if uri != "/v1/messages" {
		t.Errorf("URI %s", uri)
	}
	want := map[string]string{"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("upstream header %s = %q, want %q", k, h[k], v)
		}
	}
	if _, ok := h["authorization"]; ok {
		t.Errorf("client's Authorization forwarded")
	}
	var sent struct {
		Model     string          `json:"model"`
		MaxTokens int             `json:"max_tokens"`
		System    json.RawMessage `json:"system"`
	}
	if err := json.Unmarshal(body, &sent); err != nil || sent.Model != "claude-test" || sent.MaxTokens != 32 || len(sent.System) == 0 {
		t.Errorf("upstream got %s", body)
	}
	if out.StatusCode() != 200 || string(out.Header.ContentType()) != "application/json" {
		t.Errorf("status %d, content type %s", out.StatusCode(), out.Header.ContentType())
	}
	if !bytes.Contains(out.Body(), []byte(`"finish_reason":"tool_calls"`)) || res.Usage != (Usage{Input: 300, Output: 60}) {
		t.Errorf("answer %s, usage %+v", out.Body(), res.Usage)
	}
	if n := b.Targets()[0].InFlight(); n != 0 {
		t.Errorf("%d in flight after the answer", n)
	}
}

func TestAnthropicSendStream(t *testing.T) {
	up := startUpstream(t, answerFile(t, 200, "text/event-stream; charset=utf-8", "testdata/anthropic/stream_tool_use.sse"))
	b := newTestBackend(t, anthropicConfig(up.URL))
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(`{"model":"chat","messages":[{"role":"user","content":"Hi"}],"stream":true}`, true), &out, &res); err != nil {
		t.Fatal(err)
	}
	if res.Stream == nil || out.StatusCode() != 200 {
		t.Fatalf("no stream (status %d)", out.StatusCode())
	}
	_, _, body, _ := up.last()
	if !bytes.Contains(body, []byte(`"stream":true`)) || !bytes.Contains(body, []byte(`"max_tokens":4096`)) {
		t.Errorf("upstream got %s", body)
	}
	var text strings.Builder
	var usage Usage
	n, pings := 0, 0
	for {
		var ev Event
		err := res.Stream.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.KeepAlive {
			// The API's ping, passed on as a keep-alive.
			pings++
			continue
		}
		n++
		if ev.HasUsage {
			usage = ev.Usage
		}
		text.Write(ev.Data)
	}
	if err := res.Stream.Close(); err != nil {
		t.Error(err)
	}
	if pings != 1 {
		t.Errorf("%d keep-alives, want the stream's one ping", pings)
	}
	if n != 10 || usage != (Usage{Input: 472, Output: 89}) || !strings.Contains(text.String(), `"arguments":" \"San Francisco, CA\"}"`) {
		t.Errorf("%d events, usage %+v:\n%s", n, usage, text.String())
	}
	if n := b.Targets()[0].InFlight(); n != 0 {
		t.Errorf("%d in flight after Close", n)
	}
}

func TestAnthropicSendStreamClosedEarly(t *testing.T) {
	up := startUpstream(t, answerFile(t, 200, "text/event-stream", "testdata/anthropic/stream_text.sse"))
	b := newTestBackend(t, anthropicConfig(up.URL))
	for range 3 {
		var out fasthttp.Response
		var res Result
		if err := b.Send(chatCall(chatBody, true), &out, &res); err != nil {
			t.Fatal(err)
		}
		var ev Event
		if err := res.Stream.Next(&ev); err != nil || !bytes.Contains(ev.Data, []byte(`"role":"assistant"`)) {
			t.Fatalf("first event %s: %v", ev.Data, err)
		}
		_ = res.Stream.Close()
	}
	if n := b.Targets()[0].InFlight(); n != 0 {
		t.Errorf("%d in flight after Close", n)
	}
}

func TestAnthropicSendErrors(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		file       string
		stream     bool
		wantStatus int
		retry      bool
		code       string
	}{
		{"overloaded", 529, "error_529_overloaded.json", false, 503, true, `"code":"overloaded"`},
		{"rate limited while streaming", 429, "error_429_rate_limit.json", true, 429, true, `"type":"rate_limit_exceeded"`},
		{"bad key", 401, "error_401_authentication.json", false, 401, false, `"code":"invalid_api_key"`},
		{"bad request while streaming", 400, "error_400_invalid_request.json", true, 400, false, `"type":"invalid_request_error"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile("testdata/anthropic/" + c.file)
			if err != nil {
				t.Fatal(err)
			}
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				ctx.SetStatusCode(c.status)
				ctx.SetContentType("application/json")
				ctx.Response.Header.Set("Retry-After", "7")
				ctx.SetBody(b)
			})
			be := newTestBackend(t, anthropicConfig(up.URL))
			var out fasthttp.Response
			var res Result
			err = be.Send(chatCall(chatBody, c.stream), &out, &res)
			var ue *UpstreamError
			if !errors.As(err, &ue) || ue.Status != c.wantStatus || ue.Retryable() != c.retry || ue.RetryAfter != 7*time.Second {
				t.Fatalf("err = %#v", err)
			}
			if out.StatusCode() != c.wantStatus || !bytes.Contains(out.Body(), []byte(c.code)) || res.Stream != nil {
				t.Errorf("status %d body %s", out.StatusCode(), out.Body())
			}
			if n := be.Targets()[0].InFlight(); n != 0 {
				t.Errorf("%d in flight", n)
			}
		})
	}
}

// A streamed request's error answer is read up to the backend's max_response_bytes,
// however long the upstream makes it (an error page a proxy keeps writing, a body
// that never ends): the attempt ends there, the answer invalid (ErrAnswerTooLarge)
// rather than cut to fit, instead of reading on.
func TestAnthropicStreamErrorBodyBounded(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(503)
		ctx.SetContentType("text/html")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			chunk := bytes.Repeat([]byte("<p>overloaded</p>"), 256)
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
				if _, err := w.Write(chunk); err != nil || w.Flush() != nil {
					return
				}
			}
		})
	})
	cfg := anthropicConfig(up.URL)
	cfg.MaxResponseBytes = 1 << 20
	be := newTestBackend(t, cfg)
	var out fasthttp.Response
	var res Result
	start := time.Now()
	if err := be.Send(chatCall(chatBody, true), &out, &res); !errors.Is(err, ErrAnswerTooLarge) {
		t.Fatalf("err = %v, want ErrAnswerTooLarge", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the error answer took %v: it was read past its bound", d)
	}
}

func TestAnthropicSendBadAnswers(t *testing.T) {
	cases := []struct {
		name   string
		ctype  string
		body   string
		stream bool
	}{
		{"not a message", "application/json", `{"hello":"world"}`, false},
		{"not json", "text/html", `<html></html>`, false},
		{"stream answered with json", "application/json", `{"id":"x"}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				ctx.SetContentType(c.ctype)
				ctx.SetBodyString(c.body)
			})
			b := newTestBackend(t, anthropicConfig(up.URL))
			var out fasthttp.Response
			var res Result
			if err := b.Send(chatCall(chatBody, c.stream), &out, &res); !errors.Is(err, ErrBadResponse) {
				t.Fatalf("err = %v", err)
			}
			if n := b.Targets()[0].InFlight(); n != 0 {
				t.Errorf("%d in flight", n)
			}
		})
	}
}

// An error event before message_start fails Send itself, so the gateway can still retry.
func TestAnthropicSendStreamErrorFirst(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		status int
		want   error
	}{
		{"overloaded", "event: ping\ndata: {\"type\":\"ping\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", 503, nil},
		{"rate limited", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n", 429, nil},
		{"unknown type", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"new_error\",\"message\":\"?\"}}\n\n", 500, nil},
		{"empty stream", "", 0, ErrStreamCut},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				ctx.SetContentType("text/event-stream")
				ctx.SetBodyString(c.body)
			})
			b := newTestBackend(t, anthropicConfig(up.URL))
			var out fasthttp.Response
			var res Result
			err := b.Send(chatCall(chatBody, true), &out, &res)
			if res.Stream != nil {
				t.Fatal("stream handed out")
			}
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("err = %v", err)
				}
			} else {
				var ue *UpstreamError
				if !errors.As(err, &ue) || ue.Status != c.status || out.StatusCode() != c.status {
					t.Fatalf("err = %v, status %d", err, out.StatusCode())
				}
				var e struct {
					Error struct{ Type, Message string }
				}
				if json.Unmarshal(out.Body(), &e) != nil || e.Error.Message == "" {
					t.Errorf("body %s", out.Body())
				}
			}
			if n := b.Targets()[0].InFlight(); n != 0 {
				t.Errorf("%d in flight", n)
			}
		})
	}
}

// A request the Messages API cannot express is refused before a target is leased, so
// before anything is sent.
func TestAnthropicSendRefusesUntranslatable(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {})
	b := newTestBackend(t, anthropicConfig(up.URL))
	var out fasthttp.Response
	var res Result
	err := b.Send(chatCall(`{"model":"chat","messages":[{"role":"user","content":"x"}],"n":3}`, false), &out, &res)
	if re, ok := errors.AsType[*RequestError](err); !ok || re.Status != 400 {
		t.Fatalf("err = %v", err)
	}
	if res.Target != "" {
		t.Errorf("target %q leased for a refused request", res.Target)
	}
	if _, _, _, calls := up.last(); calls != 0 {
		t.Errorf("upstream called %d times", calls)
	}
	if out.StatusCode() != 400 || !bytes.Contains(out.Body(), []byte(`"param":"n"`)) {
		t.Errorf("answer %d %s", out.StatusCode(), out.Body())
	}
}

func TestAnthropicSendUnreachable(t *testing.T) {
	held, err := freeport.Hold() // refuses connections, and no other test can take it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr()
	b := newTestBackend(t, anthropicConfig("http://"+addr))
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(chatBody, false), &out, &res); !errors.Is(err, ErrConnect) {
		t.Fatalf("err = %v", err)
	}
}
