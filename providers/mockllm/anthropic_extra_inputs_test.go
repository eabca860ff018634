package mockllm

import (
	"strings"
	"testing"
)

// TestMessagesExtraInputsRefused: the Messages API refuses members it does not define
// ("n: Extra inputs are not permitted", "stream_options: ...", "response_format: ...",
// "user: ..."), so an OpenAI field a translation leaks is a 400 there, and here.
func TestMessagesExtraInputsRefused(t *testing.T) {
	h := startAnthropic(t)
	for _, extra := range []string{
		`"n":1`,
		`"user":"alice"`,
		`"stream_options":{"include_usage":true}`,
		`"response_format":{"type":"json_object"}`,
		`"frequency_penalty":0.5`,
	} {
		name, _, _ := strings.Cut(extra, ":")
		name = strings.Trim(name, `"`)
		t.Run(name, func(t *testing.T) {
			anthRefused(t, h, messagesBody("hi", extra), name+": Extra inputs are not permitted")
		})
	}
}

// TestMessagesDefinedInputsAccepted: every member the Messages API defines is taken,
// mockllm acting on some and ignoring the rest; the gateway's translation sends those
// of the first case.
func TestMessagesDefinedInputsAccepted(t *testing.T) {
	h := startAnthropic(t)
	for _, tc := range []struct{ name, extra string }{
		{"the translation's members", `"system":[{"type":"text","text":"be brief"}],"metadata":{"user_id":"u1"},"stop_sequences":["END"],` +
			`"temperature":0.5,"top_k":40,"output_config":{"effort":"high"},"stream":false,` + weatherTool + `,"tool_choice":{"type":"auto","disable_parallel_tool_use":true}`},
		{"top_p", `"top_p":0.9`},
		{"service_tier", `"service_tier":"auto"`},
		{"container", `"container":"container_01"`},
		{"mcp_servers", `"mcp_servers":[]`},
		{"context_management", `"context_management":{"edits":[]}`},
		{"inference_geo", `"inference_geo":"us"`},
		{"cache_control", `"cache_control":{"type":"ephemeral"}`},
	} {
		t.Run(tc.name, func(t *testing.T) { anthAccepted(t, h, messagesBody("hi", tc.extra)) })
	}
}
