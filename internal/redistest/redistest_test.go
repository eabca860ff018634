package redistest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServerKillRestart(t *testing.T) {
	s := Start(t)
	if _, err := Command(s.Addr(), "SET", "k", "v"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Kill()
	if _, err := Command(s.Addr(), "PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	got, err := Command(s.Addr(), "GET", "k")
	if err != nil || got != "" {
		t.Fatalf("GET after restart = %q, %v; want empty (no persistence)", got, err)
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
}

func TestStartCluster(t *testing.T) {
	addrs := StartCluster(t, 3)
	if len(addrs) != 3 {
		t.Fatalf("got %d addrs", len(addrs))
	}
	info, err := Command(addrs[0], "CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_known_nodes:3") {
		t.Fatalf("CLUSTER INFO = %q, %v", info, err)
	}
}

func TestStartSentinel(t *testing.T) {
	m := Start(t)
	addr := StartSentinel(t, m, "mymaster")
	got, err := Command(addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
	if want := strings.Replace(m.Addr(), ":", "\n", 1); err != nil || got != want {
		t.Fatalf("master by name = %q, %v; want %q", got, err, want)
	}
}

// A server whose port answers for another process's redis-server (another test
// binary's, which bound the port first: the started one then exits, but may not have
// yet when PING is answered) is not taken as started: the test would lose it when
// its owner stops it. Here the started "server" is a process that binds nothing,
// so only the other server can answer.
func TestStartRefusesAnotherProcessesServer(t *testing.T) {
	other := Start(t)
	fake := filepath.Join(t.TempDir(), "redis-server")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: fake, dir: t.TempDir(), port: other.port}
	err := s.start()
	if err == nil {
		s.stop()
		t.Fatal("started on a port another redis-server answers")
	}
	if !strings.Contains(err.Error(), "another redis-server's") {
		t.Fatalf("start: %v, want the port named as another server's", err)
	}
	if s.cmd != nil {
		t.Fatal("the started process is left running")
	}
	if reply, err := Command(other.Addr(), "PING"); err != nil || reply != "PONG" {
		t.Fatalf("the other server: PING = %q, %v", reply, err)
	}
}
