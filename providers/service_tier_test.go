package providers

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestServiceTierFromAnswer: an answer's top-level service_tier is read with its
// usage, wherever it stands in the object; anything but a name is no tier, and a
// usage that cannot be believed leaves the tier as it was read.
func TestServiceTierFromAnswer(t *testing.T) {
	const usage = `"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}`
	cases := []struct {
		name, body, want string
		wantUsage        Usage
	}{
		{"OpenAI's order, after usage", `{"id":"c","object":"chat.completion","choices":[],` + usage + `,"service_tier":"flex","system_fingerprint":null}`, "flex", Usage{Input: 20, Output: 9}},
		{"before usage", `{"service_tier":"priority",` + usage + `}`, "priority", Usage{Input: 20, Output: 9}},
		{"default", `{` + usage + `,"service_tier":"default"}`, "default", Usage{Input: 20, Output: 9}},
		{"space around it", `{ "service_tier" : "scale" , ` + usage + ` }`, "scale", Usage{Input: 20, Output: 9}},
		{"escaped", `{` + usage + `,"service_tier":"\u0066lex"}`, "flex", Usage{Input: 20, Output: 9}},
		{"the last of two", `{"service_tier":"default",` + usage + `,"service_tier":"flex"}`, "flex", Usage{Input: 20, Output: 9}},
		{"none", `{` + usage + `}`, "", Usage{Input: 20, Output: 9}},
		{"null", `{` + usage + `,"service_tier":null}`, "", Usage{Input: 20, Output: 9}},
		{"empty", `{` + usage + `,"service_tier":""}`, "", Usage{Input: 20, Output: 9}},
		{"a number", `{` + usage + `,"service_tier":1}`, "", Usage{Input: 20, Output: 9}},
		{"an object", `{` + usage + `,"service_tier":{"name":"flex"}}`, "", Usage{Input: 20, Output: 9}},
		{"too long", `{` + usage + `,"service_tier":"` + strings.Repeat("f", MaxServiceTierBytes+1) + `"}`, "", Usage{Input: 20, Output: 9}},
		{"as long as it may be", `{` + usage + `,"service_tier":"` + strings.Repeat("f", MaxServiceTierBytes) + `"}`, strings.Repeat("f", MaxServiceTierBytes), Usage{Input: 20, Output: 9}},
		{"escaped whole, long when written", `{"service_tier":"` + strings.Repeat(`\u0070`, MaxServiceTierBytes) + `"}`, strings.Repeat("p", MaxServiceTierBytes), Usage{}},
		{"without usage", `{"choices":[],"service_tier":"flex"}`, "flex", Usage{}},
		{"with a usage that cannot be believed", `{"service_tier":"flex","usage":{"prompt_tokens":-20,"completion_tokens":9}}`, "flex", Usage{}},
		{"in the usage object, where only Anthropic puts it", `{"usage":{"prompt_tokens":20,"completion_tokens":9,"service_tier":"flex"}}`, "", Usage{Input: 20, Output: 9}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var u Usage
			ok, _ := scanAnswer([]byte(c.body), &u)
			if got := u.Tier.String(); got != c.want {
				t.Errorf("tier %q, want %q", got, c.want)
			}
			if !ok {
				t.Fatal("answer refused")
			}
			counts := u
			counts.Tier = ServiceTier{}
			if counts != c.wantUsage {
				t.Errorf("usage %+v, want %+v", counts, c.wantUsage)
			}
			if u.Counted() != c.wantUsage.Counted() {
				t.Errorf("Counted() = %v with the tier %q", u.Counted(), c.want)
			}
		})
	}
}

// TestServiceTierFromChunks: every chunk of an OpenAI stream names its tier, the
// usage chunk too; the reader gives it with each event, whether or not the event
// carries usage.
func TestServiceTierFromChunks(t *testing.T) {
	stream := `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"service_tier":"flex"}` + "\n\n" +
		`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}],"service_tier":"flex"}` + "\n\n" +
		`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{}}]}` + "\n\n" +
		`data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":1,"total_tokens":21},"service_tier":"priority"}` + "\n\n" +
		`data: {"id":"c","object":"chat.completion.chunk","choices":[],"service_tier":"flex","usage":{"prompt_tokens":-1}}` + "\n\n" +
		"data: [DONE]\n\n"
	want := []struct {
		tier     string
		hasUsage bool
		usage    Usage
	}{
		{"flex", false, Usage{}},
		{"flex", false, Usage{}},
		{"", false, Usage{}},
		{"priority", true, Usage{Input: 20, Output: 1}},
		{"flex", true, Usage{}}, // a usage that cannot be believed is none
	}
	s := &sseReader{br: bufio.NewReaderSize(strings.NewReader(stream), 4096), max: maxEventBytes}
	var ev Event
	for i, w := range want {
		if err := s.Next(&ev); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		counts := ev.Usage
		counts.Tier = ServiceTier{}
		if got := ev.Usage.Tier.String(); got != w.tier || ev.HasUsage != w.hasUsage || counts != w.usage {
			t.Errorf("event %d: tier %q, usage %v %+v; want %q, %v %+v", i, got, ev.HasUsage, counts, w.tier, w.hasUsage, w.usage)
		}
	}
	if err := s.Next(&ev); err != nil || !ev.Done {
		t.Fatalf("after the chunks: %v, done %v", err, ev.Done)
	}
	if err := s.Next(&ev); !errors.Is(err, io.EOF) {
		t.Fatalf("after [DONE]: %v", err)
	}
}

// TestServiceTierThroughCompletions: a chat stream read as a completions stream keeps
// the tier of each chunk.
func TestServiceTierThroughCompletions(t *testing.T) {
	stream := `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"service_tier":"flex"}` + "\n\n"
	r := &sseReader{br: bufio.NewReaderSize(strings.NewReader(stream), 4096), max: maxEventBytes}
	s := &textStream{r: r, out: make([]byte, 0, 512)}
	var ev Event
	if err := s.Next(&ev); err != nil {
		t.Fatal(err)
	}
	if got := ev.Usage.Tier.String(); got != "flex" || !strings.Contains(string(ev.Data), `"text_completion"`) {
		t.Errorf("tier %q of %s, want flex", got, ev.Data)
	}
}

// serviceTierAnswer is benchChat's answer as OpenAI gives it in the flex tier.
var serviceTierAnswer = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-5","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon a time there was a gateway.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}},"service_tier":"flex","system_fingerprint":null}`)

// BenchmarkScanAnswerServiceTier reads an answer's usage and tier, as every buffered
// answer is read.
func BenchmarkScanAnswerServiceTier(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(serviceTierAnswer)))
	for b.Loop() {
		var u Usage
		if ok, _ := scanAnswer(serviceTierAnswer, &u); !ok || u.Tier.n == 0 {
			b.Fatal("no tier")
		}
	}
}
