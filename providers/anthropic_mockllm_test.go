package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
)

// startMockAnthropic runs mockllm speaking the Messages API on a loopback port and
// returns an anthropic backend pointed at it.
func startMockAnthropic(t *testing.T) (*Backend, *mockllm.Server) {
	t.Helper()
	srv, err := mockllm.New(mockllm.Options{API: mockllm.APIAnthropic, Model: "claude-mock", APIKey: "sk-ant-e2e",
		Seed: 7, MaxTokens: 24, Sleep: func(time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close(); <-done })
	cfg := Config{Provider: "anthropic", BaseURL: "http://" + ln.Addr().String() + "/v1", Model: "claude-mock", APIKey: "sk-ant-e2e"}
	return newTestBackend(t, cfg), srv
}

const toolsBody = `{"model":"chat","messages":[{"role":"system","content":"Use tools."},{"role":"user","content":"What is the weather in Paris? Use get_weather."}],` +
	`"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}}],"tool_choice":"auto"%s}`

func withStream(body string, stream bool) string {
	extra := ""
	if stream {
		extra = `,"stream":true`
	}
	return fmtBody(body, extra)
}

func fmtBody(body, extra string) string {
	i := bytes.Index([]byte(body), []byte("%s"))
	if i < 0 {
		return body
	}
	return body[:i] + extra + body[i+2:]
}

func sendChat(t *testing.T, b *Backend, body string) (openai.ChatCompletion, Usage) {
	t.Helper()
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(body, false), &out, &res); err != nil {
		t.Fatalf("%v: %s", err, out.Body())
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(out.Body(), &cc); err != nil {
		t.Fatalf("SDK cannot read %s: %v", out.Body(), err)
	}
	return cc, res.Usage
}

func streamChat(t *testing.T, b *Backend, body string) (openai.ChatCompletionAccumulator, Usage, int) {
	t.Helper()
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(body, true), &out, &res); err != nil {
		t.Fatalf("%v: %s", err, out.Body())
	}
	defer res.Stream.Close()
	var acc openai.ChatCompletionAccumulator
	var usage Usage
	content, done := 0, false
	for range 10000 {
		var ev Event
		err := res.Stream.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if done {
			t.Fatal("event after [DONE]")
		}
		if ev.KeepAlive {
			continue
		}
		if ev.Done {
			done = true
			continue
		}
		if ev.HasUsage {
			usage = ev.Usage
		}
		if ev.Content {
			content++
		}
		var chunk openai.ChatCompletionChunk
		if err := json.Unmarshal(ev.Data, &chunk); err != nil {
			t.Fatalf("SDK cannot read %s: %v", ev.Data, err)
		}
		if !acc.AddChunk(chunk) {
			t.Fatalf("accumulator refused %s", ev.Data)
		}
	}
	if !done {
		t.Fatal("stream without [DONE]")
	}
	return acc, usage, content
}

