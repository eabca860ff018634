package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// The keys of the expiry tests: temp has an expires_at, forever none.
const (
	expTempKey    = "sk-temp-hackathon-5e6f7a8b"
	expForeverKey = "sk-forever-ops-1c2d3e4f"
)

// expiryConfig is a gateway in front of the mockllm at addr whose key temp expires at
// expires (auth.keys[0], its expires_at on line 12) and forever does not.
func expiryConfig(addr, expires string) string {
	return mockConfig(addr, "", "") + `auth:
  keys:
    - {name: temp, key: ` + expTempKey + `, expires_at: "` + expires + `"}
    - {name: forever, key: ` + expForeverKey + `}
`
}

// expiresIn is an expires_at d from now, to the second, and the instant it names.
func expiresIn(d time.Duration) (string, time.Time) {
	at := time.Now().Add(d).UTC().Truncate(time.Second)
	return at.Format(time.RFC3339), at
}

// passExpiry moves g's key clock by d: the keys are judged as if d later.
func passExpiry(g *gw, d time.Duration) { g.expirySkew.Store(int64(d)) }

// adminKeyView is GET /admin/keys/{name} on g, decoded.
func adminKeyView(t *testing.T, g *gw, name string) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr() + "/admin/keys/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /admin/keys/%s: %d %v", name, resp.StatusCode, err)
	}
	return v
}

// wantExpired fails t unless err is the SDK's error for a 401 expired_api_key whose
// message names the instant and not the key.
func wantExpired(t *testing.T, what string, err error, at time.Time) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: served, want 401 expired_api_key", what)
	}
	ae := apiErr(t, err)
	if ae.StatusCode != 401 || ae.Code != "expired_api_key" || ae.Type != "authentication_error" {
		t.Fatalf("%s: %d %s/%s %q, want 401 authentication_error/expired_api_key", what, ae.StatusCode, ae.Type, ae.Code, ae.Message)
	}
	if want := "This API key expired at " + at.Format(time.RFC3339) + "; ask for a new one."; ae.Message != want {
		t.Errorf("%s: message %q, want %q", what, ae.Message, want)
	}
	if raw := ae.RawJSON(); strings.Contains(raw, expTempKey) || strings.Contains(raw, sha256Hex(expTempKey)) {
		t.Errorf("%s: the answer shows the key: %s", what, raw)
	}
}

