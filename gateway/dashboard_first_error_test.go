package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// dashProbeProm is a real Prometheus scraping the gateway (promtest.Start, every
// 500 ms), queried for the dashboard's expressions.
type dashProbeProm struct{ *promtest.Server }

func dashProbeStartProm(t *testing.T, gateway string) dashProbeProm {
	t.Helper()
	return dashProbeProm{promtest.Start(t, promtest.Binary(t), gateway)}
}

func (p dashProbeProm) query(expr string) ([]promtest.Sample, error) {
	return p.Query(context.Background(), expr)
}

type dashProbeEnv struct {
	g    *gw
	prom dashProbeProm
	mu   sync.Mutex
	n    int
}

func (e *dashProbeEnv) post(t *testing.T, model string, stream bool, hdr map[string]string) int {
	t.Helper()
	e.mu.Lock()
	e.n++
	n := e.n
	e.mu.Unlock()
	body := fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"hi"}],"user":"u%d"}`, model, stream, n%3)
	req, _ := http.NewRequest("POST", e.g.url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-ID", fmt.Sprintf("user-%d", n))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDashboardShowsFirstServerError: a gateway serving 200s, scraped by
// Prometheus, answers one 500. The dashboard's "Error rate" panel and the 5xx
// increase show it: the route's 5xx counters exist at 0 from its start, as a series
// that first appeared with the error already counted would be invisible to rate()
// and increase().
func TestDashboardShowsFirstServerError(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	prom := dashProbeStartProm(t, g.AdminAddr())
	e := &dashProbeEnv{g: g, prom: prom}
	samples := func(expr string) float64 {
		s, err := prom.query(expr)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) == 0 {
			return 0
		}
		return s[0].Value
	}
	// Steady healthy traffic, seen by several scrapes.
	promtest.WaitFor(t, "200s scraped", func() (bool, error) {
		e.post(t, "chat", false, nil)
		return samples(`count_over_time(tollgate_requests_total{endpoint="chat",code="200"}[1m])`) >= 3, nil
	})
	if st := e.post(t, "chat", false, map[string]string{"x-mock-status": "500"}); st != 500 {
		t.Fatalf("status %d, want the upstream's 500", st)
	}
	promtest.WaitFor(t, "500 scraped", func() (bool, error) {
		e.post(t, "chat", false, nil)
		time.Sleep(100 * time.Millisecond)
		return samples(`sum(tollgate_requests_total{endpoint="chat",code=~"5.."})`) >= 1, nil
	})
	inc := samples(`sum(increase(tollgate_requests_total{endpoint="chat",code=~"5.."}[1m]))`)
	errRate := promtest.PanelQuery(t, "../configs/grafana/tollgate.json", "Error rate", "")
	s, err := prom.query(errRate)
	if err != nil {
		t.Fatal(err)
	}
	var rate float64
	for _, x := range s {
		if x.Labels["endpoint"] == "chat" {
			rate = x.Value
		}
	}
	t.Logf("increase of 5xx over 1m = %v; Error rate panel (%s) = %v", inc, errRate, s)
	if inc < 0.5 {
		t.Errorf("increase(tollgate_requests_total{code=~\"5..\"}[1m]) = %v after one 500 answered: want about 1", inc)
	}
	if !(rate > 0) {
		t.Errorf("Error rate panel for endpoint chat = %v after one 500 among the requests of the last minute: want > 0", rate)
	}
}

// TestDashboardErrorRateOfHealthyEndpoint: an endpoint that answers only 200s has an
// error rate of 0 %; the dashboard's "Error rate" panel must draw it at 0, not "No
// data", which an SRE cannot tell from an endpoint that gets no traffic or a broken
// scrape.
func TestDashboardErrorRateOfHealthyEndpoint(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	prom := dashProbeStartProm(t, g.AdminAddr())
	e := &dashProbeEnv{g: g, prom: prom}
	promtest.WaitFor(t, "200s scraped", func() (bool, error) {
		e.post(t, "chat", false, nil)
		time.Sleep(100 * time.Millisecond)
		s, err := prom.query(`sum(rate(tollgate_requests_total{endpoint="chat",code="200"}[1m])) > 0`)
		return len(s) == 1, err
	})
	expr := promtest.PanelQuery(t, "../configs/grafana/tollgate.json", "Error rate", "")
	s, err := prom.query(expr)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range s {
		if x.Labels["endpoint"] == "chat" {
			if x.Value != 0 {
				t.Errorf("Error rate of chat = %v, want 0", x.Value)
			}
			return
		}
	}
	t.Errorf("Error rate panel has no series for endpoint chat, which served only 200s (%s): %v", expr, s)
}
