package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// scoreAnswer is vLLM's score answer.
type scoreAnswer struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Index  int     `json:"index"`
		Object string  `json:"object"`
		Score  float64 `json:"score"`
	} `json:"data"`
	Usage struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		TotalTokens      int64 `json:"total_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
	} `json:"usage"`
}

// scorePost posts body to url with the header lines given as name, value pairs.
func scorePost(t *testing.T, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, raw
}

// scoreMemberPairs are the four pairs of members vLLM's score API takes.
var scoreMemberPairs = [][2]string{{"queries", "documents"}, {"queries", "items"}, {"data_1", "data_2"}, {"text_1", "text_2"}}

// A rerank endpoint serves vLLM's score API at /score and /v1/score, in each of its
// four request shapes and each pairing: the body sent to the backend's
// {base_url}/score with only model rewritten, the answer passed on, its
// prompt_tokens counted as input and nothing as output.
func TestScoreEndToEnd(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}]}
`))
	pairings := []struct {
		name, left, right string
		pairs             int
	}{
		{"1:1", `"which gateway limits tokens"`, `"a gateway limits tokens"`, 1},
		{"1:N", `"which gateway limits tokens"`, `["bananas","a gateway limits tokens","tokens"]`, 3},
		{"N:N", `["which gateway","what fruit"]`, `["a gateway","a banana"]`, 2},
	}
	var total int64
	for _, path := range []string{"/score", "/v1/score"} {
		for _, sides := range scoreMemberPairs {
			for _, p := range pairings {
				name := path + " " + sides[0] + "/" + sides[1] + " " + p.name
				body := `{"model":"rank","` + sides[0] + `":` + p.left + `,"` + sides[1] + `":` + p.right + `,"truncate_prompt_tokens":-1}`
				resp, raw := scorePost(t, g.url+path, body)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: %d %s", name, resp.StatusCode, raw)
				}
				var a scoreAnswer
				if err := json.Unmarshal(raw, &a); err != nil {
					t.Fatalf("%s: %v in %s", name, err, raw)
				}
				if !strings.HasPrefix(a.ID, "score-") || a.Object != "list" || len(a.Data) != p.pairs {
					t.Errorf("%s: answer %s, want a list of %d scores", name, raw, p.pairs)
				}
				if a.Usage.PromptTokens <= 0 || a.Usage.CompletionTokens != 0 {
					t.Errorf("%s: usage %+v", name, a.Usage)
				}
				total += a.Usage.PromptTokens
				st := mock.Stats()
				if st.LastPath != "/v1/score" {
					t.Errorf("%s went upstream to %s, want the base URL's /score", name, st.LastPath)
				}
				if want := strings.Replace(body, `"model":"rank"`, `"model":"up-model"`, 1); string(st.LastBody) != want {
					t.Errorf("%s: upstream got %s, want %s", name, st.LastBody, want)
				}
				if resp.Header.Get("X-Tollgate-Backend") != "up" {
					t.Errorf("%s: backend %q", name, resp.Header.Get("X-Tollgate-Backend"))
				}
			}
		}
	}
	if got := counterValue(t, g.Server, "tollgate_tokens_total", "endpoint", "rank", "type", "input"); int64(got) != total {
		t.Errorf("input tokens counted %v, want the answers' prompt_tokens %d", got, total)
	}
	if got := counterValue(t, g.Server, "tollgate_tokens_total", "endpoint", "rank", "type", "output"); got != 0 {
		t.Errorf("output tokens counted %v, want none", got)
	}
	if got := counterValue(t, g.Server, "tollgate_requests_total", "endpoint", "rank", "backend", "up", "code", "200"); got != 24 {
		t.Errorf("requests counted %v, want 24", got)
	}

	// The official SDK's own request method, as a client without a score API calls
	// it: the path is relative to its base URL, /v1.
	var a scoreAnswer
	c := g.client()
	if err := c.Post(context.Background(), "score", map[string]any{"model": "rank", "text_1": "gateway", "text_2": []string{"a gateway", "fruit"}}, &a); err != nil {
		t.Fatal(err)
	}
	if len(a.Data) != 2 || a.Data[0].Score <= a.Data[1].Score {
		t.Errorf("SDK score: %+v", a)
	}
}

// scoreLimitedGateway is a gateway with one rerank endpoint, rank, under a token limit
// of 10^6 a day (a refill of under 12 tokens a second), in front of upstream.
func scoreLimitedGateway(t *testing.T, upstream string) *gw {
	t.Helper()
	return startGateway(t, mockConfig(upstream, "", `  - {name: rank, type: rerank, routes: [{backend: up}], limits: [{per: endpoint, tokens: 1000000, window: day}]}
`))
}

