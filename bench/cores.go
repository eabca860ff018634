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
	GatewayCores int    `json:"gateway_cores"`
	Note         string `json:"note,omitempty"`
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

// planCores splits n cores: core 0 for the upstream, the next gw cores for
// the gateway (and nginx), the rest for the load generator, which needs at
// least one of its own. With fewer cores nothing is pinned.
func planCores(n int, pin bool, gw int) CoreMap {
	gw = max(gw, 1)
	if !pin {
		return CoreMap{GatewayCores: n}
	}
	if n < gw+2 {
		return CoreMap{GatewayCores: n, Note: fmt.Sprintf("--pin needs at least %d cores for upstream, gateway (%d) and load generator; this machine has %d", gw+2, gw, n)}
	}
	return CoreMap{
		Pinned:       true,
		Upstream:     "0",
		Gateway:      cpuList(1, gw),
		Loadgen:      cpuList(gw+1, n-1),
		GatewayCores: gw,
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
