package providers

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with the golden file, or rewrites it under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -run %s -update rewrites it)\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// cases lists testdata/anthropic/<prefix>*<ext>, named without prefix and extension.
func cases(t *testing.T, prefix, ext string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "anthropic", prefix+"*"+ext))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s*%s test data: %v", prefix, ext, err)
	}
	m := map[string]string{}
	for _, f := range files {
		m[strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), prefix), ext)] = f
	}
	return m
}

func indent(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

type anthropicMessages struct {
	Messages []struct {
		Role    string `json:"role"`
		Content []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		} `json:"content"`
	} `json:"messages"`
}

func TestAnthropicRequestGolden(t *testing.T) {
	for name, in := range cases(t, "request_", ".json") {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			stream, _ := jsonscan.Field(body, "stream")
			model := goldenModel(name)
			out, rerr := appendAnthropicRequest(nil, body, quoteModel(model), 1024, claudeModelOf(model), string(stream) == "true")
			var got []byte
			if rerr != nil {
				if !strings.HasPrefix(name, "err_") {
					t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
				}
				got = []byte("400 invalid_request_error\nparam: " + rerr.param + "\nmessage: " + rerr.msg + "\n")
			} else {
				if strings.HasPrefix(name, "err_") {
					t.Fatalf("translated a request that should be refused: %s", out)
				}
				checkTurns(t, out)
				got = indent(t, out)
			}
			golden(t, strings.TrimSuffix(in, ".json")+".golden", got)
		})
	}
}

// goldenModel is the backend model a request case is translated for: named in the
// case (opus47_, opus46_, sonnet45_), else a name without a version.
func goldenModel(name string) string {
	for _, m := range [...]struct{ mark, model string }{
		{"opus47_", "claude-opus-4-7"}, {"opus46_", "claude-opus-4-6"}, {"sonnet45_", "claude-sonnet-4-5-20250929"},
	} {
		if strings.Contains(name, m.mark) {
			return m.model
		}
	}
	return "claude-test"
}

// checkTurns asserts what the Messages API requires of any translation: roles that
// alternate, and no text block of only whitespace.
func checkTurns(t *testing.T, out []byte) {
	t.Helper()
	var m anthropicMessages
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("translation is not JSON: %v\n%s", err, out)
	}
	for i, msg := range m.Messages {
		if i > 0 && m.Messages[i-1].Role == msg.Role {
			t.Errorf("messages[%d] repeats role %s", i, msg.Role)
		}
		if len(msg.Content) == 0 {
			t.Errorf("messages[%d] has no content", i)
		}
		for j, b := range msg.Content {
			if b.Type == "text" && (b.Text == nil || strings.TrimSpace(*b.Text) == "") {
				t.Errorf("messages[%d].content[%d] is a blank text block", i, j)
			}
		}
	}
}

func TestAnthropicResponseGolden(t *testing.T) {
	for name, in := range cases(t, "response_", ".json") {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var u Usage
			out, ok := appendChatCompletion([]byte("junk"), body, 1700000000, &u, nil)
			var got []byte
			if !ok {
				if !strings.HasPrefix(name, "err_") {
					t.Fatalf("refused the answer")
				}
				got = []byte("bad response\n")
			} else {
				out = out[len("junk"):]
				var cc openai.ChatCompletion
				if err := json.Unmarshal(out, &cc); err != nil {
					t.Fatalf("the OpenAI SDK cannot read the translation: %v", err)
				}
				if cc.Object != "chat.completion" || len(cc.Choices) != 1 || cc.Usage.TotalTokens != u.Input+u.Output {
					t.Errorf("SDK reads %+v", cc)
				}
				for _, tc := range cc.Choices[0].Message.ToolCalls {
					if !json.Valid([]byte(tc.Function.Arguments)) {
						t.Errorf("arguments %q are not JSON", tc.Function.Arguments)
					}
				}
				got = append(indent(t, out), "usage: input "+strconv.FormatInt(u.Input, 10)+", output "+strconv.FormatInt(u.Output, 10)+usageExtras(u, ", ")+"\n"...)
			}
			golden(t, strings.TrimSuffix(in, ".json")+".golden", got)
		})
	}
}

// usageExtras is what a golden file shows of u besides its tokens: the web searches
// and the service tier, each after sep, when there are any.
func usageExtras(u Usage, sep string) string {
	var s string
	if u.WebSearches > 0 {
		s += sep + "web searches " + strconv.FormatInt(u.WebSearches, 10)
	}
	if tier := u.Tier.String(); tier != "" {
		s += sep + "tier " + tier
	}
	return s
}

// readStream runs an Anthropic event stream through the translation; keep-alives
// are left out.
func readStream(in string, bufSize int) ([]Event, error) {
	s := &anthropicStream{r: &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), bufSize)}, created: 1700000000}
	var evs []Event
	for range 10000 {
		var ev Event
		err := s.Next(&ev)
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		if ev.KeepAlive {
			continue
		}
		ev.Data = append([]byte(nil), ev.Data...)
		evs = append(evs, ev)
	}
	return evs, errors.New("stream does not end")
}

