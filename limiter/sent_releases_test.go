package limiter

import (
	"testing"
	"time"
)

// The releases kept to send again after a failover are the last maxPendingAdjust
// Redis answered, sent again newest first, none older than the lease, and only while
// the settlement queue is under half full.
func TestResendReleasesKeptNewestFirst(t *testing.T) {
	l := &Limiter{epoch: time.Now().Add(-time.Hour)}
	s := &redisStore{l: l, leaseUS: float64(time.Minute / time.Microsecond), later: make(chan struct{}, 1), sent: &sentReleases{}}
	rel := func(m uint64) []adjustOp {
		return []adjustOp{{op: opRelease, tag: 1, bucket: 2, member: m}, {op: opAdjust, tag: 1, bucket: 3, delta: 1}}
	}
	now := l.nanotime()
	for m := range uint64(3) { // older than the lease
		s.sent.add(rel(m), now-int64(2*time.Minute))
	}
	for m := uint64(3); m < maxPendingAdjust+5; m++ {
		s.sent.add(rel(m), now)
	}
	if len(s.sent.ops) != maxPendingAdjust || s.sent.ops[0].member != maxPendingAdjust || s.sent.ops[5].member != 5 {
		t.Fatalf("ring of %d, first %d, sixth %d: want the last %d releases, the oldest overwritten",
			len(s.sent.ops), s.sent.ops[0].member, s.sent.ops[5].member, maxPendingAdjust)
	}

	t.Run("newest first while the queue is under half full", func(t *testing.T) {
		s.adjs = make([]adjustOp, maxPendingAdjust/2-2)
		s.resendReleases()
		got := s.adjs[maxPendingAdjust/2-2:]
		if len(got) != 2 || got[0].member != maxPendingAdjust+4 || got[1].member != maxPendingAdjust+3 || got[0].op != opRelease {
			t.Fatalf("queued %+v, want the releases of %d and %d", got, maxPendingAdjust+4, maxPendingAdjust+3)
		}
		if s.dropped.Load() != 0 {
			t.Fatalf("%d settlements counted dropped, want none: a release sent again is a duplicate", s.dropped.Load())
		}
	})
	t.Run("none older than the lease", func(t *testing.T) {
		var r redisStore
		r.l, r.leaseUS, r.later, r.sent = l, s.leaseUS, s.later, &sentReleases{}
		for m := range uint64(4) {
			at := now
			if m < 2 {
				at = now - int64(2*time.Minute)
			}
			r.sent.add(rel(m), at)
		}
		r.resendReleases()
		if len(r.adjs) != 2 || r.adjs[0].member != 3 || r.adjs[1].member != 2 {
			t.Fatalf("queued %+v, want the releases of 3 and 2", r.adjs)
		}
	})
}
