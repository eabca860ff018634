package mockllm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"
)

// fixedNow is the clock of every test server, so "created" fields are known.
func fixedNow() time.Time { return time.Unix(1_700_000_000, 0) }

// harness is a server on an in-memory listener and an HTTP client dialing it.
type harness struct {
	t      *testing.T
	s      *Server
	ln     *fasthttputil.InmemoryListener
	client *http.Client
	tr     *http.Transport
}

func start(t *testing.T, o Options) *harness {
	t.Helper()
	if o.Now == nil {
		o.Now = fixedNow
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	tr := &http.Transport{
		DialContext:        func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
		DisableCompression: true,
	}
	h := &harness{t: t, s: s, ln: ln, client: &http.Client{Transport: tr, Timeout: 20 * time.Second}, tr: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := s.Shutdown(); err != nil {
			t.Error(err)
		}
		_ = ln.Close()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	return h
}

// do sends a request; hdr holds header name, value pairs.
func (h *harness) do(method, path, body string, hdr ...string) (*http.Response, []byte, error) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://mock.test"+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// must is do for requests expected to complete.
func (h *harness) must(method, path, body string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	resp, b, err := h.do(method, path, body, hdr...)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, b
}

// event is one server-sent event.
type event struct {
	name string
	data string
}

// parseSSE splits a complete SSE body into events; every event must end in a blank line.
func parseSSE(t *testing.T, b []byte) []event {
	t.Helper()
	var evs []event
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\n\n"))
		if i < 0 {
			t.Fatalf("unterminated event %q", b)
		}
		var ev event
		for line := range strings.SplitSeq(string(b[:i]), "\n") {
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			default:
				t.Fatalf("unexpected SSE line %q", line)
			}
		}
		evs = append(evs, ev)
		b = b[i+2:]
	}
	return evs
}

// chatResp decodes chat completions, their chunks and text completions.
type chatResp struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message *struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string         `json:"text"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
		StopReason   *string         `json:"stop_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	if dec.More() {
		t.Fatalf("trailing bytes after JSON in %q", b)
	}
	return v
}

// sleepLog is an Options.Sleep that records the schedule instead of waiting.
type sleepLog struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *sleepLog) sleep(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *sleepLog) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.d
	l.d = nil
	return d
}

// chatBody is a chat request for prompt with extra members appended.
func chatBody(prompt string, extra string) string {
	b, _ := json.Marshal(prompt)
	s := `{"model":"mock-1","messages":[{"role":"user","content":` + string(b) + `}]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}
