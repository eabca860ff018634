package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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

func cpuList(from, to int) string {
	if from == to {
		return strconv.Itoa(from)
	}
	return strconv.Itoa(from) + "-" + strconv.Itoa(to)
}

// planCores splits n cores: the first up for the upstream (mockllm, and
// redis-server), the next gw for the gateway (and nginx), the rest for the
// load generator, which needs at least one of its own. up ≤ 0 picks the
// default: twice the gateway's cores, so that mockllm, which spends about
// what a proxy does per request, does not cap the proxies' rate, but no more
// than half of the cores the gateway leaves, so that the load generator keeps
// as many. With too few cores nothing is pinned.
func planCores(n int, pin bool, gw, up int) CoreMap {
	gw = max(gw, 1)
	if !pin {
		return CoreMap{GatewayCores: n}
	}
	if up <= 0 {
		up = max(1, min(2*gw, (n-gw)/2))
	}
	if n < up+gw+1 {
		return CoreMap{GatewayCores: n, Note: fmt.Sprintf("--pin needs at least %d cores for upstream (%d), gateway (%d) and load generator; this machine has %d", up+gw+1, up, gw, n)}
	}
	return CoreMap{
		Pinned:        true,
		Upstream:      cpuList(0, up-1),
		Gateway:       cpuList(up, up+gw-1),
		Loadgen:       cpuList(up+gw, n-1),
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

// cpuCount is the number of CPUs in a list as cpuList writes it ("3" or
// "2-15").
func cpuCount(list string) int {
	var first, last int
	if _, err := fmt.Sscanf(list, "%d-%d", &first, &last); err == nil && last >= first {
		return last - first + 1
	}
	return 1
}
