// Package gateway is Tollgate's HTTP face: routes, request parsing, auth, the request
// pipeline, OpenAI-style errors, config loading and hot reload, and the admin listener.
package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tollgate/tollgate/internal/connwrap"
	"github.com/tollgate/tollgate/internal/deadline"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/router"
	"github.com/tollgate/tollgate/tracing"
)

// Server runs the API and admin listeners over the live runtime.
type Server struct {
	path string
	log  *slog.Logger
	// level is the level of the logger New built from logging:, set again by every
	// reload; nil when the logger came in through Options.
	level *slog.LevelVar
	// boot is the server:, limiter: and logging: sections of the config the server
	// started with: the ones its listeners, server timeouts, log format and the
	// router's Redis client were built from, which each reload is compared with. The
	// rest (keys, endpoints, the line index) is left to the running runtime, so that
	// a reload frees the config it replaces.
	boot *Config
	rt   atomic.Pointer[runtime]
	// cert is the API listener's certificate when server.tls is set at start; every
	// reload replaces it with what the files hold then.
	cert atomic.Pointer[tls.Certificate]
	// certFiles are the files cert was last read from: those of the boot config or of
	// the last config installed that had server.tls. A reload that turns TLS off
	// leaves TLS on until a restart, and the files served are followed still. Under
	// reloadMu past New.
	certFiles ServerTLS

	api   *fasthttp.Server
	admin *fasthttp.Server
	apiLn net.Listener
	admLn net.Listener
	// apiNew and admNew hold each listener's connections that have not read a byte
	// of a request yet, ended when the listener drains.
	apiNew, admNew deadline.Pending

	reg    *prometheus.Registry
	m      *metrics.Metrics
	router *router.Router
	// gaugesMu serializes syncRouterGauges; routerSeen, the router change count the
	// gauges last reflected, is read and written under it.
	gaugesMu   sync.Mutex
	routerSeen uint64
	exporter   sdktrace.SpanExporter
	// failTracer, when set, is the error every tracer build returns: tests use it
	// to fail a reload after its config was accepted, which no valid config does.
	failTracer atomic.Pointer[error]
	// expirySkew moves the clock client keys expire by (keyClock), in nanoseconds:
	// tests use it to pass a key's expires_at without waiting for it.
	expirySkew atomic.Int64
	// keyWriteWait, when set, stands for keyWriteWait (admin_keys.go), in
	// nanoseconds: tests use it to drop a stalled listing without waiting for it.
	keyWriteWait atomic.Int64
	// pools keeps target health and load across reloads.
	pools *providers.Pools
	// routerRedis is the router's client, closed at shutdown.
	routerRedis interface{ Close() error }
	metrics     fasthttp.RequestHandler
	accessLog   atomic.Bool
	draining    atomic.Bool
	// checked is set once the backends served have had the first round of their
	// active health checks; /readyz fails until then.
	checked atomic.Bool
	// hijacked counts streams written on hijacked connections, and the connections
	// they hand back to fasthttp until their loop ends, which fasthttp's shutdown
	// does not wait for (stream.go).
	hijacked atomic.Int64
	// afterStream holds the connections that wait for their next request after a
	// stream (awaitNext), closed when the server drains.
	afterStreamMu sync.Mutex
	afterStream   map[net.Conn]struct{}
	// streaming holds the connections of the streams running, cut when the
	// shutdown grace runs out; under afterStreamMu.
	streaming map[net.Conn]struct{}
	// handling counts the requests inside the API handler, which fasthttp's shutdown
	// stops waiting for when the grace runs out.
	handling atomic.Int64
	// bodyBytes is the capacity of the request body buffers held over 64 KiB, all
	// requests and configs together (holdBody), and answerBytes that of the upstream
	// answers held whole (HoldAnswer), bounded together by server.max_buffered_bytes
	// (buffered).
	bodyBytes, answerBytes atomic.Int64
	// waits lists the client watches running (clientWatch: requests waiting in a
	// backend's queue, for an upstream's answer, out a retry's pause), for cutWaits
	// to end, in shards so that requests on many cores do not queue on one lock.
	waits [waitShards]waitList
	// cut is set once shutdown_grace has run out and the shutdown cuts what is still
	// open (cutOpen): the streams' writes and the waits of the requests still in the
	// handler fail then through the gateway's doing, not the client's.
	cut      atomic.Bool
	reloadMu sync.Mutex
	// lastHash is the SHA-256 of the file content the running config was parsed from.
	lastHash [sha256.Size]byte
	// closing counts retired runtimes closing in the background (runtime.closing).
	closing atomic.Int64
	// limiters are the limiters of the configs installed, kept while a runtime uses
	// them, for a shutdown whose grace runs out to close; under reloadMu past New.
	limiters []liveLimiter
	// reloadFailing is set while the last reload failed; under reloadMu.
	reloadFailing bool
	// tlsSums are the SHA-256 of the backends' tls files (backendTLSSums) the running
	// config was built from, by path; under reloadMu, replaced and never written.
	tlsSums map[string][sha256.Size]byte
	// failedTLS are the tls files (Config.tlsFiles) of the config whose reload failed
	// last, nil while the last reload succeeded; under reloadMu.
	failedTLS []string
	// reloaded is signalled after each reload, for the file watch to follow the paths
	// of the files the running config reads (server.tls, key files, backend tls
	// files) and, after a failure, the tls files of the config that failed.
	reloaded chan struct{}
	// revokes are the client keys revoked at run time (key_revoke.go).
	revokes *revocations
}

// Options adjust a Server beyond its config file.
type Options struct {
	// Logger receives the gateway's logs; nil builds one from logging: in the config.
	Logger *slog.Logger
	// LogOutput is where the logger built from logging: writes; nil is os.Stderr.
	// cmd/tollgate passes a logq.Queue in front of os.Stderr.
	LogOutput io.Writer
	// SpanExporter, when set, receives the spans in place of tracing.exporter.
	SpanExporter sdktrace.SpanExporter
}

// New loads the config at path and builds the gateway without listening yet.
func New(path string, opt Options) (*Server, error) {
	cfg, hash, err := readConfig(path, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	boot := &Config{Server: cfg.Server, Limiter: cfg.Limiter, Logging: cfg.Logging}
	s := &Server{path: path, log: opt.Logger, boot: boot, lastHash: hash, reg: prometheus.NewRegistry(),
		reloaded: make(chan struct{}, 1)}
	cert, err := cfg.Server.TLS.load()
	if err != nil {
		return nil, errors.New("server.tls: " + err.Error())
	}
	s.cert.Store(cert)
	if cert != nil {
		s.certFiles = cfg.Server.TLS
	}
	if s.log == nil {
		s.level = new(slog.LevelVar)
		out := opt.LogOutput
		if out == nil {
			out = os.Stderr
		}
		s.log = newLogger(cfg.Logging, out, s.level)
	}
	log := s.log
	s.warnAbsentKeyFiles(cfg)
	s.m = metrics.New(s.reg)
	if q, ok := opt.LogOutput.(lineQueue); ok && opt.Logger == nil {
		s.m.WatchLogDrops(q.Dropped)
	}
	s.m.WatchBackends(s.backendLoad)
	s.m.WatchBodies(s.bodyLoad)
	s.metrics = metrics.Handler(s.reg)
	ropts := router.Options{Logger: log}
	if cfg.Limiter.Store == "redis" {
		// With a shared limiter store the replicas share canary decisions too; the
		// client is fixed at start (a reload cannot move the router to another Redis).
		rc, err := cfg.Limiter.Redis.Client(time.Second)
		if err != nil {
			return nil, err
		}
		ropts.Redis = rc
		s.routerRedis = rc
	}
	s.router = router.New(ropts)
	s.exporter = opt.SpanExporter
	tr, err := s.newTracing(cfg)
	if err != nil {
		return nil, err
	}
	lim, err := limiter.New(cfg.Limiter, log)
	if err != nil {
		_ = tr.Shutdown(context.Background())
		return nil, err
	}
	s.pools = providers.NewPools()
	s.tlsSums = backendTLSSums(cfg)
	rt, err := buildRuntime(cfg, log, s.m, tr, lim, s.pools)
	if err != nil {
		_ = tr.Shutdown(context.Background())
		_ = lim.Close()
		return nil, inFile(cfg.path, err)
	}
	rt.trRef = tracerRef(tr, log, s.watchTracer(tr)).hold()
	rt.limRef = limiterRef(lim, log, s.watchLimiter(lim)).hold()
	if err := s.attachCacheRedis(rt, nil); err != nil {
		rt.close()
		return nil, err
	}
	if s.revokes, err = newRevocations(cfg, log, s.m); err != nil {
		rt.close()
		return nil, err
	}
	// The revocations are read before the first request is served; a Redis that
	// does not answer holds up the start for revokeTimeout at most, its revocations
	// applied once it answers.
	if err := s.revokes.poll(context.Background()); err != nil {
		s.revokes.noteFailure(err)
	}
	s.install(rt)
	// Route as the other replicas do from the first request: a canary the cluster
	// rolled back stays out.
	if err := s.router.Sync(context.Background()); err != nil {
		s.log.Warn("canary state not read from Redis; routing by the config until it answers", "error", err.Error())
	}
	s.api = &fasthttp.Server{
		Handler: s.serveAPI,
		Name:    "tollgate",
		// The handler reads the body as it arrives (readBody); fasthttp reads
		// up to 8 KiB of it first, which this bounds as well.
		StreamRequestBody:  true,
		MaxRequestBodySize: readLimit(rt.maxBody),
		HeaderReceived:     s.headerReceived,
		ConnState:          s.connState,
		// A multipart body is a body like any other to the gateway: fasthttp
		// would parse one whole before the handler runs, into memory up to 16
		// MiB and files past that, whatever max_body_bytes says.
		DisablePreParseMultipartForm:  true,
		ReadTimeout:                   cfg.Server.ReadTimeout,
		IdleTimeout:                   cfg.Server.IdleTimeout,
		CloseOnShutdown:               true,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 false,
		DisableHeaderNamesNormalizing: false,
		ReduceMemoryUsage:             false,
		// The handler reads the clock itself; fasthttp's own reading per request
		// would go unused.
		LazyRequestTime: true,
		ErrorHandler:    s.serveParseError,
		ExpectHandler:   s.expectContinue,
		// Streams hijack their connection and give it back with ServeConn.
		KeepHijackedConns: true,
		ReadBufferSize:    readBufferSize,
		Logger:            fasthttpLogger{log},
	}
	s.admin = &fasthttp.Server{
		Handler: s.serveAdmin, Name: "tollgate-admin", NoDefaultServerHeader: true, CloseOnShutdown: true,
		ReadTimeout: cfg.Server.ReadTimeout, IdleTimeout: cfg.Server.IdleTimeout,
		MaxRequestBodySize: adminMaxBody, ReadBufferSize: readBufferSize,
		ErrorHandler: serveAdminParseError, ExpectHandler: expectAdmin,
		Logger: fasthttpLogger{log},
	}
	return s, nil
}

// readBufferSize is the API server's read buffer, which a request's header block must
// fit in: 8 KiB holds the largest request headers clients send (long bearer tokens,
// cookies) while keeping each of thousands of idle or streaming connections small.
const readBufferSize = 8 << 10

// readLimit is how much of a body the gateway reads and drops to answer a request
// without it (a body over max_body_bytes, a missing key, a wrong path) and keep the
// connection: above max_body_bytes, so that a moderately oversized body gets its 413
// on a connection that stays open, and a client that writes its whole body before it
// reads (Python's requests) reads it however slow its upload, within read_timeout. A
// body announced over it is refused from its headers (headerReceived), the connection
// then closed, lingering. It saturates: from max_body_bytes 2^62 the sum would wrap
// negative, and fasthttp, whose MaxRequestBodySize it is too, would then apply its own
// 4 MiB default. The ceiling leaves fasthttp room for its own +1 and sums.
func readLimit(maxBody int) int {
	const ceiling = int(^uint(0) >> 2)
	if maxBody >= (ceiling-1<<20)/2 {
		return ceiling
	}
	return 2*maxBody + 1<<20
}

// headerReceived (fasthttp.Server's HeaderReceived) gives a request whose
// Content-Length is over readLimit the `Expect: 100-continue` it may not carry, so
// that it is answered from its headers as one sent with it is (expectContinue, which
// refuses a Content-Length over max_body_bytes with the body unread): with the body
// read as a stream, fasthttp reads up to 8 KiB of it before the handler runs, whatever
// its length, and a client that announced a body it will not send would wait for
// read_timeout and a 408 rather than get its 413 at once. (An HTTP/1.0 request takes
// no expectation: its handler refuses it after those 8 KiB.)
//
// It also notes the request's arrival on its connection (arrival), for an answer the
// gateway gives when fasthttp has reset the header, and counts it (requestNumber).
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	rt := s.rt.Load()
	if rt != nil && h.ContentLength() > readLimit(rt.maxBody) {
		h.SetBytesKV(hdrExpect, str100Continue)
	}
	ctx := ctxOf(h)
	if ac, ok := connwrap.Under[*arrivalConn](ctx.Conn()); ok {
		ac.a.note(ctx, rt)
		ac.requests++
	}
	return fasthttp.RequestConfig{}
}

