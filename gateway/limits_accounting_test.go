package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// fiveTokenAnswer is a complete chat answer with a usage count.
const fiveTokenAnswer = `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`

// endingUpstream is an upstream that behaves as the request's X-Test-Upstream header says.
func endingUpstream(t *testing.T) string {
	addr, _ := scriptedUpstream(t, func(n int, c net.Conn, req *http.Request) {
		switch mode := req.Header.Get("X-Test-Upstream"); mode {
		case "500":
			b := `{"error":{"message":"boom","type":"server_error","code":null}}`
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(b))+"\r\n\r\n"+b)
		case "cut":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"+sseChunk("a")+sseChunk("b"))
			time.Sleep(50 * time.Millisecond)
			c.Close()
		case "empty":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
			c.Close()
		case "hang", "slowstream":
			if mode == "slowstream" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"+sseChunk("a"))
			}
			// Silent until the gateway gives up on it.
			c.SetReadDeadline(time.Now().Add(8 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
		}
	})
	return addr
}

// postChatMode posts body to the chat URL with the key and mode, and returns status,
// headers and body.
func postChatMode(t *testing.T, g *gw, key, mode, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if mode != "" {
		req.Header.Set("X-Test-Upstream", mode)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// tokensUsedUpstream answers every chat with a usage of total tokens.
func tokensUsedUpstream(t *testing.T, total int) string {
	body := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":` +
		strconv.Itoa(total-1) + `,"total_tokens":` + strconv.Itoa(total) + `}}`
	addr, _ := scriptedUpstream(t, func(n int, c net.Conn, req *http.Request) {
		if req.Header.Get("X-Test-Upstream") == "small" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	})
	return addr
}

// README: "a request that overdraws makes the next ones wait". A caller whose estimate
// was small but whose answer used twice the bucket's whole capacity is refused next,
// with a retry-after covering the overdraft, on either store; on the redis store with
// prefetch on too, where the overdrawn settlement spends the units the replica holds
// and voids them, rather than the next requests being admitted from them and told
// nearly the whole bucket remains.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
func TestLimitsOverdraftMakesNextWait(t *testing.T) {
	for _, store := range []string{"memory", "redis", "redis-prefetch-off"} {
		t.Run(store, func(t *testing.T) {
			up := tokensUsedUpstream(t, 1_200_000)
			lim := ""
			if store != "memory" {
				rds := redistest.Start(t)
				pf := ""
				if store == "redis-prefetch-off" {
					pf = ", prefetch: 0s"
				}
				lim = `limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, timeout: 5s` + pf + `}
`
			}
			g := startGateway(t, mockConfig(up, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 600000, window: minute}]
`)+"logging: {level: error, access_log: false}\n"+lim)
			body := `{"model":"lim","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
			// A few small ones first (with redis: the bucket is then hot and prefetched).
			for range 3 {
				if resp, b := postChatMode(t, g, "", "small", body); resp.StatusCode != 200 {
					t.Fatalf("warm-up: %d %s", resp.StatusCode, b)
				}
			}
			if resp, b := postChatMode(t, g, "", "", body); resp.StatusCode != 200 {
				t.Fatalf("overdrawing request: %d %s", resp.StatusCode, b)
			}
			resp, b := postChatMode(t, g, "", "small", body)
			if resp.StatusCode != 429 {
				t.Fatalf("after a request that used 1.2M tokens of a 600k/minute bucket the next got %d (remaining-tokens %s) %s, want 429",
					resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), b)
			}
			// 1.2M used of a 600k bucket refilling 10k/s: ~60s owed.
			if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 55 || ra > 65 {
				t.Errorf("retry-after %d, want about 60 (600k tokens overdrawn at 10k/s)", ra)
			}
			if rem := resp.Header.Get("X-Ratelimit-Remaining-Tokens"); rem != "0" {
				t.Errorf("x-ratelimit-remaining-tokens %q, want 0", rem)
			}
		})
	}
}

// A concurrency slot must come back however a request ends: an upstream 500, an
// unreachable upstream, a timeout, an empty stream, a stream cut mid-way, a client that
// hangs up on a stream that has begun. A leaked slot locks the caller out for
// good with `concurrency: 1` (memory store: nothing ever frees it).
func TestLimitsConcurrencyReleasedOnEveryEnding(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) { testConcurrencyReleasedOnEveryEnding(t, "") })
	t.Run("redis", func(t *testing.T) {
		rds := redistest.Start(t)
		testConcurrencyReleasedOnEveryEnding(t, `limiter: {store: redis, redis: {url: "`+rds.URL()+`"}}
`)
	})
}

