package gateway

import (
	"os"
	"strings"
	"testing"
)

// TestReloadDroppingAdminTokenWarns: a reload that removes server.admin_token opens
// the admin API at once (each call reads the token from the running config); beyond
// loopback, that is logged with the warning start-up gives. On loopback nothing is.
func TestReloadDroppingAdminTokenWarns(t *testing.T) {
	t.Parallel()
	const warning = "the admin API listens beyond loopback without server.admin_token"
	config := func(adminListen, token string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "` + adminListen + `"` + token + "}\n" +
			"backends:\n  demo: {provider: mock, model: m}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n"
	}
	for _, c := range []struct {
		name, adminListen string
		warn              bool
	}{
		{"all interfaces", "0.0.0.0:0", true},
		{"loopback", "127.0.0.1:0", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, config(c.adminListen, `, admin_token: "s3cret-token"`))
			waitFor(t, func() bool { return strings.Contains(g.logs.String(), `"msg":"serving"`) })
			if strings.Contains(g.logs.String(), warning) {
				t.Fatalf("warned with a token set:\n%s", g.logs.String())
			}
			if err := os.WriteFile(g.path, []byte(config(c.adminListen, "")), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := g.Reload(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(g.logs.String(), warning); got != c.warn {
				t.Fatalf("after a reload without the token on %s: warning logged %v, want %v\n%s", g.AdminAddr(), got, c.warn, g.logs.String())
			}
		})
	}
}