// arrival is what the gateway keeps of a request's header from its arrival
// (headerReceived) until the connection's next request begins (connState): when, the
// client's own request ID, the client's address, whether it is a Messages API call.
// fasthttp reads up to 8 KiB of a body before the handler runs, and when that fails
// (the body stalls past read_timeout, or the client's close cuts it short of its
// Content-Length) it resets the header and only then calls serveParseError: without
// this the answer and its access log line would get a new request ID, the proxy's
// address in place of the client X-Forwarded-For names behind server.trusted_proxies,
// OpenAI's error shape in place of the Messages API's, and a latency counted from the
// error, not from the request (ALB, Envoy and nginx with proxy_request_buffering off
// pass bodies on as they come). The connection's serving goroutine alone reads and
// writes it.
type arrival struct {
	// set is whether the rest holds the connection's current request.
	set          bool
	idLen, ipLen int
	at           time.Time
	// id is the client's X-Request-Id when it is one the gateway keeps
	// (appendRequestID); idLen 0 is none.
	id [maxRequestID]byte
	ip [16]byte
	// anthropic is whether the request's target names the Messages API (or is a model
	// listing an Anthropic SDK asked for), whose error shape its answer takes when the
	// request cannot be read on: fasthttp fails its URI (a Host that is no host) or
	// its body, neither error saying the path, the second after resetting the header.
	anthropic bool
}

// note keeps what ctx's request header says now, under rt's trusted proxies.
func (a *arrival) note(ctx *fasthttp.RequestCtx, rt *runtime) {
	a.at = time.Now()
	a.idLen = 0
	if id := ctx.Request.Header.PeekBytes(hdrRequestID); saneRequestID(id) {
		a.idLen = copy(a.id[:], id)
	}
	var buf [16]byte
	a.ipLen = copy(a.ip[:], requestClient(ctx, rt, &buf))
	route := targetRoute(ctx.Request.Header.RequestURI())
	a.anthropic = route == routeMessages || route == routeCountTokens ||
		(route == routeModels || route == routeModel) && anthropicClient(&ctx.Request.Header)
	a.set = true
}

// targetPath is the path of target, a request line's target as it came (before
// fasthttp parses it): up to its query, and in the absolute form
// (http://host/path) after its scheme and authority; nil when it has none.
func targetPath(target []byte) []byte {
	if len(target) > 0 && target[0] != '/' {
		_, rest, ok := bytes.Cut(target, strSchemeEnd)
		if !ok {
			return nil
		}
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			return nil
		}
		target = rest[i:]
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	return target
}

var strSchemeEnd = []byte("://")

// targetRoute is the route of target, a request line's target as it came, by its
// path as the handler routes it (ctx.Path(), decoded and cleaned): a path with a
// percent-escape, a fragment, or an empty or dot segment (/v1/%6Dessages,
// /v1//messages) is parsed as fasthttp parses it first; any other is the same either
// way, and is compared as it came.
func targetRoute(target []byte) int {
	path := targetPath(target)
	// A route's own path, every client's, is clean: it costs no second look.
	if route := ownRoute(path); ownRoutes[route] == string(path) || cleanPath(path) {
		return route
	}
	u := fasthttp.AcquireURI()
	route := routeNone
	// With a host, as the request's URI is parsed: a path that begins with "//"
	// is not taken for an authority.
	if u.Parse(strSomeHost, path) == nil {
		route = ownRoute(u.Path())
	}
	fasthttp.ReleaseURI(u)
	return route
}

var strSomeHost = []byte("host")

// cleanPath reports whether path has nothing that fasthttp's parse would decode or
// clean away: no percent-escape, no fragment, no empty or dot segment.
func cleanPath(path []byte) bool {
	for i, c := range path {
		switch c {
		case '%', '#':
			return false
		case '/':
			if i+1 < len(path) && (path[i+1] == '/' || path[i+1] == '.') {
				return false
			}
		}
	}
	return true
}

// appendID appends the request's ID to dst: the client's own, or a new one.
func (a *arrival) appendID(dst []byte) []byte {
	if a.idLen > 0 {
		return append(dst, a.id[:a.idLen]...)
	}
	return appendNewRequestID(dst)
}

// client is the client's address.
func (a *arrival) client() []byte { return a.ip[:a.ipLen] }

// arrivalConn is an API connection with the arrival of the request it carries. It
// is the connection under the deadline.Conn (and the TLS connection over that):
// fasthttp's ConnState hook and the handler find it under whatever wraps it then.
type arrivalConn struct {
	net.Conn
	a arrival
	// requests counts the request headers read on the connection, through every
	// fasthttp loop that serves it (a stream's connection is served anew after it).
	requests int
}

