package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TGI, Ollama and other OpenAI-compatible servers answer errors as {"error":"text"},
// where OpenAI's error holds an object. The official SDK cannot read that as an API
// error: against the upstream itself it returns a JSON decoding error, without the
// status. Through the gateway the application gets OpenAI's shape, so its error
// handling (status, message, code) works whatever the backend.
func TestFlatUpstreamErrorReachesSDKAsAPIError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		status     int
		typ, code  string
		msg        string
	}{
		{"tgi", `{"error":"Input validation error: ` + "`inputs`" + ` must have less than 4096 tokens","error_type":"validation"}`,
			422, "invalid_request_error", "validation", "Input validation error: `inputs` must have less than 4096 tokens"},
		{"ollama", `{"error":"model \"llama3\" not found, try pulling it first"}`,
			404, "invalid_request_error", "", `model "llama3" not found, try pulling it first`},
		{"server error", ` {"error" : "CUDA out of memory\u0021"} `,
			500, "server_error", "", "CUDA out of memory!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				fmt.Fprintf(c, "HTTP/1.1 %d Oops\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					tc.status, len(tc.body), tc.body)
			})
			direct := openai.NewClient(option.WithBaseURL("http://"+addr+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
			_, err := direct.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("hi")})
			if _, ok := errors.AsType[*openai.Error](err); ok {
				t.Fatalf("the SDK reads this body from the upstream itself as an API error (%v): the case shows nothing", err)
			}

			g := startGateway(t, mockConfig(addr, "", ""))
			c := g.client()
			_, err = c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
			apiErr, ok := errors.AsType[*openai.Error](err)
			if !ok {
				t.Fatalf("through the gateway: %v (%T), want *openai.Error", err, err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Message != tc.msg || apiErr.Type != tc.typ || apiErr.Code != tc.code {
				t.Fatalf("through the gateway: status %d type %q code %q message %q; want %d %q %q %q",
					apiErr.StatusCode, apiErr.Type, apiErr.Code, apiErr.Message, tc.status, tc.typ, tc.code, tc.msg)
			}
		})
	}
}

// An upstream error with an empty body (a proxy's bare 502, a server's 404 with no
// content, with or without a content type) reaches the SDK as an API error whose
// message says the body was empty, with the upstream's status and the type of it,
// non-streamed and streamed alike.
func TestEmptyUpstreamErrorReachesSDKWithMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, head string
		status     int
		typ        string
	}{
		{"502 no content type", "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", 502, "server_error"},
		{"404 json", "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n", 404, "invalid_request_error"},
		{"400 chunked", "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_request_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				fmt.Fprint(c, tc.head)
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			c := g.client(option.WithMaxRetries(0))
			want := fmt.Sprintf("The upstream answered HTTP %d with an empty body.", tc.status)
			check := func(how string, err error) {
				t.Helper()
				apiErr, ok := errors.AsType[*openai.Error](err)
				if !ok {
					t.Fatalf("%s: %v (%T), want *openai.Error", how, err, err)
				}
				if apiErr.StatusCode != tc.status || apiErr.Message != want || apiErr.Type != tc.typ {
					t.Fatalf("%s: status %d type %q message %q; want %d %q %q", how, apiErr.StatusCode, apiErr.Type, apiErr.Message, tc.status, tc.typ, want)
				}
			}
			_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
			check("non-streamed", err)
			s := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
			for s.Next() {
			}
			check("streamed", s.Err())
		})
	}
}
