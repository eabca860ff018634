package gateway

import (
	"os"
	"path/filepath"
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
