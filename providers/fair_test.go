package providers

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// tenantOf names a call's tenant, whatever the fairness asked.
type tenantOf string

func (t tenantOf) Tenant(Fair) []byte { return []byte(t) }

// served is a queued call's lease, or its error, by the call's name.
type served struct {
	name string
	l    lease
	err  error
}

// fairBackend is a backend of one target at max_concurrency 1 whose one slot the test
// holds, with the given queue.
func fairBackend(t *testing.T, q QueueConfig) (*Backend, lease) {
	t.Helper()
	us := startReplicas(t, 1)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1, Queue: q}, nil)
	l, err := b.acquire(promptCall("holder", false))
	if err != nil {
		t.Fatal(err)
	}
	return b, l
}

// queueCalls queues one call per name, in that order (each waits before the next
// arrives), each of its tenant: a name's letters before its digits.
func queueCalls(t *testing.T, b *Backend, names ...string) <-chan served {
	t.Helper()
	out := make(chan served, len(names))
	for _, name := range names {
		before := b.pool.queue.waiting.Load()
		queueAsync(b, name, out)
		waitUntil(t, name+" queues", func() bool { return b.pool.queue.waiting.Load() > before })
	}
	return out
}

// queueAsync has the call named name, of the tenant its letters name, take a slot.
func queueAsync(b *Backend, name string, out chan<- served) {
	c := promptCall(name, false)
	c.Tenants = tenantOf(strings.TrimRight(name, "0123456789"))
	go func() {
		l, err := b.acquire(c)
		out <- served{name, l, err}
	}()
}

// serveAll frees the slot held, then each slot it is handed in turn, and returns the
// order the waiters were served in.
func serveAll(t *testing.T, b *Backend, held lease, out <-chan served, n int) []string {
	t.Helper()
	var order []string
	b.done(held.i)
	for range n {
		select {
		case s := <-out:
			if s.err != nil {
				t.Fatalf("%s: %v", s.name, s.err)
			}
			order = append(order, s.name)
			b.done(s.l.i)
		case <-time.After(10 * time.Second):
			t.Fatalf("served %v, then no one", order)
		}
	}
	return order
}

// README, Replica pools: with queue.fair the slots freed go to the tenants waiting in
// turn: a tenant's flood queued first waits behind its own requests, not in front of
// those of the tenants arriving after it.
func TestFairQueueServesTenantsInTurn(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 16, Timeout: time.Minute, Fair: "api_key"})
	out := queueCalls(t, b, "a1", "a2", "a3", "a4", "a5", "a6", "b1", "b2", "c1")
	got := serveAll(t, b, held, out, 9)
	want := []string{"a1", "b1", "c1", "a2", "b2", "a3", "a4", "a5", "a6"}
	if !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
}

// Without queue.fair the queue stays in arrival order.
func TestQueueWithoutFairIsArrivalOrder(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 16, Timeout: time.Minute})
	names := []string{"a1", "a2", "a3", "b1", "b2", "c1"}
	out := queueCalls(t, b, names...)
	if got := serveAll(t, b, held, out, len(names)); !slices.Equal(got, names) {
		t.Fatalf("served %v, want arrival order %v", got, names)
	}
}

// queue.weights: a tenant of weight 2 is handed two slots for each of a tenant of
// weight 1 while both wait.
func TestFairQueueWeights(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 16, Timeout: time.Minute, Fair: "user", Weights: map[string]int{"b": 2}})
	out := queueCalls(t, b, "a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4", "b5", "b6")
	got := serveAll(t, b, held, out, 10)
	want := []string{"b1", "a1", "b2", "b3", "a2", "b4", "b5", "a3", "b6", "a4"}
	if !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
}

// A tenant that comes back after its requests were served starts level with the
// queue, not with credit for the time it had nothing waiting.
func TestFairQueueTenantComesBackLevel(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 16, Timeout: time.Minute, Fair: "api_key"})
	out := queueCalls(t, b, "a1", "a2", "a3", "a4", "a5")
	b.done(held.i)
	// a1 to a3 are served and done; a4 is handed the slot and holds it.
	for range 3 {
		s := <-out
		b.done(s.l.i)
	}
	s := <-out
	if s.name != "a4" {
		t.Fatalf("served %s, want a4", s.name)
	}
	// b, idle all along, comes now: it goes before a5, which waited, but only one
	// request's turn ahead, not three.
	out2 := queueCalls(t, b, "b1", "b2", "b3")
	got := serveAll(t, b, s.l, mergeServed(out, out2), 4)
	want := []string{"b1", "a5", "b2", "b3"}
	if !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
}

func mergeServed(a, b <-chan served) <-chan served {
	out := make(chan served)
	for _, c := range []<-chan served{a, b} {
		go func() {
			for s := range c {
				out <- s
			}
		}()
	}
	return out
}

