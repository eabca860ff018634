package providers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzMessagesSSE reads any bytes as a Messages API stream: every event passed on is
// one JSON object under a name that keeps to its line, a usage is never negative, the
// end comes only after message_stop or an error event, and nothing follows it.
func FuzzMessagesSSE(f *testing.F) {
	f.Add(messagesStream)
	f.Add(strings.ReplaceAll(messagesStream, "\n", "\r\n"))
	f.Add("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":-3}}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1e3,\"input_tokens\":null}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}")
	f.Add("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\ndata: [DONE]\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		s := &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), 64), messages: true}
		done, stopped := false, false
		for {
			var ev Event
			if err := s.Next(&ev); err != nil {
				break
			}
			if done {
				t.Fatalf("event after the end: %+v", ev)
			}
			if ev.KeepAlive {
				continue
			}
			if ev.Done {
				if len(ev.Data) != 0 || !stopped {
					t.Fatalf("an end with data %q, or before message_stop or an error event (%v)", ev.Data, stopped)
				}
				done = true
				continue
			}
			if bytes.ContainsAny(ev.Name, "\r\n") {
				t.Fatalf("event name %q breaks its line", ev.Name)
			}
			if obj := bytes.TrimLeft(ev.Data, " \t\r\n"); !json.Valid(ev.Data) || len(obj) == 0 || obj[0] != '{' {
				t.Fatalf("event passed on that is not a JSON object: %q", ev.Data)
			}
			u := ev.Usage
			if u.Input < 0 || u.Output < 0 || u.CachedInput < 0 || u.CacheWrite < 0 || u.WebSearches < 0 {
				t.Fatalf("negative usage %+v from %q", u, ev.Data)
			}
			stopped = stopped || messageStop(ev.Data) || ev.Error
		}
	})
}

// FuzzAnthropicErrorShape writes any upstream error body in the Messages API's shape:
// one JSON object, type error, an error object with one of that API's types and a
// message.
func FuzzAnthropicErrorShape(f *testing.F) {
	for _, c := range []struct {
		status int
		body   string
	}{
		{529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`},
		{404, `{"type":"error","error":{"type":"NotFoundError","message":"x"}}`},
		{400, `{"error":{"message":"bad","type":"Bad Request","param":null,"code":400}}`},
		{422, `{"detail":[{"loc":["body"],"msg":"Field required"}]}`},
		{502, `<html>bad gateway</html>`},
		{429, `{"error":"slow down"}`},
		{500, `{"type":"error","error":"flat"}`},
	} {
		f.Add(c.status, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 400 || status > 599 {
			return
		}
		var out fasthttp.Response
		out.SetStatusCode(status)
		out.SetBody(body)
		AnthropicErrorShape(&out, nil)
		var e struct {
			Type  string `json:"type"`
			Error struct {
				Type    string  `json:"type"`
				Message *string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(out.Body(), &e); err != nil || e.Type != "error" || e.Error.Message == nil ||
			!knownAnthropicError([]byte(`"`+e.Error.Type+`"`)) {
			t.Fatalf("%d %q became %q", status, body, out.Body())
		}
	})
}
