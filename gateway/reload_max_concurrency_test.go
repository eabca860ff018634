package gateway

import (
	"bytes"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
)

// heldChatUpstream answers chat completions, each only once release is closed (or
// after 10s); arrived counts the requests that reached it.
func heldChatUpstream(t *testing.T) (addr string, arrived *atomic.Int64, release chan struct{}) {
	t.Helper()
	arrived = new(atomic.Int64)
	release = make(chan struct{})
	addr = serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		arrived.Add(1)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		ctx.Response.Header.SetContentType("application/json")
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return addr, arrived, release
}

// tryPostChat posts body to the gateway's chat completions, from any goroutine: a
// failed request is status 0 and the error.
func tryPostChat(url, body string) (int, string) {
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// Raising max_concurrency and reloading is the day-2 answer to a backend whose queue
// fills: a request already waiting in the queue takes one of the slots the reload
// opened, rather than sitting out its queue.timeout for 503 upstream_overloaded
// while the target has room.
func TestReloadRaisingMaxConcurrencyAdmitsQueued(t *testing.T) {
	t.Parallel()
	up, arrived, _ := heldChatUpstream(t)
	cfg := func(maxConcurrency int) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model,
       max_concurrency: ` + strconv.Itoa(maxConcurrency) + `, queue: {size: 8, timeout: 2500ms}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`
	}
	g := startGateway(t, cfg(1))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	// A takes the only slot and is held by the upstream.
	go tryPostChat(g.url, body)
	waitFor(t, func() bool { return arrived.Load() == 1 })
	// B queues behind it.
	type result struct {
		code  int
		body  string
		after time.Duration
	}
	bDone := make(chan result, 1)
	start := time.Now()
	go func() {
		code, body := tryPostChat(g.url, body)
		bDone <- result{code, body, time.Since(start)}
	}()
	waitFor(t, func() bool {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			return false
		}
		n, _ := promtest.Sum(fams, "tollgate_in_flight_requests", nil)
		return n == 2
	})
	time.Sleep(100 * time.Millisecond)
	if n := arrived.Load(); n != 1 {
		t.Fatalf("B reached the upstream before the reload (%d arrived): max_concurrency 1 not applied", n)
	}

	if err := os.WriteFile(g.path, []byte(cfg(4)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if pollFor(1500*time.Millisecond, func() bool { return arrived.Load() >= 2 }) {
		return
	}
	select {
	case r := <-bDone:
		t.Fatalf("the queued request took none of the slots the reload opened (max_concurrency 1 -> 4, 1 in use): %d after %v: %s",
			r.code, r.after.Round(100*time.Millisecond), r.body)
	case <-time.After(2 * time.Second):
		t.Fatal("the queued request took none of the slots the reload opened (max_concurrency 1 -> 4, 1 in use) within 1.5s")
	}
}
