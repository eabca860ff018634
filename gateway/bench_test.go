package gateway

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
)

var (
	benchChatBody = []byte(`{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Tell me a story about a gateway."}],"max_tokens":64,"user":"u-123"}`)
	benchChatResp = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon a time there was a gateway."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}`)
)

// serveUpstream serves h on a free loopback port until the test ends and returns the
// address.
func serveUpstream(tb testing.TB, h fasthttp.RequestHandler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// startStaticUpstream serves a fixed chat completion with an allocation-free handler,
// so that benchmarks count the gateway's own allocations.
func startStaticUpstream(tb testing.TB) string {
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
}

// newTestServer builds a gateway on a config file written from yaml.
func newTestServer(tb testing.TB, yaml string) *Server {
	tb.Helper()
	return newServerWith(tb, yaml, Options{Logger: discardLogger()})
}

// newServerWith builds a Server from yaml with opt, without listening, and retires its
// runtime when the test ends.
func newServerWith(tb testing.TB, yaml string, opt Options) *Server {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		tb.Fatal(err)
	}
	s, err := New(path, opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if rt := s.rt.Swap(nil); rt != nil {
			rt.retireNow()
		}
	})
	return s
}

func benchConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`
}

func proxyOnce(s *Server, ctx *fasthttp.RequestCtx) {
	ctx.Response.Reset()
	s.serveAPI(ctx)
}

func newProxyCtx(body []byte) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/chat/completions")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init2(&sinkConn{wake: make(chan bool, 1)}, nopLogger{}, true)
	req.CopyTo(&ctx.Request)
	return ctx
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// The addresses are made once, as a real connection's are: a per-call allocation
// here would be charged to the request path.
var (
	sinkLocal  net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	sinkRemote net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
)

// sinkConn is the client end of a RequestCtx driven without a server: it counts what
// a hijacked stream writes and has nothing to read.
// sinkConn is a client that sends nothing more and takes everything written to it. A
// read waits for a read deadline to be set, as a read of an idle connection would: one
// already passed ends it with a timeout (what a stream's client watch and the
// pipelining check see of a connection that is still there), a later one with EOF (the
// client closes the connection after its stream, instead of idling until then).
type sinkConn struct {
	net.Conn
	n      int
	panics bool // Write panics, as a bug in the relay would
	wake   chan bool
}

func (c *sinkConn) Write(p []byte) (int, error) {
	if c.panics {
		panic("sinkConn: write panics on purpose")
	}
	c.n += len(p)
	return len(p), nil
}
func (c *sinkConn) Read([]byte) (int, error) {
	if passed := <-c.wake; passed {
		return 0, os.ErrDeadlineExceeded
	}
	return 0, io.EOF
}
func (c *sinkConn) Close() error                  { return nil }
func (c *sinkConn) LocalAddr() net.Addr           { return sinkLocal }
func (c *sinkConn) RemoteAddr() net.Addr          { return sinkRemote }
func (c *sinkConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }
func (c *sinkConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		select {
		case c.wake <- t.Before(time.Now()):
		default:
		}
	}
	return nil
}
func (c *sinkConn) SetWriteDeadline(time.Time) error { return nil }

// hijacked holds the hijack handler of each RequestCtx that no server runs, for
// streamOnce; a server's connections still get theirs.
var hijacked struct {
	sync.Mutex
	m map[*fasthttp.RequestCtx]fasthttp.HijackHandler
}

func init() {
	hijacked.m = map[*fasthttp.RequestCtx]fasthttp.HijackHandler{}
	serverHijack := hijack
	hijack = func(ctx *fasthttp.RequestCtx, h fasthttp.HijackHandler) {
		if _, ok := ctx.Conn().(*sinkConn); ok {
			hijacked.Lock()
			hijacked.m[ctx] = h
			hijacked.Unlock()
			return
		}
		serverHijack(ctx, h)
	}
	serverDetach := detach
	detach = func(r *request, c net.Conn) {
		if _, ok := c.(*sinkConn); ok {
			r.streamDetached(c)
			return
		}
		serverDetach(r, c)
	}
}

// BenchmarkProxyChat is the non-streaming request path end to end: scan, route, send
// over loopback to an upstream, copy the answer back.
func BenchmarkProxyChat(b *testing.B) {
	s := newTestServer(b, benchConfig(startStaticUpstream(b)))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// startStaticSSEUpstream answers every request with the same 32-chunk stream.
func startStaticSSEUpstream(tb testing.TB) string {
	tb.Helper()
	var body []byte
	body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
	for range 32 {
		body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
	}
	body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`+"\n\n"...)
	body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":32,"total_tokens":52}}`+"\n\n"...)
	body = append(body, "data: [DONE]\n\n"...)
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.Response.SetBodyRaw(body)
	})
}

