package providers

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/valyala/fasthttp"
)

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	us := startReplicas(t, 4)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us)}, nil)
	for i := range 200 {
		if _, err := sendOnce(b, promptCall("q"+strconv.Itoa(i), i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	for i, u := range us {
		if got := u.hits.Load(); got != 50 {
			t.Errorf("target %d: %d requests, want 50", i, got)
		}
	}
}

func TestLeastLoadedFillsTheEmptiest(t *testing.T) {
	us := startReplicas(t, 3)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: "least_loaded"}, nil)
	streams := map[string][]Events{}
	for range 6 {
		url, s := openStream(t, b, "x")
		streams[url] = append(streams[url], s)
	}
	for i, u := range us {
		if got := u.hits.Load(); got != 2 {
			t.Fatalf("target %d: %d streams, want 2 each", i, got)
		}
	}
	// Free the first target's two slots: the next two requests go there.
	first := us[0].url()
	for _, s := range streams[first] {
		_ = drainStream(s)
		_ = s.Close()
	}
	streams[first] = nil
	for range 2 {
		url, s := openStream(t, b, "y")
		if url != first {
			t.Errorf("request went to %s, want the idle %s", url, first)
		}
		streams[url] = append(streams[url], s)
	}
	for _, ss := range streams {
		for _, s := range ss {
			_ = s.Close()
		}
	}
	if got := us[0].hits.Load(); got != 4 {
		t.Errorf("idle target: %d requests, want 4", got)
	}
}

func TestVLLMQueuePrefersTheShortestQueue(t *testing.T) {
	us := startReplicas(t, 3)
	us[0].waiting.Store(5) // score 20
	us[1].running.Store(3) // score 3
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: "vllm_queue"}, nil)
	for i := range us {
		b.readLoad(i, nil)
	}
	var streams []Events
	defer func() {
		for _, s := range streams {
			_ = s.Close()
		}
	}()
	// Every stream sent since the read counts: the idle target takes three before it
	// ties with the one running three, then they share, and the queued one gets none.
	for k := range 10 {
		url, s := openStream(t, b, "x")
		streams = append(streams, s)
		if k < 3 && url != us[2].url() {
			t.Fatalf("stream %d went to %s, want the idle target", k, url)
		}
	}
	if got := us[0].hits.Load(); got != 0 {
		t.Errorf("the target with a queue got %d requests", got)
	}
	if a, c := us[1].hits.Load(), us[2].hits.Load(); a < 3 || c < 5 || a+c != 10 {
		t.Errorf("running/idle targets got %d/%d, want them to share 10 after the idle one's lead", a, c)
	}
	// A failed read leaves the target unread.
	us[0].kill()
	b.readLoad(0, nil)
	if b.pool.states[0].load.ok.Load() {
		t.Error("load of a dead target still trusted")
	}
}

func TestAffinityKeepsAPrefixOnOneTarget(t *testing.T) {
	us := startReplicas(t, 4)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Affinity: AffinityConfig{By: "prefix", Bytes: 64}}, nil)
	system := strings.Repeat("You are a careful assistant. ", 4)
	home := ""
	for i := range 20 {
		url, err := sendOnce(b, promptCall(system+"question "+strconv.Itoa(i), false))
		if err != nil {
			t.Fatal(err)
		}
		if home == "" {
			home = url
		}
		if url != home {
			t.Fatalf("request %d with the shared prefix went to %s, first went to %s", i, url, home)
		}
	}
	seen := map[string]bool{}
	for i := range 40 {
		url, err := sendOnce(b, promptCall(strconv.Itoa(i)+" another conversation", false))
		if err != nil {
			t.Fatal(err)
		}
		seen[url] = true
	}
	if len(seen) < 3 {
		t.Errorf("40 different prefixes reached %d targets, want them spread", len(seen))
	}
}

