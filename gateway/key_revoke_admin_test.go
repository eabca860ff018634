package gateway

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// The admin API's answers to revocations: the admin token and the cross-site rules as
// on every /admin/ path, key_not_found for a name not configured, the body's shape, a
// reason that would put a secret in the logs refused, 405 for another method, and a
// second revoke or a restore of a key not revoked answered 200 with changed false.
func TestKeyRevokeAdminAnswers(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, revokeConfig(addr, "", `auth:
  keys:
    - {name: team-a, key: `+revKeyA+`}
    - {name: team-b, sha256: `+sha256Hex(revKeyB)+`}
    - {name: ops/batch, key: sk-ops-batch-99887766}
`))
	base := "http://" + g.AdminAddr() + "/admin/keys/"
	auth := map[string]string{"Authorization": "Bearer " + revAdminTok}
	for _, tt := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"no admin token", "POST", "team-a/revoke", "", nil, 401, "invalid_admin_token"},
		{"wrong admin token", "POST", "team-a/revoke", "", map[string]string{"Authorization": "Bearer nope"}, 401, "invalid_admin_token"},
		{"a client key as the token", "POST", "team-a/revoke", "", map[string]string{"Authorization": "Bearer " + revKeyA}, 401, "invalid_admin_token"},
		{"restore without the token", "POST", "team-a/restore", "", nil, 401, "invalid_admin_token"},
		{"from another origin", "POST", "team-a/revoke", "", map[string]string{"Authorization": "Bearer " + revAdminTok, "Origin": "http://evil.example"}, 403, "cross_site_request"},
		{"no key of that name", "POST", "team-z/revoke", "", auth, 404, "key_not_found"},
		{"restore of no key of that name", "POST", "team-z/restore", "", auth, 404, "key_not_found"},
		{"GET of a revoke", "GET", "team-a/revoke", "", auth, 405, "method_not_allowed"},
		{"DELETE of a restore", "DELETE", "team-a/restore", "", auth, 405, "method_not_allowed"},
		{"an unknown verb", "POST", "team-a/block", "", auth, 405, "method_not_allowed"},
		{"a body not JSON", "POST", "team-a/revoke", "leaked", auth, 400, "invalid_body"},
		{"a field other than reason", "POST", "team-a/revoke", `{"reason":"x","ttl":"1h"}`, auth, 400, "invalid_body"},
		{"a reason not a string", "POST", "team-a/revoke", `{"reason":42}`, auth, 400, "invalid_body"},
		{"a JSON null", "POST", "team-a/revoke", "null", auth, 400, "invalid_body"},
		{"a JSON null to a restore", "POST", "team-a/restore", " null\n", auth, 400, "invalid_body"},
		{"a list", "POST", "team-a/revoke", `[]`, auth, 400, "invalid_body"},
		{"two objects", "POST", "team-a/revoke", `{"reason":"x"}{"reason":"y"}`, auth, 400, "invalid_body"},
		{"a reason over 200 bytes", "POST", "team-a/revoke", `{"reason":"` + strings.Repeat("x", 201) + `"}`, auth, 400, "invalid_reason"},
		{"a reason holding the key", "POST", "team-a/revoke", `{"reason":"found ` + revKeyA + ` on GitHub"}`, auth, 400, "invalid_reason"},
		{"a reason holding a key's SHA-256", "POST", "team-a/revoke", `{"reason":"hash ` + strings.ToUpper(sha256Hex(revKeyB)) + `"}`, auth, 400, "invalid_reason"},
		{"a reason holding the admin token", "POST", "team-a/revoke", `{"reason":"and ` + revAdminTok + `"}`, auth, 400, "invalid_reason"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, out := adminRaw(t, tt.method, base+tt.path, tt.body, tt.hdr)
			if status != tt.status {
				t.Fatalf("%d %v, want %d", status, out, tt.status)
			}
			checkAdminError(t, tt.name, out, tt.code)
			if tt.status == 405 {
				// A verb's path takes POST; any other, a key's, GET and HEAD.
				allow := "POST"
				if strings.HasSuffix(tt.path, "/block") {
					allow = "GET, HEAD"
				}
				if hdr.Get("Allow") != allow {
					t.Errorf("Allow %q, want %s", hdr.Get("Allow"), allow)
				}
			}
			raw := strings.ToLower(out["error"].(map[string]any)["message"].(string))
			for _, secret := range []string{revKeyA, sha256Hex(revKeyB), revAdminTok} {
				if strings.Contains(raw, secret) {
					t.Errorf("the answer shows a secret: %s", raw)
				}
			}
		})
	}
	if v := revokedView(t, g, "team-a"); v["revoked"] != false {
		t.Fatalf("refused changes revoked team-a: %v", v)
	}
	if err := revChat(g.client(option.WithAPIKey(revKeyA))); err != nil {
		t.Fatalf("refused changes stopped team-a: %v", err)
	}

	// Restoring a key not revoked: 200, nothing changed.
	if status, out := keyChange(t, g, "team-a", "restore", ""); status != 200 || out["revoked"] != false || out["changed"] != false ||
		out["revoked_at"] != nil || out["reason"] != nil || out["scope"] != "replica" {
		t.Errorf("restore of a key not revoked: %d %v", status, out)
	}
	// A second revoke keeps the first's reason and time.
	_, first := keyChange(t, g, "team-a", "revoke", `{"reason":"first"}`)
	status, second := keyChange(t, g, "team-a", "revoke", `{"reason":"second"}`)
	if status != 200 || second["changed"] != false || second["reason"] != "first" || second["revoked_at"] != first["revoked_at"] {
		t.Errorf("second revoke: %d %v, first %v", status, second, first)
	}
	// Names with slashes, as sent or with %2F; no reason is an empty one.
	for _, path := range []string{"ops/batch", "ops%2Fbatch"} {
		status, out := keyChange(t, g, path, "revoke", "")
		if status != 200 || out["name"] != "ops/batch" || out["revoked"] != true || out["reason"] != "" {
			t.Errorf("revoke of %s: %d %v", path, status, out)
		}
	}
	if v := revokedView(t, g, "ops%2Fbatch"); v["revoked"] != true {
		t.Errorf("ops/batch listed: %v", v)
	}
	resp, body := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","messages":[]}`, map[string]string{"Authorization": "Bearer sk-ops-batch-99887766"})
	if resp.StatusCode != 401 || !strings.Contains(body, "revoked_api_key") {
		t.Errorf("ops/batch after its revoke: %d %s", resp.StatusCode, body)
	}
	// GET /admin/keys lists the fields for every key.
	status, _, list := adminRaw(t, "GET", "http://"+g.AdminAddr()+"/admin/keys", "", auth)
	keys, _ := list["keys"].([]any)
	if status != 200 || len(keys) != 3 {
		t.Fatalf("GET /admin/keys: %d %v", status, list)
	}
	for _, k := range keys {
		k := k.(map[string]any)
		revoked := k["name"] != "team-b"
		if k["revoked"] != revoked || (k["revoked_at"] != nil) != revoked || (k["reason"] != nil) != revoked {
			t.Errorf("listed: %v", k)
		}
	}
	noSecrets(t, g)
}