// A key works until its expires_at and, with no reload, is refused from then on with
// 401 expired_api_key on every API route, as the official SDK sees it: chat,
// embeddings, completions, the Responses API, the model listings. The refusals count
// as 401s of endpoint "unknown" and as the key's requests, and log the key's name with
// error expired_api_key; a key without expires_at goes on working. The admin API and
// the gauge give the instant, and whether it has passed.
func TestKeyExpiresWithoutReload(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	text, at := expiresIn(time.Hour)
	g := startGateway(t, expiryConfig(addr, text))
	ctx := context.Background()
	temp := g.client(option.WithAPIKey(expTempKey))
	forever := g.client(option.WithAPIKey(expForeverKey))
	chat := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("Still valid?"), MaxTokens: openai.Int(4)}

	if _, err := temp.Chat.Completions.New(ctx, chat); err != nil {
		t.Fatalf("before its expires_at: %v", err)
	}
	if v := adminKeyView(t, g, "temp"); v["expires_at"] != text || v["expired"] != false {
		t.Errorf("admin before: expires_at %v expired %v, want %s false", v["expires_at"], v["expired"], text)
	}
	if v := adminKeyView(t, g, "forever"); v["expires_at"] != nil || v["expired"] != false {
		t.Errorf("admin, a key without expiry: expires_at %v expired %v, want null false", v["expires_at"], v["expired"])
	}
	fams := scrapeAdmin(t, g)
	if n, v := seriesWith(fams, "tollgate_key_expiry_timestamp_seconds", "key", "temp"); n != 1 || v != float64(at.Unix()) {
		t.Errorf("tollgate_key_expiry_timestamp_seconds{key=temp}: %d series, %v; want %d", n, v, at.Unix())
	}
	if n, _ := seriesWith(fams, "tollgate_key_expiry_timestamp_seconds", "key", "forever"); n != 0 {
		t.Errorf("a key without expires_at has an expiry series")
	}

	passExpiry(g, 2*time.Hour)
	_, err := temp.Chat.Completions.New(ctx, chat)
	wantExpired(t, "chat", err, at)
	stream := temp.Chat.Completions.NewStreaming(ctx, chat)
	for stream.Next() {
	}
	wantExpired(t, "chat stream", stream.Err(), at)
	_, err = temp.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")}})
	wantExpired(t, "embeddings", err, at)
	_, err = temp.Completions.New(ctx, openai.CompletionNewParams{Model: "legacy", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")}})
	wantExpired(t, "completions", err, at)
	_, err = temp.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}})
	wantExpired(t, "responses", err, at)
	_, err = temp.Responses.Get(ctx, "resp_unknown", responses.ResponseGetParams{})
	wantExpired(t, "GET /v1/responses/{id}", err, at)
	// The listings: a 401, as OpenAI answers a revoked key, not an empty list that
	// reads as a config mistake.
	_, err = temp.Models.List(ctx)
	wantExpired(t, "models list", err, at)
	_, err = temp.Models.Get(ctx, "chat")
	wantExpired(t, "models get", err, at)
	const refused = 8

	if _, err := forever.Chat.Completions.New(ctx, chat); err != nil {
		t.Fatalf("a key without expires_at: %v", err)
	}
	if v := adminKeyView(t, g, "temp"); v["expires_at"] != text || v["expired"] != true {
		t.Errorf("admin after: expires_at %v expired %v, want %s true", v["expires_at"], v["expired"], text)
	}

	var lines int
	for _, l := range accessLines(g) {
		if l["key"] == "temp" && l["status"] == 401.0 {
			lines++
			if l["error"] != "expired_api_key" || l["endpoint"] != "unknown" && l["endpoint"] != "" {
				t.Errorf("access line of a refusal: %v", l)
			}
		}
	}
	if lines != refused {
		t.Errorf("%d access lines of temp's refusals, want %d", lines, refused)
	}
	if strings.Contains(g.logs.String(), expTempKey) {
		t.Error("the logs show the key")
	}
	fams = scrapeAdmin(t, g)
	if n := requestsWith(t, g, map[string]string{"endpoint": "unknown", "code": "401"}); n != refused {
		t.Errorf("tollgate_requests_total{endpoint=unknown,code=401} = %v, want %d", n, refused)
	}
	if _, v := seriesWith(fams, "tollgate_key_requests_total", "key", "temp"); v != refused+1 {
		t.Errorf("tollgate_key_requests_total{key=temp} = %v, want %d (one served, the refusals)", v, refused+1)
	}
}

// Exactly at its expires_at a key is refused; a nanosecond before, it is taken. Sent
// as a bearer token its 401 carries RFC 6750's invalid_token challenge; in api-key or
// x-api-key (Azure's and Anthropic's SDKs), the bare one, as for a wrong key.
func TestKeyExpiryInstantAndHeaderForms(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, expiryConfig("127.0.0.1:9", "2026-12-31T23:59:59.5+02:00"))
	rt := s.rt.Load()
	at := time.Date(2026, 12, 31, 21, 59, 59, 5e8, time.UTC)
	for _, tc := range []struct {
		name, header, value string
		bearer              bool
	}{
		{"bearer", "Authorization", "Bearer " + expTempKey, true},
		{"api-key", "api-key", expTempKey, false},
		{"x-api-key", "x-api-key", expTempKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			h.Set(tc.header, tc.value)
			if k, e := authenticate(rt, &h, at.Add(-time.Nanosecond)); e != nil || k == nil || k.name != "temp" {
				t.Fatalf("a nanosecond before: refused %v, want temp taken", e)
			}
			k, e := authenticate(rt, &h, at)
			if e == nil || e.code != "expired_api_key" || k == nil || k.name != "temp" {
				t.Fatalf("at the instant: refused %v, want temp refused expired_api_key", e)
			}
			if want := "This API key expired at 2026-12-31T21:59:59.5Z; ask for a new one."; e.message != want {
				t.Errorf("message %q, want %q", e.message, want)
			}
			var resp fasthttp.Response
			k.expiry.challenge(&resp.Header, e)
			writeError(&resp, e)
			want := `Bearer realm="tollgate"`
			if tc.bearer {
				want = `Bearer realm="tollgate", error="invalid_token", error_description="The API key expired"`
			}
			if got := string(resp.Header.Peek("WWW-Authenticate")); got != want {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
		})
	}
}

