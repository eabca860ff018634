package mockllm

import (
	"strings"
	"testing"
	"time"
)

// chatStream reads a chat stream and checks its grammar: a role delta first, content
// deltas, the last of which carries finish_reason (as in vLLM: no empty-delta finish
// chunk), the usage chunk when asked for, then [DONE]. It returns the assembled
// content, the finish reason and the usage.
func chatStream(t *testing.T, h *harness, body string, includeUsage bool) (string, string, *usage) {
	t.Helper()
	resp, b := h.must("POST", "/v1/chat/completions", body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("status %d type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	evs := parseSSE(t, b)
	if len(evs) < 3 || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("stream does not end in [DONE]: %s", b)
	}
	evs = evs[:len(evs)-1]
	var u *usage
	if includeUsage {
		last := decode[chatResp](t, []byte(evs[len(evs)-1].data))
		if len(last.Choices) != 0 || last.Usage == nil {
			t.Fatalf("usage chunk %s", evs[len(evs)-1].data)
		}
		u = last.Usage
		evs = evs[:len(evs)-1]
	}
	var content strings.Builder
	finish := ""
	var id string
	for i, ev := range evs {
		c := decode[chatResp](t, []byte(ev.data))
		if c.Object != "chat.completion.chunk" || c.Model != "mock-1" || len(c.Choices) != 1 || c.Usage != nil {
			t.Fatalf("event %d: %s", i, ev.data)
		}
		if id == "" {
			id = c.ID
		} else if c.ID != id {
			t.Errorf("event %d id %q, want %q", i, c.ID, id)
		}
		d := c.Choices[0].Delta
		switch {
		case i == 0:
			if d == nil || d.Role == nil || *d.Role != "assistant" || d.Content == nil || *d.Content != "" {
				t.Fatalf("first chunk is not the role delta: %s", ev.data)
			}
		case i == len(evs)-1:
			if d == nil || d.Role != nil || d.Content == nil || *d.Content == "" || c.Choices[0].FinishReason == nil {
				t.Fatalf("last chunk: %s", ev.data)
			}
			finish = *c.Choices[0].FinishReason
			content.WriteString(*d.Content)
		default:
			if d == nil || d.Content == nil || c.Choices[0].FinishReason != nil {
				t.Fatalf("content chunk %d: %s", i, ev.data)
			}
			content.WriteString(*d.Content)
		}
	}
	return content.String(), finish, u
}

func TestChatStream(t *testing.T) {
	h := start(t, Options{MaxTokens: 12})
	cases := []struct {
		name         string
		extra        string
		includeUsage bool
	}{
		{"without usage", `"stream":true`, false},
		{"include_usage false", `"stream":true,"stream_options":{"include_usage":false}`, false},
		{"include_usage true", `"stream":true,"stream_options":{"include_usage":true}`, true},
		{"stream_options defaults to usage as in vLLM", `"stream":true,"stream_options":{}`, true},
		{"max_tokens", `"stream":true,"max_tokens":3,"stream_options":{"include_usage":true}`, true},
		// vLLM reads include_usage with bool(): an explicit null is false.
		{"include_usage null sends no usage", `"stream":true,"stream_options":{"include_usage":null}`, false},
		{"continuous_usage_stats without include_usage", `"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			content, finish, u := chatStream(t, h, chatBody("stream me", tc.extra), tc.includeUsage)
			n := len(strings.Fields(content))
			if u != nil && (u.CompletionTokens != n || u.TotalTokens != u.PromptTokens+n || u.PromptTokens != 3) {
				t.Errorf("usage %+v for %d tokens", u, n)
			}
			if finish != "stop" && finish != "length" {
				t.Errorf("finish %q", finish)
			}
		})
	}
}

// TestDeterminism: the text depends on the seeds and the prompt only, so a streamed
// answer assembled equals the plain one, and max_tokens only truncates.
func TestDeterminism(t *testing.T) {
	h := start(t, Options{Seed: 42, MaxTokens: 24})
	plain := func(body string) (string, string) {
		_, b := h.must("POST", "/v1/chat/completions", body)
		r := decode[chatResp](t, b)
		return r.Choices[0].Message.Content, *r.Choices[0].FinishReason
	}
	for _, prompt := range []string{"a", "tell me a story", strings.Repeat("long prompt ", 50), "ünïcödé \"quoted\""} {
		t.Run(prompt[:1], func(t *testing.T) {
			want, wantFinish := plain(chatBody(prompt, ""))
			got, finish, _ := chatStream(t, h, chatBody(prompt, `"stream":true`), false)
			if got != want || finish != wantFinish {
				t.Errorf("stream %q (%s), plain %q (%s)", got, finish, want, wantFinish)
			}
			again, _ := plain(chatBody(prompt, `"temperature":0.7,"user":"u1"`))
			if again != want {
				t.Errorf("other fields changed the text: %q vs %q", again, want)
			}
			cut, cutFinish := plain(chatBody(prompt, `"max_tokens":2`))
			if !strings.HasPrefix(want, cut) || cutFinish != "length" {
				t.Errorf("max_tokens 2 gave %q (%s), not a prefix of %q", cut, cutFinish, want)
			}
			seeded, _ := plain(chatBody(prompt, `"seed":9`))
			if seeded == want {
				t.Errorf("the request seed did not change the text")
			}
			seededStream, _, _ := chatStream(t, h, chatBody(prompt, `"seed":9,"stream":true`), false)
			if seededStream != seeded {
				t.Errorf("seeded stream %q, plain %q", seededStream, seeded)
			}
		})
	}
	t.Run("server seed", func(t *testing.T) {
		other := start(t, Options{Seed: 43, MaxTokens: 24})
		_, b := other.must("POST", "/v1/chat/completions", chatBody("a", ""))
		if a, _ := plain(chatBody("a", "")); decode[chatResp](t, b).Choices[0].Message.Content == a {
			t.Error("another --seed gave the same text")
		}
	})
}

func TestCompletionsStream(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	body := `{"model":"mock-1","prompt":["p one","p two"],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`
	_, b := h.must("POST", "/v1/completions", body)
	evs := parseSSE(t, b)
	if evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("no [DONE]: %s", b)
	}
	texts := make([]string, 2)
	finishes := 0
	var u *usage
	for _, ev := range evs[:len(evs)-1] {
		c := decode[chatResp](t, []byte(ev.data))
		if c.Object != "text_completion" {
			t.Fatalf("object %q", c.Object)
		}
		if len(c.Choices) == 0 {
			u = c.Usage
			continue
		}
		// vLLM writes every field of a completions chunk, usage null included.
		if !strings.Contains(ev.data, `"usage":null`) {
			t.Errorf("chunk without \"usage\":null: %s", ev.data)
		}
		ch := c.Choices[0]
		if ch.FinishReason != nil {
			finishes++
			if *ch.Text == "" {
				t.Errorf("finish on a chunk without the last token: %s", ev.data)
			}
		}
		texts[ch.Index] += *ch.Text
	}
	_, pb := h.must("POST", "/v1/completions", `{"model":"mock-1","prompt":["p one","p two"],"max_tokens":5}`)
	plain := decode[chatResp](t, pb)
	for i := range texts {
		if texts[i] != *plain.Choices[i].Text {
			t.Errorf("choice %d: stream %q, plain %q", i, texts[i], *plain.Choices[i].Text)
		}
	}
	if finishes != 2 || u == nil || u.CompletionTokens != 10 {
		t.Errorf("finishes %d usage %+v", finishes, u)
	}
}

// TestLatencySchedule checks when the server waits, with a recording Sleep: TTFT
// before the first token, TPOT between tokens, the sum for a plain answer.
func TestLatencySchedule(t *testing.T) {
	var log sleepLog
	h := start(t, Options{TTFT: 50 * time.Millisecond, TPOT: 5 * time.Millisecond, Sleep: log.sleep})
	cases := []struct {
		name string
		body string
		hdr  []string
		want []time.Duration
	}{
		{"plain answer waits ttft plus tpot per later token", chatBody("x", `"max_tokens":4`), nil,
			[]time.Duration{65 * time.Millisecond}},
		{"stream waits ttft then tpot between tokens", chatBody("x", `"max_tokens":3,"stream":true`), nil,
			[]time.Duration{50 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}},
		{"headers override both", chatBody("x", `"max_tokens":2,"stream":true`), []string{"x-mock-ttft", "1s", "x-mock-tpot", "7"},
			[]time.Duration{time.Second, 7 * time.Millisecond}},
		{"x-mock-delay comes first", chatBody("x", `"max_tokens":1`), []string{"x-mock-delay", "200ms"},
			[]time.Duration{200 * time.Millisecond, 50 * time.Millisecond}},
		{"embeddings wait ttft", `{"input":"x"}`, nil, []time.Duration{50 * time.Millisecond}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v1/chat/completions"
			if strings.HasPrefix(tc.body, `{"input"`) {
				path = "/v1/embeddings"
			}
			resp, b := h.must("POST", path, tc.body, tc.hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			got := log.take()
			if len(got) != len(tc.want) {
				t.Fatalf("slept %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("slept %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestContinuousUsageStats: with stream_options.continuous_usage_stats (vLLM's
// extension) every chunk carries usage, the role chunk included, counting the
// tokens sent so far; the usage chunk still ends the stream.
func TestContinuousUsageStats(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	cases := []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", chatBody("q", `"stream":true,"max_tokens":3,"stream_options":{"include_usage":true,"continuous_usage_stats":true}`)},
		{"include_usage defaults to true", "/v1/chat/completions", chatBody("q", `"stream":true,"max_tokens":3,"stream_options":{"continuous_usage_stats":true}`)},
		{"completions", "/v1/completions", `{"prompt":"q","stream":true,"max_tokens":3,"stream_options":{"continuous_usage_stats":true}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, b := h.must("POST", tc.path, tc.body)
			evs := parseSSE(t, b)
			sent, last := 0, -1
			for _, ev := range evs[:len(evs)-1] {
				c := decode[chatResp](t, []byte(ev.data))
				if c.Usage == nil {
					t.Fatalf("chunk without usage: %s", ev.data)
				}
				for _, ch := range c.Choices {
					if ch.Delta != nil && ch.Delta.Content != nil && *ch.Delta.Content != "" || ch.Text != nil && *ch.Text != "" {
						sent++
					}
				}
				if c.Usage.CompletionTokens != sent || c.Usage.CompletionTokens < last || c.Usage.TotalTokens != c.Usage.PromptTokens+sent {
					t.Errorf("usage %+v after %d tokens: %s", c.Usage, sent, ev.data)
				}
				last = c.Usage.CompletionTokens
			}
			if sent != 3 {
				t.Errorf("%d tokens", sent)
			}
		})
	}
}

// TestContinuousUsagePerChoice: vLLM's continuous_usage_stats
// (serving_chat.py chat_completion_stream_generator: "completion_tokens =
// previous_num_tokens[i]") puts on each chunk the usage of that chunk's choice; the
// legacy completions do the same, with the prompt tokens of the choice's own prompt.
// A gateway that settles a stream by the last continuous usage it saw under-counts
// n > 1 streams, against vLLM and so against mockllm.
func TestContinuousUsagePerChoice(t *testing.T) {
	h := start(t, Options{MaxTokens: 6})
	opts := `"stream":true,"n":2,"max_tokens":3,"stream_options":{"include_usage":true,"continuous_usage_stats":true}`
	cases := []struct {
		name, path, body string
		prompt           []int // prompt tokens of choice i's prompt
	}{
		{"chat", "/v1/chat/completions", chatBody("hi", opts), []int{1, 1}},
		{"completions, two prompts", "/v1/completions", `{"prompt":["hi","a longer prompt"],` + opts + `}`, []int{1, 1, 4, 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			seen := map[int]int{} // content chunks per choice so far
			total := 0
			evs := parseSSE(t, b)
			for _, ev := range evs[:len(evs)-2] { // the usage chunk and [DONE] end it
				c := decode[chatResp](t, []byte(ev.data))
				if len(c.Choices) != 1 || c.Usage == nil {
					t.Fatalf("chunk without one choice and usage: %s", ev.data)
				}
				ch := c.Choices[0]
				if ch.Delta != nil && ch.Delta.Content != nil && *ch.Delta.Content != "" || ch.Text != nil && *ch.Text != "" {
					seen[ch.Index]++
					total++
				}
				u := c.Usage
				if u.CompletionTokens != seen[ch.Index] || u.PromptTokens != tc.prompt[ch.Index] || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
					t.Errorf("chunk of choice %d after %d of its tokens: usage %+v; want completion_tokens %d, prompt_tokens %d\n%s",
						ch.Index, seen[ch.Index], u, seen[ch.Index], tc.prompt[ch.Index], ev.data)
				}
			}
			last := decode[chatResp](t, []byte(evs[len(evs)-2].data))
			if last.Usage == nil || last.Usage.CompletionTokens != total || len(seen) != len(tc.prompt) {
				t.Errorf("final usage %s; want %d completion tokens over %d choices", evs[len(evs)-2].data, total, len(tc.prompt))
			}
		})
	}
}
