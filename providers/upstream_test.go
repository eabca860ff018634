package providers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// replica is an OpenAI-compatible server on a loopback port whose faults tests set:
// chat completions (plain and streamed), /health, and /metrics with the vLLM load
// gauges the test sets. (mockllm plays vLLM's scheduler where that matters.)
type replica struct {
	tb   testing.TB
	addr string
	quit chan struct{}

	mu  sync.Mutex
	srv *fasthttp.Server
	ln  net.Listener

	hits   atomic.Int64
	status atomic.Int64 // status of chat answers: 200 unless set
	health atomic.Int64 // status of /health: 200 unless set
	delay  atomic.Int64 // nanoseconds before the answer's headers
	gap    atomic.Int64 // nanoseconds between stream chunks
	stall  atomic.Bool  // streams stop after their first chunk
	// static answers at once from fixed bodies, a stream in one piece, so that
	// allocation counts are the client's alone.
	static atomic.Bool
	// hold, when set, keeps each answer until a value arrives on it.
	hold atomic.Pointer[chan struct{}]

	// waiting and running are what /metrics reports.
	waiting, running atomic.Int64
}

func startReplica(tb testing.TB) *replica {
	tb.Helper()
	u := &replica{tb: tb, quit: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u.addr = ln.Addr().String()
	u.serve(ln)
	tb.Cleanup(func() {
		close(u.quit)
		u.kill()
	})
	return u
}

func (u *replica) url() string { return "http://" + u.addr + "/v1" }

func (u *replica) serve(ln net.Listener) {
	srv := &fasthttp.Server{Handler: u.handle, ReadTimeout: 10 * time.Second}
	u.mu.Lock()
	u.srv, u.ln = srv, ln
	u.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// kill stops the server and closes its connections: new requests are refused.
func (u *replica) kill() {
	u.mu.Lock()
	srv, ln := u.srv, u.ln
	u.srv, u.ln = nil, nil
	u.mu.Unlock()
	if srv == nil {
		return
	}
	// Closed here too: Shutdown misses a listener that Serve has not taken up yet.
	_ = ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.ShutdownWithContext(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
		u.tb.Error(err)
	}
}

// restart serves again on the same port.
func (u *replica) restart() {
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		u.tb.Fatal(err)
	}
	u.serve(ln)
}

func (u *replica) sleep(ns *atomic.Int64) {
	if d := time.Duration(ns.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-u.quit:
		}
	}
}

