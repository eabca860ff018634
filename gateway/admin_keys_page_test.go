package gateway

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// keyListJSON is a page of GET /admin/keys; Next is nil when the answer has none.
type keyListJSON struct {
	Keys []keyJSON `json:"keys"`
	Next *string   `json:"next"`
}

// keysPage is GET /admin/keys?query on g, which must answer 200.
func keysPage(t *testing.T, g *gw, query string) keyListJSON {
	t.Helper()
	status, _, raw := adminGet(t, "GET", "http://"+g.AdminAddr()+"/admin/keys?"+query, nil)
	if status != 200 {
		t.Fatalf("GET /admin/keys?%s: %d %s", query, status, raw)
	}
	var l keyListJSON
	if err := json.Unmarshal(raw, &l); err != nil || l.Keys == nil {
		t.Fatalf("GET /admin/keys?%s: %s (%v)", query, raw, err)
	}
	return l
}

func (l keyListJSON) names() []string {
	out := []string{}
	for _, k := range l.Keys {
		out = append(out, k.Name)
	}
	return out
}

// GET /admin/keys?limit=N&after=NAME pages through the keys in name order: each page
// holds the keys after `after`, at most N, with `next` (the name to pass as after)
// unless it is the last; each key on a page is as the full list and its own view show
// it, its buckets read from the store (memory and Redis) for the page's keys.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
// Not t.Parallel: a view's reset must be within 50 ms of what the headers said before
// the answer reached the client (checkTeamA).
func TestAdminKeysPages(t *testing.T) {
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

			for _, c := range []struct {
				query string
				keys  []string
				next  string
			}{
				{"", []string{"guest", "ops/batch", "team-a"}, ""},
				{"limit=1", []string{"guest"}, "guest"},
				{"limit=1&after=guest", []string{"ops/batch"}, "ops/batch"},
				{"after=ops%2Fbatch&limit=1", []string{"team-a"}, ""},
				{"limit=2", []string{"guest", "ops/batch"}, "ops/batch"},
				{"limit=2&after=ops%2Fbatch", []string{"team-a"}, ""},
				{"limit=3", []string{"guest", "ops/batch", "team-a"}, ""},
				{"limit=1000", []string{"guest", "ops/batch", "team-a"}, ""},
				{"limit=9223372036854775807", []string{"guest", "ops/batch", "team-a"}, ""},
				{"limit=01", []string{"guest"}, "guest"},
				{"after=guest", []string{"ops/batch", "team-a"}, ""},
				{"after=h", []string{"ops/batch", "team-a"}, ""},
				{"after=", []string{"guest", "ops/batch", "team-a"}, ""},
				{"after=team-a", []string{}, ""},
				{"after=zz&limit=5", []string{}, ""},
			} {
				l := keysPage(t, g, c.query)
				if got := l.names(); !slices.Equal(got, c.keys) {
					t.Errorf("?%s: keys %q, want %q", c.query, got, c.keys)
				}
				switch {
				case c.next == "" && l.Next != nil:
					t.Errorf("?%s: next %q on the last page", c.query, *l.Next)
				case c.next != "" && (l.Next == nil || *l.Next != c.next):
					t.Errorf("?%s: next %v, want %q", c.query, l.Next, c.next)
				}
			}
			// team-a on its own page reads what its last answer's headers said.
			checkTeamA(t, keysPage(t, g, "after=ops%2Fbatch&limit=1").Keys[0], h, time.Since(last), store)
			if ops := keysPage(t, g, "limit=1&after=guest").Keys[0]; len(ops.Limits) != 8 || ops.find(t, "key", "free", "endpoint", "requests").Source != store {
				t.Errorf("ops/batch on its page: %+v", ops)
			}
			status, hdr, raw := adminGet(t, "HEAD", "http://"+g.AdminAddr()+"/admin/keys?limit=1", nil)
			if status != 200 || len(raw) != 0 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("HEAD ?limit=1: %d %q %q", status, hdr.Get("Content-Type"), raw)
			}
		})
	}
}

