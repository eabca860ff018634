package redistest

import (
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
