package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// The keys of the admin keys tests: team-a's given as is, ops/batch's by its SHA-256.
const (
	keysTeamA = "sk-team-a-9f8e7d6c5b4a"
	keysOps   = "sk-ops-batch-1a2b3c4d5e"
	keysGuest = "sk-guest-77aa88bb99cc"
)

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// keysConfig is a gateway in front of the mockllm at addr with three keys: guest, with
// a limit per ip only, may call open, which has none; team-a, with a requests limit of
// 3 a day, a spend budget and a limit per user of its own, may call paid (priced, with
// limits per api_key and per user) and free; ops/batch may call every endpoint, with a
// limit per endpoint. limiterYAML goes after.
func keysConfig(addr, limiterYAML string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: "admtok", shutdown_grace: 5s}
backends:
  paid: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s,
         pricing: {input_per_million: 0.37, output_per_million: 1.13}}
  free: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s}
endpoints:
  - name: paid
    type: chat
    routes: [{backend: paid}]
    limits:
      - {per: api_key, tokens: 100000, window: month}
      - {per: api_key, concurrency: 4}
      - {per: user, requests: 100, window: day}
  - name: free
    type: chat
    routes: [{backend: free}]
    limits: [{per: api_key, requests: 1000, window: day, burst: 20}]
  - {name: other, type: chat, routes: [{backend: free}], limits: [{per: api_key, requests: 7, window: hour}]}
  - {name: open, type: chat, routes: [{backend: free}]}
auth:
  mode: keys
  keys:
    - {name: guest, key: ` + keysGuest + `, endpoints: [open], limits: [{per: ip, requests: 5, window: minute}]}
    - name: team-a
      key: ` + keysTeamA + `
      endpoints: [paid, free]
      limits:
        - {per: api_key, requests: 3, window: day}
        - {per: api_key, usd: 0.0001, window: month, burst: 0.01}
        - {per: user, requests: 50, window: hour}
    - name: ops/batch
      sha256: ` + sha256Hex(keysOps) + `
      limits: [{per: endpoint, requests: 10, window: day}]