// Pages of many keys, written in no order, walked with each page's next, hold every
// key once, in name order (byte order: capitals first), as the list without limit
// does; a reload that removes the key a next names between two pages does not restart
// the walk or skip a key.
func TestAdminKeysPagesWalk(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	var names []string
	for i := range 60 {
		names = append(names, "team-"+strconv.Itoa(i), "Team-"+strconv.Itoa(i), "ops/"+strconv.Itoa(i))
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	config := func(names []string) string {
		var b strings.Builder
		b.WriteString(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: "admtok", shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], limits: [{per: api_key, requests: 10, window: minute}]}
logging: {level: error, access_log: false}
auth:
  mode: keys
  keys:
`)
		for _, n := range names {
			b.WriteString("    - {name: " + strconv.Quote(n) + ", key: " + strconv.Quote("sk-page-"+strings.ReplaceAll(n, "/", "-")+"-0123456789") + "}\n")
		}
		return b.String()
	}
	g := startGateway(t, config(names))
	want := slices.Sorted(slices.Values(names))

	all := keysPage(t, g, "")
	if got := all.names(); !slices.Equal(got, want) || all.Next != nil {
		t.Fatalf("the whole list: %q (next %v), want %q", got, all.Next, want)
	}
	var walked []string
	query := "limit=7"
	for pages := 1; ; pages++ {
		l := keysPage(t, g, query)
		if len(l.Keys) > 7 {
			t.Fatalf("?%s: %d keys", query, len(l.Keys))
		}
		walked = append(walked, l.names()...)
		if l.Next == nil {
			if pages != (len(want)+6)/7 {
				t.Errorf("%d pages of 7 for %d keys", pages, len(want))
			}
			break
		}
		if *l.Next != l.Keys[len(l.Keys)-1].Name {
			t.Fatalf("?%s: next %q, not the page's last key", query, *l.Next)
		}
		query = "limit=7&after=" + url.QueryEscape(*l.Next)
	}
	if !slices.Equal(walked, want) {
		t.Errorf("walked %q, want %q", walked, want)
	}

	// Between two pages a reload removes the key the first page's next names.
	first := keysPage(t, g, "limit=2")
	removed := *first.Next
	if err := os.WriteFile(g.path, []byte(config(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == removed }))), 0o644); err != nil {
		t.Fatal(err)
	}
	if status, _, raw := adminGet(t, "POST", "http://"+g.AdminAddr()+"/admin/reload", nil); status != 200 {
		t.Fatalf("reload: %d %s", status, raw)
	}
	if got := keysPage(t, g, "limit=2&after="+url.QueryEscape(removed)).names(); !slices.Equal(got, want[2:4]) {
		t.Errorf("after %q, removed by a reload: %q, want %q", removed, got, want[2:4])
	}
}

// A limit that is not a whole number from 1 up, a parameter given twice and a
// parameter GET /admin/keys does not take are refused with 400 invalid_parameter in
// the API's error shape, naming the parameter; GET /admin/keys/{name} reads no
// parameter, as before.
func TestAdminKeysPageRefusals(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	g := startGateway(t, keysConfig(addr, ""))
	base := "http://" + g.AdminAddr() + "/admin/keys"
	for _, c := range []struct{ query, param string }{
		{"limit=0", "limit"},
		{"limit=-1", "limit"},
		{"limit=abc", "limit"},
		{"limit=1.5", "limit"},
		{"limit=", "limit"},
		{"limit", "limit"},
		{"limit=99999999999999999999", "limit"},
		{"limit=9223372036854775808", "limit"},
		{"limit=-9223372036854775809", "limit"},
		{"limit=%2B5", "limit"},
		{"limit=0x10", "limit"},
		{"limit=1&limit=2", "limit"},
		{"after=a&after=b", "after"},
		{"limt=5", "limt"},
		{"page=2&limit=1", "page"},
	} {
		t.Run(c.query, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				status, hdr, raw := adminGet(t, method, base+"?"+c.query, nil)
				if status != 400 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
					t.Fatalf("%s ?%s: %d %q %s, want 400", method, c.query, status, hdr.Get("Content-Type"), raw)
				}
				if method == "HEAD" {
					continue
				}
				body := decodeObject(t, raw)
				checkAdminError(t, c.query, body, "invalid_parameter")
				e := body["error"].(map[string]any)
				if e["param"] != c.param || e["type"] != "invalid_request_error" {
					t.Errorf("?%s: %v, want param %q", c.query, e, c.param)
				}
				// A limit refused says what it may be: past int64 is a whole
				// number too, so the message gives the range.
				if msg, _ := e["message"].(string); c.param == "limit" && !strings.Contains(c.query, "&limit") &&
					msg != "`limit` must be a whole number of keys from 1 to 9223372036854775807, in decimal digits." {
					t.Errorf("?%s: message %q", c.query, msg)
				}
			}
		})
	}
	if k := viewKey(t, g, "team-a?limit=x&after=zz"); k.Name != "team-a" {
		t.Errorf("GET /admin/keys/team-a with a query: %q", k.Name)
	}
}
