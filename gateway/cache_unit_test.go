package gateway

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/metrics"
)

func TestCacheDirectives(t *testing.T) {
	for _, tc := range []struct {
		name             string
		lines            []string
		noCache, noStore bool
	}{
		{"none", nil, false, false},
		{"empty", []string{""}, false, false},
		{"no-cache", []string{"no-cache"}, true, false},
		{"any case, spaces", []string{" No-Cache ,MAX-AGE=0"}, true, false},
		{"no-store", []string{"no-store"}, false, true},
		{"both on two lines", []string{"max-age=0", "no-store, no-cache"}, true, true},
		{"with an argument", []string{`no-cache="set-cookie"`}, true, false},
		{"not a prefix", []string{"no-cacheable, no-stored"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			for _, l := range tc.lines {
				h.Add("Cache-Control", l)
			}
			if nc, ns := cacheDirectives(&h); nc != tc.noCache || ns != tc.noStore {
				t.Errorf("no-cache %v no-store %v, want %v %v", nc, ns, tc.noCache, tc.noStore)
			}
		})
	}
}

func TestCacheableAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       bool
	}{
		{"chat", `{"choices":[{"message":{"content":"hi","refusal":null},"finish_reason":"stop"}]}`, true},
		{"embeddings", `{"object":"list","data":[{"embedding":[0.1]}]}`, true},
		{"error null", `{"error":null,"choices":[]}`, true},
		{"empty refusal", `{"choices":[{"message":{"refusal":""},"finish_reason":"stop"}]}`, true},
		{"error object", `{"error":{"message":"x"}}`, false},
		{"error string", `{"error":"x"}`, false},
		{"refusal", `{"choices":[{"message":{"refusal":"no"},"finish_reason":"stop"}]}`, false},
		{"second choice filtered", `{"choices":[{"finish_reason":"stop"},{"finish_reason":"content_filter"}]}`, false},
		{"not an object", `[1]`, false},
		{"bytes after", `{"a":1} x`, false},
		{"cut", `{"a":`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cacheableAnswer([]byte(tc.body)); got != tc.want {
				t.Errorf("cacheable %v, want %v", got, tc.want)
			}
		})
	}
}

// newUnitCache is a cache with a clock the test moves.
func newUnitCache(t *testing.T, cc CacheConfig) (*answerCache, *time.Time) {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	c := newAnswerCache(&cc, "", m.Cache("unit"))
	now := time.Unix(1000, 0)
	c.setClock(func() time.Time { return now })
	return c, &now
}

// TestAnswerCacheLRU: past max_bytes the least recently used entries go, a read
// makes an entry recent, and the bytes held never pass max_bytes.
func TestAnswerCacheLRU(t *testing.T) {
	c, _ := newUnitCache(t, CacheConfig{TTL: time.Hour, MaxBytes: Size(4*(cacheEntryOverhead+104) + 20), MaxEntryBytes: Size(cacheEntryOverhead + 200)})
	body := func(i int) []byte { return []byte(`{"n":` + strconv.Itoa(i) + `}`) }
	answer := bytes.Repeat([]byte("a"), 80)
	for i := range 4 {
		if !c.put("k", "up", nil, body(i), answer, strJSON, "up", 0) {
			t.Fatalf("entry %d not kept", i)
		}
	}
	if e, _ := c.get("k", "up", nil, body(0)); e == nil {
		t.Fatal("entry 0 missing")
	}
	c.put("k", "up", nil, body(4), answer, strJSON, "up", 0)
	if e, _ := c.get("k", "up", nil, body(1)); e != nil {
		t.Error("entry 1, the least recently used, is still there")
	}
	for _, i := range []int{0, 2, 3, 4} {
		if e, _ := c.get("k", "up", nil, body(i)); e == nil || !bytes.Equal(e.answer, answer) || e.backend != "up" {
			t.Errorf("entry %d missing", i)
		}
	}
	if b, n := c.held(); b > int64(c.maxBytes) || n != 4 {
		t.Errorf("holds %d bytes in %d entries", b, n)
	}
	if c.put("k", "up", nil, body(5), bytes.Repeat([]byte("a"), 300), strJSON, "up", 0) {
		t.Error("an entry over max_entry_bytes was kept")
	}
	// Another owner, the same body: another entry.
	if e, _ := c.get("other", "up", nil, body(0)); e != nil {
		t.Error("another owner read the entry")
	}
}

// TestAnswerCacheTTL: an entry is served until its ttl, never at or after it, and
// expired ones are freed by the next request.
func TestAnswerCacheTTL(t *testing.T) {
	c, now := newUnitCache(t, CacheConfig{TTL: time.Minute, MaxBytes: 1 << 20, MaxEntryBytes: 1 << 10})
	c.put("", "up", nil, []byte("a"), []byte("{}"), strJSON, "up", 0)
	*now = now.Add(30 * time.Second)
	c.put("", "up", nil, []byte("b"), []byte("{}"), strJSON, "up", 0)
	*now = now.Add(29 * time.Second)
	if e, age := c.get("", "up", nil, []byte("a")); e == nil || age != 59*time.Second {
		t.Fatalf("before its ttl: %v, age %v", e, age)
	}
	*now = now.Add(time.Second)
	if e, _ := c.get("", "up", nil, []byte("a")); e != nil {
		t.Error("served at its ttl")
	}
	if _, n := c.held(); n != 1 {
		t.Errorf("%d entries held, want 1 (the expired one freed)", n)
	}
	*now = now.Add(time.Hour)
	c.get("", "up", nil, []byte("x"))
	if b, n := c.held(); b != 0 || n != 0 {
		t.Errorf("holds %d bytes in %d entries after every ttl passed", b, n)
	}
}

// TestAnswerCacheCollision: two requests whose hashes collide never get each other's
// answer: the body is compared whole.
func TestAnswerCacheCollision(t *testing.T) {
	c, _ := newUnitCache(t, CacheConfig{TTL: time.Hour, MaxBytes: 1 << 20, MaxEntryBytes: 1 << 10})
	c.put("", "up", nil, []byte("a"), []byte(`{"for":"a"}`), strJSON, "up", 0)
	// Plant the entry of "a" under the hash of "b", as a collision would.
	c.mu.Lock()
	e := c.byHash[cacheHash("", "up", nil, []byte("a"))]
	c.byHash[cacheHash("", "up", nil, []byte("b"))] = e
	c.mu.Unlock()
	if got, _ := c.get("", "up", nil, []byte("b")); got != nil {
		t.Fatalf("b served a's answer %s", got.answer)
	}
}

// FuzzCacheableAnswer: any body is judged without a panic, and one judged cacheable is
// one JSON object.
func FuzzCacheableAnswer(f *testing.F) {
	for _, s := range []string{`{"choices":[{"message":{"refusal":null},"finish_reason":"stop"}]}`, `{"error":{}}`, `{"choices":[1,{"message":"x"}]}`, `{`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if cacheableAnswer(body) {
			var it jsonscan.Iter
			if it.Reset(body) != nil || !jsonscan.Valid(body) {
				t.Fatalf("cacheable but not one JSON object: %q", body)
			}
		}
	})
}

// setClock sets the cache's clock.
func (c *answerCache) setClock(now func() time.Time) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

// held is what the cache holds: its bytes and entries.
func (c *answerCache) held() (bytes, entries int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.n
}
