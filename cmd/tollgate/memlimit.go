package main

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// The Go runtime sizes GOMAXPROCS from the cgroup's CPU limit (Go 1.25 on) but knows
// nothing of its memory limit: in a container with one (Kubernetes'
// resources.limits.memory) the heap grows at GOGC's pace until the kernel's OOM
// killer ends the gateway, and every stream in flight with it, where the runtime, told
// the limit, collects harder as the heap nears it. serve gives the runtime a soft
// memory limit (what GOMEMLIMIT sets) of memLimitShare of the cgroup's. The limit is
// read with automemlimit: it finds the memory controller (cgroup v2, v1, or both at
// once) from /proc/self/cgroup and /proc/self/mountinfo, escaped paths, bind mounts
// and namespaced cgroup roots included, and reports the limit in effect (the
// smallest on the way up a v2 hierarchy, v1's hierarchical limit).

// memLimitShare is the share of the cgroup's memory limit the runtime is given. The
// rest is for what the cgroup charges and the runtime does not count (the page cache
// of files read and written, socket buffers, other kernel memory) and for the heap
// growing while a collection runs.
const memLimitShare = 0.9

// errNoLimit stands for memlimit.ErrNoLimit inside memlimit.Set, which would
// otherwise set the runtime's limit to math.MaxInt64 rather than leave it as it is.
var errNoLimit = errors.New("no memory limit")

// memLimit is what applyMemoryLimit did.
type memLimit struct {
	// bytes is the runtime's soft memory limit, 0 when there is none.
	bytes int64
	// source is where the limit came from: "GOMEMLIMIT" or "cgroup".
	source string
	// cgroup is the cgroup's memory limit, when source is "cgroup".
	cgroup uint64
	// err says why the cgroup's limit could not be applied.
	err error
}

// applyMemoryLimit sets the runtime's soft memory limit to memLimitShare of the limit
// cgroup reports, unless GOMEMLIMIT is set (the operator's choice, which the runtime
// applied at start) or AUTOMEMLIMIT is off; AUTOMEMLIMIT may also name another share,
// from 0 (excluded) to 1, as automemlimit reads it. With no limit the runtime is left
// as it is.
func applyMemoryLimit(cgroup memlimit.Provider) memLimit {
	if os.Getenv("GOMEMLIMIT") != "" {
		if n := debug.SetMemoryLimit(-1); n != math.MaxInt64 {
			return memLimit{bytes: n, source: "GOMEMLIMIT"}
		}
		return memLimit{}
	}
	var found uint64
	n, err := memlimit.Set(memlimit.WithRatio(memLimitShare), memlimit.WithProvider(func() (uint64, error) {
		limit, err := cgroup()
		if errors.Is(err, memlimit.ErrNoLimit) {
			return 0, errNoLimit
		}
		found = limit
		return limit, err
	}))
	switch {
	case errors.Is(err, errNoLimit), errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrCgroupsNotSupported):
		return memLimit{}
	case err != nil:
		return memLimit{err: err}
	case found == 0:
		// AUTOMEMLIMIT=off: the cgroup was not asked.
		return memLimit{}
	}
	return memLimit{bytes: n, source: "cgroup", cgroup: found}
}

// log writes the one line that says the limit and where it came from, a warning when
// the cgroup's could not be applied, nothing when there is no limit.
func (m memLimit) log(l *slog.Logger) {
	switch {
	case m.err != nil:
		l.Warn("memory limit not set", "error", m.err.Error())
	case m.source == "cgroup":
		l.Info("memory limit", "limit_bytes", m.bytes, "source", m.source, "cgroup_limit_bytes", m.cgroup)
	case m.source != "":
		l.Info("memory limit", "limit_bytes", m.bytes, "source", m.source)
	}
}

// memLimitRefresh is how often serve reads the cgroup's memory limit again: Kubernetes
// resizes a running pod's resources in place (resources.limits.memory changed without
// a restart), and the runtime's limit follows the new one within this, as GOMAXPROCS
// follows a changed CPU limit.
const memLimitRefresh = 30 * time.Second

// follow reads the cgroup's limit every interval until ctx ends and, when it has
// changed, gives the runtime memLimitShare of the new one (or AUTOMEMLIMIT's share),
// logging the change once; a limit lifted lifts the runtime's. Nothing is followed
// when the limit is the operator's (GOMEMLIMIT) or AUTOMEMLIMIT is off. A cgroup that
// can no longer be read leaves the limit as it is, with one warning until the error
// changes.
func (m memLimit) follow(ctx context.Context, cgroup memlimit.Provider, l *slog.Logger, interval time.Duration) {
	if os.Getenv("GOMEMLIMIT") != "" || os.Getenv("AUTOMEMLIMIT") == "off" {
		return
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	cur := m
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		next := applyMemoryLimit(cgroup)
		switch {
		case next.err != nil:
			if cur.err == nil || cur.err.Error() != next.err.Error() {
				l.Warn("memory limit not refreshed", "error", next.err.Error(), "limit_bytes", cur.bytes)
			}
			cur.err = next.err
			continue
		case next.source == "" && cur.source == "cgroup":
			debug.SetMemoryLimit(math.MaxInt64)
			l.Info("memory limit lifted", "previous_limit_bytes", cur.bytes)
		case next.source == "cgroup" && next.bytes != cur.bytes:
			l.Info("memory limit changed", "limit_bytes", next.bytes, "previous_limit_bytes", cur.bytes,
				"source", next.source, "cgroup_limit_bytes", next.cgroup)
		}
		cur = next
	}
}
