package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// aliasConfig: endpoint chat answers to two other names; a second endpoint has none.
func aliasConfig(addr string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: team-a, key: sk-a, endpoints: [chat]}
    - {name: team-b, key: sk-b, endpoints: [other]}
    - {name: ops, key: sk-ops}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model}
endpoints:
  - name: chat
    aliases: [gpt-4o, gpt-4o-2024-08-06]
    type: chat
    routes: [{backend: up}]
    limits: [{per: api_key, requests: 3, window: minute}]
  - {name: other, type: chat, routes: [{backend: up}]}
`
}

// A team moving clients from a model's old names to the endpoint: the endpoint's
// aliases are given as "model" as its name is, the same endpoint (one set of limits,
// metrics under its name), for the keys that may use it; /v1/models lists them.
func TestEndpointAliases(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 1})
	g := startGateway(t, aliasConfig(addr))
	ca := g.client(option.WithAPIKey("sk-a"))
	ctx := context.Background()
	for _, model := range []string{"chat", "gpt-4o", "gpt-4o-2024-08-06"} {
		var resp *http.Response
		if _, err := ca.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg("hi")},
			option.WithResponseInto(&resp)); err != nil {
			t.Fatalf("model %q: %v", model, err)
		}
		if got := resp.Header.Get("x-tollgate-backend"); got != "up" {
			t.Fatalf("model %q served by %q", model, got)
		}
	}
	// The endpoint's limit counted all three: the fourth is refused, by any name.
	_, err := ca.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: userMsg("hi")})
	wantAPIErrorStatus(t, "fourth call", err, 429)
	if n := counterValue(t, g.Server, "tollgate_requests_total", "endpoint", "chat", "code", "200"); n != 3 {
		t.Fatalf("tollgate_requests_total{endpoint=chat,code=200} = %v, want 3 (aliases count under the endpoint's name)", n)
	}
	fams, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "endpoint" && strings.HasPrefix(l.GetValue(), "gpt-4o") {
					t.Fatalf("%s has a series for alias %q", f.GetName(), l.GetValue())
				}
			}
		}
	}

	// A key kept to another endpoint does not reach this one by an alias.
	cb := g.client(option.WithAPIKey("sk-b"))
	_, err = cb.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: userMsg("hi")})
	wantAPIErrorStatus(t, "another key by an alias", err, 404)
	if _, err := cb.Models.Get(ctx, "gpt-4o"); err == nil {
		t.Fatal("GET /v1/models/gpt-4o answered a key that may not use it")
	}

	// Listed and retrieved under each name.
	list := func(key string) []string {
		t.Helper()
		c := g.client(option.WithAPIKey(key))
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := strings.Join(list("sk-a"), ","); got != "chat,gpt-4o,gpt-4o-2024-08-06" {
		t.Fatalf("team-a's models %s", got)
	}
	if got := strings.Join(list("sk-ops"), ","); got != "chat,gpt-4o,gpt-4o-2024-08-06,other" {
		t.Fatalf("ops' models %s", got)
	}
	if got := strings.Join(list("sk-b"), ","); got != "other" {
		t.Fatalf("team-b's models %s", got)
	}
	m, err := ca.Models.Get(ctx, "gpt-4o-2024-08-06")
	if err != nil || m.ID != "gpt-4o-2024-08-06" {
		t.Fatalf("GET by alias: %+v, %v", m, err)
	}

	// A reload that drops an alias: it names no endpoint from then on.
	cfg := strings.Replace(aliasConfig(addr), "aliases: [gpt-4o, gpt-4o-2024-08-06]", "aliases: [gpt-4o]", 1)
	if err := os.WriteFile(g.path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	co := g.client(option.WithAPIKey("sk-ops"))
	_, err = co.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-2024-08-06", Messages: userMsg("hi")})
	wantAPIErrorStatus(t, "a dropped alias", err, 404)
	if _, err := co.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: userMsg("hi")}); err != nil {
		t.Fatalf("the alias kept: %v", err)
	}
}

// MLflow's invocations route takes an alias as it takes the endpoint's name.
func TestEndpointAliasInvocation(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 1})
	g := startGateway(t, aliasConfig(addr))
	req, _ := http.NewRequest("POST", g.url+"/endpoints/gpt-4o/invocations", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-a")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct{ Choices []json.RawMessage }
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil || len(out.Choices) != 1 {
		t.Fatalf("invocation by alias: %d %s", resp.StatusCode, body)
	}
}

// An alias must name one endpoint and be a name a client can send; keys name
// endpoints by their names.
func TestEndpointAliasConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	base := `
auth:
  keys: [{name: k, key: sk-k, endpoints: [KEYS]}]
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], aliases: [A1]}
  - {name: other, type: chat, routes: [{backend: up}], aliases: [A2]}
`
	for _, c := range []struct{ a1, a2, keys, want string }{
		{"other", "x", "chat", `endpoints[0].aliases[0]: "other" is the name of an endpoint`},
		{"gpt", "gpt", "chat", `endpoints[1].aliases[0]: "gpt" is already an alias of endpoint "chat"`},
		{"gpt, gpt", "x", "chat", `endpoints[0].aliases[1]: duplicate alias "gpt"`},
		{`""`, "x", "chat", `endpoints[0].aliases[0]: is empty`},
		{`"gpt 4"`, "x", "chat", `endpoints[0].aliases[0]: must not hold spaces`},
		{"unknown", "x", "chat", `endpoints[0].aliases[0]: "unknown" is reserved`},
		{`"*"`, "x", `"*"`, `endpoints[0].aliases[0]: "*" is reserved: a key's endpoints: ["*"] means every endpoint`},
		{"gpt", "x", "gpt", `auth.keys[0].endpoints[0]: "gpt" is an alias of endpoint "chat": name the endpoint`},
		{"chat", "x", "chat", `endpoints[0].aliases[0]: "chat" is the name of an endpoint`},
	} {
		cfg := strings.NewReplacer("A1", c.a1, "A2", c.a2, "KEYS", c.keys).Replace(base)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("aliases [%s], [%s], key endpoints [%s]: error %v, want %q", c.a1, c.a2, c.keys, err, c.want)
		}
	}
}

func wantAPIErrorStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != status {
		t.Fatalf("%s: %v, want status %d", what, err, status)
	}
}
