package providers

import (
	"bytes"
	"testing"
)

// OpenAI's data residency hosts (eu.api.openai.com, us.api.openai.com) serve OpenAI's
// own API, which refuses continuous_usage_stats as api.openai.com does, and so does a
// pool whose targets are on it: a bridged Messages stream on such a backend asks for
// the usage chunk alone by default, as on api.openai.com. Other hosts (vLLM replicas,
// a name that only begins like OpenAI's) still ask for usage on every chunk. Azure's
// OpenAI hosts, reached with provider openai (its v1 API), refuse it alike.
func TestStreamUsageContinuousOpenAIHosts(t *testing.T) {
	for _, c := range []struct {
		name    string
		base    string
		targets []string
		want    bool
	}{
		{"EU data residency", "https://eu.api.openai.com/v1", nil, false},
		{"US data residency", "https://us.api.openai.com/v1", nil, false},
		{"regional, upper case, port", "https://EU.API.OpenAI.com:443/v1", nil, false},
		{"fully qualified", "https://api.openai.com./v1", nil, false},
		{"targets on OpenAI's API", "", []string{"https://api.openai.com/v1", "https://eu.api.openai.com/v1"}, false},
		{"a target on OpenAI's API", "", []string{"http://vllm-0:8000/v1", "https://api.openai.com/v1"}, false},
		{"vLLM replicas", "", []string{"http://vllm-0:8000/v1", "http://vllm-1:8000/v1"}, true},
		{"a host named like OpenAI's", "https://api.openai.com.example/v1", nil, true},
		{"a host ending like OpenAI's", "https://myapi.openai.com/v1", nil, true},
		{"Azure's v1 API", "https://res.openai.azure.com/openai/v1", nil, false},
		{"Azure AI Foundry", "https://res.services.ai.azure.com/openai/v1", nil, false},
		{"Azure AI services", "https://res.cognitiveservices.azure.com/openai/v1", nil, false},
		{"a host named like Azure's", "https://openai.azure.com.example/v1", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Provider: "openai", BaseURL: c.base, Targets: c.targets, Model: "m", MessagesAPI: "chat"}
			if got := cfg.streamUsageContinuous(); got != c.want {
				t.Errorf("streamUsageContinuous %v, want %v", got, c.want)
			}
			b := newTestBackend(t, cfg)
			want := includeUsageJSON
			if c.want {
				want = continuousUsageJSON
			}
			if opts, cont := b.msgsStreamOptions(); !bytes.Equal(opts, want) || cont != c.want {
				t.Errorf("stream_options %s (continuous %v), want %s", opts, cont, want)
			}
		})
	}
}
