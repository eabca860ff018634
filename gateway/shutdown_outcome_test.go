package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/tollgate/tollgate/tracing"
)

// A stream cut when shutdown_grace runs out counts its attempt with outcome shutdown in
// tollgate_upstream_attempts_total and on the attempt span, not as canceled (a client
// hang-up): the metric, the span's error type and the access log agree.
func TestShutdownCutAttemptOutcome(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4000, TPOT: 20 * time.Millisecond})
	exp := &keepSpans{}
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 300ms}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 20s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
`, Options{SpanExporter: exp})
	got := cutAtShutdown(t, g, 150*time.Millisecond,
		`{"model":"chat","stream":true,"max_tokens":4000,"messages":[{"role":"user","content":"hi"}]}`)[0]
	if !strings.Contains(string(got), `"content"`) {
		t.Fatalf("no tokens before the cut: %s", got)
	}
	mfs, err := g.Server.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	shutdownErrs := 0.0
	outcomes := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			lab := map[string]string{}
			for _, l := range m.GetLabel() {
				lab[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "tollgate_stream_errors_total":
				if lab["code"] == "gateway_shutdown" {
					shutdownErrs += m.GetCounter().GetValue()
				}
			case "tollgate_upstream_attempts_total":
				outcomes[lab["outcome"]] += m.GetCounter().GetValue()
			}
		}
	}
	if shutdownErrs != 1 {
		t.Fatalf("contrast: tollgate_stream_errors_total{code=gateway_shutdown} = %v, want 1", shutdownErrs)
	}
	if outcomes["shutdown"] != 1 {
		t.Errorf("tollgate_upstream_attempts_total of a stream cut at shutdown: %v, want outcome shutdown 1", outcomes)
	}
	if outcomes["canceled"] != 0 {
		t.Errorf("tollgate_upstream_attempts_total of a stream cut at shutdown: %v; outcome canceled is README's "+
			"for a stream the client hung up on, and a shutdown cut is not a client hang-up", outcomes)
	}
	for _, s := range exp.all() {
		if s.Name() != "chat up-model" {
			continue
		}
		for _, a := range s.Attributes() {
			if a.Key == tracing.KeyOutcome && a.Value.AsString() == "canceled" {
				t.Errorf("attempt span of a stream cut at shutdown has %s=canceled (a client hang-up's), with error.type shutdown_cut", a.Key)
			}
		}
	}
}
