package gateway

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// README (Rate limits): while Redis fails a replica answers from burst ÷ the live
// replicas Redis last reported. A reload that changes the limiter section builds a new
// limiter; the old one lives on, heartbeating, until the last request of the replaced
// config ends (a stream, minutes). The process still counts as one replica in Redis
// meanwhile, so a single gateway answers from the whole of its limit during an outage.
func TestReloadLimiterKeepsOneReplicaWhileOldRequestsRun(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, fast := startMock(t, mockllm.Options{MaxTokens: 2})
	_, slow := startMock(t, mockllm.Options{MaxTokens: 200, TPOT: 100 * time.Millisecond})
	cfg := func(prefetch string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  fast: {provider: openai, base_url: "http://` + fast + `/v1", model: up-model}
  slow: {provider: openai, base_url: "http://` + slow + `/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: fast}]
    limits: [{per: endpoint, requests: 10, window: minute}]
  - {name: long, type: chat, routes: [{backend: slow}]}
limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, on_redis_error: allow, timeout: 50ms, prefetch: ` + prefetch + `}
logging: {access_log: false}
`
	}
	g := startGateway(t, cfg("100ms"))
	c := g.client()
	// A long stream (about 20 s) holds the runtime, and its limiter, that the reload
	// replaces. Its client hangs up once the test is over, so that the gateway's stop
	// does not wait for the rest of it.
	streamCtx, hangUp := context.WithCancel(context.Background())
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		s := c.Chat.Completions.NewStreaming(streamCtx, openai.ChatCompletionNewParams{Model: "long", Messages: userMsg("tell me a long story")})
		for s.Next() {
		}
	}()
	t.Cleanup(func() { hangUp(); <-streamDone }) // before the gateway stops
	time.Sleep(500 * time.Millisecond)
	// An operator turns prefetch off: the limiter section changed, a new limiter.
	if err := os.WriteFile(g.path, []byte(cfg("0s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	// Past a heartbeat of each limiter, and past the lifetime of a member neither
	// renews.
	time.Sleep(3500 * time.Millisecond)
	members, _ := redistest.Command(rds.Addr(), "ZRANGE", "tg:{replicas}", "0", "-1")
	n := len(strings.Fields(members))
	// Redis comes back before the gateway stops (cleanups run last first), which
	// spares its shutdown the wait on a dead Redis.
	t.Cleanup(rds.Restart)
	// Redis goes away: this single replica now answers from its share.
	rds.Kill()
	if !waitWithin(5*time.Second, func() bool { return g.rt.Load().lim.Degraded() }) {
		t.Fatal("limiter never noticed Redis was gone")
	}
	ok := 0
	for range 10 {
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
		if err == nil {
			ok++
		}
	}
	select {
	case <-streamDone:
		t.Fatal("the long stream ended before the check: the test did not hold the old runtime")
	default:
	}
	if ok != 10 || n != 1 {
		t.Fatalf("one gateway process, one reload of limiter: while a stream begun before the reload ran, Redis listed %d replicas (%q) and, Redis down, a fresh limit of 10/minute admitted %d of 10 requests; want 1 replica and all 10 (README: the fallback share is burst ÷ the live replicas)", n, members, ok)
	}
}
