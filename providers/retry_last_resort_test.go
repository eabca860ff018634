package providers

import (
	"errors"
	"testing"
	"time"
)

// A retry takes no last-resort trial: with every target of the backend out of
// service, the ones it failed on included, it gets ErrNoHealthyTarget without an
// attempt (the gateway goes on to the fallbacks). A request takes at most one
// last-resort trial, on its first attempt, so each request doubles the ejection at
// most once.
func TestRetryTakesNoLastResortTrial(t *testing.T) {
	cases := []struct {
		name    string
		targets int
		// hits is the attempts the first request makes, one per target.
		hits int64
	}{
		{"its one target ejected by its failure", 1, 1},
		{"each target ejected by one of its attempts", 2, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			us := startReplicas(t, tc.targets)
			for _, u := range us {
				u.status.Store(500)
			}
			b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{EjectAfter: 1, EjectFor: time.Minute}},
				poolsWithClock(clk))
			hits := func() int64 {
				var n int64
				for _, u := range us {
					n += u.hits.Load()
				}
				return n
			}
			call := promptCall("q", false)
			for range tc.targets {
				if _, err := sendOnce(b, call); !isStatus(err, 500) {
					t.Fatalf("attempt: %v, want the upstream's 500", err)
				}
			}
			for retry := range 2 {
				if _, err := sendOnce(b, call); !errors.Is(err, ErrNoHealthyTarget) {
					t.Fatalf("retry %d: %v, want ErrNoHealthyTarget", retry, err)
				}
			}
			if n := hits(); n != tc.hits {
				t.Fatalf("the request made %d attempts, want %d: none after its failures ejected every target", n, tc.hits)
			}

			// A later request: one last-resort trial, which fails, then no more.
			next := promptCall("q2", false)
			if _, err := sendOnce(b, next); !isStatus(err, 500) {
				t.Fatalf("last-resort trial: %v, want the upstream's 500", err)
			}
			if _, err := sendOnce(b, next); !errors.Is(err, ErrNoHealthyTarget) {
				t.Fatalf("its retry: %v, want ErrNoHealthyTarget", err)
			}
			if n := hits(); n != tc.hits+1 {
				t.Fatalf("%d attempts in all, want %d", n, tc.hits+1)
			}
			// The failed trial doubled the ejection of the target it tried, once.
			var longest time.Duration
			for _, st := range b.pool.states {
				longest = max(longest, time.Duration(st.until.Load()-clk.Now().UnixNano()))
			}
			if longest != 2*time.Minute {
				t.Errorf("longest ejection %v, want 2m: eject_for 1m doubled by one failed trial", longest)
			}
		})
	}
}

func isStatus(err error, status int) bool {
	ue, ok := errors.AsType[*UpstreamError](err)
	return ok && ue.Status == status
}
