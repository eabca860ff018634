package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const tlsStreamBody = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`

// httpsUpstreamConfig is mockConfig with its backend on https://addr, its settings
// (timeout and the rest) replaced by settings, certificates not verified.
func httpsUpstreamConfig(addr, settings string) string {
	return strings.Replace(mockConfig(addr, "", ""), `base_url: "http://`+addr+`/v1", model: up-model, timeout: 20s}`,
		`base_url: "https://`+addr+`/v1", model: up-model, `+settings+`, tls: {insecure_skip_verify: true}}`, 1)
}

// The TLS handshake is part of connecting (nginx's proxy_connect_timeout counts it
// too): an https target that accepts the TCP connection and never answers the
// handshake gets 504 upstream_timeout, as a connect that times out does, after
// connect_timeout, or the backend's timeout when that comes first, plain and
// streamed alike; never a request held without a bound.
func TestUpstreamTLSHandshakeStallTimesOut(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, settings string
		within         time.Duration
	}{
		{"connect_timeout", "timeout: 5s, connect_timeout: 300ms", 2 * time.Second},
		{"timeout before connect_timeout", "timeout: 300ms, connect_timeout: 5s", 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := deafUpstream(t)
			cfg := strings.Replace(httpsUpstreamConfig(addr, tc.settings), "shutdown_grace: 5s}", "shutdown_grace: 300ms}", 1)
			g := startGateway(t, cfg)
			for _, body := range []string{chatBody, tlsStreamBody} {
				start := time.Now()
				resp, b := postChat(t, g, body)
				if took := time.Since(start); took > tc.within || resp.StatusCode != 504 || !strings.Contains(b, `"code":"upstream_timeout"`) {
					t.Errorf("https target that never answers the handshake, %s: %d after %v: %s; want 504 upstream_timeout within %v",
						tc.settings, resp.StatusCode, took.Round(time.Millisecond), b, tc.within)
				}
			}
		})
	}
}

// first_byte_timeout bounds an https target's answer as a plain one's: an upstream
// that completes the handshake, takes the request and stays silent gets 504 after
// about first_byte_timeout, plain and streamed, not after the backend's timeout.
func TestUpstreamFirstByteTimeoutHTTPS(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		select {
		case <-release:
		case <-time.After(6 * time.Second):
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	g := startGateway(t, httpsUpstreamConfig(strings.TrimPrefix(srv.URL, "https://"), "timeout: 6s, first_byte_timeout: 400ms"))
	for _, body := range []string{chatBody, tlsStreamBody} {
		start := time.Now()
		resp, b := postChat(t, g, body)
		if took := time.Since(start); took > 2*time.Second || resp.StatusCode != 504 {
			t.Errorf("https upstream silent after the request, first_byte_timeout 400ms: %d after %v: %s", resp.StatusCode, took.Round(time.Millisecond), b)
		}
	}
}
