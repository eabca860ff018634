package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// startBridged is a gateway whose chat endpoints reach backends without a Responses
// API: an Anthropic one (mockllm's Anthropic mode) and an OpenAI-compatible server
// told responses_api: chat (mockllm's chat completions), with a native one before the
// Anthropic backend as its primary route in endpoint "mixed", down.
func startBridged(t *testing.T) (*gw, *mockllm.Server) {
	t.Helper()
	_, claude := startMock(t, mockllm.Options{Model: "claude-sonnet-4-5-20250929", API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 32, Seed: 5})
	chatOnly, chatAddr := startMock(t, mockllm.Options{Model: "tgi-model", MaxTokens: 32, Seed: 5})
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+claude+`/v1", model: claude-sonnet-4-5-20250929, api_key: `+afAnthropicKey+`, timeout: 5s}
  tgi: {provider: openai, base_url: "http://`+chatAddr+`/v1", model: tgi-model, responses_api: chat, timeout: 5s}
  down: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: tgi, type: chat, routes: [{backend: tgi}]}
  - {name: mixed, type: chat, routes: [{backend: down}], fallbacks: [claude]}
`), chatOnly
}

// An application on the Responses API reaches a model served only through a chat
// API (Anthropic's Messages API, an OpenAI-compatible server without /v1/responses):
// the SDK's calls, buffered and streamed, a tool loop, get answers in the Responses
// API's form with their usage counted, and what needs a store is refused.
func TestResponsesBridge(t *testing.T) {
	t.Parallel()
	g, chatOnly := startBridged(t)
	c := g.client()
	ctx := context.Background()
	used := map[string][2]int64{}
	for _, model := range []string{"claude", "tgi"} {
		res, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model: model, Instructions: openai.String("Be brief."),
			Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
			MaxOutputTokens: openai.Int(16),
		})
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		if !strings.HasPrefix(res.ID, "resp_") || strings.Contains(res.ID, "-tg") || res.OutputText() == "" ||
			res.Usage.InputTokens == 0 || res.Usage.OutputTokens == 0 || res.Usage.OutputTokens > 16 {
			t.Fatalf("%s: %s", model, res.RawJSON())
		}
		if res.Status != responses.ResponseStatusCompleted && res.Status != responses.ResponseStatusIncomplete {
			t.Fatalf("%s: status %s", model, res.Status)
		}

		stream := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
			Model: model, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
		})
		var deltas strings.Builder
		var types []string
		var final responses.Response
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			switch ev.Type {
			case "response.output_text.delta":
				deltas.WriteString(ev.Delta)
			case "response.completed", "response.incomplete":
				final = ev.Response
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("%s stream: %v (%v)", model, err, types)
		}
		if len(types) < 4 || types[0] != "response.created" || !strings.HasPrefix(types[len(types)-1], "response.completed") && types[len(types)-1] != "response.incomplete" {
			t.Fatalf("%s: events %v", model, types)
		}
		if deltas.Len() == 0 || final.OutputText() != deltas.String() || final.Usage.OutputTokens == 0 {
			t.Fatalf("%s: deltas %q, final %s", model, deltas.String(), final.RawJSON())
		}

		used[model] = [2]int64{res.Usage.InputTokens + final.Usage.InputTokens, res.Usage.OutputTokens + final.Usage.OutputTokens}

		// Nothing is stored: no ID to continue or read.
		_, err = c.Responses.New(ctx, responses.ResponseNewParams{
			Model: model, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("more")},
			PreviousResponseID: openai.String(res.ID),
		})
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "previous_response_id" || !strings.Contains(ae.Message, "stores no responses") {
			t.Fatalf("%s follow-up: %v", model, err)
		}
		_, err = c.Responses.Get(ctx, res.ID, responses.ResponseGetParams{})
		if !errors.As(err, &ae) || ae.StatusCode != 404 {
			t.Fatalf("%s get: %v", model, err)
		}
	}
	// The usage of every call, buffered and streamed, is counted as a chat call's.
	series := scrapeUntil(t, g, func(s map[string]float64) bool {
		return s["tollgate_tokens_total{backend=tgi,endpoint=tgi,type=output}"] == float64(used["tgi"][1])
	})
	for _, model := range []string{"claude", "tgi"} {
		in := series["tollgate_tokens_total{backend="+model+",endpoint="+model+",type=input}"]
		out := series["tollgate_tokens_total{backend="+model+",endpoint="+model+",type=output}"]
		if in != float64(used[model][0]) || out != float64(used[model][1]) {
			t.Fatalf("%s: tokens counted in %v out %v; the answers said %v", model, in, out, used[model])
		}
	}
	if st := chatOnly.Stats(); st.Requests["/v1/responses"] != 0 || st.Requests["/v1/chat/completions"] != 2 {
		t.Fatalf("the chat-only server served %v", st.Requests)
	}

	// A tool loop: the call's function_call comes back as the next call's input with
	// its output.
	tool := responses.ToolParamOfFunction("get_weather", map[string]any{
		"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"},
	}, false)
	first, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "claude", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Paris?")},
		Tools:      []responses.ToolUnionParam{tool},
		ToolChoice: responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsRequired)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var call responses.ResponseFunctionToolCall
	for _, item := range first.Output {
		if item.Type == "function_call" {
			call = item.AsFunctionCall()
		}
	}
	if call.CallID == "" || call.Name != "get_weather" || !strings.Contains(call.Arguments, "city") {
		t.Fatalf("no function call in %s", first.RawJSON())
	}
	output := responses.ResponseInputItemParamOfFunctionCallOutput("18C and sunny")
	output.OfFunctionCallOutput.CallID = openai.String(call.CallID)
	second, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "claude", Tools: []responses.ToolUnionParam{tool},
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("Weather in Paris?", responses.EasyInputMessageRoleUser),
			responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name),
			output,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if second.OutputText() == "" {
		t.Fatalf("second turn %s", second.RawJSON())
	}
}

// A plain Responses call whose native backend is down falls back to a bridged one; a
// follow-up, which only the native backend's store knows, skips the bridged fallback
// and is answered that no backend can serve it.
func TestResponsesBridgeAsFallback(t *testing.T) {
	t.Parallel()
	g, _ := startBridged(t)
	req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(`{"model":"mixed","input":"hi"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-tollgate-backend") != "claude" || !strings.Contains(string(b), `"object":"response"`) {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
	}
	id := "resp_abc" + responseTag("down", "http://127.0.0.1:1/v1")
	c := g.client(option.WithMaxRetries(0))
	_, err = c.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "mixed", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("more")},
		PreviousResponseID: openai.String(id),
	})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode < 500 {
		t.Fatalf("follow-up: %v", err)
	}
}
