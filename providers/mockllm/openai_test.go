package mockllm

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestChat(t *testing.T) {
	h := start(t, Options{MaxTokens: 16, Seed: 7})
	cases := []struct {
		name       string
		body       string
		wantN      int    // completion tokens; 0: any natural length
		wantFinish string // "" for either
	}{
		{name: "max_tokens cuts the answer", body: chatBody("hello", `"max_tokens":3`), wantN: 3, wantFinish: "length"},
		{name: "max_completion_tokens wins over max_tokens", body: chatBody("hello", `"max_tokens":9,"max_completion_tokens":2`), wantN: 2, wantFinish: "length"},
		{name: "without max_tokens the answer ends by itself", body: chatBody("hello", ""), wantFinish: "stop"},
		{name: "model may be left out", body: `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}`, wantN: 1, wantFinish: "length"},
		{name: "content parts count as content", body: `{"model":"mock-1","messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}],"max_tokens":2}`, wantN: 2, wantFinish: "length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/chat/completions", tc.body)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			r := decode[chatResp](t, b)
			if !strings.HasPrefix(r.ID, "chatcmpl-") || len(r.ID) != len("chatcmpl-")+32 {
				t.Errorf("id %q", r.ID)
			}
			if r.Object != "chat.completion" || r.Model != "mock-1" || r.Created != fixedNow().Unix() {
				t.Errorf("head: %+v", r)
			}
			if len(r.Choices) != 1 || r.Choices[0].Message == nil || r.Choices[0].Message.Role != "assistant" {
				t.Fatalf("choices: %s", b)
			}
			c := r.Choices[0]
			if string(c.Logprobs) != "null" {
				t.Errorf("logprobs %s", c.Logprobs)
			}
			n := len(strings.Fields(c.Message.Content))
			if tc.wantN > 0 && n != tc.wantN {
				t.Errorf("%d words, want %d: %q", n, tc.wantN, c.Message.Content)
			}
			if n < 8 && tc.wantN == 0 {
				t.Errorf("natural length %d below max-tokens/2", n)
			}
			if tc.wantFinish != "" && *c.FinishReason != tc.wantFinish {
				t.Errorf("finish %q, want %q", *c.FinishReason, tc.wantFinish)
			}
			if tc.wantFinish == "stop" && !strings.HasSuffix(c.Message.Content, ".") {
				t.Errorf("a natural end finishes a sentence: %q", c.Message.Content)
			}
			u := r.Usage
			if u == nil || u.CompletionTokens != n || u.PromptTokens < 1 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage %+v for %d tokens", u, n)
			}
		})
	}
}

func TestPromptTokens(t *testing.T) {
	h := start(t, Options{})
	cases := []struct {
		name    string
		content string
		want    int
	}{
		{"empty content counts one", "", 1},
		{"four bytes a token", strings.Repeat("a", 40), 10},
		{"rounded up", strings.Repeat("a", 41), 11},
		{"escapes count decoded", strings.Repeat("\n", 8), 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, b := h.must("POST", "/v1/chat/completions", chatBody(tc.content, `"max_tokens":1`))
			if got := decode[chatResp](t, b).Usage.PromptTokens; got != tc.want {
				t.Errorf("prompt_tokens %d, want %d", got, tc.want)
			}
		})
	}
}