// scoreCharged posts body to path and returns the tokens the endpoint's limit was
// charged, read from x-ratelimit-remaining-tokens: the limit less this estimate
// when the bucket was full.
func scoreCharged(t *testing.T, g *gw, path, body string) int64 {
	t.Helper()
	resp, raw := scorePost(t, g.url+path, body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	left, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if err != nil {
		t.Fatalf("no remaining tokens header: %v", resp.Header)
	}
	return 1000000 - left
}

// A score call's estimate counts each pair as one input: the left item once per
// pair it is in (1:N: N times), the right items, 4 bytes a token, plus 4 tokens a
// pair; nothing generated.
func TestScoreEstimate(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{})
	q := `"` + strings.Repeat("q", 398) + `"`
	d := `"` + strings.Repeat("d", 38) + `"`
	right := `[` + d + `,` + d + `,"x","y","z"]`
	for _, c := range []struct {
		name, body string
		want       int64
	}{
		{"1:N: the left item once a pair", `{"model":"rank","queries":` + q + `,"documents":` + right + `}`,
			(int64(len(q))*5+int64(len(right)))/4 + 1 + rerankPairTokens*5},
		{"1:N from a list of one", `{"model":"rank","text_1":[` + q + `],"text_2":` + right + `}`,
			(int64(len(q)+2)*5+int64(len(right)))/4 + 1 + rerankPairTokens*5},
		{"N:N: each item once", `{"model":"rank","data_1":[` + q + `,` + q + `],"data_2":[` + d + `,` + d + `]}`,
			int64(2*len(q)+3+2*len(d)+3)/4 + 1 + rerankPairTokens*2},
		{"1:1", `{"model":"rank","queries":` + q + `,"items":` + d + `}`,
			int64(len(q)+len(d))/4 + 1 + rerankPairTokens},
		{"two pairs: the union's first is read", `{"model":"rank","text_1":` + q + `,"text_2":` + right + `,"queries":"q","documents":["d"],"messages":` + q + `}`,
			int64(len(`"q"`)+len(`["d"]`))/4 + 1 + rerankPairTokens},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := scoreLimitedGateway(t, addr)
			if got := scoreCharged(t, g, "/score", c.body); got != c.want {
				t.Errorf("charged %d tokens, want %d", got, c.want)
			}
		})
	}
	var f fields
	if e := scanBody([]byte(`{"model":"rank","queries":"q","documents":["a","b"],"max_tokens":1000}`), &f); e != nil {
		t.Fatal(e.message)
	}
	if c := f.completions(providers.Score); c != 0 {
		t.Errorf("a score generates %d completions", c)
	}
}

