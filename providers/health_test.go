package providers

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

func TestKilledTargetIsEjectedAndComesBack(t *testing.T) {
	clk := newFakeClock()
	us := startReplicas(t, 3)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{EjectAfter: 2, EjectFor: 10 * time.Second}}, poolsWithClock(clk))
	dead := us[1].url()
	us[1].kill()

	failed := 0
	for i := range 12 {
		url, err := sendOnce(b, promptCall("q"+strconv.Itoa(i), false))
		if err != nil {
			if url != dead || !errors.Is(err, ErrConnect) {
				t.Fatalf("request %d to %s: %v", i, url, err)
			}
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("%d requests failed, want eject_after = 2", failed)
	}
	if h := b.Health(); h[1].Up || !h[0].Up || !h[2].Up || !b.Healthy() {
		t.Fatalf("health %+v, want only the killed target down", h)
	}
	// While ejected, picks skip it.
	before := us[0].hits.Load() + us[2].hits.Load()
	for i := range 20 {
		if url, err := sendOnce(b, promptCall("r"+strconv.Itoa(i), i%2 == 0)); err != nil || url == dead {
			t.Fatalf("request to %s: %v", url, err)
		}
	}
	if got := us[0].hits.Load() + us[2].hits.Load() - before; got != 20 {
		t.Errorf("live targets took %d of 20", got)
	}

	// The ejection runs out while the target is still dead: its one trial fails and
	// it is out for twice as long.
	clk.Advance(10 * time.Second)
	if url, err := sendOnce(b, promptCall("probe", false)); url != dead || !errors.Is(err, ErrConnect) {
		t.Fatalf("trial went to %s (%v), want the ejected target", url, err)
	}
	clk.Advance(10 * time.Second)
	if url, _ := sendOnce(b, promptCall("x", false)); url == dead {
		t.Fatal("tried again before the doubled ejection ran out")
	}

	// It recovers: the next trial brings it back and it takes its share again.
	us[1].restart()
	clk.Advance(10 * time.Second)
	if url, err := sendOnce(b, promptCall("probe", false)); url != dead || err != nil {
		t.Fatalf("trial went to %s (%v), want the recovered target", url, err)
	}
	if !b.Health()[1].Up {
		t.Fatal("recovered target still down")
	}
	before = us[1].hits.Load()
	for i := range 30 {
		if _, err := sendOnce(b, promptCall("s"+strconv.Itoa(i), false)); err != nil {
			t.Fatal(err)
		}
	}
	if got := us[1].hits.Load() - before; got != 10 {
		t.Errorf("recovered target took %d of 30, want its third", got)
	}
}

func TestEjectionLength(t *testing.T) {
	set := settingsOf(&Config{Health: HealthConfig{EjectFor: time.Second}})
	clk := newFakeClock()
	st := &targetState{}
	cases := []struct {
		name  string
		probe bool
		gap   time.Duration // from the last return to service
		want  time.Duration
	}{
		{"first", false, 0, time.Second},
		{"trial failed", true, 0, 2 * time.Second},
		{"trial failed again", true, 0, 4 * time.Second},
		{"again", true, 0, 8 * time.Second},
		{"capped", true, 0, 10 * time.Second},
		{"soon after coming back", false, time.Second, 10 * time.Second},
		{"after serving long enough", false, 10 * time.Second, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.gap > 0 {
				st.restore(clk.Now())
				clk.Advance(tc.gap)
			}
			st.eject(clk.Now(), &set, tc.probe)
			if got := time.Duration(st.until.Load() - clk.Now().UnixNano()); got != tc.want {
				t.Errorf("ejected for %v, want %v", got, tc.want)
			}
		})
	}
}

// A target that keeps failing its trials is ejected again and again. The length
// doubles up to ten times eject_for and stays there: it never overflows to a negative
// length that would try the dead target again at once.
func TestEjectionLengthStopsAtTheCap(t *testing.T) {
	for _, ejectFor := range []time.Duration{30 * time.Second, 10 * time.Minute} {
		t.Run(ejectFor.String(), func(t *testing.T) {
			set := settingsOf(&Config{Health: HealthConfig{EjectFor: ejectFor}})
			clk := newFakeClock()
			st := &targetState{}
			for n := 1; n <= 100; n++ {
				st.eject(clk.Now(), &set, n > 1)
				got := time.Duration(st.until.Load() - clk.Now().UnixNano())
				want := min(ejectFor<<min(n-1, 10), 10*ejectFor)
				if got != want {
					t.Fatalf("ejection %d lasts %v, want %v", n, got, want)
				}
				clk.Advance(got)
			}
		})
	}
}