func TestStopSequences(t *testing.T) {
	h := start(t, Options{MaxTokens: 64})
	_, b := h.must("POST", "/v1/chat/completions", chatBody("stops", ""))
	full := decode[chatResp](t, b).Choices[0].Message.Content
	words := strings.Fields(full)
	stop := words[3]
	_, b = h.must("POST", "/v1/chat/completions", chatBody("stops", `"stop":["zzz",`+quote(stop)+`]`))
	r := decode[chatResp](t, b)
	got := r.Choices[0].Message.Content
	want := full[:strings.Index(full, stop)]
	if got != want {
		t.Errorf("content %q, want %q", got, want)
	}
	if *r.Choices[0].FinishReason != "stop" || r.Choices[0].StopReason == nil || *r.Choices[0].StopReason != stop {
		t.Errorf("finish %v stop_reason %v", *r.Choices[0].FinishReason, r.Choices[0].StopReason)
	}
	if n := r.Usage.CompletionTokens; n < 3 || n > 4 {
		t.Errorf("completion_tokens %d", n)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestCompletions(t *testing.T) {
	h := start(t, Options{MaxTokens: 10})
	cases := []struct {
		name    string
		prompt  string
		choices int
		prompt0 int
	}{
		{"string", `"once upon a time"`, 1, 4},
		{"array of strings", `["one","two","three"]`, 3, 4},
		{"token ids", `[1,2,3,4,5]`, 1, 5},
		{"token id lists", `[[1,2],[3,4,5]]`, 2, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/completions", `{"model":"mock-1","prompt":`+tc.prompt+`,"max_tokens":4}`)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			r := decode[chatResp](t, b)
			if r.Object != "text_completion" || !strings.HasPrefix(r.ID, "cmpl-") {
				t.Errorf("head %+v", r)
			}
			if len(r.Choices) != tc.choices {
				t.Fatalf("%d choices, want %d", len(r.Choices), tc.choices)
			}
			for i, c := range r.Choices {
				if c.Index != i || c.Text == nil || len(strings.Fields(*c.Text)) != 4 || *c.FinishReason != "length" {
					t.Errorf("choice %d: %+v", i, c)
				}
			}
			if r.Usage.PromptTokens != tc.prompt0 || r.Usage.CompletionTokens != 4*tc.choices {
				t.Errorf("usage %+v", r.Usage)
			}
		})
	}
}

type embResp struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Index     int             `json:"index"`
		Object    string          `json:"object"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage usage `json:"usage"`
}

// vectors decodes every embedding of a response, float or base64.
func vectors(t *testing.T, r embResp) [][]float32 {
	t.Helper()
	var out [][]float32
	for _, d := range r.Data {
		var v []float32
		if len(d.Embedding) > 0 && d.Embedding[0] == '"' {
			var s string
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				t.Fatal(err)
			}
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(raw)%4 != 0 {
				t.Fatalf("base64 %q: %v", s, err)
			}
			for i := 0; i < len(raw); i += 4 {
				v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
			}
		} else if err := json.Unmarshal(d.Embedding, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestEmbeddings(t *testing.T) {
	h := start(t, Options{EmbeddingDim: 8})
	cases := []struct {
		name   string
		input  string
		extra  string
		n, dim int
		tokens int
	}{
		{"string", `"hello world!"`, "", 1, 8, 3},
		{"array of strings", `["a","bb","ccc"]`, "", 3, 8, 3},
		{"token ids", `[5,6,7]`, "", 1, 8, 3},
		{"token id lists", `[[5,6],[7]]`, "", 2, 8, 3},
		{"dimensions", `"x"`, `"dimensions":4`, 1, 4, 1},
		{"base64", `["a","bb"]`, `"encoding_format":"base64"`, 2, 8, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"mock-1","input":` + tc.input
			if tc.extra != "" {
				body += "," + tc.extra
			}
			resp, b := h.must("POST", "/v1/embeddings", body+"}")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			r := decode[embResp](t, b)
			if r.Object != "list" || r.Model != "mock-1" || !strings.HasPrefix(r.ID, "embd-") {
				t.Errorf("head %+v", r)
			}
			vs := vectors(t, r)
			if len(vs) != tc.n {
				t.Fatalf("%d vectors, want %d", len(vs), tc.n)
			}
			for i, v := range vs {
				if r.Data[i].Index != i || r.Data[i].Object != "embedding" || len(v) != tc.dim {
					t.Errorf("data[%d]: index %d object %q dim %d", i, r.Data[i].Index, r.Data[i].Object, len(v))
				}
				var sum float64
				for _, x := range v {
					sum += float64(x) * float64(x)
				}
				if math.Abs(sum-1) > 1e-5 {
					t.Errorf("vector %d has norm² %v", i, sum)
				}
			}
			if r.Usage.PromptTokens != tc.tokens || r.Usage.TotalTokens != tc.tokens {
				t.Errorf("usage %+v, want %d", r.Usage, tc.tokens)
			}
		})
	}
}

