// Package gateway is Tollgate's HTTP face: routes, request parsing, auth, the request
// pipeline, OpenAI-style errors, config loading and hot reload, and the admin listener.
package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

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
	rt   atomic.Pointer[runtime]

	api   *fasthttp.Server
	admin *fasthttp.Server
	apiLn net.Listener
	admLn net.Listener

	reg    *prometheus.Registry
	m      *metrics.Metrics
	router *router.Router
	// routerSeen is the router change count the gauges last reflected.
	routerSeen atomic.Uint64
	exporter   sdktrace.SpanExporter
	// pools keeps target health and load across reloads.
	pools *providers.Pools
	// routerRedis is the router's client, closed at shutdown.
	routerRedis interface{ Close() error }
	metrics     fasthttp.RequestHandler
	accessLog   atomic.Bool
	draining    atomic.Bool
	// hijacked counts streams written on hijacked connections, which fasthttp's
	// shutdown does not wait for (stream.go).
	hijacked atomic.Int64
	reloadMu sync.Mutex
	lastHash [sha256.Size]byte
}

// Options adjust a Server beyond its config file.
type Options struct {
	// Logger receives the gateway's logs; nil builds one from logging: in the config.
	Logger *slog.Logger
	// SpanExporter, when set, receives the spans in place of tracing.exporter.
	SpanExporter sdktrace.SpanExporter
}

// New loads the config at path and builds the gateway without listening yet.
func New(path string, opt Options) (*Server, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	log := opt.Logger
	if log == nil {
		log = NewLogger(cfg.Logging, os.Stderr)
	}
	s := &Server{path: path, log: log, reg: prometheus.NewRegistry()}
	s.m = metrics.New(s.reg)
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
	rt, err := buildRuntime(cfg, log, s.m, tr, lim, s.pools)
	if err != nil {
		_ = tr.Shutdown(context.Background())
		_ = lim.Close()
		return nil, err
	}
	rt.ownsTracer.Store(true)
	rt.ownsLimiter.Store(true)
	s.m.WatchTracing(s.traceStats)
	s.m.WatchLimiter(s.limiterStats)
	s.install(rt)
	s.lastHash = fileHash(path)
	s.api = &fasthttp.Server{
		Handler:                       s.serveAPI,
		Name:                          "tollgate",
		MaxRequestBodySize:            readLimit(rt.maxBody),
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
		// Streams hijack their connection and give it back with ServeConn.
		KeepHijackedConns: true,
		// 8 KiB holds the largest request headers clients send (long bearer tokens,
		// cookies) while keeping each of thousands of idle or streaming connections small.
		ReadBufferSize:    8 << 10,
		StreamRequestBody: false,
		Logger:            fasthttpLogger{log},
		// A client that does not take its answer loses the connection, instead of
		// holding it and its goroutine for as long as it likes (sendDeadline).
		WriteTimeout: time.Duration(sendTimeout.Load()),
	}
	s.admin = &fasthttp.Server{
		Handler: s.serveAdmin, Name: "tollgate-admin", NoDefaultServerHeader: true, CloseOnShutdown: true,
		ReadTimeout: cfg.Server.ReadTimeout, IdleTimeout: cfg.Server.IdleTimeout, WriteTimeout: time.Duration(sendTimeout.Load()),
		Logger: fasthttpLogger{log},
	}
	return s, nil
}

// readLimit is how much body fasthttp reads before refusing. It is above
// max_body_bytes so that the handler answers a moderately oversized body with a 413
// after reading it: refusing early closes the connection with the body unread, and
// the client's kernel then drops the answer with a reset.
func readLimit(maxBody int) int { return 2*maxBody + 1<<20 }

// Logger is the gateway's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

func (s *Server) install(rt *runtime) {
	s.accessLog.Store(rt.cfg.Logging.AccessLog == nil || *rt.cfg.Logging.AccessLog)
	for _, b := range rt.backendList {
		b.Start(context.Background())
	}
	s.router.Apply(rt.routing)
	s.syncRouterGauges(true)
	if old := s.rt.Swap(rt); old != nil {
		old.retire()
	}
}

