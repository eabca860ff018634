package gateway

import (
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// retryLimitsConfig is a gateway in front of the mockllm at addr whose endpoints each
// have one kind of limit, for the key sk-retry; limiterYAML goes after.
func retryLimitsConfig(addr, limiterYAML string) string {
	return mockConfig(addr, `  paid: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 20s,
         pricing: {input_per_million: 1000, output_per_million: 1000}}
`, `  - {name: per-second, type: chat, routes: [{backend: up}], limits: [{per: api_key, requests: 10, window: second, burst: 1}]}
  - {name: slots, type: chat, routes: [{backend: up}], limits: [{per: api_key, concurrency: 1}]}
  - {name: tokens-minute, type: chat, routes: [{backend: up}], limits: [{per: api_key, tokens: 100, window: minute}]}
  - {name: hourly, type: chat, routes: [{backend: up}], limits: [{per: api_key, requests: 40, window: hour, burst: 1}]}
  - {name: daily, type: chat, routes: [{backend: up}], limits: [{per: api_key, requests: 1, window: day}]}
  - {name: budget, type: chat, routes: [{backend: paid}], limits: [{per: api_key, usd: 0.001, window: day}]}
`) + `auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-retry}
` + limiterYAML + `logging: {level: error, access_log: false}
`
}

// retryPost posts body to path on g with the key sk-retry and the header name/value
// pairs of hdr, and returns the answer and its body.
func retryPost(t *testing.T, g *gw, path, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-retry")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func retryChat(model string) string {
	return `{"model":"` + model + `","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
}

// checkWait checks a refusal's wait headers: retry-after-ms within [lo, hi], retry-after
// its whole seconds rounded up, and x-should-retry as want ("" for none).
func checkWait(t *testing.T, h http.Header, lo, hi int64, want string) {
	t.Helper()
	ms, err := strconv.ParseInt(h.Get("Retry-After-Ms"), 10, 64)
	if err != nil {
		t.Fatalf("retry-after-ms %q: %v", h.Get("Retry-After-Ms"), err)
	}
	if ms < lo || ms > hi {
		t.Errorf("retry-after-ms %d, want %d..%d", ms, lo, hi)
	}
	if got, want := h.Get("Retry-After"), strconv.FormatInt((ms+999)/1000, 10); got != want {
		t.Errorf("retry-after %q with retry-after-ms %d, want %q", got, ms, want)
	}
	if got := h.Values("X-Should-Retry"); want == "" && len(got) > 0 || want != "" && (len(got) != 1 || got[0] != want) {
		t.Errorf("x-should-retry %q, want %q", got, want)
	}
}

// A limit's 429 says how long its room takes to come back to the millisecond
// (retry-after-ms beside retry-after's whole seconds), and whether the SDKs should
// retry: yes when every official SDK waits that out as told (under 60 s: a
// requests-per-second limit, a concurrency cap's one-second hint), no when the room
// comes back later (a window of tokens overdrawn, an hourly rate, a day's requests or
// budget spent), where a retry after the SDK's own short backoff is refused again.
// The same with the redis store, whose refusals of a requests bucket are answered
// from the replica until Redis's retry time.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
// Not t.Parallel: the per-second case needs its second request within 100 ms.
func TestRetryHeadersOnLimitRefusals(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testRetryHeadersOnLimitRefusals(t, "") })
	t.Run("redis", func(t *testing.T) {
		rds := redistest.Start(t)
		testRetryHeadersOnLimitRefusals(t, `limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 5s}
`)
	})
}

func testRetryHeadersOnLimitRefusals(t *testing.T, limiterYAML string) {
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 512})
	g := startGateway(t, retryLimitsConfig(addr, limiterYAML))
	day := int64(24 * time.Hour / time.Millisecond)
	for _, c := range []struct {
		name, model string
		// first is the body of the request sent first (retryChat's by default),
		// with the header pairs of hdr.
		first  string
		hdr    []string
		lo, hi int64
		retry  string
	}{
		{name: "requests per second", model: "per-second", lo: 1, hi: 100, retry: "true"},
		// The first answer uses 300 tokens of 100 a minute: the next request
		// waits over two minutes.
		{name: "tokens per minute overdrawn", model: "tokens-minute", first: `{"model":"tokens-minute","max_tokens":400,"messages":[{"role":"user","content":"hi"}]}`, hdr: []string{"X-Mock-Tokens", "300"}, lo: 120_000, hi: 200_000, retry: "false"},
		{name: "hourly rate", model: "hourly", lo: 85_000, hi: 90_000, retry: "false"},
		{name: "day's requests spent", model: "daily", lo: day - 60_000, hi: day, retry: "false"},
		// Its first answer cost past the $0.001 a day.
		{name: "day budget spent", model: "budget", lo: day, hi: math.MaxInt64, retry: "false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			first := c.first
			if first == "" {
				first = retryChat(c.model)
			}
			if resp, b := retryPost(t, g, "/v1/chat/completions", first, c.hdr...); resp.StatusCode != 200 {
				t.Fatalf("first request: %d %s", resp.StatusCode, b)
			}
			if c.model == "tokens-minute" || c.model == "budget" {
				// Its usage is settled once its answer has ended.
				answered(t, g, c.model, 1)
			}
			resp, b := retryPost(t, g, "/v1/chat/completions", retryChat(c.model))
			if resp.StatusCode != 429 || !strings.Contains(b, `"code":"rate_limit_exceeded"`) {
				t.Fatalf("second request: %d %s", resp.StatusCode, b)
			}
			checkWait(t, resp.Header, c.lo, c.hi, c.retry)
		})
	}
	t.Run("concurrency cap", func(t *testing.T) {
		before := mock.Stats().Requests["/v1/chat/completions"]
		held := make(chan int)
		go func() {
			resp, _ := retryPost(t, g, "/v1/chat/completions", retryChat("slots"), "X-Mock-Delay", "2s")
			held <- resp.StatusCode
		}()
		// The slot is taken once its request has reached the upstream.
		waitFor(t, func() bool { return mock.Stats().Requests["/v1/chat/completions"] > before })
		resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("slots"))
		if resp.StatusCode != 429 {
			t.Fatalf("a second request while the slot is held: %d %s", resp.StatusCode, b)
		}
		// A slot frees when a request ends, which nothing predicts: the one-second
		// hint, which the SDKs wait out.
		checkWait(t, resp.Header, 1000, 1000, "true")
		if st := <-held; st != 200 {
			t.Errorf("the request holding the slot: %d", st)
		}
	})
	t.Run("messages API", func(t *testing.T) {
		// The daily limit, spent above: Anthropic's SDKs read the same headers.
		resp, b := retryPost(t, g, "/v1/messages", `{"model":"daily","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, "Anthropic-Version", "2023-06-01")
		if resp.StatusCode != 429 || !strings.Contains(b, `"type":"rate_limit_error"`) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		checkWait(t, resp.Header, day-60_000, day, "false")
	})
}

