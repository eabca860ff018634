package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// scriptStream yields the events of its script in order: "WAIT" is a read of the
// upstream's socket (the hook runs, when one is on), "DONE" the final event.
type scriptStream struct {
	script []string
	i      int
	waiter bool
	wait   func() error
}

func (s *scriptStream) Next(ev *providers.Event) error {
	for s.i < len(s.script) {
		step := s.script[s.i]
		s.i++
		if step == "WAIT" {
			if s.wait != nil {
				if err := s.wait(); err != nil {
					return err
				}
			}
			continue
		}
		*ev = providers.Event{Done: step == "DONE"}
		if !ev.Done {
			ev.Data = []byte(step)
		}
		return nil
	}
	return io.ErrUnexpectedEOF
}

func (s *scriptStream) Close() error { return nil }

func (s *scriptStream) NotifyWait(fn func() error) bool {
	if s.waiter {
		s.wait = fn
	}
	return s.waiter
}

// writesConn keeps each write apart; with failFrom > 0 that write and those after
// it fail.
type writesConn struct {
	sinkConn
	got      []string
	failFrom int
}

var errWriteFailed = errors.New("write failed")

func (c *writesConn) Write(p []byte) (int, error) {
	if c.failFrom > 0 && len(c.got)+1 >= c.failFrom {
		return 0, errWriteFailed
	}
	c.got = append(c.got, string(p))
	return len(p), nil
}

// The response headers relay finds in out: chunked, and for an HTTP/1.0 client bare.
const (
	relayHead     = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	relayHeadBare = "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n"
)

func relayScript(t *testing.T, st *scriptStream, chunked bool, c *writesConn) error {
	t.Helper()
	s := &Server{log: discardLogger()}
	r := s.acquireRequest()
	defer r.release()
	r.start, r.stream, r.chunked, r.conn = time.Now(), st, chunked, c
	head := relayHead
	if !chunked {
		head = relayHeadBare
	}
	r.out = append(r.out[:0], head...)
	r.outHead = len(r.out)
	return r.relay()
}

func chunkOf(events ...string) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("data: " + e + "\n\n")
	}
	return strconv.FormatInt(int64(b.Len()), 16) + "\r\n" + b.String() + "\r\n"
}

// The relay writes once per upstream read when the stream can say when it waits, and
// once per event when it cannot, with the same bytes on the wire either way.
func TestRelayWrites(t *testing.T) {
	script := []string{"A", "B", "WAIT", "C", "WAIT", "D", "DONE"}
	done := "data: [DONE]\n\n"
	cases := []struct {
		name    string
		waiter  bool
		chunked bool
		want    []string
	}{
		{"per event without a hook", false, true, []string{relayHead, chunkOf("A"), chunkOf("B"), chunkOf("C"),
			chunkOf("D"), chunkOf("[DONE]") + "0\r\n\r\n"}},
		{"per upstream read", true, true, []string{relayHead + chunkOf("A", "B"), chunkOf("C"),
			chunkOf("D", "[DONE]") + "0\r\n\r\n"}},
		{"HTTP/1.0 per upstream read", true, false, []string{relayHeadBare + "data: A\n\ndata: B\n\n", "data: C\n\n",
			"data: D\n\n" + done}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &writesConn{}
			if err := relayScript(t, &scriptStream{script: script, waiter: tc.waiter}, tc.chunked, c); err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("writes\n%q\nwant\n%q", c.got, tc.want)
			}
		})
	}

	// Events that are all ready at once still go out by maxHeld.
	var many []string
	event := strings.Repeat("x", 100)
	for range 200 {
		many = append(many, event)
	}
	c := &writesConn{}
	if err := relayScript(t, &scriptStream{script: append(many, "DONE"), waiter: true}, true, c); err != nil {
		t.Fatal(err)
	}
	if len(c.got) < 200*108/(maxHeld+108) {
		t.Fatalf("%d writes for %d bytes of events held by %d", len(c.got), 200*108, maxHeld)
	}
	for _, w := range c.got {
		if len(w) > maxHeld+len(relayHead)+108+16 {
			t.Fatalf("a write of %d bytes, more than maxHeld (%d) and one event", len(w), maxHeld)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(strings.Join(c.got, "")+"")), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || bytes.Count(body, []byte("data: "+event+"\n\n")) != 200 || !bytes.HasSuffix(body, []byte(done)) {
		t.Fatalf("stream body (%v): %d events, ends %q", err, bytes.Count(body, []byte(event)), body[max(0, len(body)-40):])
	}
}

