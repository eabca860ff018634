package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// The prices of the usd tests' priced backend, per million tokens: 370 and 1130
// nano-dollars a token, so that a cost is no round number of anything.
const (
	usdInputPrice  = 0.37
	usdOutputPrice = 1.13
)

// usdTestConfig is a gateway in front of the mockllm at addr through two backends, one
// priced (endpoint "paid") and one free (endpoint "free"), with key sk-usd-secret
// (named team-a) and its limits; limiterYAML and extra go after.
func usdTestConfig(addr, keyLimits, endpointLimits, limiterYAML string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  paid: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s,
         pricing: {input_per_million: ` + strconv.FormatFloat(usdInputPrice, 'g', -1, 64) + `, output_per_million: ` + strconv.FormatFloat(usdOutputPrice, 'g', -1, 64) + `}}
  free: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s}
endpoints:
  - name: paid
    type: chat
    routes: [{backend: paid}]
    limits: [` + endpointLimits + `]
  - {name: free, type: chat, routes: [{backend: free}]}
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-usd-secret, limits: [` + keyLimits + `]}
` + limiterYAML + `logging: {level: error, access_log: false}
`
}

// usdClient is the official SDK on g with the usd tests' key.
func usdClient(g *gw) openai.Client {
	return g.client(option.WithAPIKey("sk-usd-secret"))
}

// nanoOf reads a dollar amount of an x-ratelimit-*-usd header in nano-dollars.
func nanoOf(t *testing.T, h http.Header, name string) int64 {
	t.Helper()
	v := h.Get(name)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%s: %q: %v", name, v, err)
	}
	return int64(math.Round(f * 1e9))
}

// usdProbe is what the key's budget has left, read from the remaining header of a
// request on the free endpoint, which costs nothing up front or after.
func usdProbe(t *testing.T, g *gw) int64 {
	t.Helper()
	var resp *http.Response
	c := usdClient(g)
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "free", Messages: userMsg("probe"), MaxTokens: openai.Int(1),
	}, option.WithResponseInto(&resp)); err != nil {
		t.Fatalf("probe: %v", err)
	}
	return nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd")
}

// costNano is tollgate_cost_usd_total of backend, in nano-dollars.
func costNano(t *testing.T, g *gw, backend string) float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := promtest.Sum(fams, "tollgate_cost_usd_total", func(l map[string]string) bool { return backend == "" || l["backend"] == backend })
	return v * 1e9
}

// answered waits until g has counted n answers on endpoint: a request is counted,
// and its limits settled, once its answer has ended, which its client may see first.
func answered(t *testing.T, g *gw, endpoint string, n float64) {
	t.Helper()
	waitFor(t, func() bool {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		v, _ := promtest.Sum(fams, "tollgate_requests_total", func(l map[string]string) bool { return l["endpoint"] == endpoint })
		return v >= n
	})
}

// slowBudget is a budget of $0.01 refilled at $0.0001 a day, 1.16 nano-dollars a
// second, so that what a bucket lost over a test is what it was charged to within a
// unit or two.
const slowBudget = "usd: 0.0001, window: day, burst: 0.01"

// withinNano reports whether a bucket's figure is want to within two nano-dollars: the
// refill of a slowBudget over a test, and the floor of the remaining header.
func withinNano(got, want float64) bool { return math.Abs(got-want) <= 2 }

// A spend budget is charged each request's cost estimate at admission and settled at
// exactly the cost tollgate_cost_usd_total adds for it: an answer, a stream whose
// client asked for its usage and one whose usage the gateway asked for, each settled
// when it ends (a stream in progress holds its estimate); a stream cut before its usage
// is settled at the cost of what it streamed, which the counter counts too, and an
// error answer is refunded.
// Not t.Parallel: the budget refills ~1 nano-dollar a second; withinNano allows 2.
func TestUSDBudgetSettlesAtCost(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 64, Seed: 3})
	g := startGateway(t, usdTestConfig(addr, "{per: api_key, "+slowBudget+"}", "", ""))
	c := usdClient(g)
	ctx := context.Background()
	const budget = 10_000_000
	if got := usdProbe(t, g); got != budget {
		t.Fatalf("a full budget: %d remaining, want %d", got, budget)
	}
	params := openai.ChatCompletionNewParams{Model: "paid", Messages: userMsg("Tell me what a budget is."), MaxTokens: openai.Int(24)}
	spent, counted, paid := float64(0), float64(0), float64(0)
	// step checks the bucket against the cost counter after a request on paid.
	step := func(what string, kept int64) {
		t.Helper()
		paid++
		answered(t, g, "paid", paid)
		now := costNano(t, g, "paid")
		spent += now - counted + float64(kept)
		counted = now
		if got := float64(budget - usdProbe(t, g)); !withinNano(got, spent) {
			t.Fatalf("%s: the budget lost %v nano-dollars, the cost counter says %v (and %d kept as estimated)", what, got, spent, kept)
		}
	}

	var resp *http.Response
	res, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	est := budget - nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd")
	// The estimate: the prompt at the input price and max_tokens at the output price.
	if floor := int64(24 * usdOutputPrice * 1e3); est <= floor || est > floor+200*370 {
		t.Errorf("estimate %d nano-dollars, want 24 output tokens (%d) and a short prompt", est, floor)
	}
	if h := resp.Header; h.Get("X-Ratelimit-Limit-Usd") != "0.01" || h.Get("X-Ratelimit-Reset-Usd") == "" {
		t.Errorf("x-ratelimit-limit-usd %q, x-ratelimit-reset-usd %q", h.Get("X-Ratelimit-Limit-Usd"), h.Get("X-Ratelimit-Reset-Usd"))
	}
	if want := float64(res.Usage.PromptTokens)*370 + float64(res.Usage.CompletionTokens)*1130; !withinNano(want, costNano(t, g, "paid")) {
		t.Fatalf("cost counter %v, want %v from the answer's usage", costNano(t, g, "paid"), want)
	}
	step("an answer", 0)

	stream := func(p openai.ChatCompletionNewParams, opts ...option.RequestOption) (*http.Response, error) {
		var resp *http.Response
		s := c.Chat.Completions.NewStreaming(ctx, p, append(opts, option.WithResponseInto(&resp))...)
		for s.Next() {
		}
		return resp, s.Err()
	}
	withUsage := params
	withUsage.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	if _, err := stream(withUsage); err != nil {
		t.Fatal(err)
	}
	step("a stream with include_usage", 0)
	if _, err := stream(params); err != nil {
		t.Fatal(err)
	}
	step("a stream whose usage the gateway asked for", 0)

	// Cut after two tokens, before its usage: settled at the cost of what it
	// streamed (its prompt as estimated, its text at 4 bytes a token), which the
	// cost counter counts too.
	costBefore := costNano(t, g, "paid")
	if _, err := stream(params, option.WithHeader("x-mock-cut-after", "2")); err == nil {
		t.Fatal("a cut stream ended without an error")
	}
	step("a stream cut before its usage", 0)
	if c := costNano(t, g, "paid") - costBefore; c <= 0 {
		t.Fatalf("a stream cut after two tokens costs %v nano-dollars", c)
	}

	_, err = c.Chat.Completions.New(ctx, params, option.WithHeader("x-mock-status", "500"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 {
		t.Fatalf("upstream 500: %v", err)
	}
	step("an error answer", 0)

	// A stream is settled when it ends: while it runs it holds its estimate.
	before := usdProbe(t, g)
	s := c.Chat.Completions.NewStreaming(ctx, params, option.WithResponseInto(&resp), option.WithHeader("x-mock-tpot", "40ms"))
	if !s.Next() {
		t.Fatalf("no first chunk: %v", s.Err())
	}
	held := before - nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd")
	if mid := usdProbe(t, g); !withinNano(float64(before-mid), float64(held)) {
		t.Errorf("mid-stream the budget lost %d, want the estimate %d", before-mid, held)
	}
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	step("a slow stream, ended", 0)
}

// A request that may fall back to a dearer backend is estimated at the dearer prices,
// and settled at what the backend that served it cost.
// Not t.Parallel: the budget refills ~1 nano-dollar a second; withinNano allows 2.
func TestUSDFallbackToDearerBackend(t *testing.T) {
	_, cheap := startMock(t, mockllm.Options{MaxTokens: 16, ErrorRate: 1, Seed: 1})
	_, dear := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 1})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  cheap: {provider: openai, base_url: "http://`+cheap+`/v1", model: up-model, pricing: {input_per_million: 0.01, output_per_million: 0.01}}
  dear: {provider: openai, base_url: "http://`+dear+`/v1", model: up-model, pricing: {input_per_million: 3, output_per_million: 15}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: cheap}]
    fallbacks: [dear]
    retries: 0
    limits: [{per: endpoint, `+slowBudget+`}]
logging: {level: error, access_log: false}
`)
	c := g.client()
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi"), MaxTokens: openai.Int(16)}
	remaining := func() (int64, *openai.ChatCompletion) {
		var resp *http.Response
		res, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if b := resp.Header.Get("X-Tollgate-Backend"); b != "dear" {
			t.Fatalf("served by %q, want the fallback dear", b)
		}
		return nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd"), res
	}
	r1, res := remaining()
	// At the dear backend's prices: 16 output tokens at 15 a million are 240000.
	if est := 10_000_000 - r1; est < 16*15_000 {
		t.Fatalf("estimate %d nano-dollars, below what dear may charge for max_tokens (240000)", est)
	}
	answered(t, g, "chat", 1)
	cost := costNano(t, g, "dear")
	r2, _ := remaining()
	// Both requests are the same, so is their estimate: what the bucket lost between
	// them is what the first one cost at dear's prices, as the cost counter has it.
	if want := float64(res.Usage.PromptTokens)*3_000 + float64(res.Usage.CompletionTokens)*15_000; !withinNano(cost, want) {
		t.Fatalf("cost counter %v, want %v at dear's prices", cost, want)
	}
	if got := float64(r1 - r2); !withinNano(got, cost) {
		t.Fatalf("the budget lost %v for the first request, the cost counter says %v", got, cost)
	}
	if cheapCost := costNano(t, g, "cheap"); cheapCost != 0 {
		t.Errorf("the failed attempt on cheap cost %v", cheapCost)
	}
}

