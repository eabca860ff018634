package gateway

import (
	"net"
	"strings"
	"testing"
)

// README, Configuration: server.listen and server.admin_listen must not be the same
// address and port. "localhost" is 127.0.0.1 to the listener (Go listens on a name's
// IPv4 address first), so "localhost:P" beside "127.0.0.1:P" cannot both listen; the
// check compared the hosts as strings, and validate passed a config that serve then
// failed to start with ("address already in use").
func TestListenLocalhostBesideLoopbackRefused(t *testing.T) {
	// The pair the check must refuse does fail to listen on this machine.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if ln2, err := net.Listen("tcp", "localhost:"+port); err == nil {
		ln2.Close()
		t.Fatalf("localhost:%s listened beside 127.0.0.1:%s", port, port)
	}

	config := func(listen, admin string) string {
		return "server: {listen: \"" + listen + "\", admin_listen: \"" + admin + "\"}\n" +
			"backends:\n  demo: {provider: mock, model: mock-1}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n"
	}
	const same = "server.admin_listen: is on the same address and port as server.listen"
	for _, c := range []struct {
		listen, admin string
		refused       bool
	}{
		{"127.0.0.1:8080", "localhost:8080", true},
		{"LocalHost:8080", "127.0.0.1:8080", true},
		{"localhost:8080", "localhost:8080", true},
		{"127.0.0.1:8080", "localhost:9090", false},
		{"10.0.0.1:8080", "localhost:8080", false},
		{"localhost:0", "127.0.0.1:0", false},
	} {
		t.Run(c.listen+" "+c.admin, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(config(c.listen, c.admin)), env(nil))
			got := err != nil && strings.Contains(err.Error(), same)
			if got != c.refused {
				t.Errorf("listen %s, admin_listen %s: err %v; want refused %v", c.listen, c.admin, err, c.refused)
			}
		})
	}
}
