package gateway

import "testing"

// README, Admin API: a request naming no endpoint is 404 endpoint_not_found. A weights
// override for an unknown endpoint was judged by its body first: one that was not a
// weights object answered 400 invalid_weights ("Invalid weights for `nope`"), and the
// operator who fixed the body then met the 404, as a cache purge or a canary verb meets
// it at once.
func TestAdminWeightsForUnknownEndpointIs404(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGateway(t)
	auth := map[string]string{"Authorization": "Bearer tok"}
	for _, body := range []string{`{"stable": 90, "canary": 10}`, `[]`, ``, `{"stable": 90.5}`} {
		t.Run(body, func(t *testing.T) {
			status, _, out := adminRaw(t, "PUT", admin+"/admin/endpoints/nope/weights", body, auth)
			if status != 404 {
				t.Errorf("PUT weights %s for no endpoint: %d %v, want 404", body, status, out)
			}
			checkAdminError(t, "weights for no endpoint", out, "endpoint_not_found")
		})
	}
	// An endpoint that exists still has its body judged.
	status, _, out := adminRaw(t, "PUT", admin+"/admin/endpoints/chat/weights", `[]`, auth)
	if status != 400 {
		t.Errorf("PUT weights [] for chat: %d %v, want 400", status, out)
	}
	checkAdminError(t, "bad weights for chat", out, "invalid_weights")
}