func TestEmbeddingEncodingsAgree(t *testing.T) {
	h := start(t, Options{EmbeddingDim: 32, Seed: 3})
	_, fb := h.must("POST", "/v1/embeddings", `{"input":["same text","other"],"encoding_format":"float"}`)
	_, bb := h.must("POST", "/v1/embeddings", `{"input":["same text","other"],"encoding_format":"base64"}`)
	f, b := vectors(t, decode[embResp](t, fb)), vectors(t, decode[embResp](t, bb))
	for i := range f {
		for j := range f[i] {
			if f[i][j] != b[i][j] {
				t.Fatalf("vector %d[%d]: float %v, base64 %v", i, j, f[i][j], b[i][j])
			}
		}
	}
	if f[0][0] == f[1][0] && f[0][1] == f[1][1] {
		t.Error("different inputs gave the same vector")
	}
}

type modelsResp struct {
	Object string `json:"object"`
	Data   []struct {
		ID          string `json:"id"`
		Object      string `json:"object"`
		OwnedBy     string `json:"owned_by"`
		Root        string `json:"root"`
		MaxModelLen int    `json:"max_model_len"`
		Created     int64  `json:"created"`
	} `json:"data"`
}

func TestModelsAndHealth(t *testing.T) {
	h := start(t, Options{Model: "meta/llama", MaxModelLen: 4096})
	t.Run("models lists the served model", func(t *testing.T) {
		resp, b := h.must("GET", "/v1/models", "")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		r := decode[modelsResp](t, b)
		if r.Object != "list" || len(r.Data) != 1 {
			t.Fatalf("%s", b)
		}
		d := r.Data[0]
		if d.ID != "meta/llama" || d.Object != "model" || d.OwnedBy != "vllm" || d.Root != "meta/llama" || d.MaxModelLen != 4096 || d.Created != fixedNow().Unix() {
			t.Errorf("%+v", d)
		}
	})
	t.Run("health is 200 with an empty body", func(t *testing.T) {
		resp, b := h.must("GET", "/health", "")
		if resp.StatusCode != 200 || len(b) != 0 {
			t.Errorf("status %d body %q", resp.StatusCode, b)
		}
	})
}

