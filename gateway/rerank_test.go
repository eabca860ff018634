package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// rerankAnswer is vLLM's rerank answer (Jina's shape).
type rerankAnswer struct {
	ID    string `json:"id"`
	Model string `json:"model"`
	Usage struct {
		TotalTokens int64 `json:"total_tokens"`
	} `json:"usage"`
	Results []struct {
		Index          int     `json:"index"`
		RelevanceScore float64 `json:"relevance_score"`
		Document       struct {
			Text string `json:"text"`
		} `json:"document"`
	} `json:"results"`
}

const rerankBody = `{"model":"rank","query":"which gateway limits tokens","documents":["bananas are yellow","a gateway limits tokens per key","tokens"],"top_n":2}`

// A rerank endpoint serves vLLM's rerank API on every path vLLM serves it at, with
// the model rewritten, sent to the backend's {base_url}/rerank, the answer passed on
// and its usage (total_tokens alone) counted as input tokens.
func TestRerankEndToEnd(t *testing.T) {
	mock, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}]}
`))
	var total int64
	for _, path := range []string{"/v1/rerank", "/v2/rerank", "/rerank"} {
		status, raw := postJSON(t, g.url+path, rerankBody)
		if status != 200 {
			t.Fatalf("%s: %d %s", path, status, raw)
		}
		var a rerankAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("%s: %v in %s", path, err, raw)
		}
		if len(a.Results) != 2 || a.Results[0].Index != 1 || a.Results[0].RelevanceScore < a.Results[1].RelevanceScore {
			t.Errorf("%s: results %+v, want the top 2 with the matching document first", path, a.Results)
		}
		if a.Usage.TotalTokens <= 0 {
			t.Errorf("%s: no usage in %s", path, raw)
		}
		total += a.Usage.TotalTokens
		st := mock.Stats()
		if st.LastPath != "/v1/rerank" {
			t.Errorf("%s went upstream to %s, want the base URL's /rerank", path, st.LastPath)
		}
		var sent map[string]json.RawMessage
		if err := json.Unmarshal(st.LastBody, &sent); err != nil || string(sent["model"]) != `"up-model"` || string(sent["top_n"]) != "2" {
			t.Errorf("%s: upstream got %s", path, st.LastBody)
		}
	}
	if got := counterValue(t, g.Server, "tollgate_tokens_total", "endpoint", "rank", "type", "input"); int64(got) != total {
		t.Errorf("input tokens counted %v, want the answers' total_tokens %d", got, total)
	}
	if got := counterValue(t, g.Server, "tollgate_tokens_total", "endpoint", "rank", "type", "output"); got != 0 {
		t.Errorf("output tokens counted %v, want none", got)
	}
}

// A rerank model on another type's URL, and another type's model on a rerank URL,
// are OpenAI's model_not_supported, naming the URL that serves the model.
func TestRerankWrongType(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}]}
`))
	status, raw := postJSON(t, g.url+"/v1/chat/completions", `{"model":"rank","messages":[{"role":"user","content":"hi"}]}`)
	if status != 400 || !strings.Contains(string(raw), "model_not_supported") || !strings.Contains(string(raw), "is a rerank endpoint; call /v1/rerank.") {
		t.Errorf("rerank model on chat: %d %s", status, raw)
	}
	status, raw = postJSON(t, g.url+"/v2/rerank", `{"model":"chat","query":"q","documents":["d"]}`)
	if status != 400 || !strings.Contains(string(raw), "is a chat endpoint; call /v1/chat/completions.") {
		t.Errorf("chat model on rerank: %d %s", status, raw)
	}
	status, raw = postJSON(t, g.url+"/v1/rerank", `{"model":"nope","query":"q","documents":["d"]}`)
	if status != 404 || !strings.Contains(string(raw), "model_not_found") {
		t.Errorf("unknown model: %d %s", status, raw)
	}
	status, raw = postJSON(t, g.url+"/v1/rerank", `{"model":"rank","query":"q","documents":["d"]`)
	if status != 400 || !strings.Contains(string(raw), "invalid_json") {
		t.Errorf("malformed body: %d %s", status, raw)
	}
	// The upstream's own refusal (no query) is passed on as it came.
	status, raw = postJSON(t, g.url+"/v1/rerank", `{"model":"rank","documents":["d"]}`)
	if status != 400 {
		t.Errorf("no query: %d %s", status, raw)
	}
}

