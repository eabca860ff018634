package mockllm

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// rerankResp is vLLM's RerankResponse.
type rerankResp struct {
	ID    string `json:"id"`
	Model string `json:"model"`
	Usage struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
	Results []struct {
		Index    int `json:"index"`
		Document struct {
			Text       string          `json:"text"`
			MultiModal json.RawMessage `json:"multi_modal"`
		} `json:"document"`
		RelevanceScore float64 `json:"relevance_score"`
	} `json:"results"`
}

// scoreResp is vLLM's ScoreResponse.
type scoreResp struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Data    []struct {
		Index  int     `json:"index"`
		Object string  `json:"object"`
		Score  float64 `json:"score"`
	} `json:"data"`
	Usage usage `json:"usage"`
}

// errResp is vLLM's ErrorResponse.
type errResp struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    int     `json:"code"`
	} `json:"error"`
}

// logistic is relevance's squashing, written out again so the tests check the
// documented formula rather than the code.
func logistic(x float64) float64 { return 1 / (1 + math.Exp(4-8*x)) }

// The query has three distinct words (capital, of, france); each document's score is
// the logistic of f + d/4, f the share of those words it holds, d the share of its
// words that are query words.
const rerankBody = `{"model":"mock-1","query":"capital of France","documents":["Horses and cows are both animals",` +
	`"The capital of France is Paris.","The capital of China is Beijing.","France"]}`

var rerankWant = []struct {
	index int
	score float64
}{
	{1, logistic(1 + 3.0/6/4)},     // every query word; 3 of its 6 words
	{2, logistic(2.0/3 + 2.0/6/4)}, // capital, of; 2 of 6
	{3, logistic(1.0/3 + 1.0/4)},   // france; its only word
	{0, logistic(0)},               // nothing shared
}

// rerankTokens is the usage of rerankBody: each pair counts the query's 17 bytes (5
// tokens) and its document's (32, 31, 32 and 6 bytes: 8, 8, 8 and 2 tokens).
const rerankTokens = 4*5 + 8 + 8 + 8 + 2

func TestRerankRoutes(t *testing.T) {
	h := start(t, Options{})
	var first []byte
	for _, path := range []string{"/rerank", "/v1/rerank", "/v2/rerank"} {
		t.Run(path, func(t *testing.T) {
			resp, b := h.must("POST", path, rerankBody)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			r := decode[rerankResp](t, b)
			if !strings.HasPrefix(r.ID, "rerank-") || len(r.ID) != len("rerank-")+32 || r.Model != "mock-1" || r.Usage.TotalTokens != rerankTokens {
				t.Errorf("id %q model %q total_tokens %d, want rerank-<32 hex>, mock-1, %d", r.ID, r.Model, r.Usage.TotalTokens, rerankTokens)
			}
			if len(r.Results) != len(rerankWant) {
				t.Fatalf("%d results: %s", len(r.Results), b)
			}
			docs := []string{"Horses and cows are both animals", "The capital of France is Paris.", "The capital of China is Beijing.", "France"}
			for i, w := range rerankWant {
				got := r.Results[i]
				if got.Index != w.index || math.Abs(got.RelevanceScore-w.score) > 1e-12 || got.Document.Text != docs[w.index] || string(got.Document.MultiModal) != "null" {
					t.Errorf("result %d: index %d score %v text %q multi_modal %s, want index %d score %v",
						i, got.Index, got.RelevanceScore, got.Document.Text, got.Document.MultiModal, w.index, w.score)
				}
			}
			results := b[bytes.Index(b, []byte(`"results"`)):]
			if first == nil {
				first = results
			} else if !bytes.Equal(results, first) {
				t.Errorf("answer differs from /rerank's:\n%s\n%s", results, first)
			}
		})
	}
}

