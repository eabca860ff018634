package gateway

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// max_connections caps the connections to a target whatever reloads happen: a
// connection the replaced config's request still holds counts against the new
// config's cap, and once that request ends its connection no longer does. A reload
// that changes nothing but a comment builds new clients all the same.
func TestMaxConnectionsHoldAcrossReload(t *testing.T) {
	t.Parallel()
	up, arrived, release := heldChatUpstream(t)
	cfg := func(comment string) string {
		return `
# ` + comment + `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model,
       max_connections: 1, connect_timeout: 200ms}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`
	}
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	g := startGateway(t, cfg("first"))
	held := make(chan int, 1)
	go func() { code, _ := tryPostChat(g.url, body); held <- code }()
	waitFor(t, func() bool { return arrived.Load() == 1 })

	if code, resp := tryPostChat(g.url, body); code != 503 || !strings.Contains(resp, "upstream_overloaded") {
		t.Fatalf("before the reload: %d %s, want 503 upstream_overloaded", code, resp)
	}

	if err := os.WriteFile(g.path, []byte(cfg("second")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	after := make(chan string, 1)
	go func() { code, resp := tryPostChat(g.url, body); after <- strconv.Itoa(code) + " " + resp }()
	second := pollFor(time.Second, func() bool { return arrived.Load() >= 2 })
	close(release)
	if code := <-held; code != 200 {
		t.Errorf("the request holding the connection across the reload: %d", code)
	}
	resp := <-after
	if second {
		t.Fatalf("after the reload a second connection reached a target with max_connections: 1 (answer %s)", resp)
	}
	if !strings.HasPrefix(resp, "503 ") || !strings.Contains(resp, "upstream_overloaded") {
		t.Fatalf("after the reload, with the connection busy: %s, want 503 upstream_overloaded", resp)
	}

	// The replaced config's request has ended: its connection is closed, not kept
	// idle against the cap.
	if code, resp := tryPostChat(g.url, body); code != 200 {
		t.Fatalf("with the replaced config's request over: %d %s", code, resp)
	}
}
