package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// bigUsageUpstream answers every chat with a completion of 5005 tokens (5 in, 5000
// out); when the request's X-Test-Upstream is "nousage", with its usage left null and
// 20000 bytes of text, which the gateway counts as 5000 tokens.
func bigUsageUpstream(t *testing.T) string {
	t.Helper()
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		usage, text := `{"prompt_tokens":5,"completion_tokens":5000,"total_tokens":5005}`, "hi"
		if req.Header.Get("X-Test-Upstream") == "nousage" {
			usage, text = "null", strings.Repeat("x", 20000)
		}
		body := `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + text + `"},"finish_reason":"length"}],"usage":` + usage + `}`
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	})
	return addr
}

// TestKeptEstimateOverBurstChargedWhole: a request whose estimate is above the
// bucket's burst, which Take charges only the whole bucket so that it fits once the
// bucket is full, is charged the rest at its settlement, with a usage count above the
// burst, and with an answer without usage, charged its prompt's estimate and its text
// (README, Rate limits), here its whole estimate. A request with max_tokens 5000 on a
// 1000-token/day bucket leaves ~4000 tokens owed, and the next request waits ~4 days,
// whether the upstream reported its usage or not.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
func TestKeptEstimateOverBurstChargedWhole(t *testing.T) {
	up := bigUsageUpstream(t)
	// ~4000 tokens owed past the bucket, at 86.4 s a token (1000 a day).
	const minWait, maxWait = 4000 * 86400 / 1000, 4100 * 86400 / 1000
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			lim := ""
			if store == "redis" {
				lim = `limiter: {store: redis, redis: {url: "` + redistest.Start(t).URL() + `"}, timeout: 5s}
`
			}
			g := startGateway(t, usageConfig(up, lim))
			for _, tc := range []struct{ name, upstream string }{
				{"usage counted past the burst", "usage"},
				{"usage unknown charged its text past the burst", "nousage"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					user := "u-" + tc.upstream
					id := "kept-estimate-" + store + "-" + tc.upstream
					c := &http.Client{Timeout: 10 * time.Second}
					hdr := map[string]string{"X-Test-Upstream": tc.upstream, "X-Request-Id": id}
					big := `{"model":"chat","user":"` + user + `","max_tokens":5000,"messages":[{"role":"user","content":"hi"}]}`
					if resp, b := postRaw(t, c, g.url+"/v1/chat/completions", big, hdr); resp.StatusCode != 200 {
						t.Fatalf("first request: %d %s", resp.StatusCode, b)
					}
					// The access log line is written once the request has settled: the
					// settlement is in the bucket, or queued ahead of the next check.
					afAccess(t, g, id)
					small := `{"model":"chat","user":"` + user + `","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
					resp, b := postRaw(t, c, g.url+"/v1/chat/completions", small, map[string]string{"X-Test-Upstream": tc.upstream})
					if resp.StatusCode != 429 {
						t.Fatalf("next request: %d %s, want 429", resp.StatusCode, b)
					}
					ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
					if err != nil || ra < minWait || ra > maxWait {
						t.Errorf("after a request with max_tokens 5000 on a 1000-token/day bucket (%s), the next one is told retry-after %q "+
							"(%.1f h), want %d..%d s: the request was not charged its whole estimate or usage",
							tc.name, resp.Header.Get("Retry-After"), float64(ra)/3600, minWait, maxWait)
					}
				})
			}
		})
	}
}
