package limiter

import "testing"

// A release sent again and answered is not recorded as sent anew: a second move
// within the lease (a failback, a restart) would send it twice more, and a server
// name that changes every heartbeat would send the same releases forever, each time
// younger than the lease.
func TestResentReleasesNotRecordedAgain(t *testing.T) {
	s := resendStore(3)
	s.resendReleases()
	if len(s.adjs) != 3 {
		t.Fatalf("sent again %d releases, want 3", len(s.adjs))
	}
	// As parse records a call Redis answered.
	s.sent.add(s.adjs, s.l.nanotime())
	if len(s.sent.ops) != 3 {
		t.Fatalf("ring of %d releases after the resend was answered, want the 3 first sent", len(s.sent.ops))
	}
	s.adjs = s.adjs[:0]
	s.resendReleases()
	if len(s.adjs) != 3 {
		t.Fatalf("a second move sent again %d releases, want the 3 of the lease once each", len(s.adjs))
	}
}
