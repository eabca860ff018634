package mockllm

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestOpenAISDK drives the server with the official OpenAI Go SDK: if the SDK reads
// every answer, the wire format is what real clients expect.
func TestOpenAISDK(t *testing.T) {
	h := start(t, Options{Model: "mock-1", MaxTokens: 16, EmbeddingDim: 12, APIKey: "sk-mock"})
	client := openai.NewClient(
		option.WithBaseURL("http://mock.test/v1"),
		option.WithUnsafeAllowHTTP(),
		option.WithHTTPClient(h.client),
		option.WithAPIKey("sk-mock"),
		option.WithMaxRetries(0),
	)
	ctx := context.Background()
	chatParams := openai.ChatCompletionNewParams{
		Model:    "mock-1",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("Say something")},
		Seed:     openai.Int(3),
	}

	var plain *openai.ChatCompletion
	t.Run("chat", func(t *testing.T) {
		var err error
		plain, err = client.Chat.Completions.New(ctx, chatParams)
		if err != nil {
			t.Fatal(err)
		}
		c := plain.Choices[0]
		if plain.Model != "mock-1" || c.Message.Content == "" || c.FinishReason != "stop" || plain.Usage.CompletionTokens < 8 || plain.Usage.TotalTokens != plain.Usage.PromptTokens+plain.Usage.CompletionTokens {
			t.Errorf("%+v", plain)
		}
	})

	t.Run("streaming assembles to the plain answer", func(t *testing.T) {
		if plain == nil {
			t.Fatal("no plain answer to compare with: the chat subtest failed")
		}
		p := chatParams
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if err := stream.Close(); err != nil {
			t.Fatal(err)
		}
		got := acc.Choices[0]
		if got.Message.Content != plain.Choices[0].Message.Content || got.FinishReason != "stop" {
			t.Errorf("stream %q (%s), plain %q", got.Message.Content, got.FinishReason, plain.Choices[0].Message.Content)
		}
		if acc.Usage.CompletionTokens != plain.Usage.CompletionTokens || acc.Usage.PromptTokens != plain.Usage.PromptTokens {
			t.Errorf("stream usage %+v, plain %+v", acc.Usage, plain.Usage)
		}
		if want := int(plain.Usage.CompletionTokens) + 2; chunks != want {
			t.Errorf("%d chunks, want role + %d tokens (the last with the finish) + usage", chunks, plain.Usage.CompletionTokens)
		}
	})

	t.Run("embeddings in both encodings", func(t *testing.T) {
		in := openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first", "second"}}
		def, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "mock-1", Input: in})
		if err != nil {
			t.Fatal(err)
		}
		b64, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "mock-1", Input: in, EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64})
		if err != nil {
			t.Fatal(err)
		}
		if len(def.Data) != 2 || len(b64.Data) != 2 || def.Usage.PromptTokens != 4 {
			t.Fatalf("default %+v, base64 %+v", def, b64)
		}
		for i := range def.Data {
			a, b := def.Data[i].Embedding, b64.Data[i].Embedding
			if len(a) != 12 || len(b) != 12 || b64.Data[i].JSON.Embedding.Raw()[0] != '"' {
				t.Fatalf("vector %d: %d and %d values, raw %s", i, len(a), len(b), b64.Data[i].JSON.Embedding.Raw())
			}
			var norm float64
			for j := range a {
				// Floats are printed as the shortest decimal of their float32, as OpenAI does.
				if float32(a[j]) != float32(b[j]) {
					t.Errorf("vector %d[%d]: float %v, base64 %v", i, j, a[j], b[j])
				}
				norm += a[j] * a[j]
			}
			if math.Abs(norm-1) > 1e-5 {
				t.Errorf("vector %d norm² %v", i, norm)
			}
		}
	})

	t.Run("legacy completions", func(t *testing.T) {
		r, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model:     "mock-1",
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once")},
			MaxTokens: openai.Int(4),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Choices) != 1 || r.Choices[0].Text == "" || r.Choices[0].FinishReason != "length" || r.Usage.CompletionTokens != 4 {
			t.Errorf("%+v", r)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != "mock-1" || page.Data[0].OwnedBy != "vllm" {
			t.Errorf("%+v", page.Data)
		}
	})

	t.Run("unknown model is the SDK's 404 error", func(t *testing.T) {
		p := chatParams
		p.Model = "gpt-nope"
		_, err := client.Chat.Completions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Type != "NotFoundError" || apiErr.Param != "model" {
			t.Fatalf("%v", err)
		}
	})

	t.Run("injected status is the SDK's error", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, chatParams, option.WithHeader("x-mock-status", "503"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
			t.Fatalf("%v", err)
		}
	})

	t.Run("a cut stream is an SDK error", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, chatParams, option.WithHeader("x-mock-cut-after", "2"))
		n := 0
		for stream.Next() {
			n++
		}
		if stream.Err() == nil {
			t.Errorf("no error after %d chunks", n)
		}
		_ = stream.Close()
	})
}
