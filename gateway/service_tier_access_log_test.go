package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestAccessLineServiceTier: the access line names the service tier after cost_usd
// when the answer named one, and has no service_tier otherwise, written by the
// gateway's encoder as slog writes it, through slog's text handler too.
func TestAccessLineServiceTier(t *testing.T) {
	cases := []struct {
		name, tier string
	}{
		{"flex", "flex"},
		{"none", ""},
		{"a tier needing escapes", "fl\"ex\u2028<b>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := accessEntry{requestID: "r-1", endpoint: "chat", backend: "gpt", status: 200, inputTokens: 2006, outputTokens: 300, cachedTokens: 1024, cost: 0.00162, serviceTier: c.tier}
			fast, slow := fastAccessLine(t, &e), slogAccessLine(t, &e)
			if fast != slow {
				t.Errorf("\n fast %s\n slog %s", fast, slow)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(`{"time":""`+fast), &m); err != nil {
				t.Fatalf("not JSON: %v: %s", err, fast)
			}
			got, ok := m["service_tier"]
			switch {
			case c.tier == "" && ok:
				t.Errorf("service_tier %v in the line of an answer naming none: %s", got, fast)
			case c.tier != "" && got != c.tier:
				t.Errorf("service_tier %v, want %q: %s", got, c.tier, fast)
			case c.tier != "" && !strings.Contains(fast, `"cost_usd":0.00162,"service_tier":`):
				t.Errorf("service_tier not after cost_usd: %s", fast)
			}
			var text bytes.Buffer
			logAccess(slog.New(slog.NewTextHandler(&text, nil)), &e)
			if has := strings.Contains(text.String(), "service_tier="); has != (c.tier != "") {
				t.Errorf("text line %q: service_tier written %v", text.String(), has)
			}
		})
	}
}