// serveParseError answers requests fasthttp could not read, in OpenAI's error shape.
func (s *Server) serveParseError(ctx *fasthttp.RequestCtx, err error) {
	var e *apiError
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = &errTooLarge
	default:
		e = &apiError{400, "invalid_request_error", "bad_request", "", "The HTTP request could not be read."}
	}
	writeError(&ctx.Response, e)
	ctx.SetConnectionClose()
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
	// each; deadline.Listener makes that free.
	s.apiLn, s.admLn = deadline.Listener{Listener: ln}, adm
	return nil
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
	defer func() {
		stopWatch()
		<-routerDone
		// After Run has given up the leader lease.
		if s.routerRedis != nil {
			_ = s.routerRedis.Close()
		}
	}()
	s.log.Info("serving", "listen", s.Addr(), "admin", s.AdminAddr(), "config", s.path)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return s.shutdown()
}

func (s *Server) shutdown() error {
	rt := s.rt.Load()
	grace := rt.cfg.Server.ShutdownGrace
	s.log.Info("shutting down", "grace", grace.String())
	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.api.ShutdownWithContext(ctx)
	if err == nil {
		err = s.waitHijacked(ctx)
	}
	if err != nil {
		s.log.Warn("shutdown grace expired with requests still open", "error", err.Error())
	}
	_ = s.admin.ShutdownWithContext(ctx)
	if old := s.rt.Swap(nil); old != nil {
		old.retire()
	}
	return nil
}

// waitHijacked waits for the streams on hijacked connections to end, or for ctx.
func (s *Server) waitHijacked(ctx context.Context) error {
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for s.hijacked.Load() > 0 {
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
	cfg, err := LoadConfig(s.path)
	if err == nil {
		if cfg.Server.Listen != cur.cfg.Server.Listen || cfg.Server.AdminListen != cur.cfg.Server.AdminListen {
			s.log.Warn("server.listen and server.admin_listen changes take effect on restart")
		}
		if readLimit(int(cfg.Server.MaxBodyBytes)) > s.api.MaxRequestBodySize {
			s.log.Warn("server.max_body_bytes can be raised above its value at start only by a restart", "now", cur.maxBody)
		}
		var rt *runtime
		// The tracer survives a reload that leaves tracing: alone, so its exporter
		// connection and sampler counters go on.
		tr, sameTracer := cur.tr, reflect.DeepEqual(cfg.Tracing, cur.cfg.Tracing)
		if !sameTracer {
			tr, err = s.newTracing(cfg)
		}
		// So does the limiter, and with it the memory store's buckets.
		lim, sameLimiter := cur.lim, reflect.DeepEqual(cfg.Limiter, cur.cfg.Limiter)
		if err == nil && !sameLimiter {
			lim, err = limiter.New(cfg.Limiter, s.log)
		}
		if err == nil {
			rt, err = buildRuntime(cfg, s.log, s.m, tr, lim, s.pools)
		}
		if err != nil {
			if !sameTracer && tr != nil {
				_ = tr.Shutdown(context.Background())
			}
			if !sameLimiter && lim != nil {
				_ = lim.Close()
			}
		}
		if err == nil {
			if sameTracer {
				cur.ownsTracer.Store(false)
			}
			if sameLimiter {
				cur.ownsLimiter.Store(false)
			}
			rt.ownsTracer.Store(true)
			rt.ownsLimiter.Store(true)
			s.install(rt)
			s.lastHash = fileHash(s.path)
			s.m.ConfigReloaded(nil)
			s.log.Info("config reloaded", "config", s.path, "endpoints", len(cfg.Endpoints), "backends", len(cfg.Backends))
			return nil
		}
	}
	s.m.ConfigReloaded(err)
	s.log.Error("config reload failed; keeping the running config", "config", s.path, "error", err.Error())
	return err
}

// watch reloads when the config file changes. It watches the directory: editors and
// Kubernetes replace the file (rename, symlink swap) rather than write it.
func (s *Server) watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("config file watching unavailable", "error", err.Error())
		return
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		s.log.Warn("config file watching unavailable", "error", err.Error())
		return
	}
	// Writers emit several events per save; settle for a moment, then compare content
	// so that a save without a change triggers nothing. Events on other files (a log
	// written next to the config) are dropped at once: they would wake this loop for
	// every line.
	base := filepath.Base(s.path)
	var timer *time.Timer
	fire := make(chan struct{}, 1)
	// A change made before the watch began raised no event: compare once now.
	fire <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if !configEvent(ev.Name, base) {
				continue
			}
			if timer == nil {
				timer = time.AfterFunc(100*time.Millisecond, func() {
					select {
					case fire <- struct{}{}:
					default:
					}
				})
			} else {
				timer.Reset(100 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.log.Warn("config watch error", "error", err.Error())
		case <-fire:
			h := fileHash(s.path)
			s.reloadMu.Lock()
			same := bytes.Equal(h[:], s.lastHash[:])
			s.reloadMu.Unlock()
			if !same {
				_ = s.Reload()
			}
		}
	}
}

