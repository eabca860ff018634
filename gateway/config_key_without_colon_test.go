package gateway

import (
	"strings"
	"testing"
)

// README: "Config errors name the key and line of a bad value without quoting a
// secret". A field written in a flow mapping without the ": " after its name
// ({name: team-a, key sk-live-...}, a one-character slip in README's own style) is
// read by YAML as one key, "key sk-live-...", with no value; the error named that key
// whole, into the log, the 422 of POST /admin/reload and `tollgate validate`'s output.
// It names the field alone: "written without ": " after it".
func TestConfigKeyWrittenWithoutColonNotQuoted(t *testing.T) {
	const secret = "sk-live-Rk9vQ2xZmW7pT4Lq"
	tail := `
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`
	upstream := func(fields string) string {
		return "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m, " + fields + "}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"client key, space", "auth:\n  keys:\n    - {name: team-a, key " + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0].key: written without ": " after it`},
		{"client key, equals", "auth:\n  keys:\n    - {name: team-a, key=" + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0].key: written without ": " after it`},
		{"client key, colon without space", "auth:\n  keys:\n    - {name: team-a, key:" + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0].key: written without ": " after it`},
		{"client key, tab", "auth:\n  keys:\n    - {name: team-a, key\t" + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0].key: written without ": " after it`},
		{"client key twice", "auth:\n  keys:\n    - {name: team-a, key " + secret + ", key " + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0].key: written without ": " after it`},
		{"client sha256", "auth:\n  keys:\n    - {name: team-a, sha256 " + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0].sha256: written without ": " after it`},
		{"admin token", "server: {admin_token " + secret + "}\n" + tail,
			`t.yaml:1: server.admin_token: written without ": " after it`},
		{"backend api_key", upstream("api_key " + secret),
			`t.yaml:2: backends.up.api_key: written without ": " after it`},
		{"backend api_key misspelled", upstream("api-key " + secret),
			`t.yaml:2: backends.up.api-key: unknown key (did you mean api_key?)`},
		{"backend header", upstream("headers: {x-gateway-token " + secret + "}"),
			`t.yaml:2: backends.up.headers.x-gateway-token: written without ": " after it`},
		{"redis password", "limiter: {store: redis, redis: {url: \"redis://127.0.0.1:6379\", password " + secret + "}}\n" + tail,
			`t.yaml:1: limiter.redis.password: written without ": " after it`},
		{"redis url", "limiter: {store: redis, redis: {url redis://u:" + secret + "@127.0.0.1:6379}}\n" + tail,
			`t.yaml:1: limiter.redis.url: written without ": " after it`},
		{"tracing header", "tracing: {exporter: otlp-grpc, endpoint: \"127.0.0.1:4317\", headers: {x-api-key " + secret + "}}\n" + tail,
			`t.yaml:1: tracing.headers.x-api-key: written without ": " after it`},
		{"MLflow key", "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model: {provider: openai, name: gpt, config: {openai_api_key " + secret + "}}\n",
			`t.yaml:4: endpoints[0].model.config.openai_api_key: written without ": " after it`},
		{"anchored", "x-key: &k {key " + secret + "}\nauth:\n  keys:\n    - {name: a, <<: *k}\n" + tail,
			`t.yaml:1: auth.keys[0].key: written without ": " after it`},
		{"not a secret", "backends:\n  demo: {provider: mock, model mock-1}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n",
			`t.yaml:2: backends.demo.model: written without ": " after it`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("config taken")
			}
			if strings.Contains(err.Error(), "Rk9vQ2xZ") {
				t.Errorf("the error quotes the secret:\n%v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}

// The field written without ": " is the one problem said about it: what the checks
// would find missing there (a client entry with neither key nor sha256, a required
// MLflow key) is that slip again.
func TestConfigKeyWrittenWithoutColonSaidOnce(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"client key", "auth:\n  keys:\n    - {name: team-a, key sk-live-1}\nbackends:\n  demo: {provider: mock, model: mock-1}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n"},
		{"MLflow key", "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model: {provider: openai, name: gpt, config: {openai_api_key sk-live-1}}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("config taken")
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != 1 {
				t.Errorf("%d problems, want the slip alone:\n%v", len(lines), err)
			}
		})
	}
}
