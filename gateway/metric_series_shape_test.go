package gateway

import (
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// seriesNamed lists the series of the given families whose labels include the given
// name, value pairs, as name{k=v,...} (a histogram's label set once).
func seriesNamed(fams map[string]*dto.MetricFamily, names []string, labels ...string) []string {
	var out []string
	for _, name := range names {
	next:
		for _, m := range fams[name].GetMetric() {
			have := map[string]string{}
			var ls []string
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			out = append(out, name+"{"+strings.Join(ls, ",")+"}")
		}
	}
	sort.Strings(out)
	return out
}

// streamFamilies are the families only a stream can move: a first token, the time
// between tokens, a stream failed after its 200.
var streamFamilies = []string{
	"tollgate_time_to_first_token_seconds",
	"tollgate_time_per_output_token_seconds",
	"tollgate_stream_errors_total",
}

// An embeddings endpoint never streams (run sends Stream only for other kinds), so it
// never has a first token, a time per output token or a stream that failed after its
// 200: 21+1 TTFT buckets, 17+1 TPOT buckets, their _sum/_count and 5 stream error
// codes per route label set, all 0 for good, each billed as an active series.
func TestEmbeddingsEndpointHasNoStreamSeries(t *testing.T) {
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  bge: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: bge}
endpoints:
  - name: embed
    type: embeddings
    routes: [{backend: bge, variant: stable}]
logging: {access_log: false}
`)
	fams := scrapeAdmin(t, g)
	if n, _ := seriesWith(fams, "tollgate_request_duration_seconds", "endpoint", "embed", "variant", "stable"); n != 1 {
		t.Fatalf("tollgate_request_duration_seconds{endpoint=embed,variant=stable}: %d series, want 1 (the route's series exist)", n)
	}
	if got := seriesNamed(fams, streamFamilies, "endpoint", "embed"); len(got) > 0 {
		t.Errorf("an embeddings endpoint, which never streams, exposes %d stream-only label sets that can never move (want none):\n%s",
			len(got), strings.Join(got, "\n"))
	}
}

// The series of the requests the gateway answers itself (backend none: a bad body, a
// bad key, a limit's 429, a model no endpoint serves) and of a backend's refusals
// without an upstream (variant none, for a backend that is no fallback) never see a
// token: no first token, no time per output token, no stream that failed after its
// 200, no token count and no cost. Each chat endpoint carries two such route label
// sets, and the gateway one more for endpoint "unknown".
func TestOwnAnswersHaveNoStreamOrTokenSeries(t *testing.T) {
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: llama, variant: stable}]
logging: {access_log: false}
`)
	fams := scrapeAdmin(t, g)
	if n, _ := seriesWith(fams, "tollgate_requests_total", "endpoint", "chat", "backend", "none", "code", "429"); n != 1 {
		t.Fatalf("tollgate_requests_total{endpoint=chat,backend=none,code=429}: %d series, want 1 (the gateway's own answers keep their request series)", n)
	}
	var got []string
	got = append(got, seriesNamed(fams, streamFamilies, "backend", "none")...)
	got = append(got, seriesNamed(fams, streamFamilies, "backend", "llama", "variant", "none")...)
	got = append(got, seriesNamed(fams, []string{"tollgate_tokens_total", "tollgate_cached_input_tokens_total", "tollgate_cost_usd_total"}, "backend", "none")...)
	if len(got) > 0 {
		t.Errorf("answers no upstream gave (backend none; llama's refusals, variant none) expose %d label sets that only an upstream's tokens can move (want none):\n%s",
			len(got), strings.Join(got, "\n"))
	}
}

// Only the Anthropic provider reports prompt cache writes (cache_creation_input_tokens;
// OpenAI's usage has cached_tokens, reads only): an OpenAI-compatible backend's
// cache_write series could never move, an Anthropic backend's is there from the start.
func TestOpenAIBackendHasNoCacheWriteSeries(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
  claude: {provider: anthropic, base_url: "http://127.0.0.1:2/v1", model: c, api_key: sk-ant-test-123456}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: llama, variant: stable, weight: 50}, {backend: claude, variant: canary, weight: 50}]