// TestRerankExactAnswer pins the answer's bytes: vLLM's RerankResponse as its
// model_dump writes it (id, model, usage, results; a document's text and its
// multi_modal null), the id taken from X-Request-Id as vLLM's _base_request_id does.
func TestRerankExactAnswer(t *testing.T) {
	h := start(t, Options{})
	_, b := h.must("POST", "/rerank", `{"query":"capital of France","documents":["France","The capital of France is Paris."]}`, "X-Request-Id", "req-1")
	want := `{"id":"rerank-req-1","model":"mock-1","usage":{"total_tokens":20},"results":[` +
		`{"index":1,"document":{"text":"The capital of France is Paris.","multi_modal":null},"relevance_score":0.9933071490757153},` +
		`{"index":0,"document":{"text":"France","multi_modal":null},"relevance_score":0.6607563687658171}]}`
	if string(b) != want {
		t.Errorf("answer\n%s\nwant\n%s", b, want)
	}
}

// vLLM's do_rerank keeps top_n results when top_n > 0 and all of them otherwise
// (`top_n = request.top_n if request.top_n > 0 else len(final_res_batch)`): a
// negative top_n is not refused.
func TestRerankTopN(t *testing.T) {
	h := start(t, Options{})
	for _, tc := range []struct {
		name, member string
		want         int
	}{
		{"absent returns all", "", 4},
		{"0 returns all", `"top_n":0`, 4},
		{"negative returns all, as vLLM", `"top_n":-1`, 4},
		{"2 keeps the two best", `"top_n":2`, 2},
		{"more than the documents returns all", `"top_n":10`, 4},
		{"a numeric string, as pydantic's lax mode", `"top_n":"1"`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := rerankBody
			if tc.member != "" {
				body = body[:len(body)-1] + "," + tc.member + "}"
			}
			resp, b := h.must("POST", "/rerank", body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			r := decode[rerankResp](t, b)
			if len(r.Results) != tc.want {
				t.Fatalf("%d results, want %d", len(r.Results), tc.want)
			}
			for i := range r.Results {
				if r.Results[i].Index != rerankWant[i].index {
					t.Errorf("result %d is document %d, want %d", i, r.Results[i].Index, rerankWant[i].index)
				}
			}
			if r.Usage.TotalTokens != rerankTokens {
				t.Errorf("total_tokens %d, want every pair's %d", r.Usage.TotalTokens, rerankTokens)
			}
		})
	}
}

