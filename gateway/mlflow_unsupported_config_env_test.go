package gateway

import (
	"strings"
	"testing"
)

// The config of a provider Tollgate does not map is not read (README: "its config,
// such as bedrock's aws_config, is then not read"): the environment variables it names
// (MLflow's $VAR, or ${VAR}) are not looked up, and their being unset is not a second
// problem beside the provider's. An anchored config, which another entry may use, is
// still read where it is written, and so is the config of a provider named by a
// variable, whose value is not known until the variables are read.
func TestMLflowUnsupportedProviderConfigEnvNotRead(t *testing.T) {
	t.Parallel()
	const unsupported = `ml.yaml:5: endpoints[0].model.provider: provider "bedrock" is not supported`
	for _, c := range []struct{ name, file, want string }{
		{"variables unset", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: bedrock
      name: anthropic.claude-v2
      config:
        aws_config:
          aws_region: us-east-1
          aws_access_key_id: $TOLLGATE_TEST_UNSET_AWS_KEY
          aws_secret_access_key: ${TOLLGATE_TEST_UNSET_AWS_SECRET}
  - name: b
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: sk-b}}
`, unsupported},
		{"anchored config still read", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: bedrock
      name: anthropic.claude-v2
      config: &c
        openai_api_key: $TOLLGATE_TEST_UNSET_KEY
  - name: b
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: *c}
`, "ml.yaml:8: endpoints[0].model.config.openai_api_key: environment variable TOLLGATE_TEST_UNSET_KEY is not set\n" + unsupported},
		{"provider from a variable", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: $TOLLGATE_TEST_PROVIDER
      name: gpt-4o
      config:
        openai_api_key: $TOLLGATE_TEST_UNSET_KEY
`, "ml.yaml:8: endpoints[0].model.config.openai_api_key: environment variable TOLLGATE_TEST_UNSET_KEY is not set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte(c.file), env(map[string]string{"TOLLGATE_TEST_PROVIDER": "openai"}))
			if err == nil {
				t.Fatal("loaded")
			}
			got := strings.Split(strings.TrimSpace(err.Error()), "\n")
			want := strings.Split(c.want, "\n")
			if len(got) != len(want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", err, c.want)
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Fatalf("problems:\n%s\nwant:\n%s", err, c.want)
				}
			}
		})
	}
}
