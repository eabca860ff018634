package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A route at live weight 0 (a canary rolled back, a route an operator drained) is sent
// no request, so its healthy backend does not keep the endpoint ready: with the stable
// route's only target down and the canary drained, every request fails, and /readyz
// says so. Giving the canary its share back makes the gateway ready again.
func TestReadyzIgnoresRoutesAtLiveWeightZero(t *testing.T) {
	t.Parallel()
	dead := holdPort(t).Addr()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+dead+`/v1", model: up-model, connect_timeout: 500ms,
           health: {interval: 1h, timeout: 2s}}
  canary: {provider: openai, base_url: "http://`+up+`/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 95}, {backend: canary, weight: 5}]
    canary: {backend: canary, steps: [5, 100], interval: 1h}
logging: {level: error}
`)
	if !waitWithin(20*time.Second, func() bool { return backendUp(t, g, "stable") == 0 }) {
		t.Fatal("the unreachable stable target is still up after its first check")
	}
	if code, body := readyzOf(t, g); code != 200 {
		t.Fatalf("/readyz with the canary at 5 %% on a healthy backend: %d %v, want 200", code, body)
	}
	admin := "http://" + g.AdminAddr() + "/admin/endpoints/chat"
	adminDo := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, admin+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	for _, drain := range []struct{ method, path, body, undo string }{
		{"PUT", "/weights", `{"stable": 100, "canary": 0}`, "/weights"},
		{"POST", "/canary/rollback", "", "/canary/resume"},
	} {
		adminDo(drain.method, drain.path, drain.body)
		code, body := readyzOf(t, g)
		if r, _ := body["reason"].(string); code != 503 || !strings.Contains(r, "no healthy target") {
			t.Fatalf("/readyz after %s %s: %d %v, want 503: the only healthy backend's route is at 0 %%", drain.method, drain.path, code, body)
		}
		method := "DELETE"
		if drain.method == "POST" {
			method = "POST"
		}
		adminDo(method, drain.undo, "")
		if code, body := readyzOf(t, g); code != 200 {
			t.Fatalf("/readyz after %s %s: %d %v, want 200", method, drain.undo, code, body)
		}
	}
}
