package gateway

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestConfigErrors checks each bad config in testdata/config/*.yaml against the
// messages in its .golden file.
func TestConfigErrors(t *testing.T) {
	files, _ := filepath.Glob("testdata/config/bad-*.yaml")
	if len(files) == 0 {
		t.Fatal("no bad configs in testdata/config")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseConfig(filepath.Base(f), data, env(map[string]string{"SET": "value"}))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			got := ce.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, _ := os.ReadFile(golden)
			if got != string(want) {
				t.Fatalf("messages:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestConfigGood(t *testing.T) {
	data := []byte(`
server: {listen: "127.0.0.1:0", max_body_bytes: 1MiB, shutdown_grace: 5s}
auth:
  mode: keys
  keys:
    - {name: team-a, key: "${TEAM_A_KEY}", endpoints: [chat]}
    - {name: ops, sha256: "` + strings.Repeat("ab", 32) + `"}
backends:
  up: {provider: openai, base_url: "${UP_URL:-http://127.0.0.1:8001/v1}", model: "m-1", api_key: "${UP_KEY}"}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, timeout: 30s}
`)
	cfg, err := ParseConfig("good.yaml", data, env(map[string]string{"TEAM_A_KEY": "sk-a", "UP_KEY": "sk: {not yaml"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.MaxBodyBytes != 1<<20 || cfg.Server.ShutdownGrace != 5*time.Second {
		t.Errorf("server = %+v", cfg.Server)
	}
	if cfg.Auth.Keys[0].Key != "sk-a" || cfg.Backends["up"].APIKey != "sk: {not yaml" {
		t.Errorf("env values not expanded as plain strings: %+v", cfg.Backends["up"])
	}
	if cfg.Backends["up"].BaseURL != "http://127.0.0.1:8001/v1" {
		t.Errorf("default not applied: %q", cfg.Backends["up"].BaseURL)
	}
	e := cfg.Endpoints[0]
	if e.Routes[0].Weight != 100 || e.Routes[0].Variant != "up" || e.Timeout != 30*time.Second {
		t.Errorf("endpoint = %+v", e)
	}
}

func TestDefaultConfigLoads(t *testing.T) {
	if _, err := LoadConfig("../configs/tollgate.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{{"8MiB", 8 << 20, true}, {"512KB", 512000, true}, {"1048576", 1 << 20, true}, {"1.5 GiB", 3 << 29, true}, {"8 parsecs", 0, false}, {"-1", 0, false}, {"", 0, false}}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseSize(c.in)
			if (err == nil) != c.ok || got != c.want {
				t.Fatalf("ParseSize(%q) = %d, %v", c.in, got, err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	b, _ := os.ReadFile("../configs/tollgate.yaml")
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("fuzz.yaml", data, env(nil))
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		var ce *ConfigError
		if err != nil && errors.As(err, &ce) {
			for _, p := range ce.Problems {
				if !strings.HasPrefix(p, "fuzz.yaml") {
					t.Fatalf("problem without file name: %q", p)
				}
			}
		}
	})
}
