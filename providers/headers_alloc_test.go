//go:build !race

package providers

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// copyForwardHeaders allocates nothing, whether the client's Connection header names
// other headers or not (the usual keep-alive), and whatever header it sends on
// several lines.
func TestCopyForwardHeadersAllocs(t *testing.T) {
	for name, connection := range map[string]string{
		"keep-alive": "Connection: keep-alive\r\n",
		"named":      "Connection: keep-alive, X-Hop-Secret\r\n",
		"repeated":   "Connection: keep-alive\r\nBaggage: userId=alice\r\nBaggage: tenant=acme\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			client := parseHeader(t, connection+"X-Hop-Secret: s\r\nX-Stainless-Lang: go\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n")
			var up fasthttp.RequestHeader
			call := &Call{Header: client}
			run := func() {
				up.Reset()
				copyForwardHeaders(&up, call)
			}
			run()
			if n := testing.AllocsPerRun(1000, run); n != 0 {
				t.Errorf("%v allocations per copy, want 0", n)
			}
		})
	}
}
