package providers

import "testing"

// An empty finish_reason, as some servers write on every chunk before the last, is no
// finish: a bridge reading it so would take the first chunk for the last.
func TestChatChoiceEmptyFinishIsNone(t *testing.T) {
	cases := []struct {
		choice string
		finish string
	}{
		{`{"index":0,"delta":{"content":"hi"},"finish_reason":""}`, ""},
		{`{"index":0,"delta":{"content":"hi"},"finish_reason":null}`, ""},
		{`{"index":0,"delta":{"content":"hi"}}`, ""},
		{`{"index":0,"delta":{},"finish_reason":"stop"}`, `"stop"`},
	}
	for _, tc := range cases {
		var ch chatChoice
		if !ch.read([]byte(tc.choice)) {
			t.Fatalf("%s: not read", tc.choice)
		}
		if string(ch.finish) != tc.finish {
			t.Errorf("%s: finish %q, want %q", tc.choice, ch.finish, tc.finish)
		}
	}
}
