package providers

import (
	"strconv"
	"testing"
)

// A multimodal reranker (jina-reranker-m0 on vLLM) on a pool of 4 targets with
// affinity: {by: prefix}, queried with images (vLLM's ScoreMultiModalParam,
// {"content": [{"type": "image_url", ...}]}), each a different one: each query hashes
// by its parts' types and urls (README, affinity), so they spread over the targets
// rather than all hashing as "{".
func TestRerankMultimodalQueryPrefixHash(t *testing.T) {
	t.Parallel()
	b := newPoolBackend(t, Config{Targets: affinityTargets(4), Affinity: AffinityConfig{By: "prefix", Bytes: 512}}, nil)
	homes := map[int]bool{}
	hashes := map[uint64]bool{}
	for i := range 16 {
		body := `{"model":"rank","query":{"content":[{"type":"image_url","image_url":{"url":"https://img.example.com/query-` +
			strconv.Itoa(i) + `.png"}}]},"documents":["a","b"]}`
		call := &Call{Kind: Rerank, Body: []byte(body)}
		h, ok := prefixHash(call, 512)
		if !ok {
			t.Fatalf("no prefix hash for %s", body)
		}
		hashes[h] = true
		homes[b.choose(call)] = true
	}
	if len(hashes) != 16 {
		t.Errorf("%d distinct prefix hashes for 16 rerank queries with different images, want 16 (each image's url hashed)", len(hashes))
	}
	if len(homes) < 2 {
		t.Errorf("16 different image queries homed on %d target of 4, want them spread by their url", len(homes))
	}
}