func TestOpenAIErrors(t *testing.T) {
	h := start(t, Options{})
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string // exact body, or a prefix when it ends in "*"
	}{
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-9","messages":[]}`, 404,
			`{"error":{"message":"The model ` + "`gpt-9`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`},
		{"unknown model on embeddings", "POST", "/v1/embeddings", `{"model":"e5","input":"x"}`, 404,
			`{"error":{"message":"The model ` + "`e5`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`},
		{"malformed JSON", "POST", "/v1/chat/completions", `{"model":`, 400,
			`{"error":{"message":"JSON decode error","type":"Bad Request","param":null,"code":400}}`},
		{"trailing garbage", "POST", "/v1/chat/completions", `{"messages":[]} x`, 400, `{"error":{"message":"JSON decode error"*`},
		{"not an object", "POST", "/v1/completions", `[1]`, 400, `{"error":{"message":"JSON decode error"*`},
		{"missing messages", "POST", "/v1/chat/completions", `{"model":"mock-1"}`, 400,
			`{"error":{"message":"messages: Field required","type":"Bad Request","param":null,"code":400}}`},
		{"messages not a list", "POST", "/v1/chat/completions", `{"messages":"hi"}`, 400, `{"error":{"message":"messages: *`},
		{"zero max_tokens", "POST", "/v1/chat/completions", `{"messages":[],"max_tokens":0}`, 400,
			`{"error":{"message":"max_tokens must be at least 1, got 0.","type":"BadRequestError","param":"max_tokens","code":400}}`},
		{"non-numeric string max_tokens", "POST", "/v1/chat/completions", `{"messages":[],"max_tokens":"five"}`, 400, `{"error":{"message":"max_tokens: Input should be a valid integer"*`},
		{"stream_options without stream", "POST", "/v1/chat/completions", `{"messages":[],"stream_options":{"include_usage":true}}`, 400,
			`{"error":{"message":"Stream options can only be defined when ` + "`stream=True`" + `.","type":"Bad Request","param":null,"code":400}}`},
		{"zero n", "POST", "/v1/chat/completions", `{"messages":[],"n":0}`, 400,
			`{"error":{"message":"n must be at least 1, got 0.","type":"BadRequestError","param":"n","code":400}}`},
		{"non-numeric string n", "POST", "/v1/chat/completions", `{"messages":[],"n":"two"}`, 400,
			`{"error":{"message":"n: Input should be a valid integer","type":"Bad Request","param":null,"code":400}}`},
		{"stream not a boolean", "POST", "/v1/chat/completions", `{"messages":[],"stream":"yes"}`, 400, `{"error":{"message":"stream: *`},
		{"missing prompt", "POST", "/v1/completions", `{}`, 400, `{"error":{"message":"prompt: Field required"*`},
		{"empty prompt list", "POST", "/v1/completions", `{"prompt":[]}`, 400, `{"error":{"message":"prompt: *`},
		{"missing input", "POST", "/v1/embeddings", `{}`, 400, `{"error":{"message":"input: Field required"*`},
		{"bad encoding_format", "POST", "/v1/embeddings", `{"input":"x","encoding_format":"hex"}`, 400, `{"error":{"message":"encoding_format: *`},
		{"wrong method", "GET", "/v1/chat/completions", "", 405, `{"detail":"Method Not Allowed"}`},
		{"wrong method on models", "POST", "/v1/models", "{}", 405, `{"detail":"Method Not Allowed"}`},
		{"wrong method on health", "POST", "/health", "{}", 405, `{"detail":"Method Not Allowed"}`},
		{"unknown path", "POST", "/v1/audio/speech", "{}", 404, `{"detail":"Not Found"}`},
		// vLLM serves the Messages API too; its models' refusals are the app's
		// validation errors, in this shape.
		{"messages route validates as vLLM's", "POST", "/v1/messages", "{}", 400,
			`{"error":{"message":"model: Field required","type":"Bad Request","param":null,"code":400}}`},
		{"unknown path under messages", "POST", "/v1/messages/batches", "{}", 404, `{"detail":"Not Found"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must(tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if prefix, ok := strings.CutSuffix(tc.want, "*"); ok {
				if !strings.HasPrefix(string(b), prefix) {
					t.Errorf("body %s, want prefix %s", b, prefix)
				}
			} else if string(b) != tc.want {
				t.Errorf("body %s\nwant %s", b, tc.want)
			}
			if resp.StatusCode != http.StatusMethodNotAllowed && resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	h := start(t, Options{APIKey: "sk-test"})
	cases := []struct {
		name, path string
		hdr        []string
		status     int
		saw        string
	}{
		{"missing key", "/v1/chat/completions", nil, 401, "no"},
		{"wrong key", "/v1/chat/completions", []string{"Authorization", "Bearer nope"}, 401, "yes"},
		{"right key", "/v1/chat/completions", []string{"Authorization", "Bearer sk-test"}, 200, "yes"},
		{"unknown /v1 path needs the key first", "/v1/nothing", nil, 401, "no"},
		{"health needs no key", "/health", nil, 405, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, chatBody("hi", `"max_tokens":1`), tc.hdr...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status == 401 && string(b) != `{"error":"Unauthorized"}` {
				t.Errorf("body %s", b)
			}
			if got := resp.Header.Get("x-mock-saw-authorization"); got != tc.saw {
				t.Errorf("x-mock-saw-authorization %q, want %q", got, tc.saw)
			}
		})
	}
}

func TestInvalidOptions(t *testing.T) {
	cases := []struct {
		name string
		o    Options
	}{
		{"unknown api", Options{API: "grpc"}},
		{"error rate above one", Options{ErrorRate: 1.5}},
		{"negative disconnect rate", Options{DisconnectRate: -0.1}},
		{"negative ttft", Options{TTFT: -1}},
		{"negative max tokens", Options{MaxTokens: -1}},
		{"huge embedding", Options{EmbeddingDim: 1 << 20}},
		{"negative max num seqs", Options{MaxNumSeqs: -4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.o); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestContextLength: like vLLM, a request whose prompt, or prompt plus max_tokens (or
// max_completion_tokens), does not fit max_model_len is refused with 400 in vLLM's
// words, and so is an embeddings input longer than max_model_len; one that fits
// exactly is served.
func TestContextLength(t *testing.T) {
	h := start(t, Options{MaxModelLen: 100})
	long := strings.Repeat("word ", 200) // 250 tokens at four bytes a token
	cases := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"max_tokens beyond the context", "/v1/chat/completions", chatBody("hello", `"max_tokens":1000`), 400,
			`{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's maximum context length is 100 tokens and your request has 2 input tokens (1000 \u003e 100 - 2).","type":"BadRequestError","param":null,"code":400}}`},
		{"max_completion_tokens beyond the context", "/v1/chat/completions", chatBody("hello", `"max_completion_tokens":99`), 400,
			`{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 99. *`},
		{"prompt alone beyond the context", "/v1/chat/completions", chatBody(long, `"max_tokens":5`), 400,
			`{"error":{"message":"This model's maximum context length is 100 tokens. However, your request has 250 input tokens. Please reduce the length of the input messages.","type":"BadRequestError","param":null,"code":400}}`},
		{"prompt alone beyond the context without max_tokens", "/v1/chat/completions", chatBody(long, ""), 400,
			`{"error":{"message":"This model's maximum context length is 100 tokens. *`},
		{"prompt plus max_tokens that fit exactly", "/v1/chat/completions", chatBody("hello", `"max_tokens":98`), 200, `{"id":"chatcmpl-*`},
		{"completions max_tokens beyond the context", "/v1/completions", `{"prompt":"hi","max_tokens":1000}`, 400,
			`{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 1000. *`},
		{"completions checks every prompt", "/v1/completions", `{"prompt":["hi",` + strconv.Quote(long) + `],"max_tokens":5}`, 400,
			`{"error":{"message":"This model's maximum context length is 100 tokens. *`},
		{"completions default max_tokens counts", "/v1/completions", `{"prompt":` + strconv.Quote(strings.Repeat("a", 4*90)) + `}`, 400,
			`{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 16. *`},
		{"stream refused before it starts", "/v1/chat/completions", chatBody("hello", `"max_tokens":1000,"stream":true`), 400, `{"error":*`},
		// vLLM's _validate_input: an embeddings input may fill the context, since
		// nothing is generated, and each input of a batch is checked.
		{"embeddings input beyond the context", "/v1/embeddings", `{"input":["hi",` + strconv.Quote(strings.Repeat("abcd", 101)) + `]}`, 400,
			`{"error":{"message":"This model's maximum context length is 100 tokens. However, you requested 101 tokens in the input for embedding generation. Please reduce the length of the input.","type":"BadRequestError","param":null,"code":400}}`},
		{"embeddings input filling the context", "/v1/embeddings", `{"input":` + strconv.Quote(strings.Repeat("abcd", 100)) + `}`, 200, `{"id":"embd-*`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if prefix, ok := strings.CutSuffix(tc.want, "*"); ok {
				if !strings.HasPrefix(string(b), prefix) {
					t.Errorf("body %s, want prefix %s", b, prefix)
				}
			} else if string(b) != tc.want {
				t.Errorf("body %s\nwant %s", b, tc.want)
			}
		})
	}
}

// TestCompletionsMaxTokens: vLLM's CompletionRequest defaults max_tokens to 16 (an
// explicit null lifts it) and has no max_completion_tokens, which it ignores.
func TestCompletionsMaxTokens(t *testing.T) {
	h := start(t, Options{MaxTokens: 64, MaxModelLen: 1000})
	cases := []struct {
		name, extra string
		check       func(n int, finish string) bool
	}{
		{"16 without max_tokens", "", func(n int, f string) bool { return n == 16 && f == "length" }},
		{"max_completion_tokens is ignored", `,"max_completion_tokens":2`, func(n int, f string) bool { return n == 16 && f == "length" }},
		{"max_tokens", `,"max_tokens":3`, func(n int, f string) bool { return n == 3 && f == "length" }},
		{"null max_tokens lifts the default", `,"max_tokens":null`, func(n int, _ string) bool { return n > 16 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, b := h.must("POST", "/v1/completions", `{"prompt":"tell me a story"`+tc.extra+`}`)
			r := decode[chatResp](t, b)
			if r.Usage == nil || len(r.Choices) != 1 || !tc.check(r.Usage.CompletionTokens, *r.Choices[0].FinishReason) {
				t.Errorf("%s", b)
			}
		})
	}
}

// TestRequestContentType: vLLM's generation routes run validate_json_request, which
// refuses any media type but application/json (a missing one too) with 400.
func TestRequestContentType(t *testing.T) {
	h := start(t, Options{})
	cases := []struct {
		name, path, body, ct string
		status               int
	}{
		{"text/plain", "/v1/chat/completions", chatBody("q", `"max_tokens":1`), "text/plain", 400},
		{"form", "/v1/completions", `{"prompt":"q"}`, "application/x-www-form-urlencoded", 400},
		{"missing", "/v1/embeddings", `{"input":"q"}`, "", 400},
		{"json with a charset", "/v1/chat/completions", chatBody("q", `"max_tokens":1`), "Application/JSON; charset=utf-8", 200},
		{"json", "/v1/embeddings", `{"input":"q"}`, "application/json", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://mock.test"+tc.path, strings.NewReader(tc.body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status == 400 && string(b) != `{"error":{"message":"Unsupported Media Type: Only 'application/json' is allowed","type":"Bad Request","param":null,"code":400}}` {
				t.Errorf("body %s", b)
			}
		})
	}
}

