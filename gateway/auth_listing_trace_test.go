package gateway

import (
	"sort"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// README (Tracing): "what a client causes (a bad key, hanging up on a stream) is marked
// with error.type", and every request's server span has "children for auth". The
// model listings (GET /v1/models, /v1/models/{id}, MLflow's /api/2.0/endpoints/)
// check the key through the same auth as a chat call, so a wrong key there, the
// cheapest probe for a stolen one, gets its tollgate.auth span with
// error.type=invalid_api_key too, as does the request's span (a 4xx's), and no
// other span is marked.
func TestModelListBadKeyMarkedInTrace(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g, exp := startTracedGateway(t, mockConfig(addr, "", "")+`auth: {mode: keys, keys: [{name: team-a, key: sk-team-a-1234, endpoints: [chat]}]}
tracing: {exporter: none, sample_ratio: 1}
`)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/v1/chat/completions"},
		{"GET", "/v1/models"},
		{"GET", "/v1/models/chat"},
		{"GET", "/api/2.0/endpoints/"},
		{"GET", "/api/2.0/endpoints/chat"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			body := ""
			if tc.method == "POST" {
				body = authChatBody
			}
			st, _, h := authCall(t, tc.method, g.url+tc.path, body, [][2]string{{"Authorization", "Bearer sk-wrong-0000"}})
			if st != 401 {
				t.Fatalf("status %d, want 401", st)
			}
			spans := requestSpans(t, g, exp, h.Get("X-Request-Id"))
			var marked []string
			for name, ss := range spans {
				for _, s := range ss {
					if v, ok := attr(s.Snapshot(), "error.type"); ok {
						marked = append(marked, name+": "+v.Emit())
					}
				}
			}
			sort.Strings(marked)
			if len(marked) != 2 || marked[0] != tc.method+" "+spanPath(tc.path)+": invalid_api_key" || marked[1] != "tollgate.auth: invalid_api_key" {
				t.Errorf("spans with error.type: %q, want the request's and tollgate.auth marked error.type=invalid_api_key", marked)
			}
			if len(spans["tollgate.auth"]) != 1 {
				t.Errorf("%d tollgate.auth spans, want 1", len(spans["tollgate.auth"]))
			}
		})
	}
	// With the key, a listing is served to it and its auth span is not marked.
	st, b, h := authCall(t, "GET", g.url+"/v1/models", "", [][2]string{{"Authorization", "Bearer sk-team-a-1234"}})
	if st != 200 || !strings.Contains(b, `"id":"chat"`) || strings.Contains(b, `"id":"embed"`) {
		t.Fatalf("listing with the key: %d %s, want 200 with chat alone", st, b)
	}
	as := requestSpans(t, g, exp, h.Get("X-Request-Id"))["tollgate.auth"]
	if len(as) != 1 {
		t.Fatalf("%d tollgate.auth spans, want 1", len(as))
	}
	if v, ok := attr(as[0].Snapshot(), "error.type"); ok {
		t.Errorf("auth span of a valid key marked error.type=%s", v.Emit())
	}
}

// spanPath is the route a listing's span is named by: its path with the name
// left out.
func spanPath(path string) string {
	switch path {
	case "/v1/models/chat":
		return "/v1/models/{model}"
	case "/api/2.0/endpoints/chat":
		return "/api/2.0/endpoints/{name}"
	}
	return path
}
