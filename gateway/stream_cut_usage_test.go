package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// The cut-stream tests' key, budget and prices: 370 and 1130 nano-dollars a token.
const (
	cutKey        = "sk-cut-secret"
	cutTokenLimit = 10000
	cutBurstNano  = 10_000_000 // usd burst 0.01
	// cutMessages is the prompt of the streams: 50 bytes, estimated at 50/4 + 1 = 13
	// tokens.
	cutMessages  = `[{"role":"user","content":"tell me a long story"}]`
	cutPromptEst = len(cutMessages)/4 + 1
)

// cutUsageConfig is a gateway in front of the mockllm at addr: endpoint paid on a
// priced backend, free on an unpriced one, and key team-a (cutKey) with a token limit
// and a spend budget, both per day, so that a test reads what a request was charged
// from what the buckets have left. extraBackends and extraEndpoints go in their
// sections.
func cutUsageConfig(addr, extraBackends, extraEndpoints string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  paid: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 30s,
         pricing: {input_per_million: 0.37, output_per_million: 1.13}}
  free: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 30s}
` + extraBackends + `endpoints:
  - {name: paid, type: chat, routes: [{backend: paid}]}
  - {name: free, type: chat, routes: [{backend: free}]}
` + extraEndpoints + `auth:
  mode: keys
  keys:
    - {name: team-a, key: ` + cutKey + `, limits: [{per: api_key, tokens: ` + strconv.Itoa(cutTokenLimit) + `, window: day},
                                                  {per: api_key, usd: 0.0001, window: day, burst: 0.01}]}
