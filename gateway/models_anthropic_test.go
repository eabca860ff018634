package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// anthModelsConfig has seven models in the listings (an endpoint with two aliases, a
// name with "/" and ":" in it) and two keys: ops may use every endpoint, team-a two
// of them (four models, the aliases included).
const anthModelsConfig = `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: ops, key: sk-ops}
    - {name: team-a, key: sk-a, endpoints: [chat, embed]}
backends:
  m: {provider: mock, model: m1}
endpoints:
  - {name: chat, aliases: [gpt-4o, gpt-4o-2024-08-06], type: chat, routes: [{backend: m}]}
  - {name: other, type: chat, routes: [{backend: m}]}
  - {name: embed, type: embeddings, routes: [{backend: m}]}
  - {name: "hf://org/model", type: chat, routes: [{backend: m}]}
  - {name: last, type: chat, routes: [{backend: m}]}
`

var (
	allAnthModels   = []string{"chat", "gpt-4o", "gpt-4o-2024-08-06", "other", "embed", "hf://org/model", "last"}
	teamAAnthModels = []string{"chat", "gpt-4o", "gpt-4o-2024-08-06", "embed"}
	// anthEndpointOf is each model's endpoint: its display_name.
	anthEndpointOf = map[string]string{"chat": "chat", "gpt-4o": "chat", "gpt-4o-2024-08-06": "chat",
		"other": "other", "embed": "embed", "hf://org/model": "hf://org/model", "last": "last"}
)

// anthModel is Anthropic's model object, every member it has.
type anthModel struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

// anthPage is Anthropic's model list; first_id and last_id are null on an empty page.
type anthPage struct {
	Data    []anthModel `json:"data"`
	HasMore bool        `json:"has_more"`
	FirstID *string     `json:"first_id"`
	LastID  *string     `json:"last_id"`
}

type anthErrorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// modelsGet sends GET path to the gateway with key (none if empty), as an Anthropic
// SDK does when anthropic is set, and returns the answer, its body read.
func modelsGet(t *testing.T, g *gw, method, path, key string, anthropic bool) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, g.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	if anthropic {
		req.Header.Set("anthropic-version", "2023-06-01")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// decodeStrict decodes body into v, refusing members v does not have.
func decodeStrict(t *testing.T, body []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
}

// anthList gets one page of the list, which must be a 200.
func anthList(t *testing.T, g *gw, key, query string) anthPage {
	t.Helper()
	resp, body := modelsGet(t, g, "GET", "/v1/models"+query, key, true)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/models%s: %d %s", query, resp.StatusCode, body)
	}
	var p anthPage
	decodeStrict(t, body, &p)
	// The cursors are the page's ends, null on an empty page.
	if len(p.Data) == 0 {
		if p.FirstID != nil || p.LastID != nil {
			t.Fatalf("GET /v1/models%s: empty page with cursors: %s", query, body)
		}
	} else if p.FirstID == nil || *p.FirstID != p.Data[0].ID || p.LastID == nil || *p.LastID != p.Data[len(p.Data)-1].ID {
		t.Fatalf("GET /v1/models%s: first_id/last_id are not the page's ends: %s", query, body)
	}
	return p
}

func pageIDs(p anthPage) []string {
	ids := []string{}
	for _, m := range p.Data {
		ids = append(ids, m.ID)
	}
	return ids
}

// wantAnthError checks an answer is the Messages API's error, of that status and
// type, with the answer's request ID in it.
func wantAnthError(t *testing.T, what string, resp *http.Response, body []byte, status int, typ string) anthErrorBody {
	t.Helper()
	var e anthErrorBody
	decodeStrict(t, body, &e)
	if resp.StatusCode != status || e.Type != "error" || e.Error.Type != typ || e.Error.Message == "" {
		t.Fatalf("%s: %d %s, want %d %s in Anthropic's shape", what, resp.StatusCode, body, status, typ)
	}
	if id := resp.Header.Get("request-id"); id == "" || e.RequestID != id {
		t.Fatalf("%s: request_id %q, request-id header %q", what, e.RequestID, id)
	}
	return e
}

// openAIListing is OpenAI's list as the gateway gives it.
type openAIListing struct {
	Object string `json:"object"`
	Data   []struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	} `json:"data"`
}

