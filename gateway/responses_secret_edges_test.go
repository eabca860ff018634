package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// signedMock is a gateway with two keys and auth.response_secret in front of one
// mockllm (its Responses API store on).
func signedMock(t *testing.T) *gw {
	t.Helper()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8, Seed: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  response_secret: "`+testResponseSecret+`"
  keys:
    - {name: team-a, key: sk-a}
    - {name: team-b, key: sk-b}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	return g
}

// postResponsesKey posts body to /v1/responses with key and returns the status and body.
func postResponsesKey(t *testing.T, g *gw, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// unsignedID is a signed ID without its tag and signature: the upstream's own ID.
func unsignedID(id string) string { return id[:len(id)-respSignedLen] }

// A key sending another key's untagged ID as previous_response_id, then the member
// again (null, or its own signed ID under an escaped key), is refused: an upstream that
// reads the first (mockllm) would otherwise continue the other key's conversation, and
// hand the caller that ID signed for itself.
func TestResponsesSecretPreviousIDGivenTwice(t *testing.T) {
	t.Parallel()
	g := signedMock(t)
	ca := g.client(option.WithAPIKey("sk-a"))
	cb := g.client(option.WithAPIKey("sk-b"))
	idA := newResponse(t, ca, "").ID
	origA := unsignedID(idA)
	idB := newResponse(t, cb, "").ID
	for _, c := range []struct{ name, members string }{
		{"then null", `"previous_response_id":"` + origA + `","previous_response_id":null`},
		{"then escaped key with its own ID", `"previous_response_id":"` + origA + `","previous\u005fresponse_id":"` + idB + `"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := postResponsesKey(t, g, "sk-b", `{"model":"chat","input":"go on",`+c.members+`}`)
			if status == 400 && strings.Contains(body, "previous_response_id parameter is given more than once") {
				return
			}
			var ans struct {
				Prev string `json:"previous_response_id"`
			}
			_ = json.Unmarshal([]byte(body), &ans)
			stolen := ""
			if strings.HasPrefix(ans.Prev, origA) && ans.Prev != origA {
				if _, err := cb.Responses.Get(context.Background(), ans.Prev, responses.ResponseGetParams{}); err == nil {
					stolen = "; team-b then read team-a's response with GET " + ans.Prev
				}
			}
			t.Fatalf("team-b naming team-a's %s (%s): observed %d, continued from %q%s; expected 400, the member given twice",
				origA, c.members, status, ans.Prev, stolen)
		})
	}
}

// goJSONUpstream is a Responses API upstream whose parser is Go's encoding/json (as
// Ollama's and others' are): struct fields matched without regard to case. It stores
// what it answers, for previous_response_id and GET.
func goJSONUpstream(t *testing.T) string {
	var mu sync.Mutex
	stored := map[string]bool{}
	n := 0
	return serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		defer mu.Unlock()
		ctx.SetContentType("application/json")
		if id, ok := strings.CutPrefix(string(ctx.Path()), "/v1/responses/"); ok {
			if !stored[id] {
				ctx.SetStatusCode(404)
				ctx.SetBodyString(`{"error":{"message":"Response with id '` + id + `' not found.","type":"invalid_request_error","param":null,"code":null}}`)
				return
			}
			ctx.SetBodyString(respObjectID(id, "completed", respUsage))
			return
		}
		var req struct {
			Prev string `json:"previous_response_id"`
		}
		_ = json.Unmarshal(ctx.PostBody(), &req)
		obj := ""
		if req.Prev != "" {
			if !stored[req.Prev] {
				ctx.SetStatusCode(404)
				ctx.SetBodyString(`{"error":{"message":"Previous response with id '` + req.Prev + `' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`)
				return
			}
			obj = `"previous_response_id":"` + req.Prev + `",`
		}
		n++
		id := "resp_go" + strconv.Itoa(n)
		stored[id] = true
		ctx.SetBodyString(strings.Replace(respObjectID(id, "completed", respUsage), `"object":"response",`, `"object":"response",`+obj, 1))
	})
}

// A key sending its own signed ID and another key's as "Previous_Response_ID" is
// refused: an upstream parsing with Go's encoding/json (case folded, last wins) would
// continue the other key's response and hand the caller its ID signed for itself.
func TestResponsesSecretPreviousIDCaseFolded(t *testing.T) {
	t.Parallel()
	addr := goJSONUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  response_secret: "`+testResponseSecret+`"
  keys:
    - {name: team-a, key: sk-a}
    - {name: team-b, key: sk-b}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	ca := g.client(option.WithAPIKey("sk-a"))
	cb := g.client(option.WithAPIKey("sk-b"))
	origA := unsignedID(newResponse(t, ca, "").ID)
	idB := newResponse(t, cb, "").ID
	status, body := postResponsesKey(t, g, "sk-b",
		`{"model":"chat","input":"go on","previous_response_id":"`+idB+`","Previous_Response_ID":"`+origA+`"}`)
	if status == 400 {
		return
	}
	var ans struct {
		Prev string `json:"previous_response_id"`
	}
	_ = json.Unmarshal([]byte(body), &ans)
	stolen := ""
	if strings.HasPrefix(ans.Prev, origA+"-tg") {
		if _, err := cb.Responses.Get(context.Background(), ans.Prev, responses.ResponseGetParams{}); err == nil {
			stolen = "; team-b then read team-a's response with GET " + ans.Prev
		}
	}
	t.Fatalf("team-b naming team-a's %s as Previous_Response_ID: observed %d, continued from %q%s; expected 400 (a member that differs from previous_response_id only in case refused)",
		origA, status, ans.Prev, stolen)
}

// An operator turns auth.response_secret on, then takes it out (a rollback): the
// conversations made meanwhile go on, their signatures no longer checked.
func TestResponsesSecretTurnedOff(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8, Seed: 3})
	cfg := func(secret string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
` + secret + `  keys:
    - {name: team-a, key: sk-a}
    - {name: team-b, key: sk-b}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	}
	g := startGateway(t, cfg(`  response_secret: "`+testResponseSecret+`"`+"\n"))
	ca := g.client(option.WithAPIKey("sk-a"))
	id := newResponse(t, ca, "").ID
	if err := os.WriteFile(g.path, []byte(cfg("")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, errNew := ca.Responses.New(ctx, responses.ResponseNewParams{Model: "chat",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("go on")}, PreviousResponseID: openai.String(id)})
	_, errGet := ca.Responses.Get(ctx, id, responses.ResponseGetParams{})
	if errNew != nil || errGet != nil {
		t.Fatalf("team-a continuing and reading its %s after the secret was taken out: observed %v and %v; expected the conversation to go on",
			id, errNew, errGet)
	}
}