func TestAnthropicStreamGolden(t *testing.T) {
	for name, in := range cases(t, "stream_", ".sse") {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := readStream(string(raw), 64)
			var got bytes.Buffer
			for _, ev := range evs {
				switch {
				case ev.Done:
					got.WriteString("[DONE]\n")
					continue
				case ev.UsageOnly:
					got.WriteString("usage-only ")
				case ev.Content:
					got.WriteString("content ")
				default:
					got.WriteString("- ")
				}
				if ev.HasUsage {
					got.WriteString("usage=" + strconv.FormatInt(ev.Usage.Input, 10) + "/" + strconv.FormatInt(ev.Usage.Output, 10) + usageExtras(ev.Usage, " ") + " ")
				}
				got.Write(ev.Data)
				got.WriteByte('\n')
				var chunk openai.ChatCompletionChunk
				if err := json.Unmarshal(ev.Data, &chunk); err != nil || chunk.Object != "chat.completion.chunk" {
					t.Errorf("the OpenAI SDK cannot read chunk %s: %v", ev.Data, err)
				}
			}
			if err != nil {
				if !errors.Is(err, ErrStreamCut) {
					t.Errorf("stream error %v is not ErrStreamCut", err)
				}
				got.WriteString("error: " + err.Error() + "\n")
			}
			golden(t, strings.TrimSuffix(in, ".sse")+".golden", got.Bytes())
		})
	}
}

// TestAnthropicStreamAssembles checks the stream against the SDK's own accumulator: the
// text and tool calls put together from the chunks are the answer.
func TestAnthropicStreamAssembles(t *testing.T) {
	raw, err := os.ReadFile("testdata/anthropic/stream_tool_use.sse")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{16, 64, 4096} {
		t.Run("buffer "+strconv.Itoa(size), func(t *testing.T) {
			evs, err := readStream(string(raw), size)
			if err != nil {
				t.Fatal(err)
			}
			acc := accumulate(t, evs)
			msg := acc.Choices[0].Message
			if msg.Content != "Okay, let me check." || acc.Choices[0].FinishReason != "tool_calls" {
				t.Errorf("assembled %q, finish %q", msg.Content, acc.Choices[0].FinishReason)
			}
			if len(msg.ToolCalls) != 2 || msg.ToolCalls[0].Function.Name != "get_weather" ||
				msg.ToolCalls[0].Function.Arguments != `{"location": "San Francisco, CA"}` ||
				msg.ToolCalls[1].ID != "toolu_02" || msg.ToolCalls[1].Function.Arguments != "{}" {
				t.Errorf("tool calls %+v", msg.ToolCalls)
			}
			if acc.Usage.PromptTokens != 472 || acc.Usage.CompletionTokens != 89 {
				t.Errorf("usage %+v", acc.Usage)
			}
		})
	}
}

// A tool called with no arguments streams as input {} and an input_json_delta whose
// partial_json is "" (or none at all); the non-streamed answer for the same call has
// arguments "{}", and so must the streamed one, or the client's json.loads(arguments)
// fails.
func TestAnthropicStreamToolCallWithoutArguments(t *testing.T) {
	raw, err := os.ReadFile("testdata/anthropic/stream_tool_no_arguments.sse")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{16, 4096} {
		t.Run("buffer "+strconv.Itoa(size), func(t *testing.T) {
			evs, err := readStream(string(raw), size)
			if err != nil {
				t.Fatal(err)
			}
			acc := accumulate(t, evs)
			want := []string{`{}`, `{"city": "Paris"}`, `{}`}
			calls := acc.Choices[0].Message.ToolCalls
			if len(calls) != len(want) {
				t.Fatalf("tool calls %+v", calls)
			}
			for i, c := range calls {
				if c.Function.Arguments != want[i] {
					t.Errorf("tool call %d (%s) has arguments %q, want %q", i, c.Function.Name, c.Function.Arguments, want[i])
				}
			}
		})
	}
}

func TestAnthropicErrorGolden(t *testing.T) {
	key := []byte("sk-ant-secret")
	for name, in := range cases(t, "error_", ".json") {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			status, err := strconv.Atoi(name[:3])
			if err != nil {
				t.Fatal(err)
			}
			var out fasthttp.Response
			out.SetBodyString("previous body")
			got := translateAnthropicError(&out, body, status, [][]byte{key})
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(out.Body(), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not OpenAI's error shape: %s", out.Body())
			}
			if out.StatusCode() != got || string(out.Header.ContentType()) != "application/json" {
				t.Errorf("status %d, content type %s", out.StatusCode(), out.Header.ContentType())
			}
			golden(t, strings.TrimSuffix(in, ".json")+".golden", append([]byte("status: "+strconv.Itoa(got)+"\n"), indent(t, out.Body())...))
		})
	}
}

