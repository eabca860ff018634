package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// CoreMap is where each process runs: taskset CPU lists, empty when not
// pinned. nginx shares the gateway's cores: the two are never loaded at
// the same time, and so compete on equal terms.
type CoreMap struct {
	Pinned   bool   `json:"pinned"`
	Upstream string `json:"upstream,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	Loadgen  string `json:"loadgen,omitempty"`
	// GatewayCores is how many cores the gateway (and nginx) may use.
	GatewayCores int `json:"gateway_cores"`
	// UpstreamCores is how many cores mockllm (and redis-server) may use when
	// pinned.
	UpstreamCores int    `json:"upstream_cores,omitempty"`
	Note          string `json:"note,omitempty"`
}

// String is the core map as printed at start and in the report.
func (c CoreMap) String() string {
	if !c.Pinned {
		if c.Note != "" {
			return "not pinned (" + c.Note + ")"
		}
		return "not pinned"
	}
	return "upstream (mockllm, redis-server) on " + c.Upstream + ", gateway and nginx on " + c.Gateway +
		", load generator (and the OTLP receiver in it) on " + c.Loadgen
}

// cpuList writes CPU numbers, ascending, as taskset -c reads them: runs of
// consecutive numbers as ranges ("0-3,6,8-9").
func cpuList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// allowedCPUs is the CPUs this process may run on, ascending: its affinity
// mask, which in a container limited to a CPU set (cpuset 4-7) is not
// 0..NumCPU-1, so taskset -c 0 would fail there. Where the mask cannot be
// read, the first runtime.NumCPU.
func allowedCPUs() []int {
	if out := affinityCPUs(); len(out) > 0 {
		return out
	}
	out := make([]int, runtime.NumCPU())
	for i := range out {
		out[i] = i
	}
	return out
}

// planCores splits the CPUs this process may use (allowedCPUs), in order: the
// first up for the upstream (mockllm, and redis-server), the next gw for the
// gateway (and nginx), the rest for the load generator, which needs at least
// one of its own. up ≤ 0 picks the default: twice the gateway's cores, so that
// mockllm, which spends about what a proxy does per request, does not cap the
// proxies' rate, but no more than half of the cores the gateway leaves, so
// that the load generator keeps as many. With too few cores nothing is pinned.
func planCores(cpus []int, pin bool, gw, up int) CoreMap {
	n := len(cpus)
	gw = max(gw, 1)
	if !pin {
		return CoreMap{GatewayCores: n}
	}
	if up <= 0 {
		up = max(1, min(2*gw, (n-gw)/2))
	}
	if n < up+gw+1 {
		return CoreMap{GatewayCores: n, Note: fmt.Sprintf("--pin needs at least %d cores for upstream (%d), gateway (%d) and load generator; this process may run on %d", up+gw+1, up, gw, n)}
	}
	return CoreMap{
		Pinned:        true,
		Upstream:      cpuList(cpus[:up]),
		Gateway:       cpuList(cpus[up : up+gw]),
		Loadgen:       cpuList(cpus[up+gw:]),
		GatewayCores:  gw,
		UpstreamCores: up,
	}
}

// pinSelf moves every thread of this process onto the load generator's
// cores and sizes GOMAXPROCS to them (the runtime reads the affinity only
// at start).
func pinSelf(c CoreMap) error {
	if !c.Pinned {
		return nil
	}
	out, err := exec.Command("taskset", "-a", "-c", "-p", c.Loadgen, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset: %w: %s", err, out)
	}
	runtime.GOMAXPROCS(cpuCount(c.Loadgen))
	return nil
}

// cpuCount is the number of CPUs in a list as cpuList writes it ("3",
// "2-15", "0-3,6"); at least 1, the least any list pins to.
func cpuCount(list string) int {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err1 := strconv.Atoi(lo)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.Atoi(hi)
		}
		if err1 == nil && err2 == nil && last >= first {
			n += last - first + 1
		}
	}
	return max(n, 1)
}
