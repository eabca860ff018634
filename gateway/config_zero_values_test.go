package gateway

import (
	"slices"
	"testing"
	"time"
)

// A server key written 0 is not the key left out. shutdown_grace: 0s means stop at
// once and is honoured; read_timeout, idle_timeout and max_body_bytes of 0 would be no
// bound, or a 413 for every body, and are refused saying what to write, rather than
// silently turned into their defaults. Left out, or written with no value (null),
// each takes its default.
func TestConfigServerZeroValues(t *testing.T) {
	const rest = "backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	t.Run("shutdown_grace 0s stops at once", func(t *testing.T) {
		cfg, problems := parseProblems(t, "server:\n  shutdown_grace: 0s\n"+rest, nil)
		if len(problems) > 0 {
			t.Fatalf("problems = %q", problems)
		}
		if cfg.Server.ShutdownGrace != 0 {
			t.Errorf("shutdown_grace = %v, want 0", cfg.Server.ShutdownGrace)
		}
	})
	t.Run("left out or null, the defaults", func(t *testing.T) {
		for _, y := range []string{
			"server:\n  listen: \":8080\"\n" + rest,
			"server:\n  shutdown_grace:\n  read_timeout: ~\n  idle_timeout: null\n  max_body_bytes:\n" + rest,
		} {
			cfg, problems := parseProblems(t, y, nil)
			if len(problems) > 0 {
				t.Fatalf("%s: problems = %q", y, problems)
			}
			s := cfg.Server
			if s.ShutdownGrace != 30*time.Second || s.ReadTimeout != 60*time.Second || s.IdleTimeout != 90*time.Second || s.MaxBodyBytes != 8<<20 {
				t.Errorf("%s: server = %+v, want the defaults", y, s)
			}
		}
	})
	t.Run("zero refused", func(t *testing.T) {
		_, problems := parseProblems(t, "server:\n  read_timeout: 0s\n  idle_timeout: 0s\n  max_body_bytes: 0\n"+rest, nil)
		want := []string{
			"t.yaml:4: server.max_body_bytes: must be more than 0 (leave it out for 8MiB)",
			"t.yaml:2: server.read_timeout: must be more than 0 (leave it out for 60s)",
			"t.yaml:3: server.idle_timeout: must be more than 0 (leave it out for 90s)",
		}
		if !slices.Equal(problems, want) {
			t.Errorf("problems = %q, want %q", problems, want)
		}
	})
}
