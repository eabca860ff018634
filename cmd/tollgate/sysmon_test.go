package main

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestTunedEnv(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		want []string // nil: no re-exec
	}{
		{"adds GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=" + sysmonSetting}},
		{"appends to GODEBUG", []string{"GODEBUG=gctrace=1", "B=2"}, []string{"GODEBUG=gctrace=1," + sysmonSetting, "B=2"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=" + sysmonSetting}},
		{"operator's schedtrace kept", []string{"GODEBUG=gctrace=1, schedtrace=1000"}, nil},
		{"after the re-exec", []string{"GODEBUG=" + sysmonSetting}, nil},
		{"turned off", []string{"TOLLGATE_RUNTIME_TUNING=off"}, nil},
		{"turned off with 0", []string{"TOLLGATE_RUNTIME_TUNING=0", "GODEBUG=gctrace=1"}, nil},
		{"other values leave it on", []string{"TOLLGATE_RUNTIME_TUNING=on"}, []string{"TOLLGATE_RUNTIME_TUNING=on", "GODEBUG=" + sysmonSetting}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := slices.Clone(c.env)
			got := tunedEnv(in)
			if !slices.Equal(got, c.want) || (got == nil) != (c.want == nil) {
				t.Fatalf("tunedEnv(%q) = %q, want %q", c.env, got, c.want)
			}
			if !slices.Equal(in, c.env) {
				t.Fatalf("tunedEnv changed its input: %q", in)
			}
		})
	}
}

func TestServesAPI(t *testing.T) {
	for args, want := range map[string]bool{
		"": true, "serve": true, "--config x.yaml": true, "serve --config x.yaml": true,
		"validate --config x.yaml": false, "version": false,
	} {
		if got := servesAPI(strings.Fields(args)); got != want {
			t.Errorf("servesAPI(%q) = %v", args, got)
		}
	}
}

// TestServeReexecsTuned runs the binary: serve replaces itself (same PID) with a
// process whose environment carries the GODEBUG setting, and runs as it is when
// TOLLGATE_RUNTIME_TUNING=off.
func TestServeReexecsTuned(t *testing.T) {
	for _, c := range []struct {
		name  string
		extra []string
		want  bool
	}{
		{"default", nil, true},
		{"off", []string{"TOLLGATE_RUNTIME_TUNING=off"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			api, admin := freePort(t), freePort(t)
			path := writeFile(t, dir, "tollgate.yaml", "server: {listen: \""+api+"\", admin_listen: \""+admin+"\"}\n"+
				"backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\n"+
				"endpoints:\n  - {name: one, type: chat, routes: [{backend: up}]}\n")
			var logs lineBuffer
			cmd := exec.Command(binary, "serve", "--config", path)
			cmd.Env = append(withoutGODEBUG(os.Environ()), c.extra...)
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
			environ, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Contains(strings.Split(string(environ), "\x00"), "GODEBUG="+sysmonSetting)
			if got != c.want {
				t.Fatalf("serving process has GODEBUG=%s: %v, want %v\nenviron: %q\nlogs: %s", sysmonSetting, got, c.want, environ, logs.String())
			}
		})
	}
}

func withoutGODEBUG(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, tuningEnv+"=")
	})
}
