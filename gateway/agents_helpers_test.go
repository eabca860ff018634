package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// agentPost posts body to url with the headers hdr (name, value pairs), as a coding
// agent does, and returns the answer's status and body.
func agentPost(t *testing.T, url, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// sseData is the data of a stream's events, in order, each with its event name (""
// where the stream names none).
type sseData struct {
	name string
	data json.RawMessage
}

// readEvents splits an SSE body into its events.
func readEvents(t *testing.T, body []byte) []sseData {
	t.Helper()
	var out []sseData
	for _, ev := range strings.Split(string(body), "\n\n") {
		var e sseData
		for _, line := range strings.Split(ev, "\n") {
			switch {
			case strings.HasPrefix(line, "event: "):
				e.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				e.data = json.RawMessage(strings.TrimPrefix(line, "data: "))
			}
		}
		if e.data != nil {
			out = append(out, e)
		}
	}
	return out
}

// chatMessages decodes a chat completions body's messages, each content a string (a
// text) or parts.
func chatMessages(t *testing.T, body []byte) []chatMsg {
	t.Helper()
	var chat struct {
		Messages []chatMsg `json:"messages"`
	}
	if err := json.Unmarshal(body, &chat); err != nil {
		t.Fatalf("chat body %s: %v", body, err)
	}
	return chat.Messages
}

type chatMsg struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
	ToolCallID string `json:"tool_call_id"`
}

// text is the message's text: its string content, or its text parts joined.
func (m chatMsg) text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type, Text string
	}
	_ = json.Unmarshal(m.Content, &parts)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}
