package gateway

import (
	"io"
	"net/http"
	"testing"
)

// README, Admin API: /healthz, /readyz and /metrics are GET routes (HEAD too, as GET
// without the body); another method is answered 405 with Allow, as the admin API's
// other routes answer one. They took every method: a POST or DELETE /metrics got the
// exposition, a DELETE /healthz "ok".
func TestAdminProbeRoutesRefuseOtherMethods(t *testing.T) {
	t.Parallel()
	_, base := startAdminGateway(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		for _, method := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequest(method, base+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 405 {
				t.Errorf("%s %s: 405", method, path)
			}
		}
		for _, method := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
			t.Run(method+path, func(t *testing.T) {
				status, hdr, body := adminRaw(t, method, base+path, "", nil)
				if status != 405 || hdr.Get("Allow") != "GET, HEAD" {
					t.Errorf("status %d, Allow %q; want 405 with GET, HEAD", status, hdr.Get("Allow"))
				}
				checkAdminError(t, method+" "+path, body, "method_not_allowed")
			})
		}
	}
}