// A write that fails in the wait hook ends the relay with that error at once (the
// stream's read fails with it), not as an upstream failure.
func TestRelayHookWriteFails(t *testing.T) {
	c := &writesConn{failFrom: 1}
	st := &scriptStream{script: []string{"A", "WAIT", "B", "DONE"}, waiter: true}
	if err := relayScript(t, st, true, c); !errors.Is(err, errWriteFailed) {
		t.Fatalf("relay: %v, want %v", err, errWriteFailed)
	}
	if st.i != 2 {
		t.Fatalf("the stream was read %d steps past the failed write", st.i-2)
	}
}

// Through the server: what the upstream sends in one write reaches the client in one
// chunk, and what it sends later follows as soon as it comes, not held for more.
func TestStreamWritesWhatArrivesTogetherAtOnce(t *testing.T) {
	release := make(chan struct{})
	ev := func(s string) string {
		return `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + s + `"}}]}` + "\n\n"
	}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			_, _ = w.WriteString(ev("one") + ev("two"))
			if w.Flush() != nil {
				return
			}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
				return
			}
			_, _ = w.WriteString(ev("three") + "data: [DONE]\n\n")
			_ = w.Flush()
		})
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	if _, err := io.WriteString(conn, rawRequest(t, g, streamBody)); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	readChunk := func() string {
		t.Helper()
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(line, "\r\n"), 16, 64)
		if err != nil {
			t.Fatalf("chunk size line %q", line)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		return string(b[:n])
	}
	if first := readChunk(); strings.Count(first, "data: ") != 2 || !strings.Contains(first, `"one"`) || !strings.Contains(first, `"two"`) {
		t.Fatalf("first chunk %q, want the two events the upstream wrote together", first)
	}
	close(release)
	if second := readChunk(); strings.Count(second, "data: ") != 2 || !strings.Contains(second, `"three"`) ||
		!strings.HasSuffix(second, "data: [DONE]\n\n") {
		t.Fatalf("second chunk %q", second)
	}
	if last := readChunk(); last != "" {
		t.Fatalf("chunk %q after [DONE]", last)
	}
}

// Clients that go away in the middle of their streams are not the upstream's
// failures: the write that finds them gone may happen inside the stream's wait for
// the upstream, and must not eject the target: health.eject_after is 5 by default, so
// five such failures in a row would (a sixth stream would be its trial, and restore it).
func TestStreamClientsGoneKeepTargetInService(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 1000, MaxModelLen: 4096, TPOT: time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	body := `{"model":"chat","stream":true,"max_tokens":1000,"messages":[{"role":"user","content":"go on"}]}`
	for range 5 {
		conn, br := dialGateway(t, g)
		if _, err := io.WriteString(conn, rawRequest(t, g, body)); err != nil {
			t.Fatal(err)
		}
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream did not start: %v", err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close()
		waitFor(t, func() bool { return g.hijacked.Load() == 0 })
	}
	if n := strings.Count(g.logs.String(), `"status":499`); n != 5 {
		t.Fatalf("%d access log lines with status 499, want 5:\n%s", n, g.logs.String())
	}
	for _, b := range g.rt.Load().backendList {
		if !b.Healthy() {
			t.Fatalf("backend %s ejected after clients went away: %+v", b.Name, b.Health())
		}
	}
}
