package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

const fuzzAdminToken = "adm-fuzz-5c2e81"

// adminStatuses are the statuses the admin API answers with (README, "Admin API").
var adminStatuses = map[int]bool{200: true, 400: true, 401: true, 404: true, 405: true, 409: true, 422: true,
	431: true, 503: true}

// FuzzServeAdmin sends the admin listener well-formed HTTP requests with whatever
// method, path, headers and body the fuzzer makes: canary operations, weight overrides,
// reloads, listings and scrapes, on endpoints with and without a canary. Every answer
// must be complete, with a documented status and the API's error shape on errors; the
// admin token and the provider key never appear in an answer or the logs; the canary
// state stays one of its states; and /metrics still parses afterwards.
func FuzzServeAdmin(f *testing.F) {
	_, up := startMock(f, mockllm.Options{MaxTokens: 2, APIKey: fuzzProviderKey})
	g := startGateway(f, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: `+fuzzAdminToken+`}
backends:
  stable: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, api_key: `+fuzzProviderKey+`}
  next: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, api_key: `+fuzzProviderKey+`}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 90, variant: stable}, {backend: next, weight: 10, variant: canary}]
    canary: {backend: next, steps: [10, 50, 100], interval: 1h, min_requests: 10, max_error_rate: 0.5}
  - {name: plain, type: chat, routes: [{backend: stable}]}
