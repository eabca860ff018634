package mockllm

import (
	"testing"
)

// TestStreamOptionsValidation: vLLM's validate_stream_options refuses stream_options
// without stream only when its value is truthy in Python (data.get("stream_options")
// and not data.get("stream")), so an empty object passes; a value that is no object
// is refused by the field's own validation, streamed or not.
func TestStreamOptionsValidation(t *testing.T) {
	h := start(t, Options{MaxTokens: 4})
	const without = "Stream options can only be defined when `stream=True`."
	const notObject = "stream_options: Input should be a valid dictionary or instance of StreamOptions"
	cases := []struct {
		name, path, extra string
		status            int
		msg               string
	}{
		{"empty object without stream", "/v1/chat/completions", `"stream_options":{}`, 200, ""},
		{"empty object with stream false", "/v1/chat/completions", `"stream":false,"stream_options":{ }`, 200, ""},
		{"empty object without stream, completions", "/v1/completions", `"stream_options":{}`, 200, ""},
		{"object with members without stream", "/v1/chat/completions", `"stream_options":{"include_usage":false}`, 400, without},
		{"object with members, stream null", "/v1/completions", `"stream":null,"stream_options":{"include_usage":true}`, 400, without},
		{"truthy string without stream", "/v1/chat/completions", `"stream_options":"x"`, 400, without},
		{"string with stream", "/v1/chat/completions", `"stream":true,"stream_options":"x"`, 400, notObject},
		{"falsy number without stream", "/v1/completions", `"stream_options":0`, 400, notObject},
		{"empty list with stream", "/v1/chat/completions", `"stream":true,"stream_options":[]`, 400, notObject},
		{"true with stream", "/v1/completions", `"stream":true,"stream_options":true`, 400, notObject},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := chatBody("hi", tc.extra)
			if tc.path == "/v1/completions" {
				body = `{"model":"mock-1","prompt":"hi",` + tc.extra + `}`
			}
			resp, b := h.must("POST", tc.path, body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status != 200 {
				want := `{"error":{"message":"` + tc.msg + `","type":"Bad Request","param":null,"code":400}}`
				if string(b) != want {
					t.Errorf("body %s\nwant %s", b, want)
				}
			}
		})
	}
}