func (u *replica) handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/health":
		if s := u.health.Load(); s != 0 {
			ctx.SetStatusCode(int(s))
		}
		return
	case "/metrics":
		u.writeMetrics(ctx)
		return
	case "/v1/chat/completions":
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	u.hits.Add(1)
	if u.static.Load() {
		if bytes.Contains(ctx.PostBody(), strStreamTrue) {
			ctx.Response.Header.SetContentTypeBytes(strEventStream)
			ctx.Response.SetBodyRaw(staticStream)
		} else {
			ctx.Response.Header.SetContentTypeBytes(strJSON)
			ctx.Response.SetBodyRaw(staticAnswer)
		}
		return
	}
	if h := u.hold.Load(); h != nil {
		select {
		case <-*h:
		case <-u.quit:
		}
	}
	if s := u.status.Load(); s != 0 && s != 200 {
		ctx.SetStatusCode(int(s))
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":{"message":"failing","type":"server_error"}}`)
		return
	}
	u.sleep(&u.delay)
	if !bytes.Contains(ctx.PostBody(), []byte(`"stream":true`)) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`)
		return
	}
	ctx.SetContentType("text/event-stream")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		_, _ = w.WriteString("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n")
		if w.Flush() != nil {
			return
		}
		if u.stall.Load() {
			<-u.quit
			return
		}
		for range 3 {
			u.sleep(&u.gap)
			_, _ = w.WriteString("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\n")
			if w.Flush() != nil {
				return
			}
		}
		_, _ = w.WriteString("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n")
		_ = w.Flush()
	})
}

var (
	strStreamTrue = []byte(`"stream":true`)
	staticAnswer  = []byte(`{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`)
	staticStream  = []byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n")
)

func (u *replica) writeMetrics(ctx *fasthttp.RequestCtx) {
	b := []byte("# HELP vllm:num_requests_running Number of requests in model execution batches.\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\",model_name=\"up\"} ")
	b = strconv.AppendInt(b, u.running.Load(), 10)
	b = append(b, "\n# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine=\"0\",model_name=\"up\"} "...)
	b = strconv.AppendInt(b, u.waiting.Load(), 10)
	b = append(b, "\n# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"up\"} 0.25\n"...)
	ctx.SetContentType("text/plain; version=0.0.4")
	ctx.SetBody(b)
}

// holdAnswers makes the upstream keep every answer until release is called once per
// answer (or the test ends).
func (u *replica) holdAnswers() (release func()) {
	ch := make(chan struct{})
	u.hold.Store(&ch)
	return func() {
		select {
		case ch <- struct{}{}:
		case <-u.quit:
		}
	}
}

// fakeClock is an injected clock for ejection times.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// poolsWithClock is a registry whose ejections run on clk.
func poolsWithClock(clk *fakeClock) *Pools {
	p := NewPools()
	p.now = clk.Now
	return p
}

func newPoolBackend(tb testing.TB, c Config, ps *Pools) *Backend {
	tb.Helper()
	if c.Provider == "" {
		c.Provider = "openai"
	}
	if c.Model == "" {
		c.Model = "up"
	}
	if err := c.Validate(); err != nil {
		tb.Fatal(err)
	}
	b, err := NewWith("pool", c, ps)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func replicaURLs(us []*replica) []string {
	var s []string
	for _, u := range us {
		s = append(s, u.url())
	}
	return s
}

func startReplicas(tb testing.TB, n int) []*replica {
	us := make([]*replica, n)
	for i := range us {
		us[i] = startReplica(tb)
	}
	return us
}

// promptCall is a chat request with the given prompt.
func promptCall(prompt string, stream bool) *Call {
	body := `{"model":"chat","messages":[{"role":"user","content":"` + prompt + `"}]`
	if stream {
		body += `,"stream":true`
	}
	body += `}`
	ms := bytes.Index([]byte(body), []byte(`"chat"`))
	return &Call{Kind: Chat, Body: []byte(body), Model: [2]int{ms, ms + 6}, StreamOptions: [2]int{-1, -1}, Stream: stream}
}

// send makes one attempt and reads a stream to its end.
func sendOnce(b *Backend, call *Call) (string, error) {
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	err := b.Send(call, out, &res)
	if res.Stream != nil {
		err = drainStream(res.Stream)
		if cerr := res.Stream.Close(); err == nil {
			err = cerr
		}
	}
	return res.Target, err
}

// open starts a stream and leaves it open, holding its slot.
func openStream(tb testing.TB, b *Backend, prompt string) (string, Events) {
	tb.Helper()
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	if err := b.Send(promptCall(prompt, true), out, &res); err != nil {
		tb.Fatal(err)
	}
	if res.Stream == nil {
		tb.Fatal("no stream")
	}
	return res.Target, res.Stream
}

func drainStream(s Events) error {
	var ev Event
	for {
		if err := s.Next(&ev); err != nil {
			return err
		}
		if ev.Done {
			return nil
		}
	}
}

// waitUntil polls cond until it holds, for conditions another goroutine brings about.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for range 5000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatal("never: " + what)
}

// A stream aborted while Next waits on a silent upstream (its client went away) ends
// at once with ErrAborted, and says nothing against the target: an abort is not the
// upstream's failure, however many come.
func TestStreamAbortWhileUpstreamSilent(t *testing.T) {
	us := startReplicas(t, 1)
	us[0].stall.Store(true)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{EjectAfter: 1, EjectFor: time.Hour}}, nil)
	for range 3 {
		_, s := openStream(t, b, "a")
		var ev Event
		if err := s.Next(&ev); err != nil {
			t.Fatalf("first chunk: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Next(&ev) }()
		time.Sleep(50 * time.Millisecond) // Next is waiting on the silent upstream
		s.(Aborter).Abort()
		select {
		case err := <-done:
			if !errors.Is(err, ErrAborted) {
				t.Fatalf("Next after Abort: %v, want ErrAborted", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Next still waiting after Abort")
		}
		_ = s.Close()
	}
	if st := b.pool.states[0]; !st.available() || st.fails.Load() != 0 {
		t.Errorf("target available %v with %d failures after three aborted streams, want in service with none", st.available(), st.fails.Load())
	}
	if n := b.Targets()[0].InFlight(); n != 0 {
		t.Errorf("%d in flight after the streams closed", n)
	}
}

// rawUpstream accepts loopback connections on network and addr, reads each request and
// writes what resp returns, byte for byte: answers fasthttp's server would not send
// (no Content-Type, a redirect to a POST).
func rawUpstream(t *testing.T, ln net.Listener, resp func(req *http.Request) string) string {
	t.Helper()
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, resp(req)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func listen4(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// listen6 listens on IPv6 loopback. A host without it skips the test, but CI must
// have it: there the test fails rather than hide the missing dependency.
func listen6(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback (::1), which these tests need: %v", err)
	}
	return ln
}

// jsonAnswer is a 200 chat completion with its Content-Type.
func jsonAnswer(*http.Request) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(rawAnswer)) + "\r\n\r\n" + rawAnswer
}

const rawAnswer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

// A target named by an IPv6 literal (http://[::1]:8000/v1) is reached: the target's
// dial is dual-stack.
func TestTargetIPv6Literal(t *testing.T) {
	addr := rawUpstream(t, listen6(t), jsonAnswer)
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + addr + "/v1", Model: "m"})
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(chatBody, false), &out, &res); err != nil {
		t.Fatalf("send to IPv6 target %s: %v", addr, err)
	}
	if out.StatusCode() != 200 || res.Usage.Input != 3 {
		t.Fatalf("status %d usage %+v", out.StatusCode(), res.Usage)
	}
}

// An upstream answer without a Content-Type goes out as application/json, not as
// fasthttp's default text/plain (the official SDKs refuse a success labelled
// otherwise): a 200 was checked to be one JSON object, and an error body is passed on
// as the upstream's JSON error, buffered or read from a stream.
func TestAnswerWithoutContentTypeIsJSON(t *testing.T) {
	for _, tc := range []struct {
		name, status, body string
		stream             bool
	}{
		{"200", "200 OK", rawAnswer, false},
		{"400", "400 Bad Request", `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`, false},
		{"400 to a stream", "400 Bad Request", `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawUpstream(t, listen4(t), func(*http.Request) string {
				return "HTTP/1.1 " + tc.status + "\r\nContent-Length: " + strconv.Itoa(len(tc.body)) + "\r\n\r\n" + tc.body
			})
			b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + addr + "/v1", Model: "m"})
			var out fasthttp.Response
			var res Result
			_ = b.Send(chatCall(chatBody, tc.stream), &out, &res)
			if ct := string(out.Header.ContentType()); ct != "application/json" {
				t.Fatalf("status %d answered with Content-Type %q; want application/json", out.StatusCode(), ct)
			}
			if string(out.Body()) != tc.body {
				t.Fatalf("body %q, want the upstream's %q", out.Body(), tc.body)
			}
		})
	}
}

