package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// unsetEnv unsets key for the test, restoring it after.
func unsetEnv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "")
	os.Unsetenv(key)
}

// The runtime's soft memory limit is 90 % of the cgroup's (the provider stands for
// the cgroup), unless GOMEMLIMIT is set or AUTOMEMLIMIT says otherwise; with no limit
// the runtime is left as it was. Each case starts from a limit of its own (sentinel) to
// tell a limit left alone from one set again.
func TestApplyMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	const sentinel = 7 * gib
	fails := func(t *testing.T) memlimit.Provider {
		return func() (uint64, error) {
			t.Error("the cgroup was read")
			return gib, nil
		}
	}
	for _, c := range []struct {
		name     string
		env      map[string]string
		provider func(*testing.T) memlimit.Provider
		want     int64  // the runtime's limit after
		line     string // the log line's msg, "" for none
		source   string
	}{
		{"cgroup limit", nil, func(*testing.T) memlimit.Provider { return memlimit.Limit(4 * gib) },
			4 * gib * 9 / 10, "memory limit", "cgroup"},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "512MiB"}, fails,
			sentinel, "memory limit", "GOMEMLIMIT"},
		{"no cgroup limit", nil, func(*testing.T) memlimit.Provider {
			return func() (uint64, error) { return 0, memlimit.ErrNoLimit }
		}, sentinel, "", ""},
		{"not in a cgroup", nil, func(*testing.T) memlimit.Provider {
			return func() (uint64, error) { return 0, memlimit.ErrNoCgroup }
		}, sentinel, "", ""},
		{"cgroups not supported", nil, func(*testing.T) memlimit.Provider {
			return func() (uint64, error) { return 0, memlimit.ErrCgroupsNotSupported }
		}, sentinel, "", ""},
		{"AUTOMEMLIMIT off", map[string]string{"AUTOMEMLIMIT": "off"}, fails, sentinel, "", ""},
		{"AUTOMEMLIMIT share", map[string]string{"AUTOMEMLIMIT": "0.5"}, func(*testing.T) memlimit.Provider { return memlimit.Limit(4 * gib) },
			2 * gib, "memory limit", "cgroup"},
		{"AUTOMEMLIMIT invalid", map[string]string{"AUTOMEMLIMIT": "90%"}, fails, sentinel, "memory limit not set", ""},
		{"cgroup unreadable", nil, func(*testing.T) memlimit.Provider {
			return func() (uint64, error) { return 0, errors.New("failed to open /proc/self/mountinfo: permission denied") }
		}, sentinel, "memory limit not set", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			unsetEnv(t, "GOMEMLIMIT")
			unsetEnv(t, "AUTOMEMLIMIT")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			prev := debug.SetMemoryLimit(sentinel)
			t.Cleanup(func() { debug.SetMemoryLimit(prev) })

			var buf bytes.Buffer
			applyMemoryLimit(c.provider(t)).log(slog.New(slog.NewJSONHandler(&buf, nil)))
			if got := debug.SetMemoryLimit(-1); got != c.want {
				t.Errorf("runtime memory limit %d, want %d", got, c.want)
			}
			if c.line == "" {
				if buf.Len() != 0 {
					t.Errorf("logged %s, want nothing", buf.String())
				}
				return
			}
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil || strings.Count(buf.String(), "\n") != 1 {
				t.Fatalf("want one JSON line, got %q (%v)", buf.String(), err)
			}
			if m["msg"] != c.line {
				t.Fatalf("logged %v, want %q", m, c.line)
			}
			if c.source == "" {
				if m["level"] != "WARN" || m["error"] == "" {
					t.Errorf("logged %v, want a warning with the error", m)
				}
				return
			}
			if m["level"] != "INFO" || m["source"] != c.source || m["limit_bytes"] != float64(c.want) {
				t.Errorf("logged %v, want info with source %s and limit_bytes %d", m, c.source, c.want)
			}
			if c.source == "cgroup" && m["cgroup_limit_bytes"] != float64(4*gib) {
				t.Errorf("logged %v, want cgroup_limit_bytes %d", m, 4*gib)
			}
		})
	}
}

// The serving process says in its log which memory limit it runs under: here
// GOMEMLIMIT's, which the runtime applied at start and serve leaves as it is.
func TestServeLogsMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	api, admin := freePort(t), freePort(t)
	path := writeFile(t, dir, "tollgate.yaml", "server: {listen: \""+api+"\", admin_listen: \""+admin+"\"}\n"+
		"backends:\n  demo: {provider: mock, model: m}\n"+
		"endpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n")
	var logs lineBuffer
	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=300MiB")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitUntil(t, func() bool {
		c, err := net.Dial("tcp", admin)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// A clean stop writes every queued line; logs is read once the process is gone.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, ok := exitStatus(t, cmd, 10*time.Second); !ok || code != 0 {
		t.Fatalf("serve did not stop cleanly (exit %d, stopped %v)", code, ok)
	}
	if n := strings.Count(logs.String(), `"msg":"memory limit"`); n != 1 {
		t.Fatalf("%d memory limit lines, want 1:\n%s", n, logs.String())
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, `"msg":"memory limit"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if m["level"] != "INFO" || m["source"] != "GOMEMLIMIT" || m["limit_bytes"] != float64(300<<20) {
			t.Errorf("logged %s, want info with source GOMEMLIMIT and limit_bytes %d", l, 300<<20)
		}
	}
}
