package limiter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// holdRounds keeps l from sending rounds until the returned function is called, as a
// round stuck on a slow Redis does: checks queued meanwhile wait, and their requests
// stop waiting at the timeout.
func holdRounds(t *testing.T, l *Limiter) (resume func()) {
	t.Helper()
	for !l.rs.busy.CompareAndSwap(false, true) {
		time.Sleep(time.Millisecond)
	}
	return func() {
		l.rs.busy.Store(false)
		l.rs.kickNow()
	}
}

// A check whose request stopped waiting (the timeout) and was answered without Redis
// is still answered by Redis afterwards. What Redis admitted is settled as the request
// was: served from the replica's share, it stays counted and its tokens are trued up;
// not served, all of it goes back. Either side may come first.
func TestRedisLateCheckSettledAsItsRequestWasAnswered(t *testing.T) {
	// Not parallel: the checks that must reach Redis do so within a 100ms timeout, which
	// other tests' load can exceed.
	tests := []struct {
		name string
		mode string
		// cancel ends the request's context before the timeout (its client gone).
		cancel bool
		// settleFirst settles the request before Redis answers its check.
		settleFirst bool
		// wantErr is what Take returns; the buckets left in Redis after the request.
		wantErr          error
		wantSrc          source
		settle           int64
		requests, tokens int64
	}{
		{name: "served, settled after Redis answered", mode: "allow", settle: 300,
			wantSrc: srcFallback, requests: 4, tokens: 700},
		{name: "served, settled before Redis answered", mode: "allow", settleFirst: true, settle: 300,
			wantSrc: srcFallback, requests: 4, tokens: 700},
		{name: "served, usage unknown", mode: "allow", settle: KeepEstimate,
			wantSrc: srcFallback, requests: 4, tokens: 400},
		{name: "deny", mode: "deny", wantErr: ErrUnavailable, requests: 5, tokens: 1000},
		{name: "client gone", mode: "allow", cancel: true, wantErr: context.Canceled, requests: 5, tokens: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			timeout := 100 * time.Millisecond
			if tc.cancel {
				timeout = 5 * time.Second
			}
			l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: timeout,
				OnRedisError: tc.mode, Prefetch: durationPtr(0), Replicas: 1})
			pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 5, Window: "day"},
				Limit{Per: "api_key", Tokens: 1000, Window: "day"})
			resume := holdRounds(t, l)
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			if tc.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			var tk Ticket
			if err := l.Take(ctx, pol, alice, 600, &tk); !errors.Is(err, tc.wantErr) || tk.src != tc.wantSrc {
				t.Fatalf("Take = %v from %d, want %v from %d", err, tk.src, tc.wantErr, tc.wantSrc)
			}
			if tc.settleFirst {
				l.Settle(&tk, tc.settle)
			}
			resume()
			waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
			barrier(t, l) // the late check's round
			if tc.wantSrc == srcFallback && !tc.settleFirst {
				l.Settle(&tk, tc.settle)
			}
			barrier(t, l) // the settlement
			var probe Ticket
			if err := l.Take(bg, pol, alice, 0, &probe); err != nil || probe.src != srcRedis {
				t.Fatalf("probe: %v from %d", err, probe.src)
			}
			if got := probe.Requests.Remaining + 1; got != tc.requests {
				t.Errorf("requests left in Redis %d, want %d", got, tc.requests)
			}
			if got := probe.Tokens.Remaining; got != tc.tokens {
				t.Errorf("tokens left in Redis %d, want %d", got, tc.tokens)
			}
			if s := l.Stats(); s.DroppedSettles != 0 {
				t.Errorf("%d settlements dropped", s.DroppedSettles)
			}
		})
	}
}

