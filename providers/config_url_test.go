package providers

import (
	"slices"
	"strings"
	"testing"
)

// A base_url, target or proxy whose port no dial can take (over 65535, 0, a colon
// with nothing after it) is refused at validation, naming the key and not the port:
// url.Parse takes any run of digits, and every request would fail at the dial.
func TestConfigURLPortRefused(t *testing.T) {
	const outOfRange = "has a port out of range: it must be 1 to 65535"
	cases := []struct {
		name string
		cfg  Config
		want []string // "key: problem"
	}{
		{"base_url over 65535", Config{BaseURL: "http://127.0.0.1:99999/v1"}, []string{"base_url: " + outOfRange}},
		{"base_url port 0", Config{BaseURL: "https://api.example.com:0/v1"}, []string{"base_url: " + outOfRange}},
		{"base_url colon without port", Config{BaseURL: "http://127.0.0.1:/v1"}, []string{"base_url: has no port after the colon"}},
		{"target over 65535", Config{Targets: []string{"http://10.0.0.1:8000/v1", "http://[::1]:65536/v1"}},
			[]string{"targets[1]: " + outOfRange}},
		{"proxy over 65535", Config{BaseURL: "http://127.0.0.1:8000/v1", Proxy: "http://u:pw@proxy:70000"},
			[]string{"proxy: " + outOfRange}},
		{"ports in range", Config{Targets: []string{"http://10.0.0.1:1/v1", "https://[::1]:65535/v1", "https://api.example.com/v1"},
			Proxy: "socks5://proxy:1080"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Provider, cfg.Model = "openai", "m"
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

// An api_key or header value with a line break or NUL inside is refused, naming the
// key and not the value: fasthttp sends each as a space, so the upstream gets another
// value than the one recorded for masking in its errors.
func TestSecretValueLineBreakRefused(t *testing.T) {
	const key = "sk-0123456789"
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"api_key LF", Config{APIKey: key + "\nline2"}, []string{"api_key"}},
		{"api_key CR LF", Config{Provider: "anthropic", APIKey: key + "\r\nline2"}, []string{"api_key"}},
		{"api_key NUL", Config{APIKey: key + "\x00x"}, []string{"api_key"}},
		{"header value", Config{Headers: map[string]string{"X-A": key + "\nx", "X-Ok": key}}, []string{"headers.X-A"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg.Provider == "" {
				cfg.Provider = "openai"
			}
			cfg.BaseURL, cfg.Model = "http://127.0.0.1:1/v1", "m"
			var got []string
			for _, fe := range fieldErrors(t, cfg.Validate()) {
				if strings.Contains(fe.Error(), key) {
					t.Errorf("problem quotes the value: %v", fe)
				}
				if fe.Problem() != LineBreakProblem {
					t.Errorf("problem %q", fe.Problem())
				}
				got = append(got, fe.Key())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("problems at %q, want %q", got, c.want)
			}
		})
	}
}
