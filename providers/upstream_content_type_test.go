package providers

import "testing"

// jsonType keeps a JSON label of the upstream's own and replaces any other: the
// official SDKs read a body as JSON only when it is labelled so.
func TestJSONType(t *testing.T) {
	for _, tc := range []struct{ ct, want string }{
		{"", "application/json"},
		{"application/json", "application/json"},
		{"application/json; charset=utf-8", "application/json; charset=utf-8"},
		{"Application/JSON", "Application/JSON"},
		{"application/problem+json", "application/problem+json"},
		{"application/vnd.api+json ; charset=utf-8", "application/vnd.api+json ; charset=utf-8"},
		{"text/plain; charset=utf-8", "application/json"},
		{"application/octet-stream", "application/json"},
		{"text/html", "application/json"},
		{"+json", "application/json"},
		{"application/jsonp", "application/json"},
	} {
		if got := string(jsonType([]byte(tc.ct))); got != tc.want {
			t.Errorf("jsonType(%q) = %q, want %q", tc.ct, got, tc.want)
		}
	}
}