// Jina's clients send documents as {"text": ...} objects; the answer's document.text
// is their text, and extra members (return_documents, vLLM's extra parameters) are
// accepted.
func TestRerankDocumentObjects(t *testing.T) {
	h := start(t, Options{})
	body := `{"query":"capital of France","documents":[{"text":"France","id":"d0"},"Paris is a city",{"text":"The capital of France is Paris.\n"}],` +
		`"return_documents":true,"priority":0,"use_activation":true,"softmax":null,"activation":null,"mm_processor_kwargs":{},"truncate_prompt_tokens":null}`
	resp, b := h.must("POST", "/v1/rerank", body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	r := decode[rerankResp](t, b)
	got := make([]string, len(r.Results))
	for i, res := range r.Results {
		got[i] = res.Document.Text
	}
	want := []string{"The capital of France is Paris.\n", "France", "Paris is a city"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("documents %q, want %q", got, want)
	}
}

func TestRankBadRequests(t *testing.T) {
	h := start(t, Options{})
	// A request-shape error is answered by vLLM's RequestValidationError handler
	// (type "Bad Request"); a refusal while serving is a BadRequestError.
	const shape, serving = "Bad Request", "BadRequestError"
	for _, tc := range []struct {
		name, path, body string
		typ, msg         string
	}{
		{"no query", "/rerank", `{"documents":["a"]}`, shape, "query: Field required"},
		{"query not a string", "/rerank", `{"query":1,"documents":["a"]}`, shape, "query: Input should be a valid string"},
		{"no documents", "/rerank", `{"query":"a"}`, shape, "documents: Field required"},
		{"documents not a list", "/rerank", `{"query":"a","documents":"a"}`, shape, "documents: Input should be a valid list of strings or of objects with a text string"},
		{"documents of numbers", "/v2/rerank", `{"query":"a","documents":["a",2]}`, shape, "documents: Input should be a valid list of strings or of objects with a text string"},
		{"a document object without text", "/v1/rerank", `{"query":"a","documents":[{"id":"x"}]}`, shape, "documents: Input should be a valid list of strings or of objects with a text string"},
		{"a multimodal object", "/rerank", `{"query":"a","documents":{"content":[{"type":"text","text":"a"}]}}`, shape, "documents: Input should be a valid list of strings or of objects with a text string"},
		{"top_n not an integer", "/rerank", `{"query":"a","documents":["a"],"top_n":1.5}`, shape, "top_n: Input should be a valid integer"},
		{"top_n null", "/rerank", `{"query":"a","documents":["a"],"top_n":null}`, shape, "top_n: Input should be a valid integer"},
		{"truncate_prompt_tokens below -1", "/rerank", `{"query":"a","documents":["a"],"truncate_prompt_tokens":-2}`, shape, "truncate_prompt_tokens: Input should be greater than or equal to -1"},
		{"malformed JSON", "/rerank", `{"query":"a","documents":["a"]`, shape, "JSON decode error"},
		{"bytes after the object", "/rerank", `{"query":"a","documents":["a"]} x`, shape, "JSON decode error"},
		{"not an object", "/score", `["a"]`, shape, "JSON decode error"},
		{"no documents at all", "/rerank", `{"query":"a","documents":[]}`, serving, "At least one text_pair element must be given"},
		{"no text_1", "/score", `{"text_2":"a"}`, shape, "text_1: Field required"},
		{"no text_2", "/score", `{"text_1":"a"}`, shape, "text_2: Field required"},
		{"text_1 of numbers", "/score", `{"text_1":[1],"text_2":"a"}`, shape, "text_1: Input should be a valid string or list of strings"},
		{"text_2 a number", "/v1/score", `{"text_1":"a","text_2":2}`, shape, "text_2: Input should be a valid string or list of strings"},
		{"2:3", "/score", `{"text_1":["a","b"],"text_2":["a","b","c"]}`, serving, "Input lengths must be either 1:1, 1:N or N:N"},
		{"N:1", "/score", `{"text_1":["a","b"],"text_2":"a"}`, serving, "Input lengths must be either 1:1, 1:N or N:N"},
		{"empty text_1", "/score", `{"text_1":[],"text_2":"a"}`, serving, "At least one text element must be given"},
		{"empty text_2", "/score", `{"text_1":"a","text_2":[]}`, serving, "At least one text_pair element must be given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, tc.body)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			e := decode[errResp](t, b)
			if e.Error.Type != tc.typ || e.Error.Message != tc.msg || e.Error.Param != nil || e.Error.Code != 400 {
				t.Errorf("error %s, want type %q message %q param null", b, tc.typ, tc.msg)
			}
		})
	}
	t.Run("Content-Type not JSON", func(t *testing.T) {
		resp, b := h.must("POST", "/rerank", `{"query":"a","documents":["a"]}`, "Content-Type", "text/plain")
		if resp.StatusCode != 400 || !bytes.Contains(b, []byte("Only 'application/json' is allowed")) {
			t.Errorf("status %d: %s", resp.StatusCode, b)
		}
	})
	t.Run("GET", func(t *testing.T) {
		resp, _ := h.must("GET", "/score", "")
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Errorf("status %d Allow %q, want 405 POST", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
}

// vLLM validates the body (pydantic) first, then the model (_check_model, 404), then
// the pairs (validate_score_input) and their length.
func TestRankWrongModel(t *testing.T) {
	h := start(t, Options{MaxModelLen: 4})
	for _, tc := range []struct {
		name, path, body string
		status           int
	}{
		{"rerank", "/rerank", `{"model":"other","query":"a","documents":["a"]}`, 404},
		{"score", "/score", `{"model":"other","text_1":"a","text_2":"a"}`, 404},
		{"before the pairs are matched", "/score", `{"model":"other","text_1":["a","b"],"text_2":["a","b","c"]}`, 404},
		{"before the empty documents", "/rerank", `{"model":"other","query":"a","documents":[]}`, 404},
		{"before the length", "/rerank", `{"model":"other","query":"a","documents":["` + strings.Repeat("a", 40) + `"]}`, 404},
		{"after the body's shape", "/rerank", `{"model":"other","query":"a","documents":"a"}`, 400},
		{"the served name", "/rerank", `{"model":"mock-1","query":"a","documents":["a"]}`, 200},
		{"null: the served model", "/score", `{"model":null,"text_1":"a","text_2":"a"}`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d: %s, want %d", resp.StatusCode, b, tc.status)
			}
			if tc.status != 404 {
				return
			}
			if want := `{"error":{"message":"The model ` + "`other`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`; string(b) != want {
				t.Errorf("body %s, want %s", b, want)
			}
		})
	}
}

