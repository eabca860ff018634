package providers

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/freeport"
)

// startSilent is an address whose connects are never answered (a deleted pod's IP,
// black-holed), closed when the test ends.
func startSilent(tb testing.TB) *freeport.Silent {
	tb.Helper()
	s, err := freeport.ListenSilent()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// connecting waits until n connects to s are under way.
func connecting(tb testing.TB, s *freeport.Silent, n int) {
	tb.Helper()
	waitUntil(tb, "the checks' connects reach the address", func() bool {
		got, err := s.Connecting()
		if err != nil {
			tb.Fatal(err)
		}
		return got >= n
	})
}

// A check or /metrics read still connecting when the backend is closed (shutdown, or
// the close of a config a reload replaced) ends with the close, not at connect_timeout:
// a target whose address black-holes (a deleted vLLM pod's) would otherwise hold the
// gateway's exit for connect_timeout per backend. That holds for each part of a
// connection: the TCP connect to the target or to its proxy, the TLS handshake, the
// proxy's CONNECT or SOCKS5 handshake. Nothing the dial found is recorded, and no
// goroutine is left.
func TestCloseEndsChecksStillConnecting(t *testing.T) {
	const hang = 10 * time.Second
	checks := HealthConfig{Interval: time.Hour, Timeout: hang}
	for _, tc := range []struct {
		name string
		// setup gives the backend's targets and proxy, and waits until the checks'
		// dials are under way.
		setup func(t *testing.T) (targets []string, proxy string, begun func())
		cfg   Config
	}{
		{"a target whose SYNs are dropped", func(t *testing.T) ([]string, string, func()) {
			s := startSilent(t)
			return []string{"http://" + s.Addr() + "/v1"}, "", func() { connecting(t, s, 1) }
		}, Config{Health: checks}},
		{"a check and a metrics read to a target whose SYNs are dropped", func(t *testing.T) ([]string, string, func()) {
			s := startSilent(t)
			return []string{"http://" + s.Addr() + "/v1"}, "", func() { connecting(t, s, 2) }
		}, Config{Health: checks, Balance: "vllm_queue", MetricsInterval: hang}},
		{"a name whose address drops SYNs", func(t *testing.T) ([]string, string, func()) {
			s := startSilent(t)
			_, port, err := net.SplitHostPort(s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			return []string{"http://localhost:" + port + "/v1"}, "", func() { connecting(t, s, 1) }
		}, Config{Health: checks}},
		{"an https target that never answers the handshake", func(t *testing.T) ([]string, string, func()) {
			m := startMute(t)
			return []string{"https://" + m.ln.Addr().String() + "/v1"}, "", func() {
				waitUntil(t, "the handshake begins", func() bool { return m.asked.Load() >= 1 })
			}
		}, Config{Health: checks, TLS: TLSConfig{InsecureSkipVerify: true}}},
		{"an HTTP proxy whose SYNs are dropped", func(t *testing.T) ([]string, string, func()) {
			s := startSilent(t)
			return []string{"http://127.0.0.1:1/v1"}, "http://" + s.Addr(), func() { connecting(t, s, 1) }
		}, Config{Health: checks}},
		{"an HTTP proxy that never answers CONNECT", func(t *testing.T) ([]string, string, func()) {
			m := startMute(t)
			return []string{"http://127.0.0.1:1/v1"}, "http://" + m.ln.Addr().String(), func() {
				waitUntil(t, "CONNECT is sent", func() bool { return m.asked.Load() >= 1 })
			}
		}, Config{Health: checks}},
		{"a SOCKS5 proxy whose SYNs are dropped", func(t *testing.T) ([]string, string, func()) {
			s := startSilent(t)
			return []string{"http://127.0.0.1:1/v1"}, "socks5://" + s.Addr(), func() { connecting(t, s, 1) }
		}, Config{Health: checks}},
		{"a SOCKS5 proxy that never answers", func(t *testing.T) ([]string, string, func()) {
			m := startMute(t)
			return []string{"http://127.0.0.1:1/v1"}, "socks5://" + m.ln.Addr().String(), func() {
				waitUntil(t, "the SOCKS5 greeting is sent", func() bool { return m.asked.Load() >= 1 })
			}
		}, Config{Health: checks}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, proxy, begun := tc.setup(t)
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
				goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
			ps := NewPools()
			var changes atomic.Int64
			cfg := tc.cfg
			cfg.Targets, cfg.Proxy, cfg.ConnectTimeout = targets, proxy, hang
			cfg.OnHealth = func(HealthChange) { changes.Add(1) }
			b := newPoolBackend(t, cfg, ps)
			// Another backend of the name, without checks, keeps the targets' state
			// past the close, for what the checks found to be looked at.
			keep := newPoolBackend(t, Config{Targets: cfg.Targets, Proxy: proxy, TLS: cfg.TLS}, ps)
			b.Activate()
			b.Start(context.Background())
			begun()
			start := time.Now()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > hang/2 {
				t.Fatalf("Close took %v: it waited for the checks' dials under way", took)
			}
			st := keep.pool.states[0]
			st.mu.Lock()
			checked, failed := st.checked, st.failed
			st.mu.Unlock()
			if checked || failed != 0 || st.down.Load() || st.load.ok.Load() {
				t.Errorf("a check ended by the close was recorded (checked %v, failed %d, down %v)", checked, failed, st.down.Load())
			}
			if n := changes.Load(); n != 0 {
				t.Errorf("%d health changes told after the close", n)
			}
		})
	}
}

// Retire (a reload replacing the backend) ends a check's dial under way too: the
// config it retired closes once its last request ends, and its checks do not keep
// connecting till connect_timeout meanwhile.
func TestRetireEndsChecksStillConnecting(t *testing.T) {
	const hang = 10 * time.Second
	s := startSilent(t)
	b := newPoolBackend(t, Config{Targets: []string{"http://" + s.Addr() + "/v1"}, ConnectTimeout: hang,
		Balance: "vllm_queue", MetricsInterval: hang, Health: HealthConfig{Interval: time.Hour, Timeout: hang}}, nil)
	b.Start(context.Background())
	connecting(t, s, 2)
	b.Retire()
	ended := make(chan struct{})
	go func() {
		b.pool.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(hang / 2):
		t.Fatal("the checks' dials under way run on after Retire")
	}
	if st := b.pool.states[0]; st.checked || st.down.Load() || st.load.ok.Load() {
		t.Error("a check ended by Retire was recorded")
	}
}