func TestAffinityBoundsTheLoad(t *testing.T) {
	cases := []struct {
		name       string
		factor     float64
		streams    int
		wantAtHome int
	}{
		{"factor 1.25", 1.25, 40, 13},
		{"factor 2", 2, 40, 20},
		{"factor 1", 1, 12, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			us := startReplicas(t, 4)
			b := newPoolBackend(t, Config{Targets: replicaURLs(us), Affinity: AffinityConfig{By: "prefix", LoadFactor: tc.factor}}, nil)
			var streams []Events
			defer func() {
				for _, s := range streams {
					_ = s.Close()
				}
			}()
			perTarget := map[string]int{}
			home := ""
			for k := range tc.streams {
				url, s := openStream(t, b, "the same long shared prefix")
				streams = append(streams, s)
				perTarget[url]++
				if home == "" {
					home = url
				}
				bound := int(math.Ceil(tc.factor * float64(k+1) / 4))
				for u, n := range perTarget {
					if n > bound {
						t.Fatalf("after %d streams %s holds %d, bound %d", k+1, u, n, bound)
					}
				}
			}
			if perTarget[home] != tc.wantAtHome {
				t.Errorf("home target holds %d, want it filled to the bound %d", perTarget[home], tc.wantAtHome)
			}
		})
	}
}

func TestConcurrencyCapAndQueue(t *testing.T) {
	t.Run("full with no queue is overloaded at once", func(t *testing.T) {
		u := startReplica(t)
		b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 2}, nil)
		_, s1 := openStream(t, b, "a")
		_, s2 := openStream(t, b, "b")
		defer s1.Close()
		defer s2.Close()
		_, err := sendOnce(b, promptCall("c", false))
		if !errors.Is(err, ErrOverloaded) {
			t.Fatalf("got %v, want ErrOverloaded", err)
		}
		if got := u.hits.Load(); got != 2 {
			t.Errorf("upstream saw %d requests, want 2", got)
		}
	})
	t.Run("queue wait times out", func(t *testing.T) {
		u := startReplica(t)
		b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1, Queue: QueueConfig{Size: 4, Timeout: 30 * time.Millisecond}}, nil)
		_, s := openStream(t, b, "a")
		defer s.Close()
		_, err := sendOnce(b, promptCall("b", false))
		if !errors.Is(err, ErrOverloaded) {
			t.Fatalf("got %v, want ErrOverloaded", err)
		}
		if w := b.pool.queue.waiting.Load(); w != 0 {
			t.Errorf("%d still counted waiting", w)
		}
	})
	t.Run("a freed slot goes to the waiter", func(t *testing.T) {
		u := startReplica(t)
		b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1, Queue: QueueConfig{Size: 1, Timeout: time.Minute}}, nil)
		_, s := openStream(t, b, "a")
		done := make(chan error, 1)
		go func() {
			_, err := sendOnce(b, promptCall("b", false))
			done <- err
		}()
		st := b.pool.states[0]
		waitUntil(t, "the second request waits", func() bool { return b.pool.queue.waiting.Load() == 1 })
		// The queue holds one: a third request is turned away without waiting.
		if _, err := sendOnce(b, promptCall("c", false)); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("third request: got %v, want ErrOverloaded", err)
		}
		_ = drainStream(s)
		_ = s.Close()
		if err := <-done; err != nil {
			t.Fatalf("waiter: %v", err)
		}
		if n := st.slots.n.Load(); n != 0 {
			t.Errorf("%d slots still taken", n)
		}
	})
	t.Run("a full target spills to one with room", func(t *testing.T) {
		us := startReplicas(t, 2)
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1, Affinity: AffinityConfig{By: "prefix", LoadFactor: 100}}, nil)
		u1, s1 := openStream(t, b, "same")
		defer s1.Close()
		u2, s2 := openStream(t, b, "same")
		defer s2.Close()
		if u1 == u2 {
			t.Errorf("both streams on %s past its max_concurrency", u1)
		}
	})
}

