package gateway

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// A vLLM fleet of more than 64 replicas behind one backend is a pool like any other:
// README (Replica pools) says "A retry of a request (the endpoint's `retries`) goes to
// a target in service that has not failed it, whatever affinity or the balance policy
// would pick, while there is one". The targets that failed a call were kept in a
// 64-bit mask, so a failure on target 64 or later went unrecorded: with affinity the
// retry went back to the very replica that had just failed it, and the client got its
// 500 while 79 healthy replicas sat idle.
func TestRetryAvoidsFailedTargetPast64(t *testing.T) {
	const targets, bad = 80, 70
	var badAttempts atomic.Int64
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if strings.HasPrefix(string(ctx.Path()), "/r"+strconv.Itoa(bad)+"/") {
			badAttempts.Add(1)
			answerError(500)(ctx)
			return
		}
		answerChat(ctx)
	})
	urls := make([]string, targets)
	for i := range urls {
		urls[i] = `"http://` + addr + `/r` + strconv.Itoa(i) + `/v1"`
	}
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, model: m, affinity: {by: prefix}, targets: [`+strings.Join(urls, ", ")+`],
       health: {eject_after: 1000}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 1}
`)
	failed := 0
	// The targets' URLs hold a random port, so which prompts reach the failing
	// target changes with each run: 1,000 leave about one run in 270,000 with none.
	for i := range 1000 {
		body := `{"model":"chat","messages":[{"role":"user","content":"prompt ` + strconv.Itoa(i) + `"}]}`
		if resp, b := postChat(t, g, body); resp.StatusCode != 200 {
			failed++
			if failed == 1 {
				t.Logf("request %d: %d %s", i, resp.StatusCode, b)
			}
		}
	}
	n := badAttempts.Load()
	if n == 0 {
		t.Fatalf("no prompt of 1000 went to target %d; pick more prompts", bad)
	}
	if failed > 0 {
		t.Errorf("%d of 1000 requests failed (%d attempts on the failing target %d of %d): each retry went back to the target that had just failed it, want it on another target in service (200)", failed, n, bad, targets)
	}
}
