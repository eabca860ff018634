package main

import (
	"bytes"
	"strings"
	"testing"
)

// `mockllm --help` names the Messages routes, which it serves as vLLM does by default
// and as Anthropic does with --api anthropic.
func TestHelpListsMessagesRoutes(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if c := run([]string{"--help"}, &out, nil, nil); c != 0 {
		t.Fatalf("exit %d: %s", c, out.String())
	}
	for _, want := range []string{"/v1/messages and /v1/messages/count_tokens (Anthropic's Messages API as vLLM's", "vLLM's internal_error"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not say %q", want)
		}
	}
}