` + limiterYAML + `logging: {level: error, access_log: false}
`
}

// keyJSON and limitJSON are a key as GET /admin/keys answers it.
type keyJSON struct {
	Name      string      `json:"name"`
	Endpoints []string    `json:"endpoints"`
	Limits    []limitJSON `json:"limits"`
}

type limitJSON struct {
	Scope     string       `json:"scope"`
	Endpoint  string       `json:"endpoint"`
	Per       string       `json:"per"`
	Kind      string       `json:"kind"`
	Amount    json.Number  `json:"amount"`
	Window    string       `json:"window"`
	Burst     json.Number  `json:"burst"`
	Limit     json.Number  `json:"limit"`
	Remaining *json.Number `json:"remaining"`
	Reset     json.Number  `json:"reset"`
	InUse     *int64       `json:"in_use"`
	Source    string       `json:"source"`
}

// find is the limit of kind counted per per in scope (and endpoint, "" for any).
func (k keyJSON) find(t *testing.T, scope, endpoint, per, kind string) limitJSON {
	t.Helper()
	for _, l := range k.Limits {
		if l.Scope == scope && l.Endpoint == endpoint && l.Per == per && l.Kind == kind {
			return l
		}
	}
	t.Fatalf("%s has no %s limit %s %s %s: %+v", k.Name, scope, endpoint, per, kind, k.Limits)
	return limitJSON{}
}

// adminGet sends method to the admin API at url with the admin token and returns the
// status, headers and body.
func adminGet(t *testing.T, method, url string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer admtok")
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
	return resp.StatusCode, resp.Header, raw
}

// viewKey is GET /admin/keys/{name} on g (name as it goes in the path).
func viewKey(t *testing.T, g *gw, name string) keyJSON {
	t.Helper()
	status, _, raw := adminGet(t, "GET", "http://"+g.AdminAddr()+"/admin/keys/"+name, nil)
	if status != 200 {
		t.Fatalf("GET /admin/keys/%s: %d %s", name, status, raw)
	}
	var k keyJSON
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return k
}

// spendTeamA sends team-a's requests on paid through gs in turn until one is refused
// (the key's 3 a day), and returns the refusal's headers: the last answer, given once
// every earlier request had settled.
func spendTeamA(t *testing.T, gs ...*gw) http.Header {
	t.Helper()
	params := openai.ChatCompletionNewParams{Model: "paid", Messages: userMsg("How much is left?"), MaxTokens: openai.Int(8)}
	served := make([]float64, len(gs))
	for i := range 10 {
		g := gs[i%len(gs)]
		c := g.client(option.WithAPIKey(keysTeamA))
		var resp *http.Response
		_, err := c.Chat.Completions.New(context.Background(), params, option.WithResponseInto(&resp))
		var apiErr *openai.Error
		switch {
		case err == nil:
			served[i%len(gs)]++
			answered(t, g, "paid", served[i%len(gs)])
		case errors.As(err, &apiErr) && apiErr.StatusCode == 429:
			if i != 3 {
				t.Fatalf("refused at request %d, want the fourth", i+1)
			}
			return apiErr.Response.Header
		default:
			t.Fatal(err)
		}
	}
	t.Fatal("team-a was never refused")
	return nil
}

// checkAsHeaders fails t unless l's figures are those of the x-ratelimit-*-suffix
// headers h: limit and remaining exactly, the reset less the time since (at most
// since, and a millisecond of rounding either way).
func checkAsHeaders(t *testing.T, what string, l limitJSON, h http.Header, suffix string, since time.Duration) {
	t.Helper()
	if l.Remaining == nil {
		t.Fatalf("%s: no remaining (%s)", what, l.Source)
	}
	if got, want := string(l.Limit), h.Get("X-Ratelimit-Limit-"+suffix); got != want {
		t.Errorf("%s: limit %s, the headers said %s", what, got, want)
	}
	if got, want := string(*l.Remaining), h.Get("X-Ratelimit-Remaining-"+suffix); got != want {
		t.Errorf("%s: remaining %s, the headers said %s", what, got, want)
	}
	hdr, err := time.ParseDuration(h.Get("X-Ratelimit-Reset-" + suffix))
	if err != nil {
		t.Fatalf("%s: reset header: %v", what, err)
	}
	secs, err := l.Reset.Float64()
	if err != nil {
		t.Fatalf("%s: reset %q: %v", what, l.Reset, err)
	}
	got := time.Duration(math.Round(secs*1e3)) * time.Millisecond
	// since is timed from after the answer came: the header was written a little
	// before, so the view's reset may be that much lower still (a loaded machine).
	if got > hdr+time.Millisecond || got < hdr-since-50*time.Millisecond {
		t.Errorf("%s: reset %v, the headers said %v %v ago", what, got, hdr, since)
	}
}

// checkTeamA checks team-a's view against the headers of its last answer, given since
// ago, read from source.
func checkTeamA(t *testing.T, k keyJSON, h http.Header, since time.Duration, source string) {
	t.Helper()
	if k.Name != "team-a" || strings.Join(k.Endpoints, ",") != "paid,free" {
		t.Errorf("key %q may call %v", k.Name, k.Endpoints)
	}
	req := k.find(t, "key", "", "api_key", "requests")
	checkAsHeaders(t, "the key's requests", req, h, "Requests", since)
	if *req.Remaining != "0" || req.Amount != "3" || req.Window != "day" || req.Burst != "3" {
		t.Errorf("the key's requests: %+v", req)
	}
	usd := k.find(t, "key", "", "api_key", "usd")
	checkAsHeaders(t, "the key's budget", usd, h, "Usd", since)
	if usd.Amount != "0.0001" || usd.Burst != "0.01" || usd.Limit != "0.01" || *usd.Remaining == "0.01" {
		t.Errorf("the key's budget, after three requests: %+v", usd)
	}
	tok := k.find(t, "endpoint", "paid", "api_key", "tokens")
	checkAsHeaders(t, "paid's tokens", tok, h, "Tokens", since)
	if *tok.Remaining == "100000" {
		t.Errorf("paid's tokens, after three requests: %+v", tok)
	}
	conc := k.find(t, "endpoint", "paid", "api_key", "concurrency")
	if conc.InUse == nil || *conc.InUse != 0 || conc.Remaining == nil || *conc.Remaining != "4" || conc.Limit != "4" || conc.Reset != "" || conc.Window != "" {
		t.Errorf("paid's concurrency with no request in flight: %+v", conc)
	}
	// Never used by team-a: full.
	free := k.find(t, "endpoint", "free", "api_key", "requests")
	if free.Remaining == nil || *free.Remaining != "20" || free.Limit != "1000" || free.Burst != "20" || free.Reset != "0" {
		t.Errorf("free's requests, never used: %+v", free)
	}
	if u := k.find(t, "key", "", "user", "requests"); u.Source != "per_subject" || u.Remaining != nil || u.Limit != "" {
		t.Errorf("the key's limit per user: %+v", u)
	}
	for _, l := range k.Limits {
		if l.Per == "user" && l.Scope == "endpoint" {
			t.Errorf("an endpoint's limit per user is listed: %+v", l)
		}
		if l.Source != source && l.Source != "per_subject" {
			t.Errorf("%+v: source %s, want %s", l, l.Source, source)
		}
	}
	if len(k.Limits) != 6 {
		t.Errorf("%d limits, want 6: %+v", len(k.Limits), k.Limits)
	}
}

// GET /admin/keys/{name} shows each limit that counts the key, its own and the
// endpoints' per api_key, with what its bucket has left: after a key spent through
// the API, exactly what the x-ratelimit-* headers of its last answer said; a bucket
// never used reads full; a limit per endpoint is listed for each endpoint.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
// Not t.Parallel: a view's reset must be within 50 ms of what the headers said before
// the answer reached the client.
func TestAdminKeysShowWhatTheHeadersSaid(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
			limiterYAML := ""
			if store == "redis" {
				limiterYAML = `limiter: {store: redis, redis: {url: "` + redistest.Start(t).URL() + `"}, timeout: 5s}
