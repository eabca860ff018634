package gateway

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers"
)

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// SRE: a replica of a pool dies. Its requests fail and it is ejected, which only
// tollgate_backend_up showed: the log had the requests' warnings and nothing saying
// the replica left service, why, or for how long. The ejection logs one warning,
// naming the target as the metrics do, never with its URL's query.
func TestTargetEjectionLogged(t *testing.T) {
	good, dead := startStaticUpstream(t), deadAddr(t)
	var logs syncBuffer
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool:
    provider: openai
    targets: ["http://`+good+`/v1", "http://`+dead+`/v1?sig=s3cr3t-signature"]
    model: m
    health: {eject_after: 2, eject_for: 1h}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
logging: {access_log: false}
`, Options{Logger: slogTo(&logs)})
	ctx := newProxyCtx([]byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
	for range 12 {
		proxyOnce(s, ctx)
	}
	var out []map[string]any
	for _, l := range jsonLogLines(t, logs.String()) {
		if l["msg"] == "upstream target out of service" || l["msg"] == "upstream target back in service" {
			out = append(out, l)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d health lines, want one ejection:\n%s", len(out), logs.String())
	}
	l := out[0]
	if l["level"] != "WARN" || l["backend"] != "pool" || l["target"] != dead || l["reason"] != "ejected" ||
		l["failures"] != float64(2) || l["for"] != "1h0m0s" {
		t.Fatalf("ejection line %v, want WARN backend pool, target %s, reason ejected, failures 2, for 1h0m0s", l, dead)
	}
	if strings.Contains(logs.String(), "s3cr3t") {
		t.Fatalf("the target's query reached the log:\n%s", logs.String())
	}
}

// The lines of each passage: why, and for how long.
func TestHealthLogLines(t *testing.T) {
	cases := []struct {
		name string
		c    providers.HealthChange
		want string
	}{
		{"ejected", providers.HealthChange{Backend: "b", Target: 0, Cause: providers.CauseEjected, Failures: 5, For: 30 * time.Second},
			`"level":"WARN","msg":"upstream target out of service","backend":"b","target":"10.0.0.1:8000","reason":"ejected","failures":5,"for":"30s"}`},
		{"trial stream failed", providers.HealthChange{Backend: "b", Target: 0, Cause: providers.CauseTrialFailed, For: time.Minute},
			`"level":"WARN","msg":"upstream target out of service","backend":"b","target":"10.0.0.1:8000","reason":"trial_failed","for":"1m0s"}`},
		{"check status", providers.HealthChange{Backend: "b", Target: 0, Cause: providers.CauseCheckFailed, Status: 503},
			`"level":"WARN","msg":"upstream target out of service","backend":"b","target":"10.0.0.1:8000","reason":"health_check_failed","status":503}`},
		{"check timeout", providers.HealthChange{Backend: "b", Target: 0, Cause: providers.CauseCheckFailed, Err: errors.Join(providers.ErrTimeout, errors.New("dial 10.0.0.1:8000"))},
			`"level":"WARN","msg":"upstream target out of service","backend":"b","target":"10.0.0.1:8000","reason":"health_check_failed","error":"timeout"}`},
		{"check refused", providers.HealthChange{Backend: "b", Target: 0, Cause: providers.CauseCheckFailed, Err: providers.ErrConnect},
			`"level":"WARN","msg":"upstream target out of service","backend":"b","target":"10.0.0.1:8000","reason":"health_check_failed","error":"unreachable"}`},
		{"back after trial", providers.HealthChange{Backend: "b", Target: 0, Up: true, Cause: providers.CauseTrialPassed, Out: 90*time.Second + 1234567},
			`"level":"INFO","msg":"upstream target back in service","backend":"b","target":"10.0.0.1:8000","reason":"trial_passed","out_for":"1m30.001s"}`},
		{"back after checks", providers.HealthChange{Backend: "b", Target: 0, Up: true, Cause: providers.CauseCheckPassed, Out: 10 * time.Second},
			`"level":"INFO","msg":"upstream target back in service","backend":"b","target":"10.0.0.1:8000","reason":"health_check_passed","out_for":"10s"}`},
		{"unknown place: the URL's host only", providers.HealthChange{Backend: "b", Target: 3, URL: "http://10.0.0.9:8000/v1?key=s3cr3t", Cause: providers.CauseEjected, Failures: 5, For: time.Second},
			`"target":"10.0.0.9:8000","reason":"ejected","failures":5,"for":"1s"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := &healthLog{log: slogTo(&buf), labels: []string{"10.0.0.1:8000"}}
			h.note(tc.c)
			if got := strings.TrimSpace(buf.String()); !strings.HasSuffix(got, tc.want) || strings.Count(got, "\n") != 0 {
				t.Fatalf("logged %s\nwant a line ending %s", got, tc.want)
			}
		})
	}
}