func TestRankFaults(t *testing.T) {
	for _, path := range []string{"/rerank", "/score"} {
		body := rerankBody
		if path == "/score" {
			body = `{"text_1":"a","text_2":["a","b"]}`
		}
		t.Run(path+" error rate", func(t *testing.T) {
			h := start(t, Options{ErrorRate: 1})
			resp, b := h.must("POST", path, body)
			want := `{"error":{"message":"mockllm: injected error (error-rate)","type":"InternalServerError","param":null,"code":500}}`
			if resp.StatusCode != 500 || string(b) != want {
				t.Errorf("status %d: %s", resp.StatusCode, b)
			}
			// As embeddings: a refused request is not drawn for, a drawn one counts no
			// tokens.
			h.must("POST", path, `{}`)
			if st := h.s.Stats(); st.InjectedErrors != 1 || st.PromptTokens != 0 {
				t.Errorf("injected %d prompt tokens %d, want 1 and 0", st.InjectedErrors, st.PromptTokens)
			}
		})
		t.Run(path+" x-mock headers", func(t *testing.T) {
			var log sleepLog
			h := start(t, Options{TTFT: 40 * time.Millisecond, Sleep: log.sleep})
			resp, b := h.must("POST", path, body, "x-mock-status", "503", "x-mock-retry-after", "3")
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "3" || !bytes.Contains(b, []byte(`"type":"ServiceUnavailableError"`)) {
				t.Errorf("x-mock-status: %d %s", resp.StatusCode, b)
			}
			resp, b = h.must("POST", path, body, "x-mock-garbage", "1")
			if resp.StatusCode != 200 || json.Valid(b) {
				t.Errorf("x-mock-garbage: %d %s", resp.StatusCode, b)
			}
			log.take()
			if resp, _ := h.must("POST", path, body); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if d := log.take(); len(d) != 1 || d[0] != 40*time.Millisecond {
				t.Errorf("waits %v, want the --ttft's [40ms]", d)
			}
			h.must("POST", path, body, "x-mock-ttft", "7", "x-mock-delay", "5ms")
			if d := log.take(); len(d) != 2 || d[0] != 5*time.Millisecond || d[1] != 7*time.Millisecond {
				t.Errorf("waits %v, want x-mock-delay's then x-mock-ttft's [5ms 7ms]", d)
			}
		})
	}
}

