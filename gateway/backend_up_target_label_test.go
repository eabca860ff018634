package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// Two targets of one backend on the same host:port under different paths (two
// deployments behind one ingress, or one server serving two APIs) are two targets:
// each has its own tollgate_backend_up series in a real scrape, labelled so that
// neither hides the other, and its attempts are counted under the same label. With
// host:port alone the two shared one series showing whichever was written last, so an
// ejected target could read as up. Another backend on the same host:port keeps the
// plain host:port: its backend label sets it apart.
func TestBackendUpTargetsSharingHostPort(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+addr+`/v1", "http://`+addr+`/other/v1"], model: up-model,
         balance: round_robin, health: {eject_after: 1, eject_for: 1h}}
  twin: {provider: openai, base_url: "http://`+addr+`/other/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}], retries: 0}
  - {name: twin, type: chat, routes: [{backend: twin}]}
logging: {level: error, access_log: false}
`)
	// One request, answered 500 by the fault header, ejects the target it went to;
	// the other stays in service.
	req, err := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-mock-status", "500")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range fams["tollgate_backend_up"].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		got[l["backend"]+" "+l["target"]] = m.GetGauge().GetValue()
	}
	v1, other := addr+"/v1", addr+"/other/v1"
	upV1, okV1 := got["pool "+v1]
	upOther, okOther := got["pool "+other]
	if len(got) != 3 || !okV1 || !okOther || got["twin "+addr] != 1 {
		t.Fatalf("tollgate_backend_up series %v, want pool's two targets as %q and %q, and twin's as %q", got, v1, other, addr)
	}
	if upV1+upOther != 1 {
		t.Fatalf("tollgate_backend_up %v: want the ejected target 0 and the other 1", got)
	}
	ejected := v1
	if upOther == 0 {
		ejected = other
	}
	failed, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool {
		return l["backend"] == "pool" && l["target"] == ejected && l["outcome"] == "status_5xx"
	})
	if failed != 1 {
		t.Errorf("tollgate_upstream_attempts_total{target=%q,outcome=status_5xx} = %v, want 1: the attempt that ejected it, under the label of its tollgate_backend_up", ejected, failed)
	}
}

// The target label: host:port, with the path only where another target of the
// backend shares the host:port, and never credentials or a query string.
func TestTargetLabels(t *testing.T) {
	cases := []struct {
		name string
		urls []string
		want []string
	}{
		{"one target", []string{"http://10.0.0.5:8000/v1"}, []string{"10.0.0.5:8000"}},
		{"distinct hosts", []string{"http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"}, []string{"10.0.0.1:8000", "10.0.0.2:8000"}},
		{"shared host:port", []string{"http://10.0.0.5:8000/v1", "http://10.0.0.5:8000/other/v1", "http://10.0.0.6:8000/v1"},
			[]string{"10.0.0.5:8000/v1", "10.0.0.5:8000/other/v1", "10.0.0.6:8000"}},
		{"query left out", []string{"https://h.example/openai?api-version=1&sig=secret", "https://h.example/other?sig=secret"},
			[]string{"h.example/openai", "h.example/other"}},
		{"same path, other query", []string{"https://h.example/v1?sig=a", "https://h.example/v1?sig=b"},
			[]string{"h.example/v1 (targets[0])", "h.example/v1 (targets[1])"}},
		{"same URL twice is one target", []string{"http://a:1/v1", "http://a:1/v1"}, []string{"a:1", "a:1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := targetLabels(tc.urls)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("targetLabels(%q) = %q, want %q", tc.urls, got, tc.want)
			}
			for _, l := range got {
				if strings.Contains(l, "secret") || strings.Contains(l, "?") {
					t.Errorf("label %q carries the query", l)
				}
			}
		})
	}
}
