package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
)

// listingConfig is a config of n keys behind the upstream at addr, with admin token
// admtok and limiterYAML: every key may call chat, with a requests limit per api_key,
// and batch, with a tokens limit and a concurrency cap per api_key (two rate buckets
// and a concurrency one a key), and the keys are named in no order. With rich, some keys also have limits of their own
// (per api_key, per endpoint, a spend budget, a concurrency cap, per user), an expiry,
// a list of endpoints, or a name JSON escapes.
func listingConfig(addr string, n int, rich bool, limiterYAML string) string {
	var b strings.Builder
	b.WriteString(`server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: admtok}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, pricing: {input_per_million: 1, output_per_million: 2}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], limits: [{per: api_key, requests: 10, window: minute}]}
  - {name: batch, type: chat, routes: [{backend: up}], limits: [{per: api_key, tokens: 5000, window: hour}, {per: api_key, concurrency: 3}]}
auth:
  mode: keys
  keys:
`)
	for i := range n {
		// Reversed digits: the config's order is not the name order.
		d := []byte(strconv.Itoa(10000 + i))
		slices.Reverse(d)
		name := "key-" + string(d)
		if rich && i%50 == 6 {
			name = `<team> & "ops" ` + strconv.Itoa(i)
		}
		b.WriteString("    - {name: " + strconv.Quote(name) + ", key: \"sk-list-" + strconv.Itoa(i) + "-0123456789\"")
		if rich {
			switch i % 7 {
			case 1:
				b.WriteString(", endpoints: [chat]")
			case 2:
				b.WriteString(", limits: [{per: endpoint, requests: 5, window: minute}, {per: user, requests: 9, window: hour}]")
			case 3:
				b.WriteString(", limits: [{per: api_key, usd: 0.5, window: day}, {per: api_key, concurrency: 2}]")
			case 4:
				b.WriteString(`, expires_at: "2099-01-02T03:04:05Z"`)
			case 5:
				b.WriteString(`, expires_at: "2001-01-02T03:04:05Z"`)
			}
		}
		b.WriteString("}\n")
	}
	b.WriteString(limiterYAML)
	b.WriteString("logging: {level: error, access_log: false}\n")
	return b.String()
}

// adminHandle runs the admin server's handler on method uri with the admin token, as a
// connection would, and returns the context holding its answer.
func adminHandle(s *Server, method, uri string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost("127.0.0.1")
	req.Header.Set("Authorization", "Bearer admtok")
	ctx := &fasthttp.RequestCtx{}
	ctx.Init2(&sinkConn{wake: make(chan bool, 1)}, nopLogger{}, true)
	req.CopyTo(&ctx.Request)
	s.serveAdmin(ctx)
	return ctx
}

