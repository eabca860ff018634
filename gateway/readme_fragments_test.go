package gateway

import (
	"os"
	"strings"
	"testing"
)

// README's fragments (replica pools, rate limits, A/B and canaries, tracing) are what
// operators paste; TestReadmeConfig only checks the Configuration block. Each fragment,
// completed with the backends and endpoint it leaves out, must validate, or the
// documentation teaches keys the gateway refuses.
func TestReadmeFragmentsValidate(t *testing.T) {
	src, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for rest := string(src); ; {
		_, after, ok := strings.Cut(rest, "```yaml\n")
		if !ok {
			break
		}
		b, tail, _ := strings.Cut(after, "```")
		blocks = append(blocks, b)
		rest = tail
	}
	if len(blocks) != 7 {
		t.Fatalf("found %d yaml blocks in README, want 7 (update this test)", len(blocks))
	}
	base := "backends:\n  llama: {provider: mock, model: m}\n  llama-v2: {provider: mock, model: m2}\n"
	ep := "endpoints:\n  - {name: chat, type: chat, routes: [{backend: llama}]}\n"
	// A spend budget (usd) needs a backend with a price.
	priced := strings.Replace(base, "model: m}", "model: m, pricing: {input_per_million: 0.1, output_per_million: 0.2}}", 1)
	frags := map[string]string{
		"coding agents": blocks[0],
		"audio":         blocks[1],
		"replica pools": blocks[2] + ep,
		"rate limits":   priced + strings.Replace(blocks[4], "    ...\n", "    type: chat\n    routes: [{backend: llama}]\n", 1),
		"canary":        base + blocks[5],
		"tracing":       base + ep + blocks[6],
	}
	for name, y := range frags {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseConfig("README.md", []byte(y), env(map[string]string{"TEAM_A_KEY": "k", "ANTHROPIC_API_KEY": "sk-ant"})); err != nil {
				t.Fatalf("%v\n---\n%s", err, y)
			}
		})
	}
}
