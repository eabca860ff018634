package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

const earlyTooLarge = `{"error":{"message":"request body too large","type":"invalid_request_error","param":null,"code":"payload_too_large"}}`

// earlyAnswerUpstream answers a request whose body is over 1 MiB with a 413 from its
// header alone and closes the connection on the rest of the body.
func earlyAnswerUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.ContentLength >= 1<<20 {
						_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+
							strconv.Itoa(len(earlyTooLarge))+"\r\n\r\n"+earlyTooLarge)
						time.Sleep(10 * time.Millisecond)
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func earlyAnswerConfig(up, redisURL string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 32MiB, shutdown_grace: 5s}
auth:
  keys:
    - {name: team-a, key: sk-team-a}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s, pricing: {input_per_million: 1, output_per_million: 2}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits:
      - {per: api_key, tokens: 100000000, window: day}
      - {per: api_key, usd: 100, window: day}
      - {per: api_key, concurrency: 1}
limiter: {redis: {url: "` + redisURL + `"}, timeout: 500ms}
logging: {level: info, format: json}
`
}

// TestEarlyAnswerRefundsLimits: an upstream that answers a large body 413 from its
// header alone and closes the connection on the rest is the request's answer, charged
// as any upstream error answer is: its token estimate and its spend refunded, its
// concurrency slot given back, the access log and metrics saying 413 from the upstream.
func TestEarlyAnswerRefundsLimits(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	g := startGateway(t, earlyAnswerConfig(earlyAnswerUpstream(t), rds.URL()))
	big := `{"model":"chat","max_tokens":100,"messages":[{"role":"user","content":"` + strings.Repeat("a", 8<<20) + `"}]}`
	hdr := map[string]string{"Authorization": "Bearer sk-team-a", "X-Request-Id": "early-413"}
	resp, b := contractPost(t, g, "/v1/chat/completions", big, hdr)
	if resp.StatusCode != 413 || !strings.Contains(b, "payload_too_large") {
		t.Fatalf("answer %d %s, want the upstream's 413", resp.StatusCode, b)
	}
	if resp.Header.Get("X-Ratelimit-Remaining-Tokens") == "100000000" {
		t.Fatalf("precondition: no estimate charged at admission: %v", resp.Header)
	}
	var lj []byte
	waitFor(t, func() bool {
		_, _, out := adminRaw(t, "GET", "http://"+g.AdminAddr()+"/admin/keys/team-a", "", nil)
		lj, _ = json.Marshal(out["limits"])
		var ls []limitView
		_ = json.Unmarshal(lj, &ls)
		for _, l := range ls {
			full := l.Remaining != nil && *l.Remaining == l.Limit
			if !full || l.InUse != nil && *l.InUse != 0 {
				return false
			}
		}
		return len(ls) == 3
	})
	line := accessLine(t, g, "early-413")
	if line["status"] != 413.0 || line["error"] != "upstream_413" || line["cost_usd"] != 0.0 || line["input_tokens"] != 0.0 {
		t.Errorf("access log line %v, want status 413, error upstream_413, no tokens or cost", line)
	}
	s := scrapeSeries(t, g)
	for k, want := range map[string]float64{
		"tollgate_requests_total{backend=up,code=413,endpoint=chat,variant=up}": 1,
		"tollgate_cost_usd_total{backend=up,endpoint=chat}":                     0,
		"tollgate_key_cost_usd_total{key=team-a}":                               0,
		"tollgate_limiter_settlements_dropped_total{}":                          0,
	} {
		if s[k] != want {
			t.Errorf("%s = %v, want %v", k, s[k], want)
		}
	}
	hdr["X-Request-Id"] = "after"
	if resp, b := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, hdr); resp.StatusCode != 200 {
		t.Errorf("the next request on the key (concurrency 1): %d %s", resp.StatusCode, b)
	}
}