// TestChoicesN: vLLM honours n: n choices (0..n-1) in a plain answer, usage summed
// over them, a role chunk per choice at the start of a chat stream, and for legacy
// completions n choices per prompt, numbered prompt by prompt.
func TestChoicesN(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	t.Run("chat", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", chatBody("q", `"n":2,"max_tokens":4`))
		r := decode[chatResp](t, b)
		if len(r.Choices) != 2 || r.Usage == nil || r.Usage.CompletionTokens != 8 || r.Choices[1].Index != 1 {
			t.Fatalf("%s", b)
		}
		if r.Choices[0].Message.Content == r.Choices[1].Message.Content {
			t.Errorf("both choices say %q", r.Choices[0].Message.Content)
		}
		_, one := h.must("POST", "/v1/chat/completions", chatBody("q", `"max_tokens":4`))
		if c := decode[chatResp](t, one).Choices[0].Message.Content; c != r.Choices[0].Message.Content {
			t.Errorf("choice 0 %q differs from the n=1 answer %q", r.Choices[0].Message.Content, c)
		}
	})
	t.Run("chat stream", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", chatBody("q", `"n":2,"max_tokens":4,"stream":true,"stream_options":{"include_usage":true}`))
		roles, tokens, finishes := map[int]int{}, map[int]int{}, map[int]int{}
		var u *usage
		for _, ev := range parseSSE(t, b) {
			if ev.data == "[DONE]" {
				continue
			}
			c := decode[chatResp](t, []byte(ev.data))
			if c.Usage != nil {
				u = c.Usage
			}
			for _, ch := range c.Choices {
				switch {
				case ch.Delta.Role != nil:
					roles[ch.Index]++
				case ch.Delta.Content != nil && *ch.Delta.Content != "":
					tokens[ch.Index]++
				}
				if ch.FinishReason != nil {
					finishes[ch.Index]++
				}
			}
		}
		if roles[0] != 1 || roles[1] != 1 || tokens[0] != 4 || tokens[1] != 4 || finishes[0] != 1 || finishes[1] != 1 || u == nil || u.CompletionTokens != 8 {
			t.Errorf("roles %v tokens %v finishes %v usage %+v", roles, tokens, finishes, u)
		}
	})
	t.Run("completions", func(t *testing.T) {
		_, b := h.must("POST", "/v1/completions", `{"prompt":["a","b"],"n":3,"max_tokens":2}`)
		r := decode[chatResp](t, b)
		if len(r.Choices) != 6 || r.Choices[5].Index != 5 || r.Usage.CompletionTokens != 12 || r.Usage.PromptTokens != 2 {
			t.Errorf("%s", b)
		}
	})
}

