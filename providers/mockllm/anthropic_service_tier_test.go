package mockllm

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAnthropicServiceTier: an answer's usage names the tier that served it, as the
// Messages API does: standard, or x-mock-service-tier's (priority, batch), in the
// buffered message and in a stream's message_start, whose message_delta does not
// repeat it. A header that is no tier name is ignored. Searches are counted beside it.
func TestAnthropicServiceTier(t *testing.T) {
	h := startAnthropic(t)
	type usage struct {
		ServiceTier   *string `json:"service_tier"`
		ServerToolUse *struct {
			WebSearchRequests int `json:"web_search_requests"`
		} `json:"server_tool_use"`
	}
	cases := []struct{ name, header, want string }{
		{"standard by default", "", "standard"},
		{"priority", "priority", "priority"},
		{"batch", "batch", "batch"},
		{"no tier name", `pri"ority`, "standard"},
	}
	for _, c := range cases {
		hdr := append([]string{}, anthHeaders...)
		if c.header != "" {
			hdr = append(hdr, "x-mock-service-tier", c.header)
		}
		t.Run(c.name, func(t *testing.T) {
			_, b := h.must("POST", "/v1/messages", messagesBody("Hello there", ""), hdr...)
			u := decode[struct{ Usage usage }](t, b).Usage
			if u.ServiceTier == nil || *u.ServiceTier != c.want {
				t.Errorf("usage.service_tier in %s, want %q", b, c.want)
			}
		})
		t.Run(c.name+", stream", func(t *testing.T) {
			_, b := h.must("POST", "/v1/messages", messagesBody("Hello there", `"stream":true`), hdr...)
			for _, ev := range parseSSE(t, b) {
				var e struct {
					Message struct{ Usage *usage }
					Usage   *usage
				}
				if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
					t.Fatal(err)
				}
				switch ev.name {
				case "message_start":
					if u := e.Message.Usage; u == nil || u.ServiceTier == nil || *u.ServiceTier != c.want {
						t.Errorf("message_start %s, want service_tier %q", ev.data, c.want)
					}
				case "message_delta":
					if e.Usage == nil || e.Usage.ServiceTier != nil {
						t.Errorf("message_delta %s: usage without service_tier wanted", ev.data)
					}
				}
			}
		})
	}
	t.Run("with searches", func(t *testing.T) {
		body := messagesBody("What is new in gateway routing?", `"tools":[{"type":"web_search_20250305","name":"web_search"}]`)
		_, b := h.must("POST", "/v1/messages", body, append(append([]string{}, anthHeaders...), "x-mock-service-tier", "priority")...)
		u := decode[struct{ Usage usage }](t, b).Usage
		if u.ServiceTier == nil || *u.ServiceTier != "priority" || u.ServerToolUse == nil || u.ServerToolUse.WebSearchRequests != 2 {
			t.Errorf("usage %s", b[strings.Index(string(b), `"usage"`):])
		}
	})
}
