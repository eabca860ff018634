package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// pipeStep is one request a FuzzPipelined sequence can hold and the answer it must get.
type pipeStep struct {
	method, path, header, body string
	status                     int
	sse                        bool // the answer is an event stream
	done                       bool // an event stream that ends with [DONE] (else with an error event)
}

var pipeSteps = []pipeStep{
	{"POST", "/v1/chat/completions", "", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, 200, false, false},
	{"POST", "/v1/chat/completions", "", `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, 200, true, true},
	{"POST", "/v1/embeddings", "", `{"model":"embed","input":["a","b"]}`, 200, false, false},
	{"POST", "/v1/chat/completions", "", `{"model":"chat","messages":[`, 400, false, false},
	{"POST", "/v1/chat/completions", "", `{"model":"nope","messages":[]}`, 404, false, false},
	{"GET", "/v1/models", "", "", 200, false, false},
	{"POST", "/v1/chat/completions", "x-mock-tokens: 8\r\nx-mock-cut-after: 2\r\n", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, 200, true, false},
	{"POST", "/v1/chat/completions", "x-mock-status: 503\r\n", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, 503, false, false},
	{"POST", "/v1/chat/completions", "", `{"model":"claude","stream":true,"messages":[{"role":"user","content":"hi"}]}`, 200, true, true},
	{"POST", "/v1/chat/completions", "", `{"model":"claude","n":2,"messages":[{"role":"user","content":"hi"}]}`, 400, false, false},
	{"DELETE", "/v1/chat/completions", "", "", 405, false, false},
	{"POST", "/v1/chat/completions", "x-mock-delay: 30ms\r\n", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, 200, false, false},
	{"POST", "/v1/chat/completions", "x-mock-tokens: 6\r\nx-mock-tpot: 3ms\r\n", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, 200, true, true},
	{"POST", "/v1/completions", "", `{"model":"legacy","prompt":"Once","stream":true}`, 200, true, true},
	{"POST", "/v1/chat/completions", "x-mock-delay: 5s\r\n", `{"model":"quick","stream":true,"messages":[{"role":"user","content":"hi"}]}`, 504, false, false},
}

// FuzzPipelined sends a sequence of requests, chosen by the fuzzer's bytes, on one
// kept-alive connection: all at once (pipelined), one after the other, or pipelined
// and cut into small writes. Streams, cut streams, upstream errors, the gateway's own
// errors and Anthropic translations follow each other on the connection, which hands
// itself from fasthttp to a stream's goroutine and back. Each request must get its own
// answer, in order, with its x-request-id, and the connection must stay usable.
func FuzzPipelined(f *testing.F) {
	_, up := startMock(f, mockllm.Options{MaxTokens: 4, TPOT: time.Millisecond})
	_, claude := startMock(f, mockllm.Options{Model: "claude-up", API: mockllm.APIAnthropic, MaxTokens: 4})
	g := startGateway(f, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 16KiB}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, timeout: 5s}
  claude: {provider: anthropic, base_url: "http://`+claude+`/v1", model: claude-up, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: quick, type: chat, routes: [{backend: up}], timeout: 100ms}
  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: embed, type: embeddings, routes: [{backend: up}]}
  - {name: legacy, type: completions, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`)
	addr := strings.TrimPrefix(g.url, "http://")
	f.Add([]byte{0, 0, 1, 0, 2})
	f.Add([]byte{1, 1, 0, 1, 3, 1})
	f.Add([]byte{2, 6, 0, 7, 1, 8, 4})
	f.Add([]byte{0, 12, 11, 13, 9, 5, 10})
	f.Add([]byte{2, 1, 1, 6, 6, 12, 0})
	f.Add([]byte{0, 14, 1, 14, 0})
	f.Add([]byte{1, 8, 9, 8, 3, 2})
	f.Fuzz(func(t *testing.T, seq []byte) {
		if len(seq) < 2 {
			return
		}
		mode, chunk := seq[0]%3, int(seq[0]/3)%13+1
		var steps []pipeStep
		for _, b := range seq[1:min(len(seq), 9)] {
			steps = append(steps, pipeSteps[int(b)%len(pipeSteps)])
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		reqs := make([][]byte, len(steps))
		for i, st := range steps {
			reqs[i] = pipeRequest(st, "p-"+strconv.Itoa(i))
		}
		write := func(b []byte) {
			t.Helper()
			if _, err := c.Write(b); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		switch mode {
		case 0:
			write(bytes.Join(reqs, nil))
		case 2:
			all := bytes.Join(reqs, nil)
			for len(all) > 0 {
				n := min(chunk, len(all))
				write(all[:n])
				all = all[n:]
			}
		}
		for i, st := range steps {
			if mode == 1 {
				write(reqs[i])
			}
			pipeCheck(t, br, st, i, seq)
		}
		// The connection still serves after the sequence.
		write(pipeRequest(pipeSteps[0], "p-last"))
		pipeCheck(t, br, pipeSteps[0], -1, seq)
	})
}

// pipeRequest is step st as an HTTP/1.1 keep-alive request with x-request-id id.
func pipeRequest(st pipeStep, id string) []byte {
	var b bytes.Buffer
	b.WriteString(st.method + " " + st.path + " HTTP/1.1\r\nHost: gateway\r\nX-Request-Id: " + id + "\r\n")
	b.WriteString(st.header)
	if st.body != "" {
		b.WriteString("Content-Type: application/json\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(st.body)) + "\r\n\r\n" + st.body)
	return b.Bytes()
}

// pipeCheck reads the answer to request i (-1: the closing one) and checks it.
func pipeCheck(t *testing.T, br *bufio.Reader, st pipeStep, i int, seq []byte) {
	t.Helper()
	id := "p-last"
	if i >= 0 {
		id = "p-" + strconv.Itoa(i)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("sequence %v, request %s (%s %s): no answer: %v", seq, id, st.method, st.header, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("sequence %v, request %s: answer cut: %v", seq, id, err)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("sequence %v, request %s (%s %s %s): "+format+"\nanswer %d %v:\n%s",
			append(append([]any{seq, id, st.method, st.header, st.body}, args...), resp.StatusCode, resp.Header, body)...)
	}
	if got := resp.Header.Get("X-Request-Id"); got != id {
		fail("x-request-id %q: an answer out of order", got)
	}
	if resp.StatusCode != st.status {
		fail("status %d, want %d", resp.StatusCode, st.status)
	}
	if resp.Close {
		fail("the gateway closes a connection the client keeps alive")
	}
	isSSE := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if isSSE != st.sse {
		fail("content type %q", resp.Header.Get("Content-Type"))
	}
	if !st.sse {
		if !json.Valid(body) {
			fail("body is not JSON")
		}
		return
	}
	done, errEvent, bad := sseCheck(body)
	if bad != "" {
		fail("event %q", bad)
	}
	if done != st.done || errEvent == st.done {
		fail("stream ended with [DONE] %v, error event %v", done, errEvent)
	}
}
