package gateway

import (
	"bytes"
	"testing"
	"time"
)

// FuzzCacheValue: a value read back from Redis is never trusted: any bytes decode to
// an entry within them or to none, without a panic, and a value the gateway wrote
// decodes to what it was made of.
func FuzzCacheValue(f *testing.F) {
	f.Add("up", []byte("application/json"), []byte(`{"object":"list"}`), "team-a", "up", []byte("2023-06-01"), []byte(`{"model":"embed","input":"x"}`), []byte{})
	f.Add("", []byte{}, []byte{}, "", "", []byte{}, []byte{}, []byte{cacheValueVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, backend string, ctype, answer []byte, owner, route string, version, body, raw []byte) {
		decodeCacheValue(string(raw))
		v, from := appendCacheValue(nil, time.UnixMilli(1_800_000_000_000), backend, ctype, answer, owner, route, version, body)
		if len(v) > cacheValueSize(backend, ctype, answer, owner, route, version, body) {
			t.Fatalf("value of %d bytes, sized %d", len(v), cacheValueSize(backend, ctype, answer, owner, route, version, body))
		}
		e := decodeCacheValue(string(v))
		if e == nil {
			t.Fatal("a value the gateway wrote does not decode")
		}
		if e.backend != backend || !bytes.Equal(e.ctype, ctype) || !bytes.Equal(e.answer, answer) || e.owner != owner || e.route != route || !bytes.Equal(e.version, version) || !bytes.Equal(e.body, body) {
			t.Fatalf("decoded %+v", e)
		}
		lk := lookupPool.Get().(*remoteLookup)
		defer lookupPool.Put(lk)
		lk.entryHash(owner, route, version, body)
		// The store hashes the value's tail; the lookup hashes owner, route, version
		// and body.
		j := cacheStoreJob{value: v, hashFrom: from}
		j.hashKey()
		if j.key != lk.key {
			t.Fatalf("the store's key %s, the lookup's %s", j.key[:], lk.key[:])
		}
	})
}

// TestCutNumber: the lookup script's reply is read as "GEN" or "GEN PTTL VALUE".
func TestCutNumber(t *testing.T) {
	for _, tc := range []struct {
		in, rest string
		n        int64
		ok       bool
	}{
		{"0", "", 0, true}, {"12 3400 v a l", " 3400 v a l", 12, true}, {"-2 x", " x", -2, true}, {"", "", 0, false}, {"x 1", " 1", 0, false},
	} {
		n, rest, ok := cutNumber(tc.in)
		if n != tc.n || rest != tc.rest || ok != tc.ok {
			t.Errorf("cutNumber(%q) = %d, %q, %v", tc.in, n, rest, ok)
		}
	}
}
