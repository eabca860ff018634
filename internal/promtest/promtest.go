// Package promtest runs a real Prometheus server (Debian's prometheus package) for
// tests: it scrapes a target on loopback and answers PromQL through its HTTP API.
package promtest

import (
	"bytes"
	"context"
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
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
)

// Binary finds Debian's prometheus; without it the test fails (make test installs
// it).
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/prometheus"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	// A test that needs a real part fails without it, in CI and out of it: make test
	// installs it.
	t.Fatal("prometheus is not installed: apt-get install prometheus, or run make test")
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Server is one prometheus process owned by a test.
type Server struct {
	base   string
	client *http.Client
}

// Start runs bin scraping target (host:port, path /metrics) every 500 ms and waits
// until it is ready; it stops with the test.
func Start(t testing.TB, bin, target string) *Server {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
scrape_configs:
  - job_name: tollgate
    static_configs:
      - targets: [%q]
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var logs bytes.Buffer
	//nolint:gosec // the test's own prometheus binary and flags
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout = &logs
	cmd.Stderr = &logs
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
	p := &Server{base: "http://" + addr, client: &http.Client{Timeout: 5 * time.Second}}
	WaitFor(t, "prometheus ready", func() (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := p.client.Get(p.base + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return p
}

// WaitFor polls cond every 100 ms for up to 30 s: Prometheus scrapes on
// its own schedule, so the test waits for an outcome, never for a time.
func WaitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant query through the HTTP API.
func (p *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", body, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s", expr, r.Data.ResultType)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %w", s.Value[1], err)
		}
		out = append(out, Sample{s.Metric, v})
	}
	return out, nil
}

// GrafanaVars stands in for Grafana: All for every variable and a rate window that
// spans several 500 ms scrapes.
var GrafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m",
	"$endpoint", ".*",
	"$backend", ".*",
	"$variant", ".*",
)

// PanelQuery returns the PromQL of the dashboard panel titled title (its target with
// legend format legend, or the first one when legend is empty), variables replaced.
func PanelQuery(t testing.TB, dashboard, title, legend string) string {
	t.Helper()
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string
		Panels  []json.RawMessage
		Targets []struct {
			Expr         string
			LegendFormat string `json:"legendFormat"`
		}
	}
	var d struct{ Panels []json.RawMessage }
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	queue := d.Panels
	for len(queue) > 0 {
		var p panel
		if err := json.Unmarshal(queue[0], &p); err != nil {
			t.Fatal(err)
		}
		queue = append(queue[1:], p.Panels...)
		if p.Title != title {
			continue
		}
		for _, tg := range p.Targets {
			if legend == "" || tg.LegendFormat == legend {
				return GrafanaVars.Replace(tg.Expr)
			}
		}
	}
	t.Fatalf("dashboard %s has no panel %q with legend %q", dashboard, title, legend)
	return ""
}
