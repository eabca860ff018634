package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every example config parses and validates, with its ${VAR}s set.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob("../configs/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	vars := env(map[string]string{
		"TOLLGATE_ADMIN_TOKEN": "admin-token", "TEAM_A_KEY": "key-a", "BATCH_KEY": "key-b",
		"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a",
	})
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseConfig(f, data, vars); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The whole config README.md shows under "Configuration" validates, once its file
// paths point at real PEM files and its sha256 placeholder is a digest.
func TestReadmeConfig(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n## Configuration\n")
	if !ok {
		t.Fatal(`README.md has no "## Configuration" section`)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("no yaml block under Configuration")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the yaml block under Configuration does not end")
	}
	p := newTestPKI(t)
	block = strings.NewReplacer(
		"<hex sha256 of the key>", strings.Repeat("ab", 32),
		"/etc/tollgate/vllm-ca.pem", p.caFile,
		"/etc/tollgate/client.pem", p.clientCert,
		"/etc/tollgate/client-key.pem", p.clientKey,
	).Replace(block)
	vars := env(map[string]string{
		"TEAM_A_KEY": "key-a", "HACK_KEY": "key-h", "VLLM_KEY": "k", "OPENAI_API_KEY": "sk-o",
		"ANTHROPIC_API_KEY": "sk-a", "AZURE_OPENAI_API_KEY": "sk-z", "DEEPSEEK_API_KEY": "sk-d",
		"TOLLGATE_RESPONSE_SECRET": "0123456789abcdef0123456789abcdef",
	})
	if _, err := ParseConfig("README.md", []byte(block), vars); err != nil {
		t.Fatal(err)
	}
}