// Multimodal sides (vLLM's {"content": [...]}, alone or in a list) are counted as a
// rerank's are: an image 1,600 tokens wherever it is, never its base64 bytes; an image
// query once per pair; a multimodal object alone on the right one item a part. The
// body reaches the upstream untouched but for model.
func TestScoreMultimodalEstimate(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []byte
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		got = append(got[:0], ctx.PostBody()...)
		mu.Unlock()
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"score-1","object":"list","created":1,"model":"up-model","data":[{"index":0,"object":"score","score":0.5}],"usage":{"prompt_tokens":900,"total_tokens":900,"completion_tokens":0}}`)
	})
	image := func(i int) string {
		return `{"type":"image_url","image_url":{"url":"https://example.com/` + strconv.Itoa(i) + `.png"}}`
	}
	var parts []string
	for i := range 8 {
		parts = append(parts, image(i))
	}
	big := `{"content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 40000) + `"}}]}`
	query := strings.Repeat("q", 4000)
	for _, c := range []struct {
		name, body string
		min, max   int64
	}{
		{"an image query with 8 texts", `{"model":"rank","queries":` + big + `,"documents":["a","b","c","d","e","f","g","h"]}`,
			8 * 1600, 2 * 8 * 1600},
		{"a text query with 8 images in one object", `{"model":"rank","text_1":"` + query + `","text_2":{"content":[` + strings.Join(parts, ",") + `]}}`,
			8*1000 + 8*1600, 2 * (8*1000 + 8*1600)},
		{"a list mixing strings and objects", `{"model":"rank","data_1":"` + query + `","data_2":["a",{"content":[` + image(1) + `,{"type":"text","text":"b"}]}]}`,
			2*1000 + 1600, 2 * (2*1000 + 1600)},
		{"N:N image pairs", `{"model":"rank","queries":[{"content":[` + image(1) + `]},{"content":[` + image(2) + `]}],"items":[{"content":[` + image(3) + `]},{"content":[` + image(4) + `]}]}`,
			4 * 1600, 4*1600 + 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := scoreLimitedGateway(t, addr)
			charged := scoreCharged(t, g, "/v1/score", c.body)
			if charged < c.min || charged > c.max {
				t.Errorf("charged %d tokens, want %d to %d", charged, c.min, c.max)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := strings.Replace(c.body, `"model":"rank"`, `"model":"up-model"`, 1); string(got) != want {
				t.Errorf("upstream got %.200s, want the body as sent", got)
			}
		})
	}
}

// Counts vLLM refuses (2:3) are passed on: the upstream's 400 goes to the client,
// and the estimate charged for it is refunded, as any error's.
func TestScoreMismatchRefunded(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{})
	g := scoreLimitedGateway(t, addr)
	long := `"` + strings.Repeat("w", 4000) + `"`
	resp, raw := scorePost(t, g.url+"/score", `{"model":"rank","queries":[`+long+`,`+long+`],"documents":[`+long+`,`+long+`,`+long+`]}`)
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || resp.StatusCode != 400 || e.Error.Message != "Input lengths must be either 1:1, 1:N or N:N" {
		t.Fatalf("2:3: %d %s, want vLLM's 400", resp.StatusCode, raw)
	}
	if n := upstreamCalls(mock, "/v1/score"); n != 1 {
		t.Errorf("upstream score calls %d, want 1 (the refusal is the upstream's)", n)
	}
	// The bucket is full again: the next call is charged its own estimate alone.
	if got, want := scoreCharged(t, g, "/score", `{"model":"rank","queries":"q","documents":"d"}`), int64(len(`"q""d"`))/4+1+rerankPairTokens; got != want {
		t.Errorf("after the refused call the next is charged %d tokens of the limit, want %d (the refused one's ~5,000 refunded)", got, want)
	}
}

// A score call naming a chat or embeddings endpoint, and a chat call naming a rerank
// endpoint, are OpenAI's model_not_supported naming the URL that serves the model;
// an unknown model, a malformed body and another method are refused as on any path.
func TestScoreRefusals(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}]}
`))
	for _, c := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/score", `{"model":"chat","text_1":"q","text_2":"d"}`, 400, "The model `chat` is a chat endpoint; call /v1/chat/completions."},
		{"/v1/score", `{"model":"embed","queries":"q","documents":["d"]}`, 400, "The model `embed` is an embeddings endpoint; call /v1/embeddings."},
		{"/v1/chat/completions", `{"model":"rank","messages":[{"role":"user","content":"hi"}]}`, 400, "The model `rank` is a rerank endpoint; call /v1/rerank."},
		{"/score", `{"model":"nope","text_1":"q","text_2":"d"}`, 404, "model_not_found"},
		{"/v1/score", `{"model":"rank","text_1":"q","text_2":"d"`, 400, "invalid_json"},
		{"/score", `["rank"]`, 400, "invalid_request_error"},
		{"/score", `{"text_1":"q","text_2":"d"}`, 400, "model"},
	} {
		resp, raw := scorePost(t, g.url+c.path, c.body)
		if resp.StatusCode != c.status || !strings.Contains(string(raw), c.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.path, c.body, resp.StatusCode, raw, c.status, c.want)
		}
	}
	resp, err := http.Get(g.url + "/score")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /score: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if n := upstreamCalls(mock, "/v1/score") + upstreamCalls(mock, "/v1/chat/completions"); n != 0 {
		t.Errorf("%d refused calls went upstream", n)
	}
}

