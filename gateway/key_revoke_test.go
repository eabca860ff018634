package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// The keys and admin token of the revocation tests.
const (
	revKeyA     = "sk-leaked-team-a-4f3e2d1c"
	revKeyB     = "sk-team-b-still-ok-9a8b7c"
	revAdminTok = "adm-revoke-token-5566"
)

// revokeConfig is a gateway in front of the mockllm at addr with keys team-a and
// team-b (given by its SHA-256), an admin token, and limiter.redis on redisURL unless
// it is empty; keys replaces the auth section when not empty.
func revokeConfig(addr, redisURL, keys string) string {
	if keys == "" {
		keys = `auth:
  keys:
    - {name: team-a, key: ` + revKeyA + `}
    - {name: team-b, sha256: ` + sha256Hex(revKeyB) + `}
`
	}
	cfg := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: "` + revAdminTok + `", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: legacy, type: completions, routes: [{backend: up}]}
  - {name: embed, type: embeddings, routes: [{backend: up}]}
logging: {level: info, format: json}
` + keys
	if redisURL != "" {
		cfg += `limiter: {store: redis, redis: {url: "` + redisURL + `"}}
`
	}
	return cfg
}

// keyChange is POST /admin/keys/{name}/{verb} on g with body and the admin token.
func keyChange(t *testing.T, g *gw, name, verb, body string) (int, map[string]any) {
	t.Helper()
	status, _, out := adminRaw(t, "POST", "http://"+g.AdminAddr()+"/admin/keys/"+name+"/"+verb, body,
		map[string]string{"Authorization": "Bearer " + revAdminTok})
	return status, out
}

// revokedView is GET /admin/keys/{name} on g, decoded.
func revokedView(t *testing.T, g *gw, name string) map[string]any {
	t.Helper()
	status, _, out := adminRaw(t, "GET", "http://"+g.AdminAddr()+"/admin/keys/"+name, "",
		map[string]string{"Authorization": "Bearer " + revAdminTok})
	if status != 200 {
		t.Fatalf("GET /admin/keys/%s: %d %v", name, status, out)
	}
	return out
}

// revChat is one chat completion with client c; nil when served.
func revChat(c openai.Client) error {
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "chat", Messages: userMsg("still mine?"), MaxTokens: openai.Int(4)})
	return err
}

// isRevoked reports whether err is the SDK's error for a 401 revoked_api_key.
func isRevoked(err error) bool {
	var ae *openai.Error
	return errors.As(err, &ae) && ae.StatusCode == 401 && ae.Code == codeKeyRevoked
}

// wantRevoked fails t unless err is the 401 revoked_api_key, typed as the SDKs raise
// an authentication error, whose answer shows neither the key, its hash nor its name.
func wantRevoked(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: served, want 401 revoked_api_key", what)
	}
	ae := apiErr(t, err)
	if ae.StatusCode != 401 || ae.Code != "revoked_api_key" || ae.Type != "authentication_error" {
		t.Fatalf("%s: %d %s/%s %q, want 401 authentication_error/revoked_api_key", what, ae.StatusCode, ae.Type, ae.Code, ae.Message)
	}
	if ae.Message != "This API key was revoked; ask for a new one." {
		t.Errorf("%s: message %q", what, ae.Message)
	}
	raw := strings.ToLower(ae.RawJSON())
	for _, secret := range []string{revKeyA, sha256Hex(revKeyA), sha256Hex(revKeyA)[:16]} {
		if strings.Contains(raw, secret) {
			t.Errorf("%s: the answer shows the key: %s", what, raw)
		}
	}
}

// noSecrets fails t when g's logs or metrics show a key, its hash or the admin token.
func noSecrets(t *testing.T, g *gw) {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for where, text := range map[string]string{"logs": g.logs.String(), "metrics": string(exposition)} {
		text = strings.ToLower(text)
		for _, secret := range []string{revKeyA, revKeyB, sha256Hex(revKeyA), sha256Hex(revKeyB), revAdminTok} {
			if strings.Contains(text, strings.ToLower(secret)) {
				t.Errorf("the %s show a secret (%.6s…)", where, secret)
			}
		}
	}
}

// A key revoked on one replica is refused on every replica sharing the Redis within
// the poll's bound (a second and a round trip), as the official SDK sees it, while
// another key goes on; the replica called refuses it at once. Each replica lists it
// revoked with its time and reason, the gauge says so, and the refusals count as 401s
// of endpoint "unknown", as the key's requests and in the access log. A restore on
// another replica takes it back everywhere.
func TestKeyRevokeEveryReplica(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := revokeConfig(addr, rds.URL(), "")
	gs := []*gw{startGateway(t, cfg), startGateway(t, cfg), startGateway(t, cfg)}
	a := make([]openai.Client, len(gs))
	for i, g := range gs {
		a[i] = g.client(option.WithAPIKey(revKeyA))
		if err := revChat(a[i]); err != nil {
			t.Fatalf("gateway %d before the revoke: %v", i, err)
		}
	}

	began := time.Now()
	status, out := keyChange(t, gs[0], "team-a", "revoke", `{"reason": "pasted in a public repo"}`)
	if status != 200 || out["name"] != "team-a" || out["revoked"] != true || out["reason"] != "pasted in a public repo" ||
		out["scope"] != "cluster" || out["changed"] != true {
		t.Fatalf("revoke: %d %v", status, out)
	}
	at, err := time.Parse(time.RFC3339Nano, out["revoked_at"].(string))
	if err != nil || at.Before(began.Add(-time.Second)) || at.After(time.Now()) {
		t.Errorf("revoked_at %v: %v", out["revoked_at"], err)
	}
	// The replica called, at once.
	wantRevoked(t, "the replica called", revChat(a[0]))
	for i := 1; i < len(gs); i++ {
		waitFor(t, func() bool { return isRevoked(revChat(a[i])) })
		t.Logf("gateway %d refuses the key %v after the revoke", i, time.Since(began).Round(time.Millisecond))
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("every replica refused the key %v after the revoke, want about a second", took)
	}
	for i, g := range gs {
		wantRevoked(t, "gateway "+strconv.Itoa(i), revChat(a[i]))
		if err := revChat(g.client(option.WithAPIKey(revKeyB))); err != nil {
			t.Errorf("gateway %d: team-b refused: %v", i, err)
		}
		v := revokedView(t, g, "team-a")
		if v["revoked"] != true || v["revoked_at"] != out["revoked_at"] || v["reason"] != "pasted in a public repo" {
			t.Errorf("gateway %d lists team-a: revoked %v at %v for %v", i, v["revoked"], v["revoked_at"], v["reason"])
		}
		if v := revokedView(t, g, "team-b"); v["revoked"] != false || v["revoked_at"] != nil || v["reason"] != nil {
			t.Errorf("gateway %d lists team-b: revoked %v at %v for %v", i, v["revoked"], v["revoked_at"], v["reason"])
		}
		fams := scrapeAdmin(t, g)
		if n, v := seriesWith(fams, "tollgate_key_revoked", "key", "team-a"); n != 1 || v != 1 {
			t.Errorf("gateway %d: tollgate_key_revoked{key=team-a}: %d series, %v", i, n, v)
		}
		if n, _ := seriesWith(fams, "tollgate_key_revoked", "key", "team-b"); n != 0 {
			t.Errorf("gateway %d: team-b has a tollgate_key_revoked series", i)
		}
	}

	// Counted and logged as the other 401s, under the key's name.
	g := gs[1]
	before := requestsWith(t, g, map[string]string{"endpoint": "unknown", "code": "401"})
	_, keyBefore := seriesWith(scrapeAdmin(t, g), "tollgate_key_requests_total", "key", "team-a")
	wantRevoked(t, "counted", revChat(a[1]))
	if n := requestsWith(t, g, map[string]string{"endpoint": "unknown", "code": "401"}); n != before+1 {
		t.Errorf("tollgate_requests_total{endpoint=unknown,code=401}: %v, want %v", n, before+1)
	}
	if _, n := seriesWith(scrapeAdmin(t, g), "tollgate_key_requests_total", "key", "team-a"); n != keyBefore+1 {
		t.Errorf("tollgate_key_requests_total{key=team-a}: %v, want %v", n, keyBefore+1)
	}
	var lines int
	for _, l := range accessLines(g) {
		if l["key"] == "team-a" && l["status"] == 401.0 {
			lines++
			if l["error"] != "revoked_api_key" {
				t.Errorf("access line of a refusal: %v", l)
			}
		}
	}
	if lines == 0 {
		t.Error("no access line of team-a's refusals")
	}
	logs := gs[0].logs.String()
	if !strings.Contains(logs, `"msg":"client key revoked: its requests are refused (401 revoked_api_key)"`) ||
		!strings.Contains(logs, `"reason":"pasted in a public repo","by":"127.0.0.1:`) {
		t.Errorf("no revoke line naming the reason and the admin's address: %s", logs)
	}
	if !strings.Contains(gs[2].logs.String(), "key revocations read from Redis") &&
		!strings.Contains(gs[2].logs.String(), "client key revoked (shared through Redis)") {
		t.Errorf("gateway 2 did not log the revocation it applied: %s", gs[2].logs.String())
	}

	// Restored on another replica: served again everywhere.
	status, out = keyChange(t, gs[2], "team-a", "restore", "")
	if status != 200 || out["revoked"] != false || out["changed"] != true || out["scope"] != "cluster" {
		t.Fatalf("restore: %d %v", status, out)
	}
	if err := revChat(a[2]); err != nil {
		t.Errorf("the replica called, after the restore: %v", err)
	}
	for i := range gs {
		waitFor(t, func() bool { return revChat(a[i]) == nil })
		if n, _ := seriesWith(scrapeAdmin(t, gs[i]), "tollgate_key_revoked", "key", "team-a"); n != 0 {
			t.Errorf("gateway %d: tollgate_key_revoked{key=team-a} after the restore", i)
		}
	}
	for _, g := range gs {
		noSecrets(t, g)
	}
}

