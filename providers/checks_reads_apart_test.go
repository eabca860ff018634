package providers

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// slowProbes is a target whose /health and /metrics can each be made to hang until
// the test ends, and whose /health answers the status set.
type slowProbes struct {
	addr         string
	quit         chan struct{}
	once         sync.Once
	health       atomic.Int64 // status of /health: 200 unless set
	hangHealth   atomic.Bool
	hangMetrics  atomic.Bool
	checks       atomic.Int64
	metricsReads atomic.Int64
}

func startSlowProbes(tb testing.TB) *slowProbes {
	tb.Helper()
	s := &slowProbes{quit: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &fasthttp.Server{Handler: s.handle}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() {
		s.release()
		_ = ln.Close()
		_ = srv.Shutdown()
	})
	return s
}

// release ends the requests held, so that the backend's Close need not wait out their
// timeouts.
func (s *slowProbes) release() { s.once.Do(func() { close(s.quit) }) }

func (s *slowProbes) url() string { return "http://" + s.addr + "/v1" }

func (s *slowProbes) handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/health":
		s.checks.Add(1)
		if s.hangHealth.Load() {
			<-s.quit
			return
		}
		if st := s.health.Load(); st != 0 {
			ctx.SetStatusCode(int(st))
		}
	case "/metrics":
		s.metricsReads.Add(1)
		if s.hangMetrics.Load() {
			<-s.quit
			return
		}
		ctx.SetBodyString("# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 2\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n")
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	}
}

// A target's /metrics that hangs (each read waits out its timeout, metrics_interval)
// does not hold up its active health checks: they go on every health.interval, and a
// failing /health takes the target out after unhealthy_threshold checks, not after
// the reads' timeouts.
func TestHangingMetricsDoNotHoldUpHealthChecks(t *testing.T) {
	s := startSlowProbes(t)
	s.hangMetrics.Store(true)
	b := newPoolBackend(t, Config{Targets: []string{s.url()}, Balance: "vllm_queue", MetricsInterval: time.Minute,
		Health: HealthConfig{Interval: 20 * time.Millisecond, Timeout: time.Second, UnhealthyThreshold: 2}}, nil)
	defer s.release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Start(ctx)
	if !b.AwaitChecks(ctx) || !b.Health()[0].Up {
		t.Fatal("first check did not find the target up")
	}
	waitUntil(t, "a metrics read under way", func() bool { return s.metricsReads.Load() > 0 })
	s.health.Store(fasthttp.StatusServiceUnavailable)
	// The reads' timeout is a minute: the checks must not wait behind one.
	deadline := time.Now().Add(20 * time.Second)
	for b.Health()[0].Up {
		if time.Now().After(deadline) {
			t.Fatalf("target still up 20s after its /health began failing (%d checks made), behind a /metrics read", s.checks.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A target's /health that takes long to answer (within health.timeout) does not hold
// up the reads of its /metrics under vllm_queue: its load is read every
// metrics_interval, and it is not ranked as a target whose load could not be read.
func TestHangingHealthCheckDoesNotHoldUpLoadReads(t *testing.T) {
	s := startSlowProbes(t)
	s.hangHealth.Store(true)
	b := newPoolBackend(t, Config{Targets: []string{s.url()}, Balance: "vllm_queue", MetricsInterval: 20 * time.Millisecond,
		Health: HealthConfig{Interval: 20 * time.Millisecond, Timeout: time.Minute}}, nil)
	defer s.release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Start(ctx)
	waitUntil(t, "a check under way", func() bool { return s.checks.Load() > 0 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if sc, _, ok := b.pool.states[0].load.score(0, 0); ok {
			if sc != 2*waitingWeight+1 {
				t.Fatalf("score %d, want %d", sc, 2*waitingWeight+1)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("load not read 20s into a health check that takes a minute (%d reads made)", s.metricsReads.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
