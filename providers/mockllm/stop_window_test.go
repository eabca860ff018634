package mockllm

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestMinTokensHoldsOffStopStrings: since vLLM PR #22014 (v0.10.2; test
// tests/detokenizer/test_min_tokens.py) a stop string is not matched in the first
// min_tokens tokens, as min_tokens holds off EOS: an answer has at least min_tokens
// tokens whatever its stop strings.
func TestMinTokensHoldsOffStopStrings(t *testing.T) {
	h := start(t, Options{MaxTokens: 64})
	_, b := h.must("POST", "/v1/chat/completions", chatBody("hello there", `"max_tokens":40`))
	words := strings.Fields(decode[chatResp](t, b).Choices[0].Message.Content)
	if len(words) < 20 {
		t.Fatalf("answer too short to probe: %q", words)
	}
	stop, _ := json.Marshal(" " + words[1])
	resp, b := h.must("POST", "/v1/chat/completions", chatBody("hello there", `"max_tokens":40,"min_tokens":12,"stop":[`+string(stop)+`]`))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	r := decode[chatResp](t, b)
	if r.Usage == nil || r.Usage.CompletionTokens < 12 {
		t.Errorf("min_tokens 12 with stop %s found at token 1: usage %+v, content %q; want at least 12 tokens",
			stop, r.Usage, r.Choices[0].Message.Content)
	}
}

// TestStopWindow: applyStops searches the text after the first minTokens tokens, and
// lets a match begin up to len(stop)-1 bytes before it, as vLLM's detokenizer does
// (check_stop_strings looks back that far from the new text); the answer ends before
// the match, or after it with include_stop_str_in_output, with the tokens the text
// it keeps begins.
func TestStopWindow(t *testing.T) {
	// ignore_eos: no full stop, so the text is the same however long the answer.
	base := newPlan(0x5eed, 64, 40, 0, 0, true)
	text := base.appendText(nil)
	const minTokens = 6
	held := 0
	for i := range minTokens {
		held += base.tokenLen(i)
	}
	cases := []struct {
		name     string
		stop     []byte
		min      int
		include  bool
		wantText []byte // nil: not matched
	}{
		{"a match at the start ends the answer at once", text[:5], 0, false, text[:0]},
		{"a match inside the held text is skipped", text[held-4 : held], minTokens, false, nil},
		{"a match straddling the held text's end counts", text[held-2 : held+3], minTokens, false, text[:held-2]},
		{"include keeps the stop string", text[held+1 : held+4], minTokens, true, text[:held+4]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Count(text, tc.stop) != 1 {
				t.Fatalf("stop %q is not unique in %q", tc.stop, text)
			}
			p := base
			p.applyStops([][]byte{tc.stop}, nil, tc.min, tc.include)
			got := p.appendText(nil)
			if tc.wantText == nil {
				if p.stopSeq != -1 || p.stop || !bytes.Equal(got, text) {
					t.Errorf("stop %q: text %q, stopSeq %d; want it unmatched", tc.stop, got, p.stopSeq)
				}
				return
			}
			wantN := 0
			for off := 0; off < len(tc.wantText); wantN++ {
				off += base.tokenLen(wantN)
			}
			if !bytes.Equal(got, tc.wantText) || p.n != wantN || p.stopSeq != 0 || !p.stop {
				t.Errorf("stop %q: text %q, %d tokens, stopSeq %d; want %q, %d tokens",
					tc.stop, got, p.n, p.stopSeq, tc.wantText, wantN)
			}
		})
	}
}

// TestIncludeStopStrInOutput: vLLM's include_stop_str_in_output keeps the matched stop
// string at the end of the text; finish_reason and stop_reason are as without it.
func TestIncludeStopStrInOutput(t *testing.T) {
	h := start(t, Options{MaxTokens: 64})
	_, b := h.must("POST", "/v1/chat/completions", chatBody("stops", ""))
	full := decode[chatResp](t, b).Choices[0].Message.Content
	stop := strings.Fields(full)[3]
	want := full[:strings.Index(full, stop)+len(stop)]
	for _, stream := range []bool{false, true} {
		extra := `"stop":["zzz",` + quote(stop) + `],"include_stop_str_in_output":true`
		if !stream {
			_, b = h.must("POST", "/v1/chat/completions", chatBody("stops", extra))
			r := decode[chatResp](t, b)
			c := r.Choices[0]
			if c.Message.Content != want || *c.FinishReason != "stop" || c.StopReason == nil || *c.StopReason != stop {
				t.Errorf("content %q finish %v stop_reason %v; want %q, \"stop\", %q", c.Message.Content, *c.FinishReason, c.StopReason, want, stop)
			}
			if n := r.Usage.CompletionTokens; n != 4 {
				t.Errorf("completion_tokens %d, want the 4 tokens through the stop string", n)
			}
			continue
		}
		content, finish, _ := chatStream(t, h, chatBody("stops", extra+`,"stream":true`), false)
		if content != want || finish != "stop" {
			t.Errorf("stream: content %q finish %q; want %q, \"stop\"", content, finish, want)
		}
	}
}