func TestTimeouts(t *testing.T) {
	t.Run("first byte", func(t *testing.T) {
		u := startReplica(t)
		u.delay.Store(int64(time.Minute))
		b := newPoolBackend(t, Config{BaseURL: u.url(), FirstByteTimeout: 50 * time.Millisecond}, nil)
		for _, stream := range []bool{false, true} {
			began := time.Now()
			_, err := sendOnce(b, promptCall("x", stream))
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("stream %v: got %v, want ErrTimeout", stream, err)
			}
			if d := time.Since(began); d > 10*time.Second {
				t.Errorf("stream %v: timed out after %v", stream, d)
			}
		}
	})
	t.Run("stream idle", func(t *testing.T) {
		u := startReplica(t)
		u.stall.Store(true)
		b := newPoolBackend(t, Config{BaseURL: u.url(), StreamIdleTimeout: 50 * time.Millisecond}, nil)
		_, err := sendOnce(b, promptCall("x", true))
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("got %v, want ErrTimeout", err)
		}
	})
	// The attempt's own deadline (the endpoint's timeout, or the backend's) bounds
	// the whole stream. Cutting a stream that was arriving steadily is the gateway's
	// limit, not the target's failure: the client gets the timeout, the target's
	// health hears nothing, with first_byte_timeout and stream_idle_timeout set or
	// not.
	t.Run("the attempt's deadline on a steady stream is no failure", func(t *testing.T) {
		u := startReplica(t)
		u.gap.Store(int64(time.Second)) // a chunk every second, three seconds in all
		for _, cfg := range []Config{
			{BaseURL: u.url(), Health: HealthConfig{EjectAfter: 2}},
			{BaseURL: u.url(), FirstByteTimeout: 10 * time.Second, StreamIdleTimeout: 10 * time.Second, Health: HealthConfig{EjectAfter: 2}},
		} {
			b := newPoolBackend(t, cfg, nil)
			for i := range 2 {
				call := promptCall("long answer "+strconv.Itoa(i), true)
				call.Deadline = time.Now().Add(300 * time.Millisecond)
				_, err := sendOnce(b, call)
				if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrStreamCut) {
					t.Fatalf("stream %d: got %v, want a stream cut by a timeout", i, err)
				}
			}
			if !b.Healthy() {
				t.Errorf("first_byte_timeout %v: streams cut by the attempt's deadline ejected the target", cfg.FirstByteTimeout)
			}
		}
	})
	t.Run("a steady stream outlives both bounds", func(t *testing.T) {
		u := startReplica(t)
		// Three gaps of 100 ms, 300 ms in all, past both bounds of 250 ms; each gap
		// 150 ms inside them, for a loaded machine's scheduling.
		u.gap.Store(int64(100 * time.Millisecond))
		b := newPoolBackend(t, Config{BaseURL: u.url(), FirstByteTimeout: 250 * time.Millisecond, StreamIdleTimeout: 250 * time.Millisecond}, nil)
		for range 2 { // the second reuses the connection
			if _, err := sendOnce(b, promptCall("x", true)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// max_connections is the gateway's own cap on connections to a target. When every
// one is busy (each open stream holds one) past connect_timeout, or past the call's
// deadline when that comes first, the request fails as overloaded (503 to the client)
// and the target, serving all it was given, is not counted as failing.
func TestConnectionCapIsOverloadNotFailure(t *testing.T) {
	cases := []struct {
		name     string
		connect  time.Duration
		deadline time.Duration
	}{
		{"connect_timeout runs out", 30 * time.Millisecond, time.Minute},
		{"the call's deadline comes first", time.Minute, 50 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := startReplica(t)
			b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConnections: 1, ConnectTimeout: tc.connect,
				Health: HealthConfig{EjectAfter: 2}}, nil)
			_, s := openStream(t, b, "holds the only connection")
			for i := range 2 {
				call := promptCall("q"+strconv.Itoa(i), false)
				call.Deadline = time.Now().Add(tc.deadline)
				_, err := sendOnce(b, call)
				if !errors.Is(err, ErrOverloaded) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrConnect) {
					t.Fatalf("request %d with the connection busy: got %v, want ErrOverloaded", i, err)
				}
			}
			healthy := b.Healthy()
			if err := drainStream(s); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			if !healthy {
				t.Error("the gateway's own max_connections being reached ejected the target")
			}
			if _, err := sendOnce(b, promptCall("after", false)); err != nil {
				t.Errorf("with the connection free again: %v", err)
			}
		})
	}
}