logging: {level: info, access_log: true}
`)
	addr := g.AdminAddr()
	auth := "Authorization: Bearer " + fuzzAdminToken + "\n"
	for _, s := range []struct{ method, path, header, body string }{
		{"GET", "/admin/endpoints", auth, ""},
		{"GET", "/admin/keys?limit=2&after=a%2Fb", auth, ""},
		{"POST", "/admin/endpoints/chat/canary/pause", auth, ""},
		{"POST", "/admin/endpoints/chat/canary/resume", auth, ""},
		{"POST", "/admin/endpoints/chat/canary/promote", auth, ""},
		{"POST", "/admin/endpoints/chat/canary/rollback", auth, ""},
		{"POST", "/admin/endpoints/chat/canary/explode", auth, ""},
		{"POST", "/admin/endpoints/plain/canary/pause", auth, ""},
		{"POST", "/admin/endpoints/nope/canary/pause", auth, ""},
		{"PUT", "/admin/endpoints/chat/weights", auth, `{"stable": 70, "next": 30}`},
		{"PUT", "/admin/endpoints/chat/weights", auth, `{"stable": 100, "next": 0}`},
		{"PUT", "/admin/endpoints/chat/weights", auth, `{"stable": 70, "next": 31}`},
		{"PUT", "/admin/endpoints/chat/weights", auth, `{"stable": -5, "next": 105}`},
		{"PUT", "/admin/endpoints/chat/weights", auth, `{"stable": 50.5, "next": 49.5}`},
		{"PUT", "/admin/endpoints/chat/weights", auth, `{"other": 100}`},
		{"PUT", "/admin/endpoints/chat/weights", auth, `{"stable": 50, "stable": 50}`},
		{"PUT", "/admin/endpoints/chat/weights", auth, `[100]`},
		{"PUT", "/admin/endpoints/plain/weights", auth, `{"stable": 100}`},
		{"POST", "/admin/reload", auth, ""},
		{"POST", "/admin/endpoints/chat/canary/pause", "", ""},
		{"POST", "/admin/endpoints/chat/canary/pause", "Authorization: Bearer wrong\n", ""},
		{"GET", "/admin/endpoints", "Authorization: " + fuzzAdminToken + "\n", ""},
		{"GET", "/healthz", "", ""},
		{"GET", "/readyz", "", ""},
		{"GET", "/metrics", "", ""},
		{"GET", "/admin/../metrics", auth, ""},
		{"DELETE", "/admin/endpoints/chat/weights", auth, ""},
		{"GET", "/admin/endpoints/chat/canary/pause", auth, ""},
		{"POST", "/admin/endpoints//canary/pause", auth, ""},
		{"POST", "/admin/endpoints/chat/canary/", auth, ""},
		{"POST", "/admin/endpoints/ch%61t/canary/pause?x=1", auth, ""},
	} {
		f.Add(s.method, s.path, s.header, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, path, header string, body []byte) {
		req, _ := fuzzRequest(method, path, header, body)
		resp, got, err := fuzzExchange(addr, req)
		if err != nil {
			t.Fatalf("%v\nrequest:\n%q", err, req)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf(format+"\nrequest:\n%q\nanswer %d %v:\n%s", append(args, req, resp.StatusCode, resp.Header, got)...)
		}
		logs := g.logs.drain()
		for _, secret := range []string{fuzzAdminToken, fuzzProviderKey, fuzzClientKey} {
			if strings.Contains(string(got), secret) || strings.Contains(fmtHeader(resp.Header), secret) {
				fail("the answer carries a secret")
			}
			if strings.Contains(logs, secret) {
				fail("the logs carry a secret:\n%s", logs)
			}
		}
		if !adminStatuses[resp.StatusCode] {
			fail("status %d is not one the admin API documents", resp.StatusCode)
		}
		if resp.StatusCode >= 400 && resp.StatusCode != 431 && resp.StatusCode != 503 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			var e struct {
				Error *struct {
					Message string `json:"message"`
				} `json:"error"`
				Errors []any `json:"errors"`
			}
			if err := json.Unmarshal(got, &e); err != nil || (e.Error == nil || e.Error.Message == "") && len(e.Errors) == 0 {
				fail("error answer not in the API's shape (%v)", err)
			}
		}
		if resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && !json.Valid(got) {
			fail("200 answer that is not JSON")
		}
		if bytes.Contains(req, []byte("/admin/endpoints")) || bytes.Contains(req, []byte("weights")) {
			fuzzCheckCanaryState(t, addr)
		}
	})
	// What the runs did to the canary and the weights is still a valid exposition.
	fams, err := promtest.Scrape("http://" + addr + "/metrics")
	if err != nil {
		f.Fatalf("metrics after the fuzz inputs: %v", err)
	}
	if _, ok := promtest.Sum(fams, "tollgate_canary_state", nil); !ok {
		f.Fatal("no tollgate_canary_state after the fuzz inputs")
	}
}

// fuzzCheckCanaryState checks that the listing still parses, the canary is in one of
// its states and the live weights of each endpoint add up to 100.
func fuzzCheckCanaryState(t *testing.T, addr string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/admin/endpoints", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+fuzzAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Endpoints []struct {
			Name   string `json:"name"`
			Routes []struct {
				Weight float64 `json:"weight"`
			} `json:"routes"`
			Canary *struct {
				State string `json:"state"`
			} `json:"canary"`
		} `json:"endpoints"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("listing: status %d, %v", resp.StatusCode, err)
	}
	if len(list.Endpoints) != 2 {
		t.Fatalf("listing has %d endpoints, want chat and plain", len(list.Endpoints))
	}
	for _, ep := range list.Endpoints {
		if (ep.Name == "chat") != (ep.Canary != nil) {
			t.Fatalf("endpoint %s: canary %v", ep.Name, ep.Canary)
		}
		sum := 0.0
		for _, r := range ep.Routes {
			if r.Weight < 0 || r.Weight > 100 {
				t.Fatalf("endpoint %s: weight %v", ep.Name, r.Weight)
			}
			sum += r.Weight
		}
		if sum < 99.99 || sum > 100.01 {
			t.Fatalf("endpoint %s: weights add up to %v", ep.Name, sum)
		}
		if ep.Canary != nil {
			switch ep.Canary.State {
			case "stepping", "paused", "promoted", "rolled_back":
			default:
				t.Fatalf("endpoint %s: canary state %q", ep.Name, ep.Canary.State)
			}
		}
	}
}

// TestAdminOpenWithoutTokenWarns: an admin listener beyond loopback without an admin
// token is said at start-up as a warning, before the "serving" line; on loopback, or
// with a token, nothing is.
func TestAdminOpenWithoutTokenWarns(t *testing.T) {
	t.Parallel()
	const warning = "the admin API listens beyond loopback without server.admin_token"
	for _, c := range []struct {
		name, server string
		warn         bool
	}{
		{"all interfaces, no token", `{listen: "127.0.0.1:0", admin_listen: "0.0.0.0:0"}`, true},
		{"all interfaces, token", `{listen: "127.0.0.1:0", admin_listen: "0.0.0.0:0", admin_token: t0k}`, false},
		{"loopback, no token", `{listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, "server: "+c.server+`
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
			waitFor(t, func() bool { return strings.Contains(g.logs.String(), `"msg":"serving"`) })
			if got := strings.Contains(g.logs.String(), warning); got != c.warn {
				t.Fatalf("warning logged %v, want %v:\n%s", got, c.warn, g.logs.String())
			}
		})
	}
}
