package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// thinkingUpstream streams deltas whose member is named by X-Test-Upstream
// ("content", or "reasoning_content" as vLLM's reasoning parsers and DeepSeek send,
// "reasoning", "refusal") until the gateway hangs up on it; X-Test-Upstream: plain
// answers a five-token chat completion.
func thinkingUpstream(t *testing.T) string {
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		mode := req.Header.Get("X-Test-Upstream")
		if mode == "plain" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
			return
		}
		key := mode
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"+
			`data: {"id":"r","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`+"\n\n"); err != nil {
			return
		}
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			ev := `data: {"id":"r","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"` + key + `":"hmm "},"finish_reason":null}]}` + "\n\n"
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(c, ev); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Close()
	})
	return addr
}

// hangUpAfter streams body, reads until three data lines holding want have arrived,
// and hangs up.
func hangUpAfter(t *testing.T, g *gw, id, mode, body, want string) {
	t.Helper()
	hangUpAfterN(t, g, id, mode, body, want, 3)
}

// hangUpAfterN streams body (with X-Test-Upstream: mode, unless mode is empty), reads
// until n data lines holding want have arrived, and hangs up.
func hangUpAfterN(t *testing.T, g *gw, id, mode, body, want string, n int) {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	if mode != "" {
		req.Header.Set("X-Test-Upstream", mode)
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("%s: status %d %s", id, resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	for seen := 0; seen < n; {
		line, err := br.ReadString('\n')
		if err != nil {
			resp.Body.Close()
			t.Fatalf("%s: stream ended before %q came: %v", id, want, err)
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, want) {
			seen++
		}
	}
	resp.Body.Close()
}

// TestReasoningStreamHangUpChargesStreamed: a client that hangs up on a stream after
// its first tokens is charged what it streamed (README, Limits), whether those tokens
// came as delta.content or as a reasoning model's delta.reasoning_content or
// delta.reasoning, or as a refusal: each is generated and billed, and marks the first
// token. Each delta here is "hmm ", 4 bytes, one token.
func TestReasoningStreamHangUpChargesStreamed(t *testing.T) {
	t.Parallel()
	up := thinkingUpstream(t)
	g := startGateway(t, mockConfig(up, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: user, tokens: 1000, window: day}]
`))
	// The prompt, [{"role":"user","content":"think"}], as estimated: 35 bytes / 4 + 1.
	const prompt = 9
	for _, tc := range []struct{ mode, user, want string }{
		{"content", "u-content", `"content":"hmm `},
		{"reasoning_content", "u-reasoning-content", `"reasoning_content":"hmm `},
		{"reasoning", "u-reasoning", `"reasoning":"hmm `},
		{"refusal", "u-refusal", `"refusal":"hmm `},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			id := "hang-" + tc.mode
			body := `{"model":"lim","user":"` + tc.user + `","stream":true,"max_tokens":300,"messages":[{"role":"user","content":"think"}]}`
			hangUpAfter(t, g, id, tc.mode, body, tc.want)
			line := afAccess(t, g, id)
			out := afNum(line, "output_tokens")
			if afNum(line, "status") != 499 || afNum(line, "input_tokens") != prompt || out < 3 || out > 100 || line["usage_estimated"] != true {
				t.Fatalf("access log %v, want status 499, input_tokens %d, output_tokens from 3 (the deltas read) to well under max_tokens 300, "+
					"usage_estimated true", line, prompt)
			}
			// What admission leaves for the next request of this user: 1000 less its
			// own estimate (309), less what the hung-up stream was charged: the same
			// tokens its access log line counts, not its 309-token estimate.
			rem := remainingTokensPlain(t, g, `{"model":"lim","user":"`+tc.user+`","max_tokens":300,"messages":[{"role":"user","content":"think"}]}`)
			if want := 1000 - (prompt + 300) - (prompt + int(out)); rem < want-1 || rem > want {
				t.Errorf("after a %s stream the client hung up on once %q deltas had reached it (access log: %d in, %d out), "+
					"the next request was left %d of 1000 tokens, want %d", tc.mode, tc.want, prompt, out, rem, want)
			}
		})
	}
}

// remainingTokensPlain posts a plain chat and returns x-ratelimit-remaining-tokens.
func remainingTokensPlain(t *testing.T, g *gw, body string) int {
	t.Helper()
	resp, b := postRaw(t, &http.Client{Timeout: 20 * time.Second}, g.url+"/v1/chat/completions", body, map[string]string{"X-Test-Upstream": "plain"})
	rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("status %d, remaining %q: %s", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), b)
	}
	return rem
}

