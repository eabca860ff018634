//go:build unix && !linux

package main

import (
	"syscall"
	"time"
)

// affinityCPUs is nil here: the affinity mask is read on Linux only, and
// --pin (taskset) needs Linux too.
func affinityCPUs() []int { return nil }

// leastTimerSlack does nothing here: timer slack is a Linux setting.
func leastTimerSlack() {}

// threadSleep sleeps d with the runtime's timers, which may round a short
// wait up to about a millisecond: the harness's own lateness is larger here
// than on Linux, and the reports' send-lag column shows it.
func threadSleep(d time.Duration) { time.Sleep(d) }

// childAttr makes a child its own process group's leader. Only Linux can
// also have it killed when the harness dies first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
