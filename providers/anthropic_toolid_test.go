package providers

import (
	"encoding/json"
	"regexp"
	"testing"
)

// anthropicToolID is the pattern the Messages API holds tool_use ids (and so the
// tool_use_id of tool results) to; anything else is refused with a 400
// ("messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'").
var anthropicToolID = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// OpenAI places no such limit on tool_call ids, and ids from other backends reach an
// Anthropic backend through fallbacks and canaries within one conversation: vLLM's
// Kimi-K2 and GLM parsers name calls "functions.get_weather:0", agent frameworks and MCP
// clients mint their own ("call.1", "srv/tool#2"). The translation sends ids the API
// accepts, and keep each tool_result pointing at its tool_use.
func TestAnthropicToolCallIDsFitAPIPattern(t *testing.T) {
	ids := []string{"functions.get_weather:0", "functions.get_weather:1", "call.1", "srv/tool#2"}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			q, _ := json.Marshal(id)
			body := `{"model":"chat","messages":[{"role":"user","content":"Weather in Paris?"},` +
				`{"role":"assistant","content":null,"tool_calls":[{"id":` + string(q) + `,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},` +
				`{"role":"tool","tool_call_id":` + string(q) + `,"content":"18C"}],` +
				`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
			out := anthropicRequest(t, body)
			var m struct {
				Messages []struct {
					Content []struct {
						Type      string `json:"type"`
						ID        string `json:"id"`
						ToolUseID string `json:"tool_use_id"`
					} `json:"content"`
				} `json:"messages"`
			}
			if err := json.Unmarshal(out, &m); err != nil || len(m.Messages) != 3 {
				t.Fatalf("translation %s: %v", out, err)
			}
			use, result := m.Messages[1].Content[0], m.Messages[2].Content[0]
			if use.Type != "tool_use" || result.Type != "tool_result" {
				t.Fatalf("translation %s", out)
			}
			if !anthropicToolID.MatchString(use.ID) || !anthropicToolID.MatchString(result.ToolUseID) {
				t.Errorf("tool_use.id %q / tool_result.tool_use_id %q: the Messages API refuses ids outside ^[a-zA-Z0-9_-]+$ with a 400", use.ID, result.ToolUseID)
			}
			if use.ID != result.ToolUseID {
				t.Errorf("tool_result %q no longer points at tool_use %q", result.ToolUseID, use.ID)
			}
		})
	}
}