// A revoked key is refused on every API route, before its body is read: chat,
// streamed chat, embeddings, completions, the Responses API, the model listings and an
// MLflow invocation.
func TestKeyRevokeEveryRoute(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, revokeConfig(addr, "", ""))
	if status, out := keyChange(t, g, "team-a", "revoke", ""); status != 200 || out["scope"] != "replica" {
		t.Fatalf("revoke: %d %v", status, out)
	}
	ctx := context.Background()
	c := g.client(option.WithAPIKey(revKeyA))
	chat := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi"), MaxTokens: openai.Int(4)}
	_, err := c.Chat.Completions.New(ctx, chat)
	wantRevoked(t, "chat", err)
	stream := c.Chat.Completions.NewStreaming(ctx, chat)
	for stream.Next() {
	}
	wantRevoked(t, "chat stream", stream.Err())
	_, err = c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")}})
	wantRevoked(t, "embeddings", err)
	_, err = c.Completions.New(ctx, openai.CompletionNewParams{Model: "legacy", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")}})
	wantRevoked(t, "completions", err)
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}})
	wantRevoked(t, "responses", err)
	_, err = c.Responses.Get(ctx, "resp_unknown", responses.ResponseGetParams{})
	wantRevoked(t, "GET /v1/responses/{id}", err)
	_, err = c.Models.List(ctx)
	wantRevoked(t, "models list", err)
	_, err = c.Models.Get(ctx, "chat")
	wantRevoked(t, "models get", err)
	resp, body := contractPost(t, g, "/endpoints/chat/invocations", `{"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"Authorization": "Bearer " + revKeyA})
	if resp.StatusCode != 401 || !strings.Contains(body, `"code":"revoked_api_key"`) {
		t.Errorf("MLflow invocation: %d %s", resp.StatusCode, body)
	}
	if err := revChat(g.client(option.WithAPIKey(revKeyB))); err != nil {
		t.Errorf("team-b: %v", err)
	}
}

// Every header a key is read from gets the refusal with its own challenge: a bearer
// key RFC 6750's invalid_token saying it was revoked, a key in api-key or x-api-key
// the bare one, as for a wrong key. With `Expect: 100-continue` it is answered from
// the headers, the body never invited.
func TestKeyRevokeHeaderFormsAndContinue(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, revokeConfig(addr, "", ""))
	if status, out := keyChange(t, g, "team-a", "revoke", `{"reason":"contractor left"}`); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	revokedChallenge := `Bearer realm="tollgate", error="invalid_token", error_description="The API key was revoked"`
	for _, tc := range []struct{ name, header, value, challenge string }{
		{"bearer", "Authorization", "Bearer " + revKeyA, revokedChallenge},
		{"bearer, scheme in lower case", "Authorization", "bearer " + revKeyA, revokedChallenge},
		{"api-key", "api-key", revKeyA, `Bearer realm="tollgate"`},
		{"x-api-key", "x-api-key", revKeyA, `Bearer realm="tollgate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
				map[string]string{tc.header: tc.value})
			if resp.StatusCode != 401 || !strings.Contains(body, `"code":"revoked_api_key"`) || !strings.Contains(body, `"type":"authentication_error"`) {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			resp, body = expectHeaders(t, g.Addr(), tc.header+": "+tc.value+"\r\n")
			if resp.StatusCode != 401 || !strings.Contains(body, `"code":"revoked_api_key"`) {
				t.Fatalf("answer to the expectation: %d %s, want the final 401 revoked_api_key", resp.StatusCode, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("100-continue: WWW-Authenticate %q, want %q", got, tc.challenge)
			}
		})
	}
	// team-b is invited to send its body.
	if resp, _ := expectHeaders(t, g.Addr(), "Authorization: Bearer "+revKeyB+"\r\n"); resp.StatusCode != 100 {
		t.Errorf("team-b's expectation: %d, want 100", resp.StatusCode)
	}
}