// With anthropic-version, GET /v1/models is Anthropic's list: the models OpenAI's list
// has, in its order, each as Anthropic's model object (display_name its endpoint's
// name, created_at OpenAI's created in RFC 3339), with has_more and the cursors.
func TestAnthropicModelListShape(t *testing.T) {
	t.Parallel()
	g := startGateway(t, anthModelsConfig)
	resp, body := modelsGet(t, g, "GET", "/v1/models", "sk-ops", false)
	var oa openAIListing
	decodeStrict(t, body, &oa)
	if resp.StatusCode != 200 || len(oa.Data) == 0 {
		t.Fatalf("OpenAI's list: %d %s", resp.StatusCode, body)
	}

	resp, body = modelsGet(t, g, "GET", "/v1/models", "sk-ops", true)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp.Header.Get("x-request-id") == "" || resp.Header.Get("request-id") != resp.Header.Get("x-request-id") {
		t.Fatalf("request IDs: x-request-id %q, request-id %q", resp.Header.Get("x-request-id"), resp.Header.Get("request-id"))
	}
	p := anthList(t, g, "sk-ops", "")
	if got := pageIDs(p); !slices.Equal(got, allAnthModels) || p.HasMore {
		t.Fatalf("list %v has_more %v, want %v and false", got, p.HasMore, allAnthModels)
	}
	for i, m := range p.Data {
		o := oa.Data[i]
		if m.ID != o.ID {
			t.Fatalf("model %d is %q, OpenAI's list has %q there", i, m.ID, o.ID)
		}
		at, err := time.Parse(time.RFC3339, m.CreatedAt)
		if err != nil || !at.Equal(time.Unix(o.Created, 0)) || !strings.HasSuffix(m.CreatedAt, "Z") {
			t.Fatalf("%s: created_at %q, OpenAI's created %d (%v)", m.ID, m.CreatedAt, o.Created, err)
		}
		if m.Type != "model" || m.DisplayName != anthEndpointOf[m.ID] {
			t.Fatalf("%s: %+v", m.ID, m)
		}
	}
	// HEAD has the headers alone, as for OpenAI's.
	if resp, body := modelsGet(t, g, "HEAD", "/v1/models", "sk-ops", true); resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
}

// Pages of limit models, forward by after_id from the first page and back by before_id
// from the last, as the SDKs' auto-pagination walks them; has_more says whether more
// lie the way asked.
func TestAnthropicModelListPages(t *testing.T) {
	t.Parallel()
	g := startGateway(t, anthModelsConfig)
	for _, c := range []struct {
		name, key string
		want      []string
	}{
		{"every endpoint", "sk-ops", allAnthModels},
		{"a key's endpoints", "sk-a", teamAAnthModels},
	} {
		t.Run(c.name, func(t *testing.T) {
			for limit := 1; limit <= len(c.want)+1; limit++ {
				lim := "?limit=" + itoa(limit)
				// Forward.
				var got []string
				p := anthList(t, g, c.key, lim)
				for n := 1; ; n++ {
					start := len(got)
					end := min(start+limit, len(c.want))
					if want := c.want[start:end]; !slices.Equal(pageIDs(p), want) || p.HasMore != (end < len(c.want)) {
						t.Fatalf("limit %d, page %d: %v has_more %v, want %v", limit, n, pageIDs(p), p.HasMore, want)
					}
					got = append(got, pageIDs(p)...)
					if !p.HasMore {
						break
					}
					p = anthList(t, g, c.key, lim+"&after_id="+url.QueryEscape(*p.LastID))
				}
				if !slices.Equal(got, c.want) {
					t.Fatalf("limit %d forward: %v, want %v", limit, got, c.want)
				}
				// After the last model: an empty page.
				if p := anthList(t, g, c.key, lim+"&after_id="+url.QueryEscape(c.want[len(c.want)-1])); len(p.Data) != 0 || p.HasMore {
					t.Fatalf("after the last: %+v", p)
				}

				// Back, from before the last model; the page holds the models just
				// before it, in the list's order.
				got = []string{c.want[len(c.want)-1]}
				p = anthList(t, g, c.key, lim+"&before_id="+url.QueryEscape(got[0]))
				for n := 1; ; n++ {
					end := len(c.want) - len(got)
					if want := c.want[max(0, end-limit):end]; !slices.Equal(pageIDs(p), want) || p.HasMore != (end-limit > 0) {
						t.Fatalf("limit %d, page %d back: %v has_more %v, want %v", limit, n, pageIDs(p), p.HasMore, want)
					}
					got = append(pageIDs(p), got...)
					if !p.HasMore {
						break
					}
					p = anthList(t, g, c.key, lim+"&before_id="+url.QueryEscape(*p.FirstID))
				}
				if !slices.Equal(got, c.want) {
					t.Fatalf("limit %d back: %v, want %v", limit, got, c.want)
				}
				if p := anthList(t, g, c.key, lim+"&before_id="+url.QueryEscape(c.want[0])); len(p.Data) != 0 || p.HasMore {
					t.Fatalf("before the first: %+v", p)
				}
			}
			// limit's default is 20, its most 1000.
			for _, q := range []string{"", "?limit=1000"} {
				if p := anthList(t, g, c.key, q); !slices.Equal(pageIDs(p), c.want) || p.HasMore {
					t.Fatalf("%q: %v has_more %v", q, pageIDs(p), p.HasMore)
				}
			}
		})
	}
}

