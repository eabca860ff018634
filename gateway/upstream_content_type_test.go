package gateway

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const labelledAnswer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

// An upstream (or a proxy in front of it) that labels its JSON answer text/plain,
// application/octet-stream or text/html: the gateway checked that the body is one
// JSON object, and labels it application/json, since the official SDKs refuse a
// success labelled otherwise. A JSON label of the upstream's own goes as it came.
func TestUpstreamJSONLabelledOtherwiseReachesSDK(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ label, want string }{
		{"text/plain; charset=utf-8", "application/json"},
		{"application/octet-stream", "application/json"},
		{"text/html", "application/json"},
		{"application/json; charset=utf-8", "application/json; charset=utf-8"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: " + tc.label + "\r\nContent-Length: " +
					strconv.Itoa(len(labelledAnswer)) + "\r\n\r\n" + labelledAnswer))
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			var resp *http.Response
			c := g.client()
			res, err := c.Chat.Completions.New(context.Background(),
				openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")}, option.WithResponseInto(&resp))
			if err != nil {
				t.Fatalf("a JSON answer labelled %q: the SDK fails: %v", tc.label, err)
			}
			if len(res.Choices) != 1 || res.Choices[0].Message.Content != "hi" {
				t.Fatalf("answer %s", res.RawJSON())
			}
			if got := resp.Header.Get("Content-Type"); got != tc.want {
				t.Errorf("Content-Type %q, want %q", got, tc.want)
			}
		})
	}
}

// An upstream error answer is labelled as JSON when its body is JSON, whatever the
// upstream called it; a body that is not (a proxy's HTML page) keeps its label.
func TestUpstreamErrorAnswerLabel(t *testing.T) {
	t.Parallel()
	const errJSON = `{"error":{"message":"bad thing","type":"invalid_request_error","param":null,"code":null}}`
	const page = "<html><body><h1>400 Bad Request</h1></body></html>"
	for _, tc := range []struct{ name, label, body, want string }{
		{"JSON labelled text/plain", "text/plain", errJSON, "application/json"},
		{"JSON with its own label", "application/problem+json", errJSON, "application/problem+json"},
		{"HTML page", "text/html", page, "text/html"},
	} {
		for _, mode := range []struct{ name, body string }{{"chat", chatBody}, {"stream", streamBody}} {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
					_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Type: " + tc.label + "\r\nContent-Length: " +
						strconv.Itoa(len(tc.body)) + "\r\n\r\n" + tc.body))
				})
				g := startGateway(t, mockConfig(addr, "", ""))
				resp, body := postChat(t, g, mode.body)
				if resp.StatusCode != 400 || body != tc.body {
					t.Fatalf("%d %q, want the upstream's 400 and body", resp.StatusCode, body)
				}
				if got := resp.Header.Get("Content-Type"); got != tc.want {
					t.Errorf("Content-Type %q, want %q", got, tc.want)
				}
			})
		}
	}
}