// TestForcedUsageKeepsContinuousUsageOff: a vLLM client that says include_usage:
// false next to continuous_usage_stats: true gets no usage from vLLM at all (per-chunk
// usage comes only where include_usage holds). The gateway, which forces include_usage
// to count tokens, turns continuous_usage_stats off with it, so that no chunk carries
// a usage the client refused, and still counts the stream's tokens.
func TestForcedUsageKeepsContinuousUsageOff(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 6, Seed: 3})
	g := startGateway(t, mockConfig(up, "", ""))
	const body = `{"model":"%s","stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true},"messages":[{"role":"user","content":"hi"}]}`
	count := func(b []byte) (chunks, withUsage int) {
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "data: {") {
				continue
			}
			chunks++
			if strings.Contains(l, `"usage":{`) {
				withUsage++
			}
		}
		return
	}
	c := &http.Client{Timeout: 20 * time.Second}
	// The upstream itself, asked directly: no usage anywhere.
	resp, b := postRaw(t, c, "http://"+up+"/v1/chat/completions", strings.Replace(body, "%s", "up-model", 1), nil)
	if n, u := count(b); resp.StatusCode != 200 || n == 0 || u != 0 {
		t.Fatalf("mockllm directly: status %d, %d chunks, %d with usage (want none):\n%s", resp.StatusCode, n, u, b)
	}
	resp, b = postRaw(t, c, g.url+"/v1/chat/completions", strings.Replace(body, "%s", "chat", 1), map[string]string{"X-Request-Id": "forced-cont"})
	if n, u := count(b); resp.StatusCode != 200 || n == 0 || u != 0 {
		t.Errorf("through the gateway, include_usage:false with continuous_usage_stats:true: status %d, %d chunks, %d carrying a usage object (want 0):\n%s",
			resp.StatusCode, n, u, b)
	}
	if line := afAccess(t, g, "forced-cont"); afNum(line, "output_tokens") == 0 {
		t.Errorf("access log %v: the gateway should still count the stream's tokens", line)
	}
}

// TestContinuousUsageCutStreamNotCountedByOneChoice: with continuous_usage_stats and
// n > 1, each chunk's usage is that of its own choice (vLLM's serving_chat.py; mockllm
// likewise). A stream cut before its final usage-only chunk must not be counted by the
// last chunk's usage, one choice's tokens: its prompt's tokens are the request's (each
// choice reads the whole prompt), exact, and its output is estimated from the text of
// both choices relayed, 4 bytes a token.
func TestContinuousUsageCutStreamNotCountedByOneChoice(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 3})
	g := startGateway(t, mockConfig(up, "", ""))
	const body = `{"model":"chat","stream":true,"n":2,"max_tokens":16,"stream_options":{"include_usage":true,"continuous_usage_stats":true},"messages":[{"role":"user","content":"hi"}]}`
	resp, b := postRaw(t, &http.Client{Timeout: 20 * time.Second}, g.url+"/v1/chat/completions", body,
		map[string]string{"X-Request-Id": "cont-cut", "x-mock-tokens": "10", "x-mock-cut-after": "12"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	relayed := len(afContentRE.FindAll(b, -1))
	if !strings.Contains(string(b), "upstream_stream_cut") || relayed < 4 {
		t.Fatalf("want a stream cut after several tokens of both choices; got %d content chunks:\n%s", relayed, b)
	}
	text := 0
	for _, m := range regexp.MustCompile(`"content":"([^"]*)"`).FindAllSubmatch(b, -1) {
		text += len(m[1])
	}
	prompt := regexp.MustCompile(`"prompt_tokens":(\d+)`).FindSubmatch(b)
	if prompt == nil {
		t.Fatalf("no chunk carried a usage:\n%s", b)
	}
	line := afAccess(t, g, "cont-cut")
	if in, out := afNum(line, "input_tokens"), afNum(line, "output_tokens"); strconv.FormatInt(in, 10) != string(prompt[1]) ||
		out != int64((text+3)/4) || line["usage_estimated"] != true {
		t.Errorf("a cut n=2 stream that relayed %d content chunks (%d bytes), its prompt %s tokens: access log %v; "+
			"want the prompt's tokens, %d output tokens (4 bytes a token) and usage_estimated", relayed, text, prompt[1], line, (text+3)/4)
	}
}
