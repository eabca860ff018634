package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// thinkingAnthropic is a scripted Anthropic Messages API upstream. What it answers is chosen
// by a word in the request's body (the user's message):
//
//   - "omitted": a stream whose thinking block has its text left out (Opus 4.7's
//     default display): content_block_start thinking "", signature_delta,
//     content_block_stop; then pings until the gateway hangs up.
//   - "redacted": a stream with a redacted_thinking block, then pings until the
//     gateway hangs up.
//   - "shown": a stream whose thinking text comes as thinking_delta (the contrast:
//     reasoning_content deltas), then pings until the gateway hangs up.
//   - anything else: a plain non-streamed message of 5 tokens.
//
// bodies keeps every request body it got.
type thinkingAnthropic struct {
	url    string
	mu     sync.Mutex
	bodies []string
}

func (z *thinkingAnthropic) last() string {
	z.mu.Lock()
	defer z.mu.Unlock()
	if len(z.bodies) == 0 {
		return ""
	}
	return z.bodies[len(z.bodies)-1]
}

const thinkingAnthropicPlain = `{"id":"msg_p","type":"message","role":"assistant","model":"claude-opus-4-7","content":[{"type":"text","text":"ok"}],` +
	`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`

func startThinkingAnthropic(t *testing.T) *thinkingAnthropic {
	t.Helper()
	z := &thinkingAnthropic{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body := string(b)
		z.mu.Lock()
		z.bodies = append(z.bodies, body)
		z.mu.Unlock()
		mode := ""
		switch {
		case strings.Contains(body, "omitted"):
			mode = "omitted"
		case strings.Contains(body, "redacted"):
			mode = "redacted"
		case strings.Contains(body, "shown"):
			mode = "shown"
		}
		if mode == "" || !strings.Contains(body, `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, thinkingAnthropicPlain)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		ev := func(name, data string) bool {
			_, err := io.WriteString(w, "event: "+name+"\ndata: "+data+"\n\n")
			fl.Flush()
			return err == nil
		}
		ev("message_start", `{"type":"message_start","message":{"id":"msg_s","type":"message","role":"assistant","model":"claude-opus-4-7","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}`)
		switch mode {
		case "shown":
			ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`)
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}`)
		case "omitted":
			ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`)
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIMzz"}}`)
			ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
		default:
			ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzz"}}`)
			ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
		}
		// The answer's text is slow to come: the client hangs up before it.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			if !ev("ping", `{"type":"ping"}`) {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	z.url = srv.URL
	return z
}

// remainingTokens posts a chat and returns its status and x-ratelimit-remaining-tokens.
func remainingTokens(t *testing.T, g *gw, body string) (int, int, string) {
	t.Helper()
	resp, b := postRaw(t, &http.Client{Timeout: 10 * time.Second}, g.url+"/v1/chat/completions", body, nil)
	rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if err != nil {
		t.Fatalf("status %d, remaining %q: %s", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), b)
	}
	return resp.StatusCode, rem, string(b)
}

// TestThinkingBlockHangUpChargesStreamed: a stream the client hangs up on once a
// thinking block has reached it is charged what it streamed, as after its first tokens,
// whether the block's text came as reasoning_content, was left out (Opus 4.7's omitted
// display: an empty text and its signature) or redacted: Anthropic bills the thinking
// as output tokens either way, at least one token here. The prompt's tokens are
// message_start's, exact. Memory store, and Redis shared by two replicas.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
func TestThinkingBlockHangUpChargesStreamed(t *testing.T) {
	up := startThinkingAnthropic(t)
	cfg := func(lim string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  claude: {provider: anthropic, base_url: "` + up.url + `/v1", model: claude-opus-4-7, api_key: sk-ant-test, timeout: 20s}
endpoints:
  - name: lim
    type: chat
    routes: [{backend: claude}]
    limits: [{per: user, tokens: 1000, window: day}]
` + lim
	}
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			// With redis, two replicas share the buckets: the stream is hung up on
			// one, and the other reads what is left.
			var a, b *gw
			if store == "memory" {
				a = startGateway(t, cfg(""))
				b = a
			} else {
				rds := redistest.Start(t)
				lim := `limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, timeout: 5s}
`
				a, b = startGateway(t, cfg(lim)), startGateway(t, cfg(lim))
			}
			for _, tc := range []struct{ mode, want string }{
				// Thinking text shown as reasoning_content ("hmm": one token).
				{"shown", `"reasoning_content"`},
				{"omitted", `"thinking_blocks"`},
				{"redacted", `"thinking_blocks"`},
			} {
				mode := tc.mode
				t.Run(mode, func(t *testing.T) {
					user := "u-" + store + "-" + mode
					id := "think-hang-" + store + "-" + mode
					body := `{"model":"lim","user":"` + user + `","stream":true,"max_tokens":300,"reasoning_effort":"high",` +
						`"messages":[{"role":"user","content":"` + mode + `"}]}`
					hangUpAfterN(t, a, id, "", body, tc.want, 1)
					line := afAccess(t, a, id)
					if afNum(line, "status") != 499 || afNum(line, "input_tokens") != 10 || afNum(line, "output_tokens") != 1 ||
						line["usage_estimated"] != true {
						t.Fatalf("access log %v, want status 499, input_tokens 10 (message_start's), output_tokens 1, usage_estimated true", line)
					}
					// The settlement reaches Redis shortly after the request ends.
					time.Sleep(100 * time.Millisecond)
					// What admission leaves for the next request of this user: 1000 less
					// its own estimate (35 bytes of prompt: 9, and 300), less the 11
					// tokens the hung-up stream was charged, not its ~300 estimate.
					st, rem, resp := remainingTokens(t, b, `{"model":"lim","user":"`+user+`","max_tokens":300,"messages":[{"role":"user","content":"plain"}]}`)
					if st != 200 {
						t.Fatalf("next request: %d %s", st, resp)
					}
					if want := 1000 - 309 - 11; rem < want-1 || rem > want {
						t.Errorf("after a stream hung up on once its %s thinking block had come, the next request was left %d "+
							"of 1000 tokens, want %d (access log ttft_ms %v)", mode, rem, want, line["ttft_ms"])
					}
				})
			}
		})
	}
}

// jsonField returns the value of key in the JSON object body, or nil.
func jsonField(body, key string) any {
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) != nil {
		return nil
	}
	return m[key]
}

// TestThinkingRaisedMaxTokensEstimated: without a max_tokens of the client's, the
// gateway sends Anthropic a max_tokens raised by the thinking budget (or the effort's
// room); the token estimate counts default_max_tokens plus that budget, as the
// upstream may produce it.
func TestThinkingRaisedMaxTokensEstimated(t *testing.T) {
	t.Parallel()
	up := startThinkingAnthropic(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  budget: {provider: anthropic, base_url: "`+up.url+`/v1", model: claude-sonnet-4-5, api_key: sk-ant-test, timeout: 5s, max_tokens: 1000}
  adaptive: {provider: anthropic, base_url: "`+up.url+`/v1", model: claude-opus-4-7, api_key: sk-ant-test, timeout: 5s, max_tokens: 1000}
endpoints:
  - name: budget
    type: chat
    routes: [{backend: budget}]
    limits: [{per: user, tokens: 100000, window: day}]
  - name: adaptive
    type: chat
    routes: [{backend: adaptive}]
    limits: [{per: user, tokens: 100000, window: day}]
`)
	for _, tc := range []struct{ name, model, extra string }{
		{"reasoning_effort high, budget", "budget", `"reasoning_effort":"high"`},
		{"reasoning_effort max, budget", "budget", `"reasoning_effort":"max"`},
		{"client thinking budget_tokens", "budget", `"thinking":{"type":"enabled","budget_tokens":30000}`},
		{"reasoning_effort high, adaptive", "adaptive", `"reasoning_effort":"high"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "u-" + strings.ReplaceAll(tc.name, " ", "-")
			body := `{"model":"` + tc.model + `","user":"` + user + `",` + tc.extra + `,"messages":[{"role":"user","content":"hi"}]}`
			st, rem, b := remainingTokens(t, g, body)
			if st != 200 {
				t.Fatalf("status %d %s", st, b)
			}
			sent, _ := jsonField(up.last(), "max_tokens").(float64)
			if sent <= 1000 {
				t.Fatalf("upstream got max_tokens %v, want the backend's 1000 raised by the thinking budget (body %s)", sent, up.last())
			}
			// At the least default_max_tokens (256) plus the budget the gateway added
			// (what it sent less the backend's default of 1000).
			if est, want := 100000-rem, int(sent)-1000+256; est < want {
				t.Errorf("the gateway sent Anthropic max_tokens %v (a thinking budget of %v added to the backend's 1000) "+
					"and charged an estimate of %d (x-ratelimit-remaining-tokens %d of 100000), want at least %d", sent, sent-1000, est, rem, want)
			}
		})
	}
}
