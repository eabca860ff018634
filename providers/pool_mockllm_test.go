package providers

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
)

// mockReplica is a mockllm server on a loopback port that can be killed and brought
// back on the same port.
type mockReplica struct {
	tb   testing.TB
	opts mockllm.Options
	addr string

	mu  sync.Mutex
	srv *mockllm.Server
	ln  net.Listener
}

func startMockReplica(tb testing.TB, opts mockllm.Options) *mockReplica {
	tb.Helper()
	m := &mockReplica{tb: tb, opts: opts, addr: "127.0.0.1:0"}
	m.restart()
	tb.Cleanup(m.kill)
	return m
}

func (m *mockReplica) url() string { return "http://" + m.addr + "/v1" }

func (m *mockReplica) restart() {
	m.tb.Helper()
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		m.tb.Fatal(err)
	}
	srv, err := mockllm.New(m.opts)
	if err != nil {
		m.tb.Fatal(err)
	}
	m.mu.Lock()
	m.srv, m.ln, m.addr = srv, ln, ln.Addr().String()
	m.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (m *mockReplica) kill() {
	m.mu.Lock()
	srv, ln := m.srv, m.ln
	m.srv, m.ln = nil, nil
	m.mu.Unlock()
	if srv == nil {
		return
	}
	_ = ln.Close() // Shutdown misses a listener Serve has not taken up yet
	_ = srv.Shutdown()
}

func (m *mockReplica) chats() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv == nil {
		return 0
	}
	return m.srv.Stats().Requests["/v1/chat/completions"]
}

// withRetries sends as the gateway does: a failed attempt that can be retried is
// tried again, on whatever target the pool picks next.
func withRetries(b *Backend, call *Call, retries int) (string, error) {
	var url string
	var err error
	for range retries + 1 {
		if url, err = sendOnce(b, call); err == nil {
			return url, nil
		}
	}
	return url, err
}

func TestPoolOverMockllm(t *testing.T) {
	clk := newFakeClock()
	opts := mockllm.Options{Model: "up", TTFT: time.Millisecond, TPOT: time.Millisecond, MaxTokens: 4}
	ms := []*mockReplica{startMockReplica(t, opts), startMockReplica(t, opts), startMockReplica(t, opts)}
	var urls []string
	for _, m := range ms {
		urls = append(urls, m.url())
	}
	b := newPoolBackend(t, Config{Targets: urls, Health: HealthConfig{EjectAfter: 2, EjectFor: 5 * time.Second}}, poolsWithClock(clk))

	ms[1].kill()
	for i := range 30 {
		if url, err := withRetries(b, promptCall("q"+strconv.Itoa(i), i%3 == 0), 2); err != nil {
			t.Fatalf("request %d failed on %s after retries: %v", i, url, err)
		}
	}
	if h := b.Health(); h[1].Up || !h[0].Up || !h[2].Up {
		t.Fatalf("health %+v, want the killed replica ejected", h)
	}
	if got := ms[0].chats() + ms[2].chats(); got != 30 {
		t.Errorf("live replicas answered %d of 30", got)
	}

	ms[1].restart()
	clk.Advance(5 * time.Second)
	for i := range 30 {
		if _, err := sendOnce(b, promptCall("r"+strconv.Itoa(i), false)); err != nil {
			t.Fatal(err)
		}
	}
	if !b.Health()[1].Up {
		t.Fatal("restarted replica not back")
	}
	if got := ms[1].chats(); got < 9 {
		t.Errorf("restarted replica answered %d of 30, want its share", got)
	}
}

func TestVLLMQueueReadsMockllm(t *testing.T) {
	busy := startMockReplica(t, mockllm.Options{Model: "up", MaxNumSeqs: 1, TTFT: time.Minute})
	idle := startMockReplica(t, mockllm.Options{Model: "up"})
	b := newPoolBackend(t, Config{Targets: []string{busy.url(), idle.url()}, Balance: "vllm_queue"}, nil)

	// Three requests from elsewhere: one runs, two wait.
	hc := &fasthttp.HostClient{Addr: busy.addr}
	defer hc.CloseIdleConnections()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer busy.kill() // cuts the minute-long first token short
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://" + busy.addr + "/v1/chat/completions")
			req.Header.SetContentType("application/json")
			req.SetBodyString(`{"model":"up","messages":[{"role":"user","content":"x"}]}`)
			_ = hc.Do(req, resp)
		}()
	}
	waitUntil(t, "one running, two waiting", func() bool {
		b.readLoad(0, nil)
		s, _, _ := b.pool.states[0].load.score(0, 0)
		return s == 2*waitingWeight+1
	})
	b.readLoad(1, nil)
	for i := range 8 {
		url, s := openStream(t, b, "p"+strconv.Itoa(i))
		if url != idle.url() {
			t.Errorf("stream %d went to the busy replica", i)
		}
		defer s.Close()
	}
}
