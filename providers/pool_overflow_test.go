package providers

import (
	"strconv"
	"testing"
)

// Under vllm_queue with max_concurrency, the request the ranking's best target has no
// slot for goes to the next target by rank, not to the one after it in config order:
// one whose metrics cannot be read takes it only once every target read is full
// (README, Replica pools).
func TestVLLMQueueOverflowGoesByRank(t *testing.T) {
	cases := []struct {
		name    string
		running [3]int64 // what each target's /metrics reports
		unread  int      // the target whose metrics cannot be read, -1 for none
		want    []int    // the targets of successive streams, each holding its slot
	}{
		{"unread target only once every read one is full", [3]int64{0, 0, 2}, 1, []int{0, 2, 1}},
		{"next least queued before the next in config order", [3]int64{0, 5, 3}, -1, []int{0, 2, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			us := startReplicas(t, 3)
			for i, u := range us {
				u.running.Store(tc.running[i])
			}
			b := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: "vllm_queue", MaxConcurrency: 1,
				Queue: QueueConfig{Size: 4}}, nil)
			if tc.unread >= 0 {
				b.pool.loadURLs[tc.unread] += "-not-here"
			}
			for i := range us {
				b.readLoad(i, nil)
				if read := b.pool.states[i].load.ok.Load(); read != (i != tc.unread) {
					t.Fatalf("setup: target %d read %v", i, read)
				}
			}
			for k, want := range tc.want {
				url, s := openStream(t, b, "q"+strconv.Itoa(k))
				t.Cleanup(func() { _ = s.Close() })
				if url != us[want].url() {
					t.Fatalf("stream %d went to %s, want target %d (%s)", k, url, want, us[want].url())
				}
			}
		})
	}
}

// With prefix affinity and max_concurrency, the request whose prefix's target is full
// goes on along the ring, as one over the load bound does: the prefixes of a full
// target spread over the others, rather than all going to the target after it in
// config order.
func TestAffinityOverflowFollowsTheRing(t *testing.T) {
	us := startReplicas(t, 4)
	// A load factor this high leaves max_concurrency the only bound that binds.
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1, Queue: QueueConfig{Size: 4},
		Affinity: AffinityConfig{By: "prefix", LoadFactor: 100}}, nil)
	// Prefixes whose home, in the idle pool, is the same target.
	home := b.affine(promptCall("conversation 0", false))
	var prompts []string
	for k := 0; len(prompts) < 20; k++ {
		if p := "conversation " + strconv.Itoa(k); b.affine(promptCall(p, false)) == home {
			prompts = append(prompts, p)
		}
	}
	url, s := openStream(t, b, prompts[0])
	defer s.Close()
	if url != us[home].url() {
		t.Fatalf("the first stream went to %s, want its home %s", url, us[home].url())
	}
	spilled := map[string]int{}
	for _, p := range prompts[1:] {
		url, err := sendOnce(b, promptCall(p, false))
		if err != nil {
			t.Fatal(err)
		}
		if url == us[home].url() {
			t.Fatalf("a request went to its full home %s", url)
		}
		spilled[url]++
	}
	if len(spilled) < 2 {
		t.Errorf("the prefixes of the full target all went to %v, want them spread along the ring", spilled)
	}
}
