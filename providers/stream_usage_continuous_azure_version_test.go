package providers

import (
	"errors"
	"strings"
	"testing"
)

// An azure backend whose api_version predates stream_options (2024-09-01-preview)
// streams without usage unless stream_usage says true, as one with stream_usage:
// false does: stream_usage_continuous: true there asks for nothing, and is refused
// as it is next to stream_usage: false, naming the key and the version. A later or
// default api_version, or stream_usage: true, takes it.
func TestStreamUsageContinuousAzureOldVersion(t *testing.T) {
	on := true
	for _, c := range []struct {
		name    string
		version string
		usage   *bool
		err     string
	}{
		{"old api_version", "2024-06-01", nil, "stream_usage_continuous: needs stream_usage: continuous_usage_stats comes with include_usage, which api_version 2024-06-01"},
		{"old api_version, stream_usage true", "2024-06-01", &on, ""},
		{"api_version taking stream_options", "2024-10-21", nil, ""},
		{"default api_version", "", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Provider: "azure", BaseURL: "https://r.openai.azure.com", Model: "m", Deployment: "d",
				APIVersion: c.version, StreamUsage: c.usage, StreamUsageContinuous: &on}
			err := cfg.Validate()
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				b := newTestBackend(t, cfg)
				if opts, cont := b.msgsStreamOptions(); string(opts) != string(continuousUsageJSON) || !cont {
					t.Errorf("stream_options %s (continuous %v), want %s", opts, cont, continuousUsageJSON)
				}
				return
			}
			var fe *FieldError
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &fe) || fe.Key() != "stream_usage_continuous" {
				t.Fatalf("error %v, want %q", err, c.err)
			}
		})
	}
}
