package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// chaosUpstream is a mockllm replica that can be killed as a crash would kill it (its
// listener and every open connection closed at once, answers and streams cut wherever
// they are) and started again on the same address.
type chaosUpstream struct {
	t    *testing.T
	opts mockllm.Options
	addr string
	held *freeport.Held

	mu  sync.Mutex
	srv *mockllm.Server
	ln  *chaosListener
}

func startChaosUpstream(t *testing.T, opts mockllm.Options) *chaosUpstream {
	t.Helper()
	u := &chaosUpstream{t: t, opts: opts, held: holdPort(t)}
	u.addr = u.held.Addr()
	u.start()
	t.Cleanup(u.kill)
	return u
}

// start serves a fresh replica on the upstream's port, which stays held while the
// replica is killed (refusing connections, and not handed to anyone else).
func (u *chaosUpstream) start() {
	u.t.Helper()
	srv, err := mockllm.New(u.opts)
	if err != nil {
		u.t.Fatal(err)
	}
	ln, err := u.held.Listen()
	if err != nil {
		u.t.Fatal(err)
	}
	cl := &chaosListener{Listener: ln, conns: make(map[net.Conn]struct{})}
	u.mu.Lock()
	u.srv, u.ln = srv, cl
	u.mu.Unlock()
	go srv.Serve(cl)
}

// current is the replica serving now, nil while killed.
func (u *chaosUpstream) current() *mockllm.Server {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.srv
}

// kill cuts every connection of the replica at once and stops it.
func (u *chaosUpstream) kill() {
	u.mu.Lock()
	srv, ln := u.srv, u.ln
	u.srv, u.ln = nil, nil
	u.mu.Unlock()
	if srv == nil {
		return
	}
	ln.cut()
	srv.Shutdown()
}

// chaosListener remembers the connections it accepted so that cut can close them all.
type chaosListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *chaosListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	return &chaosConn{Conn: c, l: l}, nil
}

func (l *chaosListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.Listener.Close()
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

type chaosConn struct {
	net.Conn
	l *chaosListener
}

func (c *chaosConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c.Conn)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// chaosSettings are what the good configs of the chaos test change between reloads.
type chaosSettings struct {
	stable, canary int    // chat's route weights
	concurrency    int    // chat's endpoint-wide cap on requests in flight
	embedRate      int    // embeddings per second for the whole endpoint
	limiterTimeout string // limiter.timeout: a change builds a new limiter
}

// chaosConfig puts a pool of replicas behind chat (with a canary route and a spare
// fallback) and embeddings, with Redis-backed limits on both.
func chaosConfig(pool []string, spare, redisURL string, s chaosSettings) string {
	targets := `"http://` + strings.Join(pool, `/v1", "http://`) + `/v1"`
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
auth:
  mode: keys
  keys: [{name: chaos, key: sk-chaos}]
backends:
  pool:
    provider: openai
    targets: [%s]
    model: up-model
    balance: least_loaded
    timeout: 3s
    connect_timeout: 300ms
    idle_conn_timeout: 500ms
    health: {path: /health, interval: 150ms, timeout: 300ms, healthy_threshold: 1, unhealthy_threshold: 2,
             eject_after: 3, eject_for: 300ms}
  canary: {provider: openai, base_url: "http://%[2]s/v1", model: up-model, timeout: 3s, idle_conn_timeout: 500ms}
  spare: {provider: openai, base_url: "http://%[2]s/v1", model: up-model, timeout: 3s, idle_conn_timeout: 500ms}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: pool, weight: %[3]d, variant: stable}, {backend: canary, weight: %[4]d, variant: canary}]
    retries: 1
    fallbacks: [spare]
    timeout: 1s
    limits:
      - {per: endpoint, concurrency: %[5]d}
      - {per: user, requests: 200, window: second, burst: 100}
      - {per: api_key, tokens: 5000000, window: minute}
  - name: embed
    type: embeddings
    routes: [{backend: pool}]
    fallbacks: [spare]
    limits:
      - {per: endpoint, requests: %[6]d, window: second, burst: 10}
