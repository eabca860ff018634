package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// recordingUpstream answers every chat call with benchChatResp and keeps the last body.
type recordingUpstream struct {
	mu   sync.Mutex
	body []byte
}

func (u *recordingUpstream) last() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.body
}

func startRecordingUpstream(t *testing.T) (*recordingUpstream, string) {
	u := &recordingUpstream{}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		u.mu.Lock()
		u.body = append([]byte(nil), ctx.Request.Body()...)
		u.mu.Unlock()
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	return u, addr
}

// A body key spelled with JSON escapes is the key it decodes to, as it is to every
// parser upstream: "mod\u0065l" is a second "model" (refused, so that a client cannot
// pick the upstream model behind the endpoint's back), and alone it names the endpoint.
func TestEscapedBodyKeys(t *testing.T) {
	up, addr := startRecordingUpstream(t)
	s := newTestServer(t, benchConfig(addr))
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"model":"chat","mod\u0065l":"expensive-model","messages":[{"role":"user","content":"hi"}]}`, 400},
		{`{"model":"chat","messages":[{"role":"user","content":"hi"}],"\u006dodel":"expensive-model"}`, 400},
		{`{"model":"chat","messages":[{"role":"user","content":"hi"}],"model":"expensive-model"}`, 400},
		{`{"\u006dodel":"chat","messages":[{"role":"user","content":"hi"}]}`, 200},
		// Go's encoding/json matches keys without regard to case.
		{`{"model":"chat","messages":[{"role":"user","content":"hi"}],"Model":"expensive-model"}`, 400},
	} {
		body := tc.body
		ctx := newProxyCtx([]byte(body))
		proxyOnce(s, ctx)
		if st := ctx.Response.StatusCode(); st != tc.status {
			t.Errorf("body %s: status %d, want %d: %s", body, st, tc.status, ctx.Response.Body())
		}
		if st := ctx.Response.StatusCode(); st == 200 {
			var got struct {
				Model string `json:"model"`
			}
			if err := json.Unmarshal(up.last(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Model != "up-model" {
				t.Errorf("body %s\nreached the upstream as model %q (want the backend's up-model, or a 400): %s", body, got.Model, up.last())
			}
		}
	}
}

// tokenLimitConfig is benchConfig-like in front of upstream with one tokens limit on
// the endpoint.
func tokenLimitConfig(upstream string) string {
	return mockConfig(upstream, "", `
  - name: limited
    type: chat
    routes: [{backend: up}]
    limits:
      - {per: endpoint, tokens: 1000, window: minute}
`) + "logging: {level: info}\n"
}

// An upstream 4xx (a 400 such as context_length_exceeded, or a 429 the upstream
// throttled with) generated nothing: its token estimate is refunded, so one rejected
// call with max_tokens 900 does not lock the caller out of a 1000-token budget.
func TestUpstreamClientErrorRefundsTokenEstimate(t *testing.T) {
	for _, status := range []string{"400", "429"} {
		t.Run(status, func(t *testing.T) {
			_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
			s := newTestServer(t, tokenLimitConfig(addr))
			body := []byte(`{"model":"limited","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}`)
			ctx := newProxyCtx(body)
			ctx.Request.Header.Set("X-Mock-Status", status)
			proxyOnce(s, ctx)
			if st := strconv.Itoa(ctx.Response.StatusCode()); st != status {
				t.Fatalf("first call: status %s, want the upstream's %s: %s", st, status, ctx.Response.Body())
			}
			ctx = newProxyCtx(body)
			proxyOnce(s, ctx)
			if st := ctx.Response.StatusCode(); st != 200 {
				t.Fatalf("second call: status %d after an upstream %s that used no tokens: %s", st, status, ctx.Response.Body())
			}
		})
	}
}

// A client that hangs up on a stream after it was sent content (a user pressing stop)
// keeps its token estimate charged: the usage comes in the last chunk, which it never
// took, and a refund would let a client read nearly a whole answer past a tokens limit.
func TestClientGoneAfterContentKeepsTokenEstimate(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 1000, MaxModelLen: 4096, TPOT: 2 * time.Millisecond})
	g := startGateway(t, tokenLimitConfig(addr))
	conn, br := dialGateway(t, g)
	body := `{"model":"limited","stream":true,"max_tokens":900,"messages":[{"role":"user","content":"go on"}]}`
	req := rawRequest(t, g, body)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream did not start: %v", err)
	}
	// Take some content, then hang up.
	content := 0
	for content < 50 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, `"content":`) {
			content++
		}
	}
	conn.Close()
	waitFor(t, func() bool { return strings.Contains(g.logs.String(), `"status":499`) })
	// A small call shows what is left of the 1000-token budget.
	small := `{"model":"limited","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`
	r2, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r2.Body)
	r2.Body.Close()
	rem, _ := strconv.Atoi(r2.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if r2.StatusCode != 200 || rem > 1000-50 {
		t.Fatalf("status %d, %d tokens remaining after %d streamed content chunks were delivered: they were refunded", r2.StatusCode, rem, content)
	}
}

