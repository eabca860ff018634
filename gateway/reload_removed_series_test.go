package gateway

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	dto "github.com/prometheus/client_model/go"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// scrapeAdmin reads the gateway's /metrics as Prometheus does.
func scrapeAdmin(t *testing.T, g *gw) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// seriesWith counts the series of family name whose labels include the given
// name, value pairs, and adds up their values.
func seriesWith(fams map[string]*dto.MetricFamily, name string, labels ...string) (n int, sum float64) {
	sum, _ = promtest.Sum(fams, name, func(have map[string]string) bool {
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				return false
			}
		}
		n++
		return true
	})
	return n, sum
}

// A reload that removes targets (a rollout giving vLLM pods new IPs, rendered into
// targets by GitOps), or renames a route's variant, removes every series of the
// removed ones from /metrics once no request runs on the replaced config: /metrics
// and the gateway's memory stay the size of the running config however many such
// reloads come. The series of the requests the gateway answers itself stay.
func TestReloadRemovesSeriesOfReplacedTargetsAndVariants(t *testing.T) {
	t.Parallel()
	cfg := func(i int) string {
		return fmt.Sprintf(`server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, targets: ["http://10.1.%d.1:8000/v1", "http://10.1.%d.2:8000/v1"], model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: llama, weight: 100, variant: v%d}]
logging: {access_log: false}
`, i, i, i)
	}
	g := startGateway(t, cfg(0))
	const reloads = 100
	for i := 1; i <= reloads; i++ {
		if err := os.WriteFile(g.path, []byte(cfg(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := g.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrapeAdmin(t, g)
	targets := map[string]bool{}
	for _, m := range fams["tollgate_upstream_attempts_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "target" {
				targets[l.GetValue()] = true
			}
		}
	}
	variants := map[string]bool{}
	for _, m := range fams["tollgate_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "variant" && l.GetValue() != "none" {
				variants[l.GetValue()] = true
			}
		}
	}
	up := len(fams["tollgate_backend_up"].GetMetric())
	total := 0
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "tollgate_") {
			total += len(f.GetMetric())
		}
	}
	if len(targets) > 2 || len(variants) > 1 {
		t.Fatalf("after %d reloads that each replaced the backend's 2 targets and the route's variant (no request sent): /metrics holds tollgate_upstream_attempts_total for %d targets (%d series) and tollgate_requests_total for %d variants, %d tollgate_ series in all, growing with every reload; tollgate_backend_up, pruned, holds %d. Want only the running config's 2 targets and 1 variant (or those still serving requests)",
			reloads, len(targets), len(fams["tollgate_upstream_attempts_total"].GetMetric()), len(variants), total, up)
	}
	want := fmt.Sprintf("v%d", reloads)
	if !variants[want] || !targets["10.1.100.1:8000"] || !targets["10.1.100.2:8000"] {
		t.Errorf("the running config's series are missing: variants %v, targets %v", variants, targets)
	}
	// An unknown model's 404 counts under endpoint unknown; a limit's 429 on the
	// endpoint's own series.
	for _, own := range [][]string{{"endpoint", "unknown", "backend", "none", "code", "404"}, {"endpoint", "chat", "backend", "none", "code", "429"}} {
		if n, _ := seriesWith(fams, "tollgate_requests_total", own...); n != 1 {
			t.Errorf("tollgate_requests_total%v: %d series, want 1: the gateway's own answers keep their series", own, n)
		}
	}
}

// A reload that keeps a label set keeps its series and what they counted: the new
// config takes its series before the replaced one lets go of them, so no counter
// resets (rate() would read a reset as a restart).
func TestReloadKeepsCountsOfSeriesItKeeps(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 3})
	cfg := func(extra string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up, variant: stable}]
    limits: [{per: endpoint, requests: 100, window: minute}]
