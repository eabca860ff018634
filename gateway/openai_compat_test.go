package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// multiLineSSE is a valid SSE stream whose first event carries its data on two data:
// lines: the spec joins them with a newline, and the result is one JSON chunk.
const multiLineSSE = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\n" +
	"data: \"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n" +
	"data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n" +
	"data: [DONE]\n\n"

func accumulateStream(c openai.Client, model string) (string, error) {
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: model, Messages: userMsg("hi")})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		return "", err
	}
	if len(acc.Choices) == 0 {
		return "", nil
	}
	return acc.Choices[0].Message.Content, nil
}

// An upstream may split one event's data over several data: lines (the SSE spec joins
// them with "\n"; sse-starlette, behind many Python servers, writes a payload that
// holds newlines that way). The official SDK reads such a stream from the upstream
// directly, and must read it the same through the gateway: relayed as one "data: "
// line holding a raw newline, the client's parser would cut the event there.
func TestStreamMultiLineDataRelayed(t *testing.T) {
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"+multiLineSSE)
		c.Close()
	})
	direct := openai.NewClient(option.WithBaseURL("http://"+addr+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	if got, err := accumulateStream(direct, "m"); err != nil || got != "Hello there" {
		t.Fatalf("the SDK reading the upstream directly: %q, %v", got, err)
	}
	g := startGateway(t, mockConfig(addr, "", ""))
	got, err := accumulateStream(g.client(), "chat")
	if err != nil {
		t.Fatalf("through the gateway the stream fails at the client: %v", err)
	}
	if got != "Hello there" {
		t.Fatalf("through the gateway the client got %q, want %q", got, "Hello there")
	}
}

// The gateway drops the client's Accept-Encoding, to read usage from the body. Under
// RFC 9110 §12.5.3 a request without Accept-Encoding accepts any content coding, so an
// upstream (or a proxy in front of it) may gzip the answer; the gateway asks for an
// uncoded one ("identity"), or it would fail a good answer as upstream_bad_response.
func TestUpstreamAskedForUncodedAnswer(t *testing.T) {
	const answer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		body, coding := answer, ""
		if ae := req.Header.Values("Accept-Encoding"); len(ae) == 0 || strings.Contains(strings.Join(ae, ","), "gzip") {
			var b bytes.Buffer
			w := gzip.NewWriter(&b)
			_, _ = w.Write([]byte(answer))
			_ = w.Close()
			body, coding = b.String(), "Content-Encoding: gzip\r\n"
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", coding, len(body), body)
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
	if err != nil {
		t.Fatalf("a gzip answer to a request without Accept-Encoding: %v", err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Content != "hi" || res.Usage.TotalTokens != 4 {
		t.Fatalf("answer %s", res.RawJSON())
	}
}

// "user":"jos\u00e9" and "user":"josé" are the same JSON string, the same user
// (Python's json.dumps escapes non-ASCII by default, Go's encoding/json does not): one
// variant, whichever way its client's JSON encoder wrote it.
func TestStickyUserReadAsString(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2, Seed: 1})
	g := startGateway(t, mockConfig(addr, `
  up2: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
`, `
  - name: ab
    type: chat
    routes: [{backend: up, weight: 50, variant: a}, {backend: up2, weight: 50, variant: b}]
    sticky: {from: user}
`))
	var split []string
	for i := range 20 {
		plain := fmt.Sprintf("jos\u00e9-%d", i)
		escaped, _ := json.Marshal(plain)
		escaped = bytes.ReplaceAll(escaped, []byte("\u00e9"), []byte(`\u00e9`))
		r1, _ := postChat(t, g, `{"model":"ab","user":"`+plain+`","messages":[{"role":"user","content":"hi"}]}`)
		r2, _ := postChat(t, g, `{"model":"ab","user":`+string(escaped)+`,"messages":[{"role":"user","content":"hi"}]}`)
		if a, b := r1.Header.Get("X-Tollgate-Variant"), r2.Header.Get("X-Tollgate-Variant"); a != b {
			split = append(split, fmt.Sprintf("%s: %s / %s", plain, a, b))
		}
	}
	if len(split) > 0 {
		t.Fatalf("one user on two variants, by how its JSON spelled the name: %v", split)
	}
}

// compatAnswer is a whole chat completion as an upstream writes it.
const compatAnswer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

// Headers the client names in its Connection header are hop-by-hop (RFC 9110
// §7.6.1), meant for the gateway alone: they are not forwarded upstream.
func TestConnectionNamedHeadersNotForwarded(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		mu.Lock()
		got = req.Header.Clone()
		mu.Unlock()
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(compatAnswer), compatAnswer)
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(chatBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "keep-alive, X-Hop-Secret")
	req.Header.Set("X-Hop-Secret", "for-the-gateway-only")
	req.Header.Set("X-Kept", "for-the-upstream")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if v := got.Get("X-Hop-Secret"); v != "" {
		t.Fatalf("a header named in the client's Connection header was forwarded upstream: X-Hop-Secret: %q", v)
	}
	if v := got.Get("X-Kept"); v != "for-the-upstream" {
		t.Fatalf("X-Kept upstream: %q", v)
	}
}

// An upstream answer without a Content-Type reaches the official SDK as the JSON it
// is: labelled application/json, not fasthttp's default text/plain, which the SDK
// refuses for a success.
func TestAnswerWithoutContentTypeReachesSDK(t *testing.T) {
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(compatAnswer), compatAnswer)
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
	if err != nil {
		t.Fatalf("an answer without a Content-Type: %v", err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Content != "hi" {
		t.Fatalf("answer %s", res.RawJSON())
	}
}
