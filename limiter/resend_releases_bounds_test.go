package limiter

import (
	"testing"
	"time"
)

// resendStore is a bare store whose ring holds n releases Redis answered now, well
// within a 10-minute lease (the default): a replica at a few hundred requests a
// second fills the whole ring that way.
func resendStore(n int) *redisStore {
	l := &Limiter{epoch: time.Now().Add(-time.Hour)}
	s := &redisStore{l: l, leaseUS: float64(DefaultConcurrencyLease / time.Microsecond), later: make(chan struct{}, 1), sent: &sentReleases{}}
	now := l.nanotime()
	for m := range uint64(n) {
		s.sent.add([]adjustOp{{op: opRelease, tag: 1, bucket: 2, member: m}}, now)
	}
	return s
}

// The releases sent again after a move are duplicates: they must leave the
// settlement queue room for the settlements of requests that end before the flusher
// takes it (a release dropped there holds its slot for the whole lease, as a lost one
// did).
func TestResendReleasesLeaveRoomForSettlements(t *testing.T) {
	s := resendStore(maxPendingAdjust)
	s.resendReleases()
	if len(s.adjs) == 0 {
		t.Fatal("nothing sent again")
	}
	s.mu.Lock()
	for m := range uint64(1000) {
		s.queueAdjustLocked(adjustOp{op: opRelease, tag: 3, bucket: 4, member: 1<<40 + m})
	}
	s.mu.Unlock()
	if d := s.dropped.Load(); d != 0 {
		t.Fatalf("%d of 1000 releases of requests that ended after the move dropped: the releases sent again took the whole queue (%d)", d, len(s.adjs))
	}
}
