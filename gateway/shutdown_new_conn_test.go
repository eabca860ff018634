package gateway

import (
	"net"
	"testing"
	"time"
)

// A shutdown with nothing in flight ends at once though clients have opened
// connections they have sent nothing on (a client pool warming up, a load balancer's
// TCP check), on either listener: they carry no request, and fasthttp would wait up
// to 5 s for each, as for one.
func TestShutdownNotHeldBySilentNewConnection(t *testing.T) {
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 30s}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`)
	var conns []net.Conn
	for _, addr := range []string{g.Addr(), g.AdminAddr()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	g.cancel()
	select {
	case err := <-g.done:
		g.done <- err
	case <-time.After(2 * time.Second):
		// Let the connections go, so that Serve returns and the test ends.
		for _, c := range conns {
			c.Close()
		}
		g.done <- <-g.done
		t.Errorf("shutdown with silent new connections: Serve still draining 2s after it began (returned %v after it, "+
			"once the clients closed); want it to return at once", time.Since(t0).Round(100*time.Millisecond))
	}
}
