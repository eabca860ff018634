package main

import (
	"bytes"
	"strings"
	"testing"
)

// `mockllm --help` lists the rerank and score routes it serves, as README's mockllm
// section does.
func TestHelpListsScoringRoutes(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if c := run([]string{"--help"}, &out, nil, nil); c != 0 {
		t.Fatalf("exit %d: %s", c, out.String())
	}
	for _, route := range []string{"/v1/rerank", "/v2/rerank", "/score", "/v1/audio/transcriptions", "/v1/audio/translations", "x-mock-audio-api", "/ping", "/load"} {
		if !strings.Contains(out.String(), route) {
			t.Errorf("--help does not name %s, a route it serves", route)
		}
	}
}