func itoa(n int) string { return string(appendInt(nil, int64(n))) }

// A list's parameters out of Anthropic's bounds are refused with 400
// invalid_request_error in Anthropic's shape, as Anthropic refuses them; a cursor that
// names no model the key may use is one.
func TestAnthropicModelListRefusals(t *testing.T) {
	t.Parallel()
	g := startGateway(t, anthModelsConfig)
	for _, c := range []struct {
		query, key, message string
	}{
		{"?limit=0", "sk-ops", "limit: Input should be greater than or equal to 1"},
		{"?limit=-3", "sk-ops", "limit: Input should be greater than or equal to 1"},
		{"?limit=-99999999999999999999999", "sk-ops", "limit: Input should be greater than or equal to 1"},
		{"?limit=1001", "sk-ops", "limit: Input should be less than or equal to 1000"},
		{"?limit=99999999999999999999999", "sk-ops", "limit: Input should be less than or equal to 1000"},
		{"?limit=abc", "sk-ops", "limit: Input should be a valid integer, unable to parse string as an integer"},
		{"?limit=", "sk-ops", "limit: Input should be a valid integer, unable to parse string as an integer"},
		{"?limit=2.5", "sk-ops", "limit: Input should be a valid integer, unable to parse string as an integer"},
		{"?after_id=chat&before_id=last", "sk-ops", "before_id and after_id may not both be given: page forward with after_id or back with before_id."},
		{"?after_id=nope", "sk-ops", "after_id: `nope` is not the ID of a model in this list."},
		{"?before_id=nope", "sk-ops", "before_id: `nope` is not the ID of a model in this list."},
		{"?after_id=", "sk-ops", "after_id: `` is not the ID of a model in this list."},
		// Another endpoint's model is as unknown to a key as a missing one.
		{"?after_id=other", "sk-a", "after_id: `other` is not the ID of a model in this list."},
		{"?before_id=last&limit=2", "sk-a", "before_id: `last` is not the ID of a model in this list."},
	} {
		t.Run(c.query+" "+c.key, func(t *testing.T) {
			resp, body := modelsGet(t, g, "GET", "/v1/models"+c.query, c.key, true)
			e := wantAnthError(t, c.query, resp, body, 400, "invalid_request_error")
			if e.Error.Message != c.message {
				t.Fatalf("message %q, want %q", e.Error.Message, c.message)
			}
			line := accessLine(t, g, resp.Header.Get("x-request-id"))
			if line["status"] != 400.0 || line["error"] != "invalid_value" {
				t.Fatalf("access log: %v", line)
			}
		})
	}
}

// With anthropic-version, GET /v1/models/{id} is Anthropic's model object of the
// endpoint or alias named, under the name asked for; a model that does not exist, or
// that the key may not use, is 404 not_found_error in Anthropic's shape, and so are the
// listings' other refusals.
func TestAnthropicModelRetrieve(t *testing.T) {
	t.Parallel()
	g := startGateway(t, anthModelsConfig)
	list := anthList(t, g, "sk-ops", "")
	for _, c := range []struct{ path, key, id string }{
		{"/v1/models/chat", "sk-ops", "chat"},
		{"/v1/models/gpt-4o", "sk-ops", "gpt-4o"},
		{"/v1/models/gpt-4o-2024-08-06", "sk-a", "gpt-4o-2024-08-06"},
		{"/v1/models/hf%3A%2F%2Forg%2Fmodel", "sk-ops", "hf://org/model"},
		{"/v1/models/last", "sk-ops", "last"},
	} {
		resp, body := modelsGet(t, g, "GET", c.path, c.key, true)
		if resp.StatusCode != 200 || resp.Header.Get("request-id") == "" {
			t.Fatalf("%s: %d %s", c.path, resp.StatusCode, body)
		}
		var m anthModel
		decodeStrict(t, body, &m)
		// The very object the list has.
		if want := list.Data[slices.Index(allAnthModels, c.id)]; m != want {
			t.Fatalf("%s: %+v, the list has %+v", c.path, m, want)
		}
	}
	for _, c := range []struct {
		method, path, key string
		status            int
		typ               string
	}{
		{"GET", "/v1/models/nope", "sk-ops", 404, "not_found_error"},
		{"GET", "/v1/models/other", "sk-a", 404, "not_found_error"},
		{"GET", "/v1/models/last", "sk-a", 404, "not_found_error"},
		{"GET", "/v1/models/chat", "", 401, "authentication_error"},
		{"GET", "/v1/models/chat", "sk-wrong", 401, "authentication_error"},
		{"GET", "/v1/models", "", 401, "authentication_error"},
		{"GET", "/v1/models", "sk-wrong", 401, "authentication_error"},
		{"POST", "/v1/models", "sk-ops", 405, "invalid_request_error"},
		{"DELETE", "/v1/models/chat", "sk-ops", 405, "invalid_request_error"},
	} {
		resp, body := modelsGet(t, g, c.method, c.path, c.key, true)
		e := wantAnthError(t, c.method+" "+c.path+" "+c.key, resp, body, c.status, c.typ)
		if c.status == 404 && !strings.Contains(e.Error.Message, "`"+strings.TrimPrefix(c.path, "/v1/models/")+"`") {
			t.Fatalf("%s: message %q", c.path, e.Error.Message)
		}
		// The same refusal, in OpenAI's shape, without anthropic-version.
		resp2, body2 := modelsGet(t, g, c.method, c.path, c.key, false)
		var oe struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if err := json.Unmarshal(body2, &oe); err != nil || resp2.StatusCode != c.status || oe.Error.Message == "" {
			t.Fatalf("%s %s without anthropic-version: %d %s", c.method, c.path, resp2.StatusCode, body2)
		}
	}
}

