package gateway

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/tracing"
)

// scaleConfig is a config of keys client keys (each allowed every endpoint, as a key
// without `endpoints:` is) and endpoints chat endpoints over ten mock backends;
// withLimits gives every key and every endpoint one limit.
func scaleConfig(keys, endpoints int, withLimits bool) string {
	var b strings.Builder
	b.WriteString("server: {listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\"}\n")
	b.WriteString("auth:\n  mode: keys\n  keys:\n")
	for i := range keys {
		n := strconv.Itoa(i)
		b.WriteString("    - {name: team-" + n + ", key: \"sk-team-secret-" + strings.Repeat("0", 8-len(n)) + n + "\"")
		if withLimits {
			b.WriteString(", limits: [{per: api_key, requests: 600, window: minute}]")
		}
		b.WriteString("}\n")
	}
	b.WriteString("backends:\n")
	for i := range 10 {
		n := strconv.Itoa(i)
		b.WriteString("  b" + n + ": {provider: mock, model: m" + n + "}\n")
	}
	b.WriteString("endpoints:\n")
	for i := range endpoints {
		b.WriteString("  - {name: model-" + strconv.Itoa(i) + ", type: chat, routes: [{backend: b" + strconv.Itoa(i%10) + "}]")
		if withLimits {
			b.WriteString(", limits: [{per: api_key, tokens: 100000, window: minute}]")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// builtRuntimeHeap builds the config as `tollgate validate` and a reload do and
// returns the heap the built runtime holds.
func builtRuntimeHeap(t *testing.T, keys, endpoints int, withLimits bool) int64 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(scaleConfig(keys, endpoints, withLimits)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limiter.New(limiter.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	m := metrics.New(prometheus.NewRegistry())
	// Two collections: the first leaves what sync.Pools keep to their victim caches.
	goruntime.GC()
	before := int64(liveHeap())
	rt, err := buildRuntime(cfg, nil, m, tracing.Disabled(), lim, providers.NewPools())
	if err != nil {
		t.Fatal(err)
	}
	goruntime.GC()
	held := int64(liveHeap()) - before
	rt.close()
	goruntime.KeepAlive(cfg)
	goruntime.KeepAlive(m)
	return held
}

// A platform team's gateway has thousands of client keys and hundreds of endpoints.
// What a config holds for one more key is that key's own data (its name, hash, which
// endpoints it may call, its limits), not a copy of something per endpoint: a key that
// may call every endpoint shares the runtime's /v1/models body, its policy is compiled
// once, and it is joined with an endpoint's only by the requests that pair them
// (limiter.Policy.Joined). Built per key and endpoint, 10,000 keys over 500 endpoints
// held about 1 GB (3 GB with one limit per key and endpoint) per config, twice during
// a reload, and `tollgate validate` needed as much.
// Not t.Parallel: it measures the process's live heap.
func TestKeyMemoryDoesNotGrowWithEndpoints(t *testing.T) {
	const endpoints, few, many = 200, 10, 510
	for _, c := range []struct {
		name       string
		withLimits bool
	}{{"keys without limits", false}, {"keys and endpoints with one limit each", true}} {
		t.Run(c.name, func(t *testing.T) {
			small := builtRuntimeHeap(t, few, endpoints, c.withLimits)
			large := builtRuntimeHeap(t, many, endpoints, c.withLimits)
			perKey := (large - small) / (many - few)
			t.Logf("runtime heap: %d keys %d KiB, %d keys %d KiB; %d bytes per key with %d endpoints",
				few, small>>10, many, large>>10, perKey, endpoints)
			// A key's own data is well under 8 KiB whatever the number of endpoints
			// (a []bool of 200 is 200 bytes); per-endpoint copies make it grow by
			// hundreds of bytes per endpoint.
			if perKey > 8<<10 {
				t.Errorf("each client key holds %d bytes of the built config with %d endpoints (want under 8 KiB: memory per key must not grow with the number of endpoints)", perKey, endpoints)
			}
		})
	}
}
