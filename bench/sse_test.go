package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func readAll(t testing.TB, body string) ([]string, error) {
	t.Helper()
	s := sseReader{r: bufio.NewReaderSize(strings.NewReader(body), 256)}
	var out []string
	for i := 0; i < 1000; i++ {
		d, err := s.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, string(d))
	}
	t.Fatal("reader did not stop")
	return nil, nil
}

func TestSSEReader(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string
	}{
		{"openai events", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, "[DONE]"}},
		{"crlf and no space", "data:x\r\n\r\ndata:y\r\n\r\n", []string{"x", "y"}},
		{"multi-line data joined", "data: a\ndata: b\n\n", []string{"a\nb"}},
		{"anthropic event lines skipped", "event: ping\ndata: {}\n\n: comment\n\n", []string{"{}"}},
		{"last event without blank line", "data: a\n\ndata: b", []string{"a", "b"}},
		{"empty body", "", nil},
		{"blank lines only", "\n\n\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(t, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSSEReaderLineTooLong(t *testing.T) {
	_, err := readAll(t, "data: "+strings.Repeat("x", 1000)+"\n\n")
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("err = %v, want errLineTooLong", err)
	}
}

func TestHasContent(t *testing.T) {
	cases := []struct {
		name  string
		chunk string
		want  bool
	}{
		{"token", `{"choices":[{"delta":{"content":"hi"}}]}`, true},
		{"role chunk", `{"choices":[{"delta":{"role":"assistant","content":""}}]}`, false},
		{"spaced", `{"delta": {"content": "x"}}`, true},
		{"finish chunk", `{"choices":[{"delta":{},"finish_reason":"stop"}]}`, false},
		{"null content", `{"delta":{"content":null}}`, false},
		{"second key has text", `{"content":"","x":{"content":"y"}}`, true},
		{"truncated", `{"content":"`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hasContent([]byte(tc.chunk)); got != tc.want {
				t.Fatalf("hasContent(%s) = %v", tc.chunk, got)
			}
		})
	}
}

func TestIsErrorEvent(t *testing.T) {
	cases := []struct {
		name  string
		event string
		want  bool
	}{
		{"openai error event", `{"error":{"message":"engine failed","type":"server_error","param":null,"code":"upstream_error"}}`, true},
		{"error after other members", `{"id":"c1","object":"chat.completion.chunk","error":{"message":"x"}}`, true},
		{"spaced", ` { "error" : {"message": "x"} } `, true},
		{"content chunk", `{"choices":[{"index":0,"delta":{"content":"alpha"}}]}`, false},
		{"error nested in a choice", `{"choices":[{"index":0,"delta":{},"error":{"message":"x"}}]}`, false},
		{"error in generated text", `{"choices":[{"delta":{"content":"{\"error\": 1}"}}]}`, false},
		{"error as a value", `{"choices":[{"delta":{"content":"error"}}]}`, false},
		{"not an object", `["error"]`, false},
		{"cut short", `{"error":{"message":"eng`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := isErrorEvent([]byte(tc.event)); got != tc.want {
				t.Fatalf("isErrorEvent(%s) = %v", tc.event, got)
			}
		})
	}
}

// hasMember is the check of a non-streaming answer: one JSON object with the
// member at its top level, so an event stream or a body cut short is no answer.
func TestHasMember(t *testing.T) {
	cases := []struct {
		name string
		body string
		want bool
	}{
		{"completion", `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"content":"hi"}}]}`, true},
		{"space around", "\n {\"choices\": []}\n", true},
		{"cut short", `{"id":"c1","choices":[{"index":0,"message":{"content":"al`, false},
		{"event stream", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", false},
		{"nested only", `{"x":{"choices":[]}}`, false},
		{"in a string only", `{"x":"\"choices\""}`, false},
		{"trailing bytes", `{"choices":[]} x`, false},
		{"two objects", `{"choices":[]}{"choices":[]}`, false},
		{"empty", ``, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hasMember([]byte(tc.body), "choices"); got != tc.want {
				t.Fatalf("hasMember(%q, choices) = %v", tc.body, got)
			}
		})
	}
}

func FuzzSSEReader(f *testing.F) {
	f.Add("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n")
	f.Add("event: x\ndata: a\ndata: b\r\n\r\n")
	f.Add("data:")
	f.Fuzz(func(t *testing.T, body string) {
		got, err := readAll(t, body)
		if err != nil && !errors.Is(err, errLineTooLong) {
			t.Fatalf("unexpected error %v", err)
		}
		for _, d := range got {
			hasContent([]byte(d))
			isErrorEvent([]byte(d))
		}
	})
}