// A stream answered without a Content-Type is not an event stream: an invalid answer
// that says so.
func TestStreamWithoutContentTypeIsBadResponse(t *testing.T) {
	addr := rawUpstream(t, listen4(t), func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	})
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + addr + "/v1", Model: "m"})
	var out fasthttp.Response
	var res Result
	err := b.Send(chatCall(chatBody, true), &out, &res)
	if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "without a content type") {
		t.Fatalf("err = %v, want ErrBadResponse naming the missing content type", err)
	}
}

// A base_url with a query (an OpenAI-compatible host that takes its version in the
// query) keeps it as the query of every operation's URL, the operation going onto
// the path.
func TestBaseURLQueryKept(t *testing.T) {
	for _, tc := range []struct {
		name, provider, base, want string
	}{
		{"openai", "openai", "/v1?api-version=2024-10-21", "/v1/chat/completions?api-version=2024-10-21"},
		{"openai, slash before the query", "openai", "/v1/?api-version=2024-10-21", "/v1/chat/completions?api-version=2024-10-21"},
		{"anthropic", "anthropic", "/v1?beta=true", "/v1/messages?beta=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var uri string
			addr := rawUpstream(t, listen4(t), func(req *http.Request) string {
				mu.Lock()
				uri = req.RequestURI
				mu.Unlock()
				return jsonAnswer(req)
			})
			cfg := Config{Provider: tc.provider, BaseURL: "http://" + addr + tc.base, Model: "m"}
			b := newTestBackend(t, cfg)
			var out fasthttp.Response
			var res Result
			_ = b.Send(chatCall(chatBody, false), &out, &res)
			mu.Lock()
			defer mu.Unlock()
			if uri != tc.want {
				t.Fatalf("base_url %s: the upstream was asked for %q, want %q", tc.base, uri, tc.want)
			}
		})
	}
}

