package router

import (
	"strings"
	"testing"
)

// With Redis down every step of a tick fails (flush, lease, poll), for each endpoint;
// the warning names their errors on one line, not separated by line breaks that
// split the entry of a plain-text log.
func TestSharedRedisDownErrorOneLine(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	a.r.Apply([]*Endpoint{a.e, mustEndpoint(t, "chat2", sharedCanary())})
	a.r.tick(bg)
	c.srv.Kill()
	a.r.tick(bg)
	var found bool
	for line := range strings.SplitSeq(c.logs.String(), "\n") {
		if !strings.Contains(line, "router shared state unavailable") {
			continue
		}
		found = true
		if strings.Contains(line, `\n`) || !strings.Contains(line, "connect") {
			t.Errorf("warning %s\nwant Redis's errors on one line", line)
		}
	}
	if !found {
		t.Fatalf("no warning logged:\n%s", c.logs.String())
	}
}
