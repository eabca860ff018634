package gateway

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A reload that fixes a wrong health.path brings the target back within
// healthy_threshold checks, though a request of the old config is still in flight
// (the retired runtime, and its backends, stay open until it ends): the replaced
// backend's checks of the old path stop at the reload instead of resetting the new
// checks' run of passes.
func TestReloadFixingHealthPathTakesEffect(t *testing.T) {
	t.Parallel()
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/health":
		case "/v1/chat/completions":
			ctx.Response.Header.SetContentType("application/json")
			ctx.Response.SetBodyRaw(benchChatResp)
		default:
			ctx.SetStatusCode(404)
		}
	})
	slow, arrived, release := heldChatUpstream(t)
	cfg := func(path, interval string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model,
       health: {path: ` + path + `, interval: ` + interval + `, timeout: 1s, healthy_threshold: 2}}
  slow: {provider: openai, base_url: "http://` + slow + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: hold, type: chat, routes: [{backend: slow}]}
logging: {level: error, access_log: false}
`
	}
	g := startGateway(t, cfg("/nope", "30ms"))
	t.Cleanup(func() { close(release) }) // before the gateway's stop
	waitFor(t, func() bool { code, _ := readyzOf(t, g); return code == 503 })
	go tryPostChat(g.url, `{"model":"hold","messages":[{"role":"user","content":"hi"}]}`)
	waitFor(t, func() bool { return arrived.Load() == 1 })

	if err := os.WriteFile(g.path, []byte(cfg("/health", "100ms")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if !pollFor(5*time.Second, func() bool { code, _ := readyzOf(t, g); return code == 200 }) {
		code, body := readyzOf(t, g)
		t.Errorf("after a reload fixed health.path (checks every 100ms, healthy_threshold 2), /readyz is %d %v: the replaced config's checks of the old path still take the target down", code, body)
	}
}

// A backend a reload removes stops its active checks at the reload, not when the old
// config's last request ends: they would go on feeding the state a backend added back
// under its name finds.
func TestReloadRemovingBackendStopsItsChecks(t *testing.T) {
	t.Parallel()
	var checks atomic.Int64
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			checks.Add(1)
		}
	})
	slow, arrived, release := heldChatUpstream(t)
	const tail = `
  slow: {provider: openai, base_url: "http://SLOW/v1", model: up-model}
endpoints:
  - {name: hold, type: chat, routes: [{backend: slow}]}
logging: {level: error, access_log: false}
`
	withUp := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model,
       health: {path: /health, interval: 20ms, timeout: 1s}}` + tail
	withoutUp := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:` + tail
	g := startGateway(t, strings.ReplaceAll(withUp, "SLOW", slow))
	t.Cleanup(func() { close(release) }) // before the gateway's stop
	waitFor(t, func() bool { return checks.Load() >= 2 })
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tryPostChat(g.url, `{"model":"hold","messages":[{"role":"user","content":"hi"}]}`)
	}()
	waitFor(t, func() bool { return arrived.Load() == 1 })

	if err := os.WriteFile(g.path, []byte(strings.ReplaceAll(withoutUp, "SLOW", slow)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	// A check under way at the reload may still arrive; none after it. It ends
	// within its timeout (1s), but reaches the upstream when its goroutine runs,
	// which on a loaded machine may be well after the reload: wait for the checks
	// to have stopped for longer than that timeout, then count.
	last, quiet := checks.Load(), time.Now()
	if !pollFor(20*time.Second, func() bool {
		if n := checks.Load(); n != last {
			last, quiet = n, time.Now()
		}
		return time.Since(quiet) > 1500*time.Millisecond
	}) {
		t.Fatalf("the removed backend's health checks (every 20ms) still arriving 20s after the reload, %d in all", last)
	}
	before := checks.Load()
	time.Sleep(300 * time.Millisecond)
	if n := checks.Load() - before; n != 0 {
		t.Errorf("the removed backend made %d health checks (every 20ms) while a request of the old config was in flight", n)
	}
	// The upstream holds that request 10 s: checks that went on until it ended
	// would have kept the wait above from seeing them stop.
	select {
	case <-finished:
		t.Fatal("the old config's request ended before the checks were counted: they may have gone on while it ran")
	default:
	}
}