// TestAnswerStopsAtContextEnd: in vLLM a request without max_tokens may generate at
// most max_model_len minus its prompt (serving_engine.py get_max_tokens), ending with
// finish_reason "length", so usage.total_tokens never exceeds max_model_len.
func TestAnswerStopsAtContextEnd(t *testing.T) {
	h := start(t, Options{MaxModelLen: 50, MaxTokens: 64})
	long := strings.Repeat("abcd", 40) // 40 prompt tokens, 10 left in the context
	cases := []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", chatBody(long, "")},
		{"chat stream", "/v1/chat/completions", chatBody(long, `"stream":true,"stream_options":{"include_usage":true}`)},
		{"completions with max_tokens null", "/v1/completions", `{"prompt":"` + long + `","max_tokens":null}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var u *usage
			finish := ""
			if strings.HasPrefix(string(b), "data: ") {
				for _, ev := range parseSSE(t, b) {
					if ev.data == "[DONE]" {
						continue
					}
					c := decode[chatResp](t, []byte(ev.data))
					if c.Usage != nil {
						u = c.Usage
					}
					if len(c.Choices) > 0 && c.Choices[0].FinishReason != nil {
						finish = *c.Choices[0].FinishReason
					}
				}
			} else {
				r := decode[chatResp](t, b)
				u, finish = r.Usage, *r.Choices[0].FinishReason
			}
			if u == nil || u.PromptTokens != 40 || u.CompletionTokens != 10 || u.TotalTokens != 50 || finish != "length" {
				t.Errorf("max_model_len 50, prompt 40 tokens, no max_tokens: usage %+v, finish %q; want 10 completion tokens, 50 in all, finish_reason \"length\"", u, finish)
			}
		})
	}
}

// TestModelNull: vLLM's requests have model: Optional[str] = None, and _check_model
// serves the default model when it is missing or null.
func TestModelNull(t *testing.T) {
	h := start(t, Options{})
	cases := []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", `{"model":null,"messages":[{"role":"user","content":"hi"}],"max_tokens":1}`},
		{"completions", "/v1/completions", `{"model":null,"prompt":"hi","max_tokens":1}`},
		{"embeddings", "/v1/embeddings", `{"model":null,"input":"hi"}`},
		{"tokenize", "/tokenize", `{"model":null,"prompt":"hi"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if resp, b := h.must("POST", tc.path, tc.body); resp.StatusCode != 200 {
				t.Errorf("\"model\": null: %d %s; want 200", resp.StatusCode, b)
			}
		})
	}
}

