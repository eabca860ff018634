package deploy

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/gateway"
)

// The Deployment and its config agree on what cmd/tollgate reads from its
// surroundings: limiter.replicas is the Deployment's replica count (each replica
// takes that share of a limit while Redis is down), the container has CPU and memory
// limits (GOMAXPROCS follows the one, the runtime's soft memory limit is 90 % of the
// other) and no environment that would override either.
func TestKubernetesRuntimeSettings(t *testing.T) {
	m := readManifest(t)
	cfgText := get(t, m.configMap, "data", "tollgate.yaml").(string)
	cfg, err := gateway.ParseConfig("tollgate.yaml", []byte(cfgText), func(k string) (string, bool) {
		return strings.Repeat("x", 32), true
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := get(t, m.deployment, "spec", "replicas"); n != cfg.Limiter.Replicas {
		t.Fatalf("the Deployment runs %v replicas, limiter.replicas is %d", n, cfg.Limiter.Replicas)
	}
	c := get(t, m.deployment, "spec", "template", "spec", "containers", "0")
	for _, r := range []string{"cpu", "memory"} {
		if get(t, c, "resources", "limits", r) == nil {
			t.Errorf("no resources.limits.%s", r)
		}
	}
	if env, _ := get(t, c, "env").([]any); env != nil {
		for _, e := range env {
			switch name := get(t, e, "name"); name {
			case "GOMAXPROCS", "GOMEMLIMIT", "AUTOMEMLIMIT":
				t.Errorf("env %v overrides what the cgroup's limits give", name)
			}
		}
	}
}