// NetConn returns the connection c wraps, for the hang-up watch to find its socket.
func (c *arrivalConn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts the sending side of the connection c wraps, which a lingering
// close (deadline.Conn's Linger) asks for.
func (c *arrivalConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// arrivalListener wraps each connection it accepts in an arrivalConn.
type arrivalListener struct{ net.Listener }

func (l arrivalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &arrivalConn{Conn: c}, nil
}

// arrivalOf is the arrival of the request c carries now; nil when c has none (a
// request whose header could not be read, a connection not the API listener's).
func arrivalOf(c net.Conn) *arrival {
	if ac, ok := connwrap.Under[*arrivalConn](c); ok && ac.a.set {
		return &ac.a
	}
	return nil
}

// connState (fasthttp.Server's ConnState) drops the arrival of a connection's last
// request as the first byte of its next one comes, before its header is read: a
// request whose header cannot be read is not taken for the one before it.
func (s *Server) connState(c net.Conn, st fasthttp.ConnState) {
	if st != fasthttp.StateActive {
		return
	}
	if ac, ok := connwrap.Under[*arrivalConn](c); ok {
		ac.a.set = false
	}
}

// ctxOf is the RequestCtx whose request header h is. fasthttp's server calls
// HeaderReceived with nothing but its RequestCtx's own header (&ctx.Request.Header),
// and gives the hook no other way to the request's connection
// (TestHeaderReceivedHeaderIsCtxs pins it for the fasthttp built with).
func ctxOf(h *fasthttp.RequestHeader) *fasthttp.RequestCtx {
	return (*fasthttp.RequestCtx)(unsafe.Add(unsafe.Pointer(h), -ctxHeaderOffset))
}

// ctxHeaderOffset is where in a RequestCtx its request's header lies.
var ctxHeaderOffset = int(unsafe.Offsetof((*fasthttp.RequestCtx)(nil).Request) + unsafe.Offsetof((*fasthttp.Request)(nil).Header))

var (
	hdrExpect      = []byte(fasthttp.HeaderExpect)
	str100Continue = []byte("100-continue")
)

// Logger is the gateway's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

func (s *Server) install(rt *runtime) {
	if s.level != nil {
		s.level.Set(logLevel(rt.cfg.Logging.Level))
	}
	s.accessLog.Store(rt.cfg.Logging.AccessLog == nil || *rt.cfg.Logging.AccessLog)
	for _, name := range rt.cfg.backendNames() {
		if rt.cfg.Backends[name].TLS.InsecureSkipVerify {
			s.log.Warn(warnInsecureTLS, "backend", name)
		}
	}
	for _, b := range rt.backendList {
		b.Start(context.Background())
		// A raised max_concurrency admits the requests already waiting, those of
		// the replaced config included, rather than leaving them to its timeout.
		b.Activate()
	}
	s.router.Apply(rt.routing)
	s.syncRouterGauges(true)
	rt.closing = &s.closing
	s.limiters = slices.DeleteFunc(s.limiters, func(l liveLimiter) bool { return l.ref.users.Load() == 0 })
	if rt.lim != nil && !slices.ContainsFunc(s.limiters, func(l liveLimiter) bool { return l.lim == rt.lim }) {
		s.limiters = append(s.limiters, liveLimiter{rt.lim, rt.limRef})
	}
	carryCaches(s.rt.Load(), rt, s.m)
	carryUpstreamLogs(s.rt.Load(), rt)
	if s.revokes != nil {
		// Before the swap: no request meets a key of rt without its revocation.
		if orphans := s.revokes.attach(rt); len(orphans) > 0 {
			s.log.Info("key names revoked that auth.keys no longer has stay revoked until restored", "keys", orphans)
		}
	}
	if old := s.rt.Swap(rt); old != nil {
		old.retire()
	}
	s.noteKeyExpiries(rt)
}

// errURITooLong refuses a request line over the read buffer (RFC 9110 §15.5.15), as
// nginx does; errHeaderTooLarge is for header fields.
var errURITooLong = apiError{414, "invalid_request_error", "uri_too_long", "", "The request's URL is over 8 KiB."}

// serveParseError answers requests fasthttp could not read, in the error shape of the
// API their path names (routeUnread, or the arrival's for a header read), and closes the connection, lingering
// (closeLingering): fasthttp has read no more than its 8 KiB buffer of the request,
// and a client may still be sending the rest of it (a long header, the body after it,
// a request line it is still writing when its time runs out); closing over unread
// bytes sends a reset, which loses the answer to a client that writes its whole
// request before it reads (Python's requests, whose SDKs then send it again). A
// connection that sent no byte of a request gets no answer and is not counted: one
// idle past its wait for its first byte, or reset during it, reads as ended
// (deadline.Listener's FirstByte), and one whose TLS handshake failed carries nothing.
func (s *Server) serveParseError(ctx *fasthttp.RequestCtx, err error) {
	if tc, ok := ctx.Conn().(tlsConn); ok && !tc.ConnectionState().HandshakeComplete {
		return
	}
	e := unreadable(err)
	head, rest, quoted := quotedHead(err)
	if quoted {
		if _, small := errors.AsType[*fasthttp.ErrSmallBuffer](err); small && requestLineCut(ctx.Conn(), head, rest) {
			e = &errURITooLong
		}
		routeUnread(ctx, head)
	}
	closeLingering(ctx)
	r := s.ownRequest(ctx)
	if a := arrivalOf(ctx.Conn()); !quoted && a != nil && a.anthropic {
		// The header was read (headerReceived), then its URI or its body failed:
		// fasthttp's error quotes no header to route by.
		r.anthropicAPI = true
	}
	r.fail(ctx, e)
}

// quotedHead is the start of the header block fasthttp could not read that err quotes
// (its first 200 bytes, or all of a block under 400), and the rest of err's text after
// that quote; ok is false for an error not in reading a request's header, or without
// the quote (fasthttp's SecureErrorLogMessage).
func quotedHead(err error) (head, rest string, ok bool) {
	_, msg, ok := strings.Cut(err.Error(), "error when reading request headers: ")
	if !ok {
		return "", "", false
	}
	_, quoted, ok := strings.Cut(msg, "contents: ")
	if !ok {
		return "", "", false
	}
	first, qerr := strconv.QuotedPrefix(quoted)
	if qerr != nil {
		return "", "", false
	}
	head, qerr = strconv.Unquote(first)
	if qerr != nil {
		return "", "", false
	}
	return head, quoted[len(first):], true
}

// routeUnread sets on ctx the method and path of the request line that head, the
// quoted start of a header block fasthttp could not read, begins with: fasthttp resets
// the header before its error handler runs, and the answer is in the shape of the API
// the path names (Anthropic's on /v1/messages, whose SDKs read no other), the span
// named by its route. A request line cut at the quote's end (414) gives its path when a
// '?' ends the path inside the quote; one cut inside its path gives none.
func routeUnread(ctx *fasthttp.RequestCtx, head string) {
	method, target, ok := strings.Cut(strings.TrimLeft(head, "\r\n"), " ")
	if !ok || method == "" {
		return
	}
	// A target after more than one space (which fasthttp refuses), or in the
	// absolute form, has its path all the same.
	target = strings.TrimLeft(target, " ")
	if !strings.HasPrefix(target, "/") {
		if _, rest, ok := strings.Cut(target, "://"); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 && !strings.ContainsAny(rest[:i], " \r\n") {
				target = rest[i:]
			}
		}
	}
	end := strings.IndexAny(target, "? \r\n")
	if end <= 0 {
		return
	}
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(target[:end])
}

// lineFeeder is a connection that tells whether a line feed came in what it read
// last (deadline.Listener's Lines).
type lineFeeder interface {
	LineFeedIn(n, skip int) (found, known bool)
}

// requestLineCut reports whether the header block that fasthttp refused for filling
// the read buffer had not even ended its request line there, which is then 414
// rather than 431; head and rest are quotedHead's. fasthttp resets the header before
// the error handler runs and keeps the buffer to itself, but the buffer is the last
// readBufferSize bytes read from the connection c, which tells whether a line feed
// came in them, past the empty lines fasthttp skips ahead of a request line (those
// its error quotes at the buffer's start). Where c cannot tell (a request pipelined
// behind another in one read, or whose empty lines came in one read with its request
// line), the bytes quoted decide: the buffer's first and last 200. A line feed in the
// first shows that a line ended in the buffer, as does in the last a line feed, a
// character no URL has (a space, a quote) or a colon. Without the quote (fasthttp's
// SecureErrorLogMessage) it is 431.
func requestLineCut(c net.Conn, head, rest string) bool {
	line := strings.TrimLeft(head, "\r\n")
	if lf, ok := connwrap.Under[lineFeeder](c); ok {
		if found, known := lf.LineFeedIn(readBufferSize, len(head)-len(line)); known {
			return !found
		}
	}
	if strings.ContainsRune(line, '\n') {
		return false
	}
	tail, ok := strings.CutPrefix(rest, "...")
	if !ok {
		// The whole buffer was quoted: shorter than 400 bytes.
		return true
	}
	last, err := strconv.QuotedPrefix(tail)
	if err != nil {
		return false
	}
	end, err := strconv.Unquote(last)
	return err == nil && onlyURLBytes(end)
}

// onlyURLBytes reports whether s holds only characters a request-target may have
// (RFC 3986's unreserved, sub-delims, '/', '?', '@', '%'), but for ':', which is
// rare in one and ends every header field's name.
func onlyURLBytes(s string) bool {
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=/?@%[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Listen opens both listeners; Addr and AdminAddr are valid after it.
func (s *Server) Listen() error {
	cfg := s.rt.Load().cfg
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return err
	}
	adm, err := net.Listen("tcp", cfg.Server.AdminListen)
	if err != nil {
		ln.Close()
		return err
	}
	// Requests on the API listener move their connection's deadlines later twice
	// each; deadline.Listener makes that free. It also has a new connection wait
	// for its first byte as a kept-alive one waits for its next request, so that
	// read_timeout counts from that byte: fasthttp counts it from the accept on a
	// new connection, and answers one that sent nothing with a 408. It follows
	// the line feeds read too, for requestLineCut, and, on both listeners, each
	// request's header block, whose lines must end in CRLF (errBareLF). Under
	// it, each connection is an arrivalConn (the arrival of its request, for
	// serveParseError), and acceptRetry rides out the accept errors of a
	// resource short for a moment (the open-file limit).
	api := deadline.Listener{Listener: arrivalListener{newAcceptRetry(ln, "api", s.log)}, FirstByte: idleTimeout(s.api), Lines: true, Heads: true, Pending: &s.apiNew}
	s.apiLn = api
	s.admLn = deadline.Listener{Listener: newAcceptRetry(adm, "admin", s.log), FirstByte: idleTimeout(s.admin), Heads: true, Pending: &s.admNew}
	if s.cert.Load() != nil {
		api.PlainHTTP = plainHTTPAnswer
		s.apiLn = deadline.NewTLSListener(api, &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		})
	}
	return nil
}

// plainHTTPAnswer is the answer to a client that sends a plain HTTP request to the
// API listener under server.tls (deadline.Listener's PlainHTTP): 400 in the API's error
// shape, where it would otherwise read an empty reply.
var plainHTTPAnswer = func() []byte {
	body := `{"error":{"message":"This port serves HTTPS: send the request over TLS (an https:// URL).","type":"invalid_request_error","param":null,"code":"https_required"}}`
	return []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// idleTimeout is how long srv waits for a kept-alive connection's next request, as
// fasthttp has it: IdleTimeout, or ReadTimeout when unset.
func idleTimeout(srv *fasthttp.Server) time.Duration {
	if srv.IdleTimeout > 0 {
		return srv.IdleTimeout
	}
	return srv.ReadTimeout
}

// Addr is the API listener's address.
func (s *Server) Addr() string { return s.apiLn.Addr().String() }

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() string { return s.admLn.Addr().String() }

// Serve serves until ctx is cancelled, then drains in-flight requests and streams for up
// to server.shutdown_grace. SIGHUP-style reloads come through Reload; file changes are
// watched here.
func (s *Server) Serve(ctx context.Context) error {
	if s.apiLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 2)
	go func() { errc <- s.api.Serve(s.apiLn) }()
	go func() { errc <- s.admin.Serve(s.admLn) }()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watch(watchCtx)
	routerDone := make(chan struct{})
	go func() {
		defer close(routerDone)
		if err := s.router.Run(watchCtx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("router stopped", "error", err.Error())
		}
	}()
	revokesDone := make(chan struct{})
	go func() {
		defer close(revokesDone)
		s.revokes.run(watchCtx)
	}()
	defer func() {
		stopWatch()
		<-routerDone
		// After Run has given up the leader lease.
		if s.routerRedis != nil {
			_ = s.routerRedis.Close()
		}
		<-revokesDone
		s.revokes.close()
	}()
	if rt := s.rt.Load(); rt != nil && s.adminOpen(rt.cfg) {
		s.warnAdminOpen()
	}
	s.log.Info("serving", "listen", s.Addr(), "admin", s.AdminAddr(), "config", s.path)
	select {
	case err := <-errc:
		// A listener failed for good (acceptRetry rides out what passes): the
		// server stops, draining what is in flight as a stop asked for does.
		if err == nil {
			err = errors.New("listener closed")
		}
		s.log.Error("listener failed; draining and stopping", "error", err.Error())
		_ = s.shutdown()
		return err
	case <-ctx.Done():
	}
	return s.shutdown()
}

// Backoff of acceptRetry, as net/http's Serve has it.
const (
	acceptDelayMin = 5 * time.Millisecond
	acceptDelayMax = time.Second
)

// acceptWarnEvery bounds how often acceptRetry warns: at the open-file limit under a
// steady inflow, each connection that closes lets one more in, and every accept
// after it fails again.
const acceptWarnEvery = 10 * time.Second

// acceptRetry is a listener whose Accept rides out the errors of a resource short for
// a moment: it waits, from acceptDelayMin doubling to acceptDelayMax, and tries again,
// the connections meanwhile waiting in the listen queue (nginx logs them and goes on,
// net/http waits likewise). fasthttp's Serve takes every accept error but a timeout
// for the listener's end and returns it: at the open-file limit the process stopped,
// cutting every request and stream in flight.
type acceptRetry struct {
	net.Listener
	name   string
	log    *slog.Logger
	closed chan struct{}
	once   sync.Once
	// warned is when the last warning was logged, in Unix nanoseconds; unwarned
	// counts the episodes of retries begun since that logged none.
	warned, unwarned atomic.Int64
}

func newAcceptRetry(l net.Listener, name string, log *slog.Logger) *acceptRetry {
	return &acceptRetry{Listener: l, name: name, log: log, closed: make(chan struct{})}
}

// Accept waits for the next connection, waiting and retrying while accepting fails
// for a passing reason.
func (l *acceptRetry) Accept() (net.Conn, error) {
	var delay time.Duration
	var began time.Time
	warned := false
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if warned {
				l.log.Info("accepting connections again", "listener", l.name, "after", time.Since(began).Round(time.Millisecond).String())
			}
			return c, nil
		}
		if !acceptRetried(err) {
			return nil, err
		}
		if delay == 0 {
			delay, began = acceptDelayMin, time.Now()
			warned = l.warn(err, began, began)
		} else {
			delay = min(2*delay, acceptDelayMax)
			if !warned {
				// Begun within acceptWarnEvery of the last warning: warned once
				// that has passed, however long the episode lasts.
				warned = l.warn(err, began, time.Now())
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.closed:
			// The next Accept says the listener is closed.
			t.Stop()
		}
	}
}