// streamOnce runs a streaming request and writes its response as fasthttp's server
// would, returning how many bytes that was.
func streamOnce(tb testing.TB, s *Server, ctx *fasthttp.RequestCtx, sink []byte) int {
	ctx.Response.Reset()
	s.serveAPI(ctx)
	hijacked.Lock()
	h := hijacked.m[ctx]
	delete(hijacked.m, ctx)
	hijacked.Unlock()
	if h == nil {
		tb.Fatalf("no stream: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	c := ctx.Conn().(*sinkConn)
	c.n = 0
	h(c)
	return c.n
}

// BenchmarkProxyStream relays a 35-event stream; allocations are per stream.
func BenchmarkProxyStream(b *testing.B) {
	s := newTestServer(b, benchConfig(startStaticSSEUpstream(b)))
	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	sink := make([]byte, 4096)
	streamOnce(b, s, ctx, sink)
	b.ReportAllocs()
	for b.Loop() {
		streamOnce(b, s, ctx, sink)
	}
}

// limitedBenchConfig puts a requests and a tokens limit on the chat endpoint, both far
// above what a benchmark reaches.
func limitedBenchConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits:
      - {per: ip, requests: 1000000000, window: second}
      - {per: endpoint, tokens: 1000000000000, window: minute}
logging: {level: error, access_log: false}
`
}

// BenchmarkProxyChatLimited is BenchmarkProxyChat with two memory-store limits.
func BenchmarkProxyChatLimited(b *testing.B) {
	s := newTestServer(b, limitedBenchConfig(startStaticUpstream(b)))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || len(ctx.Response.Header.Peek("X-Ratelimit-Limit-Requests")) == 0 {
		b.Fatalf("status %d, limit headers %q", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Ratelimit-Limit-Requests"))
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// processCPU is the CPU time this process has used, user and system, in seconds: the
// clients, the gateway and its upstream together.
func processCPU(b *testing.B) float64 {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkProxyChatAccessLog is BenchmarkProxyChat with the access log on (written to
// a discarding JSON handler), to price the log line.
func BenchmarkProxyChatAccessLog(b *testing.B) {
	s := newTestServer(b, strings.Replace(benchConfig(startStaticUpstream(b)), "access_log: false", "access_log: true", 1))
	ctx := newProxyCtx(benchChatBody)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// benchmarkLimitedParallel runs the limited proxy path from 64 goroutines at once
// (32 per core on two cores), the concurrency at which issue figures compare the redis
// store's throughput with the memory store's.
func benchmarkLimitedParallel(b *testing.B, limiterYAML string, rds *redistest.Server) {
	cfg := strings.Replace(limitedBenchConfig(startStaticUpstream(b)), "logging:", limiterYAML+"\nlogging:", 1)
	s := newTestServer(b, cfg)
	b.SetParallelism(64 / max(1, goruntime.GOMAXPROCS(0)))
	b.ReportAllocs()
	measureLimited(b, s, rds, func() {
		b.RunParallel(func(pb *testing.PB) {
			ctx := newProxyCtx(benchChatBody)
			for pb.Next() {
				proxyOnce(s, ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Errorf("status %d", ctx.Response.StatusCode())
					return
				}
			}
		})
	})
}

// measureLimited runs load and reports with ns/op the CPU per request of this process
// and, with rds, of Redis (added into cpu-µs/req) and the Redis round trips per 1,000
// requests.
func measureLimited(b *testing.B, s *Server, rds *redistest.Server, load func()) {
	before := s.rt.Load().lim.Stats()
	var cpu0 float64
	if rds != nil {
		cpu0 = rds.CPU(b)
	}
	self0 := processCPU(b)
	load()
	self := processCPU(b) - self0
	if rds != nil {
		st := s.rt.Load().lim.Stats()
		// Requests answered from prefetched units count too: b.N, not the checks.
		b.ReportMetric(1000*float64(st.RoundTrips-before.RoundTrips)/float64(b.N), "roundtrips/1000req")
		red := rds.CPU(b) - cpu0
		b.ReportMetric(red*1e6/float64(b.N), "redis-cpu-µs/req")
		self += red
	}
	b.ReportMetric(self*1e6/float64(b.N), "cpu-µs/req")
}

func BenchmarkLimitedParallelMemory(b *testing.B) {
	benchmarkLimitedParallel(b, "limiter: {store: memory}", nil)
}

// BenchmarkLimitedParallelRedis runs with the default prefetch: limits this far from
// their end are answered from units held ahead.
func BenchmarkLimitedParallelRedis(b *testing.B) {
	cfg, rds := redisLimiterYAML(b, "")
	benchmarkLimitedParallel(b, cfg, rds)
}

// BenchmarkLimitedParallelRedisPerCheck sends every check to Redis (prefetch off), as
// happens near a limit.
func BenchmarkLimitedParallelRedisPerCheck(b *testing.B) {
	cfg, rds := redisLimiterYAML(b, ", prefetch: 0s")
	benchmarkLimitedParallel(b, cfg, rds)
}

// redisLimiterYAML starts a redis-server and returns the limiter section that uses it,
// with extra (", key: value" pairs) added.
func redisLimiterYAML(b *testing.B, extra string) (string, *redistest.Server) {
	rds := redistest.Start(b)
	return `limiter: {store: redis, redis: {url: "` + rds.URL() + `"}` + extra + `}`, rds
}

// benchmarkServeParallel posts chat requests to addr from 64 goroutines over real
// connections, as a load generator would: with the gateway in between, it prices the
// whole server (connection handling, parsing, the proxy path) against the upstream
// alone.
func benchmarkServeParallel(b *testing.B, addr, model string) {
	body := bytes.Replace(benchChatBody, []byte(`"model":"chat"`), []byte(`"model":"`+model+`"`), 1)
	postParallel(b, addr, body, func(*fasthttp.Response) bool { return true })
}

// postParallel posts body to addr's chat completions from 64 goroutines over real
// connections until the benchmark ends; every answer must be a 200 that complete
// accepts.
func postParallel(b *testing.B, addr string, body []byte, complete func(*fasthttp.Response) bool) {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: 64}
	b.SetParallelism(64 / max(1, goruntime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://" + addr + "/v1/chat/completions")
		req.Header.SetContentType("application/json")
		req.SetBody(body)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 || !complete(resp) {
				b.Errorf("status %d, %v: %s", resp.StatusCode(), err, resp.Body())
				return
			}
		}
	})
}

// BenchmarkServeDirectParallel is the upstream alone, the baseline of
// BenchmarkServeChatParallel.
func BenchmarkServeDirectParallel(b *testing.B) {
	benchmarkServeParallel(b, startStaticUpstream(b), "up-model")
}

// BenchmarkServeChatParallel is the gateway's whole server under 64 concurrent clients.
func BenchmarkServeChatParallel(b *testing.B) {
	g := startGateway(b, benchConfig(startStaticUpstream(b)))
	benchmarkServeParallel(b, g.Addr(), "chat")
}

// benchmarkServeLimitedParallel is BenchmarkServeChatParallel with the two limits of
// limitedBenchConfig in the store limiterYAML names: the throughput comparison
// of the stores with each request paying for its client and upstream connections, as
// it does in production.
func benchmarkServeLimitedParallel(b *testing.B, limiterYAML string, rds *redistest.Server) {
	cfg := strings.Replace(limitedBenchConfig(startStaticUpstream(b)), "logging:", limiterYAML+"\nlogging:", 1)
	g := startGateway(b, cfg)
	measureLimited(b, g.Server, rds, func() { benchmarkServeParallel(b, g.Addr(), "chat") })
}

func BenchmarkServeLimitedParallelMemory(b *testing.B) {
	benchmarkServeLimitedParallel(b, "limiter: {store: memory}", nil)
}

func BenchmarkServeLimitedParallelRedis(b *testing.B) {
	cfg, rds := redisLimiterYAML(b, "")
	benchmarkServeLimitedParallel(b, cfg, rds)
}

func BenchmarkServeLimitedParallelRedisPerCheck(b *testing.B) {
	cfg, rds := redisLimiterYAML(b, ", prefetch: 0s")
	benchmarkServeLimitedParallel(b, cfg, rds)
}

// BenchmarkServeStreamParallel is BenchmarkServeChatParallel for streams: the whole
// server, hijack and relay included, under 64 concurrent clients over real
// connections, each stream 35 events from an upstream that sends them at once.
func BenchmarkServeStreamParallel(b *testing.B) {
	g := startGateway(b, benchConfig(startStaticSSEUpstream(b)))
	body := []byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	postParallel(b, g.Addr(), body, func(resp *fasthttp.Response) bool {
		return bytes.HasSuffix(resp.Body(), strDoneEvent)
	})
}
