package limiter

import (
	"errors"
	"testing"
	"time"
)

// README: after a reload that lowers a limit, "an overdraft (tokens used past the
// bucket) still counts, never for longer than the old limit would have held the
// client", and requests admitted before the reload that settle after it leave the
// bucket as they would have settled before it. A request estimated at 100 tokens under
// 6000/hour that used 10000 overdraws the old bucket by 4000: 40 minutes at the old
// rate past a spent bucket, whichever order. Settled after the first check under
// 600/hour, all its units past that check's 600-token bucket counted as overdraft,
// 9400 tokens at the old rate: 94 minutes.
func TestReloadLoweredOverdraftSettledAfter(t *testing.T) {
	type request struct{ est, used int64 }
	cases := []struct {
		name    string
		running []request
	}{
		{"one request", []request{{100, 10000}}},
		// 1100 owed at the reload; the second request's refund of 1000 leaves the
		// same 4000 overdrawn, settled before or after the first.
		{"a refund after it", []request{{100, 10000}, {1000, 0}}},
		{"a refund before it", []request{{1000, 0}, {100, 10000}}},
	}
	wait := func(t *testing.T, st refundStore, settleFirst bool, running []request) time.Duration {
		rig := st.open(t)
		before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
		var flying []*Ticket
		for _, rq := range running {
			flying = append(flying, admitTokens(t, rig.l, before, rq.est))
		}
		settle := func() {
			for i, tk := range flying {
				rig.l.Settle(tk, running[i].used)
				rig.sync()
			}
		}
		if settleFirst {
			settle()
		}
		convert(t, rig.replica(), after)
		if !settleFirst {
			settle()
		}
		var next Ticket
		err := rig.replica().Take(bg, after, alice, 1, &next)
		var ref *Refused
		if !errors.As(err, &ref) {
			t.Fatalf("a token under the lowered limit after a 4000-token overdraft: %v, want a refusal", err)
		}
		return ref.RetryAfter
	}
	// The 4000 tokens overdrawn at 6000/hour (40 minutes), then a token of the spent
	// bucket at 600/hour (6 s).
	want := 40*time.Minute + 6*time.Second
	for _, st := range refundStores() {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				for _, first := range []bool{true, false} {
					got := wait(t, st, first, tc.running)
					if d := got - want; d < -time.Second || d > time.Second {
						t.Errorf("settled before the first check under the lowered limit %v: retry after %v, want %v", first, got, want)
					}
				}
			})
		}
	}
}