// Anthropic says a prompt does not fit the context window with an
// invalid_request_error; OpenAI's clients and frameworks (which trim history on it)
// know that error by its code, context_length_exceeded.
func TestAnthropicErrorContextLength(t *testing.T) {
	cases := []struct {
		name, typ, msg, code string
	}{
		{"prompt too long", "invalid_request_error", "prompt is too long: 209353 tokens > 199999 maximum", "context_length_exceeded"},
		{"input and max_tokens past the limit", "invalid_request_error",
			"input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input length or `max_tokens` and try again", "context_length_exceeded"},
		{"max_tokens past the model's output limit", "invalid_request_error",
			"max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5", ""},
		{"request too large", "request_too_large", "Request exceeds the maximum allowed number of bytes.", "request_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": c.typ, "message": c.msg}})
			var out fasthttp.Response
			translateAnthropicError(&out, body, 400, nil)
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(out.Body(), &e); err != nil {
				t.Fatal(err)
			}
			code := ""
			if e.Error.Code != nil {
				code = *e.Error.Code
			}
			msg := c.msg
			if c.code == "context_length_exceeded" {
				// In OpenAI's words first, for clients that read the message alone.
				msg = "This model's maximum context length was exceeded: " + c.msg
			}
			if code != c.code || e.Error.Type != "invalid_request_error" || e.Error.Message != msg {
				t.Errorf("translated to %s, want code %q and message %q", out.Body(), c.code, msg)
			}
		})
	}
}

func TestAnthropicErrorMasksKey(t *testing.T) {
	var out fasthttp.Response
	body := []byte(`{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key sk-ant-secret-123"}}`)
	translateAnthropicError(&out, body, 401, [][]byte{[]byte("sk-ant-secret-123")})
	if bytes.Contains(out.Body(), []byte("secret")) {
		t.Fatalf("key echoed: %s", out.Body())
	}
}

func TestAnthropicStreamErrors(t *testing.T) {
	start := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n"
	cases := []struct {
		name   string
		in     string
		events int
		bad    bool
	}{
		{"empty body", "", 0, false},
		{"only pings", "event: ping\ndata: {\"type\":\"ping\"}\n\n", 0, false},
		{"not json", start + "data: {oops\n\n", 1, true},
		{"delta before start", "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n", 0, true},
		{"start without id", "data: {\"type\":\"message_start\",\"message\":{\"model\":\"c\"}}\n\n", 0, true},
		{"text is a number", start + "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":1}}\n\n", 1, true},
		{"tool without name", start + "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\"}}\n\n", 1, true},
		{"ends after finish", start + "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n", 2, false},
		{"error event", start + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}\n\n", 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs, err := readStream(c.in, 4096)
			if !errors.Is(err, ErrStreamCut) {
				t.Fatalf("err = %v, want ErrStreamCut", err)
			}
			if errors.Is(err, ErrBadResponse) != c.bad {
				t.Errorf("err = %v, bad response %v", err, c.bad)
			}
			if len(evs) != c.events {
				t.Errorf("%d events before the error, want %d", len(evs), c.events)
			}
		})
	}
	_, err := readStream(start+"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", 4096)
	if err == nil || !strings.Contains(err.Error(), "overloaded_error") {
		t.Errorf("error event read as %v", err)
	}
}

// anthropicRequest translates an OpenAI chat request that must be accepted.
func anthropicRequest(t *testing.T, body string) []byte {
	t.Helper()
	out, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-x"), 1024, claudeModel{}, false)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	if !json.Valid(out) {
		t.Fatalf("translation is not JSON: %s", out)
	}
	return out
}

