package gateway

import (
	"bufio"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// A Responses API stream the upstream cuts ends with the API's own error event, as
// OpenAI sends one mid-stream: named error, its type and the next sequence number,
// the error object nested. The Vercel AI SDK (@ai-sdk/openai's default model) reads
// only the API's events and took the chat-style `data: {"error":…}` for a malformed
// chunk (a TypeValidationError in place of the gateway's message); the OpenAI SDKs
// raise on the `error` member either way. Served natively and through the chat bridge.
func TestResponsesStreamCutErrorEvent(t *testing.T) {
	t.Parallel()
	const cutEvent = "event: error\ndata: {\"type\":\"error\",\"sequence_number\":%d,\"error\":{\"message\":\"The upstream model server ended the stream early.\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream_stream_cut\"}}\n\n"
	native := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			respEvent(w, "response.created", `,"sequence_number":0,"response":`+respObject("in_progress", "null"))
			respEvent(w, "response.output_text.delta", `,"sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"`)
		})
	})
	chat := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			w.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}` + "\n\n")
			w.Flush()
		})
	})
	g := startGateway(t, mockConfig(native, `
  bridged: {provider: openai, base_url: "http://`+chat+`/v1", model: m, responses_api: chat}
`, `
  - {name: bridge, type: chat, routes: [{backend: bridged}]}
`))
	for _, c := range []struct {
		name, model string
		// seq is the sequence number after the last event relayed: the native
		// stream's two; the bridge's created, in_progress, output_item.added,
		// content_part.added and output_text.delta.
		seq int
	}{
		{"native", "chat", 2},
		{"bridge", "bridge", 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, body := respPost(t, g, "POST", "/v1/responses", "cut-"+c.name, `{"model":"`+c.model+`","input":"hi","stream":true}`)
			want := fmt.Sprintf(cutEvent, c.seq)
			if r.StatusCode != 200 || !strings.HasSuffix(body, want) || strings.Count(body, "upstream_stream_cut") != 1 {
				t.Fatalf("observed %d, a stream ending\n%q\nexpected it to end with\n%q", r.StatusCode, body[max(0, len(body)-300):], want)
			}
		})
	}
}
