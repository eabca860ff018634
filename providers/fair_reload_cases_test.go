package providers

import (
	"testing"
	"time"
)

// After a reload that makes a queue fair, the requests waiting in arrival order count as
// one tenant in QueueStats.Tenants (tollgate_backend_queue_tenants), as push-out counts
// them.
func TestTenantsGaugeCountsArrivalOrderWaitersAfterReloadToFair(t *testing.T) {
	ps := NewPools()
	us := startReplicas(t, 1)
	cfg := func(fair string) Config {
		return Config{Targets: replicaURLs(us), MaxConcurrency: 1, Queue: QueueConfig{Size: 8, Timeout: time.Minute, Fair: fair}}
	}
	old := newPoolBackend(t, cfg(""), ps)
	old.Activate()
	held, err := old.acquire(promptCall("holder", false))
	if err != nil {
		t.Fatal(err)
	}
	out := queueCalls(t, old, "a1", "a2", "a3")
	cur := newPoolBackend(t, cfg("api_key"), ps)
	cur.Activate()
	if cur.pool.queue != old.pool.queue {
		t.Fatal("the reload did not share the queue")
	}
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