// Over the wire, both header forms get the refusal and its challenge, on an MLflow
// invocation too.
func TestKeyExpiredHeaderFormsOverHTTP(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	text, _ := expiresIn(time.Minute)
	g := startGateway(t, expiryConfig(addr, text))
	passExpiry(g, time.Hour)
	for _, tc := range []struct {
		name, path, body string
		hdr              [2]string
		challenge        string
	}{
		{"bearer", "/v1/chat/completions", authChatBody, [2]string{"Authorization", "Bearer " + expTempKey}, `error="invalid_token"`},
		{"api-key", "/v1/chat/completions", authChatBody, [2]string{"api-key", expTempKey}, ""},
		{"x-api-key", "/v1/embeddings", `{"model":"embed","input":"hi"}`, [2]string{"x-api-key", expTempKey}, ""},
		{"mlflow invocation", "/endpoints/chat/invocations", `{"messages":[{"role":"user","content":"hi"}]}`, [2]string{"Authorization", "Bearer " + expTempKey}, `error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b, h := authCall(t, "POST", g.url+tc.path, tc.body, [][2]string{tc.hdr})
			if st != 401 || !strings.Contains(b, `"code":"expired_api_key"`) {
				t.Fatalf("%d %s, want 401 expired_api_key", st, b)
			}
			ch := h.Get("Www-Authenticate")
			if !strings.HasPrefix(ch, `Bearer realm="tollgate"`) || (tc.challenge == "") != !strings.Contains(ch, "invalid_token") {
				t.Errorf("WWW-Authenticate %q, want invalid_token only for a bearer key", ch)
			}
		})
	}
}

// With `Expect: 100-continue`, an expired key is answered its 401 from the headers,
// the body never invited, and recorded once.
func TestExpectContinueRefusesExpiredKey(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	text, _ := expiresIn(time.Minute)
	g := startGateway(t, expiryConfig(addr, text))
	if resp, b := expectHeaders(t, g.Addr(), "Authorization: Bearer "+expTempKey+"\r\n"); resp.StatusCode != 100 {
		t.Fatalf("before its expires_at: %d %s, want 100 Continue", resp.StatusCode, b)
	}
	passExpiry(g, time.Hour)
	for _, tc := range []struct{ name, header, challenge string }{
		{"bearer", "Authorization: Bearer " + expTempKey, `Bearer realm="tollgate", error="invalid_token", error_description="The API key expired"`},
		{"api-key", "api-key: " + expTempKey, `Bearer realm="tollgate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "expect-expired-" + tc.name
			resp, b := expectHeaders(t, g.Addr(), tc.header+"\r\nX-Request-Id: "+id+"\r\n")
			if resp.StatusCode != 401 || !strings.Contains(b, `"code":"expired_api_key"`) {
				t.Fatalf("%d %s, want the final 401 expired_api_key, no invitation to upload", resp.StatusCode, b)
			}
			if got := resp.Header.Get("Www-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if n := strings.Count(g.logs.String(), `"request_id":"`+id+`"`); n != 1 {
				t.Errorf("%d access-log lines for the request, want 1", n)
			}
		})
	}
}

