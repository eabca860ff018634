package providers

import (
	"errors"
	"testing"
	"time"
)

// RetryLeases tells the gateway, before it pauses for a retry (an upstream's
// Retry-After, up to 5 s), whether the retry could lease a target once the pause ends:
// one in service, or an ejected one whose trial is under way or due by then. It must
// agree with what the retry then gets: an attempt, or ErrNoHealthyTarget without one.
func TestRetryLeases(t *testing.T) {
	cases := []struct {
		name    string
		targets int
		// failing is how many of the targets answer 500 (and are ejected by it).
		failing int
		// setup runs after the first attempts, on the backend's clock and states.
		setup func(clk *fakeClock, b *Backend)
		wait  time.Duration
		want  bool
		// othersTrial is set when another request's trial of the target is under
		// way: it may bring the target back before the retry goes, or not.
		othersTrial bool
	}{
		{name: "its one target ejected by its failure", targets: 1, failing: 1, wait: 5 * time.Second},
		{name: "another target in service", targets: 2, failing: 1, wait: 5 * time.Second, want: true},
		{name: "every target ejected by its failures", targets: 2, failing: 2, wait: 5 * time.Second},
		{name: "the ejection runs out during the wait", targets: 1, failing: 1, wait: time.Minute, want: true},
		{name: "the ejection ran out before the retry", targets: 1, failing: 1, wait: 0, want: true,
			setup: func(clk *fakeClock, _ *Backend) { clk.Advance(time.Minute) }},
		{name: "an ejection run out, the target found down", targets: 1, failing: 1, wait: time.Minute,
			setup: func(_ *fakeClock, b *Backend) { b.pool.states[0].down.Store(true) }},
		{name: "another request's trial under way", targets: 1, failing: 1, wait: 0, want: true, othersTrial: true,
			setup: func(_ *fakeClock, b *Backend) { b.pool.states[0].probing.Store(true) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			us := startReplicas(t, tc.targets)
			for _, u := range us[:tc.failing] {
				u.status.Store(500)
			}
			b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{EjectAfter: 1, EjectFor: time.Minute}},
				poolsWithClock(clk))
			call := promptCall("q", false)
			// The request's attempts until one fails on each failing target.
			for failed := 0; failed < tc.failing; {
				if _, err := sendOnce(b, call); isStatus(err, 500) {
					failed++
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if tc.setup != nil {
				tc.setup(clk, b)
			}
			if got := b.RetryLeases(tc.wait); got != tc.want {
				t.Fatalf("RetryLeases(%v) = %v, want %v", tc.wait, got, tc.want)
			}
			if tc.othersTrial {
				return
			}
			// What the retry gets once the wait is over.
			clk.Advance(tc.wait)
			hits := func() (n int64) {
				for _, u := range us {
					n += u.hits.Load()
				}
				return n
			}
			before := hits()
			_, err := sendOnce(b, call)
			attempted := hits() > before
			if attempted != tc.want || !tc.want && !errors.Is(err, ErrNoHealthyTarget) {
				t.Fatalf("the retry after %v: attempted %v (%v), want an attempt %v, else ErrNoHealthyTarget", tc.wait, attempted, err, tc.want)
			}
		})
	}
}