// A pair may fill the context (nothing is generated), as vLLM's _validate_input allows
// pooling inputs; one token more is refused in its words, "embedding generation" for
// rerank (its table of operations names score and classification only).
// truncate_prompt_tokens keeps that many tokens of each pair, -1 the whole context.
func TestRankMaxModelLen(t *testing.T) {
	h := start(t, Options{MaxModelLen: 10})
	q20 := strings.Repeat("q", 20) // 5 tokens
	d20 := strings.Repeat("d", 20) // 5 tokens
	d24 := strings.Repeat("d", 24) // 6 tokens
	over := `"query":"` + q20 + `","documents":["a","` + d24 + `"]`
	for _, tc := range []struct {
		name, path, body string
		status           int
		msg              string
		tokens           int
	}{
		{"rerank filling the context", "/rerank", `{"query":"` + q20 + `","documents":["` + d20 + `"]}`, 200, "", 10},
		{"rerank over it", "/rerank", `{` + over + `}`, 400,
			"This model's maximum context length is 10 tokens. However, you requested 11 tokens in the input for embedding generation. Please reduce the length of the input.", 0},
		{"score over it", "/score", `{"text_1":"` + q20 + `","text_2":["a","` + d24 + `"]}`, 400,
			"This model's maximum context length is 10 tokens. However, you requested 11 tokens in the input for score. Please reduce the length of the input.", 0},
		{"truncate_prompt_tokens", "/rerank", `{` + over + `,"truncate_prompt_tokens":8}`, 200, "", 5 + 1 + 8},
		{"truncate_prompt_tokens -1", "/rerank", `{` + over + `,"truncate_prompt_tokens":-1}`, 200, "", 5 + 1 + 10},
		{"truncate_prompt_tokens over the context", "/score", `{"text_1":"a","text_2":"b","truncate_prompt_tokens":11}`, 400,
			"truncate_prompt_tokens value (11) is greater than max_model_len (10). Please, select a smaller truncation size.", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if tc.status == 200 {
				if r := decode[rerankResp](t, b); r.Usage.TotalTokens != tc.tokens {
					t.Errorf("total_tokens %d, want %d", r.Usage.TotalTokens, tc.tokens)
				}
				return
			}
			if e := decode[errResp](t, b); e.Error.Type != "BadRequestError" || e.Error.Message != tc.msg || e.Error.Param != nil {
				t.Errorf("error %s, want BadRequestError %q", b, tc.msg)
			}
		})
	}
}

func TestScorePairs(t *testing.T) {
	h := start(t, Options{})
	paris, china := "The capital of France is Paris.", "The capital of China is Beijing."
	for _, tc := range []struct {
		name, body string
		scores     []float64
		tokens     int
	}{
		{"1:1 strings", `{"text_1":"capital of France","text_2":"` + paris + `"}`, []float64{rerankWant[0].score}, 5 + 8},
		{"1:1 lists", `{"text_1":["capital of France"],"text_2":["` + china + `"]}`, []float64{rerankWant[1].score}, 5 + 8},
		{"1:N broadcasts text_1", `{"text_1":"capital of France","text_2":["` + china + `","` + paris + `","horses"]}`,
			[]float64{rerankWant[1].score, rerankWant[0].score, logistic(0)}, 3*5 + 8 + 8 + 2},
		{"N:N pairs in order", `{"text_1":["capital of France","horses"],"text_2":["` + paris + `","Horses run"]}`,
			[]float64{rerankWant[0].score, logistic(1 + 0.5/2)}, 5 + 8 + 2 + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/score", tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			r := decode[scoreResp](t, b)
			if !strings.HasPrefix(r.ID, "score-") || r.Object != "list" || r.Created != fixedNow().Unix() || r.Model != "mock-1" {
				t.Errorf("head %s", b)
			}
			if len(r.Data) != len(tc.scores) {
				t.Fatalf("%d scores: %s", len(r.Data), b)
			}
			for i, d := range r.Data {
				if d.Index != i || d.Object != "score" || math.Abs(d.Score-tc.scores[i]) > 1e-12 {
					t.Errorf("data %d: %+v, want index %d score %v", i, d, i, tc.scores[i])
				}
			}
			if u := r.Usage; u.PromptTokens != tc.tokens || u.TotalTokens != tc.tokens || u.CompletionTokens != 0 {
				t.Errorf("usage %+v, want %d prompt tokens", u, tc.tokens)
			}
		})
	}
	t.Run("exact answer", func(t *testing.T) {
		_, b := h.must("POST", "/v1/score", `{"text_1":"capital of France","text_2":["France","cows"]}`, "X-Request-Id", "req-2")
		want := `{"id":"score-req-2","object":"list","created":1700000000,"model":"mock-1","data":[` +
			`{"index":0,"object":"score","score":0.6607563687658171},{"index":1,"object":"score","score":0.01798620996209156}],` +
			`"usage":{"prompt_tokens":13,"total_tokens":13,"completion_tokens":0,"prompt_tokens_details":null}}`
		if string(b) != want {
			t.Errorf("answer\n%s\nwant\n%s", b, want)
		}
	})
}

