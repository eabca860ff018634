package gateway

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// threeRouteAdminConfig is an endpoint "chat" of routes a, b and a canary, with admin
// token "tok".
func threeRouteAdminConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: "tok"}
backends:
  a: {provider: openai, base_url: "http://` + upstream + `/v1", model: m}
  b: {provider: openai, base_url: "http://` + upstream + `/v1", model: m}
  canary: {provider: openai, base_url: "http://` + upstream + `/v1", model: m2}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: a, weight: 50}, {backend: b, weight: 45}, {backend: canary, weight: 5}]
    canary: {backend: canary, steps: [5, 10, 25, 50, 75, 100], interval: 1h, max_error_rate: 0.01}
logging: {level: error}
`
}

// adminRouteWeight is the live weight of backend's route in an admin answer.
func adminRouteWeight(t *testing.T, body map[string]any, backend string) float64 {
	t.Helper()
	routes, _ := body["routes"].([]any)
	for _, r := range routes {
		m := r.(map[string]any)
		if m["backend"] == backend {
			return m["weight"].(float64)
		}
	}
	t.Fatalf("no route %q in %v", backend, body)
	return 0
}

// adminErrorCode is the error.code of an admin answer, nil when it has none.
func adminErrorCode(body map[string]any) any {
	e, _ := body["error"].(map[string]any)
	return e["code"]
}

// An operator drains route a with a weights override, then rolls the canary back
// mid-incident. The override holds until DELETE or a resume (README): the rollback gives
// the canary's share to the other routes by their override weights, as a gate's
// rollback does, and a stays drained.
func TestAdminRollbackDuringOverrideKeepsDrainedRoute(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGatewayOn(t, threeRouteAdminConfig(startStaticUpstream(t)))
	ep := admin + "/admin/endpoints/chat"
	code, body := adminCall(t, "PUT", ep+"/weights", "tok", `{"a": 0, "b": 90, "canary": 10}`)
	if code != 200 || adminRouteWeight(t, body, "a") != 0 {
		t.Fatalf("override: %d %v", code, body)
	}
	code, body = adminCall(t, "POST", ep+"/canary/rollback", "tok", "")
	if code != 200 {
		t.Fatalf("rollback: %d %v", code, body)
	}
	if st, w := canaryOf(t, body); st != "rolled_back" || w != 0 {
		t.Fatalf("rollback answered canary %s at %v%%, want rolled_back at 0", st, w)
	}
	if a, b := adminRouteWeight(t, body, "a"), adminRouteWeight(t, body, "b"); a != 0 || b != 100 || body["override"] != true {
		t.Fatalf("after an operator rollback during an override: a=%v%% b=%v%% override=%v; want a=0%% (drained route stays drained) b=100%% override=true", a, b, body["override"])
	}
}

// A weight of null (jq building the body from an unset variable) is not 0: the body is
// refused as any weight outside 0–100 is, instead of moving the endpoint onto the
// canary.
func TestAdminWeightsRefusesNull(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGateway(t)
	for _, body := range []string{`{"stable": null, "canary": 100}`, `{"canary": 100, "stable": null}`} {
		code, resp := adminCall(t, "PUT", admin+"/admin/endpoints/chat/weights", "tok", body)
		if code != 400 || adminErrorCode(resp) != "invalid_weights" {
			t.Errorf("weights %s: %d (error %v, override=%v), want 400 invalid_weights", body, code, adminErrorCode(resp), resp["override"])
		}
	}
	_, view := adminCall(t, "GET", admin+"/admin/endpoints/chat", "tok", "")
	if view["override"] == true {
		t.Errorf("a refused body left an override: %v", view)
	}
}

// Rolling back a canary a gate already rolled back changes nothing: it answers 200
// rolled_back and keeps the gate's reason (the only place that says which gate fired)
// and its window start.
// Not t.Parallel: driveLoad's four clients send as fast as they can.
func TestAdminRollbackOfRolledBackCanaryKeepsReason(t *testing.T) {
	_, stable := startMock(t, mockllm.Options{MaxTokens: 2})
	_, canary := startMock(t, mockllm.Options{MaxTokens: 2, ErrorRate: 1, Seed: 1})
	g := startGateway(t, canaryConfig(stable, canary))
	admin := "http://" + g.AdminAddr()
	stop := make(chan struct{})
	wg := driveLoad(g, stop)
	deadline := time.Now().Add(15 * time.Second)
	for readCanary(t, g.AdminAddr()).State != "rolled_back" {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatal("failing canary never rolled back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	_, before := adminCall(t, "GET", admin+"/admin/endpoints/chat", "", "")
	code, after := adminCall(t, "POST", admin+"/admin/endpoints/chat/canary/rollback", "", "")
	if code != 200 {
		t.Fatalf("rollback: %d %v", code, after)
	}
	cb, ca := before["canary"].(map[string]any), after["canary"].(map[string]any)
	if ca["state"] != "rolled_back" || ca["reason"] != cb["reason"] || ca["window_start"] != cb["window_start"] {
		t.Fatalf("rollback of a rolled-back canary changed it: reason %q -> %q, window_start %v -> %v; want unchanged",
			cb["reason"], ca["reason"], cb["window_start"], ca["window_start"])
	}
}

// The documented error codes an operator's script matches on (jq .error.code): 401
// invalid_admin_token, 400 invalid_weights for negative, trailing, duplicate,
// non-object, fractional and empty bodies, 404 endpoint_not_found, 409 no_canary and
// invalid_canary_state; a second rollback answers 200 rolled_back; the health views
// need no token.
func TestAdminErrorCodes(t *testing.T) {
	_, admin := startAdminGateway(t)
	ep := admin + "/admin/endpoints/chat"
	for _, tt := range []struct {
		name, method, url, tok, body string
		status                       int
		code                         string
	}{
		{"no token", "GET", admin + "/admin/endpoints", "", "", 401, "invalid_admin_token"},
		{"wrong token", "GET", admin + "/admin/endpoints", "tok2", "", 401, "invalid_admin_token"},
		{"weights out of range", "PUT", ep + "/weights", "tok", `{"stable": 110, "canary": -10}`, 400, "invalid_weights"},
		{"weights with trailing object", "PUT", ep + "/weights", "tok", `{"stable": 90, "canary": 10} {"stable": 0, "canary": 100}`, 400, "invalid_weights"},
		{"weights with repeated name", "PUT", ep + "/weights", "tok", `{"stable": 90, "canary": 10, "canary": 0}`, 400, "invalid_weights"},
		{"weights not an object", "PUT", ep + "/weights", "tok", `[90, 10]`, 400, "invalid_weights"},
		{"fractional weights", "PUT", ep + "/weights", "tok", `{"stable": 90.5, "canary": 9.5}`, 400, "invalid_weights"},
		{"empty weights body", "PUT", ep + "/weights", "tok", ``, 400, "invalid_weights"},
		{"weights of unknown endpoint", "PUT", admin + "/admin/endpoints/nope/weights", "tok", `{"stable": 90, "canary": 10}`, 404, "endpoint_not_found"},
		{"view of unknown endpoint", "GET", admin + "/admin/endpoints/nope", "tok", ``, 404, "endpoint_not_found"},
		{"rollback of unknown endpoint", "POST", admin + "/admin/endpoints/nope/canary/rollback", "tok", ``, 404, "endpoint_not_found"},
		{"rollback without canary", "POST", admin + "/admin/endpoints/plain/canary/rollback", "tok", ``, 409, "no_canary"},
		{"promote without canary", "POST", admin + "/admin/endpoints/plain/canary/promote", "tok", ``, 409, "no_canary"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := adminCall(t, tt.method, tt.url, tt.tok, tt.body)
			if code != tt.status || adminErrorCode(body) != tt.code {
				t.Errorf("%s %s %q: %d %v, want %d %s", tt.method, tt.url, tt.body, code, body, tt.status, tt.code)
			}
		})
	}
	t.Run("pause and resume of promoted canary", func(t *testing.T) {
		adminCall(t, "POST", ep+"/canary/promote", "tok", "")
		for _, v := range []string{"pause", "resume"} {
			code, body := adminCall(t, "POST", ep+"/canary/"+v, "tok", "")
			if code != 409 || adminErrorCode(body) != "invalid_canary_state" {
				t.Errorf("%s on a promoted canary: %d %v, want 409 invalid_canary_state", v, code, body)
			}
		}
	})
	t.Run("rollback twice", func(t *testing.T) {
		adminCall(t, "POST", ep+"/canary/rollback", "tok", "")
		code, body := adminCall(t, "POST", ep+"/canary/rollback", "tok", "")
		if st, w := canaryOf(t, body); code != 200 || st != "rolled_back" || w != 0 {
			t.Errorf("rollback twice: %d %v", code, body)
		}
	})
	t.Run("health views without token", func(t *testing.T) {
		code, body := adminCall(t, "GET", admin+"/healthz", "", "")
		if code != 200 || body["status"] != "ok" {
			t.Errorf("healthz without token: %d %v", code, body)
		}
		code, body = adminCall(t, "GET", admin+"/readyz", "", "")
		if code != 200 || body["status"] != "ready" {
			t.Errorf("readyz without token: %d %v", code, body)
		}
	})
}