// A revocation outlives a reload, and with Redis a restart: the replica started reads
// it before its first request. A key renamed is a new name, not revoked; a name taken
// out of auth.keys stays revoked (in Redis and the gauge) until restored, which a
// restore of that name still does.
func TestKeyRevokeReloadAndRestart(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, revokeConfig(addr, rds.URL(), ""))
	if status, out := keyChange(t, g, "team-a", "revoke", `{"reason":"leaked"}`); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	a := g.client(option.WithAPIKey(revKeyA))
	wantRevoked(t, "before the reload", revChat(a))

	// A reload that adds a key: team-a stays revoked.
	reload := func(keys string) {
		t.Helper()
		if err := os.WriteFile(g.path, []byte(revokeConfig(addr, rds.URL(), keys)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := g.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	reload(`auth:
  keys:
    - {name: team-a, key: ` + revKeyA + `}
    - {name: team-b, sha256: ` + sha256Hex(revKeyB) + `}
    - {name: team-c, key: sk-team-c-000111222}
`)
	wantRevoked(t, "after a reload", revChat(a))

	// A restart: the new gateway refuses from its first request, no poll waited for.
	g.stop()
	g2 := startGateway(t, revokeConfig(addr, rds.URL(), ""))
	wantRevoked(t, "after a restart, first request", revChat(g2.client(option.WithAPIKey(revKeyA))))
	if !strings.Contains(g2.logs.String(), `"msg":"key revocations read from Redis: their requests are refused (401 revoked_api_key)","keys":["team-a"]`) {
		t.Errorf("the start did not log the revocations read: %s", g2.logs.String())
	}

	// team-a's key renamed team-a2: a new name, served. team-a, gone from the
	// config, stays revoked.
	if err := os.WriteFile(g2.path, []byte(revokeConfig(addr, rds.URL(), `auth:
  keys:
    - {name: team-a2, key: `+revKeyA+`}
    - {name: team-b, sha256: `+sha256Hex(revKeyB)+`}
`)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g2.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := revChat(g2.client(option.WithAPIKey(revKeyA))); err != nil {
		t.Errorf("the key renamed: %v", err)
	}
	if !strings.Contains(g2.logs.String(), `stay revoked until restored","keys":["team-a"]`) {
		t.Errorf("the reload did not log the revoked name it lost: %s", g2.logs.String())
	}
	if n, _ := seriesWith(scrapeAdmin(t, g2), "tollgate_key_revoked", "key", "team-a"); n != 1 {
		t.Errorf("tollgate_key_revoked{key=team-a} gone with the name")
	}
	if h, err := redistest.Command(rds.Addr(), "HKEYS", revokeHashKey); err != nil || h != "team-a" {
		t.Errorf("HKEYS %s: %q %v, want team-a", revokeHashKey, h, err)
	}
	// Revoking a name not configured is 404; restoring one revoked is not.
	if status, out := keyChange(t, g2, "team-a", "revoke", ""); status != 404 {
		t.Errorf("revoke of a name not configured: %d %v", status, out)
	} else {
		checkAdminError(t, "revoke of a name not configured", out, "key_not_found")
	}
	if status, out := keyChange(t, g2, "team-a", "restore", ""); status != 200 || out["changed"] != true {
		t.Errorf("restore of a name revoked, not configured: %d %v", status, out)
	}
	if status, out := keyChange(t, g2, "team-a", "restore", ""); status != 404 {
		t.Errorf("restore of a name neither configured nor revoked: %d %v", status, out)
	}
	if h, err := redistest.Command(rds.Addr(), "HLEN", revokeHashKey); err != nil || h != "0" {
		t.Errorf("HLEN after the restore: %q %v", h, err)
	}
}

// While Redis is down a replica keeps refusing the keys it knows revoked (the outage
// logged, not per poll), and a revoke answers 503 revocations_unavailable changing
// nothing anywhere. Redis back without its data (a restart without persistence): the
// replicas write their revocations back rather than take the empty set, and a
// restore reaches them all again.
func TestKeyRevokeRedisDown(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := revokeConfig(addr, rds.URL(), "")
	gs := []*gw{startGateway(t, cfg), startGateway(t, cfg)}
	if status, out := keyChange(t, gs[0], "team-a", "revoke", `{"reason":"leaked"}`); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	for _, g := range gs {
		waitFor(t, func() bool { return isRevoked(revChat(g.client(option.WithAPIKey(revKeyA)))) })
	}

	rds.Kill()
	for _, g := range gs {
		waitFor(t, func() bool { return strings.Contains(g.logs.String(), "key revocations not read from Redis") })
		wantRevoked(t, "while Redis is down", revChat(g.client(option.WithAPIKey(revKeyA))))
		if !strings.Contains(g.logs.String(), `"revocations":1`) {
			t.Errorf("the outage line does not count the revocations kept: %s", g.logs.String())
		}
	}
	status, out := keyChange(t, gs[1], "team-b", "revoke", `{"reason":"during the outage"}`)
	if status != 503 {
		t.Fatalf("revoke while Redis is down: %d %v, want 503", status, out)
	}
	checkAdminError(t, "revoke while Redis is down", out, "revocations_unavailable")
	if msg := out["error"].(map[string]any)["message"].(string); strings.Contains(msg, rds.Addr()) {
		t.Errorf("the answer shows Redis's address: %s", msg)
	}
	for i, g := range gs {
		if err := revChat(g.client(option.WithAPIKey(revKeyB))); err != nil {
			t.Errorf("gateway %d: team-b refused after a revoke that failed: %v", i, err)
		}
		if v := revokedView(t, g, "team-b"); v["revoked"] != false {
			t.Errorf("gateway %d lists team-b revoked after a revoke that failed", i)
		}
	}

	rds.Restart()
	waitFor(t, func() bool {
		h, err := redistest.Command(rds.Addr(), "HKEYS", revokeHashKey)
		return err == nil && h == "team-a"
	})
	for _, g := range gs {
		waitFor(t, func() bool { return strings.Contains(g.logs.String(), "key revocations read from Redis again") })
		wantRevoked(t, "after Redis lost its data", revChat(g.client(option.WithAPIKey(revKeyA))))
	}
	if !strings.Contains(gs[0].logs.String()+gs[1].logs.String(), "key revocations missing from Redis") {
		t.Error("no replica logged writing the revocations back")
	}
	if status, out := keyChange(t, gs[1], "team-a", "restore", ""); status != 200 || out["changed"] != true {
		t.Fatalf("restore: %d %v", status, out)
	}
	for _, g := range gs {
		waitFor(t, func() bool { return revChat(g.client(option.WithAPIKey(revKeyA))) == nil })
	}
}

// A gateway with Redis leaves no goroutine behind once stopped: the poll and its
// client end with it.
func TestKeyRevokeGoroutines(t *testing.T) {
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	ignore := goleak.IgnoreCurrent()
	g := startGateway(t, revokeConfig(addr, rds.URL(), ""))
	if status, out := keyChange(t, g, "team-a", "revoke", ""); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	wantRevoked(t, "revoked", revChat(g.client(option.WithAPIKey(revKeyA))))
	g.stop()
	// The test's own connections to the listeners, idle in its HTTP client.
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}
