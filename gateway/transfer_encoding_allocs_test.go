//go:build !race

package gateway

import "testing"

// TestUnframedAllocs: the framing check costs no allocation, whether it reads the raw
// header block (a body of no length) or not (an API call's Content-Length).
func TestUnframedAllocs(t *testing.T) {
	for _, raw := range []string{
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
		"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-1\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
	} {
		h := parsedHeader(t, raw)
		if n := allocsPerRun(100, func() { unframed(h) }); n != 0 {
			t.Fatalf("%.1f allocations per check of %q, want 0", n, raw)
		}
	}
}
