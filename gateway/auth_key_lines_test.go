package gateway

import (
	"strings"
	"testing"
)

// A request with two lines of one key header naming two keys carries two identities.
// Authorization is not a list field (RFC 9110 5.3: a sender must not send it twice);
// nginx refuses such a request (400 "client sent duplicate header line"). The gateway
// took the first line and served the request, billed and limited to that key, while a
// proxy in front that reads the last line (or the line it added itself) saw the
// other. It is refused: 400 duplicate_api_key, before the key is looked up, as the same
// two keys on one line ("Bearer A, Bearer B") are refused.
func TestKeyOnTwoLinesRefused(t *testing.T) {
	t.Parallel()
	g := startAuthGateway(t)
	for _, lines := range [][][2]string{
		{{"Authorization", "Bearer sk-team-a-1234"}, {"Authorization", "Bearer sk-other-9999"}},
		{{"api-key", "sk-team-a-1234"}, {"api-key", "sk-other-9999"}},
		{{"x-api-key", "sk-team-a-1234"}, {"x-api-key", "sk-other-9999"}},
		{{"Authorization", "Bearer sk-team-a-1234"}, {"Authorization", "Bearer sk-team-a-1234"}},
	} {
		st, b, _ := authCall(t, "POST", g.url+"/v1/chat/completions", authChatBody, lines)
		if st != 400 && st != 401 {
			t.Errorf("%q: %d %.80s, want the request refused (400 or 401)", lines, st, b)
		}
		if st != 400 || !strings.Contains(b, `"code":"duplicate_api_key"`) {
			t.Errorf("%q: %d %s, want 400 duplicate_api_key", lines, st, b)
		}
	}
	// The listings read the key as the calls do.
	st, b, _ := authCall(t, "GET", g.url+"/v1/models", "",
		[][2]string{{"Authorization", "Bearer sk-team-a-1234"}, {"Authorization", "Bearer sk-other-9999"}})
	if st != 400 || !strings.Contains(b, `"code":"duplicate_api_key"`) {
		t.Errorf("GET /v1/models with two Authorization lines: %d %s, want 400 duplicate_api_key", st, b)
	}
}

// One line of each header is no duplicate: the key is read from Authorization, then
// api-key, then x-api-key, and the header it is read from decides (README).
func TestKeyHeadersOneLineEachServed(t *testing.T) {
	g := startAuthGateway(t)
	for _, lines := range [][][2]string{
		{{"Authorization", "Bearer sk-team-a-1234"}},
		{{"Authorization", "Bearer sk-team-a-1234"}, {"api-key", "sk-other-9999"}},
		{{"api-key", "sk-team-a-1234"}, {"x-api-key", "sk-other-9999"}},
		{{"x-api-key", "sk-team-a-1234"}},
	} {
		if st, b, _ := authCall(t, "POST", g.url+"/v1/chat/completions", authChatBody, lines); st != 200 {
			t.Errorf("%q: %d %.120s, want 200", lines, st, b)
		}
	}
}
