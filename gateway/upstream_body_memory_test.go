package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// An upstream that announces a non-streamed answer under the 64 MiB bound and then
// sends nothing (a stalled proxy, a server that died after its header) costs the
// gateway what it sent, not what it announced, until the backend's timeout: 8 answers
// that announced 48 MiB each, by Content-Length or as one chunk, and sent 1 byte must
// not grow the gateway's heap by 8 × 48 MiB.
func TestUpstreamAnnouncedBodyNotAllocated(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"content-length", "Content-Length: " + strconv.Itoa(48<<20) + "\r\n\r\n{"},
		{"chunk", "Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(48<<20, 16) + "\r\n{"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			addr, count := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+tc.head)
				<-release
				// The answers end cut short, so that the gateway's stop does not wait
				// its shutdown_grace for them.
				c.Close()
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			t.Cleanup(func() { close(release) }) // before the gateway stops
			before := liveHeap()
			const n = 8
			for range n {
				go func() {
					c := &http.Client{Timeout: 15 * time.Second}
					resp, err := c.Post(g.url+"/v1/chat/completions", "application/json",
						strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			waitFor(t, func() bool { return count.Load() == n })
			var grown uint64
			for range 10 {
				time.Sleep(100 * time.Millisecond)
				if h := liveHeap(); h > before {
					grown = max(grown, h-before)
				}
			}
			if grown > 64<<20 {
				t.Fatalf("%d answers that announced 48 MiB and sent 1 byte each grew the gateway's heap by %d MiB", n, grown>>20)
			}
		})
	}
}
