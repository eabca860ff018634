//go:build !race

package providers

import "testing"

// TestMaskAllAllocs pins maskAll on an error that quotes no secret: nothing, with or
// without JSON escapes (the unescaped copy's buffers are pooled).
func TestMaskAllAllocs(t *testing.T) {
	secrets := secretsOf("sk-proj-Zr8Qv2LmT5nXc7WbK4yHd9FsJ1pGa3Ue", "Authorization", "Basic b3BlcmF0b3I6cHcx")
	for _, c := range []struct{ name, body string }{
		{"no backslash", `{"error":{"message":"The server had an error while processing your request.","code":null}}`},
		{"backslash", `{"error":{"message":"Traceback:\n  File \"\/app\/main.py\", line 1 \u2014 retry","code":null}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			if n := testing.AllocsPerRun(100, func() { maskAll(body, secrets) }); n != 0 {
				t.Errorf("%v allocations, want 0", n)
			}
		})
	}
}
