package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// adminRaw sends one admin request with the given headers and returns the status, the
// response headers and the body decoded as one JSON object.
func adminRaw(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %q", method, url, raw)
	}
	return resp.StatusCode, resp.Header, out
}

// checkAdminError fails t unless body is the API's error shape, {"error": {"message",
// "type", "param", "code"}}, with code.
func checkAdminError(t *testing.T, what string, body map[string]any, code string) {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok || len(body) != 1 {
		t.Errorf("%s: %v is not the error shape", what, body)
		return
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			t.Errorf("%s: error lacks %q: %v", what, k, e)
		}
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("%s: no message: %v", what, e)
	}
	if typ, _ := e["type"].(string); typ == "" {
		t.Errorf("%s: no type: %v", what, e)
	}
	if e["code"] != code {
		t.Errorf("%s: code %v, want %s", what, e["code"], code)
	}
}

// Every error of the admin table answers its status and code in the API's error shape
// (README, "Admin API"), as JSON.
func TestAdminErrorsInErrorShape(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGateway(t)
	ep := admin + "/admin/endpoints/chat"
	auth := map[string]string{"Authorization": "Bearer tok"}
	adminRaw(t, "POST", ep+"/canary/rollback", "", auth)
	for _, tt := range []struct {
		name, method, url, body string
		hdr                     map[string]string
		status                  int
		code                    string
	}{
		{"no endpoint of that name", "POST", admin + "/admin/endpoints/nope/canary/pause", "", auth, 404, "endpoint_not_found"},
		{"no key of that name", "GET", admin + "/admin/keys/nope", "", auth, 404, "key_not_found"},
		{"a change to the keys", "POST", admin + "/admin/keys", "", auth, 405, "method_not_allowed"},
		{"a page of keys of no size", "GET", admin + "/admin/keys?limit=0", "", auth, 400, "invalid_parameter"},
		{"unknown verb", "POST", ep + "/canary/restart", "", auth, 404, "unknown_verb"},
		{"endpoint without a canary", "POST", admin + "/admin/endpoints/plain/canary/promote", "", auth, 409, "no_canary"},
		{"pausing a rolled-back canary", "POST", ep + "/canary/pause", "", auth, 409, "invalid_canary_state"},
		{"weights not adding up", "PUT", ep + "/weights", `{"stable": 50, "canary": 40}`, auth, 400, "invalid_weights"},
		{"missing admin token", "POST", ep + "/canary/resume", "", nil, 401, "invalid_admin_token"},
		{"wrong admin token", "POST", ep + "/canary/resume", "", map[string]string{"Authorization": "Bearer tok2"}, 401, "invalid_admin_token"},
		{"cross-site change", "POST", ep + "/canary/resume", "", map[string]string{"Authorization": "Bearer tok", "Origin": "http://evil.example"}, 403, "cross_site_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := adminRaw(t, tt.method, tt.url, tt.body, tt.hdr)
			if status != tt.status {
				t.Errorf("status %d, want %d: %v", status, tt.status, body)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			checkAdminError(t, tt.name, body, tt.code)
		})
	}
	_, _, view := adminRaw(t, "GET", ep, "", auth)
	if st, w := canaryOf(t, view); st != "rolled_back" || w != 0 {
		t.Errorf("refused requests moved the canary: %s at %v %%", st, w)
	}
}