// anthropicFields translates an OpenAI chat request that must be accepted into the
// Messages API request's members.
func anthropicFields(t *testing.T, body string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(anthropicRequest(t, body), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// OpenAI's temperature runs 0..2, the Messages API's 0..1: above 1 is capped at 1, as
// Anthropic's own OpenAI compatibility layer does, rather than refused with a 400.
// Current Claude models refuse temperature and top_p together ("`temperature` and
// `top_p` cannot both be specified for this model"), which OpenAI clients commonly send
// (top_p: 1): top_p goes only without a temperature.
func TestAnthropicRequestTemperature(t *testing.T) {
	for _, c := range []struct{ in, want, topP string }{
		{"0", "0", ""}, {"0.7", "0.7", ""}, {"1", "1", ""}, {"1.0", "1.0", ""}, {"1.5", "1", ""}, {"2", "1", ""},
		{"null", "", "1.5"},
	} {
		t.Run(c.in, func(t *testing.T) {
			out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"temperature":`+c.in+`,"top_p":1.5}`)
			got, _ := jsonscan.Field(out, "temperature")
			if string(got) != c.want {
				t.Errorf("temperature %s sent as %q, want %q: %s", c.in, got, c.want, out)
			}
			if topP, _ := jsonscan.Field(out, "top_p"); string(topP) != c.topP {
				t.Errorf("top_p sent as %q, want %q: %s", topP, c.topP, out)
			}
		})
	}
	t.Run("top_p alone", func(t *testing.T) {
		out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"top_p":0.9}`)
		if topP, _ := jsonscan.Field(out, "top_p"); string(topP) != "0.9" {
			t.Errorf("top_p sent as %q, want 0.9: %s", topP, out)
		}
	})
	t.Run("top_p malformed beside temperature", func(t *testing.T) {
		_, rerr := appendAnthropicRequest(nil, []byte(`{"messages":[{"role":"user","content":"Hi"}],"temperature":0.5,"top_p":"x"}`), quoteModel("m"), 16, claudeModel{}, false)
		if rerr == nil || rerr.param != "top_p" {
			t.Errorf("top_p \"x\" accepted: %v", rerr)
		}
	})
}

// vLLM's clients send top_k -1 (or 0) for no top-k cut, a value the Messages API has
// no use for: it is left out, and a real cut goes across.
func TestAnthropicTopKOff(t *testing.T) {
	for _, c := range []struct{ in, want string }{{"-1", ""}, {"0", ""}, {"1", "1"}, {"40", "40"}, {"null", ""}} {
		t.Run(c.in, func(t *testing.T) {
			out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"top_k":`+c.in+`}`)
			if got, _ := jsonscan.Field(out, "top_k"); string(got) != c.want {
				t.Errorf("top_k %s sent as %q, want %q: %s", c.in, got, c.want, out)
			}
		})
	}
}

// OpenAI's user is a free string, often an e-mail address, which the Messages API
// refuses in metadata.user_id ("user_id appears to contain an email address"): it goes
// as an opaque, stable id, the hex of the first 16 bytes of its SHA-256.
func TestAnthropicUserID(t *testing.T) {
	userID := func(t *testing.T, user string) string {
		t.Helper()
		out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"user":`+user+`}`)
		var sent struct {
			Metadata *struct {
				UserID string `json:"user_id"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(out, &sent); err != nil {
			t.Fatal(err)
		}
		if sent.Metadata == nil {
			return ""
		}
		return sent.Metadata.UserID
	}
	sum := sha256.Sum256([]byte("alice@example.com"))
	want := hex.EncodeToString(sum[:16])
	for _, c := range []struct{ name, user, want string }{
		{"e-mail address", `"alice@example.com"`, want},
		{"escaped spelling of the same", `"alice\u0040example.com"`, want},
		{"empty", `""`, ""},
		{"null", `null`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := userID(t, c.user); got != c.want {
				t.Errorf("user %s sent as user_id %q, want %q", c.user, got, c.want)
			}
		})
	}
	t.Run("another user another id", func(t *testing.T) {
		if got := userID(t, `"bob@example.com"`); got == want || len(got) != 32 {
			t.Errorf("user_id %q for bob, alice's is %q", got, want)
		}
	})
	if _, rerr := appendAnthropicRequest(nil, []byte(`{"messages":[{"role":"user","content":"Hi"}],"user":7}`), quoteModel("m"), 16, claudeModel{}, false); rerr == nil || rerr.param != "user" {
		t.Errorf("a numeric user is accepted: %v", rerr)
	}
}

// The Messages API refuses text blocks of only whitespace ("text content blocks must
// contain non-whitespace text"), where OpenAI takes them: several models answer "\n\n"
// before their tool calls, a turn every later request of the conversation replays.
// Blank text is left out wherever it stands.
func TestAnthropicBlankTextLeftOut(t *testing.T) {
	const call = `"tool_calls":[{"id":"call_1","type":"function","function":{"name":"w","arguments":"{}"}}]`
	cases := []struct{ name, messages, system, want string }{
		{"assistant newline before tool calls",
			`{"role":"user","content":"Weather?"},{"role":"assistant","content":"\n\n",` + call + `},{"role":"tool","tool_call_id":"call_1","content":"sunny"}`,
			``,
			`[{"role":"user","content":[{"type":"text","text":"Weather?"}]},` +
				`{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"w","input":{}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"sunny"}]}]`},
		{"assistant blank parts and refusal",
			`{"role":"user","content":"Hi"},{"role":"assistant","content":[{"type":"text","text":" "},{"type":"text","text":"Hello"},{"type":"refusal","refusal":"\t"}]},{"role":"user","content":"Bye"}`,
			``,
			`[{"role":"user","content":[{"type":"text","text":"Hi"}]},{"role":"assistant","content":[{"type":"text","text":"Hello"}]},{"role":"user","content":[{"type":"text","text":"Bye"}]}]`},
		{"assistant turn of only whitespace",
			`{"role":"user","content":"Hi"},{"role":"assistant","content":"\u00a0\r\n"},{"role":"user","content":"Again"}`,
			``,
			`[{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"Again"}]}]`},
		{"user blank part beside an image",
			`{"role":"user","content":[{"type":"text","text":"\n"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}`,
			``,
			`[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]`},
		{"tool result blank",
			`{"role":"user","content":"Run"},{"role":"assistant",` + call + `},{"role":"tool","tool_call_id":"call_1","content":"  "}`,
			``,
			`[{"role":"user","content":[{"type":"text","text":"Run"}]},` +
				`{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"w","input":{}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1"}]}]`},
		{"tool result blank part",
			`{"role":"user","content":"Run"},{"role":"assistant",` + call + `},{"role":"tool","tool_call_id":"call_1","content":[{"type":"text","text":"\n"},{"type":"text","text":"ok"}]}`,
			``,
			`[{"role":"user","content":[{"type":"text","text":"Run"}]},` +
				`{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"w","input":{}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"ok"}]}]}]`},
		{"system blank",
			`{"role":"system","content":" \n"},{"role":"developer","content":[{"type":"text","text":"\t"},{"type":"text","text":"Be brief."}]},{"role":"user","content":"Hi"}`,
			`[{"type":"text","text":"Be brief."}]`,
			`[{"role":"user","content":[{"type":"text","text":"Hi"}]}]`},
		{"system only blank",
			`{"role":"system","content":"\n\n"},{"role":"user","content":"Hi"}`,
			``,
			`[{"role":"user","content":[{"type":"text","text":"Hi"}]}]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := anthropicRequest(t, `{"model":"chat","messages":[`+c.messages+`]}`)
			checkTurns(t, out)
			if got, _ := jsonscan.Field(out, "messages"); string(got) != c.want {
				t.Errorf("messages\n got %s\nwant %s", got, c.want)
			}
			if got, _ := jsonscan.Field(out, "system"); string(got) != c.system {
				t.Errorf("system\n got %s\nwant %s", got, c.system)
			}
		})
	}
}

// A request that ends on the assistant's turn (a prefill) loses the trailing whitespace
// of its last text block, which the Messages API refuses ("final assistant content
// cannot end with trailing whitespace"); earlier turns, and a last turn ending in a
// tool call, keep theirs.
func TestAnthropicPrefillTrailingWhitespace(t *testing.T) {
	const user = `{"role":"user","content":"Write a list. "}`
	const userOut = `{"role":"user","content":[{"type":"text","text":"Write a list. "}]}`
	cases := []struct{ name, messages, want string }{
		{"space", user + `,{"role":"assistant","content":"Answer: "}`,
			`[` + userOut + `,{"role":"assistant","content":[{"type":"text","text":"Answer:"}]}]`},
		{"code fence and newline", user + `,{"role":"assistant","content":"` + "```" + `json\n"}`,
			`[` + userOut + `,{"role":"assistant","content":[{"type":"text","text":"` + "```" + `json"}]}]`},
		{"escaped unicode space", user + `,{"role":"assistant","content":"1.\u00a0\t\r\n"}`,
			`[` + userOut + `,{"role":"assistant","content":[{"type":"text","text":"1."}]}]`},
		{"last of several parts, escapes kept", user + `,{"role":"assistant","content":[{"type":"text","text":"a "},{"type":"text","text":"\"<b>\" é \n"}]}`,
			`[` + userOut + `,{"role":"assistant","content":[{"type":"text","text":"a "},{"type":"text","text":"\"<b>\" é"}]}]`},
		{"nothing to trim", user + `,{"role":"assistant","content":"- \u0041"}`,
			`[` + userOut + `,{"role":"assistant","content":[{"type":"text","text":"- \u0041"}]}]`},
		{"not the last turn", `{"role":"assistant","content":"Hi! "},` + user,
			`[{"role":"assistant","content":[{"type":"text","text":"Hi! "}]},` + userOut + `]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := anthropicRequest(t, `{"model":"chat","messages":[`+c.messages+`]}`)
			if got, _ := jsonscan.Field(out, "messages"); string(got) != c.want {
				t.Errorf("messages\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// A user message with nothing but whitespace is refused here, as the Messages API
// would: left out, it could end the request on an assistant turn, which the model
// continues instead of answering.
func TestAnthropicBlankUserMessageRefused(t *testing.T) {
	for _, c := range []struct{ name, content string }{
		{"space", `" "`},
		{"newlines", `"\n\n"`},
		{"empty", `""`},
		{"null", `null`},
		{"blank parts", `[{"type":"text","text":" "},{"type":"text","text":"\u2003"}]`},
		{"no parts", `[]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := `{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":` + c.content + `}]}`
			out, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("m"), 16, claudeModel{}, false)
			if rerr == nil {
				t.Fatalf("translated: %s", out)
			}
			if rerr.param != "messages[2].content" || !strings.Contains(rerr.msg, rerr.param) {
				t.Errorf("refused with param %q: %s", rerr.param, rerr.msg)
			}
		})
	}
}

// isBlankString reads the raw JSON string in place; it must agree with unquoting it and
// trimming Unicode whitespace.
func TestAnthropicIsBlankString(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want bool
	}{
		{`""`, true}, {`" "`, true}, {`"\n\n"`, true}, {`" \t\r\n\f"`, true},
		{`"\u0020\u00a0\u00A0\u2028\u3000"`, true}, {"\" \u00a0\u3000 \"", true},
		{`"a"`, false}, {`" \n a"`, false}, {`"\n\n\u0041"`, false}, {`"\""`, false}, {`"\\"`, false},
		{`"\b"`, false}, {`"\/"`, false}, {`"\ud83d\ude00"`, false}, {`"\u200b"`, false},
		{`"\u00e9"`, false}, {"\"\u00e9\"", false}, {"\" \xff\"", false},
		{`"\u00"`, false}, {`"\u00zz"`, false}, {`"\`, false}, {`"\"`, false}, {`x`, false},
	} {
		t.Run(c.raw, func(t *testing.T) {
			if got := isBlankString([]byte(c.raw)); got != c.want {
				t.Errorf("isBlankString(%s) = %v, want %v", c.raw, got, c.want)
			}
			u, ok := jsonscan.AppendUnquote(nil, []byte(c.raw))
			if ref := ok && len(bytes.TrimSpace(u)) == 0; ref != c.want {
				t.Errorf("unquoted and trimmed, %s is blank: %v", c.raw, ref)
			}
		})
	}
}

// A data URL of image/jpg, a common misspelling, goes as image/jpeg, the one the
// Messages API takes.
func TestAnthropicImageJPG(t *testing.T) {
	for _, c := range []struct{ media, want string }{
		{"image/jpg", "image/jpeg"}, {"IMAGE/JPG", "image/jpeg"}, {"image/jpeg", "image/jpeg"}, {"image/png", "image/png"},
	} {
		t.Run(c.media, func(t *testing.T) {
			out := anthropicRequest(t, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:`+c.media+`;base64,AAAA"}}]}]}`)
			want := `"source":{"type":"base64","media_type":"` + c.want + `","data":"AAAA"}`
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("sent %s, want %s", out, want)
			}
		})
	}
}

// The Messages API requires a tool's input_schema to say "type" (it answers 400
// "tools.0.custom.input_schema.type: Field required" otherwise); OpenAI accepts
// "parameters": {}, and schemas without a type.
func TestAnthropicToolInputSchema(t *testing.T) {
	cases := []struct{ name, params, want string }{
		{"none", ``, `{"type":"object","properties":{}}`},
		{"null", `,"parameters":null`, `{"type":"object","properties":{}}`},
		{"empty object", `,"parameters":{}`, `{"type":"object","properties":{}}`},
		{"empty object with spaces", `,"parameters":{ }`, `{"type":"object","properties":{}}`},
		{"properties without type", `,"parameters":{"properties":{"city":{"type":"string"}},"required":["city"]}`,
			`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`},
		{"with type", `,"parameters":{"properties":{},"type":"object"}`, `{"properties":{},"type":"object"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}],`+
				`"tools":[{"type":"function","function":{"name":"now"`+c.params+`}}]}`)
			var sent struct {
				Tools []struct {
					InputSchema json.RawMessage `json:"input_schema"`
				} `json:"tools"`
			}
			if err := json.Unmarshal(out, &sent); err != nil || len(sent.Tools) != 1 {
				t.Fatalf("translation %s: %v", out, err)
			}
			if got := string(sent.Tools[0].InputSchema); got != c.want {
				t.Errorf("input_schema %s, want %s", got, c.want)
			}
		})
	}
}

