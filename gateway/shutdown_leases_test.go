package gateway

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// README: what is still open when shutdown_grace runs out is cut with its Redis
// concurrency leases given back, so that other replicas do not refuse those keys for
// concurrency_lease. An answer not streamed (a reasoning model's minutes-long
// completion) is as open as a stream: once Serve has returned, the process about to
// exit, its lease is no longer taken in Redis, and the request ending afterwards
// releases nothing twice.
// Not t.Parallel: its Redis calls have the default 50 ms limiter timeout.
func TestShutdownGraceExpiryReleasesNonStreamLeases(t *testing.T) {
	rds := redistest.Start(t)
	up, arrived, release := heldChatUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 300ms}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, timeout: 1m}
endpoints:
  - name: one
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, concurrency: 5}]
limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, concurrency_lease: 60s}
logging: {level: error, access_log: false}
`)
	done := make(chan int, 1)
	go func() {
		code, _ := tryPostChat(g.url, `{"model":"one","messages":[{"role":"user","content":"hi"}]}`)
		done <- code
	}()
	waitFor(t, func() bool { return arrived.Load() == 1 })
	held := func() int { return leasesHeld(rds.Addr()) }
	if n := held(); n != 1 {
		t.Fatalf("%d leases in Redis while the request runs, want 1", n)
	}
	g.stopWithin(t, 15*time.Second)
	if n := held(); n != 0 {
		t.Errorf("Serve returned (shutdown_grace 300ms ran out) with an answer still awaited: %d concurrency lease(s) left in Redis (concurrency_lease 60s), want 0 as for a cut stream", n)
	}
	// The request ends now, on the closed limiter.
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not end once its upstream answered")
	}
	if n := held(); n != 0 {
		t.Errorf("%d leases in Redis after the request ended", n)
	}
}

// stopWithin cancels g and waits up to d for Serve to return, which the test's
// cleanup (gw.stop) then finds done.
func (g *gw) stopWithin(t *testing.T, d time.Duration) {
	t.Helper()
	g.cancel()
	select {
	case <-g.done:
		g.done <- nil
	case <-time.After(d):
		t.Fatal("the gateway did not stop")
	}
}
