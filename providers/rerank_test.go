package providers

import (
	"strings"
	"testing"
)

// A rerank answer's usage names total_tokens alone (vLLM's RerankUsage, Jina's): for a
// call that generates nothing that is its input (in); for one that generates, no count
// (the estimate stands). Where prompt or completion tokens are named, they are the
// counts and total_tokens is not read.
func TestParseUsageTotalOnly(t *testing.T) {
	for _, c := range []struct {
		raw       string
		in, out   int64
		wellBuilt bool
	}{
		{`{"total_tokens":42}`, 42, 0, true},
		{`{"total_tokens":null}`, 0, 0, true},
		{`{"total_tokens":42.0}`, 42, 0, true},
		{`{"total_tokens":-1}`, 0, 0, true},
		{`{"total_tokens":"42"}`, 0, 0, true},
		// Together's rerank usage, and every embeddings answer: the split counts.
		{`{"prompt_tokens":30,"completion_tokens":0,"total_tokens":30}`, 30, 0, true},
		{`{"prompt_tokens":12,"total_tokens":12}`, 12, 0, true},
		{`{"total_tokens":99,"prompt_tokens":12,"completion_tokens":3}`, 12, 3, true},
		// A garbled total beside good counts is not read: the counts stand.
		{`{"prompt_tokens":12,"completion_tokens":3,"total_tokens":-7}`, 12, 3, true},
		{`{"completion_tokens":3,"total_tokens":"x"}`, 0, 3, true},
	} {
		var u Usage
		ok := parseUsage([]byte(c.raw), &u)
		generated := u
		generated.total = 0
		u.totalAsInput()
		if ok != c.wellBuilt || u.Input != c.in || u.Output != c.out {
			t.Errorf("%s: %+v %v, want %d/%d", c.raw, u, ok, c.in, c.out)
		}
		if split := strings.Contains(c.raw, "prompt_tokens") || strings.Contains(c.raw, "completion_tokens"); !split && generated.Counted() || split && (generated.Input != c.in || generated.Output != c.out) {
			t.Errorf("%s as a generating call's usage: %+v", c.raw, generated)
		}
	}
}

func TestRerankKind(t *testing.T) {
	if Rerank.String() != "rerank" || Rerank.Path() != "/rerank" {
		t.Errorf("rerank is %q at %q", Rerank.String(), Rerank.Path())
	}
	for k := Chat; k < KindCount; k++ {
		if want := k != Embeddings && k != Rerank && k != Score && k != CountTokens && k != Tokenize && k != Detokenize; k.Generates() != want {
			t.Errorf("%s generates %v, want %v", k, k.Generates(), want)
		}
	}
	if e := errAnthropicRerank.Error(); e != "The model is served by the Anthropic Messages API, which has no rerank; use a model served by a rerank backend." {
		t.Errorf("anthropic refusal %q", e)
	}
}
