package main

import (
	"context"
	"encoding/json"
	"net"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
)

// A Messages API answer is one object with "type":"message" and a usage holding
// output_tokens; anything else a 200 might carry is a bad body.
func TestIsMessage(t *testing.T) {
	cases := []struct {
		name string
		body string
		want bool
	}{
		{"mockllm's answer (vLLM's shape)", messageAnswer, true},
		{"Anthropic's answer", `{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hi"}],` +
			`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}`, true},
		{"space around it", " \n" + messageAnswer + "\n", true},
		{"the API's error body", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"usage":{"output_tokens":0}}`, false},
		{"a chat completion", `{"id":"c1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"output_tokens":1}}`, false},
		{"no usage", `{"id":"m1","type":"message","content":[]}`, false},
		{"usage without output_tokens", `{"id":"m1","type":"message","content":[],"usage":{"input_tokens":3}}`, false},
		{"usage not an object", `{"id":"m1","type":"message","content":[],"usage":16}`, false},
		{"type and usage nested only", `{"message":{"type":"message","usage":{"output_tokens":1}}}`, false},
		{"type another string", `{"type":"message_start","usage":{"output_tokens":1}}`, false},
		{"cut short", messageAnswer[:len(messageAnswer)-1], false},
		{"two objects", messageAnswer + messageAnswer, false},
		{"an event stream", "event: message_start\ndata: " + messageAnswer + "\n\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := isMessage([]byte(tc.body)); got != tc.want {
				t.Fatalf("isMessage(%s) = %v, want %v", tc.body, got, tc.want)
			}
		})
	}
}

// The messages load's body is what mockllm (the Messages API as vLLM serves it)
// takes: max_tokens, a system prompt and a user turn of text blocks, sent with
// anthropic-version; every answer is a message of max_tokens tokens, and the load
// counts them all as answers, none failed.
func TestMessagesLoadAgainstMockllm(t *testing.T) {
	const maxTokens = 16
	srv, err := mockllm.New(mockllm.Options{Model: mockModel, MaxTokens: upstreamCap(maxTokens)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	addr := ln.Addr().String()

	var in struct {
		Model     string `json:"model"`
		MaxTokens int    `json:"max_tokens"`
		System    string `json:"system"`
		Messages  []struct {
			Role    string `json:"role"`
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(requestBody(kindMessages, mockModel, maxTokens), &in); err != nil {
		t.Fatal(err)
	}
	if in.Model != mockModel || in.MaxTokens != maxTokens || in.System == "" || len(in.Messages) != 1 ||
		in.Messages[0].Role != "user" || len(in.Messages[0].Content) != 1 ||
		in.Messages[0].Content[0].Type != "text" || in.Messages[0].Content[0].Text == "" {
		t.Fatalf("body: %+v; want model, max_tokens, a system prompt and one user turn of one text block", in)
	}

	tg := &target{Name: pathDirect, Addr: addr, Model: mockModel}
	if err := probe(tg, kindMessages, maxTokens); err != nil {
		t.Fatal(err)
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	setKindHeaders(&req.Header, kindMessages)
	if got := string(req.Header.Peek("anthropic-version")); got != "2023-06-01" {
		t.Fatalf("anthropic-version %q", got)
	}
	req.SetRequestURI("http://" + addr + requestPath(kindMessages))
	req.SetBody(requestBody(kindMessages, mockModel, maxTokens))
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Type    string `json:"type"`
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		StopReason string `json:"stop_reason"`
		Usage      struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(resp.Body(), &out); err != nil || resp.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("status %d, %v: %s", resp.StatusCode(), err, resp.Body())
	}
	if !isAnswer(kindMessages, resp.Body()) {
		t.Fatalf("mockllm's answer fails the check: %s", resp.Body())
	}
	if out.Type != "message" || out.Role != "assistant" || len(out.Content) != 1 || out.Content[0].Text == "" ||
		out.StopReason != "max_tokens" || out.Usage.InputTokens == 0 || out.Usage.OutputTokens != maxTokens {
		t.Fatalf("want a message of %d tokens, stopped at max_tokens: %s", maxTokens, resp.Body())
	}

	spec := shortSpec(kindMessages)
	spec.MaxTokens = maxTokens
	tg.client = newClient(addr, spec.Conns, spec.Timeout, false, 0)
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.Measured == 0 || st.OK != st.Measured || st.Errs.Total()+st.WarmupErrs.Total() != 0 {
		t.Fatalf("ok %d of %d measured, errors %v, in warm-up %v", st.OK, st.Measured, st.Errs, st.WarmupErrs)
	}
	tg.client.CloseIdleConnections()
}

// The messages scenario is its own kind, in the list --smoke and all run.
func TestMessagesScenario(t *testing.T) {
	sc := lookupScenario("messages")
	if sc.kind != kindMessages || sc.redis || sc.tracing || sc.ab || sc.baseline || sc.closed {
		t.Fatalf("scenario %+v, want the plain messages load", sc)
	}
	if kindMessages.String() != "messages" || requestPath(kindMessages) != "/v1/messages" {
		t.Fatalf("kind %s at %s", kindMessages, requestPath(kindMessages))
	}
	o, err := parseFlags([]string{"--smoke"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range o.Scenarios {
		if s == "messages" {
			return
		}
	}
	t.Fatalf("--smoke runs %v, not messages", o.Scenarios)
}
