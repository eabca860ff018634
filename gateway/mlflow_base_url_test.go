package gateway

import "testing"

// An MLflow base URL keeps its query where it is: the text-generation-inference
// provider's /v1 goes on the path, and a trailing slash of a query value is
// not trimmed, since the query may be a signed token.
func TestMLflowBaseURLQueryKept(t *testing.T) {
	cases := []struct{ provider, config, want string }{
		{"huggingface-text-generation-inference", "hf_server_url: http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"},
		{"huggingface-text-generation-inference", "hf_server_url: http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"},
		{"huggingface-text-generation-inference", "hf_server_url: http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"},
		{"huggingface-text-generation-inference", "hf_server_url: \"http://127.0.0.1:8080?token=x\"", "http://127.0.0.1:8080/v1?token=x"},
		{"huggingface-text-generation-inference", "hf_server_url: \"http://127.0.0.1:8080/?token=x\"", "http://127.0.0.1:8080/v1?token=x"},
		{"openai-compatible", "api_base: \"http://127.0.0.1:8000/v1?sig=ab/\"", "http://127.0.0.1:8000/v1?sig=ab/"},
		{"openai-compatible", "api_base: \"http://127.0.0.1:8000/v1/?sig=ab\"", "http://127.0.0.1:8000/v1?sig=ab"},
	}
	for _, c := range cases {
		y := "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n      provider: " + c.provider +
			"\n      name: m\n      config:\n        " + c.config + "\n"
		cfg, err := ParseConfig("ml.yaml", []byte(y), env(nil))
		if err != nil {
			t.Fatalf("%s: %v", c.config, err)
		}
		if got := cfg.Backends["chat"].BaseURL; got != c.want {
			t.Errorf("%s: base URL %q, want %q", c.config, got, c.want)
		}
	}
}
