package providers

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// mute is a target that accepts connections and reads what comes on them, never
// answering: a vLLM whose engine is stuck, its /health and /metrics hanging.
type mute struct {
	ln    net.Listener
	asked atomic.Int64 // requests begun (bytes read on a connection)
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startMute(tb testing.TB) *mute {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	m := &mute{ln: ln}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.mu.Lock()
			m.conns = append(m.conns, c)
			m.mu.Unlock()
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						m.asked.Add(1)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(m.stop)
	return m
}

func (m *mute) stop() {
	_ = m.ln.Close()
	m.mu.Lock()
	for _, c := range m.conns {
		_ = c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *mute) url() string { return "http://" + m.ln.Addr().String() + "/v1" }

// A health check or /metrics read under way when the backend is closed (shutdown, or
// the close of a config a reload replaced) ends with the close, not at its timeout: a
// target whose /health hangs would otherwise hold the gateway's exit for up to
// health.timeout per backend. Nothing it found is recorded, and no goroutine is left.
func TestCloseEndsHungChecksAtOnce(t *testing.T) {
	const hang = 10 * time.Second
	for _, tc := range []struct {
		name string
		cfg  Config
		// begun is how many requests the target sees before the close.
		begun int64
	}{
		{"a health check", Config{Health: HealthConfig{Interval: time.Hour, Timeout: hang}}, 1},
		{"a metrics read", Config{Balance: "vllm_queue", MetricsInterval: hang}, 1},
		{"both", Config{Balance: "vllm_queue", MetricsInterval: hang, Health: HealthConfig{Interval: time.Hour, Timeout: hang}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMute(t)
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
				goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
			ps := NewPools()
			var changes atomic.Int64
			cfg := tc.cfg
			cfg.Targets = []string{m.url(), m.url() + "/other"}
			cfg.OnHealth = func(HealthChange) { changes.Add(1) }
			b := newPoolBackend(t, cfg, ps)
			// Another backend of the name, without checks, keeps the targets' state
			// past the close, for what the checks found to be looked at.
			keep := newPoolBackend(t, Config{Targets: cfg.Targets}, ps)
			b.Activate()
			b.Start(context.Background())
			waitUntil(t, "the checks reach the target", func() bool { return m.asked.Load() >= 2*tc.begun })
			start := time.Now()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > hang/2 {
				t.Fatalf("Close took %v: it waited for the checks under way", took)
			}
			for i, st := range keep.pool.states {
				st.mu.Lock()
				checked, failed := st.checked, st.failed
				st.mu.Unlock()
				if checked || failed != 0 || st.down.Load() || st.load.ok.Load() {
					t.Errorf("target %d: a check ended by the close was recorded (checked %v, failed %d, down %v)", i, checked, failed, st.down.Load())
				}
			}
			if n := changes.Load(); n != 0 {
				t.Errorf("%d health changes told after the close", n)
			}
		})
	}
}

// Retire (a reload replacing the backend) ends the checks under way too: the config
// it retired closes once its last request ends, and its checks are not kept running
// till their timeout meanwhile.
func TestRetireEndsHungChecksAtOnce(t *testing.T) {
	const hang = 10 * time.Second
	m := startMute(t)
	b := newPoolBackend(t, Config{Targets: []string{m.url()}, Balance: "vllm_queue", MetricsInterval: hang,
		Health: HealthConfig{Interval: time.Hour, Timeout: hang}}, nil)
	b.Start(context.Background())
	waitUntil(t, "the checks reach the target", func() bool { return m.asked.Load() >= 2 })
	b.Retire()
	ended := make(chan struct{})
	go func() {
		b.pool.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(hang / 2):
		t.Fatal("the checks under way run on after Retire")
	}
	if st := b.pool.states[0]; st.checked || st.down.Load() || st.load.ok.Load() {
		t.Error("a check ended by Retire was recorded")
	}
}
