package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// rvGatedUpstream answers chat completions with "answer N", N its call count; the
// first call waits until release is called (after telling arrived), so that a test
// can act (purge, stall Redis) while that request is upstream.
type rvGatedUpstream struct {
	addr    string
	calls   atomic.Int64
	arrived chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func rvStartGatedUpstream(t *testing.T) *rvGatedUpstream {
	t.Helper()
	u := &rvGatedUpstream{arrived: make(chan struct{}, 1), gate: make(chan struct{})}
	u.addr = serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) != "/v1/chat/completions" {
			ctx.SetStatusCode(404)
			return
		}
		n := u.calls.Add(1)
		if n == 1 {
			u.arrived <- struct{}{}
			<-u.gate
		}
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyString(`{"id":"chatcmpl-` + strconv.FormatInt(n, 10) + `","object":"chat.completion","created":1,"model":"up-model",` +
			`"choices":[{"index":0,"message":{"role":"assistant","content":"answer ` + strconv.FormatInt(n, 10) + `"},"finish_reason":"stop"}],` +
			`"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	})
	// Registered after serveUpstream's cleanup: runs first, so its Shutdown does not
	// wait on a handler still held.
	t.Cleanup(u.release)
	return u
}

// waitArrived waits for the first call to reach the upstream.
func (u *rvGatedUpstream) waitArrived(t *testing.T) {
	t.Helper()
	select {
	case <-u.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the upstream within 10s")
	}
}

func (u *rvGatedUpstream) release() { u.once.Do(func() { close(u.gate) }) }

// rvPurge calls DELETE /admin/endpoints/{endpoint}/cache on g.
func rvPurge(t *testing.T, g *gw, endpoint string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("DELETE", "http://"+g.AdminAddr()+"/admin/endpoints/"+endpoint+"/cache", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer
}

// rvStoresSettled is how many answers g's chat cache was given to keep, whatever
// became of them.
func rvStoresSettled(t *testing.T, g *gw) float64 {
	t.Helper()
	var n float64
	for _, res := range []string{"stored", "stale", "dropped", "error"} {
		n += cacheCount(t, g, "tollgate_cache_stores_total", "chat", res)
	}
	return n
}

const rvBody = `{"model":"chat","messages":[{"role":"user","content":"what did the old model say"}]}`

// rvPostAsync posts rvBody to g's chat completions with hdr on a goroutine of its
// own, and sends "STATUS X-TOLLGATE-CACHE BODY" (or the error) when it is answered.
func rvPostAsync(g *gw, hdr map[string]string) <-chan string {
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(rvBody))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- strconv.Itoa(resp.StatusCode) + " " + resp.Header.Get("X-Tollgate-Cache") + " " + string(b)
	}()
	return done
}

// TestRedisCacheNoCacheAnswerAfterOtherReplicasPurge: replicas a and b share one Redis.
// A Cache-Control: no-cache request on a is still upstream when the cache is purged on
// b: its answer, asked for before the purge, is not kept (a read the generation when
// the request came), and b does not serve it.
func TestRedisCacheNoCacheAnswerAfterOtherReplicasPurge(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	up := rvStartGatedUpstream(t)
	cfg := redisCacheConfig(up.addr, rds.URL(), redisCache1h, redisCache1h, "")
	a, b := startGateway(t, cfg), startGateway(t, cfg)

	done := rvPostAsync(a, map[string]string{"Cache-Control": "no-cache"})
	up.waitArrived(t)
	if code, answer := rvPurge(t, b, "chat"); code != 200 || answer["generation"] != float64(1) {
		t.Fatalf("purge on b: %d %v", code, answer)
	}
	up.release()
	if got := <-done; !strings.HasPrefix(got, "200 bypass ") || !strings.Contains(got, "answer 1") {
		t.Fatalf("the no-cache request on a: %s", got)
	}
	waitFor(t, func() bool { return rvStoresSettled(t, a) >= 1 })

	resp, out := contractPost(t, b, "/v1/chat/completions", rvBody, nil)
	if resp.Header.Get("X-Tollgate-Cache") == "hit" || strings.Contains(out, "answer 1") {
		t.Errorf("b answered %q from the answer asked for before its purge (%s), want a miss answered by the upstream",
			resp.Header.Get("X-Tollgate-Cache"), out)
	}
}

// TestRedisCacheFailedLookupAnswerNotKept: Redis stalls a moment and replica a's
// lookup times out (x-tollgate-cache: miss, result="error"); the request goes upstream,
// Redis answers again and the cache is purged on b. a's answer, asked for under an
// unknown generation, is not kept, so b never serves it.
func TestRedisCacheFailedLookupAnswerNotKept(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	up := rvStartGatedUpstream(t)
	cfg := strings.Replace(redisCacheConfig(up.addr, rds.URL(), redisCache1h, redisCache1h, ""), "timeout: 500ms", "timeout: 100ms", 1)
	a, b := startGateway(t, cfg), startGateway(t, cfg)

	rds.Pause()
	paused := true
	defer func() {
		if paused {
			rds.Resume()
		}
	}()
	done := rvPostAsync(a, nil)
	up.waitArrived(t)
	rds.Resume()
	paused = false
	if code, answer := rvPurge(t, b, "chat"); code != 200 || answer["generation"] != float64(1) {
		t.Fatalf("purge on b: %d %v", code, answer)
	}
	// a skips Redis for cacheDownFor after the failed lookup; its store goes once
	// that has passed (an LLM answer often takes longer).
	waitFor(t, func() bool { return a.rt.Load().rcache.up() })
	up.release()
	if got := <-done; !strings.HasPrefix(got, "200 miss ") {
		t.Fatalf("the request on a during the stall: %s", got)
	}
	if n := cacheCount(t, a, "tollgate_cache_requests_total", "chat", "error"); n != 1 {
		t.Fatalf("a's lookups counted as errors: %v, want 1", n)
	}
	// Nothing is queued for it: a store would land within milliseconds.
	time.Sleep(300 * time.Millisecond)
	if n := rvStoresSettled(t, a); n != 0 {
		t.Errorf("stores counted on a: %v, want 0 (the answer of a failed lookup is not kept)", n)
	}

	resp, out := contractPost(t, b, "/v1/chat/completions", rvBody, nil)
	if resp.Header.Get("X-Tollgate-Cache") == "hit" || strings.Contains(out, "answer 1") {
		t.Errorf("b answered %q from the answer a's request asked for before the purge (%s), want a miss answered by the upstream",
			resp.Header.Get("X-Tollgate-Cache"), out)
	}
}

// TestRedisCacheFlappingLogThrottled: a Redis whose lookups time out now and then,
// answering in between (a fork for BGSAVE, a busy neighbour), gets one log line about
// failed lookups per 10 s, not one per failure: a recovery does not restart the
// throttle.
func TestRedisCacheFlappingLogThrottled(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := strings.Replace(redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, ""), "timeout: 500ms", "timeout: 100ms", 1)
	g := startGateway(t, cfg)
	post := func() string {
		t.Helper()
		resp, out := contractPost(t, g, "/v1/chat/completions", rvBody, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Tollgate-Cache")
	}
	post()
	for i := range 2 {
		rds.Pause()
		res := post()
		rds.Resume()
		if res != "miss" {
			t.Fatalf("flap %d: x-tollgate-cache %q during the stall, want miss", i, res)
		}
		// Redis is skipped for a second after the failure; then a lookup answers.
		waitFor(t, func() bool { return g.rt.Load().rcache.up() })
		post()
		if n := cacheCount(t, g, "tollgate_cache_requests_total", "chat", "error"); n != float64(i+1) {
			t.Fatalf("flap %d: the lookup after Redis answered again failed too (%v errors)", i, n)
		}
	}
	if n := cacheCount(t, g, "tollgate_cache_requests_total", "chat", "error"); n != 2 {
		t.Fatalf("lookups counted as errors: %v, want 2", n)
	}
	if n := strings.Count(g.logs.String(), "redis lookup failed"); n != 1 {
		t.Errorf("%d log lines about failed lookups within about a second, want 1 (at most one per 10 s)", n)
	}
}