// A full fair queue makes room for a tenant with fewer requests waiting: the newest
// request of the tenant with the most gives up its place (503 upstream_overloaded),
// until the two have as many waiting; then the newcomer is refused, as in a full queue
// without fairness. The outcomes are counted.
func TestFairQueuePushesOutTheLargestTenant(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 4, Timeout: time.Minute, Fair: "api_key"})
	out := queueCalls(t, b, "a1", "a2", "a3", "a4")
	// The queue holds 4: each newcomer of b takes the place of a's newest, under the
	// queue's lock, so that b's next cannot arrive before it is in line.
	bs := make(chan served, 2)
	queueAsync(b, "b1", bs)
	s := <-out
	if s.name != "a4" || !errors.Is(s.err, ErrOverloaded) {
		t.Fatalf("%s: %v, want a4 pushed out with ErrOverloaded", s.name, s.err)
	}
	queueAsync(b, "b2", bs)
	if s = <-out; s.name != "a3" || !errors.Is(s.err, ErrOverloaded) {
		t.Fatalf("%s: %v, want a3 pushed out with ErrOverloaded", s.name, s.err)
	}
	// Two each now: b3 is refused.
	c := promptCall("b3", false)
	c.Tenants = tenantOf("b")
	if _, err := b.acquire(c); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("b3: %v, want ErrOverloaded", err)
	}
	got := serveAll(t, b, held, mergeServed(out, bs), 4)
	if want := []string{"a1", "b1", "a2", "b2"}; !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
	st := b.QueueStats()
	if st.Outcomes[QueuePushedOut] != 2 || st.Outcomes[QueueFull] != 1 || st.Outcomes[QueueServed] != 4 {
		t.Fatalf("outcomes %v, want 2 pushed out, 1 full, 4 served", st.Outcomes)
	}
	if st.Waiting != 0 || st.Tenants != 0 {
		t.Fatalf("waiting %d in %d tenants, want none", st.Waiting, st.Tenants)
	}
	if n := st.WaitCounts[len(st.WaitCounts)-1]; n != 4 || st.WaitSum <= 0 {
		t.Fatalf("wait histogram counts %d (sum %v), want the 4 served", n, st.WaitSum)
	}
}

// A tenant whose newest request leaves the queue (its deadline) gives its turn back:
// the requests it queues next are not put behind the one that left.
func TestFairQueueTimeoutGivesTurnBack(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 16, Timeout: time.Minute, Fair: "api_key"})
	out := queueCalls(t, b, "a1", "b1")
	short := promptCall("a2", false)
	short.Tenants = tenantOf("a")
	short.Deadline = time.Now().Add(50 * time.Millisecond)
	if _, err := b.acquire(short); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a2: %v, want ErrOverloaded once its deadline ran out", err)
	}
	out2 := queueCalls(t, b, "c1", "a3")
	got := serveAll(t, b, held, mergeServed(out, out2), 4)
	// a3 takes the turn a2 gave back: level with b1 and c1's first, after them by
	// arrival.
	if want := []string{"a1", "b1", "c1", "a3"}; !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
	st := b.QueueStats()
	if st.Outcomes[QueueTimeout] != 1 || st.Outcomes[QueueServed] != 4 {
		t.Fatalf("outcomes %v, want 1 timeout and 4 served", st.Outcomes)
	}
}

// A call without Tenants (or whose tenant is empty) is one tenant with the others
// like it.
func TestFairQueueWithoutTenants(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 16, Timeout: time.Minute, Fair: "ip"})
	out := make(chan served, 3)
	for _, name := range []string{"x1", "x2", "x3"} {
		c := promptCall(name, false)
		before := b.pool.queue.waiting.Load()
		go func() {
			l, err := b.acquire(c)
			out <- served{name, l, err}
		}()
		waitUntil(t, name+" queues", func() bool { return b.pool.queue.waiting.Load() > before })
	}
	if st := b.QueueStats(); st.Tenants != 1 || st.Waiting != 3 {
		t.Fatalf("%d waiting in %d tenants, want 3 in 1", st.Waiting, st.Tenants)
	}
	if got := serveAll(t, b, held, out, 3); !slices.Equal(got, []string{"x1", "x2", "x3"}) {
		t.Fatalf("served %v, want arrival order", got)
	}
}

func TestQueueFairConfig(t *testing.T) {
	for _, tc := range []struct {
		q    QueueConfig
		conc int
		want string
	}{
		{QueueConfig{Fair: "team"}, 4, "queue.fair: must be one of api_key, user, endpoint (or model), ip"},
		{QueueConfig{Weights: map[string]int{"a": 2}}, 4, "queue.weights: needs queue.fair"},
		{QueueConfig{Fair: "api_key", Weights: map[string]int{"a": 0}}, 4, "queue.weights.a: must be a whole number from 1 to 1000"},
		{QueueConfig{Fair: "api_key", Weights: map[string]int{"a": 1001}}, 4, "queue.weights.a: must be a whole number from 1 to 1000"},
		{QueueConfig{Fair: "user"}, 0, "queue: needs max_concurrency"},
	} {
		c := Config{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1", Model: "m", MaxConcurrency: tc.conc, Queue: tc.q}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.q, err, tc.want)
		}
	}
	for _, f := range []string{"api_key", "user", "endpoint", "model", "ip"} {
		name := "a"
		if f == "ip" {
			name = "2001:DB8:1:2::/64"
		}
		c := Config{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1", Model: "m", MaxConcurrency: 4,
			Queue: QueueConfig{Size: 8, Fair: f, Weights: map[string]int{name: 1000}}}
		if err := c.Validate(); err != nil {
			t.Errorf("fair %s: %v", f, err)
		}
	}
	c := Config{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1", Model: "m", MaxConcurrency: 4,
		Queue: QueueConfig{Size: 8, Fair: "ip", Weights: map[string]int{"team-a": 2}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "queue.weights.team-a: is no IP address") {
		t.Errorf("fair ip with a weight for team-a: %v", err)
	}
	for name, want := range map[string]string{"2001:DB8::1": "2001:db8::1", "::ffff:10.0.0.1": "10.0.0.1",
		"2001:db8:1:2::5/64": "2001:db8:1:2::", "10.0.0.1": "10.0.0.1"} {
		if got, ok := ipTenant(name); !ok || got != want {
			t.Errorf("ipTenant(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}
