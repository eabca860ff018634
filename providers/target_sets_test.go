package providers

import (
	"strconv"
	"testing"
	"unsafe"
)

// The sets of targets a call failed on, and found busy, hold any target of a pool of
// any size: a pool of more than 64 replicas is a pool like any other (README, Replica
// pools), and a set that dropped the targets past 64 sent a retry back to the one that
// had just failed it.
func TestTargetSetHoldsTargetsPast64(t *testing.T) {
	for _, tc := range []struct {
		name  string
		add   []int
		has   []int
		lacks []int
	}{
		{"empty", nil, nil, []int{0, 63, 64, 1000}},
		{"the first 64 as bits", []int{0, 5, 63}, []int{0, 5, 63}, []int{1, 64, 127}},
		{"past the first 64", []int{64, 70, 1000}, []int{64, 70, 1000}, []int{0, 6, 65, 999}},
		{"both, a target added twice once", []int{3, 70, 70, 3, 90}, []int{3, 70, 90}, []int{4, 71}},
		{
			"past maxListed beyond 64 the oldest is forgotten",
			[]int{64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 1},
			[]int{65, 76, 1},
			[]int{64},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s targetSet
			for _, i := range tc.add {
				s.add(i)
			}
			for _, i := range tc.has {
				if !s.has(i) {
					t.Errorf("set of %v lacks target %d", tc.add, i)
				}
			}
			for _, i := range tc.lacks {
				if s.has(i) {
					t.Errorf("set of %v has target %d", tc.add, i)
				}
			}
			if s.empty() != (len(tc.add) == 0) {
				t.Errorf("empty() = %v for a set of %v", s.empty(), tc.add)
			}
		})
	}
	t.Run("nil is empty", func(t *testing.T) {
		var s *targetSet
		if !s.empty() || s.has(0) || s.has(64) {
			t.Error("a nil set is not empty")
		}
	})
	t.Run("a set fills one cache line", func(t *testing.T) {
		var s targetSet
		if n := unsafe.Sizeof(s); n > 64 {
			t.Errorf("targetSet is %d bytes, want at most 64 (it lives in every Call)", n)
		}
	})
}

// A backend's busy set is sized to its targets: every one of 200 can be marked.
func TestBusySetHoldsEveryTarget(t *testing.T) {
	b := newPoolBackend(t, Config{Targets: benchTargets(200)}, nil)
	var busy *targetBits
	for i := 0; i < 200; i += 3 {
		busy = b.markBusy(busy, i)
	}
	for i := range 200 {
		if got, want := busy.has(i), i%3 == 0; got != want {
			t.Fatalf("target %d busy %v, want %v", i, got, want)
		}
	}
}

// A retry on a pool of 80 targets avoids the target that failed it when that one is
// past the first 64: affinity's pick, the least loaded, the trial of an ejected target
// and the spill from a busy target all go elsewhere while another target is in service.
func TestPoolRetryAvoidsFailedTargetPast64(t *testing.T) {
	const targets = 80
	b := newPoolBackend(t, Config{Targets: benchTargets(targets), Affinity: AffinityConfig{By: "prefix"}}, nil)
	// A prompt whose affinity is a target past 64.
	var call *Call
	at := -1
	for n := 0; at < 64; n++ {
		call = promptCall("prompt "+strconv.Itoa(n), false)
		at = b.pick(call)
	}
	if got := b.choose(call); got != at {
		t.Fatalf("the first attempt goes to target %d, want its affinity %d", got, at)
	}
	call.failedOn = b
	call.failed.add(at)
	if got := b.choose(call); got == at {
		t.Errorf("the retry goes back to target %d, which failed it", got)
	}
	if avoid := b.avoid(call); !avoid.has(at) {
		t.Fatalf("the retry avoids %v, want target %d among them", avoid, at)
	}
	for range 20 {
		l, err := b.acquire(call)
		if err != nil {
			t.Fatal(err)
		}
		b.pool.free(l.i)
		if l.i == at {
			t.Fatalf("the retry took a slot on target %d, which failed it", at)
		}
	}
	if j := b.pool.takeAny(at, b.avoid(call)); j == at || j < 0 {
		t.Errorf("takeAny from the failed target %d took %d, want another", at, j)
	} else {
		b.pool.free(j)
	}

	t.Run("spill passes over busy and failed targets past 64", func(t *testing.T) {
		// Only targets 65, 70, 75, 79 and at are in service: 65 was found busy, at
		// failed the call.
		from := 70
		if at == 70 {
			from = 75
		}
		for i, st := range b.pool.states {
			st.ejected.Store(i != 65 && i != 70 && i != 75 && i != 79 && i != at)
		}
		defer func() {
			for _, st := range b.pool.states {
				st.ejected.Store(false)
			}
		}()
		busy := b.markBusy(nil, 65)
		l, ok := b.spill(call, lease{i: from}, *busy)
		if !ok {
			t.Fatal("no spill, with a target in service neither busy nor failed")
		}
		b.pool.free(l.i)
		if l.i == 65 || l.i == at || l.i == from {
			t.Errorf("the spill went to target %d (busy 65, failed %d, from %d)", l.i, at, from)
		}
	})
}
