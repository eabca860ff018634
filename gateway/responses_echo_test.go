package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// A conversation continued on another endpoint whose backend is another name for the
// same upstream: the answer's previous_response_id is the ID the client sent, tag and
// all, and an ID the gateway never tagged comes back untagged.
func TestResponsesPreviousIDEchoedAsSent(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 6, Seed: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  llama: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
  llama-batch: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: llama}]}
  - {name: chat-batch, type: chat, routes: [{backend: llama-batch}]}
`)
	c := g.client()
	ctx := context.Background()
	first, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat-batch", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("and more")},
		PreviousResponseID: openai.String(first.ID),
	})
	if err != nil {
		t.Fatalf("follow-up on chat-batch: %v", err)
	}
	if second.PreviousResponseID != first.ID {
		t.Errorf("observed previous_response_id %q in the answer; expected %q, the ID the client sent", second.PreviousResponseID, first.ID)
	}
	// A response made on the upstream directly: its ID has no tag, and keeps none.
	direct := openai.NewClient(option.WithBaseURL("http://"+addr+"/v1"), option.WithAPIKey("x"), option.WithMaxRetries(0))
	own, err := direct.Responses.New(ctx, responses.ResponseNewParams{
		Model: "up-model", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	third, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("go on")},
		PreviousResponseID: openai.String(own.ID),
	})
	if err != nil {
		t.Fatal(err)
	}
	if third.PreviousResponseID != own.ID || !strings.Contains(third.ID, "-tg") {
		t.Errorf("observed previous_response_id %q (ID %q); expected %q as sent, the new ID tagged", third.PreviousResponseID, third.ID, own.ID)
	}
}

// The default config's built-in mock backend serves the Responses API, a follow-up
// continuing the response before it, and keeps its stored responses across a reload
// that keeps the backend, as a real upstream outlives one: the next turn's
// previous_response_id and a GET of the first response still find it.
func TestResponsesMockProvider(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: mock-1, mock: {max_tokens: 8}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`)
	c := g.client()
	ctx := context.Background()
	first, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("again")},
		PreviousResponseID: openai.String(first.ID),
	})
	if err != nil {
		t.Fatal(err)
	}
	if second.PreviousResponseID != first.ID || second.Usage.InputTokens <= first.Usage.InputTokens {
		t.Fatalf("follow-up %+v of %s", second, first.ID)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("again")},
		PreviousResponseID: openai.String(first.ID),
	})
	var ae *openai.Error
	if errors.As(err, &ae) {
		t.Errorf("follow-up after a reload of the same config: observed %d %s; expected 200, the conversation continued", ae.StatusCode, ae.Message)
	} else if err != nil {
		t.Errorf("follow-up after a reload: observed %v; expected 200", err)
	}
	if _, err := c.Responses.Get(ctx, first.ID, responses.ResponseGetParams{}); errors.As(err, &ae) {
		t.Errorf("GET after a reload of the same config: observed %d %s; expected 200, the stored response", ae.StatusCode, ae.Message)
	} else if err != nil {
		t.Errorf("GET after a reload of the same config: observed %v; expected 200", err)
	}
}
