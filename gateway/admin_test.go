package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func adminConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: "tok"}
backends:
  stable: {provider: openai, base_url: "http://` + upstream + `/v1", model: m}
  canary: {provider: openai, base_url: "http://` + upstream + `/v1", model: m2}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 95}, {backend: canary, weight: 5}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [5, 10, 25, 50, 75, 100], interval: 1h, max_error_rate: 0.01}
  - {name: plain, type: chat, routes: [{backend: stable}]}
logging: {level: error}
`
}

func startAdminGateway(t *testing.T) (*Server, string) {
	t.Helper()
	return startAdminGatewayOn(t, adminConfig(startStaticUpstream(t)))
}

// startAdminGatewayOn serves yaml until the test ends; it returns the admin base URL.
func startAdminGatewayOn(t *testing.T, yaml string) (*Server, string) {
	t.Helper()
	s := newTestServer(t, yaml)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, "http://" + s.AdminAddr()
}

func adminCall(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %s", method, url, raw)
	}
	return resp.StatusCode, out
}

func canaryOf(t *testing.T, body map[string]any) (string, float64) {
	t.Helper()
	c, ok := body["canary"].(map[string]any)
	if !ok {
		t.Fatalf("no canary in %v", body)
	}
	return c["state"].(string), c["weight"].(float64)
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGateway(t)
	ep := admin + "/admin/endpoints/chat"

	if code, _ := adminCall(t, "GET", admin+"/admin/endpoints", "", ""); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, _ := adminCall(t, "GET", admin+"/admin/endpoints", "wrong", ""); code != 401 {
		t.Fatalf("wrong token: %d, want 401", code)
	}
	code, body := adminCall(t, "GET", admin+"/admin/endpoints", "tok", "")
	if code != 200 || len(body["endpoints"].([]any)) != 2 {
		t.Fatalf("list: %d %v", code, body)
	}

	steps := []struct {
		name, method, url, body string
		status                  int
		state                   string
		weight                  float64
	}{
		{"pause", "POST", ep + "/canary/pause", "", 200, "paused", 5},
		{"pause again is idempotent", "POST", ep + "/canary/pause", "", 200, "paused", 5},
		{"resume", "POST", ep + "/canary/resume", "", 200, "stepping", 5},
		{"rollback", "POST", ep + "/canary/rollback", "", 200, "rolled_back", 0},
		{"promote", "POST", ep + "/canary/promote", "", 200, "promoted", 100},
		{"unknown verb", "POST", ep + "/canary/explode", "", 404, "", 0},
		{"verb on endpoint without canary", "POST", admin + "/admin/endpoints/plain/canary/pause", "", 409, "", 0},
		{"unknown endpoint", "POST", admin + "/admin/endpoints/nope/canary/pause", "", 404, "", 0},
		{"wrong method", "GET", ep + "/canary/pause", "", 405, "", 0},
		{"weights", "PUT", ep + "/weights", `{"stable": 80, "canary": 20}`, 200, "paused", 20},
		{"weights not adding up", "PUT", ep + "/weights", `{"stable": 80, "canary": 30}`, 400, "", 0},
		{"weights unknown backend", "PUT", ep + "/weights", `{"stable": 80, "ghost": 20}`, 400, "", 0},
		{"weights malformed", "PUT", ep + "/weights", `{"stable": "eighty"`, 400, "", 0},
		{"weights empty", "PUT", ep + "/weights", `{}`, 400, "", 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, body := adminCall(t, st.method, st.url, "tok", st.body)
			if code != st.status {
				t.Fatalf("status %d, want %d: %v", code, st.status, body)
			}
			if st.status != 200 {
				if _, ok := body["error"]; !ok {
					t.Fatalf("error answer without an error object: %v", body)
				}
				return
			}
			state, weight := canaryOf(t, body)
			if state != st.state || weight != st.weight {
				t.Fatalf("canary %s at %v, want %s at %v", state, weight, st.state, st.weight)
			}
			if st.name == "weights" && body["override"] != true {
				t.Fatalf("weights override not stated: %v", body)
			}
		})
	}

	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tollgate_route_weight{backend="canary",endpoint="chat",variant="canary"} 20`,
		`tollgate_canary_state{endpoint="chat",state="paused"} 1`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	code, body = adminCall(t, "POST", admin+"/admin/reload", "tok", "")
	if code != 200 || body["status"] != "reloaded" {
		t.Fatalf("reload: %d %v", code, body)
	}
}

// TestAdminEndpointNamesWithSlashes: endpoints are often named as the model's
// Hugging Face ID (meta-llama/Llama-3.1-8B-Instruct); the admin API reaches them with
// the slash written as it is or as %2F, for every operation.
func TestAdminEndpointNamesWithSlashes(t *testing.T) {
	t.Parallel()
	const name = "meta-llama/Llama-3.1-8B-Instruct"
	_, admin := startAdminGatewayOn(t, strings.NewReplacer("name: chat", "name: "+name, "{name: plain,", "{name: org/plain,").Replace(adminConfig(startStaticUpstream(t))))
	base := admin + "/admin/endpoints/"
	for _, path := range []string{name, "meta-llama%2FLlama-3.1-8B-Instruct"} {
		t.Run(path, func(t *testing.T) {
			status, body := adminCall(t, "GET", base+path, "tok", "")
			if status != 200 || body["name"] != name {
				t.Fatalf("view: %d %v", status, body)
			}
			status, body = adminCall(t, "POST", base+path+"/canary/pause", "tok", "")
			if st, _ := canaryOf(t, body); status != 200 || st != "paused" {
				t.Fatalf("pause: %d %v", status, body)
			}
			status, body = adminCall(t, "POST", base+path+"/canary/resume", "tok", "")
			if st, _ := canaryOf(t, body); status != 200 || st != "stepping" {
				t.Fatalf("resume: %d %v", status, body)
			}
			status, body = adminCall(t, "PUT", base+path+"/weights", "tok", `{"stable": 80, "canary": 20}`)
			if status != 200 || body["override"] != true {
				t.Fatalf("weights: %d %v", status, body)
			}
			status, body = adminCall(t, "POST", base+path+"/canary/explode", "tok", "")
			if e, _ := body["error"].(map[string]any); status != 404 || e["code"] != "unknown_verb" {
				t.Fatalf("unknown verb: %d %v", status, body)
			}
		})
	}
	status, body := adminCall(t, "POST", base+"org/plain/canary/pause", "tok", "")
	if e, _ := body["error"].(map[string]any); status != 409 || e["code"] != "no_canary" {
		t.Fatalf("pause on an endpoint without a canary: %d %v", status, body)
	}
	status, body = adminCall(t, "GET", base+"org/nothing", "tok", "")
	if e, _ := body["error"].(map[string]any); status != 404 || e["code"] != "endpoint_not_found" {
		t.Fatalf("unknown endpoint: %d %v", status, body)
	}
}

// The admin token is taken only as a bearer token, the scheme in any case.
func TestAdminTokenOK(t *testing.T) {
	const tok = "adm-0123456789"
	for _, tt := range []struct {
		authz string
		ok    bool
	}{
		{"Bearer " + tok, true},
		{"bearer " + tok, true},
		{"BEARER  " + tok + " ", true},
		{tok, false},
		{"Bearer " + tok + "x", false},
		{"Bearer " + tok[:5], false},
		{"Bearer ", false},
		{"", false},
		{"Basic " + tok, false},
	} {
		if got := adminTokenOK([]byte(tt.authz), tok); got != tt.ok {
			t.Errorf("%q: %v, want %v", tt.authz, got, tt.ok)
		}
	}
}