// warn logs, at now, an episode of retries begun at began, unless a warning was
// logged within acceptWarnEvery, and reports whether it did. An episode not warned
// at its start counts among those not logged until it is.
func (l *acceptRetry) warn(err error, began, now time.Time) bool {
	first := now.Equal(began)
	if last := l.warned.Load(); last != 0 && now.UnixNano()-last < int64(acceptWarnEvery) {
		if first {
			l.unwarned.Add(1)
		}
		return false
	}
	l.warned.Store(now.UnixNano())
	notLogged := l.unwarned.Swap(0)
	if !first {
		notLogged-- // this one, counted when it began
	}
	l.log.Warn("accepting a connection failed; retrying, new connections wait in the listen queue meanwhile",
		"listener", l.name, "error", err.Error(), "failing_for", now.Sub(began).Round(time.Millisecond).String(),
		"episodes_not_logged", notLogged)
	return true
}

// Close closes the listener, ending a wait between retries. Only the first Close
// closes: a later one (shutdown's, after the listener ended under Serve) returns nil.
func (l *acceptRetry) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
	})
	return err
}

// acceptRetried reports whether an accept error is one that passes: the process or
// the system out of file descriptors (EMFILE, ENFILE) or of kernel memory (ENOBUFS,
// ENOMEM), or a connection reset while queued (ECONNABORTED, which Go retries itself
// on most systems).
func acceptRetried(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// adminOpen reports whether cfg leaves the admin API open to whoever reaches its
// listener: no server.admin_token, and a listener beyond loopback.
func (s *Server) adminOpen(cfg *Config) bool {
	return cfg.Server.AdminToken == "" && s.admLn != nil && !loopback(s.admLn.Addr())
}

func (s *Server) warnAdminOpen() {
	s.log.Warn(warnAdminOpen, "admin", s.AdminAddr())
}

func (s *Server) shutdown() error {
	rt := s.rt.Load()
	grace := rt.cfg.Server.ShutdownGrace
	s.log.Info("shutting down", "grace", grace.String())
	s.draining.Store(true)
	s.closeAfterStream()
	// New connections that have sent nothing carry no request: fasthttp would wait
	// up to 5 s for each.
	s.apiNew.End()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.api.ShutdownWithContext(ctx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		// Closing the listener failed (it ended under Serve): the connections
		// drained all the same. Only the grace's end is its expiry.
		s.log.Debug("closing the API listener", "error", err.Error())
		err = nil
	}
	if err == nil {
		err = s.waitOpen(ctx)
	}
	if err != nil {
		s.log.Warn("shutdown grace expired with requests still open", "error", err.Error())
		// The process is about to end them anyway: cut them now, so that they end
		// as requests do (their slots, limits and Redis leases given back, their
		// spans ended, their access log lines written) before the runtime retires
		// below and closes the limiter once the last of them is done. The bound
		// holds with an upstream that never answers: its request is aborted.
		s.cutOpen()
		cctx, ccancel := context.WithTimeout(context.Background(), cutWait)
		_ = s.waitOpen(cctx)
		ccancel()
	}
	// The admin listener answers probes and scrapes until here.
	s.admNew.End()
	_ = s.admin.ShutdownWithContext(ctx)
	// Under reloadMu: a reload under way finishes (and is retired here) or sees the
	// server gone, rather than installing a config after Serve has returned.
	s.reloadMu.Lock()
	old := s.rt.Swap(nil)
	lims := s.limiters
	s.limiters = nil
	s.reloadMu.Unlock()
	if old != nil {
		old.retireNow()
		if err != nil && old.tr != nil {
			// Requests still open keep the runtime, and with it the tracer, from
			// closing before the process exits: export what the finished ones left
			// queued now.
			fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = old.tr.ForceFlush(fctx)
			fcancel()
		}
	}
	if err != nil {
		// Requests still open keep their limiters from closing too, and a limiter
		// renews the Redis concurrency leases of its requests until it closes: at
		// exit those would stay taken for concurrency_lease, their keys refused on
		// every other replica. Closed now, a limiter gives them back, whether their
		// request is a stream the cut has not ended yet or an answer still awaited;
		// the requests, ending later, settle on it harmlessly.
		for _, l := range lims {
			if l.ref.users.Load() > 0 {
				if cerr := l.lim.Close(); cerr != nil {
					s.log.Warn("limiter close", "error", cerr.Error())
				}
			}
		}
	}
	// Configs retired by reloads close in the background, their tracers exporting
	// the spans of the requests that ended on them: the process waits for that too,
	// as long as a tracer's shutdown may take.
	for t0 := time.Now(); s.closing.Load() > 0 && time.Since(t0) < 6*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// liveLimiter is a limiter the server installed, with the count of the runtimes using
// it.
type liveLimiter struct {
	lim *limiter.Limiter
	ref *sharedRef
}

// cutWait bounds how long the shutdown waits for what cutOpen cut to end.
const cutWait = 2 * time.Second

// cutOpen cuts what is still open when shutdown_grace runs out. A stream's client
// has had its answer's header: its connection closes (cutStreams). A request still in
// the handler has had nothing yet: the wait it is in (a backend's queue, an upstream
// that has not answered or holds a stream's header, a retry's pause) ends as for a
// client that hung up (cutWaits), its upstream request aborted, and its client is
// answered 503 shutting_down (cutOff). One about to go upstream goes nowhere.
func (s *Server) cutOpen() {
	s.cut.Store(true)
	s.cutWaits()
	s.cutStreams()
	s.closeAfterStream()
}

// waitOpen waits for the requests in the handler and the streams on hijacked
// connections to end, or for ctx. fasthttp's shutdown counts neither a hijacked
// connection nor one still open past its grace.
func (s *Server) waitOpen(ctx context.Context) error {
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for s.hijacked.Load() > 0 || s.handling.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
	return nil
}

// Reload reads the config file again and swaps it in when it is valid; otherwise the
// running config stays and the error is returned (and logged, and counted).
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cur := s.rt.Load()
	if cur == nil {
		return errors.New("server is shutting down")
	}
	// hash is that of the bytes parsed, not of the file after the build: a save made
	// while this reload runs must still differ from lastHash, or the watcher would take
	// it for the running config and never load it.
	cfg, hash, err := readConfig(s.path, os.LookupEnv)
	if err != nil {
		s.failedTLS = nil
		if ce := (*ConfigError)(nil); errors.As(err, &ce) {
			s.failedTLS = ce.tlsFiles
		}
		return s.reloadFailed(err)
	}
	// Until it is installed, its tls files are followed as those of a config that
	// failed: a pair half written fails any step that reads it.
	s.failedTLS = cfg.tlsFiles()
	cert, err := cfg.Server.TLS.load()
	if err != nil {
		return s.reloadFailed(errors.New("server.tls: " + err.Error()))
	}
	if keys := s.restartOnly(cfg); len(keys) > 0 {
		s.log.Warn("config changes that take effect on restart", "keys", strings.Join(keys, ", "))
	}
	if bootRedis := s.boot.Limiter.Store == "redis"; bootRedis != (cfg.Limiter.Store == "redis") ||
		bootRedis && !reflect.DeepEqual(cfg.Limiter.Redis, s.boot.Limiter.Redis) {
		s.log.Warn("limiter.redis changed: limits use it now, but canary state and key revocations stay shared through the Redis the gateway started with until a restart")
	}
	// The listener's read limit is made from the value at start: a raise waits for
	// the restart, the value at start staying in force (the new one, checked under a
	// read limit made for the old, would enforce neither).
	bootMaxBody := s.boot.Server.MaxBodyBytes
	if cfg.Server.MaxBodyBytes > bootMaxBody {
		s.log.Warn("server.max_body_bytes can be raised above its value at start only by a restart", "in_force", int64(bootMaxBody))
	}
	// The tracer survives a reload that leaves tracing: alone, so its exporter
	// connection and sampler counters go on; so does the limiter, and with it the
	// memory store's buckets. newTr and newLim are set only when this reload built
	// them: on failure they, and never the running ones, are closed.
	var newTr *tracing.Tracing
	var newLim *limiter.Limiter
	tr, lim := cur.tr, cur.lim
	if !reflect.DeepEqual(cfg.Tracing, cur.cfg.Tracing) {
		if newTr, err = s.newTracing(cfg); err != nil {
			return s.reloadFailed(err)
		}
		tr = newTr
	}
	if !reflect.DeepEqual(cfg.Limiter, cur.cfg.Limiter) {
		if newLim, err = limiter.NewFrom(cfg.Limiter, s.log, cur.lim); err != nil {
			s.closeUnused(newTr, nil)
			return s.reloadFailed(err)
		}
		lim = newLim
	}
	// Hashed before the build reads them: a file changed in between reads as changed,
	// and is loaded again.
	tlsSums := backendTLSSums(cfg)
	rt, err := buildRuntime(cfg, s.log, s.m, tr, lim, s.pools)
	if err != nil {
		s.closeUnused(newTr, newLim)
		return s.reloadFailed(inFile(s.path, err))
	}
	rt.maxBody = min(rt.maxBody, int(bootMaxBody))
	if err := s.attachCacheRedis(rt, cur); err != nil {
		s.closeUnused(newTr, newLim)
		rt.close()
		return s.reloadFailed(err)
	}
	if s.rt.Load() == nil {
		// Shutdown took the running config while this one was built: it is not
		// served.
		s.closeUnused(newTr, newLim)
		rt.close()
		return errors.New("server is shutting down")
	}
	rt.trRef, rt.limRef = cur.trRef, cur.limRef
	// The metrics count a new tracer or limiter from here (no request used it yet)
	// until it is closed, and the one it replaces until that one is.
	if newTr != nil {
		rt.trRef = tracerRef(newTr, s.log, s.watchTracer(newTr))
	}
	if newLim != nil {
		rt.limRef = limiterRef(newLim, s.log, s.watchLimiter(newLim))
	}
	rt.trRef.hold()
	rt.limRef.hold()
	s.install(rt)
	s.warnAbsentKeyFiles(cfg)
	if cur.cfg.Server.AdminToken != "" && s.adminOpen(cfg) {
		// The token is read per call from the running config: the admin API is
		// open from now on.
		s.warnAdminOpen()
	}
	if cert != nil && s.cert.Load() != nil {
		// Connections from now on get the certificate the files hold now (a
		// renewal); turning TLS on or off waits for a restart, the files served
		// followed until then.
		s.serveCert(cert, cfg.Server.TLS)
	}
	s.lastHash, s.reloadFailing, s.tlsSums, s.failedTLS = hash, false, tlsSums, nil
	s.signalReloaded()
	s.m.ConfigReloaded(nil)
	s.log.Info("config reloaded", "config", s.path, "endpoints", len(cfg.Endpoints), "backends", len(cfg.Backends))
	return nil
}

// reloadFailed counts and logs a failed reload and returns its error.
func (s *Server) reloadFailed(err error) error {
	s.reloadFailing = true
	s.signalReloaded()
	s.m.ConfigReloaded(err)
	s.log.Error("config reload failed; keeping the running config", "config", s.path, "error", err.Error())
	return err
}

// signalReloaded tells the file watch that a reload ended (reloaded).
func (s *Server) signalReloaded() {
	select {
	case s.reloaded <- struct{}{}:
	default:
	}
}

// closeUnused closes a tracer and a limiter that a failed reload built; nil ones are
// skipped.
func (s *Server) closeUnused(tr *tracing.Tracing, lim *limiter.Limiter) {
	if tr != nil {
		_ = tr.Shutdown(context.Background())
	}
	if lim != nil {
		_ = lim.Close()
	}
}

// restartOnly lists the keys of cfg that differ from the config the server started
// with and that only a restart applies: the listeners, the servers' timeouts and the
// log format.
func (s *Server) restartOnly(cfg *Config) []string {
	var keys []string
	add := func(changed bool, key string) {
		if changed {
			keys = append(keys, key)
		}
	}
	b := s.boot
	add(cfg.Server.Listen != b.Server.Listen, "server.listen")
	add(cfg.Server.AdminListen != b.Server.AdminListen, "server.admin_listen")
	add(cfg.Server.ReadTimeout != b.Server.ReadTimeout, "server.read_timeout")
	add(cfg.Server.IdleTimeout != b.Server.IdleTimeout, "server.idle_timeout")
	add((cfg.Server.TLS == ServerTLS{}) != (b.Server.TLS == ServerTLS{}), "server.tls (turning TLS on or off)")
	// A logger handed in through Options follows neither key of logging:.
	add(s.level != nil && cfg.Logging.Format != b.Logging.Format, "logging.format")
	return keys
}

// settle signals fire 100 ms after the last of a burst of events: *timer is (re)armed
// by each one.
func settle(timer **time.Timer, fire chan struct{}) { settleFor(timer, fire, settleTime) }

// settleTime is how long the watch waits after a file event for more; inPlaceQuiet is
// how long a file written in place must stay unwritten before it is read: a writer
// that truncates and writes (curl -o, a shell's >, a config agent) may pause between
// writes, and the part written so far may itself be a valid config (one without its
// auth: section yet).
const (
	settleTime   = 100 * time.Millisecond
	inPlaceQuiet = time.Second
)

// lostPoll is how often the path of a watched directory that was removed or renamed
// away is looked at until a directory is there again: its parent may be gone too, or
// be one nothing else watches.
const lostPoll = 250 * time.Millisecond

func settleFor(timer **time.Timer, fire chan struct{}, d time.Duration) {
	if *timer != nil {
		(*timer).Reset(d)
		return
	}
	*timer = time.AfterFunc(d, func() {
		select {
		case fire <- struct{}{}:
		default:
		}
	})
}

// dirWatch counts the users of each watched directory: the config's files and the
// certificate's may share directories, and one of them moving on must not end the
// other's watch.
type dirWatch struct {
	w *fsnotify.Watcher
	n map[string]int
	// lost are the watched directories whose watch ended with them: removed (rm -rf
	// and rendered anew), or renamed away (mv conf conf.prev && mv conf.next conf),
	// which inotify would follow to the new name and fsnotify drops. They are
	// watched again by name once a directory is back there (rewatch).
	lost map[string]bool
}

func newDirWatch(w *fsnotify.Watcher) *dirWatch {
	return &dirWatch{w: w, n: map[string]int{}, lost: map[string]bool{}}
}

// add watches dir for one more user. A directory not there yet (created with the file
// it holds: a Vault agent rendering vault/secrets/, an init container) is taken for
// lost, polled until it is there (rewatch).
func (d *dirWatch) add(dir string) error {
	if d.n[dir] == 0 {
		if err := d.w.Add(dir); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			d.lost[dir] = true
		}
	}
	d.n[dir]++
	return nil
}

