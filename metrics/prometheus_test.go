package metrics

import (
	"context"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
)

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

var grafanaVars = promtest.GrafanaVars

func TestPrometheusScrapesDashboardQueries(t *testing.T) {
	bin := promtest.Binary(t)
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
	// Every series exists at zero before the first scrape (presetCodes), so that
	// rate() extrapolates all of them alike and the ratios below come out exact.

	target := serveMetrics(t, reg)
	prom := promtest.Start(t, bin, target)
	ctx := context.Background()

	promtest.WaitFor(t, "first scrape", func() (bool, error) {
		s, err := prom.Query(ctx, `tollgate_requests_total{job="tollgate"}`)
		return len(s) == len(presetCodes), err
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
				if _, err := prom.Query(ctx, grafanaVars.Replace(tg.Expr)); err != nil {
					t.Error(err)
				}
			})
		}
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			var last []promtest.Sample
			promtest.WaitFor(t, c.expr, func() (bool, error) {
				s, err := prom.Query(ctx, c.expr)
				last = s
				return err == nil && len(s) == 1 && !math.IsNaN(s[0].Value) && math.Abs(s[0].Value-c.want) < 1e-6, err
			})
			t.Logf("%s = %v (%s)", c.name, last[0].Value, c.expr)
		})
	}
}