func TestStateSurvivesReload(t *testing.T) {
	clk := newFakeClock()
	ps := poolsWithClock(clk)
	us := startReplicas(t, 2)
	cfg := Config{Targets: replicaURLs(us), Balance: "least_loaded", Health: HealthConfig{EjectAfter: 1}}
	old := newPoolBackend(t, cfg, ps)
	url, s := openStream(t, old, "x")
	busy := 0
	if url == us[1].url() {
		busy = 1
	}
	other := 1 - busy
	us[other].status.Store(500)
	// The stream loads one target, so least_loaded sends this to the other, whose 500
	// ejects it.
	if _, err := sendOnce(old, promptCall("y", false)); err == nil {
		t.Fatal("want the 500")
	}
	if old.Health()[other].Up {
		t.Fatal("failing target not ejected")
	}
	cfg.Balance = "round_robin"
	reloaded := newPoolBackend(t, cfg, ps)
	if h := reloaded.Health(); !h[busy].Up || h[other].Up {
		t.Fatalf("after reload: %+v, want the ejected target still out", h)
	}
	if n := reloaded.pool.states[busy].slots.n.Load(); n != 1 {
		t.Errorf("after reload the busy target has %d in flight, want the open stream", n)
	}
	_ = old.Close()
	if h := reloaded.Health(); h[other].Up {
		t.Error("closing the old backend lost the ejection")
	}
	_ = s.Close()
	_ = reloaded.Close()
	if n := len(ps.targets); n != 0 {
		t.Errorf("%d target states kept after every backend closed", n)
	}
}

func TestValidatePool(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"every key", func(c *Config) {
			c.Balance, c.Affinity = "vllm_queue", AffinityConfig{By: "prefix", Bytes: 512, LoadFactor: 1.5}
			c.Health = HealthConfig{Path: "/health", Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 2, EjectAfter: 3, EjectFor: time.Second}
			c.MaxConcurrency, c.Queue = 8, QueueConfig{Size: 16, Timeout: time.Second}
			c.FirstByteTimeout, c.StreamIdleTimeout, c.MetricsPath, c.MetricsInterval = time.Second, time.Second, "/metrics", time.Second
			c.IdleConnTimeout = 2 * time.Second
		}, nil},
		{"unknown balance", func(c *Config) { c.Balance = "random" }, []string{"balance: must be one of round_robin, least_loaded, vllm_queue"}},
		{"affinity by", func(c *Config) { c.Affinity.By = "user" }, []string{"affinity.by: must be prefix"}},
		{"affinity without by", func(c *Config) { c.Affinity.Bytes = 10 }, []string{"affinity.by: is required (prefix) when affinity is set"}},
		{"load factor under 1", func(c *Config) { c.Affinity = AffinityConfig{By: "prefix", LoadFactor: 0.5} }, []string{"affinity.load_factor: must be at least 1"}},
		{"negative bytes", func(c *Config) { c.Affinity = AffinityConfig{By: "prefix", Bytes: -1} }, []string{"affinity.bytes: must not be negative"}},
		{"health path", func(c *Config) { c.Health.Path = "health" }, []string{"health.path: must start with /"}},
		{"negative durations", func(c *Config) {
			c.Health.Interval, c.Health.Timeout, c.Health.EjectFor = -1, -1, -1
			c.FirstByteTimeout, c.StreamIdleTimeout = -1, -1
		}, []string{"health.interval: must not be negative", "health.timeout: must not be negative", "health.eject_for: must not be negative", "first_byte_timeout: must not be negative", "stream_idle_timeout: must not be negative"}},
		{"negative counts", func(c *Config) {
			c.Health.HealthyThreshold, c.Health.UnhealthyThreshold, c.Health.EjectAfter, c.MaxConcurrency = -1, -1, -1, -1
		}, []string{"health.healthy_threshold: must not be negative", "health.unhealthy_threshold: must not be negative", "health.eject_after: must not be negative", "max_concurrency: must not be negative"}},
		{"negative idle_conn_timeout", func(c *Config) { c.IdleConnTimeout = -1 }, []string{"idle_conn_timeout: must not be negative"}},
		{"queue without cap", func(c *Config) { c.Queue.Size = 4 }, []string{"queue: needs max_concurrency"}},
		{"metrics without vllm_queue", func(c *Config) { c.MetricsPath, c.MetricsInterval = "/m", time.Second }, []string{"metrics_path: is read only with balance: vllm_queue", "metrics_interval: is read only with balance: vllm_queue"}},
		{"metrics path", func(c *Config) { c.Balance, c.MetricsPath = "vllm_queue", "metrics" }, []string{"metrics_path: must start with /"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Provider: "openai", Targets: []string{"http://127.0.0.1:1/v1"}, Model: "m"}
			tc.edit(&c)
			var got []string
			if err := c.Validate(); err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("%v is not a *FieldError", e)
					}
					got = append(got, fe.Error())
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestNoHealthyTargetIsWrapped(t *testing.T) {
	b := newPoolBackend(t, Config{BaseURL: "http://127.0.0.1:1/v1"}, nil)
	st := b.pool.states[0]
	st.down.Store(true)
	st.probing.Store(true) // a trial already under way
	_, err := sendOnce(b, promptCall("x", false))
	if !errors.Is(err, ErrNoHealthyTarget) || !strings.Contains(err.Error(), "backend pool") {
		t.Fatalf("got %v, want ErrNoHealthyTarget naming the backend", err)
	}
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	if err := b.Send(promptCall("x", false), out, &res); res.Target != "" || err == nil {
		t.Errorf("target %q, err %v: want no attempt", res.Target, err)
	}
}

