package providers

import "testing"

// Score calls placed by `affinity: {by: prefix}` hash the left item vLLM reads: a
// client that writes null for the pairs it does not use (as a pydantic or dataclass
// client dumping None does), repeats a member, or names a pair vLLM cannot take next
// to the one it does, is hashed on the pair vLLM scores, so calls with other queries
// do not all hash alike and land on one replica.
func TestScorePrefixHashReadsLeftVLLMReads(t *testing.T) {
	t.Parallel()
	hash := func(body string) (uint64, bool) {
		return prefixHash(&Call{Kind: Score, Body: []byte(body)}, 512)
	}
	want, ok := hash(`{"model":"m","text_1":"which gateway","text_2":["a"]}`)
	if !ok {
		t.Fatal("no hash for text_1")
	}
	for _, c := range []struct{ name, body string }{
		{"null members of the pairs not used", `{"model":"m","queries":null,"documents":null,"items":null,"data_1":null,"data_2":null,"text_1":"which gateway","text_2":["a"]}`},
		{"a pair whose left member is no side", `{"model":"m","queries":5,"documents":["x"],"text_1":"which gateway","text_2":["a"]}`},
		{"a member given twice: the last is read", `{"model":"m","queries":"other","queries":"which gateway","documents":["a"]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if h, ok := hash(c.body); !ok || h != want {
				t.Errorf("%s hashes %x (ok %v), want %x, the hash of its left item \"which gateway\"", c.body, h, ok, want)
			}
		})
	}
	// Two clients' calls with other queries, written with nulls: vLLM reads two prefixes.
	x, _ := hash(`{"model":"m","queries":null,"documents":null,"text_1":"which gateway limits tokens","text_2":["a"]}`)
	y, _ := hash(`{"model":"m","queries":null,"documents":null,"text_1":"what fruit is yellow","text_2":["a"]}`)
	if x == y {
		t.Errorf("two score calls with other left items hash alike (%x)", x)
	}
}