logging: {access_log: false}
`)
	fams := scrapeAdmin(t, g)
	if n, _ := seriesWith(fams, "tollgate_cached_input_tokens_total", "backend", "llama", "type", "cache_read"); n != 1 {
		t.Fatalf("cache_read of llama: %d series, want 1", n)
	}
	if got := seriesNamed(fams, []string{"tollgate_cached_input_tokens_total"}, "backend", "llama", "type", "cache_write"); len(got) > 0 {
		t.Errorf("an OpenAI-compatible backend, whose usage never reports a cache write, exposes %v (want none)", got)
	}
	if n, _ := seriesWith(fams, "tollgate_cached_input_tokens_total", "backend", "claude", "type", "cache_write"); n != 1 {
		t.Errorf("cache_write of the Anthropic backend claude: %d series, want 1 at 0 from the start", n)
	}
}

// A backend without pricing has no cost: Pricing.Cost is 0 for every request, so
// its tollgate_cost_usd_total could never move, and the dashboard's cost panel would
// draw it as a backend that costs $0.
func TestBackendWithoutPricingHasNoCostSeries(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
  gpt: {provider: openai, base_url: "http://127.0.0.1:2/v1", model: g, pricing: {input_per_million: 0.15, output_per_million: 0.6}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: llama, variant: stable, weight: 50}, {backend: gpt, variant: canary, weight: 50}]
logging: {access_log: false}
`)
	fams := scrapeAdmin(t, g)
	if n, _ := seriesWith(fams, "tollgate_cost_usd_total", "endpoint", "chat", "backend", "gpt"); n != 1 {
		t.Fatalf("cost of the priced backend gpt: %d series, want 1", n)
	}
	if got := seriesNamed(fams, []string{"tollgate_cost_usd_total"}, "backend", "llama"); len(got) > 0 {
		t.Errorf("backend llama has no pricing, yet exposes %v (want none: it can never count)", got)
	}
}

// A key's limits can refuse a request only on the endpoints the key may call
// (policyFor joins them only there; a key not allowed is refused before any limit),
// so only those endpoints have a rejection series for them; a key that may call
// every endpoint has its limits' series on each.
func TestKeyLimitSeriesOnlyWhereTheKeyMayCall(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: llama}]}
  - {name: embed, type: embeddings, routes: [{backend: llama}]}
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-team-a-0123456789, endpoints: [chat], limits: [{per: api_key, tokens: 1000, window: minute}]}
    - {name: team-b, key: sk-team-b-0123456789, endpoints: [embed]}
logging: {access_log: false}
`)
	fams := scrapeAdmin(t, g)
	if n, _ := seriesWith(fams, "tollgate_ratelimit_rejections_total", "endpoint", "chat", "limit", "api_key:tokens:minute"); n != 1 {
		t.Fatalf("team-a's limit on chat, which it may call: %d series, want 1", n)
	}
	if got := seriesNamed(fams, []string{"tollgate_ratelimit_rejections_total"}, "endpoint", "embed"); len(got) > 0 {
		t.Errorf("endpoint embed has no limits and only team-b (no limits) may call it, yet exposes %v (want none: no limit can refuse there)", got)
	}

	every := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: llama}]}
  - {name: embed, type: embeddings, routes: [{backend: llama}]}
auth:
  mode: keys
  keys:
    - {name: ops, key: sk-ops-0123456789ab, endpoints: ["*"], limits: [{per: api_key, requests: 10, window: minute}]}
    - {name: team-b, key: sk-team-b-0123456789, limits: [{per: user, tokens: 1000, window: minute}]}
logging: {access_log: false}
`)
	fams = scrapeAdmin(t, every)
	for _, ep := range []string{"chat", "embed"} {
		for _, limit := range []string{"api_key:requests:minute", "user:tokens:minute"} {
			if n, _ := seriesWith(fams, "tollgate_ratelimit_rejections_total", "endpoint", ep, "limit", limit); n != 1 {
				t.Errorf("limit %s of a key that may call every endpoint, on %s: %d series, want 1", limit, ep, n)
			}
		}
	}
}

