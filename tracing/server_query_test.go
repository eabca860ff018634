package tracing

import (
	"context"
	"testing"
)

// HTTP server span conventions: url.query is Conditionally Required "if and only if
// one was received", with the values of sensitive parameters replaced by REDACTED
// and their names kept. A client's key in the query never reaches a span.
func TestServerSpanURLQuery(t *testing.T) {
	for _, tt := range []struct {
		name, query, want string
	}{
		{"api-version kept", "api-version=2024-10-21", "api-version=2024-10-21"},
		{"none received", "", ""},
		{"the conventions' list", "q=x&X-Amz-Signature=s&X-Amz-Credential=c&X-Amz-Security-Token=t&sig=s&X-Goog-Signature=g",
			"q=x&X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED&sig=REDACTED&X-Goog-Signature=REDACTED"},
		{"keys in the query", "key=AIzaSy&api-key=sk-1&api_key=sk-2&apikey=sk-3&access_token=t&code=fn",
			"key=REDACTED&api-key=REDACTED&api_key=REDACTED&apikey=REDACTED&access_token=REDACTED&code=REDACTED"},
		{"any case", "API-KEY=sk-1&Sig=s", "API-KEY=REDACTED&Sig=REDACTED"},
		{"name percent-encoded", "api%2Dkey=sk-1&x%5Ftoken=t", "api%2Dkey=REDACTED&x%5Ftoken=REDACTED"},
		{"value encoded stays encoded", "api-version=2024%2D10%2D21&password=p%40ss", "api-version=2024%2D10%2D21&password=REDACTED"},
		{"name without value", "key&debug", "key&debug"},
		{"empty parameters kept", "a=1&&key=k&", "a=1&&key=REDACTED&"},
		{"secret mid-list", "a=1&client_secret=s&b=2", "a=1&client_secret=REDACTED&b=2"},
		{"invalid UTF-8", "q=\xff", "q=\uFFFD"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, server := tr.Start(context.Background(), ServerSpec("POST", "/v1/chat/completions"))
			SetServerRequest(server, false, []byte("POST"), []byte("/v1/chat/completions"), []byte(tt.query))
			server.End()
			v, ok := attrs(exported(t, tr, exp)[0].Attributes)["url.query"]
			if ok != (tt.want != "") || v.AsString() != tt.want {
				t.Errorf("url.query = %q (present %v), want %q", v.AsString(), ok, tt.want)
			}
		})
	}
}

// A parameter name too long to decode is taken for sensitive.
func TestSensitiveQueryLongName(t *testing.T) {
	long := make([]byte, maxQueryName+1)
	for i := range long {
		long[i] = 'a'
	}
	if !sensitiveQuery(long) || sensitiveQuery(long[:maxQueryName]) {
		t.Error("a name past the decoding bound is not taken for sensitive, or one within it is")
	}
}