// stream: true on a rerank is not a stream: the answer is JSON, as vLLM gives it.
func TestRerankStreamFieldIgnored(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}]}
`))
	req, _ := http.NewRequest("POST", g.url+"/v1/rerank", strings.NewReader(`{"model":"rank","stream":true,"query":"q","documents":["d","q"]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a rerankAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 || len(a.Results) != 2 {
		t.Fatalf("%d %s %+v %v", resp.StatusCode, resp.Header.Get("Content-Type"), a, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type %q", ct)
	}
}

// A rerank scores the query with each document, so its token estimate counts the
// query once a document, plus a few tokens a pair; nothing generated.
func TestRerankEstimate(t *testing.T) {
	query := strings.Repeat("q", 400)
	body := `{"model":"rank","query":"` + query + `","documents":["` + strings.Repeat("d", 40) + `","` + strings.Repeat("d", 40) + `","x","y","z"],"max_tokens":1000}`
	var f fields
	if e := scanBody([]byte(body), &f); e != nil {
		t.Fatal(e.message)
	}
	if f.documents != 5 || f.queryBytes != 402 {
		t.Fatalf("documents %d, query %d bytes", f.documents, f.queryBytes)
	}
	prompt := int64(len(`"`+query+`"`) + len(`["`+strings.Repeat("d", 40)+`","`+strings.Repeat("d", 40)+`","x","y","z"]`))
	if got, media := f.input(providers.Rerank); got != prompt+4*402 || media != 0 {
		t.Errorf("rerank input %d bytes, %d media tokens, want %d", got, media, prompt+4*402)
	}
	if got, _ := f.input(providers.Chat); got != prompt {
		t.Errorf("as chat %d bytes, want %d", got, prompt)
	}
	if c := f.completions(providers.Rerank); c != 0 {
		t.Errorf("a rerank generates %d completions", c)
	}

	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}], limits: [{per: endpoint, tokens: 100000, window: minute}]}
`))
	req, _ := http.NewRequest("POST", g.url+"/v1/rerank", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The estimate, not max_tokens: (prompt + 4 more queries)/4 + 1 + 4 a document.
	est := (prompt+4*402)/4 + 1 + rerankPairTokens*5
	left, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if left != 100000-est {
		t.Errorf("remaining tokens %d, want %d (an estimate of %d)", left, 100000-est, est)
	}
}

// Anthropic's Messages API and Azure's deployment URLs have no rerank: a rerank
// endpoint on such a backend is refused at its key.
func TestRerankConfigRefusesBackendsWithoutIt(t *testing.T) {
	for _, c := range []struct{ backend, key string }{
		{`claude: {provider: anthropic, base_url: "http://127.0.0.1:1/v1", model: claude-3-5-haiku-latest, api_key: k}`, "endpoints[3].routes[0].backend"},
		{`az: {provider: azure, base_url: "https://x.openai.azure.com", deployment: d, api_key: k}`, "endpoints[3].routes[0].backend"},
	} {
		name := strings.SplitN(c.backend, ":", 2)[0]
		path := writeTemp(t, mockConfig("127.0.0.1:1", "  "+c.backend+"\n", "  - {name: rank, type: rerank, routes: [{backend: "+name+"}]}\n"))
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), "which has no rerank") {
			t.Errorf("%s: %v", name, err)
		}
	}
	path := writeTemp(t, mockConfig("127.0.0.1:1", "", "  - {name: rank, type: reranker, routes: [{backend: up}]}\n"))
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "must be chat, completions, embeddings, rerank or transcriptions") {
		t.Errorf("unknown type: %v", err)
	}
}

// writeTemp writes yaml to a config file of the test's.
func writeTemp(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A rerank endpoint is listed, cached, priced at the backend's input price and
// callable through MLflow's invocation route like any other.
func TestRerankCachePriceListInvoke(t *testing.T) {
	mock, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, `  ranker: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, pricing: {input_per_million: 2, output_per_million: 1000}}
