package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// The admin API's 404 key_not_found does not repeat the name the path gave: an
// operator who pastes a key there, in place of its name, would have it written back
// into the answer (and a terminal's scrollback, a CI log). The same for a key's view,
// its revoke and its restore, with or without a slash at its end.
func TestAdminKeyNotFoundDoesNotEchoThePath(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, revokeConfig(addr, "", ""))
	base := "http://" + g.AdminAddr() + "/admin/keys/"
	auth := map[string]string{"Authorization": "Bearer " + revAdminTok}
	const pasted = "sk-proj-pasted-in-the-path-0a1b2c3d"
	for _, tc := range []struct{ name, method, path string }{
		{"a key's view", "GET", pasted},
		{"a key's view, slash at its end", "GET", pasted + "/"},
		{"a revoke", "POST", pasted + "/revoke"},
		{"a restore", "POST", pasted + "/restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, out := adminRaw(t, tc.method, base+tc.path, "", auth)
			if status != 404 {
				t.Fatalf("status %d %v, want 404", status, out)
			}
			checkAdminError(t, tc.name, out, "key_not_found")
			raw, _ := json.Marshal(out)
			if strings.Contains(string(raw), "pasted-in-the-path") {
				t.Errorf("the answer repeats the path's name: %s", raw)
			}
			if msg, _ := out["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "auth.keys") {
				t.Errorf("message %q does not say where keys are named", msg)
			}
		})
	}
}