// The Messages API refuses an empty or whitespace-only stop sequence with a 400
// ("each stop sequence must contain non-whitespace"), where OpenAI takes stop: ["\n"]:
// such sequences are left out, and stop_sequences with them when none is left.
func TestAnthropicStopSequences(t *testing.T) {
	cases := []struct {
		stop string
		want []string
	}{
		{`"END"`, []string{"END"}},
		{`"\n"`, nil},
		{`""`, nil},
		{`[]`, nil},
		{`[""]`, nil},
		{`["\n\n","END"," \t\r\n","\u00a0"]`, []string{"END"}},
		{`["\n\nHuman:"," x "]`, []string{"\n\nHuman:", " x "}},
	}
	for _, c := range cases {
		t.Run(c.stop, func(t *testing.T) {
			out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"stop":`+c.stop+`}`)
			var sent struct {
				Stop *[]string `json:"stop_sequences"`
			}
			if err := json.Unmarshal(out, &sent); err != nil {
				t.Fatal(err)
			}
			switch {
			case c.want == nil && sent.Stop != nil:
				t.Errorf("stop_sequences %q sent: %s", *sent.Stop, out)
			case c.want != nil && (sent.Stop == nil || strings.Join(*sent.Stop, "|") != strings.Join(c.want, "|")):
				t.Errorf("stop_sequences in %s, want %q", out, c.want)
			}
		})
	}
	if _, rerr := appendAnthropicRequest(nil, []byte(`{"messages":[{"role":"user","content":"Hi"}],"stop":["\n",1]}`), quoteModel("m"), 16, claudeModel{}, false); rerr == nil || rerr.param != "stop" {
		t.Errorf("a stop list holding a number is accepted: %v", rerr)
	}
}

func TestAnthropicConfig(t *testing.T) {
	base := func(mod func(*Config)) Config {
		c := Config{Provider: "anthropic", BaseURL: "https://api.anthropic.com/v1", Model: "claude-x"}
		mod(&c)
		return c
	}
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"anthropic defaults", base(func(*Config) {}), nil},
		{"anthropic settings", base(func(c *Config) { c.AnthropicVersion = "2023-06-01"; c.MaxTokens = 8192 }), nil},
		{"negative max_tokens", base(func(c *Config) { c.MaxTokens = -1 }), []string{"max_tokens: must not be negative"}},
		{"bad version", base(func(c *Config) { c.AnthropicVersion = "2023 06\n01" }), []string{"anthropic_version: may hold only"}},
		{"anthropic keys on openai", base(func(c *Config) { c.Provider = "openai"; c.MaxTokens = 5; c.AnthropicVersion = "x" }),
			[]string{"anthropic_version: applies only to provider anthropic", "max_tokens: applies only to provider anthropic"}},
		{"azure", base(func(c *Config) {
			c.Provider = "azure"
			c.Deployment = "gpt-4o.prod_1"
			c.APIVersion = "2025-01-01-preview"
		}), nil},
		{"azure without deployment", base(func(c *Config) { c.Provider = "azure" }), []string{"deployment: is required for provider azure"}},
		{"azure deployment with a slash", base(func(c *Config) { c.Provider = "azure"; c.Deployment = "a/../b" }), []string{"deployment: may hold only"}},
		{"azure version with a query", base(func(c *Config) { c.Provider = "azure"; c.Deployment = "d"; c.APIVersion = "1&x=2" }), []string{"api_version: may hold only"}},
		{"azure base_url with a query", base(func(c *Config) {
			c.Provider, c.Deployment, c.BaseURL = "azure", "d", ""
			c.Targets = []string{"https://a.openai.azure.com", "https://b.openai.azure.com?api-version=1"}
		}), []string{"targets[1]: must have no query"}},
		{"azure keys on anthropic", base(func(c *Config) { c.Deployment = "d"; c.APIVersion = "v" }),
			[]string{"deployment: applies only to provider azure", "api_version: applies only to provider azure"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			var got []string
			for _, e := range flattenErrs(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Errorf("%v is not a *FieldError", e)
				}
				got = append(got, e.Error())
			}
			if len(got) != len(c.want) {
				t.Fatalf("problems %q, want %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("problem %q, want %q…", got[i], c.want[i])
				}
			}
		})
	}
	c := base(func(*Config) {})
	c = c.withDefaults()
	if c.MaxTokens != defaultAnthropicMaxTokens || c.AnthropicVersion != "2023-06-01" {
		t.Errorf("anthropic defaults %d %q", c.MaxTokens, c.AnthropicVersion)
	}
	c = base(func(c *Config) { c.Provider = "azure" })
	c = c.withDefaults()
	if c.APIVersion != defaultAzureAPIVersion || c.MaxTokens != 0 {
		t.Errorf("azure defaults %q %d", c.APIVersion, c.MaxTokens)
	}
}

func flattenErrs(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrs(e)...)
		}
		return out
	}
	return []error{err}
}

func TestUnsupportedError(t *testing.T) {
	for _, k := range []Kind{Embeddings, Completions} {
		a := newAnthropic(&Config{Model: "m"})
		_, err := a.prepare(nil, &Call{Kind: k}, nil)
		var ue *UnsupportedError
		if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ue) || ue.Kind != k {
			t.Fatalf("%s: err = %v", k, err)
		}
		if !strings.Contains(err.Error(), "Anthropic") || !strings.Contains(err.Error(), k.String()) {
			t.Errorf("%s: message %q does not say what is missing", k, err)
		}
	}
}

func FuzzAnthropicStream(f *testing.F) {
	files, _ := filepath.Glob("testdata/anthropic/stream_*.sse")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		evs, err := readStream(in, 32)
		if err != nil && !errors.Is(err, ErrStreamCut) {
			t.Fatalf("error %v does not match ErrStreamCut", err)
		}
		for i, ev := range evs {
			if ev.Done {
				if len(ev.Data) != 0 || i != len(evs)-1 || err != nil {
					t.Fatalf("[DONE] with data, or not last")
				}
				continue
			}
			if !json.Valid(ev.Data) {
				t.Fatalf("chunk %d is not JSON: %s", i, ev.Data)
			}
			if ev.UsageOnly != ev.HasUsage {
				t.Fatalf("usage flags disagree: %+v", ev)
			}
		}
	})
}

func FuzzAnthropicRequest(f *testing.F) {
	files, _ := filepath.Glob("testdata/anthropic/request_*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// The body goes through for each kind of model: budget thinking, adaptive
		// thinking, and adaptive without sampling settings but with structured outputs.
		var out []byte
		for _, cm := range [...]claudeModel{{}, {adaptive: true}, {adaptive: true, noSampling: true, structured: true}} {
			var rerr *requestError
			out, rerr = appendAnthropicRequest(out[:0], body, quoteModel("m"), 16, cm, true)
			if rerr != nil {
				if rerr.msg == "" {
					t.Fatal("refusal without a message")
				}
				return
			}
			if !json.Valid(out) {
				t.Fatalf("translation for %+v is not JSON:\n%s\n->\n%s", cm, body, out)
			}
		}
		if !json.Valid(out) {
			t.Fatalf("translation is not JSON:\n%s\n->\n%s", body, out)
		}
		var req struct {
			Messages []struct {
				Role    string `json:"role"`
				Content []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"content"`
			} `json:"messages"`
			Tools []json.RawMessage `json:"tools"`
		}
		if err := json.Unmarshal(out, &req); err != nil || len(req.Messages) == 0 {
			return
		}
		for _, m := range req.Messages {
			for _, b := range m.Content {
				if b.Type == "tool_use" && len(req.Tools) == 0 {
					// The API refuses tool_use blocks in a request without tools.
					t.Fatalf("tool_use blocks without tools:\n%s\n->\n%s", body, out)
				}
			}
		}
		if last := req.Messages[len(req.Messages)-1]; last.Role == "assistant" && len(last.Content) > 0 {
			b := last.Content[len(last.Content)-1]
			if r, _ := utf8.DecodeLastRuneInString(b.Text); b.Type == "text" && unicode.IsSpace(r) {
				t.Fatalf("final assistant text ends in whitespace:\n%s\n->\n%s", body, out)
			}
		}
	})
}

