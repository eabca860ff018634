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
		}
	})
}
