package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// dashProbeProm is a real Prometheus scraping the gateway and, as the shipped
// prometheus.yml does, the vLLM-like upstreams with their backend label, with the
// shipped alert rules loaded.
type dashProbeProm struct {
	base string
	c    *http.Client
}

func dashProbeStartProm(t *testing.T, gateway string, vllm map[string]string) *dashProbeProm {
	t.Helper()
	bin := promtest.Binary(t)
	dir := t.TempDir()
	rules, err := filepath.Abs("../configs/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var sc strings.Builder
	for be, addr := range vllm {
		fmt.Fprintf(&sc, "      - targets: [%q]\n        labels: {backend: %q}\n", addr, be)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: tollgate
    static_configs:
      - targets: [%q]
  - job_name: vllm
    static_configs:
%s`, rules, gateway, sc.String())
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	p := &dashProbeProm{base: "http://" + addr, c: &http.Client{Timeout: 5 * time.Second}}
	promtest.WaitFor(t, "prometheus ready", func() (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := p.c.Get(p.base + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	})
	return p
}

func (p *dashProbeProm) get(path string, q url.Values, out any) error {
	resp, err := p.c.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %w", b, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s %v: %s", path, q, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

type dashProbeSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s dashProbeSample) v() float64 {
	str, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(str, 64)
	return f
}

func (p *dashProbeProm) query(expr string) ([]dashProbeSample, error) {
	var d struct {
		ResultType string            `json:"resultType"`
		Result     []dashProbeSample `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return nil, err
	}
	return d.Result, nil
}

type dashProbeEnv struct {
	g    *gw
	prom *dashProbeProm
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
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	prom := dashProbeStartProm(t, g.AdminAddr(), map[string]string{"up": up})
	e := &dashProbeEnv{g: g, prom: prom}
	samples := func(expr string) float64 {
		s, err := prom.query(expr)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) == 0 {
			return 0
		}
		return s[0].v()
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
		if x.Metric["endpoint"] == "chat" {
			rate = x.v()
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
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	prom := dashProbeStartProm(t, g.AdminAddr(), map[string]string{"up": up})
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
		if x.Metric["endpoint"] == "chat" {
			if x.v() != 0 {
				t.Errorf("Error rate of chat = %v, want 0", x.v())
			}
			return
		}
	}
	t.Errorf("Error rate panel has no series for endpoint chat, which served only 200s (%s): %v", expr, s)
}