`
}

// cutRead is what the client read of a stream.
type cutRead struct {
	status int
	// text is the size of the generated text the events read carried, events how
	// many carried some.
	text, events int
	body         string
}

// postCutStream posts body to path on g with the cut tests' key and hdr, on a
// connection of its own, and returns the answer, its body for the caller to close.
func postCutStream(t *testing.T, g *gw, path, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cutKey)
	req.Header.Set("x-api-key", cutKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// readCutStream posts body to path on g with the cut tests' key and hdr, reads its
// events until n of them carried generated text (chat deltas' content, Messages API
// text deltas), and hangs up; with n 0 it reads the stream to its end.
func readCutStream(t *testing.T, g *gw, path, body string, hdr map[string]string, n int) cutRead {
	t.Helper()
	resp := postCutStream(t, g, path, body, hdr)
	defer resp.Body.Close()
	got := cutRead{status: resp.StatusCode}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	var all strings.Builder
	br := bufio.NewReader(resp.Body)
	for n == 0 || got.events < n {
		line, err := br.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			if n > 0 {
				t.Fatalf("the stream ended after %d of the %d events wanted: %v\n%s", got.events, n, err, all.String())
			}
			break
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: ")
		if !ok || !strings.HasPrefix(data, "{") {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
		}
		if json.Unmarshal([]byte(data), &ev) != nil {
			continue
		}
		size := len(ev.Delta.Text)
		for _, ch := range ev.Choices {
			size += len(ch.Delta.Content)
		}
		if size > 0 {
			got.text += size
			got.events++
		}
	}
	got.body = all.String()
	return got
}

// cutCharged is what the key's buckets lost: tokens and nano-dollars, read from what a
// request on the free endpoint (no cost, its own token estimate known) is told they
// have left. The buckets refill at 0.116 tokens and 1.16 nano-dollars a second.
func cutCharged(t *testing.T, g *gw) (tokens, nano int64) {
	t.Helper()
	const probe = `[{"role":"user","content":"probe"}]`
	resp, b := postRaw(t, &http.Client{Timeout: 20 * time.Second}, g.url+"/v1/chat/completions",
		`{"model":"free","max_tokens":1,"messages":`+probe+`}`, map[string]string{"Authorization": "Bearer " + cutKey})
	if resp.StatusCode != 200 {
		t.Fatalf("probe: %d %s", resp.StatusCode, b)
	}
	rem, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	usd, err := strconv.ParseFloat(resp.Header.Get("X-Ratelimit-Remaining-Usd"), 64)
	if err != nil {
		t.Fatal(err)
	}
	probeEst := int64(len(probe)/4 + 1 + 1)
	return cutTokenLimit - rem - probeEst, cutBurstNano - int64(math.Round(usd*1e9))
}

// cutMetrics reads the tokens and cost the gateway's metrics counted, for the
// endpoints and for the key.
type cutMetrics struct{ in, out, cost, keyIn, keyOut, keyCost float64 }

func readCutMetrics(t *testing.T, g *gw) cutMetrics {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	typ := func(want string) func(map[string]string) bool {
		return func(l map[string]string) bool { return l["type"] == want }
	}
	var m cutMetrics
	m.in, _ = promtest.Sum(fams, "tollgate_tokens_total", typ("input"))
	m.out, _ = promtest.Sum(fams, "tollgate_tokens_total", typ("output"))
	m.cost, _ = promtest.Sum(fams, "tollgate_cost_usd_total", nil)
	m.keyIn, _ = promtest.Sum(fams, "tollgate_key_tokens_total", typ("input"))
	m.keyOut, _ = promtest.Sum(fams, "tollgate_key_tokens_total", typ("output"))
	m.keyCost, _ = promtest.Sum(fams, "tollgate_key_cost_usd_total", nil)
	return m
}

// ceil4 is n bytes at 4 a token, rounded up.
func ceil4(n int) int64 { return int64((n + 3) / 4) }

// TestStreamCutChargedWhatItStreamed: a stream cut after its first tokens, before its
// usage came (the usage comes last), is settled with what it streamed, not with its
// whole estimate (max_tokens 2000 here): the usage so far when the stream carries it
// (continuous_usage_stats), else the prompt as admission estimated it plus the text
// relayed at 4 bytes a token. Its token limit and spend budget are charged that, at
// the backend's prices, and the access log, tollgate_tokens_total, the key's series
// and the cost counter say the same, the access log that it is an estimate. A stream
// with its usage is settled with it, and one the client left after its header, before
// its first token, is refunded, as before.
// Not t.Parallel: a client slow to hang up lets more than 24 bytes past what it read.
func TestStreamCutChargedWhatItStreamed(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{TPOT: 10 * time.Millisecond, MaxTokens: 4000, Seed: 9})
	const est = 2000 + cutPromptEst
	body := func(options string) string {
		return `{"model":"paid","stream":true,"max_tokens":2000,` + options + `"messages":` + cutMessages + `}`
	}
	for _, tc := range []struct {
		name    string
		body    string
		hdr     map[string]string
		hangUp  int    // hang up after this many content events (0: read to the end)
		status  int    // in the access log
		errKind string // in the access log
		// estimated: the usage is the gateway's estimate; none: no usage, the
		// estimate refunded
		estimated, none bool
	}{
		{"client hangs up after 5 chunks", body(""), map[string]string{"x-mock-tokens": "2000"}, 5, 499, "client_gone", true, false},
		{"upstream cuts after 5 chunks", body(""), map[string]string{"x-mock-tokens": "2000", "x-mock-cut-after": "5"}, 0, 200, "upstream_stream_cut", true, false},
		{"continuous usage asked: the usage so far", body(`"stream_options":{"include_usage":true,"continuous_usage_stats":true},`),
			map[string]string{"x-mock-tokens": "2000"}, 5, 499, "client_gone", false, false},
		{"not cut: its usage", body(""), map[string]string{"x-mock-tokens": "6"}, 0, 200, "", false, false},
		{"client hangs up before the first token: refunded", body(""), map[string]string{"x-mock-tokens": "2000", "x-mock-ttft": "3s"}, -1, 499, "client_gone", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, cutUsageConfig(addr, "", ""))
			id := "cut-" + strings.ReplaceAll(tc.name, " ", "-")
			hdr := map[string]string{"X-Request-Id": id}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			var got cutRead
			if tc.hangUp < 0 {
				got = readHeaderOnly(t, g, body(""), hdr)
			} else {
				got = readCutStream(t, g, "/v1/chat/completions", tc.body, hdr, tc.hangUp)
			}
			line := afAccess(t, g, id)
			in, out := afNum(line, "input_tokens"), afNum(line, "output_tokens")
			cost, _ := line["cost_usd"].(float64)
			if afNum(line, "status") != int64(tc.status) || line["error"] != tc.errKind {
				t.Fatalf("access log %v, want status %d error %q", line, tc.status, tc.errKind)
			}
			if est, _ := line["usage_estimated"].(bool); est != tc.estimated {
				t.Errorf("access log usage_estimated %v, want %v: %v", line["usage_estimated"], tc.estimated, line)
			}
			switch {
			case tc.none:
				if in != 0 || out != 0 || cost != 0 {
					t.Errorf("a stream left before its first token counts %d in, %d out, $%v; want no usage", in, out, cost)
				}
			case tc.estimated:
				// The prompt as admission estimated it; the text relayed, which the
				// client read all of, or all but what was on its way when it left.
				if in != int64(cutPromptEst) || out < ceil4(got.text) || out > ceil4(got.text+24) {
					t.Errorf("cut after %d content events of %d bytes: %d in, %d out; want %d in (the prompt's estimate), %d out (4 bytes a token)",
						got.events, got.text, in, out, cutPromptEst, ceil4(got.text))
				}
			case tc.hangUp > 0:
				// The upstream's count so far: its prompt, one token a content chunk.
				if in <= 0 || out < int64(got.events) || out > int64(got.events)+3 {
					t.Errorf("cut after %d content events with the usage on every chunk: %d in, %d out; want the prompt's tokens and about %d out",
						got.events, in, out, got.events)
				}
			default:
				if in <= 0 || out != 6 {
					t.Errorf("a whole stream of 6 tokens: %d in, %d out", in, out)
				}
			}
			// The metrics carry the access log's counts and cost.
			m := readCutMetrics(t, g)
			if m.in != float64(in) || m.out != float64(out) || m.keyIn != float64(in) || m.keyOut != float64(out) ||
				!closeTo(m.cost, cost) || !closeTo(m.keyCost, cost) {
				t.Errorf("metrics %+v; want %d in, %d out, $%v as the access log says", m, in, out, cost)
			}
			if want := (float64(in)*370 + float64(out)*1130) / 1e9; !closeTo(cost, want) {
				t.Errorf("cost_usd %v, want %v: %d in, %d out at the backend's prices", cost, want, in, out)
			}
			// The buckets were charged the same (nothing for no usage), not the
			// estimate.
			tokens, nano := cutCharged(t, g)
			wantTokens, wantNano := in+out, int64(math.Round(cost*1e9))
			if tokens < wantTokens-1 || tokens > wantTokens {
				t.Errorf("the token limit was charged %d, want %d (estimate %d)", tokens, wantTokens, est)
			}
			if nano < wantNano-5 || nano > wantNano {
				t.Errorf("the budget was charged %d nano-dollars, want %d", nano, wantNano)
			}
		})
	}
}

// readHeaderOnly posts a stream and hangs up once its response header has come,
// before any event.
func readHeaderOnly(t *testing.T, g *gw, body string, hdr map[string]string) cutRead {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cutKey)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return cutRead{status: resp.StatusCode}
}

// TestStreamCutUsageFromItsStart: a stream cut before its usage whose start gave the
// prompt's tokens is settled with those, exact, and its output as estimated (4 bytes a
// token of the text relayed): an Anthropic backend's message_start, read for a chat
// call (translated) and for a Messages API call (passed on), and vLLM's own Messages
// API's. Through the Messages API bridge the chat stream carries its usage on every
// chunk (continuous_usage_stats), and the usage so far is exact, output included.
// Not t.Parallel: a client slow to hang up lets more than 24 bytes past what it read.
func TestStreamCutUsageFromItsStart(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{TPOT: 10 * time.Millisecond, MaxTokens: 4000, Seed: 9})
	_, caddr := startMock(t, mockllm.Options{Model: afModel, API: mockllm.APIAnthropic, APIKey: afAnthropicKey,
		TPOT: 10 * time.Millisecond, MaxTokens: 4000, Seed: 9})
	g := startGateway(t, cutUsageConfig(addr, `  claude: {provider: anthropic, base_url: "http://`+caddr+`/v1", model: `+afModel+`, api_key: `+afAnthropicKey+`, timeout: 30s,
           pricing: {input_per_million: 0.37, output_per_million: 1.13}}
  bridged: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 30s, messages_api: chat,
            pricing: {input_per_million: 0.37, output_per_million: 1.13}}
