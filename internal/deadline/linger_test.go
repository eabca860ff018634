package deadline

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// A lingering close ends the sending side at once (the peer reads what was written,
// then EOF) and reads what the peer still sends, so the peer's writes all succeed
// rather than meet a reset; a plain close over unread bytes resets.
func TestLingerReadsWhatThePeerStillSends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := Listener{Listener: ln}
	for _, linger := range []bool{true, false} {
		peer, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		_ = peer.SetDeadline(time.Now().Add(10 * time.Second))
		// Bytes the gateway side never reads, then its answer and close.
		if _, err := peer.Write([]byte("unread")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := c.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		if linger {
			c.(*Conn).Linger()
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		_, werr := peer.Write(bytes.Repeat([]byte("b"), 4<<20))
		got, rerr := io.ReadAll(peer)
		peer.Close()
		if linger {
			if werr != nil || rerr != nil || string(got) != "answer" {
				t.Fatalf("lingering close: write %v, read %q, %v; want the whole body sent and the answer read", werr, got, rerr)
			}
		} else if werr == nil && rerr == nil {
			t.Fatal("plain close over unread bytes: no reset (the test proves nothing here)")
		}
	}
}