func TestEveryTargetOutTriesOneAtATime(t *testing.T) {
	clk := newFakeClock()
	u := startReplica(t)
	b := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{EjectAfter: 2}}, poolsWithClock(clk))
	u.status.Store(503)
	for range 2 {
		if _, err := sendOnce(b, promptCall("x", false)); err == nil {
			t.Fatal("want a 503")
		}
	}
	if b.Healthy() {
		t.Fatal("not ejected after two 503s")
	}
	// Its ejection has not run out, but it is the only target: one request tries it.
	u.status.Store(200)
	release := u.holdAnswers()
	trial := make(chan error, 1)
	go func() {
		_, err := sendOnce(b, promptCall("trial", false))
		trial <- err
	}()
	waitUntil(t, "the trial reaches the upstream", func() bool { return u.hits.Load() == 3 })
	if _, err := sendOnce(b, promptCall("y", false)); !errors.Is(err, ErrNoHealthyTarget) {
		t.Fatalf("second request during the trial: got %v, want ErrNoHealthyTarget", err)
	}
	release()
	if err := <-trial; err != nil {
		t.Fatalf("trial: %v", err)
	}
	if !b.Healthy() {
		t.Fatal("a successful trial did not bring the target back")
	}
}

// An ejection that has run out counts as up for Health and Healthy (so /readyz and
// tollgate_backend_up) before any request tries the target: a gateway taken out of
// its load balancer while unready gets no request to try it with. Routing stays
// half-open: one trial at a time until one succeeds, unless a passing active check
// ends the ejection first.
func TestExpiredEjectionCountsUp(t *testing.T) {
	cases := []struct {
		name string
		// health is what /health answers; 0 runs no active checks.
		health int
		// after is how long after the ejection the checks run.
		after         time.Duration
		wantUp        bool
		wantInService bool
	}{
		{"no checks, run out", 0, time.Hour, true, false},
		{"no checks, not run out", 0, time.Second / 2, false, false},
		{"a check passes once it has run out", 200, time.Hour, true, true},
		{"a check passes before it has run out", 200, time.Second / 2, false, false},
		{"checks find it down", 503, time.Hour, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			u := startReplica(t)
			cfg := Config{BaseURL: u.url(), Health: HealthConfig{EjectAfter: 1, EjectFor: time.Second, UnhealthyThreshold: 1}}
			if tc.health != 0 {
				cfg.Health.Path = "/health"
			}
			b := newPoolBackend(t, cfg, poolsWithClock(clk))
			u.status.Store(500)
			if _, err := sendOnce(b, promptCall("x", false)); err == nil {
				t.Fatal("want the 500")
			}
			if b.Healthy() || b.Health()[0].Up {
				t.Fatal("not ejected")
			}
			u.status.Store(200) // it recovers
			clk.Advance(tc.after)
			if tc.health != 0 {
				u.health.Store(int64(tc.health))
				b.check(0)
			}
			if up := b.Healthy(); up != tc.wantUp || b.Health()[0].Up != up {
				t.Errorf("Healthy %v, Health %+v: want up %v", up, b.Health(), tc.wantUp)
			}
			if got := b.pool.states[0].available(); got != tc.wantInService {
				t.Fatalf("in service %v, want %v", got, tc.wantInService)
			}
			if !tc.wantUp || tc.wantInService {
				return
			}
			// Up but not back in service: the next request is its one trial, and
			// another meanwhile finds no target.
			l, err := b.acquire(promptCall("trial", false))
			if err != nil || !l.probe {
				t.Fatalf("got %+v %v, want the trial", l, err)
			}
			if _, err := b.acquire(promptCall("meanwhile", false)); !errors.Is(err, ErrNoHealthyTarget) {
				t.Errorf("during the trial: got %v, want ErrNoHealthyTarget", err)
			}
			_ = b.settle(l, nil, &Result{})
			if !b.pool.states[0].available() {
				t.Error("a successful trial did not bring it back")
			}
		})
	}
}

func TestStreamOutcomeCounts(t *testing.T) {
	clk := newFakeClock()
	u := startReplica(t)
	u.stall.Store(true)
	b := newPoolBackend(t, Config{BaseURL: u.url(), StreamIdleTimeout: 20 * time.Millisecond, Health: HealthConfig{EjectAfter: 2}}, poolsWithClock(clk))
	for range 2 {
		if _, err := sendOnce(b, promptCall("x", true)); !errors.Is(err, ErrTimeout) {
			t.Fatalf("got %v, want ErrTimeout", err)
		}
	}
	if b.Healthy() {
		t.Error("two streams that went silent did not eject the target")
	}
	if n := b.pool.states[0].slots.n.Load(); n != 0 {
		t.Errorf("%d slots still taken", n)
	}
}

