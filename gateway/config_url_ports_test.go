package gateway

import (
	"strings"
	"testing"
)

// A URL whose port is not a port (99999) is refused at validation: a Redis URL, after
// which `tollgate serve` would run degraded for good, logging "dial tcp: address
// 99999: invalid port" on every attempt, and a backend's base_url or targets, whose
// every request would fail. limiter.redis.sentinel.addrs and cluster addrs with the
// same port are refused ("must be host:port"), as are server.listen and admin_listen.
func TestConfigURLPortOutOfRangeRefused(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"limiter.redis.url", `limiter:
  store: redis
  redis: {url: "redis://127.0.0.1:99999/0"}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:3: limiter.redis.url: "},
		{"backend base_url", `backends:
  up:
    provider: openai
    base_url: "http://127.0.0.1:99999/v1"
    model: m
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:4: backends.up.base_url: "},
		{"backend target", `backends:
  up:
    provider: openai
    targets: ["http://127.0.0.1:8000/v1", "http://127.0.0.1:0/v1"]
    model: m
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:4: backends.up.targets[1]: "},
		{"backend proxy", `backends:
  up:
    provider: openai
    base_url: "http://127.0.0.1:8000/v1"
    model: m
    proxy: "http://proxy:99999"
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:6: backends.up.proxy: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want+"has a port out of range") {
				t.Fatalf("err = %v, want %s<a port out of range>", err, c.want)
			}
		})
	}
}