limiter: {store: redis, redis: {url: "%[7]s"}, on_redis_error: allow, timeout: %[8]s}
logging: {level: info}
`, targets, spare, s.stable, s.canary, s.concurrency, s.embedRate, redisURL, s.limiterTimeout)
}

// chaosReport collects what the clients saw: tallies by outcome, the slowest answer
// of each kind, and every answer that was not one the README documents.
type chaosReport struct {
	mu       sync.Mutex
	tally    map[string]int
	slowest  map[string]chaosSlow
	problems []string
	sent     atomic.Int64 // API calls sent (raw ones once written whole), warm-up and bursts included
	answered atomic.Int64 // API calls whose answer was read and checked
}

type chaosSlow struct {
	took time.Duration
	id   string // the answer's x-request-id
}

func (r *chaosReport) count(key string) {
	r.mu.Lock()
	r.tally[key]++
	r.mu.Unlock()
}

func (r *chaosReport) bad(format string, args ...any) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// took records how long a call of kind took to be answered in full.
func (r *chaosReport) took(kind string, d time.Duration, id string) {
	r.mu.Lock()
	if d > r.slowest[kind].took {
		r.slowest[kind] = chaosSlow{d, id}
	}
	r.mu.Unlock()
}

// chaosDocumentedError checks a gateway error answer's status and code against the
// README's table for the requests this test sends; "" means it is one of them.
// A 500 is the upstream's own error passed through (its body, its code).
func chaosDocumentedError(status int, typ, code, message, retryAfter string) string {
	if typ == "" || message == "" {
		return fmt.Sprintf("error without type or message: type %q message %q", typ, message)
	}
	want := map[int][]string{
		429: {"rate_limit_exceeded"},
		502: {"upstream_unreachable", "upstream_bad_response"},
		503: {"upstream_overloaded", "no_healthy_upstream"},
		504: {"upstream_timeout"},
	}
	switch codes, ok := want[status]; {
	case status == 500:
		return ""
	case !ok:
		return fmt.Sprintf("undocumented status %d (code %q: %s)", status, code, message)
	case !slices.Contains(codes, code):
		return fmt.Sprintf("status %d with code %q, want one of %q (%s)", status, code, codes, message)
	}
	if status == 429 {
		if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 {
			return fmt.Sprintf("429 with retry-after %q", retryAfter)
		}
	}
	return ""
}

// openAIErrorBody parses OpenAI's error body, {"error":{"message","type","param","code"}},
// every member present; a null code or param reads "", a number (vLLM's code) as its
// digits.
func openAIErrorBody(b []byte) (typ, code, param, msg string, err error) {
	var e struct {
		Error *struct {
			Message *string         `json:"message"`
			Type    *string         `json:"type"`
			Param   json.RawMessage `json:"param"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return "", "", "", "", fmt.Errorf("error body is not JSON: %v: %.300q", err, b)
	}
	if e.Error == nil || e.Error.Message == nil || e.Error.Type == nil || e.Error.Param == nil || e.Error.Code == nil {
		return "", "", "", "", fmt.Errorf("error body is not OpenAI's shape: %.300q", b)
	}
	str := func(raw json.RawMessage) string {
		if string(raw) == "null" {
			return ""
		}
		if s, err := strconv.Unquote(string(raw)); err == nil {
			return s
		}
		return string(raw)
	}
	return *e.Error.Type, str(e.Error.Code), str(e.Error.Param), *e.Error.Message, nil
}

// chaosCheckError checks a non-200 answer read with net/http.
func chaosCheckError(resp *http.Response, body []byte) string {
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Sprintf("error %d with content type %q: %.200q", resp.StatusCode, ct, body)
	}
	typ, code, _, msg, err := openAIErrorBody(body)
	if err != nil {
		return fmt.Sprintf("status %d: %v", resp.StatusCode, err)
	}
	return chaosDocumentedError(resp.StatusCode, typ, code, msg, resp.Header.Get("Retry-After"))
}

type chaosChunk struct {
	Object  string `json:"object"`
	Choices []struct {
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
}

// chaosCheckStream checks a streamed chat answer's body: keep-alive comments and events of one data line each,
// every one a chat.completion.chunk but the last, which is [DONE] after a finish
// reason (and the usage chunk exactly when the client asked for it), or an
// OpenAI-style error event for a stream the upstream cut. It returns the outcome,
// "done" or "cut", or what is wrong.
func chaosCheckStream(body []byte, includeUsage bool) (string, string) {
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		return "", fmt.Sprintf("stream does not end with a complete event: ...%q", chaosTail(body))
	}
	var events []string
	for _, ev := range strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n") {
		// The upstream's keep-alives, passed on.
		if ev != ": keep-alive" {
			events = append(events, ev)
		}
	}
	var finished bool
	usage := 0
	for i, ev := range events {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			return "", fmt.Sprintf("event %d is not one data line: %.200q", i, ev)
		}
		last := i == len(events)-1
		if last && data == "[DONE]" {
			switch {
			case !finished:
				return "", "stream ended with [DONE] without a finish reason"
			case includeUsage && usage != 1:
				return "", fmt.Sprintf("stream with include_usage had %d usage chunks", usage)
			case !includeUsage && usage != 0:
				return "", fmt.Sprintf("stream without include_usage showed %d usage chunks", usage)
			}
			return "done", ""
		}
		if strings.HasPrefix(data, `{"error"`) {
			if !last {
				return "", fmt.Sprintf("error event %d is not the last of %d", i, len(events))
			}
			typ, code, _, msg, err := openAIErrorBody([]byte(data))
			if err != nil {
				return "", err.Error()
			}
			switch {
			case typ == "" || msg == "":
				return "", fmt.Sprintf("stream error event with type %q message %q", typ, msg)
			case code == "upstream_stream_cut":
				return "cut", ""
			case code == "upstream_bad_response":
				return "bad", ""
			case code == "upstream_timeout":
				return "timeout", ""
			}
			return "", fmt.Sprintf("stream error event with code %q", code)
		}
		var c chaosChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil || c.Object != "chat.completion.chunk" {
			return "", fmt.Sprintf("event %d is not a chunk (%v): %.200q", i, err, data)
		}
		if last {
			return "", fmt.Sprintf("stream ended after a chunk, without [DONE] or an error event: %.200q", data)
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				finished = true
			}
		}
		if c.Usage != nil && c.Usage.TotalTokens > 0 {
			if len(c.Choices) != 0 || !finished {
				return "", fmt.Sprintf("usage chunk in the wrong place: %.200q", data)
			}
			usage++
		}
	}
	return "", "empty stream"
}

