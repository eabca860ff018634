package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// prometheusBinary finds Debian's prometheus; without it the test fails in
// CI and is skipped elsewhere.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/prometheus"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("prometheus is not installed (apt-get install prometheus)")
	}
	t.Skip("prometheus is not installed (apt-get install prometheus); skipping the real scrape test")
	return ""
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveMetrics serves the registry as the admin listener does.
func serveMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/metrics" {
			Handler(reg)(ctx)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

type prometheusServer struct {
	base   string
	client *http.Client
}

func startPrometheus(t *testing.T, bin, target string) *prometheusServer {
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
	addr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
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
	p := &prometheusServer{base: "http://" + addr, client: &http.Client{Timeout: 5 * time.Second}}
	waitFor(t, "prometheus ready", func() (bool, error) {
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

// waitFor polls cond every 100 ms for up to 30 s: Prometheus scrapes on
// its own schedule, so the test waits for an outcome, never for a time.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
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

type sample struct {
	labels map[string]string
	value  float64
}

// query runs an instant query through the HTTP API.
func (p *prometheusServer) query(ctx context.Context, expr string) ([]sample, error) {
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
	out := make([]sample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %w", s.Value[1], err)
		}
		out = append(out, sample{s.Metric, v})
	}
	return out, nil
}

// grafanaVars stands in for Grafana: All for every variable and a rate
// window that spans several 500 ms scrapes.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m",
	"$endpoint", ".*",
	"$backend", ".*",
	"$variant", ".*",
)

func TestPrometheusScrapesDashboardQueries(t *testing.T) {
	bin := prometheusBinary(t)
	d := loadDashboard(t)
	var p99, errRate string
	for _, tg := range panelByTitle(t, d, "Request latency").Targets {
		if tg.LegendFormat == "p99" {
			p99 = grafanaVars.Replace(tg.Expr)
		}
	}
	errRate = grafanaVars.Replace(panelByTitle(t, d, "Error rate").Targets[0].Expr)
	for _, e := range []string{p99, errRate} {
		if e == "" || strings.Contains(e, "$") {
			t.Fatalf("dashboard query %q is missing or has an unknown variable", e)
		}
	}

	reg := prometheus.NewRegistry()
	m := New(reg)
	route := m.Route("chat", "llama", "stable")
	// Every series exists at zero before the first scrape, so that rate()
	// extrapolates all of them alike and the ratios below come out exact.
	route.code(200)
	route.code(502)

	target := serveMetrics(t, reg)
	prom := startPrometheus(t, bin, target)
	ctx := context.Background()

	waitFor(t, "first scrape", func() (bool, error) {
		s, err := prom.query(ctx, `tollgate_requests_total{job="tollgate"}`)
		return len(s) == 2, err
	})

	// 90 successes and 10 gateway errors, every one between 1.1 s and 1.6 s:
	// all in the (1, 2.5] bucket, so p99 interpolates to 1 + 1.5*0.99.
	for i := range 100 {
		status := 200
		if i%10 == 0 {
			status = 502
		}
		route.Done(status, 1100*time.Millisecond+time.Duration(i)*5*time.Millisecond, 0, 0, 10, 10, 0.001)
	}
	const wantP99, wantErrRate = 2.485, 0.1

	checks := []struct {
		name string
		expr string
		want float64
	}{
		{"p99 latency", p99, wantP99},
		{"error rate", errRate, wantErrRate},
	}
	// Every other panel's query at least runs: Prometheus parses it and
	// answers, with data or without.
	for _, pn := range allPanels(d.Panels) {
		for _, tg := range pn.Targets {
			t.Run("query "+pn.Title+" "+tg.RefID, func(t *testing.T) {
				if _, err := prom.query(ctx, grafanaVars.Replace(tg.Expr)); err != nil {
					t.Error(err)
				}
			})
		}
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			var last []sample
			waitFor(t, c.expr, func() (bool, error) {
				s, err := prom.query(ctx, c.expr)
				last = s
				return err == nil && len(s) == 1 && !math.IsNaN(s[0].value) && math.Abs(s[0].value-c.want) < 1e-6, err
			})
			t.Logf("%s = %v (%s)", c.name, last[0].value, c.expr)
		})
	}
}
