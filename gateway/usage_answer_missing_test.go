package gateway

import (
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// noUsageAnswers are answers without usage, as some OpenAI-compatible servers send
// them, by the X-Test-Script that asks for each, with the size of the generated text
// each holds (the inside of its strings as written; a tool_use block's input whole).
var noUsageAnswers = map[string]struct {
	body string
	text int
}{
	// content 401, reasoning 100 (under both names: counted once), a tool call's
	// arguments 10.
	"chat": {`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("a", 401) + `","reasoning_content":"` + strings.Repeat("r", 100) + `","reasoning":"` + strings.Repeat("r", 100) +
		`","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"q\":1}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}]}`, 511},
	// usage null, a refusal of 30.
	"chat-null": {`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"` +
		strings.Repeat("n", 30) + `"},"finish_reason":"stop"}],"usage":null}`, 30},
	// 20000 bytes of content: 5000 tokens, past the request's estimate.
	"chat-big": {`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("b", 20000) + `"},"finish_reason":"length"}]}`, 20000},
	"completion": {`{"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"` + strings.Repeat("t", 77) +
		`","logprobs":null,"finish_reason":"length"}]}`, 77},
	// a reasoning summary 40, output text 200, function call arguments 10, a custom
	// tool call's input 30.
	"response": {`{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"m","instructions":"` + strings.Repeat("i", 500) +
		`","output":[{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"` + strings.Repeat("s", 40) +
		`"}]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"` + strings.Repeat("o", 200) +
		`","annotations":[]}]},{"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"{\"q\":1}","status":"completed"},` +
		`{"type":"custom_tool_call","id":"ctc_1","call_id":"call_2","name":"apply_patch","input":"` + strings.Repeat("p", 30) + `"}],"usage":null}`, 280},
	// A background response, its work still to come.
	"response-queued": {`{"id":"resp_2","object":"response","created_at":1,"status":"queued","background":true,"model":"m","output":[],"usage":null}`, 0},
	// thinking 60, text 100, a tool_use block's input of 16.
	"message": {`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"thinking","thinking":"` + strings.Repeat("h", 60) +
		`","signature":"c2ln"},{"type":"text","text":"` + strings.Repeat("m", 100) + `"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"city":"Paris"}}],` +
		`"stop_reason":"tool_use","stop_sequence":null}`, 176},
	// The same with its usage.
	"chat-usage": {`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`, 0},
}

// noUsageUpstream answers with the answer of noUsageAnswers its request's
// X-Test-Script names; without one, with a chat answer and its usage.
func noUsageUpstream(t *testing.T) string {
	t.Helper()
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		body := noUsageAnswers["chat-usage"].body
		if a, ok := noUsageAnswers[req.Header.Get("X-Test-Script")]; ok {
			body = a.body
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	})
	return addr
}

// TestAnswerWithoutUsageChargedWhatItAnswered: an answer not streamed that came
// without usage (none, or null) is charged as a stream without usage is: the prompt
// as admission estimated it and its generated text (content, reasoning once, a
// refusal, tool call arguments; a response's output text; a message's text, thinking
// and tool input) at 4 bytes a token, rounded up, never past the estimate. Its token
// limit and spend budget are settled with that, and the access log (usage_estimated),
// tollgate_tokens_total, the cost counter, the key's series and both spans
// (tollgate.usage.estimated) carry it. A background response, whose work is still to
// come, keeps its estimate charged; an answer with its usage is settled with it.
func TestAnswerWithoutUsageChargedWhatItAnswered(t *testing.T) {
	addr := noUsageUpstream(t)
	cfg := cutUsageConfig(addr, `  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: `+afModel+`, api_key: `+afAnthropicKey+`, timeout: 30s,
           pricing: {input_per_million: 0.37, output_per_million: 1.13}}
  bridged: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 30s, messages_api: chat, responses_api: chat,
            pricing: {input_per_million: 0.37, output_per_million: 1.13}}
`, `  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: legacy, type: completions, routes: [{backend: paid}]}
  - {name: bridged, type: chat, routes: [{backend: bridged}]}
`) + "tracing: {exporter: otlp-grpc, sample_ratio: 1}\n"
	chat := func(model string) string {
		return `{"model":"` + model + `","max_tokens":2000,"messages":` + cutMessages + `}`
	}
	const est = 2000 + cutPromptEst
	for _, tc := range []struct {
		name, path, body, script string
		// in is the prompt's estimate (0: any of 1 to 40), out the output charged;
		// kept: the estimate stays charged, no usage counted; exact: the upstream's.
		in, out     int64
		kept, exact bool
	}{
		{"chat without usage", "/v1/chat/completions", chat("paid"), "chat", int64(cutPromptEst), ceil4(511), false, false},
		{"chat with usage null", "/v1/chat/completions", chat("paid"), "chat-null", int64(cutPromptEst), ceil4(30), false, false},
		{"chat past its estimate", "/v1/chat/completions", chat("paid"), "chat-big", int64(cutPromptEst), 2000, false, false},
		{"legacy completion", "/v1/completions", `{"model":"legacy","max_tokens":2000,"prompt":"tell me a long story"}`, "completion", 0, ceil4(77), false, false},
		{"Responses API", "/v1/responses", `{"model":"paid","max_output_tokens":2000,"input":"tell me a long story"}`, "response", 0, ceil4(280), false, false},
		{"Messages API to an Anthropic backend", "/v1/messages", chat("claude"), "message", 0, ceil4(176), false, false},
		{"chat to an Anthropic backend", "/v1/chat/completions", chat("claude"), "message", int64(cutPromptEst), ceil4(176), false, false},
		{"Responses API through the bridge", "/v1/responses", `{"model":"bridged","max_output_tokens":2000,"input":"tell me a long story"}`, "chat", 0, ceil4(511), false, false},
		{"Messages API through the bridge", "/v1/messages", chat("bridged"), "chat", 0, ceil4(511), false, false},
		{"background response keeps its estimate", "/v1/responses", `{"model":"paid","max_output_tokens":2000,"background":true,"input":"tell me a long story"}`, "response-queued", 0, 0, true, false},
		{"chat with usage", "/v1/chat/completions", chat("paid"), "chat-usage", 7, 2, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, exp := startTracedGateway(t, cfg)
			id := "nu-" + strings.ReplaceAll(tc.name, " ", "-")
			resp, b := postRaw(t, &http.Client{Timeout: 20 * time.Second}, g.url+tc.path, tc.body, map[string]string{
				"Authorization": "Bearer " + cutKey, "x-api-key": cutKey, "anthropic-version": "2023-06-01",
				"X-Request-Id": id, "X-Test-Script": tc.script})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, b)
			}
			line := afAccess(t, g, id)
			in, out := afNum(line, "input_tokens"), afNum(line, "output_tokens")
			cost, _ := line["cost_usd"].(float64)
			estimated, _ := line["usage_estimated"].(bool)
			switch {
			case tc.kept:
				if in != 0 || out != 0 || cost != 0 || estimated {
					t.Errorf("access log %d in, %d out, $%v, usage_estimated %v; want no usage", in, out, cost, estimated)
				}
			case tc.in == 0 && (in < 1 || in > 40), tc.in > 0 && in != tc.in, out != tc.out, estimated == tc.exact:
				t.Errorf("access log %d in, %d out, usage_estimated %v; want %d in (0: its prompt's estimate), %d out, estimated %v",
					in, out, estimated, tc.in, tc.out, !tc.exact)
			}
			if want := (float64(in)*370 + float64(out)*1130) / 1e9; !closeTo(cost, want) {
				t.Errorf("cost_usd %v, want %v: %d in, %d out at the backend's prices", cost, want, in, out)
			}
			m := readCutMetrics(t, g)
			if m.in != float64(in) || m.out != float64(out) || m.keyIn != float64(in) || m.keyOut != float64(out) ||
				!closeTo(m.cost, cost) || !closeTo(m.keyCost, cost) {
				t.Errorf("metrics %+v; want %d in, %d out, $%v as the access log says", m, in, out, cost)
			}
			spans := 0
			for _, ss := range requestSpans(t, g, exp, id) {
				for _, sp := range ss {
					if sp.SpanKind != trace.SpanKindServer && sp.SpanKind != trace.SpanKindClient {
						continue
					}
					spans++
					s := sp.Snapshot()
					gotIn, inSet := attr(s, "gen_ai.usage.input_tokens")
					gotOut, _ := attr(s, "gen_ai.usage.output_tokens")
					gotEst, estSet := attr(s, "tollgate.usage.estimated")
					if inSet == tc.kept || !tc.kept && (gotIn.AsInt64() != in || gotOut.AsInt64() != out) || estSet != (!tc.kept && !tc.exact) || estSet && !gotEst.AsBool() {
						t.Errorf("%s span: gen_ai.usage %v in (set %v), %v out, tollgate.usage.estimated %v (set %v); want %d in, %d out, estimated %v",
							sp.Name, gotIn.Emit(), inSet, gotOut.Emit(), gotEst.Emit(), estSet, in, out, !tc.kept && !tc.exact)
					}
				}
			}
			if spans != 2 {
				t.Errorf("%d server and upstream spans, want 2", spans)
			}
			tokens, nano := cutCharged(t, g)
			wantTokens, wantNano := in+out, int64(math.Round(cost*1e9))
			if tc.kept {
				// The whole estimate: max_output_tokens and the prompt's few tokens.
				if tokens < 2000 || tokens > 2000+40 || nano < 2000*1130 {
					t.Errorf("the limits were charged %d tokens and %d nano-dollars, want the estimate kept", tokens, nano)
				}
				return
			}
			if tokens < wantTokens-1 || tokens > wantTokens {
				t.Errorf("the token limit was charged %d, want %d (estimate %d)", tokens, wantTokens, est)
			}
			if nano < wantNano-5 || nano > wantNano {
				t.Errorf("the budget was charged %d nano-dollars, want %d", nano, wantNano)
			}
		})
	}
}
