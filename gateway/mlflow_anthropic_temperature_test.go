package gateway

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// An MLflow config's llm/v1/chat endpoint on provider anthropic takes MLflow's
// temperature, 0 to 2 (MLflow's chat schema bounds it so), and MLflow's own gateway
// sends Anthropic half of it (AnthropicAdapter.chat_to_model: "The range of
// Anthropic's temperature is 0-1, but ours is 0-2, so we halve it"), as Tollgate does
// for MLflow's mistral provider (README, "MLflow AI Gateway configs": "`mistral`
// halves `temperature`, MLflow's 0-2 onto Mistral's 0-1"). The same MLflow config and
// the same invocation must sample the same way behind Tollgate: a temperature of 1.0
// reaches Anthropic as 0.5, 0.6 as 0.3, 2.0 as 1.0.
func TestMLflowAnthropicHalvesTemperature(t *testing.T) {
	var mu sync.Mutex
	var got []float64
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		var body struct {
			Temperature *float64 `json:"temperature"`
		}
		json.Unmarshal(ctx.PostBody(), &body)
		mu.Lock()
		if body.Temperature != nil {
			got = append(got, *body.Temperature)
		} else {
			got = append(got, -1)
		}
		mu.Unlock()
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"Hi."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":2}}`)
	})
	t.Setenv("ZZR_AKEY", "sk-ant-zzr-test")
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: claude
    endpoint_type: llm/v1/chat
    model:
      provider: anthropic
      name: claude-3-5-haiku-20241022
      config: {anthropic_api_key: $ZZR_AKEY, anthropic_api_base: "http://`+up+`/v1"}
`)
	cases := []struct {
		sent string
		want float64
	}{{"1.0", 0.5}, {"0.6", 0.3}, {"2", 1}}
	for _, c := range cases {
		code, b := postJSON(t, g.url+"/endpoints/claude/invocations",
			`{"messages":[{"role":"user","content":"hi"}],"temperature":`+c.sent+`}`)
		if code != 200 {
			t.Fatalf("temperature %s: %d %s", c.sent, code, b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(cases) {
		t.Fatalf("upstream got %d requests, want %d", len(got), len(cases))
	}
	var bad []string
	for i, c := range cases {
		if got[i] != c.want {
			bad = append(bad, "temperature "+c.sent+" reached Anthropic as "+zzrNum(got[i])+", MLflow's gateway sends "+zzrNum(c.want))
		}
	}
	if len(bad) > 0 {
		t.Fatal(strings.Join(bad, "; "))
	}
}

func zzrNum(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}