// Without anthropic-version nothing changes: OpenAI's list, whole, whatever the query
// says, and OpenAI's model object.
func TestModelListOpenAIWithoutAnthropicVersion(t *testing.T) {
	t.Parallel()
	g := startGateway(t, anthModelsConfig)
	for _, c := range []struct {
		key  string
		want []string
	}{{"sk-ops", allAnthModels}, {"sk-a", teamAAnthModels}} {
		for _, q := range []string{"", "?limit=2", "?limit=0&after_id=nope"} {
			resp, body := modelsGet(t, g, "GET", "/v1/models"+q, c.key, false)
			var oa openAIListing
			decodeStrict(t, body, &oa)
			if resp.StatusCode != 200 || oa.Object != "list" || resp.Header.Get("request-id") != "" {
				t.Fatalf("%s %q: %d %s", c.key, q, resp.StatusCode, body)
			}
			var ids []string
			for _, m := range oa.Data {
				if m.Object != "model" || m.OwnedBy != "tollgate" || m.Created == 0 {
					t.Fatalf("%s: %s", c.key, body)
				}
				ids = append(ids, m.ID)
			}
			if !slices.Equal(ids, c.want) {
				t.Fatalf("%s %q: %v, want %v", c.key, q, ids, c.want)
			}
		}
	}
	resp, body := modelsGet(t, g, "GET", "/v1/models/gpt-4o", "sk-a", false)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || resp.StatusCode != 200 || m["id"] != "gpt-4o" || m["object"] != "model" || m["owned_by"] != "tollgate" || len(m) != 4 {
		t.Fatalf("retrieve: %d %s", resp.StatusCode, body)
	}
	// An empty anthropic-version is none.
	req, _ := http.NewRequest("GET", g.url+"/v1/models", nil)
	req.Header.Set("x-api-key", "sk-ops")
	req.Header["Anthropic-Version"] = []string{""}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if !bytes.HasPrefix(body, []byte(`{"object":"list",`)) {
		t.Fatalf("empty anthropic-version: %s", body)
	}
}

// Anthropic's list and model are counted and logged as OpenAI's are: under endpoint
// "unknown" in tollgate_requests_total, one access log line each naming the key.
func TestAnthropicModelListingsRecorded(t *testing.T) {
	t.Parallel()
	g := startGateway(t, anthModelsConfig)
	count := func(code string) float64 {
		_, n := seriesWith(contractScrape(t, g), "tollgate_requests_total", "endpoint", "unknown", "code", code)
		return n
	}
	before200, before404 := count("200"), count("404")
	var lines [2][]map[string]any
	for i, anthropic := range []bool{false, true} {
		for _, path := range []string{"/v1/models", "/v1/models/chat", "/v1/models/other"} {
			resp, _ := modelsGet(t, g, "GET", path, "sk-a", anthropic)
			lines[i] = append(lines[i], accessLine(t, g, resp.Header.Get("x-request-id")))
		}
	}
	if d := count("200") - before200; d != 4 {
		t.Fatalf("200s counted %v, want 4", d)
	}
	if d := count("404") - before404; d != 2 {
		t.Fatalf("404s counted %v, want 2", d)
	}
	for i := range lines[0] {
		o, a := lines[0][i], lines[1][i]
		for _, f := range []string{"endpoint", "key", "status", "error", "backend", "variant", "attempts"} {
			if o[f] != a[f] {
				t.Fatalf("line %d: %s is %v in OpenAI's shape, %v in Anthropic's", i, f, o[f], a[f])
			}
		}
		if a["key"] != "team-a" {
			t.Fatalf("line %d: %v", i, a)
		}
	}
}
