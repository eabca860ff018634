package limiter

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// TestRedisTLSConnClosedWhileIdle closes every connection of a limiter that reaches
// Redis over TLS (Redis's idle timeout, CLIENT KILL, a restart, as while the gateway
// sits idle): go-redis cannot check a TLS connection it takes from the pool, so the
// first call on each found it closed. A check, a read (Peek) and the heartbeats are
// answered from Redis all the same, on new connections: the limiter never degrades.
// The test sends the heartbeats itself, between the kills: one the limiter sent on its
// own could be on a connection as it is killed, a call failed by Redis (the limiter
// then rightly degrades, and the next check goes to the share).
func TestRedisTLSConnClosedWhileIdle(t *testing.T) {
	// Not parallel: its logger gets the Redis client messages of every limiter in the
	// process, and must not say "unavailable".
	srv := redistest.Start(t)
	port := srv.TLSPort(t)
	url := "rediss://127.0.0.1:" + strconv.Itoa(port) + "/0?skip_verify=true"
	var lb logBuffer
	log := slog.New(slog.NewTextHandler(&lb, nil))
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: url}, Timeout: 5 * time.Second, Prefetch: durationPtr(0)}, log,
		func(o *options) { o.heartbeatEvery = time.Hour })
	chat := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1000, Window: "day"})
	pol := mustPolicy(t, "key:team-a", peekLimits...)
	if rs := l.Peek(bg, probesOf(pol, alice)); rs[0].Source != FromRedis {
		t.Fatalf("Redis up: %+v", rs)
	}
	for i := range 5 {
		killClients(t, srv.Addr())
		for j, r := range l.Peek(bg, probesOf(pol, alice)) {
			if r.Source != FromRedis {
				t.Fatalf("round %d: limit %d after the connections closed: %+v", i, j, r)
			}
		}
		killClients(t, srv.Addr())
		var tk Ticket
		if err := l.Take(bg, chat, alice, 0, &tk); err != nil || tk.src != srcRedis {
			t.Fatalf("round %d: Take = %v from %d after the connections closed, want admitted by Redis", i, err, tk.src)
		}
		l.Settle(&tk, 0)
		killClients(t, srv.Addr())
		l.probeOnce()
		if l.Degraded() {
			t.Fatalf("round %d: the heartbeat after the connections closed failed:\n%s", i, lb.String())
		}
	}
	if l.Degraded() || strings.Contains(lb.String(), "unavailable") {
		t.Errorf("limiter degraded by closed connections:\n%s", lb.String())
	}
}

// killClients closes every client connection of Redis at addr, each by its ID
// (CLIENT KILL ID), and waits until Redis has closed them: it frees them in its next
// event loop, after answering the kill, so a busy machine can hand one out from the
// pool before its close is sent. Connections made since the listing (a heartbeat's)
// are left alone: killed unlisted (as CLIENT KILL TYPE normal would), one could be
// handed out before its close came, and the call on it fail.
func killClients(t *testing.T, addr string) {
	t.Helper()
	before, err := redistest.Command(addr, "CLIENT", "LIST", "TYPE", "normal")
	if err != nil {
		t.Fatal(err)
	}
	var killed []string
	var kills [][]string
	for line := range strings.SplitSeq(strings.TrimSpace(before), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok && strings.HasPrefix(id, "id=") {
			killed = append(killed, id+" ")
			kills = append(kills, []string{"CLIENT", "KILL", "ID", strings.TrimPrefix(id, "id=")})
		}
	}
	if _, err := redistest.Commands(addr, kills...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := redistest.Command(addr, "CLIENT", "LIST", "TYPE", "normal")
		if err != nil {
			t.Fatal(err)
		}
		open := false
		for _, id := range killed {
			if strings.HasPrefix(list, id) || strings.Contains(list, "\n"+id) {
				open = true
			}
		}
		if !open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections still open 5 s after CLIENT KILL:\n%s", list)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
