package providers

import (
	"slices"
	"testing"
)

// max_response_bytes bounds a buffered answer: left out (or 0) it is 64MiB; over
// 1GiB, or negative, it is refused under its key.
func TestMaxResponseBytesValidated(t *testing.T) {
	const tooLarge = "max_response_bytes: must be at most 1GiB: the answer is held whole in memory"
	cases := []struct {
		name string
		v    Size
		want []string
	}{
		{"left out", 0, nil},
		{"128MiB", 128 << 20, nil},
		{"1GiB", MaxResponseBytesLimit, nil},
		{"over 1GiB", MaxResponseBytesLimit + 1, []string{tooLarge}},
		{"negative", -1, []string{"max_response_bytes: must not be negative"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Provider: "openai", BaseURL: "http://127.0.0.1:8000/v1", Model: "m", MaxResponseBytes: c.v}
			var got []string
			for _, fe := range fieldErrors(t, cfg.Validate()) {
				got = append(got, fe.Error())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("problems %q, want %q", got, c.want)
			}
		})
	}
}

func TestMaxResponseBytesDefault(t *testing.T) {
	for _, c := range []struct {
		v, want Size
	}{{0, 64 << 20}, {128 << 20, 128 << 20}, {1 << 10, 1 << 10}} {
		cfg := Config{MaxResponseBytes: c.v}
		if got := cfg.withDefaults().MaxResponseBytes; got != c.want {
			t.Errorf("max_response_bytes %d: in force %d, want %d", c.v, got, c.want)
		}
	}
}
