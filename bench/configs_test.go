package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/gateway"
	"github.com/tollgate/tollgate/providers"
	"gopkg.in/yaml.v3"
)

func TestGatewayConfig(t *testing.T) {
	base := gwParams{Listen: "127.0.0.1:18080", Admin: "127.0.0.1:19090", Upstream: "127.0.0.1:18001", Model: "mock-1"}
	withAB := base
	withAB.Canary = "127.0.0.1:18002"
	withRedis := base
	withRedis.RedisURL = "redis://127.0.0.1:16379/0"
	withTracing := base
	withTracing.OTLPEndpoint = "127.0.0.1:14317"
	withMemory := base
	withMemory.MemoryLimits = true
	cases := []struct {
		name string
		p    gwParams
	}{
		{"chat", base},
		{"ab", withAB},
		{"redis-limits", withRedis},
		{"memory-limits", withMemory},
		{"tracing", withTracing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y, err := gatewayConfig(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "gateway-"+tc.name+".yaml", y)
			// The gateway itself accepts it.
			path := filepath.Join(t.TempDir(), "tollgate.yaml")
			if err := os.WriteFile(path, y, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := gateway.Validate(path); err != nil {
				t.Fatalf("tollgate validate: %v\n%s", err, y)
			}
			// The contract's top-level keys, and nothing else.
			var top map[string]yaml.Node
			if err := yaml.Unmarshal(y, &top); err != nil {
				t.Fatal(err)
			}
			for k := range top {
				switch k {
				case "server", "auth", "backends", "endpoints", "limiter", "tracing", "logging":
				default:
					t.Fatalf("unknown top-level key %q", k)
				}
			}
			var back gwConfig
			if err := yaml.Unmarshal(y, &back); err != nil {
				t.Fatal(err)
			}
			for _, ep := range back.Endpoints {
				sum := 0
				for _, r := range ep.Routes {
					sum += r.Weight
					if _, ok := back.Backends[r.Backend]; !ok {
						t.Fatalf("endpoint %s routes to unknown backend %s", ep.Name, r.Backend)
					}
				}
				if sum != 100 {
					t.Fatalf("endpoint %s weights sum to %d", ep.Name, sum)
				}
			}
		})
	}
}

// A path sits idle while the others take their rounds: the gateway's upstream
// connections must outlast that gap, as nginx's (300 s) and mockllm's do, or
// every Tollgate round starts by redialling and the rounds compare that.
func TestGatewayUpstreamIdleOutlastsRounds(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	per := o.Duration / time.Duration(o.Rounds)
	gap := time.Duration(len(o.Paths)-1) * (per + min(o.Warmup, 100*time.Millisecond))
	base := gwParams{Listen: "127.0.0.1:1", Admin: "127.0.0.1:2", Upstream: "127.0.0.1:3", Model: mockModel}
	withAB := base
	withAB.Canary = "127.0.0.1:4"
	for name, p := range map[string]gwParams{"chat": base, "ab": withAB} {
		t.Run(name, func(t *testing.T) {
			y, err := gatewayConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			// Decoded as the gateway decodes it, its default applied where unset.
			var c struct {
				Backends map[string]providers.Config `yaml:"backends"`
			}
			if err := yaml.Unmarshal(y, &c); err != nil {
				t.Fatal(err)
			}
			for bn, b := range c.Backends {
				idle := b.IdleConnTimeout
				if idle == 0 {
					idle = providers.DefaultIdleConnTimeout
				}
				if idle < gap || idle > upstreamKeepAlive {
					t.Errorf("backend %s keeps idle upstream connections %v; a path sits idle %v between its rounds"+
						" and mockllm keeps them %v", bn, idle, gap, upstreamKeepAlive)
				}
			}
		})
	}
}

// A path's client connections sit idle between its rounds as well, for as long as
// the other paths' rounds take: over the gateway's default idle_timeout of 90 s
// from --duration 225s in 5 rounds on three paths (150s on four). The gateway must
// keep them as long as nginx (keepalive_timeout) and the harness's client do, or
// its later rounds start on connections it closed, failing as "conn closed" and
// redialling, where nginx's rounds reuse theirs.
func TestClientConnectionsIdleAlikeThroughBothProxies(t *testing.T) {
	y, err := gatewayConfig(gwParams{Listen: "127.0.0.1:1", Admin: "127.0.0.1:2", Upstream: "127.0.0.1:3", Model: mockModel})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig("tollgate.yaml", y, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var nginx time.Duration
	for line := range strings.Lines(nginxConfig(nginxParams{Dir: "/tmp/b", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:3"})) {
		// The first is the http block's: the client side (the upstream blocks follow).
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "keepalive_timeout "); ok {
			if nginx, err = time.ParseDuration(strings.TrimSuffix(v, ";")); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	client := newClient("127.0.0.1:1", 1, time.Second, false, 0).MaxIdleConnDuration
	if cfg.Server.IdleTimeout != nginx || client != nginx {
		t.Fatalf("idle client connections kept %v by the gateway, %v by nginx, %v by the harness's client; want them alike",
			cfg.Server.IdleTimeout, nginx, client)
	}
}

func TestNginxConfig(t *testing.T) {
	base := nginxParams{Dir: "/tmp/b", Listen: "127.0.0.1:18081", Upstream: "127.0.0.1:18001"}
	stream := base
	stream.Stream, stream.Workers, stream.MaxConns = true, 1, 30000
	ab := base
	ab.Canary = "127.0.0.1:18002"
	cases := []struct {
		name string
		p    nginxParams
		must []string
		not  []string
	}{
		{"chat", base, []string{"worker_processes auto;", "keepalive 256;", "proxy_http_version 1.1;",
			`proxy_set_header Connection "";`, "access_log off;", "daemon off;", "pid /tmp/b/nginx.pid;",
			"proxy_pass http://stable;", "worker_connections 4096;",
			"fastcgi_temp_path /tmp/b/fastcgi;", "uwsgi_temp_path /tmp/b/uwsgi;", "scgi_temp_path /tmp/b/scgi;"}, []string{"proxy_buffering off;", "split_clients"}},
		{"stream", stream, []string{"proxy_buffering off;", "worker_processes 1;", "worker_connections 30000;",
			"worker_rlimit_nofile 61024;"}, nil},
		{"ab", ab, []string{`split_clients "${http_x_user_id}" $variant`, "95% stable;", "proxy_pass http://$variant;",
			"server 127.0.0.1:18002;"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := nginxConfig(tc.p)
			golden(t, "nginx-"+tc.name+".conf", []byte(c))
			for _, s := range tc.must {
				if !strings.Contains(c, s) {
					t.Errorf("missing %q", s)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(c, s) {
					t.Errorf("unexpected %q", s)
				}
			}
			if strings.Count(c, "{") != strings.Count(c, "}") {
				t.Fatal("unbalanced braces")
			}
		})
	}
}
