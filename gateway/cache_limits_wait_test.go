package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// A purge while Redis stalls a request's limit check (the lookup comes before the
// limits): the entry the request found is not served after the purge dropped it; the
// request goes upstream.
func TestCachePurgedWhileLimitsWait(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 5})
	rds := redistest.Start(t)
	cfg := strings.Replace(cacheGatewayConfig(addr, "{ttl: 1h}", `
limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 3s, prefetch: 0s, on_redis_error: allow}
logging: {level: error, access_log: false}
`), "cache: {ttl: 1h}}\n  - {name: embed", "cache: {ttl: 1h}, limits: [{per: endpoint, requests: 100000, window: minute}]}\n  - {name: embed", 1)
	g := startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"what is the capital of France?"}],"max_tokens":4}`
	if resp, b := contractPost(t, g, "/v1/chat/completions", body, nil); resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Fatalf("first request: %d %q %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	rds.Pause()
	defer rds.Resume()
	type answer struct {
		resp *http.Response
		at   time.Time
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			got <- answer{}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- answer{resp, time.Now()}
	}()
	// The request has long been looked up (microseconds) and waits on Redis for 3 s.
	time.Sleep(300 * time.Millisecond)
	req, _ := http.NewRequest("DELETE", "http://"+g.AdminAddr()+"/admin/endpoints/chat/cache", nil)
	presp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(presp.Body)
	presp.Body.Close()
	purged := time.Now()
	if presp.StatusCode != 200 || !strings.Contains(string(pb), `"dropped":1`) {
		t.Fatalf("purge: %d %s", presp.StatusCode, pb)
	}
	a := <-got
	rds.Resume()
	if a.resp == nil {
		t.Fatal("the second request failed")
	}
	if c := a.resp.Header.Get("X-Tollgate-Cache"); c == "hit" && a.at.After(purged) {
		t.Errorf("got x-tollgate-cache: hit %v after the purge that dropped the entry (upstream calls: %d); "+
			"want the purged answer not served after the purge (a miss, asked upstream)",
			a.at.Sub(purged).Round(100*time.Millisecond), upstreamCalls(mock, "/v1/chat/completions"))
	}
}

// An entry whose ttl passes while Redis stalls the request's limit check is not
// served: its ttl is checked again when it would be.
func TestCacheExpiredWhileLimitsWait(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 5})
	rds := redistest.Start(t)
	cfg := strings.Replace(cacheGatewayConfig(addr, "{ttl: 1s}", `
limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 3s, prefetch: 0s, on_redis_error: allow}
logging: {level: error, access_log: false}
`), "cache: {ttl: 1s}}\n  - {name: embed", "cache: {ttl: 1s}, limits: [{per: endpoint, requests: 100000, window: minute}]}\n  - {name: embed", 1)
	g := startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"what is the capital of France?"}],"max_tokens":4}`
	resp, b := contractPost(t, g, "/v1/chat/completions", body, nil)
	kept := time.Now()
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Fatalf("first request: %d %q %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	rds.Pause()
	defer rds.Resume()
	resp, _ = contractPost(t, g, "/v1/chat/completions", body, nil)
	answered := time.Now()
	rds.Resume()
	if c := resp.Header.Get("X-Tollgate-Cache"); c == "hit" && answered.Sub(kept) > 2*time.Second {
		t.Errorf("got x-tollgate-cache: hit with Age: %s, %v after the entry was kept under a 1s ttl (upstream calls: %d); "+
			"want no entry served once its ttl has passed (a miss)",
			resp.Header.Get("Age"), answered.Sub(kept).Round(100*time.Millisecond), upstreamCalls(mock, "/v1/chat/completions"))
	}
}

// A budget whose burst is below its amount (`usd: 1000, window: hour, burst: 10`,
// redis store), unspent: x-ratelimit-remaining-usd and GET /admin/keys say 10, the
// bucket, not Redis's float slack above it.
func TestUSDRemainingNeverAboveBurst(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: "admtok", shutdown_grace: 5s}
backends:
  paid: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 20s,
         pricing: {input_per_million: 2.5, output_per_million: 10}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: paid}], cache: {ttl: 1h, shared: true}}
auth:
  mode: keys
  keys:
    - {name: platform, key: sk-platform-0123456, limits: [{per: api_key, usd: 1000, window: hour, burst: 10}]}
    - {name: other, key: sk-other-0123456789}
limiter: {store: redis, redis: {url: "`+redistest.Start(t).URL()+`"}}
logging: {level: error, access_log: false}
`)
	l := viewKey(t, g, "platform").find(t, "key", "", "api_key", "usd")
	admin := "null"
	if l.Remaining != nil {
		admin = string(*l.Remaining)
	}
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`
	if resp, b := contractPost(t, g, "/v1/chat/completions", body, map[string]string{"Authorization": "Bearer sk-other-0123456789"}); resp.StatusCode != 200 {
		t.Fatalf("filling the cache: %d %s", resp.StatusCode, b)
	}
	resp, b := contractPost(t, g, "/v1/chat/completions", body, map[string]string{"Authorization": "Bearer sk-platform-0123456"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Fatalf("the shared entry: %d %q %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	if hdr := resp.Header.Get("X-Ratelimit-Remaining-Usd"); hdr != "10" || admin != "10" {
		t.Errorf("got x-ratelimit-remaining-usd %s on a hit and GET /admin/keys remaining %s for an unspent budget of burst $10 (limit %s); "+
			"want 10 in both", hdr, admin, resp.Header.Get("X-Ratelimit-Limit-Usd"))
	}
}
