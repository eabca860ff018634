package providers

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// twoPartUpstream answers every streamed chat request with its header and two events
// in one write, then, once it receives from more, a third event, [DONE] and the
// body's end in a second write. Requests share connections as a client's keep-alive
// has it.
func twoPartUpstream(t *testing.T, more <-chan struct{}) (url string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	quit := make(chan struct{})
	t.Cleanup(func() {
		close(quit)
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	chunk := func(ev string) string { return strconv.FormatInt(int64(len(ev)), 16) + "\r\n" + ev + "\r\n" }
	content := func(s string) string {
		return `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + s + `"}}]}` + "\n\n"
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_ = req.Body.Close()
					first := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
						chunk(content("one")) + chunk(content("two"))
					if _, err := c.Write([]byte(first)); err != nil {
						return
					}
					select {
					case <-more:
					case <-quit:
						return
					}
					if _, err := c.Write([]byte(chunk(content("three")) + chunk("data: [DONE]\n\n") + "0\r\n\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/v1", func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}

// A stream calls its wait hook only when everything received has been read and the
// next read goes to the socket, and no more once it is closed; an error from the hook
// fails the read.
func TestStreamNotifiesWait(t *testing.T) {
	for _, idle := range []time.Duration{0, 5 * time.Second} {
		t.Run("stream_idle_timeout="+idle.String(), func(t *testing.T) {
			more := make(chan struct{}, 1)
			url, accepted := twoPartUpstream(t, more)
			b := newTestBackend(t, Config{Provider: "openai", BaseURL: url, Model: "m", StreamIdleTimeout: idle})
			body := `{"model":"chat","messages":[],"stream":true}`

			var out fasthttp.Response
			var res Result
			if err := b.Send(chatCall(body, true), &out, &res); err != nil {
				t.Fatal(err)
			}
			waits := 0
			w, ok := res.Stream.(Waiter)
			if !ok || !w.NotifyWait(func() error {
				waits++
				more <- struct{}{}
				return nil
			}) {
				t.Fatal("a stream over an upstream connection cannot tell when it waits")
			}
			var got []string
			var ev Event
			for !ev.Done {
				if err := res.Stream.Next(&ev); err != nil {
					t.Fatal(err)
				}
				got = append(got, string(ev.Data))
				if len(got) == 2 && waits != 0 {
					t.Fatalf("the hook ran %d times while the first write's events were buffered", waits)
				}
			}
			if len(got) != 4 || waits != 1 {
				t.Fatalf("%d events (%q), hook ran %d times; want 4 events, one wait", len(got), got, waits)
			}
			if err := res.Stream.Close(); err != nil {
				t.Fatal(err)
			}

			// The next stream takes the same connection, without the hook.
			more <- struct{}{}
			res = Result{}
			if err := b.Send(chatCall(body, true), &out, &res); err != nil {
				t.Fatal(err)
			}
			if err := drainStream(res.Stream); err != nil {
				t.Fatal(err)
			}
			_ = res.Stream.Close()
			if n := accepted(); n != 1 {
				t.Fatalf("%d upstream connections for two streams read to their end, want 1", n)
			}
			if waits != 1 {
				t.Fatalf("the hook of a closed stream ran again (%d times)", waits)
			}

			// A hook that fails fails the read it comes before.
			res = Result{}
			if err := b.Send(chatCall(body, true), &out, &res); err != nil {
				t.Fatal(err)
			}
			errGone := errors.New("client gone")
			res.Stream.(Waiter).NotifyWait(func() error { return errGone })
			for range 2 {
				if err := res.Stream.Next(&ev); err != nil {
					t.Fatalf("buffered event: %v", err)
				}
			}
			// It is the hook's error, not the upstream's: no stream cut, no failure.
			if err := res.Stream.Next(&ev); err != errGone || verdictOf(err) == failure {
				t.Fatalf("Next after a failed hook: %v, want %v", err, errGone)
			}
			_ = res.Stream.Close()
		})
	}
}

// A stream over a connection the provider did not dial says it cannot tell.
func TestStreamWithoutUpstreamConnCannotTell(t *testing.T) {
	more := make(chan struct{}, 1)
	more <- struct{}{}
	url, _ := twoPartUpstream(t, more)
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: url, Model: "m"})
	b.targets[0].client.Dial = func(addr string) (net.Conn, error) { return net.Dial("tcp4", addr) }
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(`{"model":"chat","messages":[],"stream":true}`, true), &out, &res); err != nil {
		t.Fatal(err)
	}
	defer res.Stream.Close()
	if res.Stream.(Waiter).NotifyWait(func() error { t.Error("hook called"); return nil }) {
		t.Fatal("NotifyWait reported true on a plain connection")
	}
	if err := drainStream(res.Stream); err != nil {
		t.Fatal(err)
	}
}

// stream_idle_timeout bounds the upstream's silence, not the reader's: a reader that
// spends longer than the bound elsewhere between two reads, writing to a slow client
// in its wait hook or between calls to Next, still gets what the upstream sent
// meanwhile, and the stream does not end as the upstream's idle timeout.
func TestStreamIdleTimeoutIsTheUpstreamsSilence(t *testing.T) {
	const idle = 100 * time.Millisecond
	for _, where := range []string{"in the wait hook", "between reads"} {
		t.Run(where, func(t *testing.T) {
			more := make(chan struct{}, 1)
			url, _ := twoPartUpstream(t, more)
			b := newTestBackend(t, Config{Provider: "openai", BaseURL: url, Model: "m", StreamIdleTimeout: idle})
			var out fasthttp.Response
			var res Result
			if err := b.Send(chatCall(`{"model":"chat","messages":[],"stream":true}`, true), &out, &res); err != nil {
				t.Fatal(err)
			}
			defer res.Stream.Close()
			slow := func() {
				more <- struct{}{}
				time.Sleep(3 * idle)
			}
			if where == "in the wait hook" {
				waited := false
				res.Stream.(Waiter).NotifyWait(func() error {
					if !waited {
						waited = true
						slow()
					}
					return nil
				})
			}
			var ev Event
			for i := 0; !ev.Done; i++ {
				if i == 2 && where == "between reads" {
					slow()
				}
				if err := res.Stream.Next(&ev); err != nil {
					t.Fatalf("event %d: %v", i+1, err)
				}
			}
		})
	}
}
