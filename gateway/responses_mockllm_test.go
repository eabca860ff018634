package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// A multi-turn conversation on the Responses API through the gateway in front of two
// vLLM-like replicas, each storing its responses in its own process: every turn
// continues the one before on the replica that stored it, streamed or not, and the
// stored response reads and deletes through the gateway. Sent to the other replica
// directly, the same follow-up is refused, as vLLM refuses it.
func TestResponsesConversationAcrossReplicas(t *testing.T) {
	t.Parallel()
	_, a := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 3})
	_, b := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+a+`/v1", "http://`+b+`/v1"], model: up-model, balance: round_robin}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
`)
	c := g.client()
	ctx := context.Background()
	for conv := range 4 {
		prev := ""
		var inputTokens int64
		for turn := range 4 {
			p := responses.ResponseNewParams{
				Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("turn " + strings.Repeat("x", turn))},
			}
			if prev != "" {
				p.PreviousResponseID = openai.String(prev)
			}
			var res *responses.Response
			if (conv+turn)%2 == 0 {
				r, err := c.Responses.New(ctx, p)
				if err != nil {
					t.Fatalf("conversation %d turn %d: %v", conv, turn, err)
				}
				res = r
			} else {
				st := c.Responses.NewStreaming(ctx, p)
				for st.Next() {
					if ev := st.Current(); ev.Type == "response.completed" {
						r := ev.Response
						res = &r
					}
				}
				if err := st.Err(); err != nil || res == nil {
					t.Fatalf("conversation %d turn %d: stream %v", conv, turn, err)
				}
			}
			if res.Status != "completed" || res.OutputText() == "" || !strings.Contains(res.ID, "-tg") {
				t.Fatalf("conversation %d turn %d: %+v", conv, turn, res)
			}
			// Each turn's prompt holds the whole conversation so far.
			if res.Usage.InputTokens <= inputTokens {
				t.Fatalf("conversation %d turn %d: input tokens %d after %d: the history was lost", conv, turn, res.Usage.InputTokens, inputTokens)
			}
			inputTokens = res.Usage.InputTokens
			prev = res.ID
		}
		// Directly, the untagged ID continues on one replica only.
		orig, _, _ := strings.Cut(prev, "-tg")
		ok := 0
		for _, addr := range []string{a, b} {
			resp, err := http.Post("http://"+addr+"/v1/responses", "application/json",
				strings.NewReader(`{"model":"up-model","input":"x","previous_response_id":"`+orig+`"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok++
			} else if resp.StatusCode != 404 {
				t.Fatalf("direct follow-up: %d", resp.StatusCode)
			}
		}
		if ok != 1 {
			t.Fatalf("%s continues on %d replicas", orig, ok)
		}
		got, err := c.Responses.Get(ctx, prev, responses.ResponseGetParams{})
		if err != nil || got.ID != prev {
			t.Fatalf("get %s: %v %v", prev, got, err)
		}
		items, err := c.Responses.InputItems.List(ctx, prev, responses.InputItemListParams{})
		if err != nil || len(items.Data) == 0 {
			t.Fatalf("input items of %s: %v", prev, err)
		}
		if err := c.Responses.Delete(ctx, prev); err != nil {
			t.Fatal(err)
		}
		var ae *openai.Error
		if _, err := c.Responses.Get(ctx, prev, responses.ResponseGetParams{}); !errors.As(err, &ae) || ae.StatusCode != 404 {
			t.Fatalf("get after delete: %v", err)
		}
	}
}
