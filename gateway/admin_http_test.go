package gateway

import (
	"io"
	"net/http"
	"testing"
)

// RFC 9110 9.1: a general-purpose server supports GET and HEAD, and HEAD is GET
// without the body. The admin API's GET routes answered HEAD with 405 and `Allow: GET`,
// so `curl -I`, uptime monitors and load-balancer checks read them as broken; the
// API listener's GET routes and /healthz, /readyz take HEAD.
func TestAdminGetRoutesTakeHead(t *testing.T) {
	t.Parallel()
	_, base := startAdminGateway(t)
	do := func(method, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/admin/endpoints", "/admin/endpoints/chat"} {
		t.Run(path, func(t *testing.T) {
			if resp := do("GET", path); resp.StatusCode != 200 {
				t.Fatalf("GET: %d", resp.StatusCode)
			}
			if resp := do("HEAD", path); resp.StatusCode != 200 {
				t.Errorf("HEAD: %d (Allow: %q), want 200 as GET answers", resp.StatusCode, resp.Header.Get("Allow"))
			}
			resp := do("DELETE", path)
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("DELETE: %d, Allow %q; want 405, GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
			}
		})
	}
}

// RFC 9110 11.6.1: a 401 MUST carry a WWW-Authenticate challenge; RFC 6750 3 names it
// Bearer for bearer tokens, as the admin token is, with error="invalid_token" when a
// bearer token was sent and is wrong (3.1: none when no token was sent, nor for
// credentials of another scheme, which Basic ones got as if a wrong token).
func TestAdmin401NamesBearerChallenge(t *testing.T) {
	_, base := startAdminGateway(t)
	for _, c := range []struct{ authz, want string }{
		{"", `Bearer realm="tollgate-admin"`},
		{"Bearer wrong", `Bearer realm="tollgate-admin", error="invalid_token"`},
		{"bearer wrong", `Bearer realm="tollgate-admin", error="invalid_token"`},
		{"Basic YWRtaW46dG9r", `Bearer realm="tollgate-admin"`},
	} {
		req, _ := http.NewRequest("GET", base+"/admin/endpoints", nil)
		if c.authz != "" {
			req.Header.Set("Authorization", c.authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != c.want {
			t.Errorf("Authorization %q: %d with WWW-Authenticate %q, want 401 with %q", c.authz, resp.StatusCode, got, c.want)
		}
	}
}

// README, Admin API: a weight is a whole number 0–100. JSON has one number type (RFC
// 8259 6): 80.0 is the whole number 80, and what Python's json.dumps writes for a
// weight computed by a division; it was refused as not a JSON object of weights. A
// fraction is still refused, as are null and a number in a string.
func TestAdminWeightsWrittenAsFloats(t *testing.T) {
	_, base := startAdminGateway(t)
	url := base + "/admin/endpoints/chat/weights"
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"stable": 90, "canary": 10}`, 200},
		{`{"stable": 80.0, "canary": 20.0}`, 200},
		{`{"stable": 7e1, "canary": 3.0E+1}`, 200},
		{`{"stable": 80.5, "canary": 19.5}`, 400},
		{`{"stable": null, "canary": 100}`, 400},
		{`{"stable": "90", "canary": 10}`, 400},
	} {
		code, body := adminCall(t, "PUT", url, "tok", c.body)
		if code != c.code {
			t.Errorf("%s: %d %v, want %d", c.body, code, body, c.code)
		}
	}
	code, body := adminCall(t, "PUT", url, "tok", `{"stable": 60.0, "canary": 4e1}`)
	if code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	routes, _ := body["routes"].([]any)
	weights := map[string]float64{}
	for _, r := range routes {
		r, _ := r.(map[string]any)
		name, _ := r["backend"].(string)
		weights[name], _ = r["weight"].(float64)
	}
	if weights["stable"] != 60 || weights["canary"] != 40 {
		t.Fatalf("weights after 60.0/4e1: %v in %v", weights, body)
	}
}
