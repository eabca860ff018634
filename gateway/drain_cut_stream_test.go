package gateway

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestStreamBegunInDrainEndsAtCut: a stream whose request was in the gateway when
// the drain began (its upstream had not sent the header yet) runs on during the
// drain; its upstream then goes quiet (a long reasoning pause) and its client, quiet
// too, never closes its end. When shutdown_grace runs out the stream is cut and ends
// at once, its access line written with error shutdown_cut before Serve returns, as
// one begun before the drain does. The lingering close of answers given during the
// drain made the cut's close a lingering one, which kept the socket open for the
// client watch to wait on for 2 s, as long as what was cut gets to end.
func TestStreamBegunInDrainEndsAtCut(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	stop := make(chan struct{})
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		arrived <- struct{}{}
		<-release
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			_, _ = w.WriteString("data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n")
			_ = w.Flush()
			select { // silent from here on
			case <-stop:
			case <-time.After(20 * time.Second):
			}
		})
	})
	t.Cleanup(func() { close(stop) })
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 300ms}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: m, timeout: 60s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	// Serving: a shutdown before fasthttp's Serve has its listener finds nothing to drain.
	if resp, err := http.Get(g.url + "/health"); err == nil {
		resp.Body.Close()
	}
	conn, br := dialGateway(t, g)
	writeTo(t, conn, rawRequest(t, g, streamBody, "X-Request-Id: cut-in-drain"))
	<-arrived
	g.cancel()
	waitFor(t, func() bool { return g.draining.Load() })
	close(release)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream begun during the drain: %v %v", resp, err)
	}
	// The client reads until the cut, and then stays (it never closes its end).
	buf := make([]byte, 4096)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	cut := time.Now()
	logged := func() bool { return strings.Contains(g.logs.String(), `"request_id":"cut-in-drain"`) }
	err = <-g.done
	g.done <- err
	atReturn := logged()
	waitFor(t, logged)
	after := time.Since(cut)
	if after > time.Second {
		t.Errorf("observed the cut stream's access line %v after its client saw the connection end (the line there when Serve returned: %v); "+
			"expected the stream to end at once when cut, as one begun before the drain does", after.Round(10*time.Millisecond), atReturn)
	}
}
