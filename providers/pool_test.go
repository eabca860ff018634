package providers

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
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
	// A failed read falls back to this gateway's own count.
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
		if w := b.pool.states[0].slots.waiting.Load(); w != 0 {
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
		waitUntil(t, "the second request waits", func() bool { return st.slots.waiting.Load() == 1 })
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
		u.gap.Store(int64(40 * time.Millisecond))
		b := newPoolBackend(t, Config{BaseURL: u.url(), FirstByteTimeout: 100 * time.Millisecond, StreamIdleTimeout: 100 * time.Millisecond}, nil)
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

func TestPromptPrefix(t *testing.T) {
	cases := []struct {
		name string
		kind Kind
		body string
		n    int
		want string
	}{
		{"messages", Chat, `{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"u"}`, 100, `[{"role":"user","content":"hi"}]`},
		{"cut at n", Chat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, 10, `[{"role":"`},
		{"after a long member", Chat, `{"tools":[{"x":"]}\"{"}],  "messages" : ["a"] }`, 100, `["a"]`},
		{"prompt string", Completions, `{"prompt":"say \"hi\"","model":"m"}`, 100, `"say \"hi\""`},
		{"prompt tokens", Completions, `{"prompt":[1,2,3]}`, 100, `[1,2,3]`},
		{"input number", Embeddings, `{"input": 12 , "model":"m"}`, 100, `12`},
		{"input last", Embeddings, `{"model":"m","input":true}`, 100, `true`},
		{"no prompt", Chat, `{"model":"m","prompt":"x"}`, 100, ""},
		{"nested key not top level", Chat, `{"x":{"messages":[1]}}`, 100, ""},
		{"not an object", Chat, `["messages"]`, 100, ""},
		{"zero bytes", Chat, `{"messages":[1]}`, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := promptPrefix(&Call{Kind: tc.kind, Body: []byte(tc.body)}, tc.n)
			if string(got) != tc.want || (tc.want == "" && got != nil) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzPromptPrefix checks the bounded scan against the full one: on any JSON object,
// the prefix is the first n bytes of the member's value as jsonscan reads it.
func FuzzPromptPrefix(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi \"there\" [{"}]}`), uint16(20))
	f.Add([]byte(`{"messages": "a\\"b" }`), uint16(3))
	f.Add([]byte(`{"messages":-1.5e3}`), uint16(100))
	f.Add([]byte(`{"a":[{}],"messages":null,"messages":[2]}`), uint16(100))
	f.Fuzz(func(t *testing.T, body []byte, n uint16) {
		got := promptPrefix(&Call{Kind: Chat, Body: body}, int(n))
		if len(got) > int(n) {
			t.Fatalf("prefix of %d bytes, bound %d", len(got), n)
		}
		if !jsonscan.Valid(body) {
			return
		}
		v, ok := jsonscan.Field(body, "messages")
		want := []byte(nil)
		if ok && n > 0 {
			want = v[:min(len(v), int(n))]
		}
		if !bytes.Equal(got, want) || (want == nil) != (got == nil) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}