// A score answer is cached as any answer, /score and /v1/score sharing entries; a
// score and a rerank of the same endpoint never serve each other, even for a body
// both APIs take (vLLM's rerank ignores queries, its score API query): their shapes
// differ. So in memory and in Redis, for every caller's entries and shared ones.
// Redis gets 5 s (limiter.timeout): a store slowed past the default 50 ms on a loaded
// machine is counted an error, not stored, and the test would wait for it in vain.
func TestScoreCache(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	both := `{"model":"rank","query":"which gateway","queries":"which gateway","documents":["a gateway","a banana"]}`
	for i, c := range []struct {
		name, cache, auth string
		keys              [][2]string // header name, value of each caller
	}{
		{"memory", "{ttl: 1h}", "", [][2]string{{"", ""}}},
		{"memory with keys", "{ttl: 1h}", "auth: {keys: [{name: a, key: sk-score-a}, {name: b, key: sk-score-b}]}\n",
			[][2]string{{"Authorization", "Bearer sk-score-a"}, {"Authorization", "Bearer sk-score-b"}}},
		{"memory shared", "{ttl: 1h, shared: true}", "auth: {keys: [{name: a, key: sk-score-a}]}\n", [][2]string{{"Authorization", "Bearer sk-score-a"}}},
		{"redis", "{ttl: 1h, store: redis}", "limiter: {redis: {url: \"" + rds.URL() + "\"}, timeout: 5s}\n", [][2]string{{"", ""}}},
		{"redis with keys", "{ttl: 1h, store: redis}", "limiter: {redis: {url: \"" + rds.URL() + "\"}, timeout: 5s}\nauth: {keys: [{name: a, key: sk-score-a}]}\n",
			[][2]string{{"Authorization", "Bearer sk-score-a"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mock, addr := startMock(t, mockllm.Options{})
			// Each case its own endpoint name: the Redis cases share one Redis.
			ep := "rank" + strconv.Itoa(i)
			g := startGateway(t, c.auth+mockConfig(addr, "", `  - {name: `+ep+`, type: rerank, routes: [{backend: up}], cache: `+c.cache+`}
`))
			body := strings.Replace(both, `"model":"rank"`, `"model":"`+ep+`"`, 1)
			remote := strings.Contains(c.cache, "redis")
			stored := 0.0
			call := func(path, key, value, want string) []byte {
				t.Helper()
				var hdr []string
				if key != "" {
					hdr = []string{key, value}
				}
				resp, raw := scorePost(t, g.url+path, body, hdr...)
				if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != want {
					t.Fatalf("%s %s: %d cache %q, want %q: %s", path, value, resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), want, raw)
				}
				if want == "miss" && remote {
					stored++
					waitStored(t, g, ep, stored)
				}
				return raw
			}
			for _, k := range c.keys {
				rerank := call("/v1/rerank", k[0], k[1], "miss")
				score := call("/score", k[0], k[1], "miss")
				if !strings.Contains(string(rerank), `"results"`) || !strings.Contains(string(score), `"object":"list"`) {
					t.Fatalf("rerank %s, score %s", rerank, score)
				}
				if again := call("/v1/score", k[0], k[1], "hit"); string(again) != string(score) {
					t.Errorf("/v1/score served %s, want /score's answer", again)
				}
				if again := call("/rerank", k[0], k[1], "hit"); string(again) != string(rerank) {
					t.Errorf("/rerank served %s, want /v1/rerank's answer", again)
				}
			}
			if n, want := upstreamCalls(mock, "/v1/score")+upstreamCalls(mock, "/v1/rerank"), int64(2*len(c.keys)); n != want {
				t.Errorf("upstream calls %d, want %d", n, want)
			}
		})
	}
}

// Each score path is its own server span route; both spans are the score operation
// (the server span too, not its rerank endpoint's operation: an SRE filtering on it
// finds the score calls), the upstream span on the backend's model.
func TestScoreSpans(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g, exp := startTracedGateway(t, strings.Replace(mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}]}
`), "backends:", "tracing: {exporter: otlp-grpc, sample_ratio: 1}\nbackends:", 1))
	for i, path := range []string{"/score", "/v1/score"} {
		id := "sc-" + strconv.Itoa(i)
		resp, raw := scorePost(t, g.url+path, `{"model":"rank","queries":"q","documents":["q","d"]}`, "X-Request-Id", id)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		spans := requestSpans(t, g, exp, id)
		server := spans["POST "+path]
		if len(server) != 1 {
			t.Fatalf("%s: spans %v", path, keys(spans))
		}
		if v, _ := attr(server[0].Snapshot(), "http.route"); v.AsString() != path {
			t.Errorf("%s: http.route %q", path, v.Emit())
		}
		if v, _ := attr(server[0].Snapshot(), "gen_ai.operation.name"); v.AsString() != "score" {
			t.Errorf("%s: the server span's gen_ai.operation.name is %q, want score", path, v.Emit())
		}
		up := spans["score up-model"]
		if len(up) != 1 {
			t.Fatalf("%s: no upstream span in %v", path, keys(spans))
		}
		if v, _ := attr(up[0].Snapshot(), "gen_ai.operation.name"); v.AsString() != "score" {
			t.Errorf("%s: gen_ai.operation.name %q", path, v.Emit())
		}
		if v, _ := attr(up[0].Snapshot(), "gen_ai.usage.input_tokens"); v.AsInt64() <= 0 {
			t.Errorf("%s: gen_ai.usage.input_tokens %q", path, v.Emit())
		}
	}
}