// The line between waits every official SDK takes as told and longer ones is a
// retry-after-ms of 60000: the openai Node SDK's v4 waits a retry-after-ms under it,
// and its own 0.5-8 s backoff instead of one of 60000 or more.
func TestSetWaitBound(t *testing.T) {
	for _, c := range []struct {
		name   string
		d      time.Duration
		ra, ms string
		within bool
	}{
		{"nothing left to wait still waits", 0, "1", "1", true},
		{"under a millisecond rounds up", 300 * time.Microsecond, "1", "1", true},
		{"a requests-per-second limit's wait", 183*time.Millisecond + time.Microsecond, "1", "184", true},
		{"the longest wait within", 59_999 * time.Millisecond, "60", "59999", true},
		{"a nanosecond more rounds to 60000", 59_999*time.Millisecond + time.Nanosecond, "60", "60000", false},
		{"a day", 24 * time.Hour, "86400", "86400000", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r request
			var h fasthttp.ResponseHeader
			within := r.setWait(&h, c.d)
			if ra, ms := string(h.Peek("Retry-After")), string(h.Peek("Retry-After-Ms")); ra != c.ra || ms != c.ms || within != c.within {
				t.Errorf("setWait(%v): retry-after %q, retry-after-ms %q, within %v; want %q, %q, %v", c.d, ra, ms, within, c.ra, c.ms, c.within)
			}
		})
	}
}

// An upstream's error answer passed on keeps its wait, in seconds as before and now to
// the millisecond too (an Azure retry-after-ms of 250 is no longer a second), and one
// the SDKs would retry but not all wait out as told (two minutes, two hours as a date)
// says x-should-retry: false, on the Messages API too; a 400 is no SDK's retry
// whatever its wait, and an error without a wait gets none.
func TestRetryHeadersOnUpstreamErrors(t *testing.T) {
	inTwoHours := time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat)
	for _, c := range []struct {
		name, path string
		status     int
		hdr        []string
		lo, hi     int64
		retry      string
	}{
		{name: "429 short", status: 429, hdr: []string{"Retry-After", "0.3"}, lo: 300, hi: 300},
		{name: "503 retry-after-ms", status: 503, hdr: []string{"Retry-After-Ms", "250", "Retry-After", "1"}, lo: 250, hi: 250},
		{name: "429 two minutes", status: 429, hdr: []string{"Retry-After", "120"}, lo: 120_000, hi: 120_000, retry: "false"},
		{name: "500 two hours as a date", status: 500, hdr: []string{"Retry-After", inTwoHours}, lo: 7_100_000, hi: 7_200_000, retry: "false"},
		{name: "400 two minutes", status: 400, hdr: []string{"Retry-After", "120"}, lo: 120_000, hi: 120_000},
		{name: "messages API 429 two minutes", path: "/v1/messages", status: 429, hdr: []string{"Retry-After", "120"}, lo: 120_000, hi: 120_000, retry: "false"},
		{name: "500 without a wait", status: 500},
	} {
		t.Run(c.name, func(t *testing.T) {
			up, addr := startCountingUpstream(t, answerError(c.status, c.hdr...))
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
logging: {level: error, access_log: false}
`)
			path := c.path
			if path == "" {
				path = "/v1/chat/completions"
			}
			resp, b := retryPost(t, g, path, retryChat("chat"), "Anthropic-Version", "2023-06-01")
			if resp.StatusCode != c.status || up.count() != 1 {
				t.Fatalf("%d after %d attempts: %s", resp.StatusCode, up.count(), b)
			}
			if c.hi == 0 {
				for _, h := range []string{"Retry-After", "Retry-After-Ms", "X-Should-Retry"} {
					if v := resp.Header.Get(h); v != "" {
						t.Errorf("%s %q on an answer without a wait", h, v)
					}
				}
				return
			}
			checkWait(t, resp.Header, c.lo, c.hi, c.retry)
		})
	}
}
