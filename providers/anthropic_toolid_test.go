package providers

import (
	"encoding/json"
	"regexp"
	"strings"
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

// toolTurns is the messages of a translated request, as far as tool ids go.
type toolTurns struct {
	Messages []struct {
		Role    string `json:"role"`
		Content []struct {
			Type      string `json:"type"`
			ID        string `json:"id"`
			ToolUseID string `json:"tool_use_id"`
		} `json:"content"`
	} `json:"messages"`
}

// The Messages API refuses a request in which two tool_use blocks share an id
// ("messages.3.content.0: `tool_use` ids must be unique"), where OpenAI and vLLM take a
// history whose turns reuse a tool call id: each tool message answers the assistant
// message just before it. Servers that number tool calls per answer do so (vLLM's Kimi
// parser writes functions.get_weather:0 in every turn; others write call_0), as does a
// client whose calls came without ids. Each repeat is sent under an id of its own, and
// its tool message answers it under that id; the last case's client sent, in its first
// turn, the very id a repeat would be given.
func TestAnthropicRepeatedToolCallIDsAcrossTurns(t *testing.T) {
	for _, id := range []string{"functions.get_weather:0", "call_0", "", "call_0_m5_0"} {
		t.Run(strings.ReplaceAll(id, ":", "_"), func(t *testing.T) {
			q, _ := json.Marshal(id)
			call := func(city string) string {
				return `{"role":"assistant","content":null,"tool_calls":[{"id":` + string(q) + `,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"` + city + `\"}"}}]}`
			}
			result := func(text string) string {
				return `{"role":"tool","tool_call_id":` + string(q) + `,"content":"` + text + `"}`
			}
			first := call("Paris") + `,` + result("sunny")
			if id == "call_0_m5_0" {
				q, _ = json.Marshal("call_0")
			}
			body := `{"model":"chat","messages":[{"role":"user","content":"Weather in Paris, Rome, Oslo?"},` +
				first + `,` + call("Rome") + `,` + result("rainy") + `,` + call("Oslo") + `,` + result("snow") + `],` +
				`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
			out := anthropicRequest(t, body)
			var m toolTurns
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			results := 0
			var uses []string
			for i, msg := range m.Messages {
				for _, b := range msg.Content {
					if b.Type == "tool_use" {
						seen[b.ID]++
						uses = append(uses, b.ID)
					}
					if b.Type == "tool_result" && i > 0 {
						results++
						// Each tool_result answers a tool_use of the turn just before.
						found := false
						for _, p := range m.Messages[i-1].Content {
							found = found || p.Type == "tool_use" && p.ID == b.ToolUseID
						}
						if !found {
							t.Errorf("messages[%d]: tool_result for %q answers no tool_use of the turn before", i, b.ToolUseID)
						}
					}
				}
			}
			if len(uses) != 3 || results != 3 {
				t.Fatalf("%d tool_use and %d tool_result blocks, want 3 each\n%s", len(uses), results, out)
			}
			for _, u := range uses {
				if !anthropicToolID.MatchString(u) {
					t.Errorf("tool_use id %q does not fit the Messages API's pattern", u)
				}
			}
			for u, n := range seen {
				if n > 1 {
					t.Errorf("tool_use id %q is sent %d times: the Messages API refuses the request (`tool_use` ids must be unique); tool_use ids %q\n%s", u, n, uses, out)
				}
			}
		})
	}
}

// Two parallel tool calls of one answer share an id (calls that came without ids),
// each answered by its tool message in order. The Messages API needs each tool_use
// answered by one tool_result in the next user turn: the repeat is renamed, and the
// tool messages answer the calls in order, not both the renamed one.
func TestAnthropicRepeatedToolCallIDsInOneAnswer(t *testing.T) {
	for _, id := range []string{"", "call_0"} {
		t.Run("id "+id, func(t *testing.T) {
			q, _ := json.Marshal(id)
			body := `{"model":"chat","messages":[{"role":"user","content":"Weather in Paris and Rome?"},` +
				`{"role":"assistant","content":null,"tool_calls":[` +
				`{"id":` + string(q) + `,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
				`{"id":` + string(q) + `,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},` +
				`{"role":"tool","tool_call_id":` + string(q) + `,"content":"sunny"},` +
				`{"role":"tool","tool_call_id":` + string(q) + `,"content":"rainy"}],` +
				`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
			out := anthropicRequest(t, body)
			var m toolTurns
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			uses := map[string]bool{}
			answered := map[string]int{}
			for _, msg := range m.Messages {
				for _, b := range msg.Content {
					switch b.Type {
					case "tool_use":
						uses[b.ID] = true
					case "tool_result":
						answered[b.ToolUseID]++
					}
				}
			}
			if len(uses) != 2 {
				t.Fatalf("tool_use ids %v, want two distinct ones\n%s", uses, out)
			}
			for u := range uses {
				if answered[u] != 1 {
					t.Errorf("tool_use %q is answered by %d tool_result blocks, want 1: the Messages API refuses the request\n%s", u, answered[u], out)
				}
			}
		})
	}
}
