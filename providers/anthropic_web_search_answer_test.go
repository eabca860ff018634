package providers

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
)

// wsAnnotation is a url_citation annotation as a client reads it.
type wsAnnotation struct {
	Type        string `json:"type"`
	URLCitation struct {
		StartIndex int    `json:"start_index"`
		EndIndex   int    `json:"end_index"`
		URL        string `json:"url"`
		Title      string `json:"title"`
	} `json:"url_citation"`
}

// runeSpan is content[start:end] in code points, Python's str slicing.
func runeSpan(t *testing.T, content string, start, end int) string {
	t.Helper()
	r := []rune(content)
	if start < 0 || start > end || end > len(r) {
		t.Fatalf("span [%d:%d] outside %d code points of %q", start, end, len(r), content)
	}
	return string(r[start:end])
}

// wantAnnotations is what the annotations of an Anthropic answer's blocks must be,
// worked out on the decoded text: for each web search citation of a text block, the
// block's span of the joined text in code points.
func wantAnnotations(t *testing.T, body []byte) (content string, want []wsAnnotation) {
	t.Helper()
	var m struct {
		Content []struct {
			Type      string
			Text      string
			Citations []struct{ Type, URL, Title string }
		}
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, b := range m.Content {
		if b.Type != "text" {
			continue
		}
		start := utf8.RuneCountInString(content)
		content += b.Text
		for _, c := range b.Citations {
			if c.Type != "web_search_result_location" {
				continue
			}
			var a wsAnnotation
			a.Type = "url_citation"
			a.URLCitation.StartIndex, a.URLCitation.EndIndex = start, utf8.RuneCountInString(content)
			a.URLCitation.URL, a.URLCitation.Title = c.URL, c.Title
			want = append(want, a)
		}
	}
	return content, want
}

// TestAnthropicWebSearchAnswer: an answer with web search is the text blocks joined as
// content, with a url_citation annotation for each web search citation, its indexes
// the span of the cited block in content, counted in code points as Python (OpenAI's
// servers) counts (multi-byte and astral characters, JSON escapes and surrogate pairs
// around and inside the spans); a document citation, or one in no text block, gives
// none. The server tool blocks are neither content nor tool_calls, a search that
// failed (web_search_tool_result's error) fails nothing, and the searches, counted in
// usage.server_tool_use, are not tokens.
func TestAnthropicWebSearchAnswer(t *testing.T) {
	body, err := os.ReadFile("testdata/anthropic/response_web_search.json")
	if err != nil {
		t.Fatal(err)
	}
	var u Usage
	out, ok := appendChatCompletion(nil, body, 1, &u, nil)
	if !ok {
		t.Fatal("answer refused")
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(out, &cc); err != nil {
		t.Fatal(err)
	}
	msg := cc.Choices[0].Message
	content, want := wantAnnotations(t, body)
	if msg.Content != content || len(msg.ToolCalls) != 0 || cc.Choices[0].FinishReason != "stop" {
		t.Errorf("message %+v", msg)
	}
	var got []wsAnnotation
	if err := json.Unmarshal([]byte(msg.JSON.Annotations.Raw()), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("annotations %+v, want %+v", got, want)
	}
	if len(want) != 3 || runeSpan(t, content, want[0].URLCitation.StartIndex, want[0].URLCitation.EndIndex) != "Zürich airport closed ☃ for 🌍 snow été 🚀" {
		t.Fatalf("test data changed: %+v", want)
	}
	// The SDK reads them too.
	if a := msg.Annotations; len(a) != 3 || a[0].URLCitation.StartIndex != 43 || a[0].URLCitation.EndIndex != 83 || a[1].URLCitation.Title != "" {
		t.Errorf("SDK reads %+v", a)
	}
	// The search it ran, and Anthropic's standard tier in OpenAI's words.
	if u != withTier(Usage{Input: 6139, Output: 931, CachedInput: 100, WebSearches: 1}, "default") || cc.Usage.TotalTokens != 7070 || cc.ServiceTier != "default" {
		t.Errorf("usage %+v, %+v", u, cc.Usage)
	}
}

// TestAnthropicWebSearchNoAnnotations: an answer without web search citations has no
// annotations member, as before.
func TestAnthropicWebSearchNoAnnotations(t *testing.T) {
	for _, body := range []string{
		`{"id":"m","model":"c","content":[{"type":"text","text":"Plain."}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`,
		`{"id":"m","model":"c","content":[{"type":"text","text":"Plain.","citations":[]}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`,
		`{"id":"m","model":"c","content":[{"type":"text","text":"Plain.","citations":null}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`,
	} {
		var u Usage
		out, ok := appendChatCompletion(nil, []byte(body), 1, &u, nil)
		if !ok || strings.Contains(string(out), "annotations") {
			t.Errorf("%s -> %s", body, out)
		}
	}
}

// TestAnthropicPauseTurn: an answer Anthropic paused in a long server tool turn
// (stop_reason pause_turn) finishes "stop", as LiteLLM maps it, with the text so far:
// none here, so content null.
func TestAnthropicPauseTurn(t *testing.T) {
	body, err := os.ReadFile("testdata/anthropic/response_web_search_pause_turn.json")
	if err != nil {
		t.Fatal(err)
	}
	var u Usage
	out, ok := appendChatCompletion(nil, body, 1, &u, nil)
	var cc openai.ChatCompletion
	if !ok || json.Unmarshal(out, &cc) != nil {
		t.Fatalf("translated %s", out)
	}
	if c := cc.Choices[0]; c.FinishReason != "stop" || c.Message.JSON.Content.Raw() != "null" || len(c.Message.ToolCalls) != 0 {
		t.Errorf("choice %s", c.RawJSON())
	}
	// Two searches ran before the pause: billed all the same; the answer is marked
	// paused, a partial one no cache keeps.
	if u != (Usage{Input: 2000, Output: 120, WebSearches: 2, Paused: true}) {
		t.Errorf("usage %+v", u)
	}
}

// TestStringRunes: the code points counted in a raw JSON string are those of the
// string encoding/json decodes, escapes, surrogate pairs, lone surrogates and bytes
// that are not UTF-8 (U+FFFD each) included.
func TestStringRunes(t *testing.T) {
	for _, raw := range []string{
		`""`, `"abc"`, `"é"`, `"\u00e9"`, `"🚀"`, `"\ud83d\ude80"`, `"\uD83D\uDE80x"`, `"\n\t\"\\\/"`,
		`"\ud83d"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"\ude80\ud83d"`, `"\ud83d\ud83d\ude80"`, "\"\xff\xfe\"", "\"a\xe2\x82\"",
		`"Zürich ☃ 🌍 été"`,
	} {
		var s string
		if err := json.Unmarshal([]byte(raw), &s); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got, want := stringRunes([]byte(raw)), utf8.RuneCountInString(s); got != int64(want) {
			t.Errorf("%s: %d code points, want %d", raw, got, want)
		}
	}
}

// wsChunk is what a client reads of a chunk's delta.
type wsChunk struct {
	Choices []struct {
		Delta struct {
			Content     *string        `json:"content"`
			Annotations []wsAnnotation `json:"annotations"`
			ToolCalls   []any          `json:"tool_calls"`
		} `json:"delta"`
	} `json:"choices"`
}

// TestAnthropicWebSearchStream: a streamed answer with web search gives the text as
// content deltas and, when a cited text block ends, one delta holding its annotations:
// each covers the block's span of the content streamed so far, in code points, its
// citations_delta events coming before, among or after its text, or in its
// content_block_start. Server tool blocks stream nothing; usage is the tokens alone.
func TestAnthropicWebSearchStream(t *testing.T) {
	raw, err := os.ReadFile("testdata/anthropic/stream_web_search.sse")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{16, 64, 4096} {
		t.Run("buffer "+strconv.Itoa(size), func(t *testing.T) {
			evs, err := readStream(string(raw), size)
			if err != nil {
				t.Fatal(err)
			}
			var content string
			var spans []string
			var annotations []wsAnnotation
			for _, ev := range evs {
				if ev.Done || ev.UsageOnly {
					continue
				}
				var c wsChunk
				if err := json.Unmarshal(ev.Data, &c); err != nil {
					t.Fatal(err)
				}
				d := c.Choices[0].Delta
				if len(d.ToolCalls) > 0 {
					t.Errorf("server tool streamed as a tool call: %s", ev.Data)
				}
				if d.Content != nil {
					content += *d.Content
				}
				if len(d.Annotations) > 0 && (d.Content != nil || ev.Content) {
					t.Errorf("annotations with content: %s", ev.Data)
				}
				for _, a := range d.Annotations {
					if a.URLCitation.EndIndex != utf8.RuneCountInString(content) {
						t.Errorf("annotation ends at %d, %d code points streamed", a.URLCitation.EndIndex, utf8.RuneCountInString(content))
					}
					spans = append(spans, runeSpan(t, content, a.URLCitation.StartIndex, a.URLCitation.EndIndex))
					annotations = append(annotations, a)
				}
			}
			if content != `Let me look. Zürich airport closed ☃ for 🌍 snow, "été" 🚀. Flights resume tomorrow.` {
				t.Errorf("content %q", content)
			}
			want := []string{"Zürich airport closed ☃ for 🌍 snow", "Zürich airport closed ☃ for 🌍 snow", "Flights resume tomorrow.", "Flights resume tomorrow."}
			if !reflect.DeepEqual(spans, want) {
				t.Errorf("annotations cover %q, want %q", spans, want)
			}
			var urls []string
			for _, a := range annotations {
				urls = append(urls, a.URLCitation.URL+" "+a.URLCitation.Title)
			}
			if got := strings.Join(urls, ", "); got != "https://example.com/zurich-snow Zürich – Snow, https://example.org/flights , https://example.org/flights Flights, https://example.com/t T" {
				t.Errorf("annotations %s", got)
			}
			last := evs[len(evs)-2]
			// message_delta's count of searches, message_start's tier.
			if !last.HasUsage || last.Usage != withTier(Usage{Input: 10682, Output: 510, WebSearches: 1}, "default") {
				t.Errorf("usage %+v", last.Usage)
			}
			acc := accumulate(t, evs)
			if acc.Choices[0].Message.Content != content || len(acc.Choices[0].Message.ToolCalls) != 0 || acc.Choices[0].FinishReason != "stop" {
				t.Errorf("SDK assembles %+v", acc.Choices[0])
			}
		})
	}
}

// A stream cut inside a cited text block has sent its text but not its annotations:
// they come only with the block's end, once its span is known.
func TestAnthropicWebSearchStreamCut(t *testing.T) {
	raw, err := os.ReadFile("testdata/anthropic/stream_web_search.sse")
	if err != nil {
		t.Fatal(err)
	}
	cut := string(raw)[:strings.Index(string(raw), `"index":3}`)]
	cut = cut[:strings.LastIndex(cut, "event: ")]
	evs, err := readStream(cut, 4096)
	if !errors.Is(err, ErrStreamCut) {
		t.Fatalf("err = %v", err)
	}
	text := 0
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), "annotations") {
			t.Errorf("annotations before the block ended: %s", ev.Data)
		}
		if ev.Content {
			text++
		}
	}
	if text != 3 {
		t.Errorf("%d content deltas, want the block's text sent", text)
	}
}