`, `  - {name: rank, type: rerank, routes: [{backend: ranker}], cache: {ttl: 1h}}
`))
	req := func(path, body string) (*http.Response, []byte) {
		t.Helper()
		r, _ := http.NewRequest("POST", g.url+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := io.Copy(&b, resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp, []byte(b.String())
	}
	first, a := req("/v1/rerank", rerankBody)
	second, b := req("/v1/rerank", rerankBody)
	if first.StatusCode != 200 || second.StatusCode != 200 || string(a) != string(b) {
		t.Fatalf("%d %s / %d %s", first.StatusCode, a, second.StatusCode, b)
	}
	if first.Header.Get("X-Tollgate-Cache") != "miss" || second.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Errorf("cache %q then %q, want miss then hit", first.Header.Get("X-Tollgate-Cache"), second.Header.Get("X-Tollgate-Cache"))
	}
	if n := mock.Stats().Requests["/v1/rerank"]; n != 1 {
		t.Errorf("upstream reranks %d, want 1 (the second from the cache)", n)
	}
	var ans rerankAnswer
	if err := json.Unmarshal(a, &ans); err != nil {
		t.Fatal(err)
	}
	// Only the input is priced: a rerank generates nothing.
	want := float64(ans.Usage.TotalTokens) * 2 / 1e6
	if got := counterValue(t, g.Server, "tollgate_cost_usd_total", "endpoint", "rank"); got < want*0.999 || got > want*1.001 {
		t.Errorf("cost %v, want %v", got, want)
	}

	inv, raw := req("/endpoints/rank/invocations", `{"query":"limits","documents":["limits apply","no"]}`)
	if err := json.Unmarshal(raw, &ans); err != nil || inv.StatusCode != 200 || len(ans.Results) != 2 || ans.Results[0].Index != 0 {
		t.Errorf("invocation: %d %s", inv.StatusCode, raw)
	}

	resp, err := http.Get(g.url + "/v1/models/rank")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/v1/models/rank: %d", resp.StatusCode)
	}
}

// Each rerank path is its own server span route; the upstream span is the rerank
// operation on the backend's model.
func TestRerankSpans(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g, exp := startTracedGateway(t, strings.Replace(mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}]}
`), "backends:", "tracing: {exporter: otlp-grpc, sample_ratio: 1}\nbackends:", 1))
	for i, path := range []string{"/v1/rerank", "/v2/rerank", "/rerank"} {
		id := "rr-" + strconv.Itoa(i)
		r, _ := http.NewRequest("POST", g.url+path, strings.NewReader(rerankBody))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		spans := requestSpans(t, g, exp, id)
		server := spans["POST "+path]
		if len(server) != 1 {
			t.Fatalf("%s: spans %v", path, keys(spans))
		}
		if v, _ := attr(server[0].Snapshot(), "http.route"); v.AsString() != path {
			t.Errorf("%s: http.route %q", path, v.Emit())
		}
		up := spans["rerank up-model"]
		if len(up) != 1 {
			t.Fatalf("%s: no upstream span in %v", path, keys(spans))
		}
		if v, _ := attr(up[0].Snapshot(), "gen_ai.operation.name"); v.AsString() != "rerank" {
			t.Errorf("%s: gen_ai.operation.name %q", path, v.Emit())
		}
	}
}
