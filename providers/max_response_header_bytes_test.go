package providers

import (
	"slices"
	"testing"
)

// max_response_header_bytes bounds an answer's header: left out (or 0) it is 4KiB;
// under 1KiB, over 1MiB, or negative, it is refused under its key.
func TestMaxResponseHeaderBytesValidated(t *testing.T) {
	const (
		tooSmall = "max_response_header_bytes: must be at least 1KiB: a status line and the fields an API answers with take most of that"
		tooLarge = "max_response_header_bytes: must be at most 1MiB: every open upstream connection holds a buffer this size"
	)
	cases := []struct {
		name string
		v    Size
		want []string
	}{
		{"left out", 0, nil},
		{"1KiB", MinResponseHeaderBytes, nil},
		{"16KiB", 16 << 10, nil},
		{"1MiB", MaxResponseHeaderBytesLimit, nil},
		{"under 1KiB", MinResponseHeaderBytes - 1, []string{tooSmall}},
		{"over 1MiB", MaxResponseHeaderBytesLimit + 1, []string{tooLarge}},
		{"negative", -1, []string{"max_response_header_bytes: must not be negative"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Provider: "openai", BaseURL: "http://127.0.0.1:8000/v1", Model: "m", MaxResponseHeaderBytes: c.v}
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

// The backend's clients read an answer's header into a buffer of
// max_response_header_bytes: its requests' and, with active health checks, its
// checks' and load reads'.
func TestMaxResponseHeaderBytesInForce(t *testing.T) {
	for _, c := range []struct {
		v    Size
		want int
	}{{0, 4 << 10}, {16 << 10, 16 << 10}, {1 << 10, 1 << 10}} {
		cfg := Config{Provider: "openai", BaseURL: "http://127.0.0.1:8000/v1", Model: "m", MaxResponseHeaderBytes: c.v,
			Health: HealthConfig{Path: "/health"}}
		b, err := New("up", cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		if got := b.targets[0].client.ReadBufferSize; got != c.want {
			t.Errorf("max_response_header_bytes %d: requests' read buffer %d, want %d", c.v, got, c.want)
		}
		if len(b.pool.checkers) != 1 {
			t.Fatalf("%d checkers, want 1", len(b.pool.checkers))
		}
		if got := b.pool.checkers[0].ReadBufferSize; got != c.want {
			t.Errorf("max_response_header_bytes %d: checks' read buffer %d, want %d", c.v, got, c.want)
		}
	}
}
