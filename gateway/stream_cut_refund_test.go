package gateway

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A stream the upstream failed before its first token generated nothing: its token
// estimate is refunded, as an error answer's is, whether the client got a 502 (the
// header still held) or a 200 and an error event (the header had gone out while the
// upstream made the stream wait). One failed after its first token is charged what it
// streamed (its usage, which comes last, never came): the prompt as estimated and its
// text at 4 bytes a token, at least one.
func TestStreamFailedBeforeFirstTokenRefunded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		idle     bool   // the backend has a 300 ms stream_idle_timeout
		want     string // in the first stream's body
		refunded bool   // else charged the prompt and a token
		script   func(c net.Conn)
	}{
		{"empty stream answered 502", false, "upstream_stream_cut", true, func(c net.Conn) {
			writeChunk(c, "")
		}},
		{"cut after the header went out", false, "upstream_stream_cut", true, func(c net.Conn) {
			time.Sleep(400 * time.Millisecond)
		}},
		{"silent past stream_idle_timeout", true, "upstream_timeout", true, func(c net.Conn) {
			time.Sleep(time.Second)
		}},
		{"the upstream's error event before any token", false, "engine failed", true, func(c net.Conn) {
			writeChunk(c, vllmEngineError)
			writeChunk(c, "data: [DONE]\n\n")
			writeChunk(c, "")
		}},
		{"cut after the first token charges what it streamed", false, "upstream_stream_cut", false, func(c net.Conn) {
			writeChunk(c, sseChunk("Hel"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(n int, c net.Conn, _ *http.Request) {
				writeStreamHead(c)
				if n > 1 {
					writeChunk(c, sseChunk("ok"))
					writeChunk(c, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`+"\n\n")
					writeChunk(c, "data: [DONE]\n\n")
					writeChunk(c, "")
					return
				}
				tc.script(c)
				c.Close()
			})
			cfg := mockConfig(addr, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: user, tokens: 100000, window: day}]
`)
			if tc.idle {
				cfg = strings.Replace(cfg, "timeout: 20s}", "timeout: 20s, stream_idle_timeout: 300ms}", 1)
			}
			g := startGateway(t, cfg)
			body := strings.Replace(streamBody, `"chat"`, `"lim"`, 1)
			resp1, body1 := postChat(t, g, body)
			if !strings.Contains(body1, tc.want) {
				t.Fatalf("first stream: %d %q, want %s", resp1.StatusCode, body1, tc.want)
			}
			r1, _ := strconv.Atoi(resp1.Header.Get("x-ratelimit-remaining-tokens"))
			est := 100000 - r1
			// The first request is settled before its access log line is written.
			accessLine(t, g, resp1.Header.Get("X-Request-Id"))
			resp2, _ := postChat(t, g, body)
			r2, _ := strconv.Atoi(resp2.Header.Get("x-ratelimit-remaining-tokens"))
			// The second request's remaining counts its own estimate, plus what the
			// first was charged when it was not refunded: its prompt (the estimate
			// less max_tokens 8) and "Hel", one token.
			want := r1
			if !tc.refunded {
				want = r1 - (est - 8 + 1)
			}
			if r2 != want {
				t.Errorf("after the first stream (status %d): remaining %d, want %d (estimate %d, refunded %v)", resp1.StatusCode, r2, want, est, tc.refunded)
			}
		})
	}
}
