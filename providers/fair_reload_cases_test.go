package providers

import "testing"

// After a reload that makes a queue fair, the requests waiting in arrival order count as
// one tenant in QueueStats.Tenants (tollgate_backend_queue_tenants), as push-out counts
// them.
func TestTenantsGaugeCountsArrivalOrderWaitersAfterReloadToFair(t *testing.T) {
	cur, held, out := reloadedToFair(t, 8)
	st := cur.QueueStats()
	got0 := st.Tenants
	out2 := queueCalls(t, cur, "b1")
	st = cur.QueueStats()
	got1 := st.Tenants
	serveAll(t, cur, held, mergeServed(out, out2), 4)
	if got0 != 1 || got1 != 2 {
		t.Fatalf("observed tollgate_backend_queue_tenants %d with the 3 requests queued before the reload waiting, "+
			"%d once key b joined (waiting: %d); expected 1, then 2 (those 3 are one tenant of weight 1)", got0, got1, st.Waiting)
	}
}