// configEvent reports whether an event on name in the config's directory may have
// changed the config file base: the file itself, or Kubernetes' atomic writer swapping
// its "..data" symlink (a ConfigMap's files are links through it).
func configEvent(name, base string) bool {
	b := filepath.Base(name)
	return b == base || strings.HasPrefix(b, "..")
}

func fileHash(path string) [sha256.Size]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(b)
}

func (s *Server) serveAdmin(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	case "/readyz":
		ctx.SetContentType("application/json")
		rt := s.rt.Load()
		if rt == nil || s.draining.Load() {
			ctx.SetStatusCode(503)
			ctx.SetBodyString(`{"status":"not ready"}`)
			return
		}
		if !rt.ready() {
			ctx.SetStatusCode(503)
			ctx.SetBodyString(`{"status":"not ready","reason":"an endpoint has no healthy target"}`)
			return
		}
		ctx.SetBodyString(`{"status":"ready"}`)
	case "/metrics":
		s.syncRouterGauges(false)
		if rt := s.rt.Load(); rt != nil {
			s.m.SetLimiterDegraded(rt.lim.Degraded())
			var ups []metrics.TargetHealth
			for _, b := range rt.backendList {
				for _, h := range b.Health() {
					ups = append(ups, metrics.TargetHealth{Backend: b.Name, Target: hostOf(h.URL), Up: h.Up})
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

func (s *Server) newTracing(cfg *Config) (*tracing.Tracing, error) {
	if s.exporter != nil {
		return tracing.NewWithExporter(context.Background(), cfg.Tracing, s.log, s.exporter)
	}
	return tracing.New(context.Background(), cfg.Tracing, s.log)
}

// traceStats reads the live tracer's sampler counters for the metrics.
func (s *Server) traceStats() metrics.TraceStats {
	rt := s.rt.Load()
	if rt == nil {
		return metrics.TraceStats{}
	}
	st := rt.tr.Stats()
	return metrics.TraceStats{Kept: st.Kept, Discarded: st.Discarded, Evicted: st.Evicted,
		SpansDropped: st.SpansDropped, ExportFailures: st.ExportFailures, Pending: st.Pending}
}

// limiterStats reads the live limiter's counters for the metrics.
func (s *Server) limiterStats() metrics.LimiterStats {
	rt := s.rt.Load()
	if rt == nil {
		return metrics.LimiterStats{}
	}
	st := rt.lim.Stats()
	return metrics.LimiterStats{Redis: st.RedisAnswered, Prefetched: st.LocalChecks, RefusedLocally: st.RefusedLocally, Fallback: st.Fallbacks,
		Unavailable: st.Unavailable, RoundTrips: st.RoundTrips, DroppedSettlements: st.DroppedSettles}
}

// syncRouterGauges copies route weights and canary states into their gauges when the
// router changed since the last copy (or always, when force is set).
func (s *Server) syncRouterGauges(force bool) {
	n := s.router.Changes()
	if !force && s.routerSeen.Load() == n {
		return
	}
	s.routerSeen.Store(n)
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

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug("http server", "detail", format)
}

// NewLogger builds the slog logger that logging: asks for.
func NewLogger(c LoggingConfig, w *os.File) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(NewJSONLogHandler(w, opts))
}

// Validate loads a config and builds everything a server would, without listening.
func Validate(path string) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	if _, err := tracing.New(context.Background(), tracing.Config{Exporter: tracing.ExporterNone}, nil); err != nil {
		return err
	}
	lim, err := limiter.New(limiter.Config{}, nil)
	if err != nil {
		return err
	}
	defer lim.Close()
	rt, err := buildRuntime(cfg, nil, metrics.New(prometheus.NewRegistry()), tracing.Disabled(), lim, providers.NewPools())
	if err != nil {
		return err
	}
	rt.close()
	return nil
}
