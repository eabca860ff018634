package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
)

// An upstream in a long prefill sends SSE comments (": ping") to keep the connection
// and every proxy on the way alive; the gateway passes a keep-alive comment on, or the
// client's side would be silent for the whole prefill and a proxy in front of the
// client could time it out. The SDK reads such a stream as it reads the upstream's.
func TestStreamUpstreamKeepAlivePassedOn(t *testing.T) {
	stop := make(chan struct{})
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		writeChunk(c, sseChunk(""))
		for i := 0; i < 60; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			writeChunk(c, ": ping\n\n")
		}
		writeChunk(c, sseChunk("hi")+"data: [DONE]\n\n")
		writeChunk(c, "")
	})
	var once sync.Once
	stopUpstream := func() { once.Do(func() { close(stop) }) }
	t.Cleanup(stopUpstream)
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	if _, err := io.WriteString(conn, rawRequest(t, g, streamBody)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream did not start: %v", err)
	}
	// The role chunk comes first.
	buf := make([]byte, 64<<10)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := resp.Body.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "chat.completion.chunk") {
		t.Fatalf("first event: %q %v", buf[:n], err)
	}
	// The upstream now sends a comment every 100 ms for 6 s: within 3 s the client
	// should have received something (the comments, or one of the gateway's own).
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err = resp.Body.Read(buf)
	if err != nil {
		t.Fatalf("client received nothing for 3 s while the upstream sent a keep-alive comment every 100 ms: %v", err)
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, ": keep-alive\n\n") {
		t.Fatalf("client received %q, want keep-alive comments", got)
	}
	stopUpstream()
	// The official SDK skips the comments.
	addr2, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"+
			": ping\r\n\r\n"+sseChunk("")+": ping\n\n"+sseChunk("Hello")+": ping\n\n"+sseChunk(" there")+"data: [DONE]\n\n")
		c.Close()
	})
	g2 := startGateway(t, mockConfig(addr2, "", ""))
	if got, err := accumulateStream(g2.client(), "chat"); err != nil || got != "Hello there" {
		t.Fatalf("the SDK through the gateway: %q, %v; want %q", got, err, "Hello there")
	}
}

// vLLM answers an engine failure during a stream with an error event and then
// [DONE]. The event goes to the client as it came, and the stream counts as failed
// (code upstream_error): the client got an error, not a completion.
func TestStreamUpstreamErrorEventCountsAsFailed(t *testing.T) {
	t.Parallel()
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		writeChunk(c, sseChunk("Hel"))
		time.Sleep(20 * time.Millisecond)
		writeChunk(c, `data: {"error":{"object":"error","message":"EngineCore encountered an issue.","type":"InternalServerError","param":null,"code":500}}`+"\n\n")
		writeChunk(c, "data: [DONE]\n\n")
		writeChunk(c, "")
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	for range 3 {
		if resp, body := postChat(t, g, streamBody); !strings.Contains(body, "EngineCore") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	}
	// A stream is counted once its end is recorded, just after its last bytes went.
	var se, ok float64
	waitWithin(5*time.Second, func() bool {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		se, _ = promtest.Sum(fams, "tollgate_stream_errors_total", func(l map[string]string) bool { return l["code"] == "upstream_error" })
		ok, _ = promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["outcome"] == "ok" })
		return se == 3
	})
	if se != 3 || ok != 0 {
		t.Errorf("3 streams that ended with the upstream's error event: tollgate_stream_errors_total{code=\"upstream_error\"} %v, attempts with outcome ok %v; want them counted as failed streams", se, ok)
	}
}

// A stream that relayed one big event (1 MiB, well under the 16 MiB bound) must not go
// back to the pool with a buffer that size: every later request served by that object
// would pin the megabyte. Buffers over 64 KiB are dropped, as the SSE reader drops its.
func TestReleaseDropsBigBuffers(t *testing.T) {
	big := `{"choices":[{"delta":{"content":"` + strings.Repeat("x", 1<<20) + `"}}]}`
	st := &scriptStream{script: []string{"WAIT", big, "WAIT", "DONE"}, waiter: true}
	c := &writesConn{}
	s := &Server{log: discardLogger()}
	r := s.acquireRequest()
	r.start, r.stream, r.chunked, r.conn = time.Now(), st, true, c
	r.out = append(r.out[:0], relayHead...)
	r.outHead = len(r.out)
	if err := r.relay(); err != nil {
		t.Fatal(err)
	}
	if len(c.got) == 0 || !strings.Contains(strings.Join(c.got, ""), big) {
		t.Fatalf("the big event did not go out")
	}
	r.release()
	if n := cap(r.out); n > 64<<10 {
		t.Fatalf("released to the pool with a %d-byte out buffer", n)
	}
}

// An upstream that says nothing for a while (vLLM while the request is queued or its
// prompt prefills sends no keep-alive of its own) gets the gateway's own keep-alive
// comments to the client every streamKeepAlive, so that a proxy in front of the client
// does not cut the stream; the upstream's stream_idle_timeout is not moved by them,
// and the stream's content arrives whole.
func TestStreamSilentUpstreamKeptAlive(t *testing.T) {
	old := streamKeepAlive
	streamKeepAlive = 100 * time.Millisecond
	t.Cleanup(func() { streamKeepAlive = old })
	t.Run("silence then content", func(t *testing.T) {
		addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
			writeStreamHead(c)
			writeChunk(c, sseChunk(""))
			time.Sleep(700 * time.Millisecond)
			writeChunk(c, sseChunk("hi")+"data: [DONE]\n\n")
			writeChunk(c, "")
		})
		g := startGateway(t, mockConfig(addr, "", ""))
		resp, body := postChat(t, g, streamBody)
		if resp.StatusCode != 200 || !strings.Contains(body, `"content":"hi"`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if n := strings.Count(body, ": keep-alive\n\n"); n < 3 {
			t.Fatalf("%d keep-alives during 700 ms of upstream silence at one every 100 ms, want at least 3:\n%s", n, body)
		}
	})
	t.Run("idle timeout still fires", func(t *testing.T) {
		addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
			writeStreamHead(c)
			writeChunk(c, sseChunk("a"))
			time.Sleep(3 * time.Second)
		})
		cfg := strings.Replace(mockConfig(addr, "", ""), "timeout: 20s}", "timeout: 20s, stream_idle_timeout: 400ms}", 1)
		g := startGateway(t, cfg)
		t0 := time.Now()
		resp, body := postChat(t, g, streamBody)
		took := time.Since(t0)
		if resp.StatusCode != 200 || !strings.Contains(body, "upstream_timeout") {
			t.Fatalf("status %d body %q, want the stream ended with upstream_timeout", resp.StatusCode, body)
		}
		if took > 2*time.Second {
			t.Fatalf("stream ended after %v: keep-alives moved the 400ms stream_idle_timeout", took)
		}
		if !strings.Contains(body, ": keep-alive") {
			t.Fatalf("no keep-alive before the idle timeout:\n%s", body)
		}
	})
}