`
			}
			g := startGateway(t, keysConfig(addr, limiterYAML))
			h := spendTeamA(t, g)
			last := time.Now()
			k := viewKey(t, g, "team-a")
			checkTeamA(t, k, h, time.Since(last), store)

			ops := viewKey(t, g, "ops%2Fbatch")
			if ops.Name != "ops/batch" || strings.Join(ops.Endpoints, ",") != "*" {
				t.Errorf("ops/batch: %q may call %v", ops.Name, ops.Endpoints)
			}
			for _, ep := range []string{"paid", "free", "other", "open"} {
				l := ops.find(t, "key", ep, "endpoint", "requests")
				if l.Remaining == nil || *l.Remaining != "10" || l.Reset != "0" {
					t.Errorf("ops/batch's limit on %s, never used: %+v", ep, l)
				}
			}
			if o := ops.find(t, "endpoint", "other", "api_key", "requests"); o.Remaining == nil || *o.Remaining != "7" || o.Window != "hour" {
				t.Errorf("other's limit for ops/batch: %+v", o)
			}
			if len(ops.Limits) != 8 {
				t.Errorf("ops/batch has %d limits, want 8: %+v", len(ops.Limits), ops.Limits)
			}
			// A name with a slash as it is, and with one at the end.
			for _, path := range []string{"ops/batch", "ops/batch/"} {
				if v := viewKey(t, g, path); v.Name != "ops/batch" {
					t.Errorf("GET /admin/keys/%s: %q", path, v.Name)
				}
			}

			// Reading changes nothing: ops/batch's next request on free is its first.
			for range 10 {
				viewKey(t, g, "ops%2Fbatch")
			}
			var resp *http.Response
			c := g.client(option.WithAPIKey(keysOps))
			if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "free", Messages: userMsg("hi"), MaxTokens: openai.Int(4),
			}, option.WithResponseInto(&resp)); err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.Get("X-Ratelimit-Remaining-Requests"); got != "9" {
				t.Errorf("the first request after the reads: %s remaining, want 9", got)
			}
			after := time.Now()
			answered(t, g, "free", 1)
			// A successful answer with no true-up (a requests bucket): the view
			// says what its headers said.
			ops = viewKey(t, g, "ops%2Fbatch")
			checkAsHeaders(t, "ops/batch on free", ops.find(t, "key", "free", "endpoint", "requests"), resp.Header, "Requests", time.Since(after))

			// The list holds every key, as their own views show them: guest, whose
			// only limit has no bucket of the key's, takes no place among the
			// others' figures.
			status, _, raw := adminGet(t, "GET", "http://"+g.AdminAddr()+"/admin/keys", nil)
			var list struct{ Keys []keyJSON }
			if err := json.Unmarshal(raw, &list); status != 200 || err != nil || len(list.Keys) != 3 {
				t.Fatalf("GET /admin/keys: %d %s", status, raw)
			}
			if list.Keys[0].Name != "guest" || list.Keys[1].Name != "ops/batch" || list.Keys[2].Name != "team-a" {
				t.Errorf("keys %q, %q, %q, want guest, ops/batch, team-a in name order", list.Keys[0].Name, list.Keys[1].Name, list.Keys[2].Name)
			}
			if gl := list.Keys[0].Limits; len(gl) != 1 || gl[0].Source != "per_subject" || gl[0].Per != "ip" || strings.Join(list.Keys[0].Endpoints, ",") != "open" {
				t.Errorf("guest: %+v", list.Keys[0])
			}
			checkTeamA(t, list.Keys[2], h, time.Since(last), store)
			if got := list.Keys[1].find(t, "key", "free", "endpoint", "requests"); got.Remaining == nil || *got.Remaining != "9" {
				t.Errorf("ops/batch in the list: %+v", got)
			}
		})
	}
}

// Gateways sharing one Redis show one bucket: each shows what the last answer said,
// whichever gateway gave it.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
// Not t.Parallel: a view's reset must be within 50 ms of what the headers said before
// the answer reached the client (checkTeamA).
func TestAdminKeysSharedByGateways(t *testing.T) {
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	cfg := keysConfig(addr, `limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 5s}
`)
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	h := spendTeamA(t, a, b)
	last := time.Now()
	for name, g := range map[string]*gw{"a": a, "b": b} {
		t.Run(name, func(t *testing.T) {
			checkTeamA(t, viewKey(t, g, "team-a"), h, time.Since(last), "redis")
		})
	}
}

// While Redis does not answer, each limit read there says so, and the rest of the
// answer stands.
// Not t.Parallel: it kills Redis under a 50 ms limiter timeout.
func TestAdminKeysRedisDown(t *testing.T) {
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	g := startGateway(t, keysConfig(addr, `limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 50ms}
`))
	if l := viewKey(t, g, "team-a").find(t, "key", "", "api_key", "requests"); l.Source != "redis" || l.Remaining == nil || *l.Remaining != "3" {
		t.Fatalf("with Redis: %+v", l)
	}
	rds.Kill()
	start := time.Now()
	k := viewKey(t, g, "team-a")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the view took %v with Redis down", d)
	} else {
		t.Logf("the view took %v with Redis down", d)
	}
	if len(k.Limits) != 6 || strings.Join(k.Endpoints, ",") != "paid,free" {
		t.Fatalf("with Redis down: %+v", k)
	}
	for _, l := range k.Limits {
		switch {
		case l.Per == "user":
			if l.Source != "per_subject" {
				t.Errorf("%+v", l)
			}
		case l.Source != "unavailable" || l.Remaining != nil || l.Reset != "" || l.InUse != nil || l.Amount == "":
			t.Errorf("with Redis down: %+v, want source unavailable and remaining null", l)
		}
	}
	status, _, raw := adminGet(t, "GET", "http://"+g.AdminAddr()+"/admin/keys/team-a", nil)
	if status != 200 || !strings.Contains(string(raw), `"remaining":null,"source":"unavailable"`) {
		t.Errorf("%d %s", status, raw)
	}
}

// The answers hold no key, no hash of one and nothing of the admin token; errors
// are in the API's error shape; HEAD is GET without a body and other methods are 405
// with Allow; the admin token and the cross-site rules apply as on every /admin/ path.
func TestAdminKeysContract(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	g := startGateway(t, keysConfig(addr, ""))
	c := g.client(option.WithAPIKey(keysTeamA))
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "paid", Messages: userMsg("hi"), MaxTokens: openai.Int(4),
	}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + g.AdminAddr() + "/admin/keys"
	for _, path := range []string{"", "/team-a", "/ops%2Fbatch"} {
		status, hdr, raw := adminGet(t, "GET", base+path, nil)
		if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Fatalf("GET %s: %d %s", path, status, raw)
		}
		body := strings.ToLower(string(raw))
		for _, secret := range []string{keysTeamA, keysOps, keysGuest, sha256Hex(keysTeamA), sha256Hex(keysOps), sha256Hex(keysGuest), sha256Hex(keysTeamA)[:16], sha256Hex(keysOps)[:16], "admtok", "sk-"} {
			if strings.Contains(body, strings.ToLower(secret)) {
				t.Errorf("GET %s shows %q: %s", path, secret, raw)
			}
		}
		for _, field := range []string{`"key":`, `"sha256":`, `"hash":`} {
			if strings.Contains(body, field) {
				t.Errorf("GET %s has a %s field: %s", path, field, raw)
			}
		}

		status, hdr, raw = adminGet(t, "HEAD", base+path, nil)
		if status != 200 || len(raw) != 0 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("HEAD %s: %d %q %q", path, status, hdr.Get("Content-Type"), raw)
		}
		for _, method := range []string{"POST", "PUT", "DELETE", "PATCH"} {
			status, hdr, raw = adminGet(t, method, base+path, nil)
			if status != 405 || hdr.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d, Allow %q", method, path, status, hdr.Get("Allow"))
			}
			checkAdminError(t, method+" "+path, decodeObject(t, raw), "method_not_allowed")
		}
	}

	status, _, raw := adminGet(t, "GET", base+"/team-b", nil)
	if status != 404 {
		t.Errorf("GET a key not configured: %d %s", status, raw)
	}
	checkAdminError(t, "a key not configured", decodeObject(t, raw), "key_not_found")
	if strings.Contains(string(raw), "team-b") {
		// A key pasted in place of its name would come back (TestAdminKeyNotFoundDoesNotEchoThePath).
		t.Errorf("the message repeats the path's name: %s", raw)
	}

	for _, tt := range []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		code               string
	}{
		{"no token", "GET", "", map[string]string{"Authorization": ""}, 401, "invalid_admin_token"},
		{"wrong token", "GET", "/team-a", map[string]string{"Authorization": "Bearer nope"}, 401, "invalid_admin_token"},
		{"a key's secret as the token", "GET", "/team-a", map[string]string{"Authorization": "Bearer " + keysTeamA}, 401, "invalid_admin_token"},
		{"a change from another origin", "POST", "/team-a", map[string]string{"Origin": "http://evil.example"}, 403, "cross_site_request"},
		{"a cross-site fetch of a change", "DELETE", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross_site_request"},
		{"a read from another origin with the token", "GET", "/team-a", map[string]string{"Origin": "http://evil.example"}, 200, ""},
		{"a rebound Host with the token", "GET", "", map[string]string{"Host": "evil.example"}, 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, raw := adminGet(t, tt.method, base+tt.path, tt.hdr)
			if status != tt.status {
				t.Fatalf("%d %s, want %d", status, raw, tt.status)
			}
			if tt.code != "" {
				checkAdminError(t, tt.name, decodeObject(t, raw), tt.code)
			}
		})
	}

	// Without a token on a loopback listener, a rebound Host is refused, as on every
	// /admin/ path; curl is not.
	noTok := startGateway(t, strings.Replace(keysConfig(addr, ""), `, admin_token: "admtok"`, "", 1))
	nb := "http://" + noTok.AdminAddr() + "/admin/keys"
	if status, _, raw := adminGet(t, "GET", nb, map[string]string{"Host": "evil.example", "Authorization": ""}); status != 403 {
		t.Errorf("a rebound Host without a token: %d %s", status, raw)
	} else {
		checkAdminError(t, "rebound Host", decodeObject(t, raw), "cross_site_request")
	}
	if status, _, raw := adminGet(t, "GET", nb+"/team-a", map[string]string{"Authorization": ""}); status != 200 {
		t.Errorf("curl without a token: %d %s", status, raw)
	}
}

func decodeObject(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("not a JSON object: %q", raw)
	}
	return out
}

// A gateway without keys lists none.
func TestAdminKeysNoneConfigured(t *testing.T) {
	_, admin := startAdminGateway(t)
	code, body := adminCall(t, "GET", admin+"/admin/keys", "tok", "")
	if keys, ok := body["keys"].([]any); code != 200 || !ok || len(keys) != 0 {
		t.Errorf("%d %v, want an empty list", code, body)
	}
}
