package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// An OpenAI-compatible server (responses_api: chat) that streams parallel tool calls
// interleaved by index (mockllm's x-mock-tool-calls: 3 interleaved) serves the
// official SDK's streamed Responses call as OpenAI would: one function_call item per
// call, each added once with its name, its argument deltas naming it by item_id and
// output_index, all done in output_index order at the end, and the completed
// response holding the same items as the buffered answer and the stream of the same
// calls one after the other; the calls go back in the next turn of the tool loop.
func TestResponsesBridgeInterleavedToolCalls(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{Model: "tgi-model", MaxTokens: 16, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  tgi: {provider: openai, base_url: "http://`+addr+`/v1", model: tgi-model, responses_api: chat, timeout: 5s}
endpoints:
  - {name: tgi, type: chat, routes: [{backend: tgi}]}
`)
	c := g.client()
	ctx := context.Background()
	params := responses.ResponseNewParams{
		Model: "tgi", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather and time in Paris?")},
		Tools: []responses.ToolUnionParam{
			responses.ToolParamOfFunction("get_weather", map[string]any{"type": "object"}, false),
			responses.ToolParamOfFunction("get_time", map[string]any{"type": "object"}, false),
		},
	}
	// items is an output with the IDs the bridge makes up left out.
	items := func(out []responses.ResponseOutputItemUnion) string {
		var b []byte
		for _, o := range out {
			var m map[string]any
			if err := json.Unmarshal([]byte(o.RawJSON()), &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "id")
			j, _ := json.Marshal(m)
			b = append(append(b, j...), '\n')
		}
		return string(b)
	}
	buffered, err := c.Responses.New(ctx, params, option.WithHeader("x-mock-tool-calls", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if len(buffered.Output) != 3 {
		t.Fatalf("buffered answer %s", buffered.RawJSON())
	}
	for i, o := range buffered.Output {
		if o.Type != "function_call" || o.Name != []string{"get_weather", "get_time", "get_weather"}[i] || o.Arguments.OfString != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("buffered output[%d] %s", i, o.RawJSON())
		}
	}
	for _, tc := range []struct{ name, header, deltas string }{
		{"interleaved", "3 interleaved", "[0 1 2 0 1 2]"},
		{"one after the other", "3", "[0 0 1 1 2 2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := c.Responses.NewStreaming(ctx, params, option.WithHeader("x-mock-tool-calls", tc.header))
			var added []responses.ResponseOutputItemUnion
			args := map[int64]string{}
			var deltas, dones []int64
			var final responses.Response
			for stream.Next() {
				ev := stream.Current()
				switch ev.Type {
				case "response.output_item.added":
					if ev.OutputIndex != int64(len(added)) || ev.Item.Type != "function_call" || ev.Item.Name == "" {
						t.Fatalf("added %s at %d after %d", ev.Item.RawJSON(), ev.OutputIndex, len(added))
					}
					added = append(added, ev.Item)
				case "response.function_call_arguments.delta":
					if ev.OutputIndex >= int64(len(added)) || ev.ItemID != added[ev.OutputIndex].ID {
						t.Fatalf("delta names %s at %d", ev.ItemID, ev.OutputIndex)
					}
					deltas = append(deltas, ev.OutputIndex)
					args[ev.OutputIndex] += ev.Delta
				case "response.function_call_arguments.done":
					if ev.ItemID != added[ev.OutputIndex].ID || ev.Arguments != args[ev.OutputIndex] {
						t.Fatalf("arguments done %s at %d: %q; deltas joined %q", ev.ItemID, ev.OutputIndex, ev.Arguments, args[ev.OutputIndex])
					}
				case "response.output_item.done":
					if ev.Item.ID != added[ev.OutputIndex].ID || ev.Item.Arguments.OfString != args[ev.OutputIndex] {
						t.Fatalf("item done %s at %d", ev.Item.RawJSON(), ev.OutputIndex)
					}
					dones = append(dones, ev.OutputIndex)
				case "response.completed":
					final = ev.Response
				case "error", "response.failed", "response.incomplete":
					t.Fatalf("%s: %s", ev.Type, ev.RawJSON())
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(deltas) != tc.deltas || fmt.Sprint(dones) != "[0 1 2]" {
				t.Fatalf("argument deltas of items %v, items done %v; want %s, [0 1 2]", deltas, dones, tc.deltas)
			}
			if items(final.Output) != items(buffered.Output) || final.Usage.OutputTokens != buffered.Usage.OutputTokens {
				t.Fatalf("streamed output\n%s(usage %s)\nbuffered\n%s(usage %s)", items(final.Output), final.Usage.RawJSON(), items(buffered.Output), buffered.Usage.RawJSON())
			}
			for i, o := range final.Output {
				if o.ID != added[i].ID {
					t.Errorf("output[%d] %s; added as %s", i, o.ID, added[i].ID)
				}
			}
			// The next turn of the loop sends the calls back with their outputs.
			in := responses.ResponseInputParam{responses.ResponseInputItemParamOfMessage("Weather and time in Paris?", responses.EasyInputMessageRoleUser)}
			for _, o := range final.Output {
				call := o.AsFunctionCall()
				in = append(in, responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name))
				out := responses.ResponseInputItemParamOfFunctionCallOutput("18C")
				out.OfFunctionCallOutput.CallID = openai.String(call.CallID)
				in = append(in, out)
			}
			next, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "tgi", Tools: params.Tools,
				Input: responses.ResponseNewParamsInputUnion{OfInputItemList: in}})
			if err != nil || next.OutputText() == "" {
				t.Fatalf("next turn: %v", err)
			}
		})
	}
}
