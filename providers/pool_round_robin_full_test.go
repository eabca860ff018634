package providers

import (
	"strconv"
	"testing"
)

// Under round_robin, the turns of a target at max_concurrency (a slow replica whose
// slots stay taken) are spread evenly over the targets with a slot free, as an ejected
// target's are: the target after it in config order does not take them all on top of
// its own share.
func TestRoundRobinSpreadsFullTargetsTurns(t *testing.T) {
	us := startReplicas(t, 3)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 2}, NewPools())
	// Target 0's slots are held by long answers.
	b.pool.states[0].slots.n.Store(2)
	var got [3]int
	for i := range 60 {
		l, err := b.acquire(promptCall("q"+strconv.Itoa(i), false))
		if err != nil {
			t.Fatal(err)
		}
		got[l.i]++
		b.pool.free(l.i)
	}
	if got[0] != 0 {
		t.Fatalf("the full target got %d requests", got[0])
	}
	if got[1] < 25 || got[2] < 25 {
		t.Errorf("the targets with a slot free got %d and %d of 60 requests, want about 30 each", got[1], got[2])
	}
}
