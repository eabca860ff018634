package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// errorAnswerOf is an OpenAI error object of n bytes.
func errorAnswerOf(n int) string {
	const head = `{"error":{"message":"`
	const tail = `","type":"server_error","param":null,"code":null}}`
	return head + strings.Repeat("e", n-len(head)-len(tail)) + tail
}

// transcriptOf is a transcription answer (response_format json) of n bytes.
func transcriptOf(n int) string {
	const head = `{"text":"`
	const tail = `"}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

// pickedUpstream is an upstream whose answer is chosen by the request's X-Answer:
// "held" is a 200 chat answer of heldSize bytes whose last byte waits for release;
// "chat N" a 200 chat answer of N bytes; "error N" a 500 of N bytes; "transcript N" a 200 transcription of N bytes, whole
// (as OpenAI answers translations asked to stream); anything else a small chat
// answer. closed gets, for each "error" or "transcript" answer to a request with an
// X-Watch header, the error that ended its connection once the answer was written:
// the gateway's close, or a timeout when the gateway kept it open.
func pickedUpstream(t *testing.T, heldSize int) (addr string, release chan struct{}, closed chan error) {
	t.Helper()
	release, closed = make(chan struct{}), make(chan error, 16)
	held := chatAnswerOf(heldSize)
	addr, _ = scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		what, size, _ := strings.Cut(req.Header.Get("X-Answer"), " ")
		n, _ := strconv.Atoi(size)
		var answer string
		switch what {
		case "held":
			_, _ = io.WriteString(c, answerHead(heldSize)+held[:heldSize-1])
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
			_, _ = io.WriteString(c, held[heldSize-1:])
			return
		case "error":
			answer = jsonAnswer("HTTP/1.1 500 Internal Server Error", errorAnswerOf(n))
		case "transcript":
			answer = jsonAnswer("HTTP/1.1 200 OK", transcriptOf(n))
		case "chat":
			answer = jsonAnswer("HTTP/1.1 200 OK", chatAnswerOf(n))
		default:
			_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", chatAnswerOf(300)))
			return
		}
		_, err := io.WriteString(c, answer)
		if req.Header.Get("X-Watch") == "" {
			return
		}
		if err == nil {
			// Written into the sockets' buffers: a connection the gateway
			// keeps reads as a timeout, one it closed as its end.
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = c.Read(make([]byte, 1))
		}
		closed <- err
		c.Close()
	})
	return addr, release, closed
}

// heldConfig serves chat (no retries) and whisper (transcriptions) from the upstream
// at addr under server.max_buffered_bytes 1MiB.
func heldConfig(addr string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, max_buffered_bytes: 1MiB}
auth: {mode: none}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
  - {name: whisper, type: transcriptions, routes: [{backend: up}], retries: 0}
logging: {level: info, access_log: true}
`
}

// wantClosed waits for the upstream connection an answer came on to be closed by the
// gateway.
func wantClosed(t *testing.T, closed chan error, what string) {
	t.Helper()
	select {
	case err := <-closed:
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the upstream connection stayed open (%v)", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: the upstream connection stayed open", what)
	}
}

// A streaming call's answer read whole counts against server.max_buffered_bytes as
// a buffered answer does: its error answer (read up to max_response_bytes) and an
// audio answer a streaming call gets whole (OpenAI's translations do not stream).
// While another answer holds 800,000 bytes of 1 MiB, one that grows past the room
// left is not read on: its connection is closed, the client gets 503 overloaded with
// its wait, the access log says overloaded, and nothing is retried. Alone, each is
// taken however large, and passed on whole. After each, nothing is held.
func TestMaxBufferedStreamedCallAnswers(t *testing.T) {
	const heldSize = 800_000
	addr, release, closed := pickedUpstream(t, heldSize)
	g := startGateway(t, heldConfig(addr))
	wav := silentWAV(1)
	header := func(answer, id string) map[string]string {
		h := map[string]string{"X-Answer": answer, "X-Request-Id": id}
		if strings.HasSuffix(id, "refused") {
			h["X-Watch"] = "1"
		}
		return h
	}
	chat := func(answer, id string) (*http.Response, string) {
		return postWith(t, g.url+"/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			header(answer, id))
	}
	audio := func(answer, id string) (*http.Response, string) {
		ct, body := audioForm(t, wav, "model", "whisper", "stream", "true")
		h := header(answer, id)
		h["Content-Type"] = ct
		return postWith(t, g.url+"/v1/audio/transcriptions", string(body), h)
	}
	for _, c := range []struct {
		name string
		// post posts a streaming call whose upstream answers answer, with X-Watch
		// set for a request ID ending in "refused".
		post   func(answer, id string) (*http.Response, string)
		answer string
		// status is what the answer alone gets, body its body.
		status int
		body   func(int) string
	}{
		{"a streaming call's error answer", chat, "error", 500, errorAnswerOf},
		{"an audio answer a streaming call gets whole", audio, "transcript", 200, transcriptOf},
	} {
		t.Run(c.name, func(t *testing.T) {
			held := asyncPost(g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "held")
			waitAnswers(t, g, heldSize, "while the first answer arrives")
			id := strings.ReplaceAll(c.answer, " ", "-") + "-refused"
			resp, got := c.post(c.answer+" 400000", id)
			if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Should-Retry") != "true" {
				t.Fatalf("got %d %.300s (Retry-After %q); want 503 overloaded with its wait", resp.StatusCode, got, resp.Header.Get("Retry-After"))
			}
			wantClosed(t, closed, "refused")
			if line := accessLine(t, g, id); line["status"] != 503.0 || line["error"] != "overloaded" || line["attempts"] != 1.0 {
				t.Errorf("access log %v", line)
			}
			release <- struct{}{}
			if got := <-held; !strings.HasPrefix(got, "200 ") {
				t.Fatalf("the held answer got %.200s", got)
			}
			waitAnswers(t, g, 0, "after a refusal")

			// Alone, larger than the bound: taken, passed on whole.
			const size = 2_000_000
			resp, got = c.post(c.answer+" "+strconv.Itoa(size), strings.ReplaceAll(c.answer, " ", "-")+"-alone")
			if resp.StatusCode != c.status || got != c.body(size) {
				t.Fatalf("alone: got %d, %d bytes %.200s; want %d with the upstream's %d bytes", resp.StatusCode, len(got), got, c.status, size)
			}
			waitAnswers(t, g, 0, "after an answer alone")
		})
	}
}