func TestAnthropicAgainstMockllm(t *testing.T) {
	b, srv := startMockAnthropic(t)

	t.Run("text, streamed and not", func(t *testing.T) {
		body := `{"model":"chat","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Tell me a story"}],"max_tokens":12%s}`
		cc, u := sendChat(t, b, fmtBody(body, ""))
		st := srv.Stats()
		if st.LastPath != "/v1/messages" || st.LastHeaders.Get("X-Api-Key") != "sk-ant-e2e" || st.LastHeaders.Get("Anthropic-Version") != "2023-06-01" {
			t.Errorf("mockllm saw %s %v", st.LastPath, st.LastHeaders)
		}
		msg := cc.Choices[0].Message
		if msg.Content == "" || cc.Model != "claude-mock" || u.Input == 0 || u.Output == 0 || cc.Usage.TotalTokens != u.Input+u.Output {
			t.Errorf("answer %+v usage %+v", cc, u)
		}
		acc, su, content := streamChat(t, b, withStream(body, true))
		if got := acc.Choices[0].Message.Content; got != msg.Content {
			t.Errorf("streamed %q, not streamed %q", got, msg.Content)
		}
		if acc.Choices[0].FinishReason != cc.Choices[0].FinishReason || su != u || content == 0 {
			t.Errorf("stream finish %q usage %+v (%d content chunks), want %q %+v",
				acc.Choices[0].FinishReason, su, content, cc.Choices[0].FinishReason, u)
		}
	})

	t.Run("tool call, streamed and not", func(t *testing.T) {
		cc, _ := sendChat(t, b, withStream(toolsBody, false))
		calls := cc.Choices[0].Message.ToolCalls
		if cc.Choices[0].FinishReason != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "get_weather" {
			t.Fatalf("answer %+v", cc.Choices[0])
		}
		var args map[string]any
		if err := json.Unmarshal([]byte(calls[0].Function.Arguments), &args); err != nil || args["city"] == nil {
			t.Errorf("arguments %q: %v", calls[0].Function.Arguments, err)
		}
		acc, _, _ := streamChat(t, b, withStream(toolsBody, true))
		sc := acc.Choices[0].Message.ToolCalls
		// Ids are fresh per answer; the call itself is not.
		if len(sc) != 1 || !strings.HasPrefix(sc[0].ID, "toolu_") || sc[0].Function.Name != "get_weather" {
			t.Fatalf("streamed tool calls %+v", sc)
		}
		var sargs map[string]any
		if err := json.Unmarshal([]byte(sc[0].Function.Arguments), &sargs); err != nil || !reflect.DeepEqual(sargs, args) {
			t.Errorf("streamed arguments %q, not streamed %q", sc[0].Function.Arguments, calls[0].Function.Arguments)
		}
		if acc.Choices[0].FinishReason != "tool_calls" {
			t.Errorf("streamed finish %q", acc.Choices[0].FinishReason)
		}
	})

	t.Run("tool result answered", func(t *testing.T) {
		body := `{"model":"chat","messages":[{"role":"user","content":"Weather in Paris? get_weather"},` +
			`{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},` +
			`{"role":"tool","tool_call_id":"toolu_1","content":"18C"}],` +
			`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
		cc, _ := sendChat(t, b, body)
		if cc.Choices[0].Message.Content == "" {
			t.Errorf("answer %+v", cc.Choices[0])
		}
	})

	t.Run("upstream errors in OpenAI's shape", func(t *testing.T) {
		cases := []struct {
			name   string
			header string
			status int
			typ    string
		}{
			{"overloaded", "529", 503, "server_error"},
			{"rate limited", "429", 429, "rate_limit_exceeded"},
		}
		for _, c := range cases {
			call := chatCall(`{"model":"chat","messages":[{"role":"user","content":"x"}]}`, false)
			call.Header.Set("X-Mock-Status", c.header)
			call.Header.Set("X-Mock-Retry-After", "2")
			var out fasthttp.Response
			var res Result
			err := b.Send(call, &out, &res)
			var ue *UpstreamError
			if !errors.As(err, &ue) || ue.Status != c.status || ue.RetryAfter != 2*time.Second {
				t.Fatalf("%s: err = %v", c.name, err)
			}
			var e struct {
				Error struct{ Type, Message string }
			}
			if json.Unmarshal(out.Body(), &e) != nil || e.Error.Type != c.typ || e.Error.Message == "" {
				t.Errorf("%s: %d %s", c.name, out.StatusCode(), out.Body())
			}
		}
	})

	t.Run("stream cut", func(t *testing.T) {
		call := chatCall(`{"model":"chat","messages":[{"role":"user","content":"Tell me a story"}],"stream":true}`, true)
		call.Header.Set("X-Mock-Cut-After", "2")
		var out fasthttp.Response
		var res Result
		if err := b.Send(call, &out, &res); err != nil {
			t.Fatal(err)
		}
		defer res.Stream.Close()
		var err error
		for range 100 {
			var ev Event
			if err = res.Stream.Next(&ev); err != nil || ev.Done {
				break
			}
		}
		if !errors.Is(err, ErrStreamCut) {
			t.Errorf("cut stream read as %v", err)
		}
	})
}

func TestAnthropicBadKeyAgainstMockllm(t *testing.T) {
	b, _ := startMockAnthropic(t)
	b2 := newTestBackend(t, Config{Provider: "anthropic", BaseURL: b.Targets()[0].URL, Model: "claude-mock", APIKey: "sk-ant-wrong"})
	var out fasthttp.Response
	var res Result
	err := b2.Send(chatCall(chatBody, false), &out, &res)
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != 401 || !bytes.Contains(out.Body(), []byte(`"type":"authentication_error"`)) {
		t.Fatalf("err = %v, %s", err, out.Body())
	}
	if bytes.Contains(out.Body(), []byte("sk-ant-wrong")) {
		t.Errorf("key echoed: %s", out.Body())
	}
}
