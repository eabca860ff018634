package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// mlflowKeyConfig is an MLflow gateway config whose chat endpoint reads its OpenAI
// key from keyPath, in front of the upstream at addr.
func mlflowKeyFileConfig(addr, keyPath string) string {
	return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
logging: {level: error, access_log: false}
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: up-model, config: {openai_api_key: "` + keyPath + `", openai_api_base: "http://` + addr + `/v1"}}
`
}

// runningKey is the API key the running config sends upstream for backend.
func runningKey(s *Server, backend string) string {
	rt := s.rt.Load()
	if rt == nil {
		return ""
	}
	return rt.cfg.Backends[backend].APIKey
}

// Operator: the provider key is a Kubernetes Secret mounted as a volume and named by
// openai_api_key, as MLflow's gateway takes it. The Secret is rotated three times (the
// kubelet swapping ..data each time); each rotation must reach the running config
// without anyone reloading, as a renewed certificate does, or the gateway goes on
// sending a revoked key.
func TestWatchMLflowKeySecretRotation(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"", "keys/"} {
		t.Run("files at "+sub+"openai", func(t *testing.T) { rotateKeySecret(t, sub) })
	}
}

func rotateKeySecret(t *testing.T, sub string) {
	keys := []string{"sk-rot-1", "sk-rot-2", "sk-rot-3", "sk-rot-4"}
	// The upstream takes only the last key: requests succeed once it is served.
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2, APIKey: keys[len(keys)-1]})
	vol := t.TempDir()
	k := &kubelet{t: t, vol: vol}
	k.update(map[string][]byte{sub + "openai": []byte(keys[0] + "\n"), sub + "other": []byte("x\n")})
	g := startGateway(t, mlflowKeyFileConfig(addr, vol+"/"+sub+"openai"))
	if got := runningKey(g.Server, "chat"); got != keys[0] {
		t.Fatalf("key at start %q, want the file's", got)
	}
	if resp, body := postChat(t, g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 401 {
		t.Fatalf("with the old key: %d %s, want the upstream's 401", resp.StatusCode, body)
	}
	for i, key := range keys[1:] {
		time.Sleep(250 * time.Millisecond)
		k.update(map[string][]byte{sub + "openai": []byte(key + "\n"), sub + "other": []byte("x\n")})
		if !waitWithin(10*time.Second, func() bool { return runningKey(g.Server, "chat") == key }) {
			t.Fatalf("secret rotation %d (files at %q): the running config still sends the old key after 10s", i+1, sub+"openai")
		}
	}
	if resp, body := postChat(t, g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 {
		t.Fatalf("after the rotations: %d %s, want 200 with the rotated key", resp.StatusCode, body)
	}
}

// Operator: the key file is a plain file beside the config (a Docker secret, a file a
// vault agent renders): replacing it by a rename, or writing it in place, reloads.
func TestWatchMLflowKeyFileSaved(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "openai.key")
	if err := os.WriteFile(keyPath, []byte("sk-file-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, mlflowKeyFileConfig(addr, keyPath))
	time.Sleep(250 * time.Millisecond)
	writeAtomic(t, keyPath, "sk-file-2\n")
	if !waitWithin(10*time.Second, func() bool { return runningKey(g.Server, "chat") == "sk-file-2" }) {
		t.Fatalf("key file replaced by a rename: running key %q after 10s", runningKey(g.Server, "chat"))
	}
	if err := os.WriteFile(keyPath, []byte("sk-file-3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !waitWithin(10*time.Second, func() bool { return runningKey(g.Server, "chat") == "sk-file-3" }) {
		t.Fatalf("key file written in place: running key %q after 10s", runningKey(g.Server, "chat"))
	}
}

// Operator: the key file is rendered after the gateway started (a Vault agent, a
// secrets-store CSI driver, a Secret volume synced after the ConfigMap's). Its path is
// sent as the key meanwhile, as MLflow takes a value naming no file, with a warning;
// the file is watched, and its key read once it lands.
func TestWatchMLflowKeyFileCreatedAfterStart(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	keyPath := filepath.Join(t.TempDir(), "openai.key")
	g := startGateway(t, mlflowKeyFileConfig(addr, keyPath))
	if !strings.Contains(g.logs.String(), `"file":"`+keyPath+`"`) {
		t.Errorf("no warning naming the key file not there at start:\n%s", g.logs)
	}
	time.Sleep(300 * time.Millisecond)
	writeAtomic(t, keyPath, "sk-rendered-1\n")
	if !waitWithin(3*time.Second, func() bool { return runningKey(g.Server, "chat") == "sk-rendered-1" }) {
		t.Errorf("key file created after start: running key %q 3s later, want the file's", runningKey(g.Server, "chat"))
	}
}

// A key value that names no file is followed as a file only when it reads as a path:
// any other value is a key, and is never logged.
func TestMLflowKeyNamingNoFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, value string
		watched     bool
	}{
		{"absolute path", filepath.Join(dir, "openai.key"), true},
		{"relative from ./", "./secrets/openai.key", true},
		{"relative from ../", "../secrets/openai.key", true},
		{"directory", dir, true},
		{"key", "sk-proj-abc123", false},
		{"key with a slash", "abc/def+ghi", false},
		{"base64 key starting with a slash", "/q2Zx7Vb+K1mN0pLr8sTu3wYe5aHc4dJf6gIo9kQzR0E=", false},
		{"base64 key of slashes and letters", "/q2Zx7Vb/K1mN0pLr8sTu3wYe5aHc4dJf6gIo9kQzR0E", true},
		{"a name under the root", "/openai.key", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			key, kf, err := mlflowKey(c.value)
			if err != nil || key != c.value {
				t.Fatalf("mlflowKey(%q) = %q, %v; want the value itself", c.value, key, err)
			}
			if (kf != nil) != c.watched || kf != nil && (kf.path != c.value || !kf.absent()) {
				t.Errorf("mlflowKey(%q) key file %+v, want watched %v, absent", c.value, kf, c.watched)
			}
		})
	}
}

// mlflowCompatConfig is an MLflow gateway config whose chat endpoint is an
// openai-compatible server (a vLLM started with --api-key) at addr, with the key key.
func mlflowCompatConfig(addr, key string) string {
	return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
logging: {level: info, access_log: false}
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai-compatible, name: up-model, config: {api_key: "` + key + `", api_base: "http://` + addr + `/v1"}}
`
}

