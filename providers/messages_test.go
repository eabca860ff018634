package providers

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// messagesStream is a Messages API stream as Anthropic writes it: usage in
// message_start (input, cache) and message_delta (output), a ping, a tool_use block.
const messagesStream = "event: message_start\n" +
	`data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":3,"cache_read_input_tokens":7,"output_tokens":1}}}` + "\n\n" +
	"event: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
	"event: ping\n" + `data: {"type": "ping"}` + "\n\n" +
	"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}` + "\n\n" +
	"event: content_block_stop\n" + `data: {"type":"content_block_stop","index":0}` + "\n\n" +
	"event: content_block_start\n" + `data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}` + "\n\n" +
	"event: message_delta\n" + `data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}` + "\n\n" +
	"event: message_stop\n" + `data: {"type":"message_stop"}` + "\n\n"

func readMessages(t *testing.T, stream string) ([]Event, error) {
	t.Helper()
	s := acquireSSE()
	s.reset(nil, &Target{client: &fasthttp.HostClient{}}, strings.NewReader(stream), false)
	s.messages = true
	var evs []Event
	for {
		var ev Event
		err := s.Next(&ev)
		if err != nil {
			if err == io.EOF {
				return evs, nil
			}
			return evs, err
		}
		ev.Data = append([]byte(nil), ev.Data...)
		ev.Name = append([]byte(nil), ev.Name...)
		evs = append(evs, ev)
		if ev.Done {
			return evs, nil
		}
	}
}

