package main

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// gwConfig is the part of Tollgate's YAML contract (shared/DESIGN.md) the
// scenarios use. It is written with yaml.v3 so quoting is always right.
type gwConfig struct {
	Server    gwServer             `yaml:"server"`
	Auth      gwAuth               `yaml:"auth"`
	Backends  map[string]gwBackend `yaml:"backends"`
	Endpoints []gwEndpoint         `yaml:"endpoints"`
	Limiter   *gwLimiter           `yaml:"limiter,omitempty"`
	Tracing   *gwTracing           `yaml:"tracing,omitempty"`
	Logging   gwLogging            `yaml:"logging"`
}

type gwServer struct {
	Listen      string        `yaml:"listen"`
	AdminListen string        `yaml:"admin_listen"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

type gwAuth struct {
	Mode string `yaml:"mode"`
}

type gwBackend struct {
	Provider string        `yaml:"provider"`
	BaseURL  string        `yaml:"base_url"`
	Model    string        `yaml:"model"`
	MaxConns int           `yaml:"max_connections,omitempty"`
	IdleConn time.Duration `yaml:"idle_conn_timeout,omitempty"`
}

// upstreamKeepAlive is how long mockllm (--keep-alive-timeout) and the gateway's
// backends (idle_conn_timeout) keep an idle connection. Paths take turns, so each
// path's connections sit idle while the others run their rounds (4.2 s between a
// path's rounds by default): the gateway's own default of 4 s would have every
// Tollgate round start by redialling mockllm, while nginx keeps its upstream
// connections 300 s.
const upstreamKeepAlive = time.Hour

// clientKeepAlive is how long the harness's client, nginx (keepalive_timeout) and
// the gateway (server.idle_timeout) keep an idle client connection. A path's
// client connections sit idle while the other paths take their rounds, longer the
// longer the rounds: with the gateway's default of 90 s, a run of long rounds
// (--duration 225s in 5 rounds on three paths) would have every later Tollgate
// round start on connections the gateway had closed, failing as "conn closed"
// and redialling, while nginx's rounds reused theirs.
const clientKeepAlive = 300 * time.Second

type gwRoute struct {
	Backend string `yaml:"backend"`
	Weight  int    `yaml:"weight"`
	Variant string `yaml:"variant,omitempty"`
}

type gwSticky struct {
	From string `yaml:"from"`
	Name string `yaml:"name"`
}

type gwCanary struct {
	Backend      string  `yaml:"backend"`
	Steps        []int   `yaml:"steps,flow"`
	Interval     string  `yaml:"interval"`
	MaxErrorRate float64 `yaml:"max_error_rate"`
	MaxP99       string  `yaml:"max_p99"`
}

type gwLimit struct {
	Per      string `yaml:"per"`
	Requests int64  `yaml:"requests,omitempty"`
	Tokens   int64  `yaml:"tokens,omitempty"`
	Window   string `yaml:"window"`
	Burst    int64  `yaml:"burst,omitempty"`
}

type gwEndpoint struct {
	Name   string    `yaml:"name"`
	Type   string    `yaml:"type"`
	Routes []gwRoute `yaml:"routes"`
	Sticky *gwSticky `yaml:"sticky,omitempty"`
	Canary *gwCanary `yaml:"canary,omitempty"`
	Limits []gwLimit `yaml:"limits,omitempty"`
}

type gwRedis struct {
	URL string `yaml:"url"`
}

type gwLimiter struct {
	Store    string   `yaml:"store"`
	Redis    *gwRedis `yaml:"redis,omitempty"`
	Prefetch string   `yaml:"prefetch,omitempty"`
}

type gwTracing struct {
	Exporter    string  `yaml:"exporter"`
	Endpoint    string  `yaml:"endpoint"`
	Insecure    bool    `yaml:"insecure"`
	SampleRatio float64 `yaml:"sample_ratio"`
}

type gwLogging struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// gwParams are the scenario's choices for one gateway.
type gwParams struct {
	Listen, Admin string
	Upstream      string // host:port of the stable mockllm
	Canary        string // host:port of the canary mockllm (ab), or ""
	Model         string
	RedisURL      string // redis-limits, or ""
	Prefetch      string // limiter.prefetch with RedisURL, or "" for the default
	MemoryLimits  bool   // the limits RedisURL would carry, in the memory store
	OTLPEndpoint  string // tracing, or ""
	// UpstreamConns raises the backend's connection cap (streams-10k: every
	// open stream holds one upstream connection); 0 keeps the default.
	UpstreamConns int
}

// Endpoint names clients put in "model" when going through the gateway.
const (
	endpointChat   = "chat"
	endpointEmbed  = "embed"
	endpointRerank = "rerank"
)

// gatewayModel is the endpoint a load of kind k names in "model" through the
// gateway: a chat endpoint serves chat, streams, the Responses API and
// Anthropic's Messages API.
func gatewayModel(k reqKind) string {
	switch k {
	case kindEmbeddings:
		return endpointEmbed
	case kindRerank:
		return endpointRerank
	}
	return endpointChat
}

// gatewayConfig builds the YAML for one scenario's gateway.
func gatewayConfig(p gwParams) ([]byte, error) {
	c := gwConfig{
		Server: gwServer{Listen: p.Listen, AdminListen: p.Admin, IdleTimeout: clientKeepAlive},
		Auth:   gwAuth{Mode: "none"},
		Backends: map[string]gwBackend{"m": {Provider: "openai", BaseURL: "http://" + p.Upstream + "/v1", Model: p.Model,
			MaxConns: p.UpstreamConns, IdleConn: upstreamKeepAlive}},
		Endpoints: []gwEndpoint{
			{Name: endpointChat, Type: "chat", Routes: []gwRoute{{Backend: "m", Weight: 100}}},
			{Name: endpointEmbed, Type: "embeddings", Routes: []gwRoute{{Backend: "m", Weight: 100}}},
			{Name: endpointRerank, Type: "rerank", Routes: []gwRoute{{Backend: "m", Weight: 100}}},
		},
		Logging: gwLogging{Level: "warn", Format: "json"},
	}
	if p.Canary != "" {
		c.Backends["m2"] = gwBackend{Provider: "openai", BaseURL: "http://" + p.Canary + "/v1", Model: p.Model,
			IdleConn: upstreamKeepAlive}
		chat := &c.Endpoints[0]
		chat.Routes = []gwRoute{
			{Backend: "m", Weight: 95, Variant: "stable"},
			{Backend: "m2", Weight: 5, Variant: "canary"},
		}
		chat.Sticky = &gwSticky{From: "header", Name: "X-User-ID"}
		// The interval outlasts any run and the gates are wide: the canary
		// holds its 5 % for the whole measurement.
		chat.Canary = &gwCanary{Backend: "m2", Steps: []int{5, 10, 25, 50, 75, 100},
			Interval: "24h", MaxErrorRate: 0.5, MaxP99: "10s"}
	}
	if p.RedisURL != "" || p.MemoryLimits {
		c.Limiter = &gwLimiter{Store: "memory"}
		if p.RedisURL != "" {
			c.Limiter = &gwLimiter{Store: "redis", Redis: &gwRedis{URL: p.RedisURL}, Prefetch: p.Prefetch}
		}
		// Two buckets every request must pass, sized never to refuse: the
		// scenario measures the check, not the rejection.
		c.Endpoints[0].Limits = []gwLimit{
			{Per: "endpoint", Requests: 1_000_000_000, Window: "minute", Burst: 1_000_000_000},
			{Per: "endpoint", Tokens: 1_000_000_000_000, Window: "minute"},
		}
	}
	if p.OTLPEndpoint != "" {
		c.Tracing = &gwTracing{Exporter: "otlp-grpc", Endpoint: p.OTLPEndpoint, Insecure: true, SampleRatio: 0.1}
	}
	return yaml.Marshal(&c)
}

// nginxParams are the scenario's choices for nginx.
type nginxParams struct {
	Dir      string // temp dir for pid, logs and temp files
	Listen   string
	Upstream string
	Canary   string // ab: second upstream, split 95/5 by X-User-ID
	Workers  int    // worker_processes; 0 = auto
	Stream   bool   // proxy_buffering off
	MaxConns int    // worker_connections
}

// nginxConfig renders a reverse-proxy config tuned the way one would run
// nginx in front of an LLM server: upstream keepalive, HTTP/1.1 to the
// upstream, no access log, and no buffering for streams.
func nginxConfig(p nginxParams) string {
	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			b.WriteString(x)
		}
		b.WriteByte('\n')
	}
	workers := "auto"
	if p.Workers > 0 {
		workers = strconv.Itoa(p.Workers)
	}
	conns := max(p.MaxConns, 4096)
	w("# Generated by bench/ for one run; not for production use.")
	w("daemon off;")
	w("master_process on;")
	w("worker_processes ", workers, ";")
	w("worker_rlimit_nofile ", strconv.Itoa(conns*2+1024), ";")
	w("pid ", p.Dir, "/nginx.pid;")
	w("error_log ", p.Dir, "/nginx-error.log warn;")
	w("events {")
	w("    worker_connections ", strconv.Itoa(conns), ";")
	w("    multi_accept on;")
	w("}")
	w("http {")
	w("    access_log off;")
	// Every temp path in the run's dir: nginx creates each at start, and the
	// compiled-in defaults (/var/lib/nginx/...) exist only where the package
	// was installed, not where the bench bundle runs it.
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		w("    ", t, "_temp_path ", p.Dir, "/", t, ";")
	}
	w("    keepalive_requests 1000000;")
	w("    keepalive_timeout ", strconv.Itoa(int(clientKeepAlive/time.Second)), "s;")
	w("    upstream stable {")
	w("        server ", p.Upstream, ";")
	w("        keepalive 256;")
	w("        keepalive_requests 1000000;")
	w("        keepalive_timeout 300s;")
	w("    }")
	pass := "http://stable"
	if p.Canary != "" {
		w("    upstream canary {")
		w("        server ", p.Canary, ";")
		w("        keepalive 256;")
		w("        keepalive_requests 1000000;")
		w("        keepalive_timeout 300s;")
		w("    }")
		w(`    split_clients "${http_x_user_id}" $variant {`)
		w("        95% stable;")
		w("        *   canary;")
		w("    }")
		pass = "http://$variant"
	}
	w("    server {")
	w("        listen ", p.Listen, " backlog=4096;")
	w("        location / {")
	w("            proxy_pass ", pass, ";")
	w("            proxy_http_version 1.1;")
	w(`            proxy_set_header Connection "";`)
	w("            proxy_read_timeout 300s;")
	if p.Stream {
		w("            proxy_buffering off;")
		w("            proxy_request_buffering off;")
	}
	w("        }")
	w("    }")
	w("}")
	return b.String()
}
