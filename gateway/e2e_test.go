package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// startMock runs a mockllm server on a loopback port.
func startMock(t testing.TB, opts mockllm.Options) (*mockllm.Server, string) {
	t.Helper()
	if opts.Model == "" {
		opts.Model = "up-model"
	}
	srv, err := mockllm.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return srv, ln.Addr().String()
}

// gw is a gateway serving on loopback for a test.
type gw struct {
	*Server
	url    string
	path   string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGateway writes yaml to a config file and serves it.
func startGateway(t testing.TB, yaml string) *gw {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return serveConfig(t, path)
}

// serveConfig serves the config file at path until the test ends.
func serveConfig(t testing.TB, path string) *gw {
	t.Helper()
	logs := &syncBuffer{}
	s, err := New(path, Options{Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gw{Server: s, url: "http://" + s.Addr(), path: path, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { g.done <- s.Serve(ctx) }()
	t.Cleanup(g.stop)
	return g
}

func (g *gw) stop() {
	g.cancel()
	<-g.done
	g.done <- nil
}

func (g *gw) client(opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(g.url + "/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0),
	}, opts...)...)
}

// mockConfig is a gateway config in front of one upstream, with extra backends and
// endpoints appended to their sections.
func mockConfig(upstream, backends, endpoints string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, timeout: 20s}
` + backends + `
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: legacy, type: completions, routes: [{backend: up}]}
  - {name: embed, type: embeddings, routes: [{backend: up}]}
` + endpoints
}

func userMsg(s string) []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{openai.UserMessage(s)}
}

func TestEndToEndChat(t *testing.T) {
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 24, Seed: 7})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	ctx := context.Background()

	var resp *http.Response
	res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "chat", Messages: userMsg("Tell me about gateways."), Seed: openai.Int(3),
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "lookup"})},
	}, option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "req-42"), option.WithHeader("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Content == "" {
		t.Fatalf("no answer: %+v", res)
	}
	if res.Usage.PromptTokens == 0 || res.Usage.CompletionTokens == 0 {
		t.Fatalf("no usage: %+v", res.Usage)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-42" {
		t.Errorf("x-request-id = %q, want the client's", got)
	}
	if got := resp.Header.Get("X-Tollgate-Backend"); got != "up" {
		t.Errorf("x-tollgate-backend = %q", got)
	}

	st := mock.Stats()
	var sent map[string]json.RawMessage
	if err := json.Unmarshal(st.LastBody, &sent); err != nil {
		t.Fatalf("upstream got invalid JSON %q: %v", st.LastBody, err)
	}
	if string(sent["model"]) != `"up-model"` {
		t.Errorf("upstream model = %s, want the backend's", sent["model"])
	}
	if !bytes.Contains(sent["tools"], []byte(`"lookup"`)) || string(sent["seed"]) != "3" {
		t.Errorf("fields not forwarded untouched: %s", st.LastBody)
	}
	if st.LastHeaders.Get("Authorization") != "" {
		t.Errorf("client credentials forwarded upstream")
	}
	if st.LastHeaders.Get("Traceparent") == "" {
		t.Errorf("traceparent not forwarded: %v", st.LastHeaders)
	}
}

func TestEndToEndStreamMatchesNonStream(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 32, Seed: 11, TPOT: time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("Same question, twice."), Seed: openai.Int(5)}

	plain, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	for _, withUsage := range []bool{false, true} {
		t.Run("include_usage="+map[bool]string{false: "no", true: "yes"}[withUsage], func(t *testing.T) {
			p := params
			if withUsage {
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			stream := c.Chat.Completions.NewStreaming(ctx, p)
			var acc openai.ChatCompletionAccumulator
			chunks, usageChunks := 0, 0
			for stream.Next() {
				ch := stream.Current()
				acc.AddChunk(ch)
				chunks++
				if len(ch.Choices) == 0 && ch.Usage.TotalTokens > 0 {
					usageChunks++
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if chunks < 3 {
				t.Fatalf("only %d chunks: the stream was not relayed event by event", chunks)
			}
			if got, want := acc.Choices[0].Message.Content, plain.Choices[0].Message.Content; got != want {
				t.Fatalf("streamed content %q != non-streamed %q", got, want)
			}
			if want := map[bool]int{false: 0, true: 1}[withUsage]; usageChunks != want {
				t.Fatalf("client saw %d usage chunks, want %d", usageChunks, want)
			}
		})
	}
	waitFor(t, func() bool {
		return strings.Count(g.logs.String(), `"output_tokens":0`) == 0 && strings.Count(g.logs.String(), `"msg":"request"`) == 3
	})
}

func TestEndToEndEmbeddingsAndModels(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{EmbeddingDim: 12})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	ctx := context.Background()
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{"", openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		t.Run("format="+string(format), func(t *testing.T) {
			res, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}}, EncodingFormat: format,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Data) != 2 || len(res.Data[0].Embedding) != 12 {
				t.Fatalf("embeddings = %+v", res.Data)
			}
		})
	}
	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "chat,legacy,embed" {
		t.Fatalf("models = %v", ids)
	}
	// The SDK's retrieve call gets the same object as the list has.
	m, err := c.Models.Get(ctx, "embed")
	if err != nil || m.ID != "embed" || m.Object != "model" || m.OwnedBy != "tollgate" || m.Created != page.Data[2].Created {
		t.Fatalf("models.retrieve: %+v %v", m, err)
	}
	if _, err := c.Models.Get(ctx, "nope"); apiErr(t, err).StatusCode != 404 || apiErr(t, err).Code != "model_not_found" {
		t.Fatalf("models.retrieve of an unknown model: %v", err)
	}
	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: "legacy", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once")}})
	if err != nil || len(comp.Choices) != 1 || comp.Choices[0].Text == "" {
		t.Fatalf("completions: %+v %v", comp, err)
	}
}

func apiErr(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *openai.Error", err)
	}
	return e
}

func TestEndToEndErrors(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{})
	deadAddr := holdPort(t).Addr()
	g := startGateway(t, mockConfig(addr, `
  dead: {provider: openai, base_url: "http://`+deadAddr+`/v1", model: m, connect_timeout: 500ms}
  slow: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 300ms}
