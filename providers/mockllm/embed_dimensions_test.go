package mockllm

import (
	"encoding/json"
	"strconv"
	"testing"
)

// TestEmbeddingDimensionsBeyondModel: vLLM never answers a vector longer than
// the model's: dimensions on a model without Matryoshka support is refused with 400
// (PoolingParams.verify), and a Matryoshka model's vectors are cut to dimensions, so
// they cannot grow past the hidden size; OpenAI refuses dimensions above the model's
// too. mockllm's model has --embedding-dim components.
func TestEmbeddingDimensionsBeyondModel(t *testing.T) {
	h := start(t, Options{EmbeddingDim: 16})
	resp, b := h.must("POST", "/v1/embeddings", `{"model":"mock-1","input":"hi","dimensions":4096}`)
	if resp.StatusCode != 200 {
		return // refused: as vLLM and OpenAI do
	}
	var r struct {
		Data []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Data) != 1 {
		t.Fatalf("decode %.200s: %v", b, err)
	}
	if n := len(r.Data[0].Embedding); n > 16 {
		t.Errorf("dimensions 4096 on a 16-dimension model: 200 with a %d-component vector; want 400, or at most 16 components", n)
	}
}

// TestEmbeddingDimensions: dimensions takes 1 to --embedding-dim components, the
// vector's head; the rest is refused in vLLM's words for a Matryoshka model.
func TestEmbeddingDimensions(t *testing.T) {
	h := start(t, Options{EmbeddingDim: 16})
	cases := []struct {
		name, dims string
		status     int
		want       string // the error body
	}{
		{"the model's own", "16", 200, ""},
		{"fewer", "3", 200, ""},
		{"more than the model's", "17", 400,
			`{"error":{"message":"Model \"mock-1\" only supports matryoshka dimensions up to 16, use other output dimensions will lead to poor results.","type":"BadRequestError","param":"dimensions","code":400}}`},
		{"zero", "0", 400,
			`{"error":{"message":"Dimensions must be greater than 0","type":"BadRequestError","param":"dimensions","code":400}}`},
		{"not an integer", `"8"`, 400,
			`{"error":{"message":"dimensions: Input should be a valid integer","type":"Bad Request","param":null,"code":400}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/embeddings", `{"input":"hi","dimensions":`+tc.dims+`}`)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d: %s; want %d", resp.StatusCode, b, tc.status)
			}
			if tc.status != 200 {
				if string(b) != tc.want {
					t.Errorf("body %s\nwant %s", b, tc.want)
				}
				return
			}
			n, _ := strconv.Atoi(tc.dims)
			if v := vectors(t, decode[embResp](t, b)); len(v) != 1 || len(v[0]) != n {
				t.Errorf("vectors %v, want one of %d components", v, n)
			}
		})
	}
}
