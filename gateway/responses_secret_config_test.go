package gateway

import (
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/openai/openai-go/v3/option"
)

// auth.response_secret written unquoted, a random value that begins with '!' or '&',
// which YAML reads as a tag or an anchor with no value, is refused naming the key (as
// one beginning with '*' is), not taken as no secret, which would leave every
// response ID unsigned.
func TestResponsesSecretReadAsTagOrAnchor(t *testing.T) {
	t.Parallel()
	for name, v := range map[string]string{"tag": `!Zq7secretvalue123456789`, "anchor": `&Zq7secretvalue123456789`} {
		t.Run(name, func(t *testing.T) {
			cfg := "auth:\n  mode: none\n  response_secret: " + v + "\nbackends:\n  up: {provider: mock, model: m}\n" +
				"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
			c, err := ParseConfig("t.yaml", []byte(cfg), func(string) (string, bool) { return "", false })
			if err == nil {
				t.Fatalf("response_secret: %s (unquoted): observed the config loading with response_secret %q; "+
					"expected an error at t.yaml:3 naming auth.response_secret (quote it)", v, c.Auth.ResponseSecret)
			}
			if !strings.Contains(err.Error(), "auth.response_secret") || strings.Contains(err.Error(), "Zq7secret") {
				t.Fatalf("observed %v; expected a problem naming auth.response_secret without its value", err)
			}
		})
	}
}

// After auth.response_secret is taken out (the rollback README offers), a follow-up
// naming a signed ID is answered with previous_response_id as it sent it, the
// signature kept.
func TestResponsesSecretOffEchoesPreviousIDAsSent(t *testing.T) {
	t.Parallel()
	up, addr := startResponsesUpstreamID(t, "resp_a")
	up.echoPrev.Store(true)
	cfg := func(secret string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
` + secret + `  keys:
    - {name: team-a, key: sk-a}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	}
	g := startGateway(t, cfg(`  response_secret: "`+testResponseSecret+`"`+"\n"))
	ca := g.client(option.WithAPIKey("sk-a"))
	id := newResponse(t, ca, "").ID
	if len(id) != len("resp_a")+respSignedLen {
		t.Fatalf("ID %s: not signed", id)
	}
	if err := os.WriteFile(g.path, []byte(cfg("")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	res := newResponse(t, ca, id)
	if res.PreviousResponseID != id {
		t.Fatalf("follow-up with %s after the secret was taken out: observed previous_response_id %s in the answer; expected %s, the ID as sent",
			id, res.PreviousResponseID, id)
	}
}

// An OpenAI-compatible server (responses_api: chat) streaming a tool call whose
// arguments go on after some text came between their pieces, which chat's stream
// format allows (clients join deltas by index), serves chat clients well; the bridge
// cannot lay that stream out as items (an item is done once text follows it), and
// its limitation does not eject the replica (eject_after: 1) from the chat calls it
// serves.
func TestResponsesBridgeResumedCallNotJudged(t *testing.T) {
	t.Parallel()
	var onA atomic.Int64
	addr, _ := scriptedUpstream(t, func(n int, c net.Conn, req *http.Request) {
		chunk := func(delta, finish string) string {
			return `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
		}
		events := chunk(`{"role":"assistant","content":"Hi"}`, "null") + chunk(`{}`, `"stop"`) + "data: [DONE]\n\n"
		if strings.HasPrefix(req.URL.Path, "/a/") {
			onA.Add(1)
			events = chunk(`{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]}`, "null") +
				chunk(`{"content":"one moment"}`, "null") +
				chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}`, "null") +
				chunk(`{}`, `"tool_calls"`) + "data: [DONE]\n\n"
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "+strconv.Itoa(len(events))+"\r\n\r\n"+events)
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, targets: ["http://`+addr+`/a/v1", "http://`+addr+`/b/v1"], model: m, responses_api: chat, balance: round_robin,
       timeout: 5s, health: {eject_after: 1, eject_for: 60s}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
`)
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(g.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const chat = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	// Chat calls on both replicas: A's stream is relayed whole, A stays in.
	for range 4 {
		if st, body := post("/v1/chat/completions", chat); st != 200 || !strings.Contains(body, "[DONE]") || strings.Contains(body, `"error"`) {
			t.Fatalf("chat stream: %d %s", st, body)
		}
	}
	if onA.Load() != 2 {
		t.Fatalf("replica A got %d of 4 chat calls before; want 2", onA.Load())
	}
	// Responses calls until one reaches A.
	var onAStream string
	for i := 0; onA.Load() == 2; i++ {
		if i == 2 {
			t.Fatal("no Responses call reached replica A")
		}
		_, onAStream = post("/v1/responses", `{"model":"chat","input":"hi","stream":true}`)
	}
	if !strings.Contains(onAStream, "upstream_bad_response") {
		t.Fatalf("the bridged stream from A: observed %s; expected it to end with the error event upstream_bad_response", onAStream)
	}
	before := onA.Load()
	for range 4 {
		if st, body := post("/v1/chat/completions", chat); st != 200 {
			t.Fatalf("chat stream after: %d %s", st, body)
		}
	}
	if got := onA.Load() - before; got != 2 {
		t.Fatalf("after one bridged Responses call found replica A's valid tool-call stream unreadable: observed A getting %d of 4 chat calls; "+
			"expected 2, as before", got)
	}
}

// auth.response_secret written but empty (a variable set to nothing, a generator that
// failed) is refused: taken as no secret, it would leave stored responses open to
// every key.
func TestResponsesSecretEmptyRefused(t *testing.T) {
	t.Parallel()
	for _, v := range []string{`""`, `"${SECRET}"`, `${SECRET}`} {
		cfg := "auth:\n  mode: none\n  response_secret: " + v + "\nbackends:\n  up: {provider: mock, model: m}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
		_, err := ParseConfig("t.yaml", []byte(cfg), func(k string) (string, bool) { return "", k == "SECRET" })
		if err == nil || !strings.Contains(err.Error(), "t.yaml:3: auth.response_secret: is empty") {
			t.Fatalf("response_secret: %s, empty: %v", v, err)
		}
	}
	cfg := "auth:\n  mode: none\nbackends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	if _, err := ParseConfig("t.yaml", []byte(cfg), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatalf("without the key: %v", err)
	}
}