func testConcurrencyReleasedOnEveryEnding(t *testing.T, lim string) {
	up := endingUpstream(t)
	cfg := mockConfig(up, `  dead: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, connect_timeout: 1s}
  slow: {provider: openai, base_url: "http://`+up+`/v1", model: m, timeout: 500ms}
`, `  - {name: c, type: chat, routes: [{backend: up}], retries: 0}
  - {name: d, type: chat, routes: [{backend: dead}], retries: 0}
  - {name: s, type: chat, routes: [{backend: slow}], retries: 0}
`) + `auth:
  mode: keys
  keys:
    - {name: k, key: sk-k, limits: [{per: api_key, concurrency: 1}]}
logging: {level: error, access_log: false}
` + lim
	g := startGateway(t, cfg)
	okBody := `{"model":"c","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
	streamBody := `{"model":"c","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
	admitted := func(after string) {
		t.Helper()
		var last int
		var lastBody string
		if !waitWithin(3*time.Second, func() bool {
			resp, b := postChatMode(t, g, "sk-k", "ok", okBody)
			last, lastBody = resp.StatusCode, b
			return last == 200
		}) {
			t.Fatalf("after %s: a plain request is %d %s, want 200 (the concurrency slot was not released)", after, last, lastBody)
		}
	}
	admitted("start")

	if resp, b := postChatMode(t, g, "sk-k", "500", okBody); resp.StatusCode != 500 {
		t.Fatalf("500 case: %d %s", resp.StatusCode, b)
	}
	admitted("an upstream 500")

	if resp, b := postChatMode(t, g, "sk-k", "", `{"model":"d","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 502 {
		t.Fatalf("unreachable case: %d %s", resp.StatusCode, b)
	}
	admitted("an unreachable upstream (502)")

	if resp, b := postChatMode(t, g, "sk-k", "hang", `{"model":"s","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 504 {
		t.Fatalf("timeout case: %d %s", resp.StatusCode, b)
	}
	admitted("an upstream timeout (504)")

	resp, _ := postChatMode(t, g, "sk-k", "empty", streamBody)
	admitted("an empty stream (" + strconv.Itoa(resp.StatusCode) + ")")

	postChatMode(t, g, "sk-k", "cut", streamBody)
	admitted("a stream cut by the upstream")

	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, rawRequest(t, g, streamBody, "Authorization: Bearer sk-k", "X-Test-Upstream: slowstream"))
	if r, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || r.StatusCode != 200 {
		t.Fatalf("slowstream did not start: %v", err)
	}
	conn.Close()
	admitted("a client that hung up on a stream")
}

// A refused request consumes nothing of the other limits: with the key's tokens limit
// and the endpoint's requests limit, a request the endpoint refuses leaves the key's
// tokens untouched (memory and redis store).
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
func TestLimitsRefusedRequestConsumesNothing(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			up := endingUpstream(t)
			lim := ""
			if store == "redis" {
				rds := redistest.Start(t)
				lim = `limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, timeout: 5s}
`
			}
			g := startGateway(t, mockConfig(up, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 1, window: hour}]
`)+`auth:
  mode: keys
  keys:
    - {name: k, key: sk-k, limits: [{per: api_key, tokens: 1000, window: hour}, {per: api_key, requests: 100, window: hour}]}
logging: {level: error, access_log: false}
`+lim)
			small := `{"model":"chat","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`
			resp, b := postChatMode(t, g, "sk-k", "ok", small)
			if resp.StatusCode != 200 {
				t.Fatalf("on chat: %d %s", resp.StatusCode, b)
			}
			r1, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			body := `{"model":"lim","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}`
			resp, b = postChatMode(t, g, "sk-k", "ok", body)
			if resp.StatusCode != 200 {
				t.Fatalf("first: %d %s", resp.StatusCode, b)
			}
			for range 5 {
				if resp, b := postChatMode(t, g, "sk-k", "ok", body); resp.StatusCode != 429 {
					t.Fatalf("refused: %d %s", resp.StatusCode, b)
				}
			}
			// Another endpoint shares the key's buckets.
			resp, b = postChatMode(t, g, "sk-k", "ok", small)
			if resp.StatusCode != 200 {
				t.Fatalf("on chat: %d %s", resp.StatusCode, b)
			}
			rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			req, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Requests"))
			// Two earlier answers of 5 tokens each were settled since the first check.
			if rem < r1-10 || req < 97 {
				t.Fatalf("after 5 refused requests the key has %d tokens and %d requests left, want ≥%d and 97: refusals consumed its buckets", rem, req, r1-10)
			}
		})
	}
}
