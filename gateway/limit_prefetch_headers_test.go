package gateway

import (
	"strconv"
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// The same config and requests on both stores: a tokens limit of 100 a second, burst
// 8000 (an hour's worth is 360,000). After two small requests the gateway says
// x-ratelimit-remaining-tokens ~7800, and a request whose estimate is 150 below that
// fits. With limiter.store redis (prefetch 10s: the replica holds an eighth of the
// burst, 1000 tokens, taken out of the Redis bucket) the request is more than the held
// units cover and goes to Redis, where the held units go back ahead of it: a single
// replica admits what its headers said fits, as the memory store does.
// Not t.Parallel: its Redis checks have the default 50 ms limiter timeout.
func TestLimitPrefetchAdmitsWhatRemainingSaid(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			up := tokensUsedUpstream(t, 100)
			lim := ""
			if store == "redis" {
				lim = `limiter: {store: redis, redis: {url: "` + redistest.Start(t).URL() + `"}, prefetch: 10s}
`
			}
			g := startGateway(t, mockConfig(up, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 360000, window: hour, burst: 8000}]
`)+"logging: {level: error, access_log: false}\n"+lim)
			small := `{"model":"lim","max_tokens":90,"messages":[{"role":"user","content":"hi"}]}`
			var rem int
			for i := range 2 {
				resp, b := postChatMode(t, g, "", "", small)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
				}
				rem, _ = strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			}
			if rem < 7500 {
				t.Fatalf("x-ratelimit-remaining-tokens %d after two small requests, want about 7800", rem)
			}
			big := `{"model":"lim","max_tokens":` + strconv.Itoa(rem-150) + `,"messages":[{"role":"user","content":"hi"}]}`
			resp, b := postChatMode(t, g, "", "", big)
			if resp.StatusCode != 200 {
				t.Errorf("request of about %d tokens after x-ratelimit-remaining-tokens %d: %d (remaining-tokens %s, retry-after %s) %s; want 200",
					rem-130, rem, resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), resp.Header.Get("Retry-After"), b)
			}
		})
	}
}
