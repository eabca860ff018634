package gateway

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// statusRecorder is an upstream that records the body of the last request and
// answers it with status: a chat completion (streamed when asked) for 200, else an
// OpenAI error.
type statusRecorder struct {
	bodyRecorder
	status int
}

func (u *statusRecorder) handle(ctx *fasthttp.RequestCtx) {
	if u.status == 200 {
		u.bodyRecorder.handle(ctx)
		return
	}
	u.mu.Lock()
	u.body = append(u.body[:0], ctx.PostBody()...)
	u.n++
	u.mu.Unlock()
	ctx.SetStatusCode(u.status)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}`)
}

// developerRoleGateway serves four chat endpoints: chat on a backend with
// developer_role system, as-came on one without it, and to-plain and to-dev, each on
// a backend that answers 503 with the other kind of backend as its fallback.
func developerRoleGateway(t *testing.T) (g *gw, dev, plain, down *statusRecorder) {
	dev, plain, down = &statusRecorder{status: 200}, &statusRecorder{status: 200}, &statusRecorder{status: 503}
	g = startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  dev: {provider: openai, base_url: "http://`+serveUpstream(t, dev.handle)+`/v1", model: up-model, timeout: 5s, developer_role: system}
  plain: {provider: openai, base_url: "http://`+serveUpstream(t, plain.handle)+`/v1", model: up-model, timeout: 5s}
  devdown: {provider: openai, base_url: "http://`+serveUpstream(t, down.handle)+`/v1", model: up-model, timeout: 5s,
            developer_role: system, health: {eject_after: 1000000000}}
  plaindown: {provider: openai, base_url: "http://`+serveUpstream(t, down.handle)+`/v1", model: up-model, timeout: 5s,
              developer_role: developer, health: {eject_after: 1000000000}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: dev}]}
  - {name: as-came, type: chat, routes: [{backend: plain}]}
  - {name: to-plain, type: chat, routes: [{backend: devdown}], retries: 0, fallbacks: [plain]}
  - {name: to-dev, type: chat, routes: [{backend: plaindown}], retries: 0, fallbacks: [dev]}
logging: {level: error, access_log: false}
`)
	return g, dev, plain, down
}

// sendChat posts body to the gateway's chat completions and fails the test unless it
// is answered 200.
func sendChat(t *testing.T, g *gw, body string) {
	t.Helper()
	status, answer := postJSON(t, g.url+"/v1/chat/completions", body)
	if status != 200 {
		t.Fatalf("%s: %d %s", body, status, answer)
	}
}

// withModel is body, a chat call without model and without its closing brace, as
// the client sends it to endpoint and as the upstream gets it (model up-model, and a
// stream's stream_options asking for usage).
func withModel(body, endpoint string, stream bool) (sent, upstream string) {
	sent, upstream = `{"model":"`+endpoint+`",`+body, `{"model":"up-model",`+body
	if stream {
		return sent + `,"stream":true}`, upstream + `,"stream":true,"stream_options":{"include_usage":true}}`
	}
	return sent + "}", upstream + "}"
}

// A backend with developer_role system gets every developer message of a chat call
// as a system message, wherever it stands and however its role is written, streamed
// or not; the rest of the body, a "developer" in content among it, as it came. A call
// without a developer message reaches it byte for byte as it reaches a backend without
// the key.
func TestDeveloperRoleUpstreamBodies(t *testing.T) {
	g, dev, plain, _ := developerRoleGateway(t)
	for _, c := range []struct{ name, body, want string }{
		{"first",
			`"messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}],"temperature":0.2`,
			`"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"temperature":0.2`},
		{"in the middle",
			`"messages":[{"role":"user","content":"Hi"},{"role":"developer","content":"In French."},{"role":"user","content":"Again"}]`,
			`"messages":[{"role":"user","content":"Hi"},{"role":"system","content":"In French."},{"role":"user","content":"Again"}]`},
		{"escaped",
			`"messages":[{"r\u006fle":"develop\u0065r","content":"Be brief."},{"role":"user","content":"Hi"}]`,
			`"messages":[{"r\u006fle":"system","content":"Be brief."},{"role":"user","content":"Hi"}]`},
		{"developer in content",
			`"messages":[{"role":"user","content":"As a developer, \"role\":\"developer\"?"},{"role":"assistant","content":"developer"}]`, ""},
		{"none",
			`"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]`, ""},
	} {
		for _, stream := range []bool{false, true} {
			name := c.name
			if stream {
				name += ", streamed"
			}
			t.Run(name, func(t *testing.T) {
				want := c.want
				if want == "" {
					want = c.body
				}
				body, _ := withModel(c.body, "chat", stream)
				_, wantSent := withModel(want, "chat", stream)
				sendChat(t, g, body)
				if sent, _ := dev.last(); string(sent) != wantSent {
					t.Errorf("developer_role system: upstream got\n%s\nwant\n%s", sent, wantSent)
				}
				asCameBody, asCame := withModel(c.body, "as-came", stream)
				sendChat(t, g, asCameBody)
				if sent, _ := plain.last(); string(sent) != asCame {
					t.Errorf("no developer_role: upstream got\n%s\nwant it as it came\n%s", sent, asCame)
				}
			})
		}
	}
}

