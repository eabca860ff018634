package providers

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// Anthropic names the tier that served an answer in usage.service_tier (standard,
// priority, batch): it prices the answer as an OpenAI answer's service_tier does.
func TestAnthropicServiceTier(t *testing.T) {
	pricing := Pricing{InputPerMillion: 3, OutputPerMillion: 15, Tiers: map[string]TierPricing{
		"priority": {InputPerMillion: price(6), OutputPerMillion: price(30)},
	}}

	t.Run("answer", func(t *testing.T) {
		body := `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,` +
			`"usage":{"input_tokens":1000000,"output_tokens":1000000,"service_tier":"priority"}}`
		var u Usage
		if _, ok := appendChatCompletion(nil, []byte(body), 1, &u, nil); !ok {
			t.Fatal("answer refused")
		}
		if got := u.Tier.String(); got != "priority" {
			t.Fatalf("tier %q, want priority", got)
		}
		if got := pricing.Cost(u); got != 36 {
			t.Errorf("cost %v, want 36 (priority prices)", got)
		}
	})

	t.Run("stream", func(t *testing.T) {
		// message_start names the tier; message_delta's usage does not repeat it.
		in := "event: message_start\ndata: " + `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,` +
			`"usage":{"input_tokens":1000000,"output_tokens":1,"service_tier":"priority"}}}` + "\n\n" +
			"event: content_block_start\ndata: " + `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
			"event: content_block_delta\ndata: " + `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}` + "\n\n" +
			"event: content_block_stop\ndata: " + `{"type":"content_block_stop","index":0}` + "\n\n" +
			"event: message_delta\ndata: " + `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":1000000}}` + "\n\n" +
			"event: message_stop\ndata: " + `{"type":"message_stop"}` + "\n\n"
		evs, err := readStream(in, 64)
		if err != nil {
			t.Fatal(err)
		}
		var got []Usage
		for _, ev := range evs {
			if ev.HasUsage {
				got = append(got, ev.Usage)
			}
		}
		if len(got) != 1 {
			t.Fatalf("%d usage events, want 1", len(got))
		}
		if got[0].Tier.String() != "priority" || pricing.Cost(got[0]) != 36 {
			t.Errorf("usage %+v (tier %q), cost %v: want tier priority, cost 36", got[0], got[0].Tier.String(), pricing.Cost(got[0]))
		}
	})

	t.Run("standard and none", func(t *testing.T) {
		for _, raw := range []string{`{"input_tokens":1000000,"output_tokens":1000000,"service_tier":"standard"}`, `{"input_tokens":1000000,"output_tokens":1000000}`, `{"input_tokens":1000000,"output_tokens":1000000,"service_tier":null}`} {
			var a anthropicUsage
			a.read([]byte(raw))
			if got := pricing.Cost(a.usage()); got != 18 {
				t.Errorf("%s: cost %v, want 18 (top-level prices)", raw, got)
			}
		}
	})
}

// TestAnthropicServiceTierTranslated: the translated answer names the tier that served
// it in service_tier, as OpenAI's answers do, in OpenAI's words: Anthropic's standard
// is default, priority and batch stay (LiteLLM maps no tier: standard is what OpenAI
// calls default). A buffered answer has it after usage; a stream's chunks after model,
// each from the event whose usage first names it. No tier named, no member.
func TestAnthropicServiceTierTranslated(t *testing.T) {
	cases := []struct{ usage, want string }{
		{`"service_tier":"standard"`, "default"},
		{`"service_tier":"priority"`, "priority"},
		{`"service_tier":"batch"`, "batch"},
		{`"service_tier":"pri\u006frity"`, "priority"},
		{`"service_tier":null`, ""},
		{`"service_tier":""`, ""},
		{`"server_tool_use":{"web_search_requests":0}`, ""},
	}
	for _, c := range cases {
		t.Run("answer "+c.usage, func(t *testing.T) {
			body := `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,` +
				`"usage":{"input_tokens":10,"output_tokens":2,` + c.usage + `}}`
			var u Usage
			out, ok := appendChatCompletion(nil, []byte(body), 1, &u, nil)
			if !ok {
				t.Fatal("answer refused")
			}
			var cc openai.ChatCompletion
			if err := json.Unmarshal(out, &cc); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if string(cc.ServiceTier) != c.want || u.Tier.String() != c.want || cc.JSON.ServiceTier.Valid() != (c.want != "") {
				t.Errorf("service_tier %q (usage's %q) in %s, want %q", cc.ServiceTier, u.Tier.String(), out, c.want)
			}
		})
		t.Run("stream "+c.usage, func(t *testing.T) {
			evs, err := readStream(tierStream(`,`+c.usage, ""), 64)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs[:len(evs)-1] {
				var ch openai.ChatCompletionChunk
				if err := json.Unmarshal(ev.Data, &ch); err != nil {
					t.Fatalf("%s: %v", ev.Data, err)
				}
				if string(ch.ServiceTier) != c.want || ch.JSON.ServiceTier.Valid() != (c.want != "") {
					t.Errorf("chunk %s: service_tier %q, want %q", ev.Data, ch.ServiceTier, c.want)
				}
			}
			if u := evs[len(evs)-2].Usage; u.Tier.String() != c.want {
				t.Errorf("usage's tier %q, want %q", u.Tier.String(), c.want)
			}
		})
	}

	t.Run("named first by message_delta", func(t *testing.T) {
		evs, err := readStream(tierStream("", `,"service_tier":"priority"`), 64)
		if err != nil {
			t.Fatal(err)
		}
		var tiers []string
		for _, ev := range evs[:len(evs)-1] {
			var ch openai.ChatCompletionChunk
			if err := json.Unmarshal(ev.Data, &ch); err != nil {
				t.Fatal(err)
			}
			tiers = append(tiers, string(ch.ServiceTier))
		}
		// role, text, finish_reason, usage: the last two after message_delta.
		if strings.Join(tiers, ",") != ",,priority,priority" {
			t.Errorf("tiers by chunk %q", tiers)
		}
	})
}

// tierStream is a Messages API stream with start and delta added to the usage of
// message_start and message_delta.
func tierStream(start, delta string) string {
	return "event: message_start\ndata: " + `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,` +
		`"usage":{"input_tokens":10,"output_tokens":1` + start + `}}}` + "\n\n" +
		"event: content_block_start\ndata: " + `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
		"event: content_block_delta\ndata: " + `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}` + "\n\n" +
		"event: content_block_stop\ndata: " + `{"type":"content_block_stop","index":0}` + "\n\n" +
		"event: message_delta\ndata: " + `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2` + delta + `}}` + "\n\n" +
		"event: message_stop\ndata: " + `{"type":"message_stop"}` + "\n\n"
}