func chaosTail(b []byte) []byte {
	if len(b) > 200 {
		return b[len(b)-200:]
	}
	return b
}

// chaosGoroutines lists the stacks of the goroutines running now, less fasthttp's idle
// pooled workers, which live on for up to 10s after they last served a connection.
func chaosGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := goruntime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "fasthttp.(*workerPool).workerFunc") && !strings.Contains(g, "serveConn") {
			continue
		}
		out = append(out, g)
	}
	return out
}

func chaosCountStacks(stacks []string, frame string) int {
	n := 0
	for _, s := range stacks {
		if strings.Contains(s, frame) {
			n++
		}
	}
	return n
}

// chaosPoll calls cond until it reports true or limit has passed; it returns cond's
// last answer.
func chaosPoll(limit time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok || time.Now().After(deadline) {
			return ok, why
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chaosEventually polls cond until it reports true, failing the test with cond's
// last word after limit.
func chaosEventually(t *testing.T, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	if ok, why := chaosPoll(limit, cond); !ok {
		t.Fatalf("not within %v: %s", limit, why)
	}
}

// chaosRedisLeases counts the concurrency leases held in Redis, by limiter key.
func chaosRedisLeases(addr string) map[string]string {
	leases := map[string]string{}
	keys, _ := redistest.Command(addr, "KEYS", "tg:*")
	for _, k := range strings.Split(keys, "\n") {
		if ty, _ := redistest.Command(addr, "TYPE", k); ty == "zset" && k != "tg:{replicas}" {
			leases[k], _ = redistest.Command(addr, "ZCARD", k)
		}
	}
	return leases
}

// leasesHeld is how many concurrency leases Redis at addr holds, all keys together.
func leasesHeld(addr string) int {
	n := 0
	for _, v := range chaosRedisLeases(addr) {
		c, _ := strconv.Atoi(v)
		n += c
	}
	return n
}

// TestChaosLosesNothing runs chat (plain and streamed, raw and through the official
// SDK) and embeddings through a pool of replicas with Redis-backed limits while the
// config is reloaded (good and broken), a replica is killed mid-answer and brought
// back, Redis is killed, restarted and paused, the upstreams answer errors, garbage,
// late answers and cut streams, and clients hang up. Every answer must be a well-formed
// success or a documented error with OpenAI's body and an x-request-id, and no chat
// call may outlast the endpoint's timeout by much. Afterwards every call is counted,
// the concurrency slots are all free again, and nothing is left running.
func TestChaosLosesNothing(t *testing.T) {
	rds := redistest.Start(t)
	mock := func(seed int64, errorRate, disconnectRate float64) mockllm.Options {
		return mockllm.Options{Model: "up-model", MaxTokens: 8, TTFT: 2 * time.Millisecond, TPOT: time.Millisecond,
			ErrorRate: errorRate, DisconnectRate: disconnectRate, Seed: seed}
	}
	ups := []*chaosUpstream{
		startChaosUpstream(t, mock(1, 0.15, 0)),
		startChaosUpstream(t, mock(2, 0, 0.15)),
		startChaosUpstream(t, mock(3, 0, 0)),
	}
	spare := startChaosUpstream(t, mock(4, 0, 0))
	pool := []string{ups[0].addr, ups[1].addr, ups[2].addr}
	configs := []chaosSettings{
		{stable: 80, canary: 20, concurrency: 6, embedRate: 30, limiterTimeout: "50ms"},
		{stable: 60, canary: 40, concurrency: 12, embedRate: 60, limiterTimeout: "50ms"},
		{stable: 90, canary: 10, concurrency: 8, embedRate: 30, limiterTimeout: "80ms"},
	}
	g := startGateway(t, chaosConfig(pool, spare.addr, rds.URL(), configs[0]))
	reload := func(s chaosSettings) {
		t.Helper()
		writeAtomic(t, g.path, chaosConfig(pool, spare.addr, rds.URL(), s))
		if err := g.Reload(); err != nil {
			t.Fatalf("good config refused: %v", err)
		}
	}

	rep := &chaosReport{tally: make(map[string]int), slowest: make(map[string]chaosSlow)}
	transport := &http.Transport{MaxIdleConnsPerHost: 32}
	httpc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	// Every answer the SDK gets carries an x-request-id, errors included.
	sdk := g.client(option.WithAPIKey("sk-chaos"), option.WithHTTPClient(httpc),
		option.WithMiddleware(func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			resp, err := next(req)
			if err == nil && resp.Header.Get("X-Request-Id") != req.Header.Get("X-Request-Id") {
				rep.bad("SDK %s: answer %d with x-request-id %q, sent %q", req.URL.Path, resp.StatusCode,
					resp.Header.Get("X-Request-Id"), req.Header.Get("X-Request-Id"))
			}
			return resp, err
		}))

	// send sends one raw API call and returns its answer unread. The call counts as
	// sent once its request is written whole: a hang-up's cancel can come before that
	// on a loaded machine (its dial or write held up past the 100 ms), and then the
	// gateway never saw a call to count.
	send := func(ctx context.Context, path, body string, hdr map[string]string) (*http.Response, error) {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				rep.sent.Add(1)
			}
		}})
		req, err := http.NewRequestWithContext(ctx, "POST", g.url+path, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk-chaos")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return httpc.Do(req)
	}
	// post sends one raw API call and reads its whole answer.
	post := func(ctx context.Context, path, body string, hdr map[string]string) (*http.Response, []byte, error) {
		resp, err := send(ctx, path, body, hdr)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	// errorAnswer checks and counts an answer of kind that is not a 200; it reports
	// whether the answer was one.
	errorAnswer := func(kind, what string, resp *http.Response, b []byte) bool {
		if resp.StatusCode == 200 {
			return false
		}
		if p := chaosCheckError(resp, b); p != "" {
			rep.bad("%s: %s", what, p)
		}
		rep.count(kind + " " + strconv.Itoa(resp.StatusCode))
		return true
	}
	// checkHeaders checks what every raw answer carries; id is the x-request-id sent.
	checkHeaders := func(what string, resp *http.Response, id string) {
		got := resp.Header.Get("X-Request-Id")
		if got == "" || (id != "" && got != id) {
			rep.bad("%s: answer %d with x-request-id %q, sent %q", what, resp.StatusCode, got, id)
		}
	}
	// requestID is sent on every other raw call; the others get one made for them.
	requestID := func(kind string, w, i int) string {
		if i%2 == 1 {
			return ""
		}
		return fmt.Sprintf("chaos-%s-%d-%d", kind, w, i)
	}

	// rawChat is a plain chat completion, sometimes answered with garbage or too late
	// by its upstream.
	rawChat := func(rng *rand.Rand, w, i int) int {
		hdr := map[string]string{}
		fault := "none"
		switch x := rng.IntN(100); {
		case x < 8:
			fault, hdr["x-mock-garbage"] = "garbage", "1"
		case x < 11:
			fault, hdr["x-mock-delay"] = "delay", "2s"
		}
		id := requestID("chat", w, i)
		if id != "" {
			hdr["X-Request-Id"] = id
		}
		what := "raw chat (fault " + fault + ")"
		body := fmt.Sprintf(`{"model":"chat","user":"u%d","max_tokens":6,"messages":[{"role":"user","content":"chaos %d"}]}`, w, i)
		start := time.Now()
		resp, b, err := post(context.Background(), "/v1/chat/completions", body, hdr)
		if err != nil {
			rep.bad("%s: %v", what, err)
			return 0
		}
		rep.took("chat "+fault, time.Since(start), resp.Header.Get("X-Request-Id"))
		checkHeaders(what, resp, id)
		if errorAnswer("chat", what, resp, b) {
			return resp.StatusCode
		}
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		switch err := json.Unmarshal(b, &c); {
		case fault != "none":
			rep.bad("%s: answered 200: %.200q", what, b)
		case err != nil || c.Object != "chat.completion" || len(c.Choices) == 0 || c.Choices[0].Message.Content == "" || c.Choices[0].FinishReason == "":
			rep.bad("%s: malformed 200 (%v): %.200q", what, err, b)
		}
		rep.count("chat 200")
		return 200
	}

	// rawStream is a streamed chat completion, sometimes slow (so that a killed
	// replica cuts it mid-way) and sometimes cut by its upstream.
	rawStream := func(rng *rand.Rand, w, i int) int {
		hdr := map[string]string{}
		fault := "none"
		switch x := rng.IntN(100); {
		case x < 10:
			fault, hdr["x-mock-cut-after"] = "cut", "2"
		case x < 15:
			fault, hdr["x-mock-garbage"] = "garbage", "1"
		}
		if rng.IntN(100) < 20 {
			hdr["x-mock-tpot"] = "15ms"
		}
		id := requestID("stream", w, i)
		if id != "" {
			hdr["X-Request-Id"] = id
		}
		usage := rng.IntN(2) == 0
		opts := ""
		if usage {
			opts = `,"stream_options":{"include_usage":true}`
		}
		what := fmt.Sprintf("raw stream (fault %s, include_usage %v)", fault, usage)
		body := fmt.Sprintf(`{"model":"chat","stream":true%s,"user":"u%d","max_tokens":6,"messages":[{"role":"user","content":"stream %d"}]}`, opts, w, i)
		start := time.Now()
		resp, b, err := post(context.Background(), "/v1/chat/completions", body, hdr)
		if err != nil {
			rep.bad("%s: %v (after %d bytes: ...%q)", what, err, len(b), chaosTail(b))
			return 0
		}
		rep.took("stream", time.Since(start), resp.Header.Get("X-Request-Id"))
		checkHeaders(what, resp, id)
		if errorAnswer("stream", what, resp, b) {
			return resp.StatusCode
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			rep.bad("%s: 200 with content type %q", what, ct)
		}
		outcome, p := chaosCheckStream(b, usage)
		switch {
		case p != "":
			rep.bad("%s: %s", what, p)
		case fault == "cut" && outcome == "done":
			rep.bad("%s: a stream its upstream cut ended with [DONE]", what)
		case (fault == "garbage") != (outcome == "bad"):
			// An event that is not JSON ends the stream with upstream_bad_response,
			// never passed on for the client's SDK to fail on.
			rep.bad("%s: ended as %q: ...%q", what, outcome, chaosTail(b))
		}
		rep.count("stream " + outcome)
		return 200
	}

	// hangUp is a client that goes away: from a stream after its first event, or from
	// a plain call its upstream is slow to answer.
	hangUp := func(rng *rand.Rand, w, i int) int {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream := i%2 == 0
		body := fmt.Sprintf(`{"model":"chat","stream":%v,"user":"u%d","max_tokens":8,"messages":[{"role":"user","content":"bye %d"}]}`, stream, w, i)
		hdr := map[string]string{"x-mock-tpot": "20ms"}
		if !stream {
			hdr = map[string]string{"x-mock-delay": "400ms"}
			time.AfterFunc(100*time.Millisecond, cancel)
		}
		resp, err := send(ctx, "/v1/chat/completions", body, hdr)
		if err != nil {
			if !stream && errors.Is(err, context.Canceled) {
				rep.count("hang-up")
				return 499
			}
			rep.bad("hang-up (stream %v): %v", stream, err)
			return 0
		}
		defer resp.Body.Close()
		checkHeaders("hang-up", resp, "")
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			if p := chaosCheckError(resp, b); p != "" {
				rep.bad("hang-up (stream %v): %s", stream, p)
			}
			rep.count("hang-up " + strconv.Itoa(resp.StatusCode))
			return resp.StatusCode
		}
		if !stream {
			rep.bad("hang-up: a plain call answered before its client gave up")
			return 200
		}
		var first [16]byte
		if _, err := io.ReadFull(resp.Body, first[:]); err != nil || !bytes.HasPrefix(first[:], []byte("data: ")) {
			rep.bad("hang-up: stream began with %q (%v)", first, err)
		}
		cancel()
		rep.count("hang-up")
		return 499
	}

	sdkError := func(what string, err error) int {
		var e *openai.Error
		if !errors.As(err, &e) {
			rep.bad("%s: %T %v", what, err, err)
			return 0
		}
		retryAfter := ""
		if e.Response != nil {
			retryAfter = e.Response.Header.Get("Retry-After")
		}
		if p := chaosDocumentedError(e.StatusCode, e.Type, e.Code, e.Message, retryAfter); p != "" {
			rep.bad("%s: %s", what, p)
		}
		return e.StatusCode
	}

	// sdkChat is a plain chat completion through the SDK.
	sdkChat := func(rng *rand.Rand, w, i int) int {
		rep.sent.Add(1)
		id := fmt.Sprintf("chaos-sdk-%d-%d", w, i)
		start := time.Now()
		res, err := sdk.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model: "chat", Messages: userMsg(fmt.Sprintf("sdk %d", i)), MaxTokens: openai.Int(6), User: openai.String(fmt.Sprintf("u%d", w)),
		}, option.WithHeader("X-Request-Id", id))
		rep.took("sdk chat", time.Since(start), id)
		if err != nil {
			code := sdkError("SDK chat", err)
			rep.count("chat " + strconv.Itoa(code))
			return code
		}
		if len(res.Choices) == 0 || res.Choices[0].Message.Content == "" || res.Choices[0].FinishReason == "" {
			rep.bad("SDK chat: malformed answer %.200q", res.RawJSON())
		}
		rep.count("chat 200")
		return 200
	}

	// sdkStream is a streamed chat completion through the SDK, with usage.
	sdkStream := func(rng *rand.Rand, w, i int) int {
		rep.sent.Add(1)
		id := fmt.Sprintf("chaos-sdk-stream-%d-%d", w, i)
		start := time.Now()
		stream := sdk.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model: "chat", Messages: userMsg(fmt.Sprintf("sdk stream %d", i)), MaxTokens: openai.Int(6), User: openai.String(fmt.Sprintf("u%d", w)),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		}, option.WithHeader("X-Request-Id", id))
		defer stream.Close()
		var acc openai.ChatCompletionAccumulator
		usage, finished := 0, false
		for stream.Next() {
			ch := stream.Current()
			acc.AddChunk(ch)
			for _, c := range ch.Choices {
				finished = finished || c.FinishReason != ""
			}
			if len(ch.Choices) == 0 && ch.Usage.TotalTokens > 0 {
				usage++
			}
		}
		rep.took("sdk stream", time.Since(start), id)
		var se *ssestream.StreamError
		switch err := stream.Err(); {
		case err == nil:
			// The SDK takes a body that just stops for a whole stream: the stream
			// must really have ended.
			if !finished || usage != 1 || len(acc.Choices) == 0 || acc.Choices[0].Message.Content == "" {
				rep.bad("SDK stream: ended without finish reason or usage (finished %v, usage chunks %d)", finished, usage)
			}
			rep.count("stream done")
		case errors.As(err, &se):
			// A stream still running at the endpoint's timeout ends upstream_timeout
			// (README), which a loaded machine reaches with a short stream too.
			_, code, _, _, perr := openAIErrorBody(se.Event.Data)
			if perr != nil || code != "upstream_stream_cut" && code != "upstream_timeout" {
				rep.bad("SDK stream: error event %q (%v)", se.Event.Data, perr)
			}
			if code == "upstream_timeout" {
				rep.count("stream timeout")
			} else {
				rep.count("stream cut")
			}
		default:
			code := sdkError("SDK stream", err)
			rep.count("stream " + strconv.Itoa(code))
			return code
		}
		return 200
	}

	// rawEmbed asks for two float embeddings, sometimes answered with garbage.
	rawEmbed := func(rng *rand.Rand, w, i int) int {
		hdr := map[string]string{}
		garbage := rng.IntN(100) < 8
		if garbage {
			hdr["x-mock-garbage"] = "1"
		}
		id := requestID("embed", w, i)
		if id != "" {
			hdr["X-Request-Id"] = id
		}
		what := fmt.Sprintf("raw embeddings (garbage %v)", garbage)
		body := fmt.Sprintf(`{"model":"embed","user":"u%d","encoding_format":"float","input":["a %d","b"]}`, w, i)
		resp, b, err := post(context.Background(), "/v1/embeddings", body, hdr)
		if err != nil {
			rep.bad("%s: %v", what, err)
			return 0
		}
		checkHeaders(what, resp, id)
		if errorAnswer("embed", what, resp, b) {
			return resp.StatusCode
		}
		var e struct {
			Data []struct {
				Embedding []float64 `json:"embedding"`
			} `json:"data"`
		}
		switch err := json.Unmarshal(b, &e); {
		case garbage:
			rep.bad("%s: answered 200: %.200q", what, b)
		case err != nil || len(e.Data) != 2 || len(e.Data[0].Embedding) != mockllm.DefaultEmbeddingDim:
			rep.bad("%s: malformed 200 (%v): %.200q", what, err, b)
		}
		rep.count("embed 200")
		return 200
	}

	// sdkEmbed asks for embeddings through the SDK (base64, its default).
	sdkEmbed := func(rng *rand.Rand, w, i int) int {
		rep.sent.Add(1)
		res, err := sdk.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
			Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"x", fmt.Sprint(i)}}, User: openai.String(fmt.Sprintf("u%d", w)),
		}, option.WithHeader("X-Request-Id", fmt.Sprintf("chaos-sdk-embed-%d-%d", w, i)))
		if err != nil {
			code := sdkError("SDK embeddings", err)
			rep.count("embed " + strconv.Itoa(code))
			return code
		}
		if len(res.Data) != 2 || len(res.Data[1].Embedding) != mockllm.DefaultEmbeddingDim {
			rep.bad("SDK embeddings: malformed answer %.200q", res.RawJSON())
		}
		rep.count("embed 200")
		return 200
	}

	// Warm up every path once, then take the goroutine baseline with no client
	// connection open.
	rng := rand.New(rand.NewPCG(0, 0))
	for _, call := range []func(*rand.Rand, int, int) int{sdkChat, sdkStream, sdkEmbed} {
		if code := call(rng, 0, 0); code != 200 {
			t.Fatalf("warm-up call answered %d; problems: %q", code, rep.problems)
		}
		rep.answered.Add(1)
	}
	transport.CloseIdleConnections()
	baseline := len(chaosGoroutines())

	workers := []func(*rand.Rand, int, int) int{
		sdkChat, sdkChat, rawChat, rawChat, rawChat,
		rawStream, rawStream, rawStream, sdkStream, hangUp,
		rawEmbed, sdkEmbed,
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, call := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code := call(rng, w, i)
				rep.answered.Add(1)
				if code == 429 {
					// Refused: pause as a client would, without giving up.
					time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
				}
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	// progress waits until n more calls have been answered.
	progress := func(n int64) {
		t.Helper()
		target := rep.answered.Load() + n
		chaosEventually(t, 20*time.Second, func() (bool, string) {
			return rep.answered.Load() >= target, fmt.Sprintf("%d calls answered, waiting for %d", rep.answered.Load(), target)
		})
	}

	progress(150)
	reload(configs[1])
	progress(150)

	// A replica dies while it answers.
	chaosEventually(t, 10*time.Second, func() (bool, string) {
		return ups[2].current().Stats().Running > 0, "no request ever running on the replica to kill"
	})
	ups[2].kill()
	progress(200)

	// Redis crashes and comes back empty.
	rds.Kill()
	progress(150)
	rds.Restart()
	progress(150)

	// A broken save is refused and the running config stays.
	running := g.rt.Load()
	writeAtomic(t, g.path, "endpoints: [ {name: broken")
	if err := g.Reload(); err == nil {
		t.Fatal("broken config accepted")
	}
	if g.rt.Load() != running {
		t.Fatal("a refused reload replaced the running config")
	}
	progress(100)

	// The replica comes back on its address and gets traffic again.
	ups[2].start()
	back := ups[2].current()
	chaosEventually(t, 10*time.Second, func() (bool, string) {
		return back.Stats().Requests["/v1/chat/completions"] > 0, "the restarted replica got no chat request"
	})

	// Redis stalls for a second (a slow command, a fork) while a reload builds a new
	// limiter.
	rds.Pause()
	stalled := time.Now()
	progress(100)
	reload(configs[2])
	for time.Since(stalled) < time.Second {
		progress(10)
	}
	rds.Resume()
	progress(200)

	stopLoad()
	t.Logf("%d calls: %v; slowest: %v", rep.answered.Load(), rep.tally, rep.slowest)
	for i, p := range rep.problems {
		if i == 30 {
			t.Errorf("... and %d more", len(rep.problems)-i)
			break
		}
		t.Errorf("%s", p)
	}
	for _, k := range []string{"chat 200", "stream done", "stream cut", "embed 200", "hang-up"} {
		if rep.tally[k] == 0 {
			t.Errorf("no %q outcome in %v: the load did not cover it", k, rep.tally)
		}
	}
	if rep.tally["chat 429"]+rep.tally["stream 429"]+rep.tally["embed 429"] == 0 {
		t.Errorf("no request was refused by a limit: %v", rep.tally)
	}
	// The endpoint's timeout bounds a chat call, all attempts included. The client's
	// clock also counts the time its goroutine waited for a CPU on a loaded machine:
	// what the gateway took is its access line's latency_ms.
	for kind, s := range rep.slowest {
		if s.took <= 3*time.Second {
			continue
		}
		if ms, ok := loggedLatencyMS(g, s.id); !ok || ms > 3000 {
			t.Errorf("a %s call took %v (the gateway's access line: %v ms, logged %v) with the endpoint's timeout at 1s (x-request-id %s)", kind, s.took, ms, ok, s.id)
		}
	}

	scrape := func() (inFlight, requests float64) {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatalf("/metrics does not parse: %v", err)
		}
		inFlight, _ = promtest.Sum(fams, "tollgate_in_flight_requests", nil)
		requests, _ = promtest.Sum(fams, "tollgate_requests_total", func(l map[string]string) bool {
			return l["endpoint"] == "chat" || l["endpoint"] == "embed"
		})
		return inFlight, requests
	}
	// The gateway settles: nothing in flight, the limiter back on Redis.
	chaosEventually(t, 10*time.Second, func() (bool, string) {
		inFlight, _ := scrape()
		degraded := g.rt.Load().lim.Degraded()
		return inFlight == 0 && !degraded, fmt.Sprintf("in flight %v, limiter degraded %v", inFlight, degraded)
	})

	// Every concurrency slot is free again: as many slow requests as the cap allows are
	// all admitted at once, and more than that are not.
	burst := func(n int, hold string) map[int]int {
		codes := map[int]int{}
		var mu sync.Mutex
		var bwg sync.WaitGroup
		for i := range n {
			bwg.Add(1)
			go func() {
				defer bwg.Done()
				body := fmt.Sprintf(`{"model":"chat","user":"burst","max_tokens":2,"messages":[{"role":"user","content":"burst %d"}]}`, i)
				resp, b, err := post(context.Background(), "/v1/chat/completions", body, map[string]string{"x-mock-delay": hold})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("burst: %v", err)
					codes[0]++
					return
				}
				codes[resp.StatusCode]++
				if resp.StatusCode != 200 {
					if p := chaosCheckError(resp, b); p != "" {
						t.Errorf("burst: %s", p)
					}
				}
			}()
		}
		bwg.Wait()
		return codes
	}
	limit := configs[2].concurrency
	if ok, why := chaosPoll(4*time.Second, func() (bool, string) {
		codes := burst(limit, "200ms")
		return codes[200] == limit, fmt.Sprintf("a burst of %d requests (the concurrency limit) got %v; concurrency leases in Redis: %v",
			limit, codes, chaosRedisLeases(rds.Addr()))
	}); !ok {
		t.Errorf("concurrency slots still taken 4s after the load: %s", why)
	}
	if codes := burst(limit+2, "500ms"); codes[429] < 2 {
		t.Errorf("a burst of %d over a concurrency limit of %d got %v", limit+2, limit, codes)
	}

	// Every call is counted once, in the metrics and in the access log.
	chaosEventually(t, 10*time.Second, func() (bool, string) {
		_, requests := scrape()
		logged := int64(strings.Count(g.logs.String(), `"msg":"request"`))
		sent := rep.sent.Load()
		return requests == float64(sent) && logged == sent,
			fmt.Sprintf("%d calls sent, tollgate_requests_total says %v, the access log has %d lines", sent, requests, logged)
	})

	// Nothing is left running: no relay, no connection, no retired limiter or
	// health checker.
	transport.CloseIdleConnections()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	chaosEventually(t, 15*time.Second, func() (bool, string) {
		left := chaosGoroutines()
		limiters := chaosCountStacks(left, "limiter.(*Limiter).probe(")
		// One loop a target: the pool's active checks (it reads no /metrics).
		checkers := chaosCountStacks(left, "providers.(*pool).every(")
		return len(left) <= baseline+10 && limiters == 1 && checkers == len(pool),
			fmt.Sprintf("%d goroutines (baseline %d), %d limiters, %d health checkers (want 1 and %d)\n%s",
				len(left), baseline, limiters, checkers, len(pool), strings.Join(left, "\n\n"))
	})

	logs := g.logs.String()
	if strings.Contains(strings.ToLower(logs), "panic") {
		t.Errorf("a panic was logged:\n%s", logs)
	}
	if !strings.Contains(logs, "config reload failed; keeping the running config") {
		t.Error("the refused reload was not logged")
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	ok, _ := promtest.Sum(fams, "tollgate_config_reloads_total", func(l map[string]string) bool { return l["result"] == "success" })
	bad, _ := promtest.Sum(fams, "tollgate_config_reloads_total", func(l map[string]string) bool { return l["result"] == "error" })
	if ok < 2 || bad < 1 {
		t.Errorf("tollgate_config_reloads_total: success %v, error %v; want at least 2 and 1", ok, bad)
	}
}

