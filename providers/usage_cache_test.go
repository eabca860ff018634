package providers

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

// TestUsagePromptCache: the prompt cache's share of the input is read from OpenAI's
// prompt_tokens_details.cached_tokens, in a buffered answer and in a stream's usage
// chunk, and believed as the other counts are: a count that is not one, or more cached
// tokens than the prompt has, makes the whole usage unknown.
func TestUsagePromptCache(t *testing.T) {
	cases := []struct {
		name  string
		usage string
		want  Usage
	}{
		{"no details", `{"prompt_tokens":120,"completion_tokens":8,"total_tokens":128}`, Usage{Input: 120, Output: 8}},
		{"vLLM's null details", `{"prompt_tokens":120,"total_tokens":128,"completion_tokens":8,"prompt_tokens_details":null}`, Usage{Input: 120, Output: 8}},
		{"vLLM's prefix cache", `{"prompt_tokens":120,"total_tokens":128,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":96}}`, Usage{Input: 120, Output: 8, CachedInput: 96}},
		{"OpenAI's details before the counts", `{"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`, Usage{Input: 2006, Output: 300, CachedInput: 1024}},
		{"the Responses API's shape", `{"input_tokens":2006,"input_tokens_details":{"cached_tokens":1920},"output_tokens":300,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":2306}`, Usage{Input: 2006, Output: 300, CachedInput: 1920}},
		{"all of the prompt cached", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":64}}`, Usage{Input: 64, Output: 1, CachedInput: 64}},
		{"details without the count", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"audio_tokens":0}}`, Usage{Input: 64, Output: 1}},
		{"null count", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":null}}`, Usage{Input: 64, Output: 1}},
		{"details that are no object", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":[16]}`, Usage{Input: 64, Output: 1}},
		{"more cached than the prompt", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":65}}`, Usage{}},
		{"cached with no prompt count", `{"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":16}}`, Usage{}},
		{"negative count", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":-16}}`, Usage{}},
		{"huge count", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1099511627777}}`, Usage{}},
		{"fractional count", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1.5}}`, Usage{}},
		{"counts written as floats", `{"prompt_tokens":64.0,"completion_tokens":1e1,"prompt_tokens_details":{"cached_tokens":1.6E1}}`, Usage{Input: 64, Output: 10, CachedInput: 16}},
		{"negative zero", `{"prompt_tokens":-0.0,"completion_tokens":2.00}`, Usage{Output: 2}},
		{"a float over 2^40", `{"prompt_tokens":1.1e12,"completion_tokens":1}`, Usage{}},
		{"a float past int64", `{"prompt_tokens":1e300,"completion_tokens":1}`, Usage{}},
		{"a float just off a whole number", `{"prompt_tokens":12.000001,"completion_tokens":1}`, Usage{}},
		{"count as a string", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":"16"}}`, Usage{}},
		{"a bad count then a good one", `{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":-1,"cached_tokens":16}}`, Usage{}},
	}
	for _, c := range cases {
		t.Run(c.name+", answer", func(t *testing.T) {
			body := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":` + c.usage + `}`
			var u Usage
			if ok, _ := scanAnswer([]byte(body), &u); !ok {
				t.Fatalf("answer refused: %s", body)
			}
			if u != c.want {
				t.Errorf("usage %+v, want %+v", u, c.want)
			}
		})
		t.Run(c.name+", stream's usage chunk", func(t *testing.T) {
			chunk := `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":` + c.usage + `}`
			var ev Event
			if !inspectChunk([]byte(chunk), &ev) {
				t.Fatalf("chunk refused: %s", chunk)
			}
			if !ev.UsageOnly || !ev.HasUsage || ev.Usage != c.want {
				t.Errorf("usage-only %v, has usage %v, usage %+v; want the usage chunk with %+v", ev.UsageOnly, ev.HasUsage, ev.Usage, c.want)
			}
		})
	}
}

// TestUsageAnthropicPromptCache: Anthropic's input_tokens leave out the tokens read
// from and written to the prompt cache. Through the translation the client sees
// OpenAI's usage (prompt_tokens with both, cached_tokens the reads, no field for the
// writes, which OpenAI's format has none for); the gateway's Usage keeps both counts
// for cost, in a buffered answer and in a stream, whose message_delta repeats them.
func TestUsageAnthropicPromptCache(t *testing.T) {
	const wantUsage = `{"prompt_tokens":2213,"completion_tokens":9,"total_tokens":2222,"prompt_tokens_details":{"cached_tokens":2000}}`
	want := Usage{Input: 2213, Output: 9, CachedInput: 2000, CacheWrite: 200}

	t.Run("answer", func(t *testing.T) {
		body := `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,` +
			`"usage":{"input_tokens":13,"cache_creation_input_tokens":200,"cache_read_input_tokens":2000,"output_tokens":9}}`
		var u Usage
		out, ok := appendChatCompletion(nil, []byte(body), 1, &u, nil)
		if !ok {
			t.Fatal("answer refused")
		}
		if u != want {
			t.Errorf("usage %+v, want %+v", u, want)
		}
		var cc struct{ Usage json.RawMessage }
		if err := json.Unmarshal(out, &cc); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if string(cc.Usage) != wantUsage {
			t.Errorf("client's usage %s, want %s", cc.Usage, wantUsage)
		}
	})

	t.Run("stream", func(t *testing.T) {
		in := "event: message_start\ndata: " + `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,` +
			`"usage":{"input_tokens":13,"cache_creation_input_tokens":200,"cache_read_input_tokens":2000,"output_tokens":1}}}` + "\n\n" +
			"event: content_block_start\ndata: " + `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
			"event: content_block_delta\ndata: " + `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}` + "\n\n" +
			"event: content_block_stop\ndata: " + `{"type":"content_block_stop","index":0}` + "\n\n" +
			"event: message_delta\ndata: " + `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},` +
			`"usage":{"input_tokens":13,"cache_creation_input_tokens":200,"cache_read_input_tokens":2000,"output_tokens":9}}` + "\n\n" +
			"event: message_stop\ndata: " + `{"type":"message_stop"}` + "\n\n"
		evs, err := readStream(in, 64)
		if err != nil {
			t.Fatal(err)
		}
		var usage []Event
		for _, ev := range evs {
			if ev.HasUsage {
				usage = append(usage, ev)
			}
		}
		if len(usage) != 1 || !usage[0].UsageOnly {
			t.Fatalf("%d usage events, want the one usage chunk: %+v", len(usage), usage)
		}
		if usage[0].Usage != want {
			t.Errorf("usage %+v, want %+v", usage[0].Usage, want)
		}
		var chunk struct {
			Choices []json.RawMessage
			Usage   json.RawMessage
		}
		if err := json.Unmarshal(usage[0].Data, &chunk); err != nil {
			t.Fatalf("%v: %s", err, usage[0].Data)
		}
		if len(chunk.Choices) != 0 || string(chunk.Usage) != wantUsage {
			t.Errorf("client's usage chunk %s, want the usage %s", usage[0].Data, wantUsage)
		}
	})

	t.Run("one-hour writes", func(t *testing.T) {
		// message_start's usage as the API documents it with cache_control ttl 1h.
		var a anthropicUsage
		a.read([]byte(`{"input_tokens":13,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,` +
			`"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":100},"output_tokens":1}`))
		a.read([]byte(`{"output_tokens":9}`))
		want := Usage{Input: 1313, Output: 9, CachedInput: 1000, CacheWrite: 300, CacheWrite1h: 100}
		if u := a.usage(); u != want {
			t.Errorf("usage %+v, want %+v", u, want)
		}
		var b anthropicUsage
		b.read([]byte(`{"input_tokens":13,"cache_creation_input_tokens":30,"cache_creation":{"ephemeral_1h_input_tokens":100},"output_tokens":9}`))
		if u := b.usage(); u != (Usage{}) {
			t.Errorf("more one-hour writes than writes: usage %+v, want unknown", u)
		}
	})

	t.Run("a garbage cache count", func(t *testing.T) {
		var a anthropicUsage
		a.read([]byte(`{"input_tokens":13,"cache_creation_input_tokens":-200,"cache_read_input_tokens":2000,"output_tokens":9}`))
		if u := a.usage(); u != (Usage{}) {
			t.Errorf("usage %+v, want unknown", u)
		}
	})
}

func price(p float64) *float64 { return &p }

// TestPricingPromptCache: the prompt cache's tokens cost their own prices when the
// backend gives them, and the input price when it does not: a config without them
// prices every answer exactly, to the bit, as before they existed.
func TestPricingPromptCache(t *testing.T) {
	// The cost before cached-token prices.
	oldCost := func(p Pricing, u Usage) float64 {
		return (float64(u.Input)*p.InputPerMillion + float64(u.Output)*p.OutputPerMillion) / 1e6
	}
	usages := []Usage{
		{},
		{Input: 12, Output: 345},
		{Input: 2006, Output: 300, CachedInput: 1024},
		{Input: 2213, Output: 9, CachedInput: 2000, CacheWrite: 200},
		{Input: 1 << 40, Output: 1 << 40, CachedInput: 1 << 39, CacheWrite: 1 << 38},
		{Input: 7777777, Output: 3, CachedInput: 7777777},
	}
	t.Run("unset is the input price, exactly", func(t *testing.T) {
		for _, p := range []Pricing{{}, {InputPerMillion: 0.1, OutputPerMillion: 0.2}, {InputPerMillion: 3, OutputPerMillion: 15}, {InputPerMillion: 0.15, OutputPerMillion: 0.6}, {InputPerMillion: 1.0 / 3, OutputPerMillion: math.Pi}} {
			for _, u := range usages {
				if got, want := p.Cost(u), oldCost(p, u); math.Float64bits(got) != math.Float64bits(want) {
					t.Errorf("%+v on %+v: cost %v, want %v as before", p, u, got, want)
				}
			}
		}
	})
	t.Run("set equal to the input price", func(t *testing.T) {
		p := Pricing{InputPerMillion: 0.15, OutputPerMillion: 0.6, CachedInputPerMillion: price(0.15), CacheWritePerMillion: price(0.15)}
		for _, u := range usages {
			if got, want := p.Cost(u), oldCost(p, u); math.Float64bits(got) != math.Float64bits(want) {
				t.Errorf("%+v: cost %v, want %v", u, got, want)
			}
		}
	})
	cases := []struct {
		name string
		p    Pricing
		u    Usage
		want float64
	}{
		// gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million.
		{"OpenAI's cached input at half price", Pricing{InputPerMillion: 0.15, OutputPerMillion: 0.6, CachedInputPerMillion: price(0.075)},
			Usage{Input: 2006, Output: 300, CachedInput: 1024}, (982*0.15 + 1024*0.075 + 300*0.6) / 1e6},
		// Claude Haiku 3.5: $0.80 input, $0.08 cache read, $1 cache write, $4 output.
		{"Anthropic's reads and writes", Pricing{InputPerMillion: 0.8, OutputPerMillion: 4, CachedInputPerMillion: price(0.08), CacheWritePerMillion: price(1)},
			Usage{Input: 2213, Output: 9, CachedInput: 2000, CacheWrite: 200}, (13*0.8 + 2000*0.08 + 200*1 + 9*4) / 1e6},
		{"only the write price set", Pricing{InputPerMillion: 0.8, OutputPerMillion: 4, CacheWritePerMillion: price(1)},
			Usage{Input: 2213, Output: 9, CachedInput: 2000, CacheWrite: 200}, (2013*0.8 + 200*1 + 9*4) / 1e6},
		{"free cached tokens", Pricing{InputPerMillion: 1, OutputPerMillion: 2, CachedInputPerMillion: price(0)},
			Usage{Input: 100, Output: 10, CachedInput: 100}, 20 / 1e6},
		{"no cached tokens, cached price set", Pricing{InputPerMillion: 1, OutputPerMillion: 2, CachedInputPerMillion: price(0.1), CacheWritePerMillion: price(1.25)},
			Usage{Input: 100, Output: 10}, 120 / 1e6},
		// Claude Sonnet 4: $3 input, $3.75 5-minute write, $6 1-hour write, $0.30 read.
		{"one-hour writes at their own price", Pricing{InputPerMillion: 3, OutputPerMillion: 15, CachedInputPerMillion: price(0.3), CacheWritePerMillion: price(3.75), CacheWrite1hPerMillion: price(6)},
			Usage{Input: 1313, Output: 9, CachedInput: 1000, CacheWrite: 300, CacheWrite1h: 100}, (13*3 + 1000*0.3 + 200*3.75 + 100*6 + 9*15) / 1e6},
		{"one-hour writes without their price cost a write's", Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWritePerMillion: price(3.75)},
			Usage{Input: 313, Output: 9, CacheWrite: 300, CacheWrite1h: 100}, (13*3 + 300*3.75 + 9*15) / 1e6},
		{"one-hour price alone", Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWrite1hPerMillion: price(6)},
			Usage{Input: 313, Output: 9, CacheWrite: 300, CacheWrite1h: 100}, (213*3 + 100*6 + 9*15) / 1e6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Cost(c.u); math.Abs(got-c.want) > 1e-12*c.want {
				t.Errorf("cost %v, want %v", got, c.want)
			}
		})
	}
}

// TestPricingPromptCacheValidate: the prompt cache's prices are checked as the other
// prices are, finite and not negative, and may be left out.
func TestPricingPromptCacheValidate(t *testing.T) {
	cases := []struct {
		name    string
		p       Pricing
		wantErr []string
	}{
		{"left out", Pricing{InputPerMillion: 1}, nil},
		{"zero", Pricing{CachedInputPerMillion: price(0), CacheWritePerMillion: price(0)}, nil},
		{"set", Pricing{InputPerMillion: 3, CachedInputPerMillion: price(0.3), CacheWritePerMillion: price(3.75)}, nil},
		{"negative", Pricing{CachedInputPerMillion: price(-0.1), CacheWritePerMillion: price(-1)},
			[]string{"pricing.cached_input_per_million: must be a finite number, 0 or more", "pricing.cache_write_per_million: must be a finite number, 0 or more"}},
		{"not a number", Pricing{CachedInputPerMillion: price(math.NaN())}, []string{"pricing.cached_input_per_million: must be a finite number, 0 or more"}},
		{"infinite", Pricing{CacheWritePerMillion: price(math.Inf(1))}, []string{"pricing.cache_write_per_million: must be a finite number, 0 or more"}},
		{"one-hour negative", Pricing{CacheWrite1hPerMillion: price(-6)}, []string{"pricing.cache_write_1h_per_million: must be a finite number, 0 or more"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Provider: "openai", BaseURL: "http://127.0.0.1:8000/v1", Model: "m", Pricing: c.p}
			var got []string
			for _, err := range flattenErr(cfg.Validate()) {
				if fe, ok := errors.AsType[*FieldError](err); ok && strings.HasPrefix(fe.Key(), "pricing.") {
					got = append(got, fe.Error())
				}
			}
			if strings.Join(got, "\n") != strings.Join(c.wantErr, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.wantErr, "\n"))
			}
		})
	}
}

// FuzzParseUsage: whatever an upstream's usage object holds, the usage read from it
// is either unknown (zero) or counts the gateway can believe: none negative or past
// the bound, and no more cached tokens than prompt tokens.
func FuzzParseUsage(f *testing.F) {
	for _, s := range []string{
		`{"prompt_tokens":120,"total_tokens":128,"completion_tokens":8,"prompt_tokens_details":null}`,
		`{"prompt_tokens":120,"total_tokens":128,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":96}}`,
		`{"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"prompt_tokens":2006,"completion_tokens":300}`,
		`{"input_tokens":2006,"input_tokens_details":{"cached_tokens":1920},"output_tokens":300}`,
		`{"prompt_tokens":64,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":65}}`,
		`{"prompt_tokens":64,"prompt_tokens_details":{"cached_tokens":-1,"cached_tokens":16}}`,
		`{"prompt_tokens":64,"prompt_tokens_details":[{"cached_tokens":16}]}`,
		`{"prompt_tokens":1099511627776,"prompt_tokens_details":{"cached_tokens":1099511627776}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var u Usage
		parseUsage([]byte(raw), &u)
		for _, n := range []int64{u.Input, u.Output, u.CachedInput} {
			if n < 0 || n > maxTokenCount {
				t.Fatalf("%s: usage %+v has a count out of bounds", raw, u)
			}
		}
		if u.CachedInput > u.Input || u.CacheWrite != 0 {
			t.Fatalf("%s: usage %+v", raw, u)
		}
	})
}

// parseUsageBench are the usage objects the hot path meets: vLLM's without the prompt
// cache, and OpenAI's with it.
var parseUsageBench = map[string][]byte{
	"plain":  []byte(`{"prompt_tokens":512,"total_tokens":640,"completion_tokens":128,"prompt_tokens_details":null}`),
	"cached": []byte(`{"prompt_tokens":512,"completion_tokens":128,"total_tokens":640,"prompt_tokens_details":{"cached_tokens":384,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`),
}

// BenchmarkParseUsage reads a buffered answer's or a stream's usage chunk's usage.
func BenchmarkParseUsage(b *testing.B) {
	for _, name := range []string{"plain", "cached"} {
		raw := parseUsageBench[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var u Usage
				if !parseUsage(raw, &u) || u.Input != 512 {
					b.Fatal("not read")
				}
			}
		})
	}
}
