package gateway

import (
	"testing"
	"time"
)

// README's error table: 503 upstream_overloaded only when "every replica at
// max_concurrency ... or at max_connections". One replica of two with its one
// connection (max_connections: 1) busy leaves the other to serve: the requests the
// balance policy gives the busy one go to the other, not to 503 after connect_timeout.
func TestOneTargetAtMaxConnectionsIsNotOverload(t *testing.T) {
	t.Parallel()
	a, arrivedA, _ := heldChatUpstream(t)
	b := startStaticUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, targets: ["http://`+a+`/v1", "http://`+b+`/v1"], model: up-model,
       max_connections: 1, connect_timeout: 100ms}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2}
logging: {level: error, access_log: false}
`)
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	// Requests until one is held by target a, on its only connection.
	for i := 0; arrivedA.Load() == 0; i++ {
		if i == 10 {
			t.Fatal("no request reached target a")
		}
		done := make(chan struct{})
		go func() { tryPostChat(g.url, body); close(done) }()
		select {
		case <-done:
		case <-time.After(300 * time.Millisecond):
		}
	}
	for i := range 4 {
		if code, resp := tryPostChat(g.url, body); code != 200 {
			t.Fatalf("request %d: %d %s, with only one of two targets at max_connections", i, code, resp)
		}
	}
}
