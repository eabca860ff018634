package main

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// A stream whose connection drops mid-way through a chunk, after content
// events and before [DONE], is a cut stream (README: "stream cut (events but no
// [DONE])"), as it is when the drop falls on a chunk boundary.
func TestRunLoadStreamCutMidChunkIsStreamCut(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	ev := "data: " + streamChunks[2] + "\n\n"
	// The third chunk announces its whole size, but only half of it arrives.
	body := chunk("data: "+streamChunks[1]+"\n\n") + chunk(ev) +
		"64\r\n" + ev[:len(ev)/2]
	var reqs atomic.Int64
	addr := rawStreamServer(t, head, body, &reqs)
	spec := shortSpec(kindStream)
	spec.Rate = 100
	tg := &target{Name: "raw", Addr: addr, Model: "m", client: newClient(addr, spec.Conns, spec.Timeout, true, 0)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.Measured == 0 {
		t.Fatal("nothing measured")
	}
	if st.Errs["stream cut"] != st.Measured {
		t.Fatalf("errors %v of %d measured; want every one a stream cut", st.Errs, st.Measured)
	}
}

// A 200 completion whose body is cut short by the connection closing is a
// "bad body" (README: "a 200 that is not one JSON object ... or a body cut
// short"), whether it is framed by Content-Length or chunked.
func TestRunLoadChatBodyCutShortIsBadBody(t *testing.T) {
	full := `{"choices":[{"index":0,"message":{"role":"assistant","content":"alpha beta gamma"}}]}`
	for name, resp := range map[string]string{
		"content-length": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(full)) + "\r\n\r\n" + full[:40],
		"chunked": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			chunk(full[:40]),
	} {
		t.Run(name, func(t *testing.T) {
			var reqs atomic.Int64
			addr := rawStreamServer(t, resp, "", &reqs)
			spec := shortSpec(kindChat)
			spec.Rate = 100
			tg := &target{Name: "raw", Addr: addr, Model: "m", client: newClient(addr, spec.Conns, spec.Timeout, false, 0)}
			st := runLoad(context.Background(), tg, &spec, quietProgress())
			if st.Measured == 0 {
				t.Fatal("nothing measured")
			}
			if st.Errs["bad body"] != st.Measured {
				t.Fatalf("errors %v of %d measured; want every one a bad body", st.Errs, st.Measured)
			}
		})
	}
}