// TestSamplingParams: vLLM checks sampling parameters (sampling_params.py
// _verify_args) once it knows max_tokens, and refuses bad ones with 400
// BadRequestError naming the parameter; the request validators refuse top_logprobs
// without logprobs, and the engine more logprobs than --max-logprobs (20).
func TestSamplingParams(t *testing.T) {
	h := start(t, Options{MaxModelLen: 100})
	cases := []struct {
		name, path, extra string
		want              string // "": served
	}{
		{"negative temperature", "", `"temperature":-1`,
			`{"error":{"message":"temperature must be non-negative, got -1.0.","type":"BadRequestError","param":"temperature","code":400}}`},
		{"zero temperature", "", `"temperature":0`, ""},
		{"top_p above 1", "", `"top_p":1.5`,
			`{"error":{"message":"top_p must be in (0, 1], got 1.5.","type":"BadRequestError","param":"top_p","code":400}}`},
		{"top_p 0", "", `"top_p":0`, `{"error":{"message":"top_p must be in (0, 1], got 0.0.*`},
		{"top_p 1 and null temperature", "", `"top_p":1,"temperature":null`, ""},
		{"temperature not a number", "", `"temperature":"hot"`,
			`{"error":{"message":"temperature: Input should be a valid number","type":"Bad Request","param":null,"code":400}}`},
		{"negative min_tokens", "", `"min_tokens":-1`, `{"error":{"message":"min_tokens must be greater than or equal to 0, got -1.*`},
		{"min_tokens over max_tokens", "", `"min_tokens":5,"max_tokens":4`,
			`{"error":{"message":"min_tokens must be less than or equal to max_tokens=4, got 5.","type":"BadRequestError","param":"min_tokens","code":400}}`},
		{"min_tokens over what the context leaves", "", `"min_tokens":100`,
			`{"error":{"message":"min_tokens must be less than or equal to max_tokens=99, got 100.*`},
		{"min_tokens within max_tokens", "", `"min_tokens":4,"max_tokens":4`, ""},
		{"top_logprobs without logprobs", "", `"top_logprobs":2`,
			`{"error":{"message":"Value error, when using ` + "`top_logprobs`, `logprobs`" + ` must be set to true.","type":"Bad Request","param":null,"code":400}}`},
		{"negative top_logprobs", "", `"logprobs":true,"top_logprobs":-2`, `{"error":{"message":"Value error, ` + "`top_logprobs`" + ` must be a positive value or -1.*`},
		{"top_logprobs over max_logprobs", "", `"logprobs":true,"top_logprobs":21`,
			`{"error":{"message":"Requested sample logprobs of 21, which is greater than max allowed: 20","type":"BadRequestError","param":null,"code":400}}`},
		{"top_logprobs -1 asks for the vocabulary", "", `"logprobs":true,"top_logprobs":-1`, `{"error":{"message":"Requested sample logprobs of 64,*`},
		{"completions temperature", "/v1/completions", `"temperature":-0.5`, `{"error":{"message":"temperature must be non-negative, got -0.5.*`},
		{"completions logprobs over max_logprobs", "/v1/completions", `"logprobs":25`, `{"error":{"message":"Requested sample logprobs of 25,*`},
		{"completions negative logprobs", "/v1/completions", `"logprobs":-3`, `{"error":{"message":"Value error, ` + "`logprobs`" + ` must be a positive value or -1.*`},
		{"completions ignore top_logprobs", "/v1/completions", `"top_logprobs":3`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, body := tc.path, chatBody("hi", tc.extra)
			if path == "" {
				path = "/v1/chat/completions"
			} else {
				body = `{"prompt":"hi",` + tc.extra + `}`
			}
			resp, b := h.must("POST", path, body)
			switch prefix, ok := strings.CutSuffix(tc.want, "*"); {
			case tc.want == "":
				if resp.StatusCode != 200 {
					t.Errorf("%s: %d %s; want 200", tc.extra, resp.StatusCode, b)
				}
			case resp.StatusCode != 400:
				t.Errorf("%s: %d %s; want 400", tc.extra, resp.StatusCode, b)
			case ok && !strings.HasPrefix(string(b), prefix), !ok && string(b) != tc.want:
				t.Errorf("%s: body %s\nwant %s", tc.extra, b, tc.want)
			}
		})
	}
}