// With --api anthropic only the Messages API is served: the scoring routes are
// unknown paths there, answered in Anthropic's error shape.
func TestRankAnthropicNotFound(t *testing.T) {
	h := start(t, Options{API: APIAnthropic})
	for _, path := range []string{"/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/score"} {
		resp, b := h.must("POST", path, `{"query":"a","documents":["a"],"text_1":"a","text_2":"a"}`)
		if resp.StatusCode != 404 || !bytes.Contains(b, []byte(`"type":"not_found_error"`)) {
			t.Errorf("%s: status %d %s, want Anthropic's 404", path, resp.StatusCode, b)
		}
	}
	if got := h.s.Stats().Requests["other"]; got != 5 {
		t.Errorf("requests counted as other: %d, want 5", got)
	}
}

// vLLM's AuthenticationMiddleware guards paths under /v1 only: /rerank, /v2/rerank
// and /score are served without the key.
func TestRankAPIKey(t *testing.T) {
	h := start(t, Options{APIKey: "sk-test"})
	for path, want := range map[string]int{"/rerank": 200, "/v2/rerank": 200, "/score": 200, "/v1/rerank": 401, "/v1/score": 401} {
		resp, b := h.must("POST", path, `{"query":"a","documents":["a"],"text_1":"a","text_2":"a"}`)
		if resp.StatusCode != want {
			t.Errorf("%s without a key: status %d %s, want %d", path, resp.StatusCode, b, want)
		}
	}
	if resp, b := h.must("POST", "/v1/rerank", `{"query":"a","documents":["a"]}`, "Authorization", "Bearer sk-test"); resp.StatusCode != 200 {
		t.Errorf("/v1/rerank with the key: status %d %s", resp.StatusCode, b)
	}
}

// As embeddings: /metrics counts a scoring request's prompt tokens and its route, and
// nothing generated.
func TestRankMetrics(t *testing.T) {
	h := start(t, Options{})
	h.must("POST", "/v2/rerank", rerankBody)
	h.must("POST", "/score", `{"text_1":"capital of France","text_2":"France"}`)
	fams := scrape(t, h)
	m := map[string]string{"model_name": "mock-1", "engine": "0"}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"vllm:prompt_tokens_total", m, rerankTokens + 5 + 2},
		{"vllm:generation_tokens_total", m, 0},
		{"vllm:num_requests_running", m, 0},
		{"mockllm_requests_total", map[string]string{"route": "/v2/rerank"}, 1},
		{"mockllm_requests_total", map[string]string{"route": "/score"}, 1},
		{"mockllm_requests_total", map[string]string{"route": "/rerank"}, 0},
	} {
		if got := value(t, fams, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// A scoring request holds a MaxNumSeqs slot while it runs, and waits for one, counted
// in vllm:num_requests_waiting, when none is free.
func TestRankQueues(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 2)
	h := start(t, Options{MaxNumSeqs: 1, TTFT: time.Millisecond, Sleep: func(time.Duration) {
		entered <- struct{}{}
		<-gate
	}})
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	send := func(path, body string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := h.do("POST", path, body)
			if err != nil {
				t.Error(err)
				return
			}
			codes <- resp.StatusCode
		}()
	}
	send("/rerank", rerankBody)
	<-entered
	if st := h.s.Stats(); st.Running != 1 {
		t.Fatalf("running %d, want 1", st.Running)
	}
	send("/score", `{"text_1":"a","text_2":"a"}`)
	deadline := time.Now().Add(10 * time.Second)
	for h.s.Stats().Waiting != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the second request never queued")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("status %d", c)
		}
	}
	if st := h.s.Stats(); st.Running != 0 || st.Waiting != 0 {
		t.Errorf("running %d waiting %d after both", st.Running, st.Waiting)
	}
}