// With server.admin_token set, every change needs it: a canary verb, a weights override
// or a reload without it is refused with 401 invalid_admin_token and changes nothing;
// /healthz, /readyz and /metrics never need it.
func TestAdminTokenGuardsEveryChange(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGateway(t)
	ep := admin + "/admin/endpoints/chat"
	for _, tt := range []struct{ method, url, body string }{
		{"POST", ep + "/canary/rollback", ""},
		{"POST", ep + "/canary/promote", ""},
		{"POST", ep + "/canary/pause", ""},
		{"PUT", ep + "/weights", `{"stable": 0, "canary": 100}`},
		{"POST", admin + "/admin/reload", ""},
		{"DELETE", ep + "/cache", ""},
		{"GET", ep, ""},
		{"GET", admin + "/admin/keys", ""},
		{"GET", admin + "/admin/keys/team-a", ""},
	} {
		for _, authz := range []string{"", "Bearer wrong", "tok", "Basic dG9rOg=="} {
			status, _, body := adminRaw(t, tt.method, tt.url, tt.body, map[string]string{"Authorization": authz})
			if status != 401 {
				t.Errorf("%s %s with Authorization %q: %d %v, want 401", tt.method, tt.url, authz, status, body)
			}
			checkAdminError(t, tt.method+" "+tt.url, body, "invalid_admin_token")
		}
	}
	_, _, view := adminRaw(t, "GET", ep, "", map[string]string{"Authorization": "Bearer tok"})
	if st, w := canaryOf(t, view); st != "stepping" || w != 5 || view["override"] != false {
		t.Errorf("refused requests changed the canary: %s at %v %%, override %v", st, w, view["override"])
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s without the token: %d, want 200", path, resp.StatusCode)
		}
	}
}

