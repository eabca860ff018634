package providers

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// contChunk is a chat chunk with usage, as vLLM writes every chunk of a stream that
// asked for continuous_usage_stats: the prompt's tokens, the completion's so far, no
// prompt_tokens_details (vLLM puts those on the usage chunk alone).
func contChunk(d, finish string, prompt, completion int) string {
	return withUsage(delta(d, finish), `{"prompt_tokens":`+strconv.Itoa(prompt)+`,"total_tokens":`+strconv.Itoa(prompt+completion)+
		`,"completion_tokens":`+strconv.Itoa(completion)+`}`)
}

// withUsage is chunk with the usage object u as its last member.
func withUsage(chunk, u string) string { return chunk[:len(chunk)-1] + `,"usage":` + u + `}` }

// contUsageChunk is the usage chunk after them: the final usage, its cached tokens
// (vLLM's prompt_tokens_details) included.
func contUsageChunk(prompt, completion, cached int) string {
	return chunkHead + `],"usage":{"prompt_tokens":` + strconv.Itoa(prompt) + `,"total_tokens":` + strconv.Itoa(prompt+completion) +
		`,"completion_tokens":` + strconv.Itoa(completion) + `,"prompt_tokens_details":{"cached_tokens":` + strconv.Itoa(cached) + `}}}`
}

// vllmContinuous is a vLLM stream that asked for continuous_usage_stats: 7 prompt
// tokens (2 read from the prefix cache, which only the usage chunk says), 3 generated,
// the last on the finish_reason chunk.
var vllmContinuous = []string{
	contChunk(`{"role":"assistant","content":""}`, "", 7, 0),
	contChunk(`{"content":"Hel"}`, "", 7, 1),
	contChunk(`{"content":"lo"}`, "", 7, 2),
	contChunk(`{"content":"!"}`, "stop", 7, 3),
	contUsageChunk(7, 3, 2),
	"[DONE]",
}

// startUsage is the usage of the stream's message_start (raw), and the usage its
// message_delta event carries for the gateway, which must be the one event that
// carries any.
func startUsage(t *testing.T, evs []Event) (string, Usage) {
	t.Helper()
	if len(evs) == 0 || string(evs[0].Name) != "message_start" {
		t.Fatalf("first event is no message_start: %v", evs)
	}
	msg, _ := jsonscan.Field(evs[0].Data, "message")
	u, ok := jsonscan.Field(msg, "usage")
	if !ok {
		t.Fatalf("message_start without usage: %s", evs[0].Data)
	}
	var final Usage
	n := 0
	for _, ev := range evs {
		if ev.HasUsage {
			n++
			if string(ev.Name) != "message_delta" {
				t.Errorf("usage on %s", ev.Name)
			}
			final = ev.Usage
		}
	}
	if n > 1 {
		t.Errorf("%d events carry usage, want one", n)
	}
	return string(u), final
}

