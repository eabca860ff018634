package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// chatAnswerOf is a chat completion of n bytes, its usage two tokens.
func chatAnswerOf(n int) string {
	const head = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"`
	const tail = `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

// answerHead is the header of a 200 JSON answer of n bytes.
func answerHead(n int) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n"
}

// waitAnswers waits for tollgate_response_body_buffered_bytes to read want.
func waitAnswers(t *testing.T, g *gw, want float64, what string) {
	t.Helper()
	read := func() float64 {
		v, _ := gaugeValue(t, g.Server, "tollgate_response_body_buffered_bytes")
		return v
	}
	if !pollFor(5*time.Second, func() bool { return read() == want }) {
		t.Fatalf("tollgate_response_body_buffered_bytes = %v %s, want %v", read(), what, want)
	}
}

// answerConfig serves endpoint chat (and limited, a 1000-token budget a minute) from
// the upstream at addr, under server.max_buffered_bytes bound, with the backends and
// endpoints given besides.
func answerConfig(addr, bound, backends, endpoints string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, max_buffered_bytes: ` + bound + `}
auth: {mode: none}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s}
` + backends + `endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2}
  - {name: limited, type: chat, routes: [{backend: up}], limits: [{per: endpoint, tokens: 1000, window: minute}]}
` + endpoints + `logging: {level: info, access_log: true}
`
}

// asyncPost posts body to g's chat completions with header X-Answer: answer and
// sends back the status and body it got.
func asyncPost(g *gw, body, answer string) <-chan string {
	out := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Answer", answer)
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			out <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	return out
}

// server.max_buffered_bytes bounds the upstream answers held whole too, with the
// request bodies: while one answer of 800,000 bytes is held (its last byte not come),
// another whose buffer would take the total past 1 MiB is not read on: its upstream
// connection is closed, the endpoint's retries are not tried, and the client gets 503
// overloaded with Retry-After, its token estimate refunded as for an upstream failure;
// the next request is served, the first answer too, and the held bytes are back at 0.
func TestMaxBufferedAnswers(t *testing.T) {
	const sizeA, sizeB = 800_000, 400_000
	answerA, answerB := chatAnswerOf(sizeA), chatAnswerOf(sizeB)
	releaseA := make(chan struct{})
	closedB := make(chan error, 1)
	addr, hits := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		switch req.Header.Get("X-Answer") {
		case "a":
			_, _ = io.WriteString(c, answerHead(sizeA)+answerA[:sizeA-1])
			<-releaseA
			_, _ = io.WriteString(c, answerA[sizeA-1:])
		case "b":
			_, err := io.WriteString(c, answerHead(sizeB)+answerB)
			if err == nil {
				// Written into the sockets' buffers: the gateway's close ends the
				// connection.
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
			}
			closedB <- err
			c.Close()
		default:
			_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", chatAnswerOf(300)))
		}
	})
	g := startGateway(t, answerConfig(addr, "1MiB", "", ""))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`

	a := asyncPost(g, body, "a")
	waitAnswers(t, g, sizeA, "while A's answer arrives")
	if v, _ := gaugeValue(t, g.Server, "tollgate_request_body_buffered_bytes"); v != 0 {
		t.Errorf("tollgate_request_body_buffered_bytes = %v, want 0: the answers are apart", v)
	}

	// B's answer would take the total past 1 MiB.
	resp, got := postWith(t, g.url+"/v1/chat/completions",
		`{"model":"limited","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"X-Answer": "b", "X-Request-Id": "b1"})
	if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("B got %d %s (Retry-After %q); want 503 overloaded, Retry-After 1", resp.StatusCode, got, resp.Header.Get("Retry-After"))
	}
	select {
	case err := <-closedB:
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("B's upstream connection stayed open (%v)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("B's upstream connection stayed open")
	}
	if line := accessLine(t, g, "b1"); line["status"] != 503.0 || line["error"] != "overloaded" {
		t.Errorf("access log %v", line)
	}
	if !strings.Contains(g.logs.String(), "server.max_buffered_bytes has no room") {
		t.Errorf("no log line says why B was refused:\n%s", g.logs.String())
	}

	// The next request is served, on the limited endpoint: B's 900-token estimate was
	// refunded.
	resp, got = postWith(t, g.url+"/v1/chat/completions",
		`{"model":"limited","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"X-Answer": "small"})
	if resp.StatusCode != 200 {
		t.Fatalf("the request after B got %d %s", resp.StatusCode, got)
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("upstream asked %d times, want 3: B's refusal is not retried", n)
	}

	close(releaseA)
	if got := <-a; got != "200 "+answerA {
		t.Fatalf("A got %.200s (%d bytes), want its whole answer", got, len(got))
	}
	waitAnswers(t, g, 0, "after the answers")
	waitBuffered(t, g, 0, "after the answers")
}

// An answer alone is always taken, larger than the bound too: an embeddings answer of
// megabytes from mockllm under a bound of 256 KiB.
func TestMaxBufferedAnswerAlone(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{EmbeddingDim: 65536})
	g := startGateway(t, answerConfig(addr, "256KiB", "", "  - {name: embed, type: embeddings, routes: [{backend: up}]}\n"))
	resp, got := postWith(t, g.url+"/v1/embeddings", `{"model":"embed","input":["a","b","c","d"]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %.300s", resp.StatusCode, got)
	}
	var e struct {
		Data []struct{ Embedding []float64 }
	}
	if err := json.Unmarshal([]byte(got), &e); err != nil || len(e.Data) != 4 || len(e.Data[0].Embedding) != 65536 {
		t.Fatalf("answer of %d bytes: %v, %d vectors", len(got), err, len(e.Data))
	}
	if len(got) <= 256<<10 {
		t.Fatalf("answer of %d bytes, want one over the bound", len(got))
	}
	waitAnswers(t, g, 0, "after the answer")
}

// An answer stays held until it is written to its client: a client that does not read
// a 16 MB answer keeps it held once its request has ended (its access log line
// written), and another answer finds no room meanwhile; once read, it is given back.
func TestMaxBufferedAnswerHeldUntilWritten(t *testing.T) {
	const size = 16_000_000
	answer := chatAnswerOf(size)
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		if req.Header.Get("X-Answer") == "big" {
			_, _ = io.WriteString(c, answerHead(size)+answer)
			return
		}
		_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", chatAnswerOf(400_000)))
	})
	g := startGateway(t, answerConfig(addr, "1MiB", "", ""))

	// A small receive buffer, set before the connection is made: the client takes
	// little of the answer unread.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	if _, err := io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Answer: big\r\nX-Request-Id: big1\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	if line := accessLine(t, g, "big1"); line["status"] != 200.0 {
		t.Fatalf("access log %v", line)
	}
	if v, _ := gaugeValue(t, g.Server, "tollgate_response_body_buffered_bytes"); v != size {
		t.Fatalf("tollgate_response_body_buffered_bytes = %v while the answer is written, want %d", v, size)
	}
	resp, got := postWith(t, g.url+"/v1/chat/completions", body, map[string]string{"X-Answer": "other"})
	if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) {
		t.Fatalf("another answer while the first is written got %d %.200s, want 503 overloaded", resp.StatusCode, got)
	}

	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != 200 || string(b) != answer {
		t.Fatalf("the slow client got %d, %d bytes, %v", r.StatusCode, len(b), err)
	}
	waitAnswers(t, g, 0, "once the answer was written")
	resp, got = postWith(t, g.url+"/v1/chat/completions", body, map[string]string{"X-Answer": "other"})
	if resp.StatusCode != 200 {
		t.Fatalf("another answer once the first was written got %d %.200s", resp.StatusCode, got)
	}
	waitAnswers(t, g, 0, "after the answers")
}