// Whatever the token, a change sent from a web page of another origin is refused with
// 403 cross_site_request, while the same origin, Sec-Fetch-Site same-origin or none,
// and curl (neither header) pass. Without a token on a loopback listener, any request
// whose Host is not a loopback name is refused too; with a token it is not.
func TestAdminCrossSiteRules(t *testing.T) {
	t.Parallel()
	upstream := startStaticUpstream(t)
	_, withTok := startAdminGatewayOn(t, adminConfig(upstream))
	_, noTok := startAdminGatewayOn(t, strings.Replace(adminConfig(upstream), `, admin_token: "tok"`, "", 1))
	host := func(base string) string { return strings.TrimPrefix(base, "http://") }
	for _, tt := range []struct {
		name, base, method, path string
		hdr                      map[string]string
		refused                  bool
	}{
		{"foreign Origin with the token", withTok, "POST", "/canary/pause", map[string]string{"Origin": "http://evil.example"}, true},
		{"cross-site fetch with the token", withTok, "POST", "/canary/pause", map[string]string{"Sec-Fetch-Site": "cross-site"}, true},
		{"same-site fetch with the token", withTok, "POST", "/canary/pause", map[string]string{"Sec-Fetch-Site": "same-site"}, true},
		{"foreign Origin without a token", noTok, "POST", "/canary/pause", map[string]string{"Origin": "http://evil.example"}, true},
		{"null Origin without a token", noTok, "POST", "/canary/pause", map[string]string{"Origin": "null"}, true},
		{"rebound Host without a token", noTok, "GET", "", map[string]string{"Host": "evil.example"}, true},
		{"rebound Host with port without a token", noTok, "POST", "/canary/pause", map[string]string{"Host": "evil.example:9090"}, true},
		{"rebound Host with the token", withTok, "GET", "", map[string]string{"Host": "evil.example"}, false},
		{"curl with the token", withTok, "POST", "/canary/pause", nil, false},
		{"curl without a token", noTok, "POST", "/canary/pause", nil, false},
		{"localhost Host without a token", noTok, "POST", "/canary/pause", map[string]string{"Host": "localhost"}, false},
		{"same Origin without a token", noTok, "POST", "/canary/pause", map[string]string{"Origin": noTok}, false},
		{"same-origin fetch with the token", withTok, "POST", "/canary/pause", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": withTok}, false},
		{"typed URL (Sec-Fetch-Site none) without a token", noTok, "POST", "/canary/pause", map[string]string{"Sec-Fetch-Site": "none", "Host": host(noTok)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			if tt.base == withTok {
				hdr["Authorization"] = "Bearer tok"
			}
			status, _, body := adminRaw(t, tt.method, tt.base+"/admin/endpoints/chat"+tt.path, "", hdr)
			switch {
			case tt.refused:
				if status != 403 {
					t.Errorf("%d %v, want 403", status, body)
				}
				checkAdminError(t, tt.name, body, "cross_site_request")
			case status != 200:
				t.Errorf("%d %v, want 200", status, body)
			}
		})
	}
}

// GET /admin/endpoints lists every endpoint with its type, routes (configured and live
// weight, per-route counts), override flag and canary (state, weight, steps, window),
// and says whether this replica leads; GET /admin/endpoints/{name} and every canary
// operation answer the same view of one endpoint.
func TestAdminListingShape(t *testing.T) {
	t.Parallel()
	g, admin := startAdminGateway(t)
	const sent = 7
	for i := range sent {
		req, _ := http.NewRequest("POST", "http://"+g.Addr()+"/v1/chat/completions",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-User-ID", "user-"+string(rune('a'+i)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("chat: %d", resp.StatusCode)
		}
	}
	code, list := adminCall(t, "GET", admin+"/admin/endpoints", "tok", "")
	if code != 200 || list["leader"] != true {
		t.Fatalf("list: %d, leader %v (true without Redis)", code, list["leader"])
	}
	eps, _ := list["endpoints"].([]any)
	if len(eps) != 2 {
		t.Fatalf("list has %d endpoints, want chat and plain: %v", len(eps), list)
	}
	byName := map[string]map[string]any{}
	for _, e := range eps {
		m := e.(map[string]any)
		byName[m["name"].(string)] = m
	}
	chat, plain := byName["chat"], byName["plain"]
	if chat == nil || plain == nil {
		t.Fatalf("list lacks chat or plain: %v", list)
	}
	for name, m := range byName {
		if m["type"] != "chat" || m["override"] != false {
			t.Errorf("%s: type %v override %v, want chat, false", name, m["type"], m["override"])
		}
	}
	if _, has := plain["canary"]; has {
		t.Errorf("plain has no canary, yet lists one: %v", plain["canary"])
	}
	var requests float64
	wantRoutes := map[string][2]float64{"stable": {95, 95}, "canary": {5, 5}}
	for _, r := range chat["routes"].([]any) {
		rt := r.(map[string]any)
		b, _ := rt["backend"].(string)
		w, ok := wantRoutes[b]
		if !ok || rt["configured_weight"] != w[0] || rt["weight"] != w[1] || rt["variant"] != b {
			t.Errorf("route %v, want backend in %v with configured and live weight", rt, wantRoutes)
		}
		n, _ := rt["requests"].(float64)
		if _, ok := rt["errors"].(float64); !ok {
			t.Errorf("route %s has no error count: %v", b, rt)
		}
		requests += n
	}
	if requests != sent {
		t.Errorf("per-route counts add up to %v, want %d", requests, sent)
	}
	c, _ := chat["canary"].(map[string]any)
	if c["state"] != "stepping" || c["weight"] != 5.0 || c["step"] != 0.0 || c["backend"] != "canary" ||
		!reflect.DeepEqual(c["steps"], []any{5.0, 10.0, 25.0, 50.0, 75.0, 100.0}) {
		t.Errorf("canary %v", c)
	}
	if _, err := time.Parse(time.RFC3339Nano, c["window_start"].(string)); err != nil {
		t.Errorf("window_start %v: %v", c["window_start"], err)
	}
	if _, ok := c["window"].(map[string]any); !ok {
		t.Errorf("canary has no window: %v", c)
	}
	_, view := adminCall(t, "GET", admin+"/admin/endpoints/chat", "tok", "")
	if !sameView(chat, view) {
		t.Errorf("GET /admin/endpoints/chat differs from its listing:\n%v\n%v", view, chat)
	}
	_, paused := adminCall(t, "POST", admin+"/admin/endpoints/chat/canary/pause", "tok", "")
	_, view = adminCall(t, "GET", admin+"/admin/endpoints/chat", "tok", "")
	if !sameView(paused, view) {
		t.Errorf("the answer of pause differs from the view after it:\n%v\n%v", paused, view)
	}
}

// sameView compares two endpoint views without their windows, which move with time.
func sameView(a, b map[string]any) bool {
	strip := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		if c, ok := m["canary"].(map[string]any); ok {
			cc := map[string]any{}
			for k, v := range c {
				if k != "window" && k != "recent" && k != "recent_start" {
					cc[k] = v
				}
			}
			out["canary"] = cc
		}
		return out
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// Weights name routes by variant or by backend, each route once: naming one route by
// both is refused (400 invalid_weights). An override answers "override": true, holds
// the canary paused at its weight and says, in after_override, the state its end
// brings back; DELETE on the weights ends it and brings that state back.
func TestAdminWeightsByVariantOrBackendUntilEnded(t *testing.T) {
	up := startStaticUpstream(t)
	yaml := strings.Replace(adminConfig(up), "routes: [{backend: stable, weight: 95}, {backend: canary, weight: 5}]",
		"routes: [{backend: stable, weight: 95, variant: blue}, {backend: canary, weight: 5, variant: green}]", 1)
	_, admin := startAdminGatewayOn(t, yaml)
	ep := admin + "/admin/endpoints/chat"
	for _, body := range []string{`{"stable": 90, "blue": 0, "green": 10}`, `{"blue": 90, "canary": 5, "green": 5}`} {
		code, resp := adminCall(t, "PUT", ep+"/weights", "tok", body)
		if code != 400 {
			t.Errorf("weights %s naming one route twice: %d %v, want 400", body, code, resp)
		}
		checkAdminError(t, body, resp, "invalid_weights")
	}
	code, resp := adminCall(t, "PUT", ep+"/weights", "tok", `{"blue": 80, "canary": 20}`)
	if st, w := canaryOf(t, resp); code != 200 || st != "paused" || w != 20 || resp["override"] != true {
		t.Fatalf("weights by variant and backend: %d %v", code, resp)
	}
	if c := resp["canary"].(map[string]any); c["after_override"] != "stepping" {
		t.Errorf("after_override %v, want stepping", c["after_override"])
	}
	code, resp = adminCall(t, "DELETE", ep+"/weights", "tok", "")
	if code != 200 {
		t.Fatalf("end of the override: %d %v", code, resp)
	}
	_, view := adminCall(t, "GET", ep, "tok", "")
	if st, w := canaryOf(t, view); st != "stepping" || w != 20 || view["override"] != false {
		t.Errorf("after the override ended: %s at %v %%, override %v; want stepping on from 20 %% without the override", st, w, view["override"])
	}
	if c := view["canary"].(map[string]any); c["after_override"] != nil {
		t.Errorf("after_override %v without an override", c["after_override"])
	}
}

// Promoting a canary the controller already promoted changes nothing: it answers 200
// promoted and keeps the controller's reason and window start, as a rollback of a
// rolled-back canary does.
// Not t.Parallel: driveLoad's four clients send as fast as they can.
func TestAdminPromoteOfPromotedCanaryKeepsReason(t *testing.T) {
	_, stable := startMock(t, mockllm.Options{MaxTokens: 2})
	_, canary := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, strings.Replace(canaryConfig(stable, canary), "steps: [5, 10, 25, 50, 75, 100]", "steps: [50, 100]", 1))
	admin := "http://" + g.AdminAddr()
	stop := make(chan struct{})
	wg := driveLoad(g, stop)
	deadline := time.Now().Add(20 * time.Second)
	for readCanary(t, g.AdminAddr()).State != "promoted" {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatal("healthy canary never promoted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	_, before := adminCall(t, "GET", admin+"/admin/endpoints/chat", "", "")
	code, after := adminCall(t, "POST", admin+"/admin/endpoints/chat/canary/promote", "", "")
	if code != 200 {
		t.Fatalf("promote: %d %v", code, after)
	}
	cb, ca := before["canary"].(map[string]any), after["canary"].(map[string]any)
	if ca["state"] != "promoted" || ca["weight"] != 100.0 || ca["reason"] != cb["reason"] || ca["window_start"] != cb["window_start"] {
		t.Fatalf("promote of a promoted canary changed it: reason %q -> %q, window_start %v -> %v; want unchanged",
			cb["reason"], ca["reason"], cb["window_start"], ca["window_start"])
	}
}

// adminRedisConfig is adminConfig with the limiter, and so the routing state, in Redis.
func adminRedisConfig(upstream, redisURL string) string {
	return strings.Replace(adminConfig(upstream), "logging: {level: error}",
		"limiter: {store: redis, redis: {url: \""+redisURL+"\"}}\nlogging: {level: error}", 1)
}

// Canary state is shared across replicas through Redis: an operation another replica
// already made answers 200 with that state (reason and window start included) and
// writes nothing; an operation the shared state does not allow is refused on every
// replica; with Redis down an operation answers 503 shared_state_unavailable, except on
// an endpoint without a canary, which is 409 no_canary whatever Redis does, and a
// rollback, which applies on the replica called (local_only) until Redis is back.
func TestAdminSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	up := startStaticUpstream(t)
	_, a := startAdminGatewayOn(t, adminRedisConfig(up, rds.URL()))
	_, b := startAdminGatewayOn(t, adminRedisConfig(up, rds.URL()))
	stateVer := func() string {
		v, err := redistest.Command(rds.Addr(), "HGET", "tollgate:router:ep:{chat}", "ver")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tt := range []struct{ verb, state string }{{"rollback", "rolled_back"}, {"promote", "promoted"}} {
		code, first := adminCall(t, "POST", a+"/admin/endpoints/chat/canary/"+tt.verb, "tok", "")
		if st, _ := canaryOf(t, first); code != 200 || st != tt.state {
			t.Fatalf("%s on a: %d %v", tt.verb, code, first)
		}
		ver := stateVer()
		code, again := adminCall(t, "POST", b+"/admin/endpoints/chat/canary/"+tt.verb, "tok", "")
		if code != 200 {
			t.Fatalf("%s on b after a: %d %v", tt.verb, code, again)
		}
		cf, ca := first["canary"].(map[string]any), again["canary"].(map[string]any)
		if ca["state"] != tt.state || ca["reason"] != cf["reason"] || ca["window_start"] != cf["window_start"] {
			t.Errorf("%s on b after a answered %v %q %v, want a's %v %q %v", tt.verb,
				ca["state"], ca["reason"], ca["window_start"], cf["state"], cf["reason"], cf["window_start"])
		}
		if got := stateVer(); got != ver {
			t.Errorf("%s on b after a wrote the shared state: ver %s -> %s", tt.verb, ver, got)
		}
	}
	code, body := adminCall(t, "POST", b+"/admin/endpoints/chat/canary/pause", "tok", "")
	if code != 409 {
		t.Errorf("pause of the promoted canary on b: %d %v, want 409", code, body)
	}
	checkAdminError(t, "pause of a promoted canary", body, "invalid_canary_state")

	// Redis comes back before the gateways stop (cleanups run last first), which
	// spares their shutdown the wait on a dead Redis.
	t.Cleanup(rds.Restart)
	rds.Kill()
	code, body = adminCall(t, "POST", a+"/admin/endpoints/chat/canary/resume", "tok", "")
	if code != 503 {
		t.Errorf("resume with Redis down: %d %v, want 503", code, body)
	}
	checkAdminError(t, "resume with Redis down", body, "shared_state_unavailable")
	// The gateway's side failed, as for the cache's and the revocations' 503s.
	if e, _ := body["error"].(map[string]any); e["type"] != "server_error" {
		t.Errorf("resume with Redis down: type %v, want server_error", e["type"])
	}
	code, body = adminCall(t, "PUT", a+"/admin/endpoints/chat/weights", "tok", `{"stable": 50, "canary": 50}`)
	if code != 503 {
		t.Errorf("weights with Redis down: %d %v, want 503", code, body)
	}
	checkAdminError(t, "weights with Redis down", body, "shared_state_unavailable")
	code, body = adminCall(t, "POST", a+"/admin/endpoints/plain/canary/pause", "tok", "")
	if code != 409 {
		t.Errorf("pause of an endpoint without a canary, Redis down: %d %v, want 409", code, body)
	}
	checkAdminError(t, "pause without a canary, Redis down", body, "no_canary")
	if code, view := adminCall(t, "GET", a+"/admin/endpoints/chat", "tok", ""); code != 200 {
		t.Errorf("view with Redis down: %d %v", code, view)
	} else if st, w := canaryOf(t, view); st != "promoted" || w != 100 {
		t.Errorf("with Redis down the canary is %s at %v %%, want promoted at 100 %% as before", st, w)
	}
	code, body = adminCall(t, "POST", a+"/admin/endpoints/chat/canary/rollback", "tok", "")
	if st, w := canaryOf(t, body); code != 200 || st != "rolled_back" || w != 0 || body["canary"].(map[string]any)["local_only"] != true {
		t.Errorf("rollback with Redis down: %d %v, want 200 rolled_back at 0 %% with local_only", code, body)
	}
}

// An admin error's message says what was wrong in the operator's terms: the endpoint,
// the verb and the canary's state it did not fit, the weights' problem; not the Go
// package that found it, nor Redis's own error (its address, a dial failure), which
// goes to the log.
func TestAdminErrorMessagesSayWhatIsWrong(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, admin := startAdminGatewayOn(t, adminRedisConfig(startStaticUpstream(t), rds.URL()))
	ep := admin + "/admin/endpoints/chat"
	if code, body := adminCall(t, "POST", ep+"/canary/rollback", "tok", ""); code != 200 {
		t.Fatalf("rollback: %d %v", code, body)
	}
	message := func(method, url, body string) string {
		t.Helper()
		_, resp := adminCall(t, method, url, "tok", body)
		e, _ := resp["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if strings.HasPrefix(msg, "router:") {
			t.Errorf("%s %s: message %q names a Go package", method, url, msg)
		}
		return msg
	}
	for _, tt := range []struct {
		name, method, url, body string
		want                    []string
	}{
		{"pause of a rolled-back canary", "POST", ep + "/canary/pause", "", []string{"`chat`", "rolled_back", "pause"}},
		{"no canary", "POST", admin + "/admin/endpoints/plain/canary/promote", "", []string{"`plain`", "no canary"}},
		{"no endpoint", "POST", admin + "/admin/endpoints/nope/canary/promote", "", []string{"`nope`"}},
		{"weights not adding up", "PUT", ep + "/weights", `{"stable": 50, "canary": 40}`, []string{"add up to 90"}},
		{"weights of another route", "PUT", ep + "/weights", `{"stable": 50, "ghost": 50}`, []string{`"ghost" is not a route`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := message(tt.method, tt.url, tt.body)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
	_, promoted := adminCall(t, "POST", ep+"/canary/promote", "tok", "")
	if st, _ := canaryOf(t, promoted); st != "promoted" {
		t.Fatalf("promote: %v", promoted)
	}
	if msg := message("POST", ep+"/canary/resume", ""); !strings.Contains(msg, "promoted") || !strings.Contains(msg, "resume") {
		t.Errorf("resume of a promoted canary: message %q does not say the state and the verb", msg)
	}
	// Redis comes back before the gateway stops (cleanups run last first), which
	// spares its shutdown the wait on a dead Redis.
	t.Cleanup(rds.Restart)
	rds.Kill()
	msg := message("POST", ep+"/canary/pause", "")
	if strings.Contains(msg, rds.Addr()) || strings.Contains(msg, "dial") || !strings.Contains(msg, "Redis") {
		t.Errorf("with Redis down: message %q; want it to say the shared state in Redis failed, without Redis's own error", msg)
	}
}

// An admin call whose Authorization header has two lines is refused 400
// duplicate_authorization, whichever line holds the token: a proxy on the way may
// read the other one, as the API refuses a key sent twice.
func TestAdminAuthorizationTwiceRefused(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGateway(t)
	for _, lines := range [][]string{{"Bearer tok", "Bearer tok"}, {"Bearer tok", "Bearer wrong"}, {"Bearer wrong", "Bearer tok"}} {
		req, _ := http.NewRequest("POST", admin+"/admin/endpoints/chat/canary/pause", nil)
		for _, l := range lines {
			req.Header.Add("Authorization", l)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("Authorization %q: %d %s, want 400", lines, resp.StatusCode, raw)
		}
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("not JSON: %s", raw)
		}
		checkAdminError(t, "two Authorization lines", body, "duplicate_authorization")
	}
	_, _, view := adminRaw(t, "GET", admin+"/admin/endpoints/chat", "", map[string]string{"Authorization": "Bearer tok"})
	if st, _ := canaryOf(t, view); st != "stepping" {
		t.Errorf("a refused pause changed the canary: %s", st)
	}
}
