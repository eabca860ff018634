package gateway

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
)

// vLLM before 0.10 (its ErrorResponse model dumped at the top level), SGLang and
// FastChat answer errors as {"object":"error","message":…,"type":…,"param":…,"code":N},
// not inside OpenAI's "error" object. The official Node SDK reads an error answer's
// body only through its "error" member (core/error.js, APIError.generate:
// `const error = errorResponse?.['error']`), so such an answer reaches the application
// as `BadRequestError: 400 status code (no body)` with message, type, param and code
// all undefined: the context-length or sampling error the upstream explained is lost.
// The gateway answers it in OpenAI's shape, as it does TGI's and Ollama's
// {"error":"text"}: the upstream's status, its message and param in "error", streamed
// or not.
func TestFlatVLLMErrorObjectReachesNodeSDK(t *testing.T) {
	t.Parallel()
	const msg = "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (8000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion."
	for _, tc := range []struct {
		name, body string
		status     int
		param      string
	}{
		{"vllm context length", `{"object":"error","message":"` + msg + `","type":"BadRequestError","param":null,"code":400}`, 400, ""},
		{"vllm sampling parameter", `{"object":"error","message":"temperature must be non-negative, got -1.0.","type":"BadRequestError","param":"temperature","code":400}`, 400, "temperature"},
		{"sglang not found", `{"object":"error","message":"The model 'x' does not exist.","type":"NotFoundError","param":null,"code":404}`, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				fmt.Fprintf(c, "HTTP/1.1 %d Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					tc.status, len(tc.body), tc.body)
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			var want struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal([]byte(tc.body), &want); err != nil {
				t.Fatal(err)
			}
			for _, stream := range []bool{false, true} {
				body := fmt.Sprintf(`{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":%v}`, stream)
				status, b := nodeSDKPost(t, g, "/v1/chat/completions", body)
				if status != tc.status {
					t.Fatalf("stream=%v: status %d, want the upstream's %d (%s)", stream, status, tc.status, b)
				}
				// What the Node SDK reads: body.error, an object with a message.
				var got struct {
					Error *struct {
						Message *string `json:"message"`
						Param   *string `json:"param"`
					} `json:"error"`
				}
				if err := json.Unmarshal(b, &got); err != nil || got.Error == nil || got.Error.Message == nil {
					t.Fatalf("stream=%v: answer %s has no error.message: the Node SDK raises \"%d status code (no body)\" with message, type, param and code undefined", stream, b, status)
				}
				if *got.Error.Message != want.Message {
					t.Errorf("stream=%v: error.message %q, want the upstream's %q", stream, *got.Error.Message, want.Message)
				}
				if tc.param != "" && (got.Error.Param == nil || *got.Error.Param != tc.param) {
					t.Errorf("stream=%v: error.param %v, want the upstream's %q (%s)", stream, got.Error.Param, tc.param, b)
				}
			}
		})
	}
}