func (d *dirWatch) remove(dir string) {
	switch d.n[dir] {
	case 0:
		return
	case 1:
		delete(d.n, dir)
		delete(d.lost, dir)
		// The directory may be gone already (Kubernetes deletes an old version's).
		_ = d.w.Remove(dir)
		return
	}
	d.n[dir]--
}

// lose reports whether ev ended the watch of a watched directory: its removal, or its
// rename (reported on the directory's own path, which no file's changed matches).
// The directory is lost until rewatch finds one at its path again.
func (d *dirWatch) lose(ev fsnotify.Event) bool {
	if d.n[ev.Name] == 0 || !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
		return false
	}
	// A directory renamed away would still be watched where it went.
	_ = d.w.Remove(ev.Name)
	d.lost[ev.Name] = true
	return true
}

// rewatch watches the lost directories that are back again; all watches every
// directory anew, by name (after events were lost, one removed or replaced meanwhile
// raised none), and takes those not there for lost. It reports whether a lost
// directory is watched again.
func (d *dirWatch) rewatch(all bool) bool {
	back := false
	for dir := range d.n {
		if !all && !d.lost[dir] {
			continue
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			d.lost[dir] = true
			continue
		}
		// Adding a watched path again moves its watch to what the path names now.
		if err := d.w.Add(dir); err != nil {
			d.lost[dir] = true
			continue
		}
		back = back || d.lost[dir]
		delete(d.lost, dir)
	}
	return back
}

// fileWatch follows files the running config reads besides its own (server.tls's
// certificate and key, API key files, backends' tls files) as the config file is followed (configFiles):
// each file's directory, the links on its way and the directories they resolve to,
// so that a change is seen however it lands: a save, a rename over the file, or
// Kubernetes swapping a Secret's ..data link, every time.
type fileWatch []*configFiles