`, `  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: bridged, type: chat, routes: [{backend: bridged}]}
`))
	for _, tc := range []struct {
		name, path, model string
		estimated         bool
	}{
		{"chat call to an Anthropic backend", "/v1/chat/completions", "claude", true},
		{"Messages API call to an Anthropic backend", "/v1/messages", "claude", true},
		{"Messages API call to vLLM's", "/v1/messages", "paid", true},
		{"Messages API call through the bridge", "/v1/messages", "bridged", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"` + tc.model + `","stream":true,"max_tokens":2000,"messages":` + cutMessages + `}`
			id := "start-" + strings.ReplaceAll(tc.name, " ", "-")
			// The same prompt answered whole: its usage counts the prompt's tokens.
			readCutStream(t, g, tc.path, body, map[string]string{"X-Request-Id": id + "-whole", "x-mock-tokens": "3"}, 0)
			whole := afAccess(t, g, id+"-whole")
			prompt := afNum(whole, "input_tokens")
			if prompt <= 0 || whole["usage_estimated"] != nil {
				t.Fatalf("the whole answer's access log: %v", whole)
			}
			if prompt == int64(cutPromptEst) {
				t.Fatalf("the prompt's %d tokens are its estimate too: the test cannot tell the upstream's count from it", prompt)
			}
			got := readCutStream(t, g, tc.path, body, map[string]string{"X-Request-Id": id, "x-mock-tokens": "2000"}, 5)
			line := afAccess(t, g, id)
			in, out := afNum(line, "input_tokens"), afNum(line, "output_tokens")
			if afNum(line, "status") != 499 || in != prompt {
				t.Fatalf("access log %v, want status 499 and the prompt's %d input tokens", line, prompt)
			}
			if est, _ := line["usage_estimated"].(bool); est != tc.estimated {
				t.Errorf("access log usage_estimated %v, want %v: %v", line["usage_estimated"], tc.estimated, line)
			}
			if tc.estimated && (out < ceil4(got.text) || out > ceil4(got.text+24)) {
				t.Errorf("cut after %d text events of %d bytes: %d output tokens, want %d (4 bytes a token)", got.events, got.text, out, ceil4(got.text))
			}
			if !tc.estimated && (out < int64(got.events) || out > int64(got.events)+3) {
				t.Errorf("cut after %d text events, one token each, with the usage on every chunk: %d output tokens", got.events, out)
			}
		})
	}
}

