package providers

import (
	"bytes"
	"testing"
)

// cacheKeyCall is a chat call whose body names its cache group: the span the gateway's
// scan would give.
func cacheKeyCall(body string) *Call {
	c := &Call{Kind: Chat, Body: []byte(body)}
	if i := bytes.Index(c.Body, []byte(`"prompt_cache_key":"`)); i >= 0 {
		start := i + len(`"prompt_cache_key":"`)
		end := start
		for c.Body[end] != '"' {
			if c.Body[end] == '\\' {
				end++
			}
			end++
		}
		c.CacheKey = [2]int{start, end}
	}
	return c
}

// A call that names its cache group in prompt_cache_key is placed by that name, not by
// its prompt: the requests a client says share a cached prefix go together whatever
// their prompts, and a prompt alone still hashes as before.
func TestPrefixHashByCacheKey(t *testing.T) {
	const n = 16
	hash := func(body string) uint64 {
		t.Helper()
		h, ok := prefixHash(cacheKeyCall(body), n)
		if !ok {
			t.Fatalf("no hash for %s", body)
		}
		return h
	}
	a := hash(`{"messages":[{"role":"user","content":"first question"}],"prompt_cache_key":"tenant-7"}`)
	if b := hash(`{"prompt_cache_key":"tenant-7","messages":[{"role":"system","content":"a wholly other prompt"}]}`); a != b {
		t.Errorf("one prompt_cache_key, two prompts: hashes %x and %x, want one", a, b)
	}
	if b := hash(`{"messages":[{"role":"user","content":"first question"}],"prompt_cache_key":"tenant-\u0037"}`); a != b {
		t.Errorf("the key written with an escape hashes %x, want %x", b, a)
	}
	if b := hash(`{"messages":[{"role":"user","content":"first question"}],"prompt_cache_key":"tenant-8"}`); a == b {
		t.Errorf("two keys, one prompt: one hash %x, want two", a)
	}
	plain := hash(`{"messages":[{"role":"user","content":"first question"}]}`)
	if plain == a {
		t.Errorf("a prompt without a key hashes as the key does (%x)", a)
	}
	if b := hash(`{"messages":[{"role":"user","content":"first question"}],"prompt_cache_key":""}`); b != plain {
		t.Errorf("an empty prompt_cache_key hashes %x, want the prompt's %x", b, plain)
	}
	// A key longer than the bytes hashed of a prompt is hashed whole.
	long := `{"messages":[],"prompt_cache_key":"` + string(bytes.Repeat([]byte("k"), 3*n))
	if hash(long+`1"}`) == hash(long+`2"}`) {
		t.Error("two long keys differing past the prompt budget hash alike")
	}
}