// A fallback gets the call's body as its own developer_role says, not as the backend
// that failed sent it: the rewrite is the backend's, on its copy of the body.
func TestDeveloperRoleFallback(t *testing.T) {
	g, dev, plain, down := developerRoleGateway(t)
	const (
		asCame   = `"messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}]`
		asSystem = `"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]`
	)
	for _, stream := range []bool{false, true} {
		_, came := withModel(asCame, "", stream)
		_, system := withModel(asSystem, "", stream)

		body, _ := withModel(asCame, "to-plain", stream)
		sendChat(t, g, body)
		if sent, _ := down.last(); string(sent) != system {
			t.Errorf("stream %v: the failing backend with developer_role system got\n%s\nwant\n%s", stream, sent, system)
		}
		if sent, _ := plain.last(); string(sent) != came {
			t.Errorf("stream %v: its fallback without the key got\n%s\nwant\n%s", stream, sent, came)
		}

		body, _ = withModel(asCame, "to-dev", stream)
		sendChat(t, g, body)
		if sent, _ := down.last(); string(sent) != came {
			t.Errorf("stream %v: the failing backend with developer_role developer got\n%s\nwant\n%s", stream, sent, came)
		}
		if sent, _ := dev.last(); string(sent) != system {
			t.Errorf("stream %v: its fallback with developer_role system got\n%s\nwant\n%s", stream, sent, system)
		}
	}
}

// developer_role is refused at its line for a value other than developer or system,
// and on the providers whose chat calls it would not change.
func TestDeveloperRoleConfigProblems(t *testing.T) {
	_, problems := parseProblems(t, `backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m,
       developer_role: System}
  claude: {provider: anthropic, base_url: "http://127.0.0.1:1/v1", model: c,
           developer_role: system}
  demo:
    provider: mock
    model: m
    developer_role: developer
  ok: {provider: azure, base_url: "https://r.openai.azure.com", deployment: d, model: m, developer_role: system}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], fallbacks: [claude, demo, ok]}
`, nil)
	// Backends in the order of their names.
	want := []string{
		"t.yaml:5: backends.claude.developer_role: does not apply to provider anthropic, whose translation sends developer messages as the system prompt already",
		"t.yaml:9: backends.demo.developer_role: does not apply to provider mock, which answers in process",
		"t.yaml:3: backends.up.developer_role: must be developer (messages go with the role they came with; the default) or system",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

// An endpoint's answer cache is emptied when one of its backends turns developer_role
// system on or off: its answers to calls with developer messages were made from
// another prompt. developer_role developer is the default, and changes nothing.
func TestDeveloperRoleCacheFingerprint(t *testing.T) {
	const base = `backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}
`
	fingerprint := func(y string) string {
		t.Helper()
		cfg, problems := parseProblems(t, y, nil)
		if problems != nil {
			t.Fatalf("problems: %q", problems)
		}
		return cacheFingerprint(cfg, &cfg.Endpoints[0])
	}
	was := fingerprint(base)
	if fingerprint(strings.Replace(base, "model: m}", "model: m, developer_role: system}", 1)) == was {
		t.Error("developer_role system: same fingerprint")
	}
	if fingerprint(strings.Replace(base, "model: m}", "model: m, developer_role: developer}", 1)) != was {
		t.Error("developer_role developer, the default: another fingerprint")
	}
}