// A check sent just before Redis stalls (SIGSTOP past the timeout) runs when Redis
// resumes, after its request was answered without Redis. Once Redis answers again the
// check's charge is settled as its request was, exactly once, however often the
// compensation reaches Redis.
func TestRedisStalledCheckSettledOnce(t *testing.T) {
	// Not parallel: the checks that must reach Redis do so within a 100ms timeout, which
	// other tests' load can exceed.
	tests := []struct {
		mode             string
		requests, tokens int64
	}{
		{"deny", 5, 1000},
		{"allow", 4, 700},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			srv := redistest.Start(t)
			l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 100 * time.Millisecond,
				OnRedisError: tc.mode, Prefetch: durationPtr(0), Replicas: 1})
			pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 5, Window: "day"},
				Limit{Per: "api_key", Tokens: 1000, Window: "day"})
			// A check before the stall leaves a connection in the pool, as traffic
			// does: the stalled check goes out on it at once.
			barrier(t, l)
			srv.Pause()
			t.Cleanup(srv.Resume)
			var tk Ticket
			err := l.Take(bg, pol, alice, 600, &tk)
			if tc.mode == "deny" && !errors.Is(err, ErrUnavailable) || tc.mode == "allow" && (err != nil || tk.src != srcFallback) {
				t.Fatalf("Take on a stalled Redis = %v from %d", err, tk.src)
			}
			unsure, mask := tk.unsure, uint8(0b11)
			l.Settle(&tk, 300)
			// Past the longest round the limiter waits on (10 × timeout, at least 500ms).
			time.Sleep(time.Second)
			srv.Resume()
			waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
			barrier(t, l)
			check := func(when string) {
				t.Helper()
				var probe Ticket
				if err := l.Take(bg, pol, alice, 0, &probe); err != nil || probe.src != srcRedis {
					t.Fatalf("%s: probe: %v from %d", when, err, probe.src)
				}
				l.Settle(&probe, 0)
				// The probes before this one took a request each.
				if got := probe.Requests.Remaining + 1; got != tc.requests {
					t.Errorf("%s: requests left in Redis %d, want %d", when, got, tc.requests)
				}
				if got := probe.Tokens.Remaining; got != tc.tokens {
					t.Errorf("%s: tokens left in Redis %d, want %d", when, got, tc.tokens)
				}
				tc.requests--
			}
			check("after recovery")
			// The compensation again, as if its first answer had been lost.
			l.rs.compensate(pol, &tk.tag, &tk.bucket, &unsure, mask, tc.mode == "allow", Amounts{Tokens: 300})
			waitFor(t, 5*time.Second, "resent", func() bool { return l.rs.kept() == 0 })
			barrier(t, l)
			check("compensated again")
			if s := l.Stats(); s.DroppedSettles != 0 {
				t.Errorf("%d settlements dropped", s.DroppedSettles)
			}
		})
	}
}

// A call that has not run by the time Redis answers again after it failed never runs:
// its marker is fenced, and the script refuses to run under a marker that exists.
func TestRedisFencedCallNeverRuns(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0), Replicas: 1})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 5, Window: "day"},
		Limit{Per: "api_key", Tokens: 1000, Window: "day"})
	var tk Ticket
	pol.locate(alice, 0, &tk)
	resume := holdRounds(t, l)
	// The next call's marker, fenced as a gateway that gave up on the call would.
	var k keyArg
	k.setMarker(tk.tag[0], l.rs.callID+1)
	if _, err := redistest.Command(srv.Addr(), "SET", k.String(), "-"); err != nil {
		t.Fatal(err)
	}
	resume()
	if err := l.Take(bg, pol, alice, 600, &tk); err != nil || tk.src != srcFallback {
		t.Fatalf("Take = %v from %d, want admitted from the replica's share", err, tk.src)
	}
	l.Settle(&tk, 300)
	waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
	barrier(t, l)
	for i := range 2 {
		if v, err := redistest.Command(srv.Addr(), "EXISTS", bucketKey(pol, alice, i)); err != nil || v != "0" {
			t.Errorf("bucket %d in Redis: exists %s %v, want untouched", i, v, err)
		}
	}
	if v, _ := redistest.Command(srv.Addr(), "GET", k.String()); v != "-" {
		t.Errorf("marker %q, want the fence", v)
	}
	if ttl, _ := redistest.Command(srv.Addr(), "PTTL", k.String()); strings.HasPrefix(ttl, "-") {
		t.Errorf("fence PTTL %s, want one", ttl)
	}
}
