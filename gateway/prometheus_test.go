package gateway

import (
	"context"
	"math"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestPrometheusScrapesGateway: a real Prometheus scrapes the admin listener while
// requests flow, and the dashboard's p99 and error-rate queries return numbers.
func TestPrometheusScrapesGateway(t *testing.T) {
	t.Parallel()
	bin := promtest.Binary(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	prom := promtest.Start(t, bin, g.AdminAddr())
	const dash = "../configs/grafana/tollgate.json"
	p99 := promtest.PanelQuery(t, dash, "Request latency", "p99")
	errRate := promtest.PanelQuery(t, dash, "Error rate", "")

	c := g.client()
	send := func(n int) {
		for i := range n {
			var opts []option.RequestOption
			if i%5 == 0 {
				opts = append(opts, option.WithHeader("x-mock-status", "500"))
			}
			c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")}, opts...)
		}
	}
	send(20)
	ctx := context.Background()
	for _, q := range []struct {
		name, expr string
		ok         func(float64) bool
	}{
		{"p99 latency", p99, func(v float64) bool { return v > 0 && v < 10 }},
		{"error rate", errRate, func(v float64) bool { return v > 0.05 && v < 0.5 }},
	} {
		t.Run(q.name, func(t *testing.T) {
			// The series of chat: the other endpoints' have no traffic (an error rate
			// of 0/0, their counters existing at 0).
			var last float64
			promtest.WaitFor(t, q.expr, func() (bool, error) {
				send(5)
				s, err := prom.Query(ctx, q.expr)
				n := 0
				for _, x := range s {
					if x.Labels["endpoint"] == "chat" || len(s) == 1 {
						last, n = x.Value, n+1
					}
				}
				return err == nil && n == 1 && !math.IsNaN(last) && q.ok(last), err
			})
			t.Logf("%s = %v", q.name, last)
		})
	}
}