// TestMinTokens: vLLM's min_tokens holds off the end of an answer until that many
// tokens are out.
func TestMinTokens(t *testing.T) {
	h := start(t, Options{MaxTokens: 64})
	_, b := h.must("POST", "/v1/chat/completions", chatBody("hi", `"min_tokens":6`), "x-mock-tokens", "2")
	r := decode[chatResp](t, b)
	if r.Usage.CompletionTokens != 6 || *r.Choices[0].FinishReason != "stop" {
		t.Errorf("min_tokens 6, a natural end after 2: usage %+v, finish %q; want 6 tokens, \"stop\"", r.Usage, *r.Choices[0].FinishReason)
	}
}

// TestWholeFloatCounts: as vLLM's pydantic models in lax mode, a count written as a
// whole float (3.0, 2e0) or as a string of one ("3", "3.0") is taken as the integer; a
// fraction is refused.
func TestWholeFloatCounts(t *testing.T) {
	s := start(t, Options{})
	for _, c := range []struct {
		field, value string
		status       int
	}{
		{"max_tokens", "3.0", 200}, {"max_completion_tokens", "3e0", 200}, {"n", "2.0", 200},
		{"max_tokens", `"3"`, 200}, {"n", `"2"`, 200},
		{"max_tokens", `"3.0"`, 200},
		{"max_tokens", "3.5", 400}, {"n", "1.5", 400}, {"max_tokens", `"3.5"`, 400},
	} {
		resp, body, err := s.do("POST", "/v1/chat/completions", `{"model":"`+DefaultModel+`","messages":[{"role":"user","content":"Hi"}],"`+c.field+`":`+c.value+`}`)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d %s, want %d", c.field, c.value, resp.StatusCode, body, c.status)
		}
	}
}