// Keys are never logged, whatever they look like: a key made with `openssl rand
// -base64 32` starts with "/" once in 64, and one with no '+' or '=' reads as a path
// (keyPathLike), whose warning then names the config key and line, not the value,
// its directory not being there.
func TestMLflowKeyLookingLikePathNotLogged(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	for _, c := range []struct{ name, key string }{
		{"base64 with '+' and '='", "/q2Zx7Vb+K1mN0pLr8sTu3wYe5aHc4dJf6gIo9kQzR0E="},
		{"base64 of slashes and letters", "/q2Zx7Vb/K1mN0pLr8sTu3wYe5aHc4dJf6gIo9kQzR0E"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mlflow.yaml")
			putFile(t, path, []byte(mlflowCompatConfig(addr, c.key)))
			logs := &syncBuffer{}
			s, err := New(path, Options{Logger: slogTo(logs)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if rt := s.rt.Swap(nil); rt != nil {
					rt.retireNow()
				}
			})
			if runningKey(s, "chat") != c.key {
				t.Fatalf("running key %q, want the value (it names no file)", runningKey(s, "chat"))
			}
			if strings.Contains(logs.String(), c.key) {
				t.Errorf("an API key that looks like a path is logged:\n%s", logLinesWith(logs.String(), c.key))
			}
		})
	}
}

// A key file whose directory is not there yet either (a Vault agent or an init
// container creating vault/ with the file) is read once both land: the directory is
// polled until it is there, then watched.
func TestWatchMLflowKeyFileInDirectoryCreatedAfterStart(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	dir := filepath.Join(t.TempDir(), "vault")
	keyPath := filepath.Join(dir, "openai.key")
	g := startGateway(t, mlflowKeyFileConfig(addr, keyPath))
	time.Sleep(300 * time.Millisecond)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keyPath, "sk-rendered-1\n")
	if !waitWithin(3*time.Second, func() bool { return runningKey(g.Server, "chat") == "sk-rendered-1" }) {
		t.Errorf("key file created with its directory after start: running key %q 3s later, want the file's\nlogs:\n%s",
			runningKey(g.Server, "chat"), logLinesWith(g.logs.String(), "WARN"))
	}
}