func TestActiveChecks(t *testing.T) {
	u := startReplica(t)
	b := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{Path: "/health", HealthyThreshold: 2, UnhealthyThreshold: 3}}, nil)
	steps := []struct {
		status int
		wantUp bool
	}{
		{200, true}, {503, true}, {503, true}, {503, false}, {200, false}, {503, false}, {200, false}, {200, true},
	}
	for i, s := range steps {
		u.health.Store(int64(s.status))
		b.check(0)
		if up := b.Healthy(); up != s.wantUp {
			t.Fatalf("after check %d (%d): up %v, want %v", i, s.status, up, s.wantUp)
		}
	}
	u.kill()
	for range 3 {
		b.check(0)
	}
	if b.Healthy() {
		t.Error("an unreachable target passes its checks")
	}
}

// What active checks found survives a reload that keeps them, but not one that turns
// them off: only a check brings back a target that checks took down, so once the last
// backend running them is closed, the target is back in service.
func TestReloadTurningActiveChecksOffForgetsDown(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run("checks kept "+strconv.FormatBool(keep), func(t *testing.T) {
			clk := newFakeClock()
			ps := poolsWithClock(clk)
			us := startReplicas(t, 2)
			checks := HealthConfig{Path: "/health", UnhealthyThreshold: 1}
			old := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: checks}, ps)
			us[0].health.Store(503)
			old.check(0)
			if old.Health()[0].Up {
				t.Fatal("active check did not take the target down")
			}
			us[0].health.Store(200) // it recovers

			cfg := Config{Targets: replicaURLs(us)}
			if keep {
				cfg.Health = checks
			}
			reloaded := newPoolBackend(t, cfg, ps)
			if reloaded.Health()[0].Up {
				t.Fatal("the reload lost what the running backend's checks found")
			}
			_ = old.Close() // retired once its requests end
			clk.Advance(time.Hour)
			before := us[0].hits.Load()
			for i := range 20 {
				if _, err := sendOnce(reloaded, promptCall("q"+strconv.Itoa(i), false)); err != nil {
					t.Fatal(err)
				}
			}
			got := us[0].hits.Load() - before
			if keep {
				if got != 0 || reloaded.Health()[0].Up {
					t.Errorf("with checks kept, the target its checks took down got %d of 20 requests", got)
				}
				reloaded.check(0)
				reloaded.check(0)
				if !reloaded.Health()[0].Up {
					t.Error("passing checks did not bring the target back")
				}
				return
			}
			if got != 10 || !reloaded.Health()[0].Up {
				t.Errorf("after the reload turned active checks off, the recovered target got %d of 20 requests (want its half) and is up=%v",
					got, reloaded.Health()[0].Up)
			}
		})
	}
}

func TestVerdictOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want verdict
	}{
		{"ok", nil, success},
		{"4xx", &UpstreamError{Status: 400}, success},
		{"429", &UpstreamError{Status: 429}, success},
		{"5xx", &UpstreamError{Status: 502}, failure},
		{"timeout", classify(os.ErrDeadlineExceeded), failure},
		{"refused", classify(errors.New("connection refused")), failure},
		{"cut stream", ErrStreamCut, failure},
		{"stream gone silent", errors.Join(ErrStreamCut, classify(os.ErrDeadlineExceeded)), failure},
		{"stream cut by the attempt's deadline", errors.Join(ErrStreamCut, classify(errAttemptDeadline)), neutral},
		{"answer not begun by the attempt's deadline", classify(errAttemptDeadline), failure},
		{"max_connections busy", classify(fasthttp.ErrNoFreeConns), neutral},
		{"max_concurrency full", ErrOverloaded, neutral},
		{"not the API", ErrBadResponse, failure},
		{"unsupported", ErrUnsupported, neutral},
		{"client went away", io.ErrClosedPipe, neutral},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := verdictOf(tc.err); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestStartCloseLeavesNoGoroutine(t *testing.T) {
	us := startReplicas(t, 2)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		// fasthttp's housekeeping ends by itself once idle: the client's reapers of
		// idle connections and cached addresses, the test servers' idle workers.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	b, err := NewWith("pool", Config{Provider: "openai", Model: "up", Targets: replicaURLs(us), Balance: "vllm_queue",
		MetricsInterval: 5 * time.Millisecond, Health: HealthConfig{Interval: 5 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Start(ctx)
	b.Start(ctx)
	waitUntil(t, "the load is read", func() bool { return b.pool.states[0].load.ok.Load() && b.pool.states[1].load.ok.Load() })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.Start(ctx) // after Close: nothing
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