// What an answer holds is given back on every way a request ends: an upstream's
// error answer passed on, a client that hangs up while its answer arrives, an
// attempt that timed out in its answer and a fallback that served.
func TestMaxBufferedAnswerGivenBack(t *testing.T) {
	const size = 1_000_000
	errBody := `{"error":{"message":"` + strings.Repeat("e", 300_000) + `","type":"server_error","param":null,"code":null}}`
	stalled := make(chan struct{})
	t.Cleanup(func() { close(stalled) })
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		switch req.Header.Get("X-Answer") {
		case "error":
			_, _ = io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(errBody))+"\r\n\r\n"+errBody)
		default:
			// Half an answer, then nothing.
			_, _ = io.WriteString(c, answerHead(size)+chatAnswerOf(size)[:size/2])
			select {
			case <-stalled:
			case <-time.After(10 * time.Second):
			}
			c.Close()
		}
	})
	_, fallback := startMock(t, mockllm.Options{EmbeddingDim: 65536})
	g := startGateway(t, answerConfig(addr, "64MiB", `  slow: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 1s}
  fast: {provider: openai, base_url: "http://`+fallback+`/v1", model: up-model}
`, "  - {name: embed, type: embeddings, routes: [{backend: slow}], fallbacks: [fast]}\n"))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`

	t.Run("error answer passed on", func(t *testing.T) {
		resp, got := postWith(t, g.url+"/v1/chat/completions", body, map[string]string{"X-Answer": "error"})
		if resp.StatusCode != 500 || len(got) < 300_000 {
			t.Fatalf("got %d, %d bytes", resp.StatusCode, len(got))
		}
		waitAnswers(t, g, 0, "after an error answer")
	})
	t.Run("client gone while the answer arrives", func(t *testing.T) {
		c := dialRaw(t, g, nil)
		postBytes(t, c, "/v1/chat/completions", "X-Answer: stall\r\n", len(body), body)
		if !pollFor(5*time.Second, func() bool {
			v, _ := gaugeValue(t, g.Server, "tollgate_response_body_buffered_bytes")
			return v >= size/2
		}) {
			t.Fatal("the half answer was not held")
		}
		c.conn.Close()
		waitAnswers(t, g, 0, "once its client hung up")
	})
	t.Run("timed out and served by a fallback", func(t *testing.T) {
		resp, got := postWith(t, g.url+"/v1/embeddings", `{"model":"embed","input":["a","b"]}`, map[string]string{"X-Answer": "stall"})
		if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Backend") != "fast" || len(got) <= 1<<20 {
			t.Fatalf("got %d from %q, %d bytes", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), len(got))
		}
		waitAnswers(t, g, 0, "after the fallback's answer")
	})
}
