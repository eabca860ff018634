package gateway

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestStreamHangUpMarksServerSpan: README (Tracing): "what a client causes (a bad key,
// hanging up on a stream) is marked with error.type but sampled like any request". A
// client that hangs up on a running stream gets a server span with status 499 and
// error.type client_gone, not an error, as one that hangs up while its request waits
// in a backend's queue does (checkClientGoneSpans): a query of the root spans by
// error.type finds every hang-up.
func TestStreamHangUpMarksServerSpan(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 60, Seed: 1, TPOT: 20 * time.Millisecond})
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	conn, br := dialGateway(t, g)
	body := `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	if _, err := io.WriteString(conn, rawRequest(t, g, body, "X-Request-Id: stream-gone")); err != nil {
		t.Fatal(err)
	}
	// Hang up once the first generated text has come.
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream read: %v", err)
		}
		if strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
			break
		}
	}
	conn.Close()
	checkClientGoneSpans(t, g, exp, "stream-gone", true)
}