func TestRelevance(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := &state{s: s}
	score := func(q, d string) float64 {
		qb, _ := json.Marshal(q)
		db, _ := json.Marshal(d)
		return st.relevance(qb, db)
	}
	for _, tc := range []struct {
		name, q, better, worse string
	}{
		{"more query words", "red fox jumps", "the red fox", "the red dog"},
		{"any shared word beats none", "red fox jumps", "red " + strings.Repeat("x ", 200), "blue dog"},
		{"the same words, fewer others", "red fox", "red fox", "red fox and a dog"},
		{"case is ignored", "Red FOX", "red fox", "red dog"},
		{"punctuation separates words", "fox-hunt", "hunt, fox!", "foxhunt"},
		{"a repeated query word counts once", "fox fox fox dog", "dog fox", "fox fox fox"},
		{"escapes are decoded", "café\ncrème", "CAFÉ café crème", "cafe creme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, w := score(tc.q, tc.better), score(tc.q, tc.worse)
			if !(b > w) || b <= 0 || b >= 1 || w <= 0 || w >= 1 {
				t.Errorf("%q: %q scores %v, %q %v", tc.q, tc.better, b, tc.worse, w)
			}
			if again := score(tc.q, tc.better); again != b {
				t.Errorf("not deterministic: %v then %v", b, again)
			}
		})
	}
	// The strings as a client may escape them.
	if b, w := st.relevance([]byte(`"caf\u00e9\ncr\u00e8me"`), []byte(`"Caf\u00e9 cr\u00e8me"`)), st.relevance([]byte(`"caf\u00e9\ncr\u00e8me"`), []byte(`"ncr"`)); b != logistic(1+1.0/3) || w != logistic(0) {
		t.Errorf("escaped: %v and %v, want %v and %v", b, w, logistic(1+1.0/3), logistic(0))
	}
	if got := score("", "anything"); got != logistic(0) {
		t.Errorf("a query without words scores %v, want %v", got, logistic(0))
	}
}

// FuzzRank feeds arbitrary bodies to the scoring routes: the server must not panic,
// must answer 200, 400 or 404 in JSON, and a rerank answer's results must be sorted.
func FuzzRank(f *testing.F) {
	for _, s := range []string{
		rerankBody,
		`{"query":"caf\u00e9 \"x\"","documents":[{"text":"\u00e9\n"},"a\\b"],"top_n":"1","truncate_prompt_tokens":-1}`,
		`{"text_1":["a","b"],"text_2":["c","d"],"model":null}`,
		`{"text_1":"a","text_2":[]}`,
		`{"query":"","documents":[""]}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	s, err := New(Options{MaxModelLen: 64, Now: fixedNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, score bool) {
		path := "/rerank"
		if score {
			path = "/score"
		}
		ctx := requestCtx(path, string(body))
		s.handle(ctx)
		defer ctx.Response.Reset()
		out := checkAnswer(t, ctx, body)
		if score || ctx.Response.StatusCode() != 200 {
			return
		}
		var r rerankResp
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(r.Results); i++ {
			if r.Results[i].RelevanceScore > r.Results[i-1].RelevanceScore {
				t.Fatalf("results out of order: %s", out)
			}
		}
	})
}
