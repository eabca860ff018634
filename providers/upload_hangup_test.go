package providers

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// A watched call whose client hangs up while its request is still being written to
// an upstream that reads it slowly (a large audio file over a slow link) ends then,
// closing the upstream connection, as it would while the upstream worked on the
// request: not once the write, or the attempt's timeout, is over.
func TestHungUpCallAbortsItsUploadUpstream(t *testing.T) {
	setForTest(t, &clientCheckEvery, 20*time.Millisecond)
	accepted := make(chan net.Conn, 1)
	// The upstream reads nothing: the write of a body larger than the sockets'
	// buffers stalls.
	addr := serveRaw(t, nil, func(c net.Conn) { accepted <- c })
	b := newPoolBackend(t, Config{BaseURL: "http://" + addr + "/v1", Timeout: time.Minute}, nil)
	client := newTestClient()
	call := promptCall(strings.Repeat("a", 16<<20), false)
	call.Client = client
	done := sendAsync(b, call)
	var up net.Conn
	select {
	case up = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream got no connection")
	}
	client.hangUp()
	var r sent
	select {
	case r = <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("the call still writes its request after its client hung up")
	}
	if !errors.Is(r.err, ErrClientLeftUpstream) {
		t.Fatalf("got %v, want ErrClientLeftUpstream", r.err)
	}
	if judged, failed := Judge(r.err); judged || failed {
		t.Errorf("Judge = %v, %v; want nothing said of the upstream", judged, failed)
	}
	// The gateway closed its side: the upstream reads what was sent, then the end.
	_ = up.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1<<20)
	for {
		if _, err := up.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the upstream connection stayed open under the abandoned request")
			}
			break
		}
	}
	if n := client.watching.Load(); n != 0 {
		t.Errorf("%d watches still running", n)
	}
}
