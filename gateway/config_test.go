package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestConfigErrors checks each bad config in testdata/config/*.yaml against the
// messages in its .golden file.
func TestConfigErrors(t *testing.T) {
	files, _ := filepath.Glob("testdata/config/bad-*.yaml")
	if len(files) == 0 {
		t.Fatal("no bad configs in testdata/config")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseConfig(filepath.Base(f), data, env(map[string]string{"SET": "value"}))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			got := ce.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, _ := os.ReadFile(golden)
			if got != string(want) {
				t.Fatalf("messages:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestConfigGood(t *testing.T) {
	data := []byte(`
server: {listen: "127.0.0.1:0", max_body_bytes: 1MiB, shutdown_grace: 5s}
auth:
  mode: keys
  keys:
    - {name: team-a, key: "${TEAM_A_KEY}", endpoints: [chat]}
    - {name: ops, sha256: "` + strings.Repeat("ab", 32) + `"}
backends:
  up: {provider: openai, base_url: "${UP_URL:-http://127.0.0.1:8001/v1}", model: "m-1", api_key: "${UP_KEY}"}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, timeout: 30s}
`)
	cfg, err := ParseConfig("good.yaml", data, env(map[string]string{"TEAM_A_KEY": "sk-a", "UP_KEY": "sk: {not yaml"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.MaxBodyBytes != 1<<20 || cfg.Server.ShutdownGrace != 5*time.Second {
		t.Errorf("server = %+v", cfg.Server)
	}
	if cfg.Auth.Keys[0].Key != "sk-a" || cfg.Backends["up"].APIKey != "sk: {not yaml" {
		t.Errorf("env values not expanded as plain strings: %+v", cfg.Backends["up"])
	}
	if cfg.Backends["up"].BaseURL != "http://127.0.0.1:8001/v1" {
		t.Errorf("default not applied: %q", cfg.Backends["up"].BaseURL)
	}
	e := cfg.Endpoints[0]
	if e.Routes[0].Weight != 100 || e.Routes[0].Variant != "up" || e.Timeout != 30*time.Second {
		t.Errorf("endpoint = %+v", e)
	}
}

func TestDefaultConfigLoads(t *testing.T) {
	if _, err := LoadConfig("../configs/tollgate.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{{"8MiB", 8 << 20, true}, {"512KB", 512000, true}, {"1048576", 1 << 20, true}, {"1.5 GiB", 3 << 29, true}, {"8 parsecs", 0, false}, {"-1", 0, false}, {"", 0, false},
		// Whole numbers are read exactly, up to 2^63 − 1 (README).
		{"9223372036854775807", math.MaxInt64, true}, {"9223372036854775808", 0, false},
		{"8589934591GiB", 8589934591 << 30, true}, {"8589934592GiB", 0, false}, {"8589934592.5GiB", 0, false}}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseSize(c.in)
			if (err == nil) != c.ok || got != c.want {
				t.Fatalf("ParseSize(%q) = %d, %v", c.in, got, err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	b, _ := os.ReadFile("../configs/tollgate.yaml")
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("fuzz.yaml", data, env(nil))
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		var ce *ConfigError
		if err != nil && errors.As(err, &ce) {
			for _, p := range ce.Problems {
				if !strings.HasPrefix(p, "fuzz.yaml") {
					t.Fatalf("problem without file name: %q", p)
				}
			}
		}
	})
}

// TestConfigYAMLMergeKey loads backends that share settings through `<<: *anchor`
// and `<<: [mapping, *anchor]`, as yaml.v3 decodes them: a key of the mapping itself
// wins over a merged one, and an earlier mapping of a list over a later one.
func TestConfigYAMLMergeKey(t *testing.T) {
	data, err := os.ReadFile("testdata/config/merge-keys.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("merge-keys.yaml", data, env(nil))
	if err != nil {
		t.Fatalf("config with YAML merge keys rejected: %v", err)
	}
	cases := []struct {
		backend, model string
		timeout        time.Duration
	}{{"a", "m", 20 * time.Second}, {"b", "m2", 20 * time.Second}, {"c", "m3", 5 * time.Second}}
	for _, c := range cases {
		t.Run(c.backend, func(t *testing.T) {
			b := cfg.Backends[c.backend]
			if b.Provider != "openai" || b.BaseURL != "http://127.0.0.1:1/v1" || b.Model != c.model || b.Timeout != c.timeout {
				t.Fatalf("backend %s = %+v", c.backend, b)
			}
		})
	}
	if l := cfg.lineOf("backends.b.model"); l != 5 {
		t.Errorf("backends.b.model is on line %d, want 5 (the key that wins)", l)
	}
	if l := cfg.lineOf("backends.b.base_url"); l != 2 {
		t.Errorf("backends.b.base_url is on line %d, want 2 (the merged anchor)", l)
	}
}

// TestConfigBadMergeKey checks merge keys whose value is not a mapping to merge, and
// an anchor that merges itself, which the parser accepts: each at its line and key.
func TestConfigBadMergeKey(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"scalar", "backends:\n  b: {<<: 3, provider: mock, model: m}\n", "t.yaml:2: backends.b.<<: must be a mapping, an alias of one, or a list of them"},
		{"list of scalars", "backends:\n  b: {<<: [x], provider: mock, model: m}\n", "t.yaml:2: backends.b.<<: must be a mapping"},
		{"merges itself", "backends:\n  b: &b {<<: *b, provider: mock, model: m}\n", "t.yaml:2: backends.b.<<: *b is the mapping this merge key is in, or holds it: a mapping cannot merge itself"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestConfigTypeErrorNamesKey checks that a decode error names the key of the bad
// value when several keys share its line, as in a one-line flow mapping. yaml.v3
// shortens a value over 10 bytes in its message ("unlimit..."), so the value seen
// there is matched by its prefix; the message then leaves the value out (it may be a
// secret), except for durations.
func TestConfigTypeErrorNamesKey(t *testing.T) {
	cases := []struct{ name, backend, want string }{
		{"long value", `{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, max_connections: unlimited-ish}`,
			"t.yaml:2: backends.up.max_connections: must be a number, not a string"},
		{"long value sharing a prefix", `{provider: openai, base_url: "http://127.0.0.1:1/v1", model: unlimited-model, max_connections: unlimited-ish}`,
			"t.yaml:2: backends.up.max_connections: must be a number, not a string"},
		{"ten bytes ending in dots", `{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, max_connections: "seven.c..."}`,
			"t.yaml:2: backends.up.max_connections: must be a number, not a string"},
		{"duration", `{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, timeout: thirty-seconds}`,
			"t.yaml:2: backends.up.timeout: cannot use `thirty-...` as a duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := "backends:\n  up: " + c.backend + "\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
			_, err := ParseConfig("t.yaml", []byte(yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestConfigDuplicateClientKey checks that two auth.keys entries with the same key,
// given as key or as its sha256, are refused by validation with the file, line and
// key path of the second one, and without the key itself.
func TestConfigDuplicateClientKey(t *testing.T) {
	sum := sha256.Sum256([]byte("same-secret-value"))
	hash := hex.EncodeToString(sum[:])
	cases := []struct{ name, first, second, want string }{
		{"key twice", `key: "same-secret-value"`, `key: "same-secret-value"`, ":5: auth.keys[1].key: same key as auth.keys[0]"},
		{"key then its sha256", `key: "same-secret-value"`, `sha256: "` + hash + `"`, ":5: auth.keys[1].sha256: same key as auth.keys[0]"},
		{"sha256 then its key", `sha256: "` + strings.ToUpper(hash) + `"`, `key: "same-secret-value"`, ":5: auth.keys[1].key: same key as auth.keys[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "prod.yaml")
			yaml := "auth:\n  mode: keys\n  keys:\n" +
				"    - {name: team-a, " + c.first + "}\n" +
				"    - {name: team-b, " + c.second + "}\n" +
				"backends:\n  demo: {provider: mock, model: mock-1}\n" +
				"endpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}]}\n"
			if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Validate(path)
			if err == nil {
				t.Fatal("two identical client keys accepted")
			}
			if strings.Contains(err.Error(), "same-secret-value") || strings.Contains(strings.ToLower(err.Error()), hash) {
				t.Fatalf("error shows the key: %v", err)
			}
			if err.Error() != path+c.want {
				t.Fatalf("err = %q, want %q", err, path+c.want)
			}
		})
	}
}

// TestConfigErrorHidesRedisPassword checks that a malformed limiter.redis.url (here a
// bad port) is reported without its password: config errors go to `tollgate
// validate`'s output, the reload-failure log line and the /admin/reload response.
func TestConfigErrorHidesRedisPassword(t *testing.T) {
	yaml := `limiter: {store: redis, redis: {url: "redis://:Sup3rSecretPw@redis.internal:63790x/0"}}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`
	_, err := ParseConfig("t.yaml", []byte(yaml), env(nil))
	if err == nil {
		t.Fatal("bad redis url accepted")
	}
	if !strings.HasPrefix(err.Error(), "t.yaml:1: limiter.redis.url: ") {
		t.Errorf("error does not name file, line and key: %v", err)
	}
	if strings.Contains(err.Error(), "Sup3rSecretPw") {
		t.Fatalf("config error shows the redis password: %v", err)
	}
}

// TestConfigImpliedModes: settings that only make sense in one mode select it when the
// mode is left out. Keys listed turn authentication on, so a config that names its
// clients' keys never serves without them; a redis block makes the limiter's store
// redis, so limits pointed at a shared Redis are never kept per process instead.
func TestConfigImpliedModes(t *testing.T) {
	const rest = `
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:8001/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	for _, c := range []struct {
		name, yaml  string
		auth, store string
	}{
		{"nothing", rest, "none", ""},
		{"keys", "auth:\n  keys: [{name: team-a, key: sk-a}]\n" + rest, "keys", ""},
		{"redis block", "limiter:\n  redis: {addrs: [\"127.0.0.1:7000\", \"127.0.0.1:7001\"]}\n" + rest, "none", "redis"},
	} {
		cfg, err := ParseConfig(c.name+".yaml", []byte(c.yaml), env(nil))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if cfg.Auth.Mode != c.auth || cfg.Limiter.Store != c.store {
			t.Errorf("%s: auth.mode %q, limiter.store %q; want %q, %q", c.name, cfg.Auth.Mode, cfg.Limiter.Store, c.auth, c.store)
		}
	}
}

// TestConfigEnvDefault checks ${VAR:-default} as the shell, docker compose and envsubst
// read it: the default for a variable unset or set but empty (Kubernetes often sets
// `value: ""`), while a plain ${VAR} set to "" stays "".
func TestConfigEnvDefault(t *testing.T) {
	cases := []struct {
		name, value string
		vars        map[string]string
		want        string
	}{
		{"default, variable unset", "${V:-dflt}", nil, "dflt"},
		{"default, variable empty", "${V:-dflt}", map[string]string{"V": ""}, "dflt"},
		{"default, variable set", "${V:-dflt}", map[string]string{"V": "set"}, "set"},
		{"empty default, variable empty", "${V:-}", map[string]string{"V": ""}, ""},
		{"no default, variable empty", "${V}", map[string]string{"V": ""}, ""},
		{"within text", "a-${V:-b}-c", map[string]string{"V": ""}, "a-b-c"},
		{"two references", "${V}${W:-w}", map[string]string{"V": "v"}, "vw"},
		{"a value is not expanded again", "${V}", map[string]string{"V": "${W}", "W": "w"}, "${W}"},
		{"escaped", "$${V}", map[string]string{"V": "v"}, "${V}"},
		{"escaped then expanded", "$${V}-${V}", map[string]string{"V": "v"}, "${V}-v"},
		{"a lone dollar stays", "pa$$word$", nil, "pa$$word$"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m, api_key: \"" + c.value + "\"}\n" +
				"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
			cfg, err := ParseConfig("t.yaml", []byte(y), env(c.vars))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Backends["up"].APIKey; got != c.want {
				t.Fatalf("api_key = %q, want %q", got, c.want)
			}
		})
	}
}

// TestConfigMalformedEnvReference checks that a reference that is not ${NAME} or
// ${NAME:-default} is an error naming file, line and key, not text kept as it is (which
// would become the API key or the URL), and that the message never shows the value.
func TestConfigMalformedEnvReference(t *testing.T) {
	const help = "; write ${NAME} or ${NAME:-default}, and $${ for a literal ${"
	cases := []struct{ name, value, want string }{
		{"not closed", "${OPENAI_API_KEY", "${ is not closed by }"},
		{"default not closed", "${OPENAI_API_KEY:-sk-x", "${ is not closed by }"},
		{"shell's unset-only default", "${OPENAI_API_KEY-sk-x}", "a variable name in ${...} must be followed by } or :-default"},
		{"spaces", "${ OPENAI_API_KEY }", "${ is not followed by a variable name"},
		{"empty", "sk-${}", "${ is not followed by a variable name"},
		{"at the end", "sk-secret${", "${ is not followed by a variable name"},
		{"nested default", "${OPENAI_API_KEY:-${OTHER}}", "a default must not hold ${ (references do not nest)"},
		{"after a good one", "${OPENAI_API_KEY}${OTHER", "${ is not closed by }"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m, api_key: \"" + c.value + "\"}\n" +
				"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
			_, err := ParseConfig("t.yaml", []byte(y), env(map[string]string{"OPENAI_API_KEY": "sk-real"}))
			want := "t.yaml:2: backends.up.api_key: " + c.want + help
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v, want %q", err, want)
			}
			if strings.Contains(err.Error(), "sk-") {
				t.Fatalf("the message shows the value: %v", err)
			}
		})
	}
	t.Run("in a list", func(t *testing.T) {
		y := "backends:\n  up:\n    provider: openai\n    model: m\n    targets:\n      - \"http://127.0.0.1:8001/v1\"\n      - \"${URL\"\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
		_, err := ParseConfig("t.yaml", []byte(y), env(nil))
		if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:7: backends.up.targets[1]: ${ is not closed by }") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestConfigDuplicateKeyNamesKey checks that a key given twice in one mapping, which
// yaml.v3 refuses, is reported with the key path of the duplicate, not of another key
// on its line.
func TestConfigDuplicateKeyNamesKey(t *testing.T) {
	const rest = "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	const up = "  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m}\n"
	cases := []struct{ name, yaml, want string }{
		{"top level", "server: {listen: \":8080\"}\nserver: {listen: \":9090\"}\nbackends:\n" + up + rest,
			"t.yaml:2: server: mapping key \"server\" already defined at line 1"},
		{"backend name", "backends:\n" + up + "  up: {provider: mock, model: m}\n" + rest,
			"t.yaml:3: backends.up: mapping key \"up\" already defined at line 2"},
		{"flow mapping", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m, model: n}\n" + rest,
			"t.yaml:2: backends.up.model: mapping key \"model\" already defined at line 2"},
		{"nested mapping on one line", "backends:\n  up: {provider: openai, model: m, base_url: \"http://127.0.0.1:8001/v1\", pricing: {input_per_million: 1, input_per_million: 2}}\n" + rest,
			"t.yaml:2: backends.up.pricing.input_per_million: mapping key \"input_per_million\" already defined at line 2"},
		{"in a list", "backends:\n" + up + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}], type: embeddings}\n",
			"t.yaml:4: endpoints[0].type: mapping key \"type\" already defined at line 4"},
		{"two mappings on one line", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m}\n  a: {provider: mock, model: m, model: n}\n  b: {provider: mock, model: m, model: n}\n" + rest,
			"t.yaml:3: backends.a.model: mapping key \"model\" already defined at line 3\nt.yaml:4: backends.b.model: mapping key \"model\" already defined at line 4"},
		{"quoted key", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m, \"model\": n}\n" + rest,
			"t.yaml:2: backends.up.model: mapping key \"model\" already defined at line 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(nil))
			if err == nil || err.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestConfigNegativeServerDurations checks that a negative server timeout, which would
// mean no timeout at all (connections held by slow clients), is refused.
func TestConfigNegativeServerDurations(t *testing.T) {
	const rest = "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m}\n" +
		"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	for _, k := range []string{"read_timeout", "idle_timeout", "shutdown_grace"} {
		t.Run(k, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte("server:\n  listen: \":8080\"\n  "+k+": -5s\n"+rest), env(nil))
			want := "t.yaml:3: server." + k + ": must not be negative"
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v, want %q", err, want)
			}
		})
	}
}

// TestConfigKeyWhitespace checks that a client key, its sha256 or the admin token with
// surrounding whitespace (a secret file's trailing newline, through ${VAR}) is refused
// without showing it: presented keys are trimmed, so it could never match.
func TestConfigKeyWhitespace(t *testing.T) {
	const rest = "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8001/v1\", model: m}\n" +
		"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	const problem = "has leading or trailing whitespace (a trailing newline from a secret file?)"
	hash := strings.Repeat("ab", 32)
	cases := []struct{ name, yaml, value, want string }{
		{"trailing newline", "auth:\n  keys: [{name: a, key: \"${K}\"}]\n", "sk-team-a\n", "t.yaml:2: auth.keys[0].key: " + problem},
		{"leading space", "auth:\n  keys: [{name: a, key: \"${K}\"}]\n", " sk-team-a", "t.yaml:2: auth.keys[0].key: " + problem},
		{"whitespace only", "auth:\n  keys: [{name: a, key: \"${K}\"}]\n", "\n", "t.yaml:2: auth.keys[0].key: " + problem},
		{"sha256", "auth:\n  keys:\n    - name: a\n      sha256: \"${K}\"\n", hash + "\n", "t.yaml:4: auth.keys[0].sha256: " + problem},
		{"admin token", "server:\n  admin_token: \"${K}\"\n", "adm-token\r\n", "t.yaml:2: server.admin_token: " + problem},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml+rest), env(map[string]string{"K": c.value}))
			if err == nil || err.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if v := strings.TrimSpace(c.value); v != "" && strings.Contains(err.Error(), v) {
				t.Fatalf("the message shows the key: %v", err)
			}
		})
	}
}

// A key whose endpoints list is empty is refused: it would read as "none" and be
// taken as "all".
func TestConfigKeyEmptyEndpoints(t *testing.T) {
	cfg := `
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
auth:
  keys:
    - {name: a, key: sk-a, endpoints: []}
    - {name: b, key: sk-b}
    - {name: c, key: sk-c, endpoints: ["*"]}
`
	_, err := ParseConfig("t.yaml", []byte(cfg), env(nil))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:8: auth.keys[0].endpoints: lists no endpoint") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "keys[1]") || strings.Contains(err.Error(), "keys[2]") {
		t.Fatalf("other keys refused: %v", err)
	}
}

// A secret filled in from the environment is quoted by no config error: not a value
// decoded into the wrong type (a key written where a mapping belongs), nor a mapping
// key (references are read in values only).
func TestConfigErrorsQuoteNoSecret(t *testing.T) {
	const secret = "Tk9vQ2xZmWsecret"
	vars := env(map[string]string{"TEAM_A_KEY": secret, "OTLP_TOKEN": secret})
	for _, cfg := range []string{`
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
auth:
  keys: ["${TEAM_A_KEY}"]
`, `
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
auth:
  keys:
    - {name: a, "${TEAM_A_KEY}": x}
tracing: {exporter: otlp-http, endpoint: "http://127.0.0.1:4318", headers: {"authorization=Bearer ${OTLP_TOKEN}": x}}
`} {
		_, err := ParseConfig("t.yaml", []byte(cfg), vars)
		if err == nil {
			t.Fatalf("accepted:\n%s", cfg)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[7:]) {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
}

// POST /admin/reload on a config whose problem the runtime build would meet (a mock
// option out of mockllm's bounds) answers 422 with problems that name file, line and
// key, under the YAML key rather than mockllm's flag name.
func TestAdminReloadProblemsNameFileLineKey(t *testing.T) {
	good := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: embed, type: embeddings, routes: [{backend: demo}]}
logging: {level: error}
`
	g := startGateway(t, good)
	bad := strings.Replace(good, "model: mock-1}", "model: mock-1, mock: {embedding_dim: 100000}}", 1)
	if err := os.WriteFile(g.path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+g.AdminAddr()+"/admin/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Problems []string `json:"problems"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != 422 || len(body.Problems) == 0 {
		t.Fatalf("reload: %d %s; want 422 with problems", resp.StatusCode, raw)
	}
	for _, p := range body.Problems {
		if !strings.HasPrefix(p, g.path+":") || !strings.Contains(p, "backends.demo.mock.embedding_dim") {
			t.Errorf("problem %q does not name %s:LINE: backends.demo.mock.embedding_dim", p, g.path)
		}
	}
}

// A key's limits are combined only with those of the endpoints the key may call: a
// key kept off an endpoint may carry limits that, with that endpoint's, would be more
// than one request takes.
func TestValidateKeyLimitsMeetOnlyAllowedEndpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	cfg := `
auth:
  keys:
    - name: team-a
      key: abc
      endpoints: [embed]
      limits:
        - {per: api_key, requests: 10, window: second}
        - {per: api_key, requests: 100, window: minute}
        - {per: api_key, requests: 1000, window: hour}
        - {per: api_key, requests: 10000, window: day}
        - {per: api_key, tokens: 1000, window: minute}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: demo}]
    limits:
      - {per: endpoint, requests: 10, window: second}
      - {per: endpoint, requests: 100, window: minute}
      - {per: endpoint, requests: 1000, window: hour}
      - {per: endpoint, requests: 10000, window: day}
  - {name: embed, type: embeddings, routes: [{backend: demo}]}
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Validate(path); err != nil {
		t.Fatal(err)
	}
}

// A build error that names no key still names the config file, one problem a line.
func TestBuildErrorNamesConfigFile(t *testing.T) {
	err := inFile("tollgate.yaml", errors.New("first\nsecond"))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	want := []string{"tollgate.yaml: first", "tollgate.yaml: second"}
	if strings.Join(ce.Problems, "|") != strings.Join(want, "|") {
		t.Errorf("problems = %q, want %q", ce.Problems, want)
	}
	keyed := &ConfigError{Problems: []string{"tollgate.yaml:3: backends.x: what"}}
	if got := inFile("tollgate.yaml", keyed); got != error(keyed) {
		t.Errorf("a ConfigError was rewritten: %v", got)
	}
}
