package providers

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// framedUpstream streams chat chunks on real TCP connections, its answer's body framed
// as framing says: "chunked", "length" (Content-Length) or "close" (up to the
// connection's close, HTTP/1.0 style). The request's prompt says what it does:
// "hold" holds the answer's header until the connection closes, "late" sends it
// after 600 ms, "stall" sends the header and one event and then nothing more,
// "linger" sends every event, [DONE] included, and never ends the body; anything else
// is answered at once. It counts the connections it accepted.
type framedUpstream struct {
	addr    string
	framing string
	dials   atomic.Int64
	got     atomic.Int64
	// reused counts requests that came on a connection whose last answer had not
	// ended: the gateway pooled a connection it had not read to its end.
	reused atomic.Int64
	// abandoned receives the prompt of each request whose connection closed before
	// its answer ended.
	abandoned chan string
}

func startFramedUpstream(t *testing.T, framing string) *framedUpstream {
	t.Helper()
	u := &framedUpstream{framing: framing, abandoned: make(chan string, 16)}
	u.addr = serveRaw(t, &u.dials, u.serve)
	return u
}

func (u *framedUpstream) url() string { return "http://" + u.addr + "/v1" }

const framedEvents = 3

func (u *framedUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		body := string(b)
		u.got.Add(1)
		prompt := "answer"
		for _, p := range []string{"hold", "late", "stall", "linger"} {
			if strings.Contains(body, `"content":"`+p) {
				prompt = p
			}
		}
		// While it works, the only thing it can hear is the connection closing (or
		// the next request, which comes only once this answer has ended).
		closed := make(chan struct{})
		var peekErr error
		go func() {
			_, peekErr = br.Peek(1)
			close(closed)
		}()
		abandon := func() {
			if <-closed; peekErr == nil {
				u.reused.Add(1)
			}
			u.abandoned <- prompt
		}
		var due <-chan time.Time
		switch prompt {
		case "hold":
		case "late":
			due = time.After(600 * time.Millisecond)
		default:
			due = time.After(0)
		}
		select {
		case <-closed:
			abandon()
			return
		case <-due:
		}
		var events []string
		for i := range framedEvents {
			events = append(events, `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"t`+strconv.Itoa(i)+`"}}]}`+"\n\n")
		}
		events = append(events, "data: [DONE]\n\n")
		if prompt == "stall" {
			events = events[:1]
		}
		whole := prompt != "stall" && prompt != "linger"
		header := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
		switch u.framing {
		case "chunked":
			header += "Transfer-Encoding: chunked\r\n"
		case "length":
			n := len(strings.Join(events, ""))
			if !whole {
				n += 16 // a body that never ends
			}
			header += "Content-Length: " + strconv.Itoa(n) + "\r\n"
		}
		if _, err := io.WriteString(c, header+"\r\n"); err != nil {
			return
		}
		for _, ev := range events {
			if u.framing == "chunked" {
				ev = chunked(ev)
			}
			if _, err := io.WriteString(c, ev); err != nil {
				return
			}
		}
		if !whole {
			abandon()
			return
		}
		switch u.framing {
		case "chunked":
			if _, err := io.WriteString(c, "0\r\n\r\n"); err != nil {
				return
			}
		case "close":
			return
		}
		<-closed
		if _, err := br.Peek(1); err != nil {
			return
		}
	}
}

// watchedStream is a stream call whose client is watched.
func watchedStream(prompt string, client *testClient) *Call {
	call := promptCall(prompt, true)
	call.Client = client
	return call
}

