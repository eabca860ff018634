package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// Endpoint names may hold slashes (README: "/ : @ are fine"), and GET
// /v1/models/{name} retrieves one. A name with two slashes in a row must be found:
// fasthttp's path normalizing decodes the SDK's %2F%2F and collapses "//" into "/",
// so the name is read from the path as sent. The MLflow routes of the same name are
// served the same way, as the same name in a body's "model" is.
func TestEndpointNameWithDoubleSlashByPath(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	const name = "hf://org/model"
	g := startGateway(t, mockConfig(addr, "", `
  - {name: "`+name+`", type: chat, routes: [{backend: up}]}
`))
	c := g.client()
	resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
		`{"model":"`+name+`","messages":[{"role":"user","content":"hi"}]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("chat on %q: %d %s", name, resp.StatusCode, b)
	}
	m, err := c.Models.Get(context.Background(), name)
	if err != nil || m.ID != name {
		t.Errorf("SDK retrieve of %q: %+v %v, want the model object", name, m, err)
	}
	for _, path := range []string{"/endpoints/" + name + "/invocations", "/gateway/hf:%2F%2Forg%2Fmodel/invocations"} {
		resp, b = postRaw(t, http.DefaultClient, g.url+path, `{"messages":[{"role":"user","content":"hi"}]}`, nil)
		if resp.StatusCode != 200 {
			t.Errorf("invocation of %q at %s: %d %s, want 200", name, path, resp.StatusCode, b)
		}
	}
	for _, path := range []string{"/api/2.0/endpoints/" + name, "/v1/models/hf:%2F%2Forg%2Fmodel"} {
		resp, err := http.Get(g.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d, want 200", path, resp.StatusCode)
		}
	}
}

// TestDotSegmentsInPathReachNoOtherEndpoint: the name in a path is read as sent, dot
// segments and all, while the route is the normalized path's: a path whose dot
// segments climb out of /v1/models/ or an invocation is not that route, and one that
// climbs within it names an endpoint of that very name ("chat/../admin-only"), never
// the one the dots would resolve to. A key limited to chat reaches nothing else.
func TestDotSegmentsInPathReachNoOtherEndpoint(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", `
  - {name: admin-only, type: chat, routes: [{backend: up}]}
`)+`
auth:
  mode: keys
  keys:
    - {name: ops, key: sk-ops-1234}
    - {name: team, key: sk-team-1234, endpoints: [chat]}
`)
	host := strings.TrimPrefix(g.url, "http://")
	ask := func(method, path, key, body string) (int, string) {
		raw := method + " " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n"
		if body != "" {
			raw += "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
		}
		resp, b := exchange(t, host, raw+"\r\n"+body)
		return resp.StatusCode, b
	}
	const invoke = `{"messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/v1/models/chat", "", 200},
		{"GET", "/v1/models/admin-only", "", 404},
		{"GET", "/v1/models/../admin-only", "", 404},
		{"GET", "/v1/models/chat/../admin-only", "", 404},
		{"GET", "/v1/models/chat%2F..%2Fadmin-only", "", 404},
		{"GET", "/v1/models/%2E%2E/models/admin-only", "", 404},
		{"GET", "/v1/models/./admin-only", "", 404},
		{"GET", "/v1/models/../../admin/canary", "", 404},
		{"GET", "/api/2.0/endpoints/chat/../admin-only", "", 404},
		{"POST", "/endpoints/chat/invocations", invoke, 200},
		{"POST", "/endpoints/chat/../admin-only/invocations", invoke, 404},
		{"POST", "/gateway/chat/invocations/../../admin-only/invocations", invoke, 404},
		{"POST", "/endpoints/../v1/chat/completions", `{"model":"admin-only","messages":[{"role":"user","content":"hi"}]}`, 404},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			status, b := ask(tc.method, tc.path, "sk-team-1234", tc.body)
			if status != tc.want {
				t.Errorf("status %d, want %d: %.300s", status, tc.want, b)
			}
			if strings.Contains(b, `"admin-only"`) && status == 200 {
				t.Errorf("a key limited to chat reached admin-only: %s", b)
			}
		})
	}
	// The names are names, not paths, also to a key that may use every endpoint.
	if status, b := ask("GET", "/v1/models/chat/../admin-only", "sk-ops-1234", ""); status != 404 {
		t.Errorf("GET /v1/models/chat/../admin-only with every endpoint allowed: %d %s, want 404 (no endpoint is named so)", status, b)
	}
	if status, b := ask("GET", "/v1/models/admin-only", "sk-ops-1234", ""); status != 200 {
		t.Errorf("GET /v1/models/admin-only with every endpoint allowed: %d %s, want 200", status, b)
	}
}
