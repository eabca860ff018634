package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMLflowLimitValues: MLflow checks a limit by the limits library's
// parse(f"{calls}/{renewal_period}"), which takes second, minute, hour, day, month and
// year in any case, singular or plural, with an optional count; its key is a free
// string, of which MLflow's client documents route (the whole endpoint, as no key) and
// user. Each such MLflow file loads; a key Tollgate cannot count by is refused under
// MLflow's key.
func TestMLflowLimitValues(t *testing.T) {
	parse := func(limit string) (*Config, error) {
		return ParseConfig("ml.yaml", []byte(`endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
    limit: `+limit+`
`), env(nil))
	}
	for _, c := range []struct{ limit, per, window string }{
		{"{calls: 1000, renewal_period: month}", "endpoint", "month"},
		{"{calls: 10, renewal_period: minutes}", "endpoint", "minute"},
		{"{calls: 10, renewal_period: Minute}", "endpoint", "minute"},
		{"{calls: 10, renewal_period: 5 minutes}", "endpoint", "5 minutes"},
		{"{calls: 10, renewal_period: minute, key: route}", "endpoint", "minute"},
		{"{calls: 10, renewal_period: minute, key: null}", "endpoint", "minute"},
		{"{calls: 10, renewal_period: day, key: user}", "user", "day"},
	} {
		t.Run(c.limit, func(t *testing.T) {
			cfg, err := parse(c.limit)
			if err != nil {
				t.Fatalf("MLflow-valid limit %s refused: %v", c.limit, err)
			}
			l := cfg.Endpoints[0].Limits
			if len(l) != 1 || l[0].Per != c.per || l[0].Window != c.window {
				t.Fatalf("limits %+v, want one per %s over %s", l, c.per, c.window)
			}
		})
	}
	_, err := parse("{calls: 10, renewal_period: minute, key: team}")
	if want := "ml.yaml:5: endpoints[0].limit.key: must be route or user"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// TestMLflowLimitPeriodRefuses: a limit over a period no Tollgate window names (here 2
// minutes) refuses the call past it, saying so.
func TestMLflowLimitPeriodRefuses(t *testing.T) {
	up := startChatOnlyUpstream(t)
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: k, openai_api_base: "http://`+up.addr+`/v1"}}
    limit: {calls: 1, renewal_period: 2 Minutes}
`)
	codes := make([]int, 2)
	var last string
	for i := range codes {
		resp, err := http.Post(g.url+"/endpoints/chat/invocations", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes[i], last = resp.StatusCode, string(raw)
	}
	if codes[0] != 200 || codes[1] != 429 || !strings.Contains(last, "endpoint:requests:2 minutes") || !strings.Contains(last, "try again in 120s") {
		t.Fatalf("codes %v, last answer %s; want 200, then 429 naming the 2 minutes and their wait", codes, last)
	}
}
