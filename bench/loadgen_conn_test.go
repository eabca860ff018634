package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// rawStreamServer answers every request with head and body as they are, then
// closes the connection: a chunked body without its terminator is a stream cut
// mid-way. reqs counts the requests that reached it.
func rawStreamServer(t *testing.T, head, body string, reqs *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				reqs.Add(1)
				_, _ = io.WriteString(c, head+body)
			}(c)
		}
	}()
	return ln.Addr().String()
}

func chunk(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }

// A connection that drops after two content events, mid chunked body (nginx
// does so when its upstream dies mid-stream with proxy_buffering off), counts
// its request once, as a cut stream, and is not handed to the next request:
// that one would fail as "conn closed" without reaching the path.
func TestRunLoadCutStreamClosesItsConnection(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	body := chunk("data: "+streamChunks[1]+"\n\n") + chunk("data: "+streamChunks[2]+"\n\n")
	var reqs atomic.Int64
	addr := rawStreamServer(t, head, body, &reqs)
	spec := shortSpec(kindStream)
	spec.Rate = 100
	spec.Conns = 1 // every request follows a cut stream on the one connection
	tg := &target{Name: "raw", Addr: addr, Model: "m", client: newClient(addr, spec.Conns, spec.Timeout, true, 0)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.Measured == 0 {
		t.Fatal("nothing measured")
	}
	if got := reqs.Load(); got != st.Sent || st.Errs["stream cut"] != st.Measured || st.WarmupErrs["stream cut"]+st.Measured != st.Sent {
		t.Fatalf("%d sent, %d reached the server; errors %v of %d measured, in warm-up %v; want every one a stream cut that reached the server",
			st.Sent, got, st.Errs, st.Measured, st.WarmupErrs)
	}
}
