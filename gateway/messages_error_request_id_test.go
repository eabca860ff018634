package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
)

// An upstream error in another shape than the Messages API's (an OpenAI-compatible
// server's, vLLM's own Messages route's, a router's 200 holding a chat error object)
// is written in that API's shape, request_id included as in the gateway's own errors:
// the request's ID, which its request-id header gives too. Through chat completions
// (messages_api: chat) and natively to vLLM's Messages API; streamed or not.
func TestMessagesUpstreamErrorShapeRequestID(t *testing.T) {
	t.Parallel()
	e := startMessages(t, "")
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"err200": func(w http.ResponseWriter, _ bool) {
			rvJSON(w, 200, `{"error":{"message":"Provider returned error","code":502}}`)
		},
		"503": func(w http.ResponseWriter, _ bool) {
			rvJSON(w, 503, `{"error":{"message":"busy","type":"server_error","param":null,"code":null}}`)
		},
	})
	bridged := rvGateway(t, f)
	for _, tc := range []struct {
		name   string
		g      *gw
		model  string
		header string
		value  string
		status int
	}{
		{"bridged upstream 503", bridged, "fake", "x-fake", "503", 503},
		{"bridged chat error in a 200", bridged, "fake", "x-fake", "err200", 502},
		{"vllm messages 503", e.g, "vllm", "x-mock-status", "503", 503},
		{"vllm messages 404", e.g, "vllm", "x-mock-status", "404", 404},
	} {
		for _, stream := range []bool{false, true} {
			name := tc.name
			if stream {
				name += " stream"
			}
			t.Run(name, func(t *testing.T) {
				c := anthropic.NewClient(aoption.WithBaseURL(tc.g.url), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
					aoption.WithHeader(tc.header, tc.value))
				var err error
				if stream {
					s := c.Messages.NewStreaming(context.Background(), msgParams(tc.model, "hi", 8))
					for s.Next() {
					}
					err = s.Err()
				} else {
					_, err = c.Messages.New(context.Background(), msgParams(tc.model, "hi", 8))
				}
				var ae *anthropic.Error
				if !errors.As(err, &ae) {
					t.Fatalf("error %v, want the API's", err)
				}
				if ae.StatusCode != tc.status || ae.RequestID == "" {
					t.Fatalf("status %d request-id %q: %s", ae.StatusCode, ae.RequestID, ae.RawJSON())
				}
				if want := `,"request_id":"` + ae.RequestID + `"}`; len(ae.RawJSON()) < len(want) || ae.RawJSON()[len(ae.RawJSON())-len(want):] != want {
					t.Errorf("body %s, want it to end with %s", ae.RawJSON(), want)
				}
			})
		}
	}
}