// A Messages API stream is read event by event with its names; message_delta carries
// the whole usage (input and cache from message_start, output from itself); text and a
// tool_use block are content; message_stop ends it without a [DONE].
func TestMessagesStreamRead(t *testing.T) {
	evs, err := readMessages(t, messagesStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(evs); n != 9 || !evs[n-1].Done || string(evs[n-2].Name) != "message_stop" {
		t.Fatalf("%d events, last %+v", n, evs[len(evs)-1])
	}
	var content []string
	for _, ev := range evs {
		if ev.Content {
			content = append(content, string(ev.Name))
		}
		if ev.HasUsage && string(ev.Name) != "message_delta" {
			t.Errorf("usage on %s", ev.Name)
		}
	}
	if strings.Join(content, ",") != "content_block_delta,content_block_start" {
		t.Errorf("content on %v", content)
	}
	u := evs[6].Usage
	if !evs[6].HasUsage || u.Input != 35 || u.Output != 15 || u.CachedInput != 7 || u.CacheWrite != 3 {
		t.Errorf("message_delta usage %+v", u)
	}
}

// A stream that ends before message_stop, or says [DONE] before it, was cut; an error
// event is marked, and is the stream's last (the end follows it without another read,
// as after message_stop); an event that is not a JSON object is the upstream's fault.
func TestMessagesStreamEnds(t *testing.T) {
	head := messagesStream[:strings.Index(messagesStream, "event: message_delta")]
	for name, stream := range map[string]string{
		"cut":         head,
		"done before": head + "data: [DONE]\n\n",
	} {
		if _, err := readMessages(t, stream); !errors.Is(err, ErrStreamCut) {
			t.Errorf("%s: %v, want a cut stream", name, err)
		}
	}
	evs, err := readMessages(t, head+"event: error\n"+`data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`+"\n\n")
	if n := len(evs); err != nil || n < 2 || !evs[n-2].Error || !evs[n-1].Done {
		t.Errorf("error event: %v, events %+v", err, evs)
	}
	if _, err := readMessages(t, head+"event: content_block_delta\ndata: {\"type\":\n\n"); !errors.Is(err, ErrBadResponse) {
		t.Errorf("broken event: %v", err)
	}
	// The last event without its blank line still ends the stream whole.
	if _, err := readMessages(t, strings.TrimSuffix(messagesStream, "\n\n")); err != nil {
		t.Errorf("message_stop without its blank line: %v", err)
	}
}

func TestScanMessage(t *testing.T) {
	var u anthropicUsage
	ok, isErr := scanMessage([]byte(`{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}} `), &u, nil)
	if got := u.usage(); !ok || isErr || got.Input != 15 || got.Output != 3 {
		t.Errorf("ok %v error %v usage %+v", ok, isErr, got)
	}
	if ok, isErr := scanMessage([]byte(`{"type":"error","error":{"type":"api_error","message":"x"}}`), &u, nil); !ok || !isErr {
		t.Errorf("error object: ok %v error %v", ok, isErr)
	}
	for _, bad := range []string{`{"type":"message"`, `{"a":1} {"b":2}`, `[1]`, `<html>`} {
		if ok, _ := scanMessage([]byte(bad), &u, nil); ok {
			t.Errorf("%s read as a message", bad)
		}
	}
}

// An upstream error in the Messages API's shape stays as it is; any other is written
// in it, its message kept.
func TestAnthropicErrorShape(t *testing.T) {
	cases := []struct {
		status   int
		in, want string
	}{
		{529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`},
		{400, `{"error":{"message":"bad max_tokens","type":"invalid_request_error","code":null}}`, `{"type":"error","error":{"type":"invalid_request_error","message":"bad max_tokens"}}`},
		{400, `{"object":"error","message":"flat vLLM","type":"BadRequestError","code":400}`, `{"type":"error","error":{"type":"invalid_request_error","message":"flat vLLM"}}`},
		{404, `{"detail":"Not Found"}`, `{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}`},
		{502, `<html>bad gateway</html>`, `{"type":"error","error":{"type":"api_error","message":"The upstream model server answered 502 Bad Gateway."}}`},
		{429, `{"error":"slow down"}`, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`},
		{404, `{"type":"error","error":{"type":"NotFoundError","message":"The model x does not exist."}}`, `{"type":"error","error":{"type":"not_found_error","message":"The model x does not exist."}}`},
		{400, `{"error":{"message":"Field required","type":"Bad Request","param":null,"code":400}}`, `{"type":"error","error":{"type":"invalid_request_error","message":"Field required"}}`},
	}
	for _, c := range cases {
		var out fasthttp.Response
		out.SetStatusCode(c.status)
		out.SetBodyString(c.in)
		AnthropicErrorShape(&out, nil)
		if got := string(out.Body()); got != c.want {
			t.Errorf("%d %s:\n got %s\nwant %s", c.status, c.in, got, c.want)
		}
	}
}

// A Messages API call hashes its system prompt, then its messages, as a Responses
// call hashes its instructions and input: text blocks as their text.
func TestPrefixHashMessages(t *testing.T) {
	hash := func(body string) uint64 {
		t.Helper()
		h, ok := prefixHash(&Call{Kind: Messages, Body: []byte(body)}, 512)
		if !ok {
			t.Fatalf("no prompt in %s", body)
		}
		return h
	}
	blocks := hash(`{"model":"m","max_tokens":9,"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"What is a gateway?"}]}]}`)
	plain := hash(`{"max_tokens":9,"messages":[{"role":"user","content":"What is a gateway?"}],"system":"Be brief.","model":"m"}`)
	other := hash(`{"model":"m","max_tokens":9,"system":"Be verbose.","messages":[{"role":"user","content":"What is a gateway?"}]}`)
	if blocks != plain || blocks == other {
		t.Errorf("text blocks %x, plain text %x, another system prompt %x", blocks, plain, other)
	}
}

// A Messages API call is bounded by its web search tools' max_uses, none with
// tool_choice none or without max_uses.
func TestWebSearchBoundMessages(t *testing.T) {
	cases := []struct {
		body string
		want int64
	}{
		{`{"model":"m","tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}]}`, 5},
		{`{"model":"m","tools":[{"name":"f","input_schema":{"type":"object"}},{"type":"web_search_20260209","name":"web_search","max_uses":3}]}`, 3},
		{`{"model":"m","tools":[{"type":"web_search_20250305","name":"web_search"}]}`, 0},
		{`{"model":"m","tool_choice":{"type":"none"},"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}]}`, 0},
		{`{"model":"m","tool_choice":{"type":"auto"},"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":2}]}`, 2},
		{`{"model":"m","tools":[{"type":"web_fetch_20250910","name":"web_fetch","max_uses":4}]}`, 0},
		{`{"model":"m"}`, 0},
	}
	for _, c := range cases {
		if got := WebSearchBound(Messages, []byte(c.body)); got != c.want {
			t.Errorf("%s: %d, want %d", c.body, got, c.want)
		}
	}
}

func TestMessagesKinds(t *testing.T) {
	for _, c := range []struct {
		k          Kind
		name, path string
		generates  bool
	}{
		{Messages, "messages", "/messages", true},
		{CountTokens, "count_tokens", "/messages/count_tokens", false},
	} {
		if c.k.String() != c.name || c.k.Path() != c.path || c.k.Generates() != c.generates || c.k.Endpoint() != Chat || !c.k.Anthropic() {
			t.Errorf("%s: %q %q generates %v endpoint %s anthropic %v", c.name, c.k.String(), c.k.Path(), c.k.Generates(), c.k.Endpoint(), c.k.Anthropic())
		}
	}
	for k := Chat; k < KindCount; k++ {
		if k.Anthropic() != (k == Messages || k == CountTokens) {
			t.Errorf("%s: Anthropic %v", k, k.Anthropic())
		}
	}
}

// vLLM serves its tokenizer at its root: a base URL's last /v1 is left out.
func TestRootOperationURL(t *testing.T) {
	for base, want := range map[string]string{
		"http://vllm:8000/v1":             "http://vllm:8000/tokenize",
		"http://vllm:8000/v1/":            "http://vllm:8000/tokenize",
		"http://vllm:8000":                "http://vllm:8000/tokenize",
		"https://h/models/llama/v1?sig=x": "https://h/models/llama/tokenize?sig=x",
		"http://h/v1beta":                 "http://h/v1beta/tokenize",
	} {
		if got := rootOperationURL(base, "/tokenize"); got != want {
			t.Errorf("%s: %s, want %s", base, got, want)
		}
	}
}
