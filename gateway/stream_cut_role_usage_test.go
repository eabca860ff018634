package gateway

import (
	"bufio"
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

// roleUsageChunk is vLLM's first chunk of a stream asked for continuous_usage_stats:
// the role, an empty content, and the usage so far, the prompt's 40 tokens and none
// generated.
const roleUsageChunk = `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":40,"total_tokens":40,"completion_tokens":0}}` + "\n\n"

// roleUsageUpstream answers a stream by the request's X-Test-Script: the role chunk
// with its usage, then "stall" says nothing more until the gateway hangs up, "cut"
// closes the connection, "error" sends vLLM's error event and [DONE], and "whole"
// streams three tokens, each chunk with the usage so far, the usage-only chunk (the
// final usage, which alone has the prompt's cached tokens) and [DONE]. A request
// without the header is answered whole, with its usage.
func roleUsageUpstream(t *testing.T) string {
	t.Helper()
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		script := req.Header.Get("X-Test-Script")
		if script == "" {
			body := `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
			return
		}
		writeStreamHead(c)
		writeChunk(c, roleUsageChunk)
		switch script {
		case "stall":
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		case "cut":
			c.Close()
		case "error":
			writeChunk(c, vllmEngineError)
			writeChunk(c, "data: [DONE]\n\n")
			writeChunk(c, "")
		case "whole":
			for i, tok := range []string{"Once", " upon", " a"} {
				n := strconv.Itoa(i + 1)
				finish := "null"
				if i == 2 {
					finish = `"length"`
				}
				writeChunk(c, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"`+tok+
					`"},"logprobs":null,"finish_reason":`+finish+`}],"usage":{"prompt_tokens":40,"total_tokens":`+strconv.Itoa(40+i+1)+`,"completion_tokens":`+n+`}}`+"\n\n")
			}
			writeChunk(c, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":40,"total_tokens":43,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":16}}}`+"\n\n")
			writeChunk(c, "data: [DONE]\n\n")
			writeChunk(c, "")
		}
	})
	return addr
}

// readFirstEvent posts a stream with the cut tests' key and hdr, reads its first
// event (the role chunk, or the Messages API's message_start) and hangs up.
func readFirstEvent(t *testing.T, g *gw, path, body string, hdr map[string]string) {
	t.Helper()
	resp := postCutStream(t, g, path, body, hdr)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended before its first event: %v", err)
		}
		if strings.HasPrefix(line, "data: {") {
			return
		}
	}
}

// TestStreamCutAfterRoleUsageRefunded: a stream with continuous_usage_stats carries
// the usage so far on its role chunk (the prompt's tokens, 0 generated). Cut after
// that chunk and before its first token (its client hangs up, the upstream closes or
// fails it), it generated nothing: it is refunded as any stream cut before its first
// token (README, Rate limits), its token limit and spend budget charged nothing, no
// tokens or cost in the access log, tollgate_tokens_total, the cost counter and the
// key's series, and no gen_ai.usage on its spans. Through the Messages API bridge,
// which asks for that usage itself, alike. A stream that ends whole is settled with
// its final usage, exact.
func TestStreamCutAfterRoleUsageRefunded(t *testing.T) {
	addr := roleUsageUpstream(t)
	const continuous = `"stream_options":{"include_usage":true,"continuous_usage_stats":true},`
	chat := `{"model":"paid","stream":true,"max_tokens":2000,` + continuous + `"messages":` + cutMessages + `}`
	messages := `{"model":"bridged","stream":true,"max_tokens":2000,"messages":` + cutMessages + `}`
	for _, tc := range []struct {
		name, path, body, script string
		hangUp                   bool
		status                   int
		errKind                  string
		// whole: the stream ended with its usage, 40 in (16 of them cached) and 3
		// out; else refunded.
		whole bool
	}{
		{"chat: client hangs up after the role chunk", "/v1/chat/completions", chat, "stall", true, 499, "client_gone", false},
		{"chat: upstream cuts after the role chunk", "/v1/chat/completions", chat, "cut", false, 200, "upstream_stream_cut", false},
		{"chat: upstream's error event after the role chunk", "/v1/chat/completions", chat, "error", false, 200, "upstream_error", false},
		{"chat: whole stream settled with its final usage", "/v1/chat/completions", chat, "whole", false, 200, "", true},
		{"Messages bridge: client hangs up after message_start", "/v1/messages", messages, "stall", true, 499, "client_gone", false},
		{"Messages bridge: upstream cuts after message_start", "/v1/messages", messages, "cut", false, 200, "upstream_stream_cut", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, exp := startTracedGateway(t, cutUsageConfig(addr, `  bridged: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 30s, messages_api: chat,
            pricing: {input_per_million: 0.37, output_per_million: 1.13}}