// listingWant is the listing of page (in that order) with next, as one read of all
// its buckets and one json.Marshal of every view make it.
func listingWant(t *testing.T, s *Server, page []string, next string) []byte {
	t.Helper()
	rt := s.rt.Load()
	byName := map[string]*clientKey{}
	for _, k := range rt.keys {
		byName[k.name] = k
	}
	b := keyReads{now: s.keyClock(time.Now())}
	views := make([]keyView, len(page))
	for i, name := range page {
		views[i] = b.view(rt, byName[name])
	}
	b.read(context.Background(), rt, views)
	out, err := json.Marshal(keyList{Keys: views, Next: next})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// redisCalls is how many times Redis at addr has run cmd, scripts' calls included.
func redisCalls(t *testing.T, addr, cmd string) int {
	t.Helper()
	info, err := redistest.Command(addr, "INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, found := strings.Cut(info, "cmdstat_"+cmd+":calls=")
	if !found {
		return 0
	}
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The whole listing of more keys than a chunk reads their buckets a chunk at a time,
// as its answer is written: when the first bytes go out Redis has read one chunk's
// buckets, not every key's, and the stream never holds more than a chunk's views; the
// answer is byte for byte the one a single read and encoding of every key makes.
func TestAdminKeysListingReadsByChunk(t *testing.T) {
	t.Parallel()
	const n = 3*keyChunk + 10
	r := redistest.Start(t)
	s := newTestServer(t, listingConfig(startStaticUpstream(t), n, false,
		`limiter: {store: redis, redis: {url: "`+r.URL()+`"}, timeout: 5s}
`))
	names := make([]string, 0, n)
	for _, k := range s.rt.Load().keys {
		names = append(names, k.name)
	}
	slices.Sort(names)
	want := listingWant(t, s, names, "")

	base := redisCalls(t, r.Addr(), "get")
	ctx := adminHandle(s, "GET", "/admin/keys")
	if ctx.Response.StatusCode() != 200 || !bytes.HasPrefix(ctx.Response.Header.ContentType(), []byte("application/json")) {
		t.Fatalf("GET /admin/keys: %d %q", ctx.Response.StatusCode(), ctx.Response.Header.ContentType())
	}
	stream := ctx.Response.BodyStream()
	if stream == nil {
		t.Fatalf("the listing of %d keys is answered whole, its %d buckets read (%d bytes), not streamed a chunk at a time",
			n, redisCalls(t, r.Addr(), "get")-base, len(ctx.Response.Body()))
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(stream, got); err != nil {
		t.Fatal(err)
	}
	// Two rate buckets a key (GET), and a concurrency one (ZCOUNT).
	if read := redisCalls(t, r.Addr(), "get") - base; read > 2*keyChunk {
		t.Errorf("%d rate buckets read from Redis for the first byte, want a chunk's (%d) at most", read, 2*keyChunk)
	}
	buf := make([]byte, 4096)
	for {
		// Three probes a key; append may give twice the room a chunk needs.
		if ks, ok := stream.(*keyListing); ok && (cap(ks.views) > keyChunk || cap(ks.reads.probes) > 2*3*keyChunk) {
			t.Fatalf("the stream holds %d views and %d probes, over a chunk of %d keys", cap(ks.views), cap(ks.reads.probes), keyChunk)
		}
		m, err := stream.Read(buf)
		got = append(got, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx.Response.ResetBody()
	if refs := s.rt.Load().refs.Load(); refs != 0 {
		t.Errorf("the runtime is held %d times after the listing's stream closed", refs)
	}
	if read := redisCalls(t, r.Addr(), "get") - base; read != 2*n {
		t.Errorf("%d rate buckets read from Redis for the listing of %d keys, each with two", read, n)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the streamed listing differs from the whole one: %d bytes, want %d\n%s", len(got), len(want), firstDiff(got, want))
	}
}

// firstDiff shows where got and want part.
func firstDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(i-80, 0)
	return "at byte " + strconv.Itoa(i) + ":\n got " + string(got[from:min(i+80, len(got))]) + "\nwant " + string(want[from:min(i+80, len(want))])
}

// Every listing, whole or paged, of a page within a chunk, of exactly a chunk or of
// several, is byte for byte the one a single read and encoding of its keys makes (same
// keys, order, fields, escaping and next), with the memory store and with Redis; HEAD
// answers its headers and no body.
func TestAdminKeysListingBytes(t *testing.T) {
	const n = 2*keyChunk + 99
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			limiterYAML := ""
			if store == "redis" {
				limiterYAML = `limiter: {store: redis, redis: {url: "` + redistest.Start(t).URL() + `"}, timeout: 5s}
`
			}
			s := newTestServer(t, listingConfig(startStaticUpstream(t), n, true, limiterYAML))
			names := make([]string, 0, n)
			for _, k := range s.rt.Load().keys {
				names = append(names, k.name)
			}
			slices.Sort(names)
			for _, c := range []struct {
				query      string
				from, upto int
				next       bool
			}{
				{"", 0, n, false},
				{"limit=1", 0, 1, true},
				{"limit=" + strconv.Itoa(keyChunk), 0, keyChunk, true},
				{"limit=" + strconv.Itoa(keyChunk+1), 0, keyChunk + 1, true},
				{"limit=" + strconv.Itoa(2*keyChunk+5), 0, 2*keyChunk + 5, true},
				{"limit=" + strconv.Itoa(n), 0, n, false},
				{"limit=100000", 0, n, false},
				{"after=" + url.QueryEscape(names[10]), 11, n, false},
				{"after=" + url.QueryEscape(names[10]) + "&limit=" + strconv.Itoa(keyChunk+3), 11, 11 + keyChunk + 3, true},
				{"after=" + url.QueryEscape(names[n-1]), n, n, false},
			} {
				next := ""
				if c.next {
					next = names[c.upto-1]
				}
				want := listingWant(t, s, names[c.from:c.upto], next)
				ctx := adminHandle(s, "GET", "/admin/keys?"+c.query)
				got := ctx.Response.Body()
				if ctx.Response.StatusCode() != 200 || !bytes.Equal(got, want) {
					t.Errorf("?%s: %d, %d bytes, want %d\n%s", c.query, ctx.Response.StatusCode(), len(got), len(want), firstDiff(got, want))
				}
				head := adminHandle(s, "HEAD", "/admin/keys?"+c.query)
				if head.Response.StatusCode() != 200 || !bytes.HasPrefix(head.Response.Header.ContentType(), []byte("application/json")) {
					t.Errorf("HEAD ?%s: %d %q", c.query, head.Response.StatusCode(), head.Response.Header.ContentType())
				}
				head.Response.ResetBody()
			}
		})
	}
}

// Redis going away in the middle of a listing leaves its answer (200, already sent)
// whole and valid: the keys read before read redis, those after unavailable
// ("remaining": null), every key listed once.
func TestAdminKeysListingRedisGoneMidway(t *testing.T) {
	t.Parallel()
	const n = 3*keyChunk + 10
	r := redistest.Start(t)
	logs := &syncBuffer{}
	s := newServerWith(t, listingConfig(startStaticUpstream(t), n, false,
		`limiter: {store: redis, redis: {url: "`+r.URL()+`"}}
`), Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ctx := adminHandle(s, "GET", "/admin/keys")
	stream := ctx.Response.BodyStream()
	if ctx.Response.StatusCode() != 200 || stream == nil {
		t.Fatalf("GET /admin/keys: %d, streamed %v", ctx.Response.StatusCode(), stream != nil)
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(stream, got); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	rest, err := io.ReadAll(stream)
	if err != nil {
		t.Fatal(err)
	}
	ctx.Response.ResetBody()
	var l keyListJSON
	if err := json.Unmarshal(append(got, rest...), &l); err != nil {
		t.Fatalf("the listing Redis left midway is no JSON: %v", err)
	}
	if len(l.Keys) != n || l.Next != nil {
		t.Fatalf("%d keys (next %v), want %d", len(l.Keys), l.Next, n)
	}
	for i, k := range l.Keys {
		want := "redis"
		if i >= keyChunk {
			want = "unavailable"
		}
		if len(k.Limits) != 3 {
			t.Fatalf("key %d (%s): %+v, want 3 limits", i, k.Name, k.Limits)
		}
		for _, l := range k.Limits {
			if l.Source != want || (want == "unavailable") != (l.Remaining == nil) {
				t.Fatalf("key %d (%s): %+v, want source %s", i, k.Name, k.Limits, want)
			}
		}
	}
	// The two chunks read after Redis went: one warning for the answer, naming why.
	if c := strings.Count(logs.String(), "admin keys: limit buckets not read from Redis"); c != 1 {
		t.Errorf("%d warnings of buckets read unavailable, want 1:\n%s", c, logs.String())
	}
}

// A listing whose time to wait on Redis is spent reads its remaining chunks as
// unavailable without calling Redis, and still lists every key; HEAD of a listing
// streamed reads nothing and lets go of the runtime.
func TestAdminKeysListingWaitSpent(t *testing.T) {
	t.Parallel()
	const n = keyChunk + 5
	r := redistest.Start(t)
	s := newTestServer(t, listingConfig(startStaticUpstream(t), n, false,
		`limiter: {store: redis, redis: {url: "`+r.URL()+`"}, timeout: 5s}
`))
	base := redisCalls(t, r.Addr(), "get")
	head := adminHandle(s, "HEAD", "/admin/keys")
	head.Response.ResetBody()
	if refs := s.rt.Load().refs.Load(); refs != 0 || redisCalls(t, r.Addr(), "get") != base {
		t.Errorf("HEAD /admin/keys: runtime held %d times, %d buckets read", refs, redisCalls(t, r.Addr(), "get")-base)
	}

	ctx := adminHandle(s, "GET", "/admin/keys")
	l, ok := ctx.Response.BodyStream().(*keyListing)
	if !ok {
		t.Fatalf("GET /admin/keys of %d keys is not streamed", n)
	}
	l.wait = 0
	raw, err := io.ReadAll(l)
	if err != nil {
		t.Fatal(err)
	}
	ctx.Response.ResetBody()
	if read := redisCalls(t, r.Addr(), "get") - base; read != 0 {
		t.Errorf("%d buckets read from Redis with no time left to wait on it", read)
	}
	var list keyListJSON
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Keys) != n {
		t.Fatalf("%d keys (%v), want %d", len(list.Keys), err, n)
	}
	for _, k := range list.Keys {
		for _, lim := range k.Limits {
			if lim.Source != "unavailable" || lim.Remaining != nil {
				t.Fatalf("%s: %+v, want every limit unavailable", k.Name, k.Limits)
			}
		}
	}
}

// Over the admin listener, a listing of more than a chunk goes out chunked, byte for
// byte the listing of its keys; HEAD answers its headers alone; a client that leaves
// in the middle of one leaves the runtime free to retire.
func TestAdminKeysListingServed(t *testing.T) {
	t.Parallel()
	const n = keyChunk + 44
	g := startGateway(t, listingConfig(startStaticUpstream(t), n, true, ""))
	names := make([]string, 0, n)
	for _, k := range g.rt.Load().keys {
		names = append(names, k.name)
	}
	slices.Sort(names)
	want := listingWant(t, g.Server, names, "")
	list := "http://" + g.AdminAddr() + "/admin/keys"
	status, hdr, raw := adminGet(t, "GET", list, nil)
	if status != 200 || !bytes.Equal(raw, want) || hdr.Get("Content-Length") != "" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("GET: %d %v, %d bytes, want %d\n%s", status, hdr, len(raw), len(want), firstDiff(raw, want))
	}
	if status, hdr, raw := adminGet(t, "HEAD", list, nil); status != 200 || len(raw) != 0 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("HEAD: %d %v %q", status, hdr, raw)
	}

	req, err := http.NewRequest("GET", list, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer admtok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for deadline := time.Now().Add(10 * time.Second); g.rt.Load().refs.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the runtime is still held %d times after the client left", g.rt.Load().refs.Load())
		}
	}
}
