package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// OpenAI deprecated the request's user ("being replaced by safety_identifier and
// prompt_cache_key"); the official SDKs mark User deprecated and a current client
// names its end user in safety_identifier. Such a client is counted per user, not
// lumped into the one empty-user bucket that every user-less request shares.
func TestSafetyIdentifierCountsPerUser(t *testing.T) {
	up := startStaticUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits: [{per: user, requests: 1, window: minute}]
logging: {level: error, access_log: false}
`)
	cl := g.client()
	ask := func(p openai.ChatCompletionNewParams) int {
		t.Helper()
		p.Model = "chat"
		p.Messages = []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")}
		_, err := cl.Chat.Completions.New(t.Context(), p)
		if err == nil {
			return 200
		}
		var ae *openai.Error
		if errors.As(err, &ae) {
			return ae.StatusCode
		}
		t.Fatal(err)
		return 0
	}
	for _, c := range []struct {
		name   string
		params openai.ChatCompletionNewParams
		want   int
	}{
		{"user alice", openai.ChatCompletionNewParams{User: openai.String("alice")}, 200},
		{"user bob, own bucket", openai.ChatCompletionNewParams{User: openai.String("bob")}, 200},
		{"safety_identifier carol", openai.ChatCompletionNewParams{SafetyIdentifier: openai.String("carol-hash")}, 200},
		{"safety_identifier dave, own bucket", openai.ChatCompletionNewParams{SafetyIdentifier: openai.String("dave-hash")}, 200},
		// safety_identifier wins over user: carol's bucket is spent, alice's too.
		{"safety_identifier carol again, beside a fresh user", openai.ChatCompletionNewParams{
			SafetyIdentifier: openai.String("carol-hash"), User: openai.String("erin")}, 429},
		{"user erin alone", openai.ChatCompletionNewParams{User: openai.String("erin")}, 200},
		// Requests naming no end user share one bucket: leaving the field out does not
		// escape the limit.
		{"no user", openai.ChatCompletionNewParams{}, 200},
		{"no user again", openai.ChatCompletionNewParams{}, 429},
		{"empty user and safety_identifier, the same bucket", openai.ChatCompletionNewParams{
			User: openai.String(""), SafetyIdentifier: openai.String("")}, 429},
	} {
		if s := ask(c.params); s != c.want {
			t.Errorf("%s: status %d, want %d", c.name, s, c.want)
		}
	}
}

// sticky: {from: user} keeps "a user ... on one variant on every call" (README), a
// user named in safety_identifier (the successor of user) too.
func TestSafetyIdentifierIsStickyUser(t *testing.T) {
	t.Parallel()
	a := startStaticUpstream(t)
	b := startStaticUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+a+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+b+`/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50, variant: stable}, {backend: canary, weight: 50, variant: canary}]
    sticky: {from: user}
logging: {level: error, access_log: false}
`)
	variants := func(member string) map[string]int {
		t.Helper()
		seen := map[string]int{}
		body := `{"model":"chat","messages":[{"role":"user","content":"Hello"}],` + member + `}`
		for range 30 {
			resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			seen[resp.Header.Get("X-Tollgate-Variant")]++
		}
		return seen
	}
	if seen := variants(`"user":"user-1234"`); len(seen) != 1 {
		t.Fatalf("control: one user was served by variants %v", seen)
	}
	if seen := variants(`"safety_identifier":"user-1234"`); len(seen) != 1 {
		t.Errorf("one end user named by safety_identifier was served by variants %v, want one", seen)
	}
}

// The end user the sticky key and per: user limits read: safety_identifier when it
// is a non-empty string, else user; the last member of a name counts, as upstream
// parsers read it; either is read as the string it encodes.
func TestEndUserRead(t *testing.T) {
	for _, c := range []struct{ name, members, want string }{
		{"user", `"user":"bob"`, "bob"},
		{"safety_identifier", `"safety_identifier":"alice"`, "alice"},
		{"safety_identifier over user", `"user":"bob","safety_identifier":"alice"`, "alice"},
		{"safety_identifier before user", `"safety_identifier":"alice","user":"bob"`, "alice"},
		{"empty safety_identifier leaves user", `"safety_identifier":"","user":"bob"`, "bob"},
		{"null safety_identifier leaves user", `"safety_identifier":null,"user":"bob"`, "bob"},
		{"numeric safety_identifier leaves user", `"safety_identifier":7,"user":"bob"`, "bob"},
		{"escaped safety_identifier", `"safety_identifier":"jos\u00e9"`, "josé"},
		{"escaped key", `"safety\u005fidentifier":"alice","user":"bob"`, "alice"},
		{"last safety_identifier not a string", `"safety_identifier":"alice","safety_identifier":null,"user":"bob"`, "bob"},
		{"last user not a string", `"user":"bob","user":5`, ""},
		{"neither", `"temperature":1`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &request{body: []byte(`{"model":"m",` + c.members + `}`)}
			if e := scanBody(r.body, &r.f); e != nil {
				t.Fatalf("refused: %s", e.message)
			}
			if got := string(r.user()); got != c.want {
				t.Errorf("%s: user %q, want %q", c.members, got, c.want)
			}
		})
	}
}
