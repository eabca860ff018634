package main

import (
	"os"
	"strings"
	"syscall"
)

// The Go runtime's monitor thread (sysmon) goes into a deep sleep whenever every P
// is idle, and the first system call made after that wakes it again (a futex wake
// on the request's own path), after which it naps 20 µs at a time until the
// process is idle once more. A gateway goes idle between almost every event it
// relays, so under load this costs a futex call and a few context switches per
// event: measured on the stream scenario, a quarter of the gateway's CPU and
// almost half of its context switches (bench/RESULTS.md). The runtime skips the
// deep sleep only while GODEBUG's schedtrace is set; set to its largest value
// (24.8 days) its only other effect is a one-line scheduler summary on stderr
// every 24.8 days of host uptime, and a scheduler dump on a fatal error.
// GODEBUG is read once when the process starts, so serve re-executes itself with
// it added.

// sysmonSetting is the GODEBUG entry serve runs with.
const sysmonSetting = "schedtrace=2147483647"

// tuningEnv is the variable that turns the re-exec off: TOLLGATE_RUNTIME_TUNING=off.
const tuningEnv = "TOLLGATE_RUNTIME_TUNING"

// tunedEnv returns env with sysmonSetting added to GODEBUG, or nil when the process
// should run as it is: tuning is off, or GODEBUG already sets schedtrace (an
// operator's own choice, or this process after its re-exec).
func tunedEnv(env []string) []string {
	godebug := -1
	for i, kv := range env {
		switch {
		case strings.HasPrefix(kv, tuningEnv+"="):
			if v := kv[len(tuningEnv)+1:]; v == "off" || v == "0" || v == "false" {
				return nil
			}
		case strings.HasPrefix(kv, "GODEBUG="):
			godebug = i
		}
	}
	out := append([]string(nil), env...)
	if godebug < 0 {
		return append(out, "GODEBUG="+sysmonSetting)
	}
	v := env[godebug][len("GODEBUG="):]
	for _, s := range strings.Split(v, ",") {
		if strings.HasPrefix(strings.TrimSpace(s), "schedtrace=") {
			return nil
		}
	}
	if v == "" {
		out[godebug] = "GODEBUG=" + sysmonSetting
	} else {
		out[godebug] = "GODEBUG=" + v + "," + sysmonSetting
	}
	return out
}

// servesAPI reports whether args run the serve command.
func servesAPI(args []string) bool {
	return len(args) == 0 || args[0] == "serve" || strings.HasPrefix(args[0], "-")
}

// reexecTuned replaces the process with itself under the tuned environment. It
// returns only when no re-exec is wanted or it failed; either way the process then
// serves as it is.
func reexecTuned() {
	env := tunedEnv(os.Environ())
	if env == nil {
		return
	}
	// /proc/self/exe is this very binary even if the file was replaced since.
	exe := "/proc/self/exe"
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return
		}
	}
	_ = syscall.Exec(exe, os.Args, env)
}
