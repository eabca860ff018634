package mockllm

import (
	"strings"
	"testing"
)

// TestMessagesRequestIDHeader: "The Anthropic API includes the following headers in
// every response: request-id: A globally unique identifier for the request." An error
// body's request_id is that header's value.
func TestMessagesRequestIDHeader(t *testing.T) {
	h := startAnthropic(t)
	resp, b := h.must("POST", "/v1/messages", messagesBody("hi", ""), anthHeaders...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	first := resp.Header.Get("request-id")
	if !strings.HasPrefix(first, "req_") {
		t.Errorf("200 answer: request-id header %q, want req_…", first)
	}
	resp, b = h.must("POST", "/v1/messages", messagesBody("hi", `"stream":true`), anthHeaders...)
	if id := resp.Header.Get("request-id"); resp.StatusCode != 200 || !strings.HasPrefix(id, "req_") || id == first {
		t.Errorf("stream: status %d, request-id header %q (the answer before: %q): %s", resp.StatusCode, id, first, b)
	}
	resp, b = h.must("POST", "/v1/messages", messagesBody("hi", ""), "x-api-key", "key")
	e := decode[anthError](t, b)
	if resp.StatusCode != 400 || e.RequestID == "" {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if id := resp.Header.Get("request-id"); id != e.RequestID {
		t.Errorf("400 answer: request-id header %q, body request_id %q", id, e.RequestID)
	}
}
