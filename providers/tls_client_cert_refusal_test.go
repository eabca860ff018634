package providers

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// startClientCertTarget is an https target, up to TLS version max, that requires a
// client certificate; it counts its connections in dials.
func startClientCertTarget(t *testing.T, max uint16, dials *atomic.Int64) string {
	t.Helper()
	cfg := tlsServerConfig(t, max)
	cfg.ClientAuth = tls.RequireAnyClientCert
	addr := serveRaw(t, dials, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		defer tc.Close()
		if _, err := http.ReadRequest(bufio.NewReader(tc)); err == nil {
			_, _ = io.WriteString(tc, whole200("application/json", string(staticAnswer)))
		}
	})
	return "https://" + addr + "/v1"
}

// A target that requires a client certificate and is shown none refuses with an
// alert: under TLS 1.2 within the handshake the dial makes, under TLS 1.3 once the
// gateway's side of the handshake is over (RFC 8446 section 4.4.2.4), as the answer
// to the first request. Either way the attempt fails as unreachable, naming the
// alert as the handshake's, not fasthttp's hint about a Connection: close header nor
// the broken pipe that a long request's write meets once the target closed the
// connection on it, plain or streamed; and the refused connection, which never
// served, is not taken for a kept-alive one the upstream closed meanwhile: the
// request is not sent again.
func TestTLSClientCertRefusal(t *testing.T) {
	for _, v := range tlsVersions {
		for _, prompt := range []string{"x", strings.Repeat("x", 4<<20)} {
			for _, stream := range []bool{false, true} {
				t.Run(v.name+"/prompt="+strconv.Itoa(len(prompt))+"/stream="+strconv.FormatBool(stream), func(t *testing.T) {
					refusedOnce(t, v.max, promptCall(prompt, stream))
				})
			}
		}
	}
}

// refusedOnce sends call to a target up to TLS version max that requires a client
// certificate, with none, and checks the refusal.
func refusedOnce(t *testing.T, max uint16, call *Call) {
	var dials atomic.Int64
	b := newPoolBackend(t, Config{BaseURL: startClientCertTarget(t, max, &dials), TLS: TLSConfig{InsecureSkipVerify: true}}, nil)
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	err := b.Send(call, out, &res)
	if !errors.Is(err, ErrConnect) || errors.Is(err, ErrTimeout) || res.Stream != nil {
		t.Fatalf("err = %v, want ErrConnect", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "tls handshake: remote error: tls: ") || strings.Contains(msg, "connection: close") {
		t.Errorf("error %q, want the target's alert, named as the handshake's", msg)
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d connections for one request, want 1: the refusal was retried", d)
	}
}

// refusal gives the TLS alert that failed an answer's first byte in place of
// fasthttp's end of file: on a TLS 1.3 connection that had served nothing, as the
// handshake's; otherwise as it is. Other errors, and an end of file with no alert
// behind it, stay as they are.
func TestTLSRefusalError(t *testing.T) {
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}
	reset := &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}
	cases := []struct {
		name    string
		max     uint16
		readErr error
		err     error
		fresh   bool
		want    string
	}{
		{"TLS 1.3, fresh", tls.VersionTLS13, alert, io.EOF, true, "tls handshake: remote error: tls: certificate required"},
		{"TLS 1.3, served before", tls.VersionTLS13, alert, io.EOF, false, "remote error: tls: certificate required"},
		{"TLS 1.2, fresh", tls.VersionTLS12, alert, io.EOF, true, "remote error: tls: certificate required"},
		{"not an end of file", tls.VersionTLS13, alert, fasthttp.ErrTimeout, true, fasthttp.ErrTimeout.Error()},
		{"no alert", tls.VersionTLS13, reset, io.EOF, true, io.EOF.Error()},
		{"no read error", tls.VersionTLS13, nil, io.EOF, true, io.EOF.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, _, _ := tlsLoopbackPair(t, tc.max)
			u.readErr = tc.readErr
			if got := u.refusal(tc.err, tc.fresh); got.Error() != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