// set replaces fw's watches with those of paths; what says what the files are, in
// the warning logged when one cannot be watched. It runs again after every reload, so
// files a reload moved are followed. A path watched already keeps its watch, links
// followed so far included: one rebuilt from scratch would count on the watch of its
// directory by name, and a directory reached through Kubernetes' ..data link (a
// Secret's items under a sub-directory) is another one after each update.
func (fw *fileWatch) set(dw *dirWatch, paths []string, what string, log *slog.Logger) {
	old := *fw
	kept := make([]bool, len(old))
	var next fileWatch
	for _, p := range paths {
		if p == "" {
			// filepath.Abs would make it the working directory.
			continue
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if slices.ContainsFunc(next, func(f *configFiles) bool { return f.path == p }) {
			continue
		}
		if i := slices.IndexFunc(old, func(f *configFiles) bool { return f.path == p }); i >= 0 {
			kept[i] = true
			next = append(next, old[i])
			continue
		}
		cf, err := watchFiles(dw, p, log)
		if err != nil {
			log.Warn(what+" file watching unavailable: a changed file is read at the next reload", "error", err.Error())
			continue
		}
		next = append(next, cf)
	}
	// The old watches go once the new ones are in: a directory both name keeps
	// its watch throughout.
	for i, f := range old {
		if !kept[i] {
			f.unwatch(dw)
		}
	}
	*fw = next
}

// watchCert follows the files of the certificate served (certFiles) when the API
// listener serves TLS.
func (s *Server) watchCert(dw *dirWatch, cw *fileWatch) {
	var paths []string
	s.reloadMu.Lock()
	if f := s.certFiles; s.cert.Load() != nil && f.CertFile != "" {
		paths = []string{f.CertFile, f.KeyFile}
	}
	s.reloadMu.Unlock()
	cw.set(dw, paths, "certificate", s.log)
}

// watchKeys follows the running config's API key files.
func (s *Server) watchKeys(dw *dirWatch, kw *fileWatch) {
	var paths []string
	if rt := s.rt.Load(); rt != nil {
		for _, f := range rt.cfg.keyFiles {
			paths = append(paths, f.path)
		}
	}
	kw.set(dw, paths, "API key", s.log)
}

// watchBackendTLS follows the files of the running config's backend tls blocks: a
// client certificate renewed by cert-manager into a mounted Secret, a rotated CA.
func (s *Server) watchBackendTLS(dw *dirWatch, tw *fileWatch) {
	var paths []string
	if rt := s.rt.Load(); rt != nil {
		for _, b := range rt.cfg.Backends {
			paths = append(paths, backendTLSPaths(&b.TLS)...)
		}
	}
	tw.set(dw, paths, "backend TLS", s.log)
}

// watchFailedTLS follows the tls files of the config whose reload failed last
// (failedTLS): a pair it names that was half written (a renewal under new names, a
// move to another Secret) fails the reload until it completes, and completing it
// reloads, as completing the pair served does.
func (s *Server) watchFailedTLS(dw *dirWatch, fw *fileWatch) {
	s.reloadMu.Lock()
	paths := s.failedTLS
	s.reloadMu.Unlock()
	fw.set(dw, paths, "TLS", s.log)
}

// tlsFiles are the files of c's tls blocks, server's and backends'.
func (c *Config) tlsFiles() []string {
	paths := named(c.Server.TLS.CertFile, c.Server.TLS.KeyFile)
	for _, b := range c.Backends {
		paths = append(paths, backendTLSPaths(&b.TLS)...)
	}
	return paths
}

// backendTLSPaths are the files t names.
func backendTLSPaths(t *providers.TLSConfig) []string {
	return named(t.CAFile, t.CertFile, t.KeyFile)
}

// named is the paths given that are set.
func named(paths ...string) []string {
	return slices.DeleteFunc(paths, func(p string) bool { return p == "" })
}

// backendTLSSums hashes the files of cfg's backend tls blocks, by path; one that
// cannot be read is left out.
func backendTLSSums(cfg *Config) map[string][sha256.Size]byte {
	sums := map[string][sha256.Size]byte{}
	for _, b := range cfg.Backends {
		for _, p := range backendTLSPaths(&b.TLS) {
			if data, err := os.ReadFile(p); err == nil {
				sums[p] = sha256.Sum256(data)
			}
		}
	}
	return sums
}

// changedBackendTLS is the first file of the running config's backend tls blocks
// that holds other bytes than the running config was built from (sums), or "". A
// file that is not there counts as unchanged. The reload it leads to reads every tls
// file of the config, server.tls's too: while any of them does not load (a renewal
// half written: the certificate without its key yet, here or in another backend),
// the running config stays, and the write that completes it raises the next event.
func (s *Server) changedBackendTLS(sums map[string][sha256.Size]byte) string {
	rt := s.rt.Load()
	if rt == nil {
		return ""
	}
	names := rt.cfg.backendNames()
	changed := ""
find:
	for _, name := range names {
		t := rt.cfg.Backends[name].TLS
		for _, p := range backendTLSPaths(&t) {
			if data, err := os.ReadFile(p); err == nil && sha256.Sum256(data) != sums[p] {
				changed = p
				break find
			}
		}
	}
	if changed == "" {
		return ""
	}
	for _, name := range names {
		t := rt.cfg.Backends[name].TLS
		if _, err := t.ClientConfig(); err != nil {
			s.log.Warn("backend tls file changed but the config's tls files do not all load; the running ones stay", "file", changed, "backend", name, "error", err.Error())
			return ""
		}
	}
	if _, err := rt.cfg.Server.TLS.load(); err != nil {
		s.log.Warn("backend tls file changed but server.tls does not load; the running config stays", "file", changed, "error", err.Error())
		return ""
	}
	return changed
}

// changed reports whether an event on name may have changed one of the files.
func (fw fileWatch) changed(name string) bool {
	for _, f := range fw {
		if f.changed(name) {
			return true
		}
	}
	return false
}

// follow walks the files' links again, as configFiles.follow does.
func (fw fileWatch) follow(dw *dirWatch, log *slog.Logger) {
	for _, f := range fw {
		f.follow(dw, log)
	}
}

// changedKeyFile is the first API key file of the running config that holds other
// bytes than it was read with, or "". A file that is not there, or not a regular
// file, counts as unchanged: read now, its path would be taken for the key itself (as
// MLflow takes a value that names no file), so the reload waits for the file to be
// back.
func (s *Server) changedKeyFile() string {
	rt := s.rt.Load()
	if rt == nil {
		return ""
	}
	for _, f := range rt.cfg.keyFiles {
		if fi, err := os.Stat(f.path); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		if sha256.Sum256(b) != f.sum {
			return f.path
		}
	}
	return ""
}

// refreshCert serves what the files of the certificate served (certFiles) hold now,
// if that loads and differs; a pair that does not load (a renewal half written) leaves
// the served one. The whole chain is compared, not the leaf: a Secret update that adds
// the missing intermediate keeps the leaf, and so does a tls.crt written in place
// whose leaf landed before the rest.
func (s *Server) refreshCert() {
	// Under reloadMu, as a reload reads and stores them: a renewal read here cannot
	// replace the certificate of files a reload moved to.
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.rt.Load() == nil || s.cert.Load() == nil {
		return
	}
	files := s.certFiles
	cert, err := files.load()
	if err != nil || cert == nil {
		if err != nil {
			s.log.Warn("server.tls files changed but do not load; the served certificate stays",
				"cert_file", files.CertFile, "key_file", files.KeyFile, "error", err.Error())
		}
		return
	}
	s.serveCert(cert, files)
}

// serveCert serves cert, read from files, from the next connection, and logs the
// renewal when its chain differs from the one served; under reloadMu. A reload and
// the watch's refreshCert may each be first to read a renewal.
func (s *Server) serveCert(cert *tls.Certificate, files ServerTLS) {
	s.certFiles = files
	if cur := s.cert.Load(); cur != nil && slices.EqualFunc(cur.Certificate, cert.Certificate, bytes.Equal) {
		return
	}
	s.cert.Store(cert)
	s.log.Info("server certificate reloaded", "cert_file", files.CertFile)
}

// watch reloads when the config file changes. It watches directories, not the file:
// editors and Kubernetes replace the file (rename, symlink swap) rather than write it.
// When the path is a symlink into another directory (stow, Nix, /etc/alternatives, a
// config-management checkout), the directory of the file it resolves to is watched as
// well, or a save of that file would go unseen; the link is resolved again after every
// change and that watch follows it when it is repointed.
func (s *Server) watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("config file watching unavailable", "error", err.Error())
		return
	}
	defer w.Close()
	dw := newDirWatch(w)
	t, err := watchFiles(dw, s.path, s.log)
	if err != nil {
		s.log.Warn("config file watching unavailable", "error", err.Error())
		return
	}
	var certs, keys, upTLS, failTLS fileWatch
	s.watchCert(dw, &certs)
	s.watchKeys(dw, &keys)
	s.watchBackendTLS(dw, &upTLS)
	// Writers emit several events per save; settle for a moment, then compare content
	// so that a save without a change triggers nothing. A file written in place is
	// read only once it has not been written for inPlaceQuiet. Events on other files
	// (a log written next to the config) are dropped at once: they would wake this
	// loop for every line.
	var timer, certTimer, lostTimer *time.Timer
	var lastWrite time.Time
	fire, certFire, lostFire := make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 1)
	// recheck compares every file watched, as after the events of a change: when
	// events may have gone unseen (a directory's watch ended, the kernel's queue
	// overflowed) or a directory is watched again. The comparisons decide whether
	// anything reloads. While a directory is lost, its path is polled.
	recheck := func() {
		settle(&timer, fire)
		settle(&certTimer, certFire)
		if len(dw.lost) > 0 {
			settleFor(&lostTimer, lostFire, lostPoll)
		}
	}
	defer func() {
		for _, tm := range []*time.Timer{timer, certTimer, lostTimer} {
			if tm != nil {
				tm.Stop()
			}
		}
	}()
	// A change made before the watch began raised no event: compare once now, the
	// served certificate's files too (a renewal between New's read and this watch).
	fire <- struct{}{}
	certFire <- struct{}{}
	if len(dw.lost) > 0 {
		// A file's directory not there yet.
		settleFor(&lostTimer, lostFire, lostPoll)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if dw.lose(ev) {
				// The directory was removed or renamed: what is at its path now
				// (a rename over it may have brought it already) is compared, a
				// file gone failing the reload as a removed config file does.
				dw.rewatch(false)
				recheck()
				continue
			}
			if certs.changed(ev.Name) {
				// A renewed certificate (a save, or Kubernetes swapping a secret's
				// ..data link): served from the next connection, without a reload.
				settle(&certTimer, certFire)
			}
			// A changed API key file or backend tls file reloads the config, which
			// reads it, and so does a tls file of a config whose reload failed: it
			// is settled and compared as the config file is.
			if !t.changed(ev.Name) && !keys.changed(ev.Name) && !upTLS.changed(ev.Name) && !failTLS.changed(ev.Name) {
				continue
			}
			if ev.Has(fsnotify.Write) {
				lastWrite = time.Now()
			}
			settle(&timer, fire)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were dropped, a save's or a directory's removal among
				// them, maybe: every directory is watched anew and every file
				// compared.
				s.log.Warn("config watch: events lost (inotify queue overflow); re-reading the watched files", "error", err.Error())
				dw.rewatch(true)
				recheck()
				continue
			}
			s.log.Warn("config watch error", "error", err.Error())
		case <-lostFire:
			if dw.rewatch(false) {
				recheck()
			} else if len(dw.lost) > 0 {
				settleFor(&lostTimer, lostFire, lostPoll)
			}
		case <-certFire:
			certs.follow(dw, s.log)
			s.refreshCert()
			// A config saved while the pair was half written failed its reload
			// (server.tls did not load): now that the pair may load, it is read
			// again, as a completed backend pair reloads.
			s.reloadMu.Lock()
			failing := s.reloadFailing
			s.reloadMu.Unlock()
			if failing {
				settle(&timer, fire)
			}
		case <-s.reloaded:
			s.watchCert(dw, &certs)
			s.watchKeys(dw, &keys)
			s.watchBackendTLS(dw, &upTLS)
			s.watchFailedTLS(dw, &failTLS)
			if len(dw.lost) > 0 {
				settleFor(&lostTimer, lostFire, lostPoll)
			}
		case <-fire:
			if d := time.Since(lastWrite); d < inPlaceQuiet {
				// Written in place: the writer may not be done.
				settleFor(&timer, fire, inPlaceQuiet-d)
				continue
			}
			// Follow a repointed link before reading: a save of the new target made
			// from here on raises an event, and one made before is in this read.
			t.follow(dw, s.log)
			keys.follow(dw, s.log)
			upTLS.follow(dw, s.log)
			failTLS.follow(dw, s.log)
			h := fileHash(s.path)
			s.reloadMu.Lock()
			// After a failed reload the file is read again even if it holds the
			// running config: an operator reverting a broken save gets a successful
			// reload, and the failure's gauge and alert clear.
			same := bytes.Equal(h[:], s.lastHash[:]) && !s.reloadFailing
			tlsSums := s.tlsSums
			s.reloadMu.Unlock()
			if same {
				if f := s.changedKeyFile(); f != "" {
					s.log.Info("API key file changed; reloading", "file", f)
					same = false
				} else if f := s.changedBackendTLS(tlsSums); f != "" {
					// The reload builds the backends anew, reading the files: new
					// upstream connections present the renewed certificate, and
					// requests in flight finish on the connections they have.
					s.log.Info("backend tls file changed; reloading", "file", f)
					same = false
				}
			}
			if !same {
				_ = s.Reload()
			}
		}
	}
}

