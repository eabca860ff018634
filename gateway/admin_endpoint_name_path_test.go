package gateway

import (
	"strings"
	"testing"
)

// TestAdminEndpointNameReadAsSent: the admin API reads an endpoint name from the path
// as the client sent it, percent-decoded and nothing else, as the API does
// (TestEndpointNameWithDoubleSlashByPath): fasthttp's normalized path collapses "//"
// (also "%2F%2F" once decoded), so that hf://org/model could be neither shown nor
// operated on. Dot segments are characters of the name: "chat/../plain" names an
// endpoint of that very name, and no dots turn an operation on one name into another
// operation, or onto another endpoint.
func TestAdminEndpointNameReadAsSent(t *testing.T) {
	t.Parallel()
	const name = "hf://org/model"
	_, admin := startAdminGatewayOn(t, strings.NewReplacer("name: chat", `name: "`+name+`"`, "logging:",
		"  - {name: chat, type: chat, routes: [{backend: stable, weight: 90}, {backend: canary, weight: 10}],"+
			" canary: {backend: canary, steps: [10, 50, 100], interval: 1h, max_error_rate: 0.01}}\nlogging:").
		Replace(adminConfig(startStaticUpstream(t))))
	base := admin + "/admin/endpoints/"
	for _, path := range []string{name, "hf:%2F%2Forg%2Fmodel", "hf:%2F/org%2Fmodel", name + "/"} {
		t.Run(path, func(t *testing.T) {
			status, body := adminCall(t, "GET", base+path, "tok", "")
			if status != 200 || body["name"] != name {
				t.Fatalf("view: %d %v", status, body)
			}
			status, body = adminCall(t, "POST", base+strings.TrimSuffix(path, "/")+"/canary/pause", "tok", "")
			if st, _ := canaryOf(t, body); status != 200 || st != "paused" || body["name"] != name {
				t.Fatalf("pause: %d %v", status, body)
			}
			status, body = adminCall(t, "POST", base+strings.TrimSuffix(path, "/")+"/canary/resume", "tok", "")
			if st, _ := canaryOf(t, body); status != 200 || st != "stepping" {
				t.Fatalf("resume: %d %v", status, body)
			}
			status, body = adminCall(t, "PUT", base+strings.TrimSuffix(path, "/")+"/weights", "tok", `{"stable": 80, "canary": 20}`)
			if status != 200 || body["override"] != true || body["name"] != name {
				t.Fatalf("weights: %d %v", status, body)
			}
			status, body = adminCall(t, "DELETE", base+strings.TrimSuffix(path, "/")+"/weights", "tok", "")
			if status != 200 || body["override"] == true {
				t.Fatalf("weights override ended: %d %v", status, body)
			}
		})
	}
	for _, tc := range []struct {
		method, path, body string
	}{
		{"GET", "chat/../plain", ""},
		{"GET", "chat%2F..%2Fplain", ""},
		{"GET", "hf:/org/model", ""},
		{"PUT", "plain/canary/pause/../../weights", `{"stable": 100}`},
		{"POST", "chat/weights/../canary/rollback", ""},
		{"POST", "plain/../chat/canary/rollback", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			status, body := adminCall(t, tc.method, base+tc.path, "tok", tc.body)
			if e, _ := body["error"].(map[string]any); status != 404 || e["code"] != "endpoint_not_found" {
				t.Errorf("%d %v, want 404 endpoint_not_found: no endpoint has that name", status, body)
			}
		})
	}
	status, body := adminCall(t, "GET", base+"chat", "tok", "")
	if st, _ := canaryOf(t, body); status != 200 || st != "stepping" {
		t.Errorf("chat after the paths with dots: %d %v, want its canary stepping, untouched", status, body)
	}
	status, body = adminCall(t, "GET", base+"plain", "tok", "")
	if status != 200 || body["override"] == true {
		t.Errorf("plain after the paths with dots: %d %v, want no weights override", status, body)
	}
}
