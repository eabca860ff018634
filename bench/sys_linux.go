package main

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// affinityCPUs is this process's CPU affinity mask, ascending; nil when it
// cannot be read.
func affinityCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var out []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out
}

// leastTimerSlack asks the kernel for the least timer slack on the calling
// thread. Best effort: some kernels ignore it, the run still works.
func leastTimerSlack() {
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
}

// threadSleep sleeps d in a nanosleep on the calling thread, which wakes
// within tens of microseconds where the runtime's timers round up to about a
// millisecond.
func threadSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for {
		// EINTR (the runtime's preemption signal) leaves the rest in ts.
		if err := unix.Nanosleep(&ts, &ts); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// childAttr makes a child its own process group's leader, killed with the
// harness if the harness dies first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