// configFiles are the files a change of which may change the config, when its path
// is a symlink or runs through one: each link on the way from the path to the file it
// resolves to (a link to a link, as /etc/alternatives has it, and a linked directory
// on any of their paths), and that file. The directories holding them
// are watched besides the config's own, by their resolved names, since that is how
// the watcher names their events.
type configFiles struct {
	// path is the file's absolute path; dir its directory, always watched, and real
	// its resolved name.
	path, dir, real string
	names           map[string]bool
	dirs            map[string]bool
}

// watchFiles watches the file at path (a config or a certificate file) through its
// directory and its links (follow).
func watchFiles(w *dirWatch, path string, log *slog.Logger) (*configFiles, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	dir := filepath.Dir(path)
	if err := w.add(dir); err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		real = dir
	}
	c := &configFiles{path: path, dir: dir, real: real}
	c.follow(w, log)
	return c, nil
}

// maxLinks bounds the links followed from the config's path, as the kernel bounds a
// path's.
const maxLinks = 40

// follow walks path's links again and moves the watches to the directories of the
// links and file it finds now: a link repointed anywhere in the chain is seen. A link
// that does not resolve (swapped at this very moment) ends the walk there; the change
// that follows raises the next event.
func (c *configFiles) follow(w *dirWatch, log *slog.Logger) {
	path := c.path
	names, dirs := make(map[string]bool), make(map[string]bool)
	add := func(p string) {
		d, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return
		}
		names[filepath.Join(d, filepath.Base(p))] = true
		if d != c.real {
			dirs[d] = true
		}
	}
	// A directory on the way may be a link too (a deploy's current -> releases/vN,
	// NixOS's /etc/static): repointing it changes the file as much as repointing the
	// file's own link does.
	dirLinks := func(p string) {
		cur := string(filepath.Separator)
		for _, part := range strings.Split(filepath.Dir(p), string(filepath.Separator)) {
			if part == "" {
				continue
			}
			cur = filepath.Join(cur, part)
			if fi, err := os.Lstat(cur); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				add(cur)
			}
		}
	}
	p := path
	for range maxLinks {
		add(p)
		dirLinks(p)
		target, err := os.Readlink(p)
		if err != nil {
			break // not a link, or gone
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		add(resolved)
	}
	for d := range c.dirs {
		if !dirs[d] {
			w.remove(d)
		}
	}
	for d := range dirs {
		if c.dirs[d] {
			continue
		}
		if err := w.add(d); err != nil {
			log.Warn("config file watching: a directory on the config's symlinks cannot be watched; changes there go unseen",
				"dir", d, "error", err.Error())
			delete(dirs, d)
		}
	}
	c.names, c.dirs = names, dirs
}

// unwatch drops the set's watches.
func (c *configFiles) unwatch(w *dirWatch) {
	for d := range c.dirs {
		w.remove(d)
	}
	w.remove(c.dir)
	c.dirs = nil
}

// changed reports whether an event on name may have changed the file: one in its own
// directory on the file or a "..data" swap (configEvent), or one on a link on its way
// or the file they resolve to.
func (c *configFiles) changed(name string) bool {
	if filepath.Dir(name) == c.dir {
		if configEvent(name, filepath.Base(c.path)) {
			return true
		}
		name = filepath.Join(c.real, filepath.Base(name))
	}
	return c.names[name]
}

// configEvent reports whether an event on name in the config's directory may have
// changed the config file base: the file itself, or Kubernetes' atomic writer swapping
// its "..data" symlink (a ConfigMap's files are links through it).
func configEvent(name, base string) bool {
	b := filepath.Base(name)
	return b == base || strings.HasPrefix(b, "..")
}

// readConfig reads and parses the config file at path, expanding ${VAR} through env,
// and returns the SHA-256 of the bytes it parsed: the watcher compares the file with it
// to tell whether the running config is still what the file holds.
func readConfig(path string, env func(string) (string, bool)) (*Config, [sha256.Size]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, err
	}
	cfg, err := ParseConfig(path, data, env)
	return cfg, sha256.Sum256(data), err
}

var strUpstreams = []byte("upstreams")

// firstChecksWait bounds how long /readyz waits for the first round of active health
// checks before answering that it is under way: under the 1s in which Kubernetes
// probes time out by default.
const firstChecksWait = 500 * time.Millisecond

func fileHash(path string) [sha256.Size]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(b)
}

// adminMaxBody bounds an admin request's body, which is read whole before the admin
// token is checked: far above any weights override or revocation reason.
const adminMaxBody = 64 << 10

// serveAdminParseError (the admin server's ErrorHandler) answers a request the admin
// listener could not read in the API's error shape, as the admin API's other errors
// are, instead of fasthttp's text/plain 400 for each: 413 for a body over
// adminMaxBody, 431 for headers over the read buffer, 408 for a read timeout, and
// the API listener's 400 for a header or trailer line ended by a bare LF.
func serveAdminParseError(ctx *fasthttp.RequestCtx, err error) {
	e := unreadable(err)
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = &errTooLarge
	case e == &errUnreadable && unreadBareLF(ctx):
		e = &errBareLF
	}
	writeError(&ctx.Response, e)
}

// unreadable is the answer to a request fasthttp could not read because of err: 431
// for headers over the read buffer, 408 for a read timeout, else 400 bad_request, with
// its own message for a header line ended by a bare LF (which its connection stopped
// reading at, deadline.ErrBareLF).
func unreadable(err error) *apiError {
	if errors.Is(err, deadline.ErrBareLF) {
		return &errBareLF
	}
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); ok {
		return &errHeaderTooLarge
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return &errReadTimeout
	}
	return &errUnreadable
}

// expectAdmin (the admin server's ExpectHandler) refuses from its headers a request
// with `Expect: 100-continue` whose body is over adminMaxBody, 413 in the API's error
// shape, rather than invite a body it would refuse (serveAdminParseError).
func expectAdmin(ctx *fasthttp.RequestCtx) int {
	if ctx.Request.Header.ContentLength() > adminMaxBody {
		closeLingering(ctx)
		writeError(&ctx.Response, &errTooLarge)
		return errTooLarge.status
	}
	return fasthttp.StatusContinue
}

