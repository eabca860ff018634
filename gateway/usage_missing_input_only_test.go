package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// An embeddings, rerank or score answer without usage (no usage member, as some
// OpenAI-compatible servers send them) is charged as any answer without usage is
// (README, Rate limits): the prompt as admission estimated it, and no output, for
// nothing is generated. The token limit keeps that estimate, and the access log
// (usage_estimated), tollgate_tokens_total and the cost counter carry it, priced at
// the backend's input price, rather than counting nothing while the limit charges
// the estimate.
func TestInputOnlyAnswerWithoutUsageCountsItsEstimate(t *testing.T) {
	t.Parallel()
	answers := map[string]string{
		"/v1/embeddings": `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"m"}`,
		"/v1/rerank":     `{"id":"r","model":"m","results":[{"index":0,"relevance_score":0.5},{"index":1,"relevance_score":0.25}]}`,
		"/v1/score":      `{"id":"s","object":"list","created":1,"model":"m","data":[{"index":0,"object":"score","score":0.5},{"index":1,"object":"score","score":0.2}],"usage":null}`,
	}
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		body := answers[req.URL.Path]
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	})
	cfg := strings.Replace(mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}], limits: [{per: endpoint, tokens: 100000, window: day}]}
`), "timeout: 20s}", "timeout: 20s, pricing: {input_per_million: 1000}}", 1)
	cfg = strings.Replace(cfg, "{name: embed, type: embeddings, routes: [{backend: up}]}",
		"{name: embed, type: embeddings, routes: [{backend: up}], limits: [{per: endpoint, tokens: 100000, window: day}]}", 1)
	for _, tc := range []struct{ name, path, endpoint, body string }{
		{"embeddings", "/v1/embeddings", "embed", `{"model":"embed","input":"` + strings.Repeat("e", 400) + `"}`},
		{"rerank", "/v1/rerank", "rank", `{"model":"rank","query":"` + strings.Repeat("q", 80) + `","documents":["` + strings.Repeat("d", 40) + `","dd"]}`},
		{"score", "/v1/score", "rank", `{"model":"rank","text_1":"` + strings.Repeat("q", 80) + `","text_2":["a","b"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, cfg)
			id := "in-only-" + tc.name
			resp, b := postRaw(t, http.DefaultClient, g.url+tc.path, tc.body, map[string]string{"Content-Type": "application/json", "X-Request-Id": id})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, b)
			}
			remaining, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
			if err != nil {
				t.Fatalf("x-ratelimit-remaining-tokens %q", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			}
			est := 100000 - remaining
			line := afAccess(t, g, id)
			in, out := afNum(line, "input_tokens"), afNum(line, "output_tokens")
			estimated, _ := line["usage_estimated"].(bool)
			cost, _ := line["cost_usd"].(float64)
			if in != est || out != 0 || !estimated || !closeTo(cost, float64(est)*1000/1e6) {
				t.Fatalf("access log %d in, %d out, $%v, usage_estimated %v; want the estimate charged, %d in, 0 out, $%v, estimated",
					in, out, cost, estimated, est, float64(est)*1000/1e6)
			}
			if got := counterValue(t, g.Server, "tollgate_tokens_total", "endpoint", tc.endpoint, "type", "input"); int64(got) != est {
				t.Fatalf("tollgate_tokens_total input %v, want the estimate %d", got, est)
			}
			// The limit kept the estimate: the next call's header counts it.
			resp, b = postRaw(t, http.DefaultClient, g.url+tc.path, tc.body, map[string]string{"Content-Type": "application/json"})
			// The day's window refills a token every 0.9 s: one may come back meanwhile.
			if next, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64); next < 100000-2*est || next > 100000-2*est+1 {
				t.Fatalf("second call: remaining %d, want %d (both estimates kept): %s", next, 100000-2*est, b)
			}
		})
	}
}