// Every answer carries x-request-id: the model list, a wrong method on an API route and
// an unknown path too.
func TestRequestIDOnEveryAnswer(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", ""))
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/models"},
		{"GET", "/v1/chat/completions"},
		{"POST", "/v1/nope"},
	} {
		req, _ := http.NewRequest(c.method, g.url+c.path, nil)
		req.Header.Set("X-Request-Id", "my-id-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); got != "my-id-1" {
			t.Errorf("%s %s: status %d, x-request-id %q", c.method, c.path, resp.StatusCode, got)
		}
	}
}

// A max_tokens near 2^63 does not wrap the token estimate negative (charged as 0): an
// empty tokens bucket refuses it as it refuses an ordinary call. Upstreams that clamp
// max_tokens (Ollama, some OpenAI-compatible servers) would serve it.
func TestHugeMaxTokensStillLimited(t *testing.T) {
	resp := []byte(`{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"..."},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":990,"total_tokens":995}}`)
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(resp)
	})
	s := newTestServer(t, tokenLimitConfig(addr))
	// Spend the 1000-token bucket.
	ctx := newProxyCtx([]byte(`{"model":"limited","max_tokens":990,"messages":[{"role":"user","content":"hi"}]}`))
	proxyOnce(s, ctx)
	if st := ctx.Response.StatusCode(); st != 200 {
		t.Fatalf("first call: %d %s", st, ctx.Response.Body())
	}
	ctx = newProxyCtx([]byte(`{"model":"limited","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}`))
	proxyOnce(s, ctx)
	if st := ctx.Response.StatusCode(); st != 429 {
		t.Fatalf("an ordinary call on the spent bucket: %d, want 429", st)
	}
	ctx = newProxyCtx([]byte(`{"model":"limited","max_tokens":9223372036854775807,"messages":[{"role":"user","content":"hi"}]}`))
	proxyOnce(s, ctx)
	if st := ctx.Response.StatusCode(); st != 429 {
		t.Fatalf("max_tokens 2^63-1 on the spent bucket: status %d, want 429", st)
	}
}

// An MLflow invocation without a valid key gets 401 whether or not the endpoint exists,
// as /v1/chat/completions does: endpoint names cannot be listed by probing.
func TestInvocationAuthBeforeLookup(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", "")+`
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-team-a}
`)
	for _, name := range []string{"chat", "no-such-endpoint"} {
		resp, err := http.Post(g.url+"/endpoints/"+name+"/invocations", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("invocation of %q without a key: status %d, want 401", name, resp.StatusCode)
		}
	}
}

// A client key sees only the endpoints it may use, in the model list and through the
// SDK's retrieve call; another endpoint is as unknown to it as a missing one.
func TestModelsPerKey(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", "")+`
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-team-a, endpoints: [chat]}
`)
	ctx := context.Background()
	c := g.client(option.WithAPIKey("sk-team-a"))
	page, err := c.Models.List(ctx)
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != "chat" {
		t.Fatalf("models for team-a: %+v %v", page, err)
	}
	if m, err := c.Models.Get(ctx, "chat"); err != nil || m.ID != "chat" {
		t.Fatalf("retrieve chat: %+v %v", m, err)
	}
	for _, id := range []string{"embed", "nope"} {
		if _, err := c.Models.Get(ctx, id); apiErr(t, err).StatusCode != 404 {
			t.Fatalf("retrieve %s with team-a's key: %v", id, err)
		}
	}
	anon := g.client()
	if _, err := anon.Models.Get(ctx, "chat"); apiErr(t, err).StatusCode != 401 {
		t.Fatalf("retrieve without a key: %v", err)
	}
}

// max_tokens bounds each of the n completions a request asks for: the tokens limit is
// charged n times it up front (the answer's usage then trues it up).
func TestTokenEstimateCountsChoices(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		n        string
		atLeast  int
		atMost   int
		describe string
	}{
		{`"n":1,`, 100, 199, "one completion"},
		{`"n":3,`, 300, 399, "three completions"},
	} {
		t.Run(c.describe, func(t *testing.T) {
			// The limit headers say what admission left, before the answer's usage
			// trues the bucket up.
			_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
			g := startGateway(t, tokenLimitConfig(addr))
			body := `{"model":"limited",` + c.n + `"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
			resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			if err != nil {
				t.Fatalf("status %d, remaining %q", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			}
			if est := 1000 - rem; est < c.atLeast || est > c.atMost {
				t.Errorf("estimate %d tokens for max_tokens 100 and %s, want %d to %d", est, c.n, c.atLeast, c.atMost)
			}
		})
	}
}