// A 200, 502 or 504 on a named endpoint comes only from an upstream attempt, which
// counts in the route's series (seriesFor): the gateway's own answers on the endpoint
// (backend none: 400 model_not_supported, 429, 503) and a backend's refusals without
// an upstream (variant none, for a backend that is no fallback: 400
// unsupported_operation, 503) never carry them.
func TestOwnAnswerSeriesHaveNoUpstreamCodes(t *testing.T) {
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: llama, variant: stable}]
logging: {access_log: false}
`)
	fams := scrapeAdmin(t, g)
	if n, _ := seriesWith(fams, "tollgate_requests_total", "endpoint", "chat", "variant", "stable", "code", "200"); n != 1 {
		t.Fatalf("the route's 200: %d series, want 1", n)
	}
	var got []string
	for _, code := range []string{"200", "502", "504"} {
		got = append(got, seriesNamed(fams, []string{"tollgate_requests_total"}, "endpoint", "chat", "backend", "none", "code", code)...)
		got = append(got, seriesNamed(fams, []string{"tollgate_requests_total"}, "endpoint", "chat", "backend", "llama", "variant", "none", "code", code)...)
	}
	if len(got) > 0 {
		t.Errorf("label sets no upstream answer counts in expose codes only an upstream attempt gives (want none):\n%s", strings.Join(got, "\n"))
	}
}

// A reload that turns an embeddings endpoint into a chat one gives its route the
// stream series it lacked, at 0 for rate() from the first stream, and the series it
// had keep their counts.
func TestReloadThatLetsAnEndpointStreamAddsItsStreamSeries(t *testing.T) {
	t.Parallel()
	cfg := func(typ string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: m}
endpoints:
  - {name: m, type: ` + typ + `, routes: [{backend: demo, variant: stable}]}
logging: {access_log: false}
`
	}
	g := startGateway(t, cfg("embeddings"))
	if status, b := postJSON(t, g.url+"/v1/embeddings", `{"model":"m","input":"hi"}`); status != http.StatusOK {
		t.Fatalf("embeddings: %d %s", status, b)
	}
	if got := seriesNamed(scrapeAdmin(t, g), streamFamilies, "endpoint", "m"); len(got) > 0 {
		t.Fatalf("stream series of an embeddings endpoint: %v, want none", got)
	}
	if err := os.WriteFile(g.path, []byte(cfg("chat")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	fams := scrapeAdmin(t, g)
	for _, name := range streamFamilies {
		if n, v := seriesWith(fams, name, "endpoint", "m", "backend", "demo", "variant", "stable"); n == 0 || v != 0 {
			t.Errorf("%s{endpoint=m,variant=stable} after the reload made m a chat endpoint: %d series at %v, want them at 0", name, n, v)
		}
	}
	if _, v := seriesWith(fams, "tollgate_requests_total", "endpoint", "m", "variant", "stable", "code", "200"); v != 1 {
		t.Errorf("the route's 200s after the reload: %v, want the 1 counted before it", v)
	}
}

// A backend's refusals without an upstream count on (endpoint, backend, none) with
// only the statuses a refusal answers; a reload that makes that backend a fallback of
// the endpoint gives the same label set every series a fallback's upstream answers
// move, and the refusals counted before stay.
func TestRefusalSeriesBecomingAFallbackKeepItsCounts(t *testing.T) {
	t.Parallel()
	cfg := func(routes string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
  claude: {provider: anthropic, base_url: "http://127.0.0.1:2/v1", model: c, api_key: sk-ant-test-123456}
endpoints:
  - {name: chat, type: chat, ` + routes + `}
logging: {access_log: false}
`
	}
	g := startGateway(t, cfg("routes: [{backend: claude, variant: stable}]"))
	// Anthropic's API has no n: the backend refuses the call before any upstream.
	if status, b := postJSON(t, g.url+"/v1/chat/completions", `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`); status != http.StatusBadRequest {
		t.Fatalf("n 2 to an Anthropic backend: %d %s, want 400", status, b)
	}
	fams := scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_requests_total", "endpoint", "chat", "backend", "claude", "variant", "none", "code", "400"); v != 1 {
		t.Fatalf("claude's refusal: %v, want 1", v)
	}
	if got := seriesNamed(fams, append([]string{"tollgate_tokens_total"}, streamFamilies...), "backend", "claude", "variant", "none"); len(got) > 0 {
		t.Fatalf("refusals-only series of claude: %v, want no token or stream series", got)
	}

	if err := os.WriteFile(g.path, []byte(cfg("routes: [{backend: llama, variant: stable}], fallbacks: [claude]")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	fams = scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_requests_total", "endpoint", "chat", "backend", "claude", "variant", "none", "code", "400"); v != 1 {
		t.Errorf("claude's refusal after the reload made it a fallback: %v, want the 1 counted before", v)
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"tollgate_requests_total", []string{"code", "502"}},
		{"tollgate_time_to_first_token_seconds", nil},
		{"tollgate_stream_errors_total", []string{"code", "upstream_stream_cut"}},
	} {
		if n, _ := seriesWith(fams, c.name, append([]string{"endpoint", "chat", "backend", "claude", "variant", "none"}, c.labels...)...); n != 1 {
			t.Errorf("%s%v of the fallback claude: %d series, want 1", c.name, c.labels, n)
		}
	}
	for _, typ := range []string{"input", "output"} {
		if n, _ := seriesWith(fams, "tollgate_tokens_total", "endpoint", "chat", "backend", "claude", "type", typ); n != 1 {
			t.Errorf("tollgate_tokens_total{type=%s} of the fallback claude: %d series, want 1", typ, n)
		}
	}
}
