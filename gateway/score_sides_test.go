package gateway

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A score body whose queries/documents members are not sides vLLM takes (a Jina-style
// object, a list of numbers, content that is no list) next to a whole text_1/text_2
// pair: vLLM's union, and mockllm, skip the first and score the text pair (10 pairs),
// and the token estimate is charged for the text pair, not for the skipped one.
func TestScoreEstimateReadsPairVLLMReads(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{})
	left := `"` + strings.Repeat("q", 3998) + `"`
	right := `["d","d","d","d","d","d","d","d","d","d"]`
	// The text pair alone, as vLLM and mockllm read it: the left item once per pair.
	want := (int64(len(left))*10+int64(len(right)))/4 + 1 + rerankPairTokens*10
	for _, c := range []struct{ name, skipped string }{
		{"an object without content", `"queries":{"text":"x"},"documents":["a"]`},
		{"a list of numbers", `"queries":[1],"documents":[2]`},
		{"content that is no list", `"queries":{"content":"x"},"documents":["a"]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := scoreLimitedGateway(t, addr)
			body := `{"model":"rank",` + c.skipped + `,"text_1":` + left + `,"text_2":` + right + `}`
			var a scoreAnswer
			resp, raw := scorePost(t, g.url+"/score", body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
			if err := json.Unmarshal(raw, &a); err != nil || len(a.Data) != 10 {
				t.Fatalf("the upstream did not score the text pair: %s", raw)
			}
			rem, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
			if err != nil {
				t.Fatalf("no remaining tokens header: %v", resp.Header)
			}
			if got := 1000000 - rem; got != want {
				t.Errorf("%d tokens charged for a call the upstream counted %d prompt tokens for, want %d (the text pair vLLM reads)",
					got, a.Usage.PromptTokens, want)
			}
		})
	}
}
