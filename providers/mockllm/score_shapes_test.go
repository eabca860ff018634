package mockllm

import (
	"math"
	"testing"
)

// /score takes each of the four pairs of members vLLM's ScoreRequest union has, each
// scored as text_1 and text_2 are; a body with two whole pairs is read as the union's
// first.
func TestScoreShapes(t *testing.T) {
	h := start(t, Options{})
	paris, china := `"The capital of France is Paris."`, `"The capital of China is Beijing."`
	want := []float64{rerankWant[1].score, rerankWant[0].score}
	for _, tc := range []struct{ name, body string }{
		{"queries and documents", `{"queries":"capital of France","documents":[` + china + `,` + paris + `]}`},
		{"queries and items", `{"queries":["capital of France"],"items":[` + china + `,` + paris + `]}`},
		{"data_1 and data_2", `{"data_1":"capital of France","data_2":[` + china + `,` + paris + `]}`},
		{"text_1 and text_2", `{"text_1":"capital of France","text_2":[` + china + `,` + paris + `]}`},
		{"queries/documents before text_1/text_2", `{"text_1":"horses","text_2":["horses"],"documents":[` + china + `,` + paris + `],"queries":"capital of France"}`},
		{"queries/items before data_1/data_2", `{"data_1":"horses","data_2":"horses","items":[` + china + `,` + paris + `],"queries":"capital of France"}`},
		{"a pair whose side is no side is passed over", `{"queries":1,"documents":["horses"],"text_1":"capital of France","text_2":[` + china + `,` + paris + `]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/score", "/v1/score"} {
				resp, b := h.must("POST", path, tc.body)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: status %d: %s", path, resp.StatusCode, b)
				}
				r := decode[scoreResp](t, b)
				if len(r.Data) != len(want) {
					t.Fatalf("%s: %d scores: %s", path, len(r.Data), b)
				}
				for i, d := range r.Data {
					if d.Index != i || math.Abs(d.Score-want[i]) > 1e-12 {
						t.Errorf("%s: data %d: %+v, want score %v", path, i, d, want[i])
					}
				}
				if u := r.Usage; u.PromptTokens != 2*5+8+8 || u.TotalTokens != u.PromptTokens {
					t.Errorf("%s: usage %+v, want %d prompt tokens", path, u, 2*5+8+8)
				}
			}
		})
	}
	t.Run("N:N", func(t *testing.T) {
		_, b := h.must("POST", "/score", `{"queries":["capital of France","horses"],"items":[`+paris+`,"Horses run"]}`)
		r := decode[scoreResp](t, b)
		if len(r.Data) != 2 || math.Abs(r.Data[0].Score-rerankWant[0].score) > 1e-12 || math.Abs(r.Data[1].Score-logistic(1+0.5/2)) > 1e-12 {
			t.Errorf("N:N scores %s", b)
		}
	})
}

// A body without a whole pair is refused with one of the errors vLLM's validation
// lists (one per member of each model of its union): the first problem of the first
// pair the body names a member of, or queries (the first member of the union's first
// model) when it names none.
func TestScoreShapeRefusals(t *testing.T) {
	h := start(t, Options{})
	for _, tc := range []struct{ name, body, msg string }{
		{"no side at all", `{"model":"mock-1"}`, "queries: Field required"},
		{"queries alone", `{"queries":"a"}`, "documents: Field required"},
		{"documents alone", `{"documents":["a"]}`, "queries: Field required"},
		{"items alone", `{"items":["a"]}`, "queries: Field required"},
		{"data_1 alone", `{"data_1":"a"}`, "data_2: Field required"},
		{"data_2 alone", `{"data_2":"a"}`, "data_1: Field required"},
		{"queries of numbers", `{"queries":[1],"documents":["a"]}`, "queries: Input should be a valid string or list of strings"},
		{"items not a side", `{"queries":"a","items":3}`, "documents: Field required"},
		{"items not a side, documents given", `{"queries":"a","documents":3,"items":3}`, "documents: Input should be a valid string or list of strings"},
		{"data_2 null", `{"data_1":"a","data_2":null}`, "data_2: Input should be a valid string or list of strings"},
		{"a multimodal side", `{"queries":{"content":[{"type":"text","text":"a"}]},"documents":["a"]}`, "queries: Input should be a valid string or list of strings"},
		{"pairs crossed", `{"queries":"a","data_2":"b"}`, "documents: Field required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/score", tc.body)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if e := decode[errResp](t, b); e.Error.Type != "Bad Request" || e.Error.Message != tc.msg {
				t.Errorf("error %s, want %q", b, tc.msg)
			}
		})
	}
	// The counts are checked while serving, in vLLM's words, whatever the members.
	for _, body := range []string{`{"queries":["a","b"],"documents":["a","b","c"]}`, `{"data_1":["a","b"],"data_2":"a"}`} {
		resp, b := h.must("POST", "/v1/score", body)
		if e := decode[errResp](t, b); resp.StatusCode != 400 || e.Error.Type != "BadRequestError" || e.Error.Message != "Input lengths must be either 1:1, 1:N or N:N" {
			t.Errorf("%s: %d %s", body, resp.StatusCode, b)
		}
	}
}
