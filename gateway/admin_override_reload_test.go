package gateway

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// A weights override holds across reloads that keep its endpoint's routes: a renewed
// certificate, a ConfigMap touched, another endpoint edited or the canary's gates
// changed reloads the whole config, and must not send traffic back to a backend an
// operator drained. DELETE on the weights ends the override.
func TestAdminOverrideHoldsAcrossReloads(t *testing.T) {
	yaml := adminConfig(startStaticUpstream(t))
	s, admin := startAdminGatewayOn(t, yaml)
	ep := admin + "/admin/endpoints/chat"

	code, body := adminCall(t, "PUT", ep+"/weights", "tok", `{"stable": 100, "canary": 0}`)
	if code != 200 || body["override"] != true {
		t.Fatalf("override: %d %v", code, body)
	}

	// The same file, another endpoint edited, the canary's gate changed: the
	// override holds.
	edited := strings.Replace(yaml, "{name: plain, type: chat, routes: [{backend: stable}]}",
		"{name: plain, type: chat, routes: [{backend: stable}], retries: 1}", 1)
	retuned := strings.Replace(edited, "interval: 1h, max_error_rate: 0.01", "interval: 1h, max_error_rate: 0.02", 1)
	if edited == yaml || retuned == edited {
		t.Fatal("the edits found nothing to change")
	}
	for _, cfg := range []string{yaml, edited, retuned} {
		if err := os.WriteFile(s.path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, body := adminCall(t, "POST", admin+"/admin/reload", "tok", ""); code != 200 {
			t.Fatalf("reload: %d %v", code, body)
		}
		code, body = adminCall(t, "GET", ep, "tok", "")
		if state, weight := canaryOf(t, body); code != 200 || body["override"] != true || state != "paused" || weight != 0 {
			t.Fatalf("after a reload keeping chat's routes: %d override %v, canary %s at %v; want the override, paused at 0",
				code, body["override"], state, weight)
		}
	}

	// DELETE ends it: the canary the override drained steps again from its first step.
	code, body = adminCall(t, "DELETE", ep+"/weights", "tok", "")
	if state, weight := canaryOf(t, body); code != 200 || body["override"] == true || state != "stepping" || weight != 5 {
		t.Fatalf("DELETE weights: %d override %v, canary %s at %v; want no override, stepping at 5", code, body["override"], state, weight)
	}
	c := body["canary"].(map[string]any)
	if c["reason"] != "override ended by operator" {
		t.Errorf("reason %v, want the operator's end of the override", c["reason"])
	}
	// Again: nothing to end, the answer is the endpoint as it stands.
	code, again := adminCall(t, "DELETE", ep+"/weights", "tok", "")
	if code != 200 || again["override"] == true || again["canary"].(map[string]any)["reason"] != c["reason"] {
		t.Fatalf("second DELETE: %d %v", code, again)
	}

	// Errors: an unknown endpoint, and the methods the weights take.
	if code, _ := adminCall(t, "DELETE", admin+"/admin/endpoints/nope/weights", "tok", ""); code != 404 {
		t.Errorf("DELETE on an unknown endpoint: %d, want 404", code)
	}
	req, _ := http.NewRequest("GET", ep+"/weights", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "PUT, POST, DELETE" {
		t.Errorf("GET weights: %d, Allow %q; want 405, PUT, POST, DELETE", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// DELETE on the weights is a change: a web page of another origin may not send it.
func TestAdminOverrideEndRefusedCrossSite(t *testing.T) {
	_, admin := startAdminGateway(t)
	ep := admin + "/admin/endpoints/chat"
	if code, body := adminCall(t, "PUT", ep+"/weights", "tok", `{"stable": 100, "canary": 0}`); code != 200 {
		t.Fatalf("override: %d %v", code, body)
	}
	req, _ := http.NewRequest("DELETE", ep+"/weights", nil)
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("cross-site DELETE: %d, want 403", resp.StatusCode)
	}
	if _, body := adminCall(t, "GET", ep, "tok", ""); body["override"] != true {
		t.Fatal("a cross-site DELETE ended the override")
	}
}

// DELETE on the weights of an endpoint without an override changes nothing and logs
// nothing: the log says when weights went back to the config's, and they did not.
func TestAdminOverrideEndWithoutOverrideNotLogged(t *testing.T) {
	up := startStaticUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+up+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+up+`/v1", model: m2}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 95}, {backend: canary, weight: 5}]
    canary: {backend: canary, steps: [5, 100], interval: 1h}
logging: {level: info}
`)
	ep := "http://" + g.AdminAddr() + "/admin/endpoints/chat"
	code, body := adminCall(t, "DELETE", ep+"/weights", "", "")
	if code != 200 || body["override"] == true {
		t.Fatalf("DELETE without an override: %d %v, want 200 and no override", code, body)
	}
	if code, body := adminCall(t, "PUT", ep+"/weights", "", `{"stable": 100, "canary": 0}`); code != 200 {
		t.Fatalf("override: %d %v", code, body)
	}
	if code, body := adminCall(t, "DELETE", ep+"/weights", "", ""); code != 200 || body["override"] == true {
		t.Fatalf("DELETE: %d %v", code, body)
	}
	ended := 0
	for _, line := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"route weights override ended"`) {
			ended++
		}
	}
	if ended != 1 {
		t.Fatalf("%d lines say the override ended, want 1 (the second DELETE's):\n%s", ended, g.logs.String())
	}
}