`, `
  - {name: down, type: chat, routes: [{backend: dead}]}
  - {name: slow, type: chat, routes: [{backend: slow}]}
`))
	c := g.client()
	ctx := context.Background()
	cases := []struct {
		name   string
		model  string
		opts   []option.RequestOption
		status int
		code   string
	}{
		{"unknown model", "nope", nil, 404, "model_not_found"},
		{"wrong endpoint type", "embed", nil, 400, "model_not_supported"},
		{"upstream down", "down", nil, 502, "upstream_unreachable"},
		{"upstream timeout", "slow", []option.RequestOption{option.WithHeader("x-mock-delay", "2s")}, 504, "upstream_timeout"},
		{"upstream error passed through", "chat", []option.RequestOption{option.WithHeader("x-mock-status", "400")}, 400, ""},
		{"upstream 503 passed through", "chat", []option.RequestOption{option.WithHeader("x-mock-status", "503")}, 503, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: tc.model, Messages: userMsg("hi")}, tc.opts...)
			e := apiErr(t, err)
			if e.StatusCode != tc.status || (tc.code != "" && e.Code != tc.code) {
				t.Fatalf("got %d %q (%s), want %d %q", e.StatusCode, e.Code, e.Message, tc.status, tc.code)
			}
		})
	}

	t.Run("wrong endpoint type names the right URL", func(t *testing.T) {
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "embed", Messages: userMsg("hi")})
		if e := apiErr(t, err); !strings.Contains(e.Message, "`embed` is an embeddings endpoint") || !strings.Contains(e.Message, "/v1/embeddings") {
			t.Errorf("message %q does not say what embed is and where to call it", e.Message)
		}
		_, err = c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "chat", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")}})
		if e := apiErr(t, err); e.StatusCode != 400 || !strings.Contains(e.Message, "`chat` is a chat endpoint") || !strings.Contains(e.Message, "/v1/chat/completions") {
			t.Errorf("%d %q does not say what chat is and where to call it", e.StatusCode, e.Message)
		}
	})

	raw := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"malformed JSON", `{"model":"chat",`, 400, "invalid_json"},
		{"not an object", `["chat"]`, 400, "invalid_json"},
		{"missing model", `{"messages":[]}`, 400, "missing_model"},
		{"null model", `{"model":null,"messages":[]}`, 400, "missing_model"},
		{"model not a string", `{"model":7,"messages":[]}`, 400, "invalid_type"},
		{"stream_options not an object", `{"model":"chat","stream":true,"stream_options":"x","messages":[]}`, 400, "invalid_type"},
		{"include_usage not a boolean", `{"model":"chat","stream":true,"stream_options":{"include_usage":1},"messages":[]}`, 400, "invalid_type"},
		{"too large", `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("x", 70<<10) + `"}]}`, 413, "request_too_large"},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || body.Error.Code != tc.code || body.Error.Type != "invalid_request_error" {
				t.Fatalf("got %d %+v", resp.StatusCode, body.Error)
			}
		})
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	// Generous: CI runs packages side by side on two cores under the race detector.
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
