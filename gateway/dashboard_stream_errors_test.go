package gateway

import (
	"testing"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestDashboardShowsStreamCutAfter200: a stream the upstream cuts after its 200 went
// out counts as a 200 in tollgate_requests_total, so the 5xx share of the "Error rate"
// panel stays at 0; the panel's second series, failed streams among the requests,
// shows it, from the first such stream on (the stream error counters exist at 0).
func TestDashboardShowsStreamCutAfter200(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(up, "", ""))
	prom := dashProbeStartProm(t, g.AdminAddr())
	e := &dashProbeEnv{g: g, prom: prom}
	value := func(expr string) float64 {
		s, err := prom.query(expr)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) == 0 {
			return 0
		}
		return s[0].Value
	}
	promtest.WaitFor(t, "200s scraped", func() (bool, error) {
		e.post(t, "chat", true, nil)
		return value(`count_over_time(tollgate_stream_errors_total{endpoint="chat",code="upstream_stream_cut"}[1m])`) >= 3, nil
	})
	if st := e.post(t, "chat", true, map[string]string{"x-mock-cut-after": "1"}); st != 200 {
		t.Fatalf("status %d, want 200 (the stream is cut after its header)", st)
	}
	promtest.WaitFor(t, "cut stream scraped", func() (bool, error) {
		e.post(t, "chat", true, nil)
		return value(`sum(tollgate_stream_errors_total{endpoint="chat"})`) >= 1, nil
	})
	expr := promtest.PanelQuery(t, "../configs/grafana/tollgate.json", "Error rate", "{{endpoint}} streams failed after 200")
	s, err := prom.query(expr)
	if err != nil {
		t.Fatal(err)
	}
	var share float64
	for _, x := range s {
		if x.Labels["endpoint"] == "chat" {
			share = x.Value
		}
	}
	if !(share > 0) {
		t.Errorf("failed-stream share of chat = %v (%s) after a stream cut among the requests of the last minute: want > 0", share, expr)
	}
	errRate := promtest.PanelQuery(t, "../configs/grafana/tollgate.json", "Error rate", "{{endpoint}}")
	if s, err := prom.query(errRate); err != nil {
		t.Fatal(err)
	} else {
		for _, x := range s {
			if x.Labels["endpoint"] == "chat" && x.Value != 0 {
				t.Errorf("5xx share of chat = %v, want 0: a stream cut after its 200 is a 200", x.Value)
			}
		}
	}
}
