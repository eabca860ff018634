package limiter

import (
	"testing"
	"time"
)

// README: a reload that lowers a limit keeps what the bucket owes, up to the new burst,
// and a spent bucket "waits one refill at the new rate"; requests admitted before the
// reload that settle after it "leave the bucket as they would have settled before it".
// A settlement under the old limit after a check under the lowered one converted the
// bucket back to the old rate, where what it owed refilled ten times as fast until the
// next check: 6000/hour lowered to 600/hour, a request estimated at 6000 that used 3000
// left the bucket spent, and full again six minutes later, where the same request
// settled before the check leaves 60 tokens free then (six minutes at 600/hour).
func TestReloadLoweredSettledAfterRefillsAtTheNewRate(t *testing.T) {
	cases := []struct {
		name string
		used int64
		// free is what the lowered limit finds free six minutes after the settlement.
		free int64
	}{
		{"refund within what the cap let go", 3000, 60},
		{"refund beyond what the cap let go", 300, 360},
	}
	run := func(t *testing.T, st refundStore, settleFirst bool, used int64) int64 {
		rig := st.open(t)
		before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
		tk := admitTokens(t, rig.l, before, 6000)
		settle := func() {
			rig.l.Settle(tk, used)
			rig.sync()
		}
		if settleFirst {
			settle()
		}
		convert(t, rig.replica(), after)
		if !settleFirst {
			settle()
		}
		rig.pass(6 * time.Minute)
		return remainingUnder(rig.l, after)
	}
	for _, st := range refundStores() {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				before := run(t, st, true, tc.used)
				after := run(t, st, false, tc.used)
				if before < tc.free-1 || before > tc.free+1 {
					t.Fatalf("settled before the first check under the lowered limit: %d free six minutes later, want %d", before, tc.free)
				}
				if after < tc.free-1 || after > tc.free+1 {
					t.Errorf("settled after it: %d free six minutes later, want %d (settled before: %d)", after, tc.free, before)
				}
			})
		}
	}
}