// A bridged stream's message_start carries the usage of the upstream's first chunk,
// where the stream asked for usage on every chunk: the prompt's tokens (less the
// cache's reads where that chunk names them, as message_delta counts them), which
// clients such as LangChain's ChatAnthropic read from it; a first chunk without
// usage (a server that ignored the option) keeps 0. message_delta carries the final
// usage, the usage chunk's, never a sum of the chunks'.
func TestMessagesBridgeStartUsage(t *testing.T) {
	cases := []struct {
		name       string
		continuous bool
		chunks     []string
		start      string
		final      Usage // Input, CachedInput, Output
		delta      string
	}{
		{
			name: "vLLM's role chunk", continuous: true, chunks: vllmContinuous,
			start: `{"input_tokens":7,"cache_read_input_tokens":0,"output_tokens":0}`,
			final: Usage{Input: 7, CachedInput: 2, Output: 3},
			delta: `{"input_tokens":5,"cache_read_input_tokens":2,"output_tokens":3}`,
		},
		{
			name: "first chunk naming cached tokens", continuous: true,
			chunks: []string{
				withUsage(delta(`{"role":"assistant","content":""}`, ""),
					`{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":4}}`),
				contChunk(`{"content":"Hi"}`, "length", 9, 1), contUsageChunk(9, 1, 4), "[DONE]",
			},
			start: `{"input_tokens":5,"cache_read_input_tokens":4,"output_tokens":0}`,
			final: Usage{Input: 9, CachedInput: 4, Output: 1},
			delta: `{"input_tokens":5,"cache_read_input_tokens":4,"output_tokens":1}`,
		},
		{
			name: "Azure's prompt filter chunk first", continuous: true,
			chunks: append([]string{`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}`}, vllmContinuous...),
			start:  `{"input_tokens":7,"cache_read_input_tokens":0,"output_tokens":0}`,
			final:  Usage{Input: 7, CachedInput: 2, Output: 3},
			delta:  `{"input_tokens":5,"cache_read_input_tokens":2,"output_tokens":3}`,
		},
		{
			name: "server that ignored the option", continuous: true,
			chunks: []string{delta(`{"role":"assistant","content":""}`, ""), delta(`{"content":"Hi"}`, "stop"), usageChunk, "[DONE]"},
			start:  `{"input_tokens":0,"output_tokens":0}`,
			final:  Usage{Input: 7, CachedInput: 2, Output: 4},
			delta:  `{"input_tokens":5,"cache_read_input_tokens":2,"output_tokens":4}`,
		},
		{
			// A server that took the option but sends no usage chunk: [DONE] ends the
			// stream, with the last chunk's usage.
			name: "usage on every chunk, no usage chunk", continuous: true,
			chunks: []string{contChunk(`{"role":"assistant","content":""}`, "", 7, 0), contChunk(`{"content":"Hi"}`, "stop", 7, 1), "[DONE]"},
			start:  `{"input_tokens":7,"cache_read_input_tokens":0,"output_tokens":0}`,
			final:  Usage{Input: 7, Output: 1},
			delta:  `{"input_tokens":7,"cache_read_input_tokens":0,"output_tokens":1}`,
		},
		{
			// Not asked for on every chunk, usage on the finish_reason chunk is the
			// last (Gemini's, Mistral's): the stream ends there.
			name:   "usage on the finish_reason chunk alone",
			chunks: []string{delta(`{"role":"assistant","content":""}`, ""), contChunk(`{"content":"Hi"}`, "stop", 6, 1), "!cut"},
			start:  `{"input_tokens":0,"output_tokens":0}`,
			final:  Usage{Input: 6, Output: 1},
			delta:  `{"input_tokens":6,"cache_read_input_tokens":0,"output_tokens":1}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := msgStreamOf(tc.chunks...)
			s.continuous = tc.continuous
			got := readBridged(s)
			_ = s.Close()
			if got.err != nil {
				t.Fatal(got.err)
			}
			m, names := accumulateMsg(t, got.events)
			if !strings.HasPrefix(names, "message_start content_block_start content_block_delta") || !strings.HasSuffix(names, "message_delta message_stop") {
				t.Fatalf("events %s", names)
			}
			start, final := startUsage(t, got.events)
			if start != tc.start {
				t.Errorf("message_start usage %s, want %s", start, tc.start)
			}
			if final.Input != tc.final.Input || final.CachedInput != tc.final.CachedInput || final.Output != tc.final.Output {
				t.Errorf("message_delta carries %+v, want %+v", final, tc.final)
			}
			var md Event
			for _, ev := range got.events {
				if string(ev.Name) == "message_delta" {
					md = ev
				}
			}
			if u, _ := jsonscan.Field(md.Data, "usage"); string(u) != tc.delta {
				t.Errorf("message_delta usage %s, want %s", u, tc.delta)
			}
			if m.Usage.InputTokens != int64(tc.final.Input-tc.final.CachedInput) || m.Usage.OutputTokens != int64(tc.final.Output) {
				t.Errorf("SDK's message usage %+v", m.Usage)
			}
		})
	}
}

// sseOnly is an upstream's SSE body read as the chat stream, without the upstream
// response Close gives back.
type sseOnly struct{ *sseReader }

func (sseOnly) Close() error { return nil }

// The chat stream read from its bytes however they arrive (the body cut at every
// byte, or one byte a read) gives the same message_start and message_delta usage.
func TestMessagesBridgeStartUsageSplit(t *testing.T) {
	var body strings.Builder
	for _, c := range vllmContinuous {
		body.WriteString("data: " + c + "\n\n")
	}
	in := body.String()
	read := func(r io.Reader) (string, Usage, string) {
		s := msgStreamOf()
		s.in = sseOnly{&sseReader{br: bufio.NewReaderSize(r, 16)}}
		s.continuous = true
		got := readBridged(s)
		_ = s.Close()
		if got.err != nil {
			t.Fatal(got.err)
		}
		_, names := accumulateMsg(t, got.events)
		start, final := startUsage(t, got.events)
		return start, final, names
	}
	wantStart, wantFinal, wantNames := read(strings.NewReader(in))
	if wantStart != `{"input_tokens":7,"cache_read_input_tokens":0,"output_tokens":0}` || wantFinal.Input != 7 || wantFinal.CachedInput != 2 || wantFinal.Output != 3 {
		t.Fatalf("whole: message_start usage %s, final %+v", wantStart, wantFinal)
	}
	check := func(how string, r io.Reader) {
		start, final, names := read(r)
		if start != wantStart || final != wantFinal || names != wantNames {
			t.Fatalf("%s: message_start usage %s, final %+v, events %s; want %s, %+v, %s", how, start, final, names, wantStart, wantFinal, wantNames)
		}
	}
	check("one byte a read", iotest.OneByteReader(strings.NewReader(in)))
	for i := 1; i < len(in); i++ {
		check("cut at "+strconv.Itoa(i), io.MultiReader(strings.NewReader(in[:i]), strings.NewReader(in[i:])))
	}
}

// benchMsgsContinuous is a vLLM stream of 32 text deltas with usage on every chunk,
// then the usage chunk.
func benchMsgsContinuous() *chunkEvents {
	data := []string{contChunk(`{"role":"assistant","content":""}`, "", 412, 0)}
	for i := range 32 {
		finish := ""
		if i == 31 {
			finish = "stop"
		}
		data = append(data, contChunk(`{"content":"word "}`, finish, 412, i+1))
	}
	return newChunkEvents(append(data, contUsageChunk(412, 32, 256), "[DONE]")...)
}

func BenchmarkMessagesBridgeStreamContinuous(b *testing.B) {
	b.ReportAllocs()
	in := benchMsgsContinuous()
	for b.Loop() {
		runMsgStream(b, in, true)
	}
}
