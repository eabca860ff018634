package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// limitedEndpointConfig is one endpoint "lim" with the given limits lines, on the
// given limiter section.
func limitedEndpointConfig(up, limits, limiterYAML string) string {
	return mockConfig(up, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    limits:
`+limits) + limiterYAML + "logging: {level: error, access_log: false}\n"
}

type limitedAnswer struct {
	status int
	hdr    http.Header
	// tokens is the answer's usage.total_tokens.
	tokens int
}

func postLimited(t *testing.T, c *http.Client, url, body string) limitedAnswer {
	t.Helper()
	resp, err := c.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		Usage struct {
			Total int `json:"total_tokens"`
		} `json:"usage"`
	}
	_ = json.Unmarshal(b, &v)
	return limitedAnswer{status: resp.StatusCode, hdr: resp.Header, tokens: v.Usage.Total}
}

// README: "The replicas are `limiter.replicas` when set, else the live replicas Redis
// last reported; a replica that has not reached Redis since it started counts itself
// alone". A replica whose limiter section is reloaded during an outage (an operator
// raising limiter.timeout, say) has reached Redis since it started, and Redis last
// reported three replicas: it goes on answering from a third of each limit.
func TestLimitsReloadDuringRedisOutageKeepsReplicaShare(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := func(timeout string) string {
		return limitedEndpointConfig(up, "      - {per: endpoint, requests: 30, window: hour}\n",
			`limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, on_redis_error: allow, timeout: `+timeout+"}\n")
	}
	var gws []*gw
	for range 3 {
		gws = append(gws, startGateway(t, cfg("50ms")))
	}
	waitFor(t, func() bool {
		for _, g := range gws {
			if st := g.rt.Load().lim.Stats(); st.Degraded || st.Replicas != 3 {
				return false
			}
		}
		return true
	})
	// Redis comes back before the gateways stop (cleanups run last first), which
	// spares each shutdown its wait on a dead Redis.
	t.Cleanup(rds.Restart)
	rds.Kill()
	g := gws[0]
	waitFor(t, func() bool { return g.rt.Load().lim.Degraded() })
	if err := os.WriteFile(g.path, []byte(cfg("80ms")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return g.rt.Load().lim.Degraded() })
	c := &http.Client{Timeout: 10 * time.Second}
	body := `{"model":"lim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	admitted := func(g *gw) int {
		n := 0
		for range 30 {
			if a := postLimited(t, c, g.url, body); a.status == 200 {
				n++
			}
		}
		return n
	}
	if n := admitted(gws[1]); n != 10 {
		t.Errorf("a replica not reloaded admitted %d during the outage, want 10", n)
	}
	if n := admitted(g); n != 10 {
		t.Errorf("after a reload during the outage the replica admitted %d of a limit of 30 shared by 3 replicas (fallback share of %d replicas), want 10",
			n, g.rt.Load().lim.Stats().Replicas)
	}
}

// A check written to Redis's socket just before Redis stalls (SIGSTOP past the
// timeout) runs when Redis resumes, after its request was answered without Redis:
//   - deny: the request got a 503 and was never served: once Redis answers again the
//     gateway takes back its request and its whole token estimate;
//   - allow: the request was served from the replica's share: its request stays
//     counted and its tokens are trued up to the real count, not left at the estimate.
//
// Not t.Parallel: it stalls Redis past a 100 ms limiter timeout.
func TestLimitsStalledRedisCheckChargesOnlyWhatWasServed(t *testing.T) {
	for _, mode := range []string{"deny", "allow"} {
		t.Run(mode, func(t *testing.T) {
			rds := redistest.Start(t)
			_, up := startMock(t, mockllm.Options{MaxTokens: 2})
			g := startGateway(t, limitedEndpointConfig(up,
				"      - {per: endpoint, requests: 4, window: hour}\n      - {per: endpoint, tokens: 1000, window: hour}\n",
				`limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, on_redis_error: `+mode+`, timeout: 100ms, prefetch: 0s, replicas: 1}
`))
			waitFor(t, func() bool { return !g.rt.Load().lim.Degraded() })
			c := &http.Client{Timeout: 10 * time.Second}
			small := `{"model":"lim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
			first := postLimited(t, c, g.url, small)
			if first.status != 200 || first.tokens == 0 {
				t.Fatalf("before the stall: %d, %d tokens", first.status, first.tokens)
			}
			// The first request's remaining counts its estimate; so does the next
			// one's, the same.
			before, _ := strconv.Atoi(first.hdr.Get("X-Ratelimit-Remaining-Tokens"))
			rds.Pause()
			t.Cleanup(rds.Resume)
			// The same prompt: the mock's answer is as long.
			big := `{"model":"lim","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}`
			want := map[string]int{"deny": 503, "allow": 200}[mode]
			if a := postLimited(t, c, g.url, big); a.status != want {
				t.Fatalf("during the stall: %d, want %d", a.status, want)
			}
			// Past the longest round the limiter waits on (at least 500ms).
			time.Sleep(time.Second)
			rds.Resume()
			waitFor(t, func() bool { return !g.rt.Load().lim.Degraded() })
			var admitted int
			var after limitedAnswer
			for range 4 {
				if a := postLimited(t, c, g.url, small); a.status == 200 {
					if admitted == 0 {
						after = a
					}
					admitted++
				}
			}
			// Served: the first request (and with allow the stalled one) of 4.
			wantAdmitted := map[string]int{"deny": 3, "allow": 2}[mode]
			if admitted != wantAdmitted {
				t.Errorf("after the stall: %d of 4 admitted, want %d", admitted, wantAdmitted)
			}
			wantRemaining := before - first.tokens
			if mode == "allow" {
				wantRemaining -= first.tokens
			}
			// A token refills every 3.6s.
			if got, _ := strconv.Atoi(after.hdr.Get("X-Ratelimit-Remaining-Tokens")); got < wantRemaining || got > wantRemaining+1 {
				t.Errorf("after the stall: remaining-tokens %d, want %d: Redis still holds the stalled request's estimate, or refunded the tokens of one served",
					got, wantRemaining)
			}
		})
	}
}
