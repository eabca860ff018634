package gateway

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A vLLM replica that does not serve the backend's model (a pool mid-rollout, one
// replica on another model) answers /tokenize 404 with vLLM's NotFoundError body:
// the count gets that error, in the Messages API's shape, and the backend does not
// take it for a server without a tokenizer: every count after it is asked of the
// replicas, and the one serving the model counts.
func TestCountTokensUnknownModelNotRemembered(t *testing.T) {
	serving, servingAddr := startMock(t, mockllm.Options{Model: "vllm-up", Seed: 3})
	other, otherAddr := startMock(t, mockllm.Options{Model: "vllm-next", Seed: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  vllm: {provider: openai, targets: ["http://`+servingAddr+`/v1", "http://`+otherAddr+`/v1"], model: vllm-up, timeout: 5s, messages_api: chat}
endpoints:
  - {name: coder, type: chat, routes: [{backend: vllm}], retries: 0}
`)
	const countBody = `{"model":"coder","messages":[{"role":"user","content":"hi"}]}`
	var counted, notFound int
	for i := range 6 {
		resp, body := msgPostTo(t, g, "/v1/messages/count_tokens", countBody)
		switch {
		case resp.StatusCode == 200 && body == `{"input_tokens":1}`:
			counted++
		case resp.StatusCode == 404 && strings.Contains(body, `"type":"not_found_error"`) && strings.Contains(body, "The model `vllm-up` does not exist."):
			notFound++
		default:
			t.Fatalf("count %d: %d %s; want a count, or the replica's unknown model", i, resp.StatusCode, body)
		}
	}
	asked := serving.Stats().Requests["/tokenize"] + other.Stats().Requests["/tokenize"]
	if counted == 0 || notFound == 0 || asked != 6 {
		t.Errorf("%d counted, %d not found, the replicas asked %d times; want both answers and every count asked", counted, notFound, asked)
	}
}