`, `  - {name: bridged, type: chat, routes: [{backend: bridged}]}
`)+"tracing: {exporter: otlp-grpc, sample_ratio: 1}\n")
			id := "role-" + strings.NewReplacer(" ", "-", ":", "", "'", "").Replace(tc.name)
			hdr := map[string]string{"X-Request-Id": id, "X-Test-Script": tc.script}
			if tc.hangUp {
				readFirstEvent(t, g, tc.path, tc.body, hdr)
			} else {
				readCutStream(t, g, tc.path, tc.body, hdr, 0)
			}
			line := afAccess(t, g, id)
			if afNum(line, "status") != int64(tc.status) || line["error"] != tc.errKind {
				t.Fatalf("access log %v, want status %d error %q", line, tc.status, tc.errKind)
			}
			in, out, cached := afNum(line, "input_tokens"), afNum(line, "output_tokens"), afNum(line, "cached_input_tokens")
			cost, _ := line["cost_usd"].(float64)
			if line["usage_estimated"] != nil {
				t.Errorf("access log usage_estimated %v, want none: %v", line["usage_estimated"], line)
			}
			var wantIn, wantOut, wantCached int64
			if tc.whole {
				wantIn, wantOut, wantCached = 40, 3, 16
			}
			if in != wantIn || out != wantOut || cached != wantCached {
				t.Errorf("access log counts %d in (%d cached), %d out; want %d (%d), %d", in, cached, out, wantIn, wantCached, wantOut)
			}
			wantCost := (float64(wantIn)*370 + float64(wantOut)*1130) / 1e9
			if !closeTo(cost, wantCost) {
				t.Errorf("access log cost_usd %v, want %v", cost, wantCost)
			}
			m := readCutMetrics(t, g)
			if m.in != float64(wantIn) || m.out != float64(wantOut) || m.keyIn != float64(wantIn) || m.keyOut != float64(wantOut) ||
				!closeTo(m.cost, wantCost) || !closeTo(m.keyCost, wantCost) {
				t.Errorf("metrics %+v; want %d in, %d out, $%v", m, wantIn, wantOut, wantCost)
			}
			for _, spans := range requestSpans(t, g, exp, id) {
				for _, sp := range spans {
					if sp.SpanKind != trace.SpanKindServer && sp.SpanKind != trace.SpanKindClient {
						continue
					}
					s := sp.Snapshot()
					gotIn, inSet := attr(s, "gen_ai.usage.input_tokens")
					gotOut, _ := attr(s, "gen_ai.usage.output_tokens")
					_, estSet := attr(s, "tollgate.usage.estimated")
					if inSet != tc.whole || estSet || tc.whole && (gotIn.AsInt64() != wantIn || gotOut.AsInt64() != wantOut) {
						t.Errorf("%s span: gen_ai.usage.input_tokens %v (set %v), output_tokens %v, tollgate.usage.estimated set %v; want counts %v",
							sp.Name, gotIn.Emit(), inSet, gotOut.Emit(), estSet, tc.whole)
					}
				}
			}
			tokens, nano := cutCharged(t, g)
			wantTokens, wantNano := wantIn+wantOut, int64(math.Round(wantCost*1e9))
			if tokens < wantTokens-1 || tokens > wantTokens {
				t.Errorf("the token limit was charged %d, want %d (the estimate is %d)", tokens, wantTokens, 2000+cutPromptEst)
			}
			if nano < wantNano-5 || nano > wantNano {
				t.Errorf("the budget was charged %d nano-dollars, want %d", nano, wantNano)
			}
		})
	}
}