// Without Redis a revocation holds on the replica called alone, says so ("scope":
// "replica"), and outlives its reloads; another replica goes on serving the key.
func TestKeyRevokeReplicaScope(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := revokeConfig(addr, "", "")
	g, other := startGateway(t, cfg), startGateway(t, cfg)
	status, out := keyChange(t, g, "team-a", "revoke", `{"reason":"leaked"}`)
	if status != 200 || out["scope"] != "replica" || out["revoked"] != true {
		t.Fatalf("revoke: %d %v", status, out)
	}
	wantRevoked(t, "the replica called", revChat(g.client(option.WithAPIKey(revKeyA))))
	if err := revChat(other.client(option.WithAPIKey(revKeyA))); err != nil {
		t.Errorf("another replica: %v (memory scope is this replica's)", err)
	}
	if err := os.WriteFile(g.path, []byte(cfg+"# touched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	wantRevoked(t, "after a reload", revChat(g.client(option.WithAPIKey(revKeyA))))
	if !strings.Contains(g.logs.String(), `"scope":"replica"`) {
		t.Errorf("the revoke line does not give its scope: %s", g.logs.String())
	}
}

// A request under way when its key is revoked finishes (a stream runs to its end);
// the key's next request is refused.
func TestKeyRevokeInFlightFinishes(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 12, TPOT: 30 * time.Millisecond})
	g := startGateway(t, revokeConfig(addr, "", ""))
	c := g.client(option.WithAPIKey(revKeyA))
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "chat", Messages: userMsg("a long one"), MaxTokens: openai.Int(12)})
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if status, out := keyChange(t, g, "team-a", "revoke", ""); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	var finish string
	for stream.Next() {
		if ch := stream.Current().Choices; len(ch) > 0 && ch[0].FinishReason != "" {
			finish = ch[0].FinishReason
		}
	}
	if err := stream.Err(); err != nil || finish == "" {
		t.Errorf("the stream under way: %v, finish %q, want its end", err, finish)
	}
	wantRevoked(t, "the next request", revChat(c))
}