// sent is what an attempt made in the background came to.
type sent struct {
	url string
	err error
}

// sendAsync makes one attempt in the background.
func sendAsync(b *Backend, call *Call) <-chan sent {
	done := make(chan sent, 1)
	go func() {
		url, err := sendOnce(b, call)
		done <- sent{url, err}
	}()
	return done
}

// acquireAsync takes a lease in the background, for tests of the queue alone.
func acquireAsync(b *Backend) <-chan lease {
	done := make(chan lease, 1)
	go func() {
		l, err := b.acquire(promptCall("queued", false))
		if err != nil {
			l.i = -1
		}
		done <- l
	}()
	return done
}

type acquired struct {
	l   lease
	err error
}

func acquireErrAsync(b *Backend) <-chan acquired {
	done := make(chan acquired, 1)
	go func() {
		l, err := b.acquire(promptCall("queued", false))
		done <- acquired{l, err}
	}()
	return done
}

// The queue is the backend's: a waiting request takes the first slot freed on any of
// its targets in service, oldest request first, and never one on a target out of
// service. Bound to one target, it would be sent to that target once ejected, or time
// out with 503 upstream_overloaded while another target had room.
func TestQueueServesTheWholeBackend(t *testing.T) {
	t.Run("a slot freed on any target goes to the waiter", func(t *testing.T) {
		us := startReplicas(t, 2)
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1,
			Queue: QueueConfig{Size: 4, Timeout: 10 * time.Second}}, nil)
		streams := map[string]Events{}
		for _, p := range []string{"a", "b"} {
			url, s := openStream(t, b, p)
			streams[url] = s
		}
		defer func() {
			for _, s := range streams {
				_ = s.Close()
			}
		}()
		done := sendAsync(b, promptCall("queued", false))
		waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
		for k, u := range us {
			// Each target in turn finishes its stream: the first to do so serves
			// the waiter, whichever target it was chosen for.
			free := u.url()
			_ = drainStream(streams[free])
			_ = streams[free].Close()
			delete(streams, free)
			r := <-done
			if r.err != nil || r.url != free {
				t.Fatalf("queued request went to %q (%v), want the freed %s", r.url, r.err, free)
			}
			if k < len(us)-1 {
				_, s := openStream(t, b, "again")
				streams[free] = s
				done = sendAsync(b, promptCall("queued", false))
				waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
			}
		}
	})
	t.Run("a target ejected meanwhile gets no waiter", func(t *testing.T) {
		us := startReplicas(t, 2)
		for _, u := range us {
			u.stall.Store(true)
		}
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1,
			Queue:             QueueConfig{Size: 4, Timeout: time.Minute},
			StreamIdleTimeout: 100 * time.Millisecond,
			Health:            HealthConfig{EjectAfter: 1, EjectFor: time.Hour}}, nil)
		urlA, sA := openStream(t, b, "a")
		urlB, sB := openStream(t, b, "b")
		done := sendAsync(b, promptCall("queued", false))
		waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
		// A's stream goes silent, which ejects A and frees its slot.
		if err := drainStream(sA); !errors.Is(err, ErrTimeout) {
			t.Fatalf("stream on %s: %v", urlA, err)
		}
		_ = sA.Close()
		if b.pool.states[slices.Index(replicaURLs(us), urlA)].available() {
			t.Fatal("the silent target was not ejected")
		}
		if w := b.pool.queue.waiting.Load(); w != 1 {
			t.Fatalf("%d waiting once the ejected target freed its slot, want the request still waiting", w)
		}
		_ = sB.Close()
		if r := <-done; r.err != nil || r.url != urlB {
			t.Errorf("queued request went to %q (%v), want %s, in service", r.url, r.err, urlB)
		}
	})
	t.Run("waiters are served in arrival order across targets", func(t *testing.T) {
		b := newPoolBackend(t, Config{Targets: benchTargets(2), MaxConcurrency: 1,
			Queue: QueueConfig{Size: 1, Timeout: time.Minute}}, nil)
		b.pool.states[0].slots.n.Store(1)
		b.pool.states[1].slots.n.Store(1)
		var waiters []<-chan lease
		for k := range 2 {
			waiters = append(waiters, acquireAsync(b))
			waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == int64(k+1) })
		}
		// Size 1 per target: two targets queue two.
		if _, err := b.acquire(promptCall("third", false)); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("third waiter: got %v, want ErrOverloaded", err)
		}
		for k, i := range []int{1, 0} {
			b.pool.free(i)
			if l := <-waiters[k]; l.i != i || !l.queued {
				t.Fatalf("waiter %d got %+v, want the slot freed on target %d", k, l, i)
			}
		}
		if n0, n1 := b.pool.states[0].slots.n.Load(), b.pool.states[1].slots.n.Load(); n0 != 1 || n1 != 1 {
			t.Errorf("slots taken %d/%d, want one on each", n0, n1)
		}
	})
	t.Run("a slot handed over as its target leaves service goes back", func(t *testing.T) {
		b := newPoolBackend(t, Config{Targets: benchTargets(2), MaxConcurrency: 1,
			Queue: QueueConfig{Size: 1, Timeout: time.Minute}}, nil)
		st0, st1, q := b.pool.states[0], b.pool.states[1], b.pool.queue
		st0.slots.n.Store(1)
		st1.slots.n.Store(1)
		first := acquireAsync(b)
		waitUntil(t, "the first request queues", func() bool { return q.waiting.Load() == 1 })
		second := acquireAsync(b)
		waitUntil(t, "the second request queues", func() bool { return q.waiting.Load() == 2 })
		// Target 0 is ejected just as its slot goes to the first waiter: serve looked
		// before the ejection, the waiter wakes after it.
		st0.eject(time.Now(), &b.pool.set, false)
		q.mu.Lock()
		q.hand(0, 0)
		q.mu.Unlock()
		waitUntil(t, "the slot goes back and the waiter waits again", func() bool {
			return st0.slots.n.Load() == 0 && q.waiting.Load() == 2
		})
		// It waits first in line still.
		b.pool.free(1)
		if l := <-first; l.i != 1 || !l.queued {
			t.Fatalf("first waiter got %+v, want target 1", l)
		}
		b.pool.free(1)
		if l := <-second; l.i != 1 || !l.queued {
			t.Fatalf("second waiter got %+v, want target 1", l)
		}
	})
	t.Run("waiters are let go once no target is in service", func(t *testing.T) {
		for _, how := range []string{"ejected", "found down"} {
			t.Run(how, func(t *testing.T) {
				b := newPoolBackend(t, Config{Targets: benchTargets(2), MaxConcurrency: 1,
					Queue:  QueueConfig{Size: 2, Timeout: time.Hour},
					Health: HealthConfig{Path: "/health", EjectAfter: 1, EjectFor: time.Hour, UnhealthyThreshold: 1}}, nil)
				st0, st1, q := b.pool.states[0], b.pool.states[1], b.pool.queue
				st0.slots.n.Store(1)
				st1.slots.n.Store(1)
				var waiters []<-chan acquired
				for k := range 3 {
					waiters = append(waiters, acquireErrAsync(b))
					waitUntil(t, "the request queues", func() bool { return q.waiting.Load() == int64(k+1) })
				}
				out := func(i int) {
					if how == "ejected" {
						b.report(lease{i: i}, failure)
						b.pool.free(i)
						return
					}
					refusing, err := freeport.Hold()
					if err != nil {
						t.Fatal(err)
					}
					defer refusing.Close()
					b.pool.checkers[i].Addr = refusing.Addr()
					b.pool.healthURLs[i] = "http://" + refusing.Addr() + "/health"
					b.check(i)
					if b.pool.states[i].available() {
						t.Fatal("a failed check did not take the target out")
					}
				}
				out(0)
				if st0.available() || q.waiting.Load() != 3 {
					t.Fatalf("target 0 available %v, %d waiting: want it out and all still waiting for target 1", st0.available(), q.waiting.Load())
				}
				out(1)
				// Each goes on as a call arriving now would: a target out of service
				// with a free slot takes one as its last resort, once; the rest find
				// no target. Ejected, both slots were freed by the failed attempts;
				// found down, both stay held by requests in flight.
				wantProbes := 2
				if how == "found down" {
					wantProbes = 0
				}
				var probes, none int
				for k, w := range waiters {
					select {
					case r := <-w:
						switch {
						case r.err == nil && r.l.probe:
							probes++
						case errors.Is(r.err, ErrNoHealthyTarget):
							none++
						default:
							t.Errorf("waiter %d: %+v %v", k, r.l, r.err)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("waiter %d still waiting with no target in service", k)
					}
				}
				if probes != wantProbes || none != 3-wantProbes || q.waiting.Load() != 0 {
					t.Errorf("%d probes, %d with no target, %d waiting; want %d, %d, 0", probes, none, q.waiting.Load(), wantProbes, 3-wantProbes)
				}
			})
		}
	})
	for _, back := range []string{"a passing check", "a successful trial"} {
		t.Run("a target back in service after "+back+" takes the waiters", func(t *testing.T) {
			clk := newFakeClock()
			b := newPoolBackend(t, Config{Targets: benchTargets(2), MaxConcurrency: 2,
				Queue:  QueueConfig{Size: 4, Timeout: time.Minute},
				Health: HealthConfig{Path: "/health", EjectFor: time.Second}}, poolsWithClock(clk))
			b.pool.states[0].eject(clk.Now(), &b.pool.set, false)
			b.pool.states[1].slots.n.Store(2)
			w := acquireAsync(b)
			waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
			clk.Advance(time.Hour)
			if back == "a passing check" {
				h := startReplica(t) // answers /health
				b.pool.checkers[0].Addr = h.addr
				b.pool.healthURLs[0] = "http://" + h.addr + "/health"
				b.check(0)
			} else {
				// A request arriving hands the trial to the one waiting, and waits
				// behind it.
				next := acquireAsync(b)
				l := <-w
				if !l.probe || l.i != 0 {
					t.Fatalf("waiter got %+v, want the trial of target 0", l)
				}
				waitUntil(t, "the later request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
				b.report(l, success)
				defer b.pool.free(l.i)
				w = next
			}
			if l := <-w; l.i != 0 {
				t.Errorf("waiter got %+v, want target 0, back in service", l)
			}
		})
	}
	t.Run("a slot freed by the backend a reload replaced goes to the new one's waiter", func(t *testing.T) {
		u := startReplica(t)
		ps := NewPools()
		cfg := Config{BaseURL: u.url(), MaxConcurrency: 1, Queue: QueueConfig{Size: 1, Timeout: 10 * time.Second}}
		old := newPoolBackend(t, cfg, ps)
		_, s := openStream(t, old, "a")
		reloaded := newPoolBackend(t, cfg, ps)
		done := sendAsync(reloaded, promptCall("queued", false))
		waitUntil(t, "the request queues", func() bool { return reloaded.pool.queue.waiting.Load() == 1 })
		_ = old.Close()
		_ = drainStream(s)
		_ = s.Close()
		if r := <-done; r.err != nil {
			t.Errorf("queued request: %v", r.err)
		}
	})
}

// A target whose load cannot be read has only this gateway's in-flight count, on a
// smaller scale than vLLM's score (a waiting request counts four times, other clients
// not at all): it ranks after every target with a fresh read, and not as the idlest.
func TestVLLMQueueRanksUnreadTargetsLast(t *testing.T) {
	cases := []struct {
		name string
		// setup reads the targets' load, or not.
		setup func(b *Backend, clk *fakeClock)
		want  [2]int // of 4 new requests
	}{
		{"metrics not found", func(b *Backend, clk *fakeClock) {
			b.pool.loadURLs[1] += "-not-here"
			b.readLoad(0, nil)
			b.readLoad(1, nil)
		}, [2]int{4, 0}},
		{"read gone stale", func(b *Backend, clk *fakeClock) {
			b.readLoad(1, nil)
			clk.Advance(staleReads*time.Second + time.Millisecond)
			b.readLoad(0, nil)
		}, [2]int{4, 0}},
		{"read just in time", func(b *Backend, clk *fakeClock) {
			b.readLoad(1, nil)
			clk.Advance(staleReads * time.Second)
			b.readLoad(0, nil)
		}, [2]int{0, 4}},
		{"none read: by in-flight count", func(b *Backend, clk *fakeClock) {
			b.pool.states[1].slots.n.Store(2)
		}, [2]int{0, 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			us := startReplicas(t, 2)
			// Target 0 runs 4 and queues 2: the 6 this gateway sent it. Target 1
			// reports itself idle.
			us[0].running.Store(4)
			us[0].waiting.Store(2)
			b := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: "vllm_queue"}, poolsWithClock(clk))
			b.pool.states[0].slots.n.Store(6)
			b.pool.states[1].slots.n.Store(7)
			tc.setup(b, clk)
			var got [2]int
			for range 4 {
				i := b.leastQueued()
				got[i]++
				b.pool.states[i].slots.n.Add(1)
			}
			b.pool.states[0].slots.n.Store(0)
			b.pool.states[1].slots.n.Store(0)
			if got != tc.want {
				t.Errorf("4 new requests went %v, want %v", got, tc.want)
			}
		})
	}
}