func FuzzAnthropicResponse(f *testing.F) {
	files, _ := filepath.Glob("testdata/anthropic/response_*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var u Usage
		out, ok := appendChatCompletion(nil, body, 1, &u, nil)
		if ok && !json.Valid(out) {
			t.Fatalf("translation is not JSON:\n%s\n->\n%s", body, out)
		}
	})
}

func TestAppendQuotedCompact(t *testing.T) {
	cases := []struct{ name, in string }{
		{"empty object", `{}`},
		{"pretty object", "{\n  \"city\" : \"Paris\",\n\t\"days\": [1, 2]\r\n}"},
		{"escapes kept", `{"q": "say \"hi\" \\ then\n \u00e9 </tag>"}`},
		{"spaces inside strings kept", `{"a b": " x  y "}`},
		{"nested", `{"a":{"b":[{"c":null,"d":true,"e":-1.5e3}]}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := appendQuotedCompact(nil, []byte(c.in))
			var s string
			if err := json.Unmarshal(out, &s); err != nil {
				t.Fatalf("%s is not a JSON string: %v", out, err)
			}
			var want bytes.Buffer
			if err := json.Compact(&want, []byte(c.in)); err != nil {
				t.Fatal(err)
			}
			if s != want.String() {
				t.Errorf("got %s, want %s", s, want.String())
			}
		})
	}
}

// accumulate puts a translated stream's chunks together with the OpenAI SDK's
// accumulator, as a client would.
func accumulate(t *testing.T, evs []Event) openai.ChatCompletionAccumulator {
	t.Helper()
	var acc openai.ChatCompletionAccumulator
	for _, ev := range evs {
		if ev.Done {
			continue
		}
		var chunk openai.ChatCompletionChunk
		if err := json.Unmarshal(ev.Data, &chunk); err != nil {
			t.Fatal(err)
		}
		if !acc.AddChunk(chunk) {
			t.Fatalf("accumulator refused %s", ev.Data)
		}
	}
	return acc
}

// Tool-call arguments with Unicode space around the object (\v, \f, U+0085, U+00A0),
// which is not JSON whitespace, are refused or sent as valid JSON, never copied into an
// invalid Messages request.
func TestToolArgumentsSpaceStaysValid(t *testing.T) {
	for _, args := range []string{`\u000b{}`, `\f{}`, `\u00a0{}`, `{}\u0085`} {
		t.Run(args, func(t *testing.T) {
			body := []byte(`{"model":"c","messages":[{"role":"user","content":"hi"},` +
				`{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"` + args + `"}}]},` +
				`{"role":"tool","tool_call_id":"t1","content":"ok"}]}`)
			out, rerr := appendAnthropicRequest(nil, body, quoteModel("claude-test"), 1024, claudeModel{}, false)
			if rerr != nil {
				return
			}
			if !json.Valid(out) {
				t.Fatalf("translation is not JSON: %q", out)
			}
		})
	}
}

// The Messages API's ping is a keep-alive once the message has begun; one before
// message_start is not passed on (the stream is being primed there, and its first
// chunk is what a retry decision waits for).
func TestAnthropicPingKeepAlive(t *testing.T) {
	in := "event: ping\ndata: {\"type\": \"ping\"}\n\n" +
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	s := &anthropicStream{r: &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), 64)}, created: 1700000000}
	var kinds []string
	for range 100 {
		var ev Event
		err := s.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.KeepAlive:
			kinds = append(kinds, "keep-alive")
		case ev.Done:
			kinds = append(kinds, "done")
		default:
			kinds = append(kinds, "chunk")
		}
	}
	if len(kinds) < 3 || kinds[0] != "chunk" || kinds[1] != "keep-alive" || slices.Index(kinds[2:], "keep-alive") >= 0 || kinds[len(kinds)-1] != "done" {
		t.Fatalf("events %v, want the first chunk, one keep-alive, then chunks and done", kinds)
	}
}