` + extra + `logging: {access_log: false}
`
	}
	g := startGateway(t, cfg(""))
	c := g.client()
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")}); err != nil {
		t.Fatal(err)
	}
	// Another endpoint comes, and goes again: chat's series stay through both.
	for _, extra := range []string{"  - {name: other, type: chat, routes: [{backend: up}]}\n", ""} {
		if err := os.WriteFile(g.path, []byte(cfg(extra)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := g.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrapeAdmin(t, g)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tollgate_requests_total", []string{"endpoint", "chat", "variant", "stable", "code", "200"}, 1},
		{"tollgate_upstream_attempts_total", []string{"backend", "up", "outcome", "ok"}, 1},
		{"tollgate_request_duration_seconds", []string{"endpoint", "chat", "variant", "stable"}, -1},
		{"tollgate_ratelimit_rejections_total", []string{"endpoint", "chat"}, 0},
		{"tollgate_in_flight_requests", []string{"endpoint", "chat"}, 0},
	}
	for _, ck := range checks {
		n, v := seriesWith(fams, ck.name, ck.labels...)
		if n == 0 || ck.want >= 0 && v != ck.want {
			t.Errorf("%s%v after two reloads that kept it: %d series, value %v; want it kept, at %v", ck.name, ck.labels, n, v, ck.want)
		}
	}
	if tok, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return l["endpoint"] == "chat" }); tok == 0 {
		t.Error("tollgate_tokens_total of chat went back to 0 with a reload that kept it")
	}
	for _, name := range []string{"tollgate_requests_total", "tollgate_in_flight_requests"} {
		if n, _ := seriesWith(fams, name, "endpoint", "other"); n != 0 {
			t.Errorf("%s of the removed endpoint other: %d series, want none", name, n)
		}
	}
}

// The series of an endpoint a reload removes stay while a request that began on the
// replaced config runs (it counts its answer in them). Once it has ended, those that
// counted nothing go at once, and those that did stay a while, for Prometheus to
// scrape their last values.
func TestReloadRemovesSeriesAfterTheirLastRequest(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	_, up := startMock(t, mockllm.Options{MaxTokens: 2, TTFT: time.Second, Sleep: func(time.Duration) { <-release }})
	cfg := func(name string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s}
endpoints:
  - name: ` + name + `
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 100, window: minute}]
logging: {access_log: false}
`
	}
	g := startGateway(t, cfg("old"))
	c := g.client()
	done := make(chan error, 1)
	go func() {
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "old", Messages: userMsg("hi")})
		done <- err
	}()
	waitFor(t, func() bool {
		_, v := seriesWith(scrapeAdmin(t, g), "tollgate_in_flight_requests", "endpoint", "old")
		return v == 1
	})
	if err := os.WriteFile(g.path, []byte(cfg("new")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		close(release)
		t.Fatal(err)
	}
	fams := scrapeAdmin(t, g)
	for _, name := range []string{"tollgate_requests_total", "tollgate_in_flight_requests", "tollgate_ratelimit_rejections_total"} {
		if n, _ := seriesWith(fams, name, "endpoint", "old"); n == 0 {
			t.Errorf("%s{endpoint=old} gone while a request on it runs", name)
		}
		if n, _ := seriesWith(fams, name, "endpoint", "new"); n == 0 {
			t.Errorf("%s{endpoint=new} missing after the reload", name)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the request begun before the reload: %v", err)
	}
	// The unused ones: the endpoint's in-flight gauge, its limit, the series of the
	// answers the gateway would have made itself.
	waitFor(t, func() bool {
		fams := scrapeAdmin(t, g)
		n1, _ := seriesWith(fams, "tollgate_in_flight_requests", "endpoint", "old")
		n2, _ := seriesWith(fams, "tollgate_ratelimit_rejections_total", "endpoint", "old")
		n3, _ := seriesWith(fams, "tollgate_requests_total", "endpoint", "old", "variant", "none")
		return n1+n2+n3 == 0
	})
	fams = scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_requests_total", "endpoint", "old", "variant", "up", "code", "200"); v != 1 {
		t.Errorf("tollgate_requests_total{endpoint=old,code=200} = %v once its request ended, want 1 kept for the next scrapes", v)
	}
	if _, v := seriesWith(fams, "tollgate_tokens_total", "endpoint", "old"); v == 0 {
		t.Error("tollgate_tokens_total{endpoint=old} gone with its request's tokens unscraped")
	}
	if n, _ := seriesWith(scrapeAdmin(t, g), "tollgate_requests_total", "endpoint", "new", "variant", "up", "code", "200"); n != 1 {
		t.Errorf("tollgate_requests_total{endpoint=new,variant=up,code=200}: %d series, want 1", n)
	}
}