// An upstream's error answer kept while a fallback is tried counts against
// server.max_buffered_bytes until it no longer stands, moved rather than copied: a
// 500 of 500,000 bytes kept while the fallback's answer of 400,000 arrives holds
// 900,000 bytes of 1 MiB, and another answer finds no room beside them (503
// overloaded); once the fallback has answered, nothing is held. When the fallback
// cannot take the call, the kept answer reaches the client whole; when the client
// hangs up meanwhile, it is let go with the rest.
func TestMaxBufferedKeptAnswer(t *testing.T) {
	const errSize, spareSize = 500_000, 400_000
	addr, _, _ := pickedUpstream(t, 1000)
	releaseSpare := make(chan struct{})
	spareAnswer := chatAnswerOf(spareSize)
	spareAddr, spareHits := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		_, _ = io.WriteString(c, answerHead(spareSize)+spareAnswer[:300_000])
		select {
		case <-releaseSpare:
		case <-time.After(20 * time.Second):
		}
		_, _ = io.WriteString(c, spareAnswer[300_000:])
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, max_buffered_bytes: 1MiB}
auth: {mode: none}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 20s}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: spare-model, timeout: 20s}
  claude: {provider: anthropic, base_url: "http://`+holdPort(t).Addr()+`/v1", model: claude-x, api_key: sk-ant-kept}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0, fallbacks: [spare]}
  - {name: plain, type: chat, routes: [{backend: up}], retries: 0}
  - {name: refusing, type: chat, routes: [{backend: up}], retries: 0, fallbacks: [claude]}
logging: {level: info, access_log: true}
`)
	errAnswer := "error " + strconv.Itoa(errSize)

	t.Run("counted while the fallback answers", func(t *testing.T) {
		served := asyncPost(g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, errAnswer)
		waitAnswers(t, g, errSize+spareSize, "while the fallback's answer arrives beside the kept one")
		resp, got := postWith(t, g.url+"/v1/chat/completions", `{"model":"plain","messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"X-Answer": "chat 300000"})
		if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) {
			t.Fatalf("another answer beside them got %d %.200s, want 503 overloaded", resp.StatusCode, got)
		}
		releaseSpare <- struct{}{}
		if got := <-served; got != "200 "+spareAnswer {
			t.Fatalf("the fallback's answer: %.200s (%d bytes)", got, len(got))
		}
		waitAnswers(t, g, 0, "once the fallback answered")
		resp, got = postWith(t, g.url+"/v1/chat/completions", `{"model":"plain","messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"X-Answer": "chat 300000"})
		if resp.StatusCode != 200 || len(got) != 300_000 {
			t.Fatalf("the answer after got %d, %d bytes", resp.StatusCode, len(got))
		}
		waitAnswers(t, g, 0, "after the answers")
	})

	t.Run("put back when the fallback cannot take the call", func(t *testing.T) {
		resp, got := postWith(t, g.url+"/v1/chat/completions", `{"model":"refusing","n":2,"messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"X-Answer": errAnswer})
		if resp.StatusCode != 500 || resp.Header.Get("X-Tollgate-Backend") != "up" || got != errorAnswerOf(errSize) {
			t.Fatalf("got %d from %q, %d bytes %.100s; want the route's 500 whole", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), len(got), got)
		}
		waitAnswers(t, g, 0, "after the kept answer was passed on")
	})

	t.Run("let go when the client hangs up", func(t *testing.T) {
		hits := spareHits.Load()
		c := dialRaw(t, g, nil)
		body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
		postBytes(t, c, "/v1/chat/completions", "X-Answer: "+errAnswer+"\r\n", len(body), body)
		waitAnswers(t, g, errSize+spareSize, "while the fallback's answer arrives beside the kept one")
		c.conn.Close()
		waitAnswers(t, g, 0, "once its client hung up")
		releaseSpare <- struct{}{}
		if n := spareHits.Load(); n != hits+1 {
			t.Errorf("the fallback was asked %d times, want once", n-hits)
		}
	})
}
