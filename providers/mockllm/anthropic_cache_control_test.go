package mockllm

import (
	"strings"
	"testing"
)

// cachedBlocks are n text blocks, each with a cache breakpoint.
func cachedBlocks(n int) string {
	var blocks []string
	for i := range n {
		blocks = append(blocks, `{"type":"text","text":"part `+string(rune('a'+i))+`","cache_control":{"type":"ephemeral"}}`)
	}
	return "[" + strings.Join(blocks, ",") + "]"
}

// TestMessagesCacheControlBreakpoints: a request may mark at most four blocks with
// cache_control, counted over tools, system and messages: "A maximum of 4 blocks with
// cache_control may be provided. Found 5."
func TestMessagesCacheControlBreakpoints(t *testing.T) {
	h := startAnthropic(t)
	t.Run("five in one message", func(t *testing.T) {
		body := `{"model":"claude-mock","max_tokens":50,"messages":[{"role":"user","content":` + cachedBlocks(5) + `}]}`
		anthRefused(t, h, body, "A maximum of 4 blocks with cache_control may be provided. Found 5.")
	})
	t.Run("over tools, system, messages and a tool result", func(t *testing.T) {
		body := `{"model":"claude-mock","max_tokens":50,"system":` + cachedBlocks(1) + `,` +
			`"tools":[{"name":"get_weather","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],` +
			`"messages":[{"role":"user","content":` + cachedBlocks(1) + `},` +
			`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":` + cachedBlocks(1) + `,"cache_control":{"type":"ephemeral"}}]}]}`
		anthRefused(t, h, body, "Found 5.")
	})
	t.Run("four are taken", func(t *testing.T) {
		anthAccepted(t, h, `{"model":"claude-mock","max_tokens":50,"system":`+cachedBlocks(1)+`,"messages":[{"role":"user","content":`+cachedBlocks(3)+`}]}`)
	})
}