// chaosClient is an HTTP client whose kept-alive connections are closed before the
// gateway stops, so that its shutdown does not wait for them.
func chaosClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// chaosPost sends a raw chat call to g and reads its answer.
func chaosPost(t *testing.T, c *http.Client, g *gw, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	return postRaw(t, c, g.url+"/v1/chat/completions", body, hdr)
}

// postRaw sends a JSON POST to url and reads its whole answer.
func postRaw(t *testing.T, c *http.Client, url, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer %d cut short: %v", resp.StatusCode, err)
	}
	return resp, b
}

// TestChaosRedisStallFreesSlots stalls Redis for longer than the limiter's timeout
// while one request on a concurrency-limited endpoint is checked. The request is
// answered from the local share; the check it sent may still run in Redis when Redis
// wakes up, and the lease it takes there must not stay held: once Redis answers again
// the endpoint's whole concurrency is available.
func TestChaosRedisStallFreesSlots(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", `  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, concurrency: 2}]
`)+`limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, on_redis_error: allow, timeout: 50ms}
logging: {level: warn, access_log: false}
`)
	client := chaosClient(t)
	call := func(hold string) int {
		resp, b := chaosPost(t, client, g, `{"model":"limited","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"x-mock-delay": hold})
		if resp.StatusCode != 200 {
			if p := chaosCheckError(resp, b); p != "" {
				t.Error(p)
			}
		}
		return resp.StatusCode
	}
	if code := call("0"); code != 200 {
		t.Fatalf("before the stall: %d", code)
	}
	// Nothing is left queued for Redis when it stalls.
	waitFor(t, func() bool { return len(chaosRedisLeases(rds.Addr())) == 0 })

	rds.Pause()
	if code := call("0"); code != 200 {
		t.Fatalf("during the stall: %d, want an answer from the local share", code)
	}
	// The stall outlasts every round the limiter may still have waiting on Redis
	// (10 × timeout, at least 500ms).
	time.Sleep(700 * time.Millisecond)
	rds.Resume()
	waitFor(t, func() bool { return !g.rt.Load().lim.Degraded() })

	if ok, why := chaosPoll(3*time.Second, func() (bool, string) {
		codes := make(chan int, 2)
		for range 2 {
			go func() { codes <- call("300ms") }()
		}
		a, b := <-codes, <-codes
		return a == 200 && b == 200, fmt.Sprintf("two requests at once under a cap of 2 got %d and %d; concurrency leases in Redis: %v",
			a, b, chaosRedisLeases(rds.Addr()))
	}); !ok {
		t.Fatalf("a limit check made during the stall still holds a slot: %s", why)
	}
}

// loggedLatencyMS is the latency_ms of the access line of the request with id.
func loggedLatencyMS(g *gw, id string) (float64, bool) {
	for _, l := range accessLines(g) {
		if l["request_id"] == id {
			ms, ok := l["latency_ms"].(float64)
			return ms, ok
		}
	}
	return 0, false
}
