package gateway

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// startMutualTLSMock serves a mockllm over TLS up to version max, requiring a client
// certificate p's CA signed.
func startMutualTLSMock(t *testing.T, p *testPKI, max uint16) string {
	t.Helper()
	srv, err := mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, MaxVersion: max,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// An upstream with mutual TLS that refuses the gateway's client certificate (none
// configured, one from another CA, one expired after a failed renewal: the case
// README's tls.cert_file is for) answers 502 upstream_unreachable, and the log's
// "upstream failed" line names its TLS alert, all an operator has to act on. A TLS
// 1.2 upstream refuses within the handshake. Under TLS 1.3 (Go's default, OpenSSL's,
// nginx's) the server checks the certificate after the client's handshake is over
// and sends its alert ("certificate required", "bad certificate") as the answer to
// the request, which fasthttp alone would report as the server closing the connection
// before the first response byte, with a hint about 'connection: close' that points
// the operator at the upstream's HTTP framing rather than at the certificate.
func TestUpstreamTLSClientCertRefusalNamedInLog(t *testing.T) {
	p, other := newTestPKI(t), newTestPKI(t)
	v12 := startMutualTLSMock(t, p, tls.VersionTLS12)
	v13 := startMutualTLSMock(t, p, tls.VersionTLS13)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  tls12-no-cert: {provider: openai, base_url: "https://`+v12+`/v1", model: up-model, tls: {ca_file: "`+p.caFile+`"}}
  tls13-no-cert: {provider: openai, base_url: "https://`+v13+`/v1", model: up-model, tls: {ca_file: "`+p.caFile+`"}}
  tls13-other-ca: {provider: openai, base_url: "https://`+v13+`/v1", model: up-model,
                   tls: {ca_file: "`+p.caFile+`", cert_file: "`+other.clientCert+`", key_file: "`+other.clientKey+`"}}
endpoints:
  - {name: tls12-no-cert, type: chat, routes: [{backend: tls12-no-cert}]}
  - {name: tls13-no-cert, type: chat, routes: [{backend: tls13-no-cert}]}
  - {name: tls13-other-ca, type: chat, routes: [{backend: tls13-other-ca}]}
`)
	for _, name := range []string{"tls12-no-cert", "tls13-no-cert", "tls13-other-ca"} {
		t.Run(name, func(t *testing.T) {
			resp, b := postChat(t, g, strings.Replace(chatBody, `"model":"chat"`, `"model":"`+name+`"`, 1))
			if resp.StatusCode != 502 || !strings.Contains(b, "upstream_unreachable") {
				t.Fatalf("got %d %s, want 502 upstream_unreachable", resp.StatusCode, b)
			}
			var line string
			waitFor(t, func() bool {
				for _, l := range strings.Split(g.logs.String(), "\n") {
					if strings.Contains(l, `"msg":"upstream failed"`) && strings.Contains(l, `"backend":"`+name+`"`) {
						line = l
						return true
					}
				}
				return false
			})
			if !strings.Contains(line, "remote error: tls: ") || strings.Contains(line, "connection: close") {
				t.Errorf("log line %s\nwant the upstream's TLS alert (remote error: tls: ...), as a TLS 1.2 upstream's refusal is logged, not fasthttp's hint about connection: close", line)
			}
		})
	}
}