func (s *Server) serveAdmin(ctx *fasthttp.RequestCtx) {
	// A client that does not take its answer loses the connection, instead of
	// holding it for as long as it likes.
	sendDeadline(ctx, time.Now(), 0)
	if bareLF(ctx) {
		closeLingering(ctx)
		writeError(&ctx.Response, &errBareLF)
		return
	}
	if unframed(&ctx.Request.Header) {
		closeLingering(ctx)
		writeError(&ctx.Response, &errTransferCoding)
		return
	}
	switch path := string(ctx.Path()); {
	case (path == "/healthz" || path == "/readyz" || path == "/metrics") && !ctx.IsGet() && !ctx.IsHead():
		// Probes and scrapes read: another method is no call of theirs.
		writeError(&ctx.Response, methodNotAllowed(ctx, strGetHead))
	case path == "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	case path == "/readyz":
		ctx.SetContentType("application/json")
		rt := s.rt.Load()
		if rt == nil || s.draining.Load() {
			ctx.SetStatusCode(503)
			ctx.SetBodyString(`{"status":"not ready"}`)
			return
		}
		if !s.checked.Load() {
			// Until every target has had its first check, an endpoint whose
			// targets are all down would read as healthy. The wait is short: a
			// probe right after start gets the checks' answer rather than a 503
			// that only says they are under way.
			if !rt.awaitChecks(firstChecksWait) {
				ctx.SetStatusCode(503)
				ctx.SetBodyString(`{"status":"not ready","reason":"the first health checks have not ended"}`)
				return
			}
			// Once ready, targets a reload adds count as healthy until their first
			// check, so that the reload does not take the gateway out of its load
			// balancer meanwhile.
			s.checked.Store(true)
		}
		// ?exclude=upstreams (Kubernetes' readiness probe): the gateway is ready to
		// answer whether or not its upstreams are; an endpoint without a healthy
		// target answers 503 no_healthy_upstream itself, and its calls still make the
		// trial that brings an ejected target back.
		if !bytes.Equal(ctx.QueryArgs().Peek("exclude"), strUpstreams) && !rt.ready(s.router) {
			ctx.SetStatusCode(503)
			ctx.SetBodyString(`{"status":"not ready","reason":"an endpoint has no healthy target"}`)
			return
		}
		ctx.SetBodyString(`{"status":"ready"}`)
	case path == "/metrics":
		s.syncRouterGauges(false)
		if rt := s.rt.Load(); rt != nil {
			s.m.SetLimiterDegraded(rt.lim.Degraded())
			var ups []metrics.TargetHealth
			for _, b := range rt.backendList {
				// Health and the attempt series are both in the backend's config order.
				ts := rt.attempts[b]
				for i, h := range b.Health() {
					if i < len(ts) {
						ups = append(ups, metrics.TargetHealth{Backend: b.Name, Target: ts[i].label, Up: h.Up})
					}
				}
			}
			s.m.SetBackendsUp(ups)
		}
		s.metrics(ctx)
	default:
		if bytes.HasPrefix(ctx.Path(), []byte("/admin/")) {
			s.serveOperator(ctx)
			return
		}
		writeError(&ctx.Response, &errNotFound)
	}
}

// bodyLoad is the load of the request bodies and answers held, for a scrape.
func (s *Server) bodyLoad() metrics.BodyLoad {
	l := metrics.BodyLoad{Held: s.bodyBytes.Load(), Answers: s.answerBytes.Load()}
	if rt := s.rt.Load(); rt != nil {
		l.Limit = rt.maxBuffered
	}
	return l
}

// backendLoad is the running config's backends' load, for a scrape: their targets'
// requests in flight and their queues.
func (s *Server) backendLoad() []metrics.BackendLoad {
	rt := s.rt.Load()
	if rt == nil {
		return nil
	}
	loads := make([]metrics.BackendLoad, 0, len(rt.backendList))
	var inFlight []int64
	for _, b := range rt.backendList {
		l := metrics.BackendLoad{Backend: b.Name}
		// The attempt series are in the backend's config order, as its targets are.
		ts := rt.attempts[b]
		inFlight = b.InFlight(inFlight[:0])
		for i, n := range inFlight {
			if i < len(ts) {
				l.Targets = append(l.Targets, metrics.TargetLoad{Target: ts[i].label, InFlight: n})
			}
		}
		if b.MaxConcurrency() > 0 {
			q := b.QueueStats()
			l.Queued, l.Waiting, l.Tenants = true, q.Waiting, q.Tenants
			for o, n := range q.Outcomes {
				l.Outcomes = append(l.Outcomes, metrics.OutcomeCount{Outcome: providers.QueueOutcome(o).String(), N: n})
			}
			l.WaitBounds, l.WaitCounts, l.WaitSum = providers.QueueWaitBounds[:], q.WaitCounts[:], q.WaitSum.Seconds()
		}
		loads = append(loads, l)
	}
	return loads
}

func (s *Server) newTracing(cfg *Config) (*tracing.Tracing, error) {
	if err := s.failTracer.Load(); err != nil {
		return nil, *err
	}
	if s.exporter != nil {
		return tracing.NewWithExporter(context.Background(), cfg.Tracing, s.log, s.exporter)
	}
	return tracing.New(context.Background(), cfg.Tracing, s.log)
}

// watchTracer makes the trace metrics count tr's statistics; retire, called once tr
// is shut down, keeps its final counts in the totals.
func (s *Server) watchTracer(tr *tracing.Tracing) (retire func()) {
	return s.m.WatchTracing(func() metrics.TraceStats {
		st := tr.Stats()
		return metrics.TraceStats{Kept: st.Kept, Discarded: st.Discarded, Evicted: st.Evicted,
			SpansDropped: st.SpansDropped, SpansQueueDropped: st.SpansQueueDropped, ExportFailures: st.ExportFailures,
			Pending: st.Pending}
	})
}

// watchLimiter makes the limiter metrics count lim's statistics; retire, called once
// lim is closed, keeps its final counts in the totals.
func (s *Server) watchLimiter(lim *limiter.Limiter) (retire func()) {
	return s.m.WatchLimiter(func() metrics.LimiterStats {
		st := lim.Stats()
		return metrics.LimiterStats{Redis: st.RedisAnswered, Prefetched: st.LocalChecks, RefusedLocally: st.RefusedLocally, Fallback: st.Fallbacks,
			Unavailable: st.Unavailable, RoundTrips: st.RoundTrips, DroppedSettlements: st.DroppedSettles}
	})
}

// syncRouterGauges copies route weights and canary states into their gauges when the
// router changed since the last copy (or always, when force is set).
func (s *Server) syncRouterGauges(force bool) {
	// One caller at a time: a scrape and an admin request that interleaved could
	// have the one that read the older weights write them last, and the gauges stay
	// stale until the next change.
	s.gaugesMu.Lock()
	defer s.gaugesMu.Unlock()
	n := s.router.Changes()
	if !force && s.routerSeen == n {
		return
	}
	s.routerSeen = n
	ws := s.router.Weights()
	mw := make([]metrics.RouteWeight, len(ws))
	for i, w := range ws {
		mw[i] = metrics.RouteWeight{Endpoint: w.Endpoint, Backend: w.Backend, Variant: w.Variant, Weight: w.Weight}
	}
	s.m.SetRouteWeights(mw)
	cs := s.router.CanaryStates()
	mc := make([]metrics.CanaryState, len(cs))
	for i, c := range cs {
		mc[i] = metrics.CanaryState{Endpoint: c.Endpoint, State: c.State.String()}
	}
	s.m.SetCanaryStates(mc)
}

type fasthttpLogger struct{ log *slog.Logger }

// Printf logs what fasthttp says about a connection at debug level. Its errors may quote
// the request's bytes (an Authorization header among them): the quote is left out.
// "error when serving connection %q<->%q: %v" becomes the addresses and the error.
func (l fasthttpLogger) Printf(format string, args ...any) {
	if !l.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if strings.HasPrefix(format, "error when serving connection ") && len(args) == 3 {
		l.log.Debug("http server", "local", fmt.Sprint(args[0]), "remote", fmt.Sprint(args[1]),
			"error", unquoted(fmt.Sprint(args[2])))
		return
	}
	l.log.Debug("http server", "detail", unquoted(fmt.Sprintf(format, args...)))
}

// unquoted is s up to its first quoted string, which in fasthttp's errors holds bytes
// the client sent.
func unquoted(s string) string {
	if i := strings.IndexByte(s, '"'); i >= 0 {
		return strings.TrimRight(s[:i], " :,") + " (request bytes not logged)"
	}
	return s
}

// NewLogger builds the slog logger that logging: asks for.
func NewLogger(c LoggingConfig, w io.Writer) *slog.Logger {
	return newLogger(c, w, new(slog.LevelVar))
}

// newLogger builds the logger of logging: over level, which it sets to logging.level;
// setting level later changes what the logger writes.
func newLogger(c LoggingConfig, w io.Writer, level *slog.LevelVar) *slog.Logger {
	level.Set(logLevel(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if q, ok := w.(lineQueue); ok {
		q.SetNotice(dropNotice(c.Format == "text", opts))
	}
	if c.Format == "text" {
		return slog.New(NewTextLogHandler(w, opts))
	}
	return slog.New(NewJSONLogHandler(w, opts))
}

// logLevel reads logging.level; anything else (the config has rejected it) is info.
func logLevel(name string) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(name))
	return level
}

// Validate loads a config and builds everything a server would, without listening.
func Validate(path string) error {
	_, err := CheckConfig(path)
	return err
}

// CheckConfig validates a config as Validate does and returns, for a valid one, its
// warnings (each FILE:LINE: key: warning: what): what it does that its operator may
// not mean, which the server logs as it starts (a key already expired, a backend's
// tls.insecure_skip_verify, the admin API beyond loopback without a token, an API key
// file not there, stored responses without auth.response_secret).
func CheckConfig(path string) ([]string, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if _, err := tracing.New(context.Background(), tracing.Config{Exporter: tracing.ExporterNone}, nil); err != nil {
		return nil, err
	}
	lim, err := limiter.New(limiter.Config{}, nil)
	if err != nil {
		return nil, err
	}
	defer lim.Close()
	rt, err := buildRuntime(cfg, nil, metrics.New(prometheus.NewRegistry()), tracing.Disabled(), lim, providers.NewPools())
	if err != nil {
		return nil, inFile(path, err)
	}
	defer rt.close()
	return configWarnings(rt, time.Now()), nil
}

// inFile is a failed build's err as a ConfigError: buildRuntime names the key of what
// it refuses, and anything it does not name at least names the config file, one
// problem a line.
func inFile(path string, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	var problems []string
	for _, line := range strings.Split(err.Error(), "\n") {
		problems = append(problems, path+": "+line)
	}
	return newConfigError(problems, nil)
}

// loopback reports whether a listener's address is on the loopback interface only.
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
