package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers"
)

// A request that reached no endpoint has no endpoint field in its upstream
// warnings, every one of them alike: not "endpoint":"", which a log query for
// endpoint="" would take for a request to an endpoint of that name.
func TestUpstreamWarningsLeaveOutNoEndpoint(t *testing.T) {
	logs := &syncBuffer{}
	s := newServerWith(t, strings.Replace(benchConfig(deadAddr(t)), "level: error", "level: warn", 1), Options{Logger: slogTo(logs)})
	for _, c := range []struct {
		name, msg string
		warn      func(r *request)
	}{
		{"upstream failed", "upstream failed", func(r *request) { r.warnUpstreamFailed("", 1, providers.ErrConnect) }},
		{"upstream stream failed", "upstream stream failed", func(r *request) { r.warnStreamFailed(providers.ErrStreamCut) }},
		{"upstream answer refused", "upstream answer refused", func(r *request) { r.warnAnswerRefused() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(logs.String())
			r := s.acquireRequest()
			// The runtime is only borrowed: the request holds no reference to give back.
			defer func() { r.rt = nil; r.release() }()
			r.rt, r.backend = s.rt.Load(), "up"
			r.reqID = append(r.reqID[:0], "req-1"...)
			c.warn(r)
			line := strings.TrimSpace(logs.String()[before:])
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("log %q: %v", line, err)
			}
			if msg, _ := m["msg"].(string); !strings.HasPrefix(msg, c.msg) {
				t.Fatalf("msg %q, want %q", msg, c.msg)
			}
			if v, ok := m["endpoint"]; ok {
				t.Errorf("warning of a request with no endpoint has \"endpoint\":%q: %s", v, line)
			}
			if m["request_id"] != "req-1" || m["backend"] != "up" {
				t.Errorf("warning does not name the request and backend: %s", line)
			}
		})
	}
}
