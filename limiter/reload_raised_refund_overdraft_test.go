package limiter

import (
	"testing"
	"time"
)

// README: an overdraft "still counts, never for longer than the old limit would have
// held the client", and no reload lets a client spend more than either limit allows.
// Two requests under 6000/hour (100 and 1000 tokens estimated), a reload to 600/hour
// (whose conversion lets go 500 tokens of the 1100 owed) and one back to 6000/hour,
// then the first settles at 10000 tokens used and the second at none. Under 6000/hour
// alone the client owes 10000 tokens: nothing is free for 100 minutes. The second
// refund takes back all that was let go and undoes the cap; the bucket, moved back to
// 600/hour for it, kept the 9900 tokens overdrawn at 6000/hour in time there (990 of
// 600/hour's tokens), and the next check under 6000/hour read them as 990 tokens:
// 4910 tokens were free at once.
func TestReloadRaisedBackRefundKeepsOverdraft(t *testing.T) {
	for _, st := range refundStores() {
		t.Run(st.name, func(t *testing.T) {
			rig := st.open(t)
			before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
			over := admitTokens(t, rig.l, before, 100)
			refunded := admitTokens(t, rig.l, before, 1000)
			convert(t, rig.replica(), after)
			convert(t, rig.replica(), before)
			rig.l.Settle(over, 10000)
			rig.sync()
			rig.l.Settle(refunded, 0)
			rig.sync()
			q := rig.l.Peek(bg, []Probe{{Policy: before, Subject: *alice}})[0].Quota
			if q.Remaining != 0 || q.Reset < 99*time.Minute {
				t.Errorf("under 6000/hour after 10000 tokens used: %d free, full in %v; want none free for 100 minutes",
					q.Remaining, q.Reset.Round(time.Second))
			}
		})
	}
}