// A spent budget answers OpenAI's 429, which the official SDK reads: rate_limit_exceeded,
// a message naming the budget in dollars and never the key, retry-after and the -usd
// headers; the rejection counts under its limit's name.
func TestUSDBudgetRefusalSDK(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8, Seed: 2})
	g := startGateway(t, usdTestConfig(addr, "{per: api_key, usd: 0.0001, window: day}", "{per: endpoint, requests: 1000, window: minute}", ""))
	c := usdClient(g)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "paid", Messages: userMsg("hi"), MaxTokens: openai.Int(8)}
	var apiErr *openai.Error
	for i := 0; ; i++ {
		_, err := c.Chat.Completions.New(ctx, params)
		if err == nil {
			answered(t, g, "paid", float64(i+1))
			continue
		}
		if !errors.As(err, &apiErr) || i == 0 || i > 20 {
			t.Fatalf("request %d: %v, want a few admitted, then a 429", i, err)
		}
		break
	}
	if apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "rate_limit_exceeded" {
		t.Fatalf("status %d, type %q, code %q", apiErr.StatusCode, apiErr.Type, apiErr.Code)
	}
	msg := apiErr.Message
	if !strings.Contains(msg, "api_key:usd:day") || !strings.Contains(msg, "a budget of $0.0001 per day") || strings.Contains(msg, "sk-usd-secret") {
		t.Errorf("message %q: want the limit and the budget in dollars, never the key", msg)
	}
	h := apiErr.Response.Header
	retry, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || retry < 1 {
		t.Errorf("retry-after %q", h.Get("Retry-After"))
	}
	if h.Get("X-Ratelimit-Limit-Usd") != "0.0001" || nanoOf(t, h, "X-Ratelimit-Remaining-Usd") >= 100_000 ||
		h.Get("X-Ratelimit-Reset-Usd") == "" || h.Get("X-Ratelimit-Limit-Requests") != "1000" {
		t.Errorf("headers %v", h)
	}
	// The wait covers what the next estimate lacks: at 10^5 nano-dollars a day, each
	// second refills 1.157.
	if d := time.Duration(retry) * time.Second; d < time.Minute {
		t.Errorf("retry-after %v, want the refill of what is missing", d)
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := promtest.Sum(fams, "tollgate_ratelimit_rejections_total", func(l map[string]string) bool {
		return l["endpoint"] == "paid" && l["limit"] == "api_key:usd:day"
	}); v != 1 {
		t.Errorf("tollgate_ratelimit_rejections_total{endpoint=paid,limit=api_key:usd:day} = %v, want 1", v)
	}
	// The free endpoint's requests cost nothing, but the spent budget holds the key
	// there too: it may not spend what it lacks.
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "free", Messages: userMsg("hi"), MaxTokens: openai.Int(1)})
	if err != nil {
		t.Errorf("a request costing nothing on a spent budget: %v", err)
	}
}
