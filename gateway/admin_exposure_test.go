package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

const secKeyA = "sk-review-team-a-0123456789"

// probeConfig: keys on; team-a may call chat only; "secret" exists but team-a may not use it.
func probeConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  mode: keys
  keys:
    - {name: team-a, key: "` + secKeyA + `", endpoints: [chat]}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: secret, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`
}

func probePost(t *testing.T, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	resp, b := postRaw(t, http.DefaultClient, url, body, hdr)
	return resp.StatusCode, string(b)
}

// TestInvocationNamesNotEnumerableWithoutKey: without a key, a known MLflow
// endpoint name answers as an unknown one does (401), whatever the body.
func TestInvocationNamesNotEnumerableWithoutKey(t *testing.T) {
	g := startGateway(t, probeConfig(startStaticUpstream(t)))
	for _, body := range []string{`[]`, `not json`, `{"model":"x"}`} {
		known, kb := probePost(t, g.url+"/endpoints/secret/invocations", body, nil)
		unknown, ub := probePost(t, g.url+"/endpoints/no-such-endpoint/invocations", body, nil)
		if known != unknown || known != 401 {
			t.Errorf("body %q without a key: known endpoint answers %d %s, unknown one %d %s; want both 401", body, known, kb, unknown, ub)
		}
	}
}

// TestInvocationNamesNotEnumerableByRestrictedKey: a key not allowed on an
// endpoint gets 404 model_not_found for it, as for a name that does not exist.
func TestInvocationNamesNotEnumerableByRestrictedKey(t *testing.T) {
	g := startGateway(t, probeConfig(startStaticUpstream(t)))
	h := map[string]string{"Authorization": "Bearer " + secKeyA}
	for _, body := range []string{`[]`, `not json`, `{"model":"x"}`} {
		known, kb := probePost(t, g.url+"/endpoints/secret/invocations", body, h)
		unknown, ub := probePost(t, g.url+"/endpoints/no-such-endpoint/invocations", body, h)
		if known != unknown || known != 404 {
			t.Errorf("body %q with a key not allowed on it: forbidden endpoint answers %d %s, unknown one %d %s; want both 404", body, known, kb, unknown, ub)
		}
	}
}

// TestAdminRefusesCrossSiteWrites: with the default admin listener (loopback,
// no admin_token), a web page the operator has open can send "simple" cross-origin
// requests (form or text/plain POSTs need no CORS preflight) to 127.0.0.1:9090. Such a
// request, which carries the foreign Origin and Sec-Fetch-Site: cross-site that every
// browser adds, does not roll back a canary or move traffic.
func TestAdminRefusesCrossSiteWrites(t *testing.T) {
	yaml := strings.Replace(adminConfig(startStaticUpstream(t)), `, admin_token: "tok"`, "", 1)
	_, admin := startAdminGatewayOn(t, yaml)
	send := func(path, ctype, body string) int {
		req, _ := http.NewRequest("POST", admin+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Sec-Fetch-Mode", "no-cors")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := send("/admin/endpoints/chat/weights", "text/plain", `{"stable":0,"canary":100}`); st < 400 {
		t.Errorf("cross-site text/plain POST /admin/endpoints/chat/weights answered %d; want it refused", st)
	}
	if st := send("/admin/endpoints/chat/canary/rollback", "application/x-www-form-urlencoded", "x=1"); st < 400 {
		t.Errorf("cross-site form POST /admin/endpoints/chat/canary/rollback answered %d; want it refused", st)
	}
	_, view := adminCall(t, "GET", admin+"/admin/endpoints/chat", "", "")
	if state, w := canaryOf(t, view); state == "rolled_back" || w != 5 || view["override"] == true {
		t.Errorf("after cross-site requests the canary is %s at %v%%, override %v; want it untouched", state, w, view["override"])
	}
}