// A key expired already when the config loads is loaded (refused as expired, listed
// by the admin API), with one warning naming it. A reload that moves its expires_at
// on makes it work at once; one that removes expires_at removes its gauge series.
func TestKeyExpiryReload(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	const past = "2021-06-30T12:00:00Z"
	g := startGateway(t, expiryConfig(addr, past))
	ctx := context.Background()
	temp := g.client(option.WithAPIKey(expTempKey))
	chat := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("Extended?"), MaxTokens: openai.Int(4)}
	_, err := temp.Chat.Completions.New(ctx, chat)
	wantExpired(t, "expired at load", err, time.Date(2021, 6, 30, 12, 0, 0, 0, time.UTC))
	warnings := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(g.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["level"] == "WARN" && strings.HasPrefix(m["msg"].(string), "client key expired") {
				out = append(out, m)
			}
		}
		return out
	}
	if w := warnings(); len(w) != 1 || w[0]["key"] != "temp" || w[0]["expires_at"] != past || w[0]["config_key"] != "auth.keys[0].expires_at" {
		t.Fatalf("warnings at load: %v, want one naming temp", w)
	}
	if v := adminKeyView(t, g, "temp"); v["expired"] != true {
		t.Errorf("admin: expired %v, want true", v["expired"])
	}

	text, at := expiresIn(24 * time.Hour)
	if err := os.WriteFile(g.path, []byte(expiryConfig(addr, text)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := temp.Chat.Completions.New(ctx, chat); err != nil {
		t.Fatalf("extended by a reload: %v", err)
	}
	if w := warnings(); len(w) != 1 {
		t.Errorf("%d expiry warnings after a reload that extended the key, want the one at load", len(w))
	}
	if n, v := seriesWith(scrapeAdmin(t, g), "tollgate_key_expiry_timestamp_seconds", "key", "temp"); n != 1 || v != float64(at.Unix()) {
		t.Errorf("gauge after the reload: %d series, %v, want %d", n, v, at.Unix())
	}
	if v := adminKeyView(t, g, "temp"); v["expires_at"] != text || v["expired"] != false {
		t.Errorf("admin after the reload: %v %v, want %s false", v["expires_at"], v["expired"], text)
	}

	// expires_at removed: the key never expires, and its gauge series goes.
	noExpiry := strings.Replace(expiryConfig(addr, text), `, expires_at: "`+text+`"`, "", 1)
	if err := os.WriteFile(g.path, []byte(noExpiry), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	passExpiry(g, 48*time.Hour)
	if _, err := temp.Chat.Completions.New(ctx, chat); err != nil {
		t.Fatalf("expires_at removed by a reload: %v", err)
	}
	if n, _ := seriesWith(scrapeAdmin(t, g), "tollgate_key_expiry_timestamp_seconds"); n != 0 {
		t.Errorf("%d expiry series after expires_at was removed, want none", n)
	}
	if v := adminKeyView(t, g, "temp"); v["expires_at"] != nil || v["expired"] != false {
		t.Errorf("admin without expires_at: %v %v, want null false", v["expires_at"], v["expired"])
	}
}

// expires_at takes RFC 3339 timestamps with a zone; anything else is an error naming
// file, line and key, a value written empty (a variable set to nothing) included: it
// would read as a key that never expires.
func TestConfigKeyExpiresAt(t *testing.T) {
	const head = "backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\nauth:\n  keys:\n"
	for _, tc := range []struct{ name, value, want string }{
		{"UTC", "2026-12-31T23:59:59Z", ""},
		{"offset and fraction", "2026-12-31T23:59:59.250-05:00", ""},
		{"unquoted", "!unquoted 2026-12-31T23:59:59Z", ""},
		{"from the environment", `"${EXP}"`, ""},
		{"a date alone", "2026-12-31", "is a date without a time: write the instant the key stops working with its zone, e.g. 2026-12-31T23:59:59Z (RFC 3339)"},
		{"no zone", `"2026-12-31T23:59:59"`, "has no zone: end it with Z (UTC) or an offset such as +02:00 (RFC 3339)"},
		{"words", "next friday", "must be an RFC 3339 timestamp with its zone, e.g. 2026-12-31T23:59:59Z or 2026-12-31T18:00:00-05:00"},
		{"no such day", `"2026-02-30T00:00:00Z"`, "must be an RFC 3339 timestamp with its zone, e.g. 2026-12-31T23:59:59Z or 2026-12-31T18:00:00-05:00"},
		{"empty", `""`, "is empty: give the instant the key stops working (RFC 3339, e.g. 2026-12-31T23:59:59Z), or leave the key out"},
		{"an empty variable", `"${EMPTY}"`, "is empty: give the instant the key stops working (RFC 3339, e.g. 2026-12-31T23:59:59Z), or leave the key out"},
		{"null", "null", "is empty: give the instant the key stops working (RFC 3339, e.g. 2026-12-31T23:59:59Z), or leave the key out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := strings.TrimPrefix(tc.value, "!unquoted ")
			cfg := head + "    - {name: a, key: sk-aaaa}\n    - name: b\n      key: sk-bbbb\n      expires_at: " + v + "\n"
			_, err := ParseConfig("prod.yaml", []byte(cfg), env(map[string]string{"EXP": "2027-01-01T00:00:00+01:00", "EMPTY": ""}))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Error() != "prod.yaml:10: auth.keys[1].expires_at: "+tc.want):
				t.Fatalf("err = %v, want prod.yaml:10: auth.keys[1].expires_at: %s", err, tc.want)
			}
		})
	}
}