// operationURL puts the operation at the end of the base URL's path, before its query;
// a fragment, which is never sent, stays after it.
func TestOperationURL(t *testing.T) {
	for _, tc := range []struct{ base, want string }{
		{"http://h/v1", "http://h/v1/chat/completions"},
		{"http://h/v1/", "http://h/v1/chat/completions"},
		{"http://h/v1?api-version=1", "http://h/v1/chat/completions?api-version=1"},
		{"http://h/v1/?a=1&b=/x", "http://h/v1/chat/completions?a=1&b=/x"},
		{"http://h/v1#frag", "http://h/v1/chat/completions#frag"},
		{"http://[::1]:8000/v1", "http://[::1]:8000/v1/chat/completions"},
	} {
		t.Run(tc.base, func(t *testing.T) {
			if got := operationURL(tc.base, Chat.Path()); got != tc.want {
				t.Fatalf("operationURL(%q) = %q, want %q", tc.base, got, tc.want)
			}
		})
	}
}

// An upstream status that is neither a success nor an error (a redirect, a 304 to a
// POST) is not the API's answer: ErrBadResponse, never passed on (nor followed), for
// every provider, streamed or not; the attempt leaves nothing in flight.
func TestNotAnswerStatusIsBadResponse(t *testing.T) {
	for _, provider := range []string{"openai", "anthropic"} {
		for _, tc := range []struct{ name, resp string }{
			{"307", "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://elsewhere.example/v1/chat/completions\r\nContent-Length: 0\r\n\r\n"},
			{"301 with body", "HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.example/v1/\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<a>moved</a>\n"},
			{"304", "HTTP/1.1 304 Not Modified\r\n\r\n"},
		} {
			for _, stream := range []bool{false, true} {
				t.Run(provider+"/"+tc.name+"/stream="+strconv.FormatBool(stream), func(t *testing.T) {
					addr := rawUpstream(t, listen4(t), func(*http.Request) string { return tc.resp })
					b := newTestBackend(t, Config{Provider: provider, BaseURL: "http://" + addr + "/v1", Model: "m"})
					var out fasthttp.Response
					var res Result
					err := b.Send(chatCall(chatBody, stream), &out, &res)
					var ue *UpstreamError
					if !errors.Is(err, ErrBadResponse) || errors.As(err, &ue) || res.Stream != nil {
						t.Fatalf("err = %v, stream %v; want ErrBadResponse and no upstream error", err, res.Stream != nil)
					}
					if n := b.Targets()[0].InFlight(); n != 0 {
						t.Fatalf("%d attempts left in flight", n)
					}
				})
			}
		}
	}
}
