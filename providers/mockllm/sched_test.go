package mockllm

import (
	"testing"
	"time"
)

// TestSchedulerHandsSlotsInOrder: requests whose connection cannot be watched (Handler
// on another server) wait on their state's channel; a release hands the slot to the
// oldest waiter, so Running never dips, and Shutdown turns the rest away.
func TestSchedulerHandsSlotsInOrder(t *testing.T) {
	s, err := New(Options{MaxNumSeqs: 1, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	newState := func() *state {
		st := s.states.Get().(*state)
		st.reset()
		return st
	}
	if err := s.acquireSeq(newState()); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 3)
	errs := make(chan error, 3)
	for i := range 3 {
		st := newState()
		go func() {
			err := s.acquireSeq(st)
			if err == nil {
				got <- i
			}
			errs <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for s.waiting.Load() != int64(i+1) { // queued in this order
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d never queued", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for want := range 2 {
		s.releaseSeq()
		if i := <-got; i != want {
			t.Fatalf("slot went to waiter %d, want %d", i, want)
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if r, w := s.running.Load(), s.waiting.Load(); r != 1 || w != int64(2-want) {
			t.Errorf("after hand-off %d: running %d waiting %d", want, r, w)
		}
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != errShutdown {
		t.Errorf("waiter at shutdown: %v, want errShutdown", err)
	}
	if w := s.waiting.Load(); w != 0 {
		t.Errorf("waiting %d after shutdown", w)
	}
	s.releaseSeq()
	if r := s.running.Load(); r != 0 || s.free != 1 {
		t.Errorf("running %d free %d after the last release", r, s.free)
	}
}