// Time the gateway's own queue took is not the target's: an attempt that spent half its
// time or more waiting for its slot and then reached the call's deadline before the
// answer came does not count against the target. Without the wait, after a short one
// (a hung target holding every slot makes every later call queue a little), or when
// first_byte_timeout fired first, it does.
func TestQueueSpentDeadlineIsNoFailure(t *testing.T) {
	cases := []struct {
		name      string
		queued    time.Duration // how long the call waits in the queue; 0: not queued
		firstByte time.Duration
		deadline  time.Duration
		wantUp    bool
	}{
		{"queued most of the time, the call's deadline runs out", 200 * time.Millisecond, 0, 300 * time.Millisecond, true},
		{"queued briefly, the call's deadline runs out", time.Millisecond, 0, 300 * time.Millisecond, false},
		{"not queued, the call's deadline runs out", 0, 0, 300 * time.Millisecond, false},
		{"queued, first_byte_timeout fires first", time.Millisecond, 50 * time.Millisecond, 5 * time.Second, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := startReplica(t)
			u.delay.Store(int64(time.Minute)) // healthy, but busy
			b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1, FirstByteTimeout: tc.firstByte,
				Queue:  QueueConfig{Size: 4, Timeout: 5 * time.Second},
				Health: HealthConfig{EjectAfter: 1, EjectFor: time.Hour}}, nil)
			if tc.queued > 0 {
				b.pool.states[0].slots.n.Store(1) // an answer in flight holds the only slot
			}
			call := promptCall("x", false)
			call.Deadline = time.Now().Add(tc.deadline)
			done := sendAsync(b, call)
			if tc.queued > 0 {
				waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
				time.Sleep(tc.queued)
				b.pool.free(0) // the answer in flight ends
			}
			if r := <-done; !errors.Is(r.err, ErrTimeout) {
				t.Fatalf("got %v, want ErrTimeout", r.err)
			}
			if up := b.Healthy(); up != tc.wantUp {
				t.Errorf("up %v, want %v", up, tc.wantUp)
			}
		})
	}
}
