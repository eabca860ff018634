package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/valyala/fasthttp"
)

// codedAnswer is an HTTP/1.1 answer with status, body gzipped and labelled JSON.
func codedAnswer(status, body string) string {
	coded := string(fasthttp.AppendGzipBytes(nil, []byte(body)))
	return "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: " +
		strconv.Itoa(len(coded)) + "\r\n\r\n" + coded
}

// The gateway asks for an uncoded answer (Accept-Encoding: identity) and sends its
// own uncoded; an upstream (or a proxy) that gzips its error answer anyway has it
// decoded, so that the client reads the error, with no Content-Encoding.
func TestUpstreamCodedErrorAnswerDecoded(t *testing.T) {
	t.Parallel()
	const errJSON = `{"error":{"message":"bad thing","type":"invalid_request_error","param":null,"code":null}}`
	for _, tc := range []struct{ name, body string }{{"chat", chatBody}, {"stream", streamBody}} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = c.Write([]byte(codedAnswer("400 Bad Request", errJSON)))
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			// Go's transport would decode a gzip answer that says it is one: a
			// body that reads as the error proves the gateway decoded it.
			resp, body := postChat(t, g, tc.body)
			var e struct {
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if resp.StatusCode != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Error.Message != "bad thing" {
				t.Fatalf("%d, Content-Encoding %q: %q, want the upstream's error", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" {
				t.Errorf("Content-Encoding %q on a body sent uncoded", ce)
			}
		})
	}
}

// A coded success is decoded the same way and reaches the SDK; an answer that does
// not decode as its Content-Encoding says, or in a coding the gateway does not know,
// is an invalid answer.
func TestUpstreamCodedAnswer(t *testing.T) {
	t.Parallel()
	t.Run("gzip decoded", func(t *testing.T) {
		addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
			_, _ = c.Write([]byte(codedAnswer("200 OK", labelledAnswer)))
		})
		g := startGateway(t, mockConfig(addr, "", ""))
		c := g.client()
		res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Choices) != 1 || res.Choices[0].Message.Content != "hi" || res.Usage.TotalTokens != 4 {
			t.Fatalf("answer %s", res.RawJSON())
		}
	})
	for _, tc := range []struct{ name, enc, body string }{
		{"not gzip", "gzip", labelledAnswer},
		{"unknown coding", "compress", labelledAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: " + tc.enc +
					"\r\nContent-Length: " + strconv.Itoa(len(tc.body)) + "\r\n\r\n" + tc.body))
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			resp, body := postChat(t, g, chatBody)
			if resp.StatusCode != 502 || !strings.Contains(body, `"code":"upstream_bad_response"`) {
				t.Fatalf("%d %q, want 502 upstream_bad_response", resp.StatusCode, body)
			}
		})
	}
}

// An Anthropic upstream's coded answers are decoded too: a gzipped message is
// translated, a gzipped error reaches the client as its OpenAI-shaped error.
func TestAnthropicCodedAnswerDecoded(t *testing.T) {
	t.Parallel()
	const msg = `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Hello"}],` +
		`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}`
	const errJSON = `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}`
	for _, tc := range []struct {
		name, answer string
		status       int
		want         string
	}{
		{"message", codedAnswer("200 OK", msg), 200, `"content":"Hello"`},
		{"error", codedAnswer("400 Bad Request", errJSON), 400, `exceeded: prompt is too long","type":"invalid_request_error"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = c.Write([]byte(tc.answer))
			})
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-sonnet-4-5, api_key: sk-ant-test, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}]}
logging: {level: error, access_log: false}
`)
			resp, body := postChat(t, g, chatBody)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("status %d %q; want %d with %s", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
}

// An upstream (or the proxy in front of it, one that labels every answer it passes
// gzip) may answer an error with an empty body and still say Content-Encoding: gzip.
// There is nothing to decode: as Go's own transport and curl --compressed, the
// gateway reads an empty body, and the upstream's 429 reaches the client.
func TestEmptyCodedErrorAnswerPassedOn(t *testing.T) {
	t.Parallel()
	for _, enc := range []string{"", "gzip"} {
		for _, mode := range []struct{ name, body string }{{"chat", chatBody}, {"stream", streamBody}} {
			t.Run(mode.name+"/Content-Encoding "+enc, func(t *testing.T) {
				head := "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Type: application/json\r\n"
				if enc != "" {
					head += "Content-Encoding: " + enc + "\r\n"
				}
				addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
					_, _ = c.Write([]byte(head + "Content-Length: 0\r\n\r\n"))
				})
				g := startGateway(t, mockConfig(addr, "", ""))
				resp, body := postChat(t, g, mode.body)
				if resp.StatusCode != 429 {
					t.Errorf("%d %q, want the upstream's 429", resp.StatusCode, body)
				}
			})
		}
	}
}
