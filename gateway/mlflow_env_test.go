package gateway

import "testing"

// TestMLflowEnvValueReadOnce: in an MLflow file both ${VAR} and MLflow's $VAR read the
// environment, each value once: a value ${VAR} gave that begins with '$' (a secret, a
// password) is that value, not the name of another variable to read (which, unset,
// refused the file, or, set, silently gave its value).
func TestMLflowEnvValueReadOnce(t *testing.T) {
	vars := map[string]string{"TEAM_KEY": "$Tr0ub4dor", "OPENAI_KEY": "$k3y", "Tr0ub4dor": "other", "k3y": "other", "REF": "$OPENAI_KEY"}
	cfg, err := ParseConfig("ml.yaml", []byte(`auth:
  mode: keys
  keys:
    - {name: team, key: "${TEAM_KEY}"}
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: "${OPENAI_KEY}"}}
  - name: other
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: $REF}}
`), env(vars))
	if err != nil {
		t.Fatalf("values from the environment read again as $VAR references: %v", err)
	}
	if k := cfg.Auth.Keys[0].Key; k != "$Tr0ub4dor" {
		t.Errorf("auth key = %q, want the environment's value", k)
	}
	if k := cfg.Backends["chat"].APIKey; k != "$k3y" {
		t.Errorf("api key from ${OPENAI_KEY} = %q, want the environment's value", k)
	}
	if k := cfg.Backends["other"].APIKey; k != "$OPENAI_KEY" {
		t.Errorf("api key from $REF = %q, want the environment's value", k)
	}
}