// remainingTokensAfter posts body to path and returns x-ratelimit-remaining-tokens,
// what admission left before the answer's usage trued the bucket up.
func remainingTokensAfter(t *testing.T, g *gw, path, body string) int {
	t.Helper()
	resp, b := postRaw(t, http.DefaultClient, g.url+path, body, nil)
	rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("status %d, remaining %q: %s", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), b)
	}
	return rem
}

// A legacy completion's "prompt" array of strings (or of token arrays) is one
// completion of up to max_tokens per prompt, times n or best_of: one request with 5
// prompts and max_tokens 100 is charged 500 tokens up front, not the 100 of one
// completion; a flat array of token IDs is one prompt.
func TestTokenEstimateCountsPrompts(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	for _, c := range []struct {
		name            string
		fields          string
		atLeast, atMost int
	}{
		{"one string", `"prompt":"a"`, 100, 199},
		{"five strings", `"prompt":["a","b","c","d","e"]`, 500, 599},
		{"token IDs", `"prompt":[1,2,3]`, 100, 199},
		{"two token arrays", `"prompt":[[1,2],[3]]`, 200, 299},
		{"two strings, best_of 3", `"prompt":["a","b"],"best_of":3`, 600, 699},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, mockConfig(up, "", `
  - name: legacyl
    type: completions
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 1000, window: minute}]
`))
			rem := remainingTokensAfter(t, g, "/v1/completions", `{"model":"legacyl","max_tokens":100,`+c.fields+`}`)
			if est := 1000 - rem; est < c.atLeast || est > c.atMost {
				t.Errorf("%s with max_tokens 100 charged %d tokens up front, want %d to %d", c.fields, est, c.atLeast, c.atMost)
			}
		})
	}
}

// An embeddings request generates no output tokens: a tokens limit is charged its
// input only, not default_max_tokens (256) of output as well, which refused a 3-token
// request against a 200-token limit with 197 tokens left.
func TestEmbeddingsTokenEstimateIsInputOnly(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2, EmbeddingDim: 8})
	g := startGateway(t, mockConfig(up, "", `
  - name: embl
    type: embeddings
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 200, window: minute}]
`))
	for i := 0; i < 5; i++ {
		rem := remainingTokensAfter(t, g, "/v1/embeddings", `{"model":"embl","input":"hello there","max_tokens":100}`)
		if rem < 180 {
			t.Fatalf("request %d: %d of 200 tokens left, want the input only charged (a few tokens each)", i+1, rem)
		}
	}
}

// n completions stream side by side: the time per output token is that of one of
// them, not the stream's time divided by every choice's tokens together.
func TestTimePerOutputTokenOfChoices(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{TPOT: 20 * time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	body := `{"model":"chat","stream":true,"n":3,"max_tokens":6,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var sum, count float64
	waitFor(t, func() bool {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			return false
		}
		f := fams["tollgate_time_per_output_token_seconds"]
		if f == nil {
			return false
		}
		sum, count = 0, 0
		for _, m := range f.GetMetric() {
			sum += m.GetHistogram().GetSampleSum()
			count += float64(m.GetHistogram().GetSampleCount())
		}
		return count == 1
	})
	// 20 ms per token of each choice; divided by all 18 tokens it would be about a
	// third of that. Load can shorten it too: mockllm keeps its tokens' schedule, so
	// a first token held up is followed by the next ones sooner (13.5 ms seen).
	if tpot := sum / count; tpot < 0.010 {
		t.Errorf("time per output token %.1f ms, want about 20 (the upstream's per choice)", tpot*1000)
	}
}
