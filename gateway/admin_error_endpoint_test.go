package gateway

import (
	"strings"
	"testing"
)

// README, "Admin API": "Errors are in the API's error shape; the message names the
// endpoint and, for `invalid_canary_state`, the verb and the canary's state". An
// operator scripting several endpoints reads which one an error is about from the
// message, unknown_verb and invalid_weights (each of its forms) included.
func TestAdminErrorMessagesNameTheEndpoint(t *testing.T) {
	_, admin := startAdminGateway(t)
	ep := admin + "/admin/endpoints/chat"
	for _, tt := range []struct {
		name, method, url, body, code string
	}{
		{"unknown verb", "POST", ep + "/canary/restart", "", "unknown_verb"},
		{"weights not an object", "PUT", ep + "/weights", `[90, 10]`, "invalid_weights"},
		{"weights out of range", "PUT", ep + "/weights", `{"stable": 110, "canary": -10}`, "invalid_weights"},
		{"weights not adding up", "PUT", ep + "/weights", `{"stable": 40, "canary": 10}`, "invalid_weights"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, body := adminCall(t, tt.method, tt.url, "tok", tt.body)
			if adminErrorCode(body) != tt.code {
				t.Fatalf("%s %s: %v, want code %s", tt.method, tt.url, body, tt.code)
			}
			e, _ := body["error"].(map[string]any)
			msg, _ := e["message"].(string)
			if !strings.Contains(msg, "chat") {
				t.Errorf("%s %s %s: message %q does not name the endpoint chat (README: \"the message names the endpoint\")", tt.method, tt.url, tt.body, msg)
			}
		})
	}
}
