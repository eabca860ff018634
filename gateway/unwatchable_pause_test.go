package gateway

import (
	"net"
	"testing"
	"time"
)

// A Retry-After pause whose client cannot be watched (hangup.Watch.Start gives a nil
// channel: every connection on systems other than Linux, a connection epoll refuses)
// still joins the server's list of client watches, and leaves it when the pause ends.
// Left linked, the pooled request's watch would link itself in front of itself at its
// next pause: a cycle that cutWaits would walk for ever under the shard's lock when
// shutdown_grace runs out.
func TestUnwatchablePauseLeavesNoWatchListed(t *testing.T) {
	client, peer := net.Pipe()
	defer client.Close()
	defer peer.Close()
	s := &Server{}
	r := &request{s: s}
	r.hang = clientWatch{conn: client, s: s, id: 7}
	if gone := r.pause(time.Millisecond); gone {
		t.Fatal("an unwatchable client reported gone")
	}
	listed := func() *clientWatch {
		for i := range s.waits {
			if h := s.waits[i].head; h != nil {
				return h
			}
		}
		return nil
	}
	if h := listed(); h != nil {
		// What release then does to the pooled request, and its next pause.
		r.hang = clientWatch{w: r.hang.w}
		r.hang.conn, r.hang.s, r.hang.id = client, s, 7
		r.pause(time.Millisecond)
		h = listed()
		t.Errorf("after a Retry-After pause on an unwatchable connection ended, its watch is still in Server.waits; "+
			"after the pooled request paused again the list loops on itself: %v (cutWaits would never end)", h != nil && h.next == h)
	}
}