// readWhole reads s to its end and closes it; it returns how many chunks with
// content came.
func readWhole(t *testing.T, s Events) int {
	t.Helper()
	n := 0
	var ev Event
	for {
		err := s.Next(&ev)
		if err != nil {
			_ = s.Close()
			t.Fatalf("after %d chunks: %v", n, err)
		}
		if ev.Done {
			break
		}
		if ev.Content {
			n++
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return n
}

// openWatched sends call on b and returns its stream.
func openWatched(t *testing.T, b *Backend, call *Call) Events {
	t.Helper()
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	if err := b.Send(call, out, &res); err != nil {
		t.Fatal(err)
	}
	if res.Stream == nil {
		t.Fatal("no stream")
	}
	if r, ok := res.Stream.(*leasedStream).Events.(*sseReader); !ok {
		t.Fatalf("stream %T", res.Stream.(*leasedStream).Events)
	} else if _, ok := r.up.BodyStream().(*upstreamBody); !ok {
		t.Fatalf("body %T, want the upstreamBody connRoundTrip makes", r.up.BodyStream())
	}
	return res.Stream
}

// A stream whose upstream holds its answer's header (Ollama loading a model, a proxy
// in front of vLLM that buffers headers until the first token) is watched while the
// header is awaited, as a non-streamed call's answer is: a client that hangs up ends
// the attempt with ErrClientLeftUpstream at the next silent tick, closing the upstream
// connection, and nothing is said of the upstream; a client that stays gets the
// stream, whose watch has ended when it is handed on; a header that comes at once
// never starts a watch.
func TestStreamHeaderWaitIsWatched(t *testing.T) {
	t.Run("client hangs up while the header is held", func(t *testing.T) {
		u := startFramedUpstream(t, "chunked")
		b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1,
			Queue: QueueConfig{Size: 4, Timeout: time.Minute}, Timeout: time.Minute}, nil)
		// A connection that has served: a failure before its next answer's first
		// byte is one fasthttp may send again, which a hang-up must not be.
		if got := readWhole(t, openWatched(t, b, watchedStream("first", newTestClient()))); got != framedEvents {
			t.Fatalf("first stream: %d chunks", got)
		}
		client := newTestClient()
		done := sendAsync(b, watchedStream("hold", client))
		waitUntil(t, "the upstream has the request", func() bool { return u.got.Load() == 2 })
		waitUntil(t, "the client is watched", func() bool { return client.watching.Load() == 1 })
		began := time.Now()
		client.hangUp()
		var r sent
		select {
		case r = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the stream still waits for its header after its client hung up")
		}
		took := time.Since(began)
		t.Logf("ended %v after the hang-up (checks every %v)", took, clientCheckEvery)
		if took > 2*time.Second {
			t.Errorf("ended %v after the hang-up, want within a check or so", took)
		}
		if !errors.Is(r.err, ErrClientLeftUpstream) || !errors.Is(r.err, ErrClientGone) {
			t.Fatalf("got %v, want ErrClientLeftUpstream", r.err)
		}
		select {
		case p := <-u.abandoned:
			if p != "hold" {
				t.Errorf("the upstream saw %q abandoned", p)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream connection stayed open under the abandoned stream")
		}
		if judged, failed := Judge(r.err); judged || failed {
			t.Errorf("Judge = %v, %v; want nothing said of the upstream", judged, failed)
		}
		if n := client.watching.Load(); n != 0 {
			t.Errorf("%d watches still running", n)
		}
		// The slot (max_concurrency 1) is free and the target in service; the
		// abandoned request was not sent again.
		if got := readWhole(t, openWatched(t, b, watchedStream("next", newTestClient()))); got != framedEvents {
			t.Fatalf("next stream: %d chunks", got)
		}
		if n := u.got.Load(); n != 3 {
			t.Errorf("the upstream got %d requests, want 3: the abandoned one was sent again", n)
		}
		if n := b.Targets()[0].InFlight(); n != 0 {
			t.Errorf("%d in flight after the streams", n)
		}
	})
	t.Run("client stays for a late header", func(t *testing.T) {
		u := startFramedUpstream(t, "chunked")
		b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
		client := newTestClient()
		s := openWatched(t, b, watchedStream("late", client))
		// The call's watch ended before the stream was handed on: from here the
		// gateway's own stream watch has the client.
		if n := client.watching.Load(); n != 0 {
			t.Errorf("%d watches running when the stream was handed on", n)
		}
		if n := client.watches.Load(); n != 1 {
			t.Errorf("watch started %d times for a header 600 ms late, want once", n)
		}
		if got := readWhole(t, s); got != framedEvents {
			t.Errorf("%d chunks, want %d", got, framedEvents)
		}
		// The connection went back to the pool without the call: an unwatched
		// stream on it is not asked about that client.
		if got := readWhole(t, openWatched(t, b, promptCall("late", true))); got != framedEvents {
			t.Errorf("%d chunks, want %d", got, framedEvents)
		}
		if n := client.watches.Load(); n != 1 {
			t.Errorf("the first call's client was watched %d times, want once", n)
		}
		if n := u.dials.Load(); n != 1 {
			t.Errorf("%d connections for two streams, want 1", n)
		}
	})
	t.Run("header at once", func(t *testing.T) {
		setForTest(t, &clientCheckEvery, time.Minute)
		u := startFramedUpstream(t, "chunked")
		b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
		client := newTestClient()
		for i := range 3 {
			if got := readWhole(t, openWatched(t, b, watchedStream("quick", client))); got != framedEvents {
				t.Fatalf("stream %d: %d chunks", i, got)
			}
		}
		if n := client.watches.Load(); n != 0 {
			t.Errorf("watch started %d times for headers quicker than the check", n)
		}
	})
}

// checkConns checks that b's one target holds open connections to u, and that u
// got no request on a connection whose answer had not ended.
func checkConns(t *testing.T, b *Backend, u *framedUpstream, open int) {
	t.Helper()
	if n := b.Targets()[0].client.ConnsCount(); n != open {
		t.Errorf("%d connections open, want %d", n, open)
	}
	if n := u.reused.Load(); n != 0 {
		t.Errorf("%d requests sent on a connection whose answer had not ended", n)
	}
}

// A watched stream's body is read through its own body stream (upstreamBody), which
// must frame it as fasthttp does (chunked, Content-Length, up to the connection's
// close) and give the connection back as fasthttp does: to the pool when the body was
// read to its end on a kept-alive connection, closed when it was not (an Abort, a
// drain that timed out after the last event) or when the body ends with the
// connection.
func TestWatchedStreamBodyFraming(t *testing.T) {
	for _, framing := range []string{"chunked", "length", "close"} {
		t.Run(framing, func(t *testing.T) {
			keepAlive := framing != "close"
			t.Run("read to its end", func(t *testing.T) {
				u := startFramedUpstream(t, framing)
				b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
				for i := range 3 {
					if got := readWhole(t, openWatched(t, b, watchedStream("whole", newTestClient()))); got != framedEvents {
						t.Fatalf("stream %d: %d chunks, want %d", i, got, framedEvents)
					}
				}
				dials, open := int64(3), 0
				if keepAlive {
					dials, open = 1, 1
				}
				checkConns(t, b, u, open)
				if n := u.dials.Load(); n != dials {
					t.Errorf("%d connections for three streams, want %d", n, dials)
				}
				if n := b.Targets()[0].InFlight(); n != 0 {
					t.Errorf("%d in flight after the streams", n)
				}
			})
			t.Run("aborted mid-body", func(t *testing.T) {
				u := startFramedUpstream(t, framing)
				b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute,
					Health: HealthConfig{EjectAfter: 1, EjectFor: time.Hour}}, nil)
				s := openWatched(t, b, watchedStream("stall", newTestClient()))
				var ev Event
				if err := s.Next(&ev); err != nil || !ev.Content {
					t.Fatalf("first chunk: %v (%+v)", err, ev)
				}
				reading := make(chan struct{}, 1)
				s.(Waiter).NotifyWait(func() error {
					select {
					case reading <- struct{}{}:
					default:
					}
					return nil
				})
				done := make(chan error, 1)
				go func() { done <- s.Next(&ev) }()
				<-reading // Next is at the socket, waiting for the stalled upstream
				s.(Aborter).Abort()
				select {
				case err := <-done:
					if !errors.Is(err, ErrAborted) {
						t.Fatalf("Next after Abort: %v, want ErrAborted", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Next still waiting after Abort")
				}
				_ = s.Close()
				checkConns(t, b, u, 0)
				select {
				case <-u.abandoned:
				case <-time.After(5 * time.Second):
					t.Fatal("the upstream connection stayed open under the aborted stream")
				}
				if got := readWhole(t, openWatched(t, b, watchedStream("whole", newTestClient()))); got != framedEvents {
					t.Fatalf("next stream: %d chunks", got)
				}
				if n := u.dials.Load(); n != 2 {
					t.Errorf("%d connections, want 2: the aborted stream's was pooled", n)
				}
				if st := b.pool.states[0]; !st.available() || st.fails.Load() != 0 {
					t.Errorf("target available %v with %d failures after an abort", st.available(), st.fails.Load())
				}
			})
			t.Run("closed before its end", func(t *testing.T) {
				u := startFramedUpstream(t, framing)
				b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
				s := openWatched(t, b, watchedStream("stall", newTestClient()))
				var ev Event
				if err := s.Next(&ev); err != nil || !ev.Content {
					t.Fatalf("first chunk: %v (%+v)", err, ev)
				}
				_ = s.Close() // no read in flight, the body not read to its end
				checkConns(t, b, u, 0)
				select {
				case <-u.abandoned:
				case <-time.After(5 * time.Second):
					t.Fatal("the upstream connection stayed open under the stream closed early")
				}
				if got := readWhole(t, openWatched(t, b, watchedStream("whole", newTestClient()))); got != framedEvents {
					t.Fatalf("next stream: %d chunks", got)
				}
				if n := u.dials.Load(); n != 2 {
					t.Errorf("%d connections, want 2: the stream's unread connection was pooled", n)
				}
			})
			t.Run("body held open after the last event", func(t *testing.T) {
				u := startFramedUpstream(t, framing)
				b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
				// Every event and [DONE] come, then the body never ends: Close's
				// drain gives up after drainWait and drops the connection.
				if got := readWhole(t, openWatched(t, b, watchedStream("linger", newTestClient()))); got != framedEvents {
					t.Fatalf("%d chunks, want %d", got, framedEvents)
				}
				checkConns(t, b, u, 0)
				select {
				case <-u.abandoned:
				case <-time.After(5 * time.Second):
					t.Fatal("the upstream connection stayed open after the drain timed out")
				}
				if got := readWhole(t, openWatched(t, b, watchedStream("whole", newTestClient()))); got != framedEvents {
					t.Fatalf("next stream: %d chunks", got)
				}
				if n := u.dials.Load(); n != 2 {
					t.Errorf("%d connections, want 2: the held stream's was pooled", n)
				}
			})
		})
	}
}