// TestStreamCutUsageOnSpans: the server span and the upstream attempt's span of a
// stream cut before its usage carry the counts its access log line has
// (gen_ai.usage.input_tokens and output_tokens), marked tollgate.usage.estimated.
func TestStreamCutUsageOnSpans(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 600, Seed: 1, TPOT: 10 * time.Millisecond})
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	body := `{"model":"chat","stream":true,"max_tokens":500,"messages":` + cutMessages + `}`
	readCutStream(t, g, "/v1/chat/completions", body, map[string]string{"X-Request-Id": "cut-spans", "x-mock-tokens": "500"}, 4)
	line := afAccess(t, g, "cut-spans")
	in, out := afNum(line, "input_tokens"), afNum(line, "output_tokens")
	if line["usage_estimated"] != true || in != int64(cutPromptEst) || out < 4 {
		t.Fatalf("access log %v, want the estimate of a cut stream", line)
	}
	kinds := 0
	for _, spans := range requestSpans(t, g, exp, "cut-spans") {
		for _, sp := range spans {
			if sp.SpanKind != trace.SpanKindServer && sp.SpanKind != trace.SpanKindClient {
				continue
			}
			kinds++
			s := sp.Snapshot()
			gotIn, _ := attr(s, "gen_ai.usage.input_tokens")
			gotOut, _ := attr(s, "gen_ai.usage.output_tokens")
			est, _ := attr(s, "tollgate.usage.estimated")
			if gotIn.AsInt64() != in || gotOut.AsInt64() != out || !est.AsBool() {
				t.Errorf("%s span: gen_ai.usage %v in, %v out, tollgate.usage.estimated %v; want %d, %d, true",
					sp.Name, gotIn.Emit(), gotOut.Emit(), est.Emit(), in, out)
			}
		}
	}
	if kinds != 2 {
		t.Errorf("%d server and upstream spans, want 2", kinds)
	}
}
