// Package deploy holds the container image's and Kubernetes' files; its tests check
// that they agree with the gateway they run.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/gateway"
	"gopkg.in/yaml.v3"
)

// manifest is deploy/kubernetes/tollgate.yaml's documents by kind.
type manifest struct {
	configMap, deployment, service, pdb map[string]any
	// secretName and secretKeys are what the file's `kubectl create secret` makes.
	secretName string
	secretKeys []string
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	data, err := os.ReadFile("kubernetes/tollgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc["kind"] {
		case "ConfigMap":
			m.configMap = doc
		case "Deployment":
			m.deployment = doc
		case "Service":
			m.service = doc
		case "PodDisruptionBudget":
			m.pdb = doc
		default:
			t.Fatalf("unexpected kind %v", doc["kind"])
		}
	}
	if m.configMap == nil || m.deployment == nil || m.service == nil || m.pdb == nil {
		t.Fatal("a ConfigMap, a Deployment, a Service and a PodDisruptionBudget are expected")
	}
	if sm := regexp.MustCompile(`kubectl create secret generic (\S+)`).FindSubmatch(data); sm != nil {
		m.secretName = string(sm[1])
	}
	for _, sm := range regexp.MustCompile(`--from-literal=([A-Z_]+)=`).FindAllSubmatch(data, -1) {
		m.secretKeys = append(m.secretKeys, string(sm[1]))
	}
	return m
}

// get walks v by keys (a map's key, or a list's index as a decimal string).
func get(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		switch c := v.(type) {
		case map[string]any:
			v = c[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(c) {
				t.Fatalf("no %s in %v", k, c)
			}
			v = c[i]
		default:
			t.Fatalf("no %s under %v", k, keys)
		}
	}
	return v
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// The Kubernetes manifest runs what its config says: the config validates with the
// secret's variables, the container's ports are the config's listeners, the probes
// are the admin listener's routes, the config file is the mounted ConfigMap (a
// directory, so that its updates are seen and reloaded), and the termination grace
// covers shutdown_grace and the time after the drain.
func TestKubernetesManifest(t *testing.T) {
	m := readManifest(t)
	cfgText, _ := get(t, m.configMap, "data", "tollgate.yaml").(string)
	env := map[string]string{}
	for _, k := range m.secretKeys {
		env[k] = strings.Repeat("x", 32)
	}
	for _, v := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(cfgText, -1) {
		if _, ok := env[v[1]]; !ok {
			t.Fatalf("the config reads ${%s}, which the secret the file creates does not hold (%v)", v[1], m.secretKeys)
		}
	}
	cfg, err := gateway.ParseConfig("tollgate.yaml", []byte(cfgText), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}

	pod := get(t, m.deployment, "spec", "template", "spec")
	c := get(t, pod, "containers", "0")
	ports := map[string]int{}
	for _, p := range get(t, c, "ports").([]any) {
		ports[get(t, p, "name").(string)] = get(t, p, "containerPort").(int)
	}
	if ports["http"] != port(t, cfg.Server.Listen) || ports["admin"] != port(t, cfg.Server.AdminListen) {
		t.Fatalf("container ports %v, config listens on %s and %s", ports, cfg.Server.Listen, cfg.Server.AdminListen)
	}
	if host, _, _ := net.SplitHostPort(cfg.Server.AdminListen); host != "" {
		t.Fatalf("admin_listen %s: the kubelet's probes come from outside the pod", cfg.Server.AdminListen)
	}
	if cfg.Server.AdminToken == "" {
		t.Fatal("an admin listener beyond loopback needs server.admin_token")
	}
	// Readiness is the gateway's own, not its upstreams' (TestKubernetesProbes).
	for probe, path := range map[string]string{"readinessProbe": "/readyz?exclude=upstreams", "livenessProbe": "/healthz"} {
		if get(t, c, probe, "httpGet", "path") != path || get(t, c, probe, "httpGet", "port") != "admin" {
			t.Fatalf("%s: %v", probe, get(t, c, probe))
		}
	}
	if name := get(t, c, "envFrom", "0", "secretRef", "name"); name != m.secretName {
		t.Fatalf("envFrom names secret %v, the file creates %q", name, m.secretName)
	}

	args := get(t, c, "args").([]any)
	mount := get(t, c, "volumeMounts", "0")
	if args[len(args)-1] != get(t, mount, "mountPath").(string)+"/tollgate.yaml" || get(t, mount, "subPath") != nil {
		t.Fatalf("args %v, mount %v", args, mount)
	}
	vol := get(t, pod, "volumes", "0")
	if get(t, vol, "name") != get(t, mount, "name") || get(t, vol, "configMap", "name") != get(t, m.configMap, "metadata", "name") {
		t.Fatalf("volume %v, mount %v", vol, mount)
	}
	// The pod leaves the Service's endpoints as SIGTERM comes: it keeps accepting
	// for a few seconds (preStop) before the drain, and the grace covers both.
	sleep := time.Duration(get(t, c, "lifecycle", "preStop", "sleep", "seconds").(int)) * time.Second
	if sleep < 3*time.Second {
		t.Fatalf("preStop sleep %v: kube-proxy and ingress controllers take seconds to drop the pod", sleep)
	}
	grace := time.Duration(get(t, pod, "terminationGracePeriodSeconds").(int)) * time.Second
	if grace < sleep+cfg.Server.ShutdownGrace+10*time.Second {
		t.Fatalf("terminationGracePeriodSeconds %v, preStop %v, shutdown_grace %v: the drain and what follows it need about 10 s more", grace, sleep, cfg.Server.ShutdownGrace)
	}
	// runAsNonRoot needs a numeric user, the pod's or the image's, to be checked.
	uid, _ := get(t, pod, "securityContext", "runAsUser").(int)
	if get(t, pod, "securityContext", "runAsNonRoot") != true || uid == 0 || get(t, c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Fatal("the pod runs as root, names no numeric user, or writes its root filesystem")
	}

	labels := get(t, m.deployment, "spec", "template", "metadata", "labels").(map[string]any)
	for _, sel := range []map[string]any{
		get(t, m.deployment, "spec", "selector", "matchLabels").(map[string]any),
		get(t, m.service, "spec", "selector").(map[string]any),
		get(t, m.pdb, "spec", "selector", "matchLabels").(map[string]any),
	} {
		for k, v := range sel {
			if labels[k] != v {
				t.Fatalf("selector %v does not select the pods' labels %v", sel, labels)
			}
		}
	}
	if get(t, m.service, "spec", "ports", "0", "targetPort") != "http" || get(t, m.service, "spec", "ports", "1", "targetPort") != "admin" {
		t.Fatal("the Service does not send to the http and admin ports")
	}
}

// The ServiceMonitor scrapes the Service's admin port under job="tollgate" (the
// Service's name), the job the shipped alert rules select.
func TestServiceMonitor(t *testing.T) {
	m := readManifest(t)
	data, err := os.ReadFile("kubernetes/servicemonitor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sm map[string]any
	if err := yaml.Unmarshal(data, &sm); err != nil {
		t.Fatal(err)
	}
	labels := get(t, m.service, "metadata", "labels").(map[string]any)
	for k, v := range get(t, sm, "spec", "selector", "matchLabels").(map[string]any) {
		if labels[k] != v {
			t.Fatalf("the ServiceMonitor selects %v, the Service is labelled %v", k, labels)
		}
	}
	if get(t, sm, "spec", "endpoints", "0", "port") != get(t, m.service, "spec", "ports", "1", "name") ||
		get(t, sm, "spec", "endpoints", "0", "path") != "/metrics" || get(t, sm, "spec", "jobLabel") != nil {
		t.Fatalf("the ServiceMonitor scrapes %v", get(t, sm, "spec", "endpoints"))
	}
	alerts, err := os.ReadFile("../configs/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	job := get(t, m.service, "metadata", "name").(string)
	for _, sel := range regexp.MustCompile(`job="([^"]*)"`).FindAllStringSubmatch(string(alerts), -1) {
		if sel[1] != job {
			t.Fatalf("an alert selects job %q, the ServiceMonitor's job is %q", sel[1], job)
		}
	}
}

// The probes work as the manifest's config sets the admin API up: /healthz and the
// readiness probe answer the kubelet without the admin token, which the admin routes
// ask for, and an upstream's outage does not fail the readiness probe.
func TestKubernetesProbes(t *testing.T) {
	m := readManifest(t)
	cfgText := get(t, m.configMap, "data", "tollgate.yaml").(string)
	// On loopback ports of its own, and without the cluster's Redis.
	cfgText = strings.NewReplacer(`listen: ":8080"`, `listen: "127.0.0.1:0"`, `admin_listen: ":9090"`, `admin_listen: "127.0.0.1:0"`,
		"store: redis", "store: memory", `redis: {url: "redis://redis:6379/0"}`, "").Replace(cfgText)
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k := range m.secretKeys {
		t.Setenv(k, k+"-"+strings.Repeat("x", 32))
	}
	s, err := gateway.New(path, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	status := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+s.AdminAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if n := status("/healthz", ""); n != 200 {
		t.Fatalf("/healthz without the token: %d", n)
	}
	// No vLLM pod answers here: the upstreams are not ready (plain /readyz), the
	// gateway is (the manifest's readiness probe), and stays in its Service.
	probe := get(t, m.deployment, "spec", "template", "spec", "containers", "0", "readinessProbe", "httpGet", "path").(string)
	deadline := time.Now().Add(5 * time.Second)
	for status(probe, "") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("the readiness probe %s never answered 200 with the upstreams down", probe)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := status("/readyz", ""); n != 503 {
		t.Fatalf("/readyz with no vLLM pod up: %d", n)
	}
	if n := status("/metrics", ""); n != 200 {
		t.Fatalf("/metrics without the token: %d", n)
	}
	if n := status("/admin/config", ""); n != 401 {
		t.Fatalf("an admin route without the token: %d", n)
	}
}

// The Dockerfile builds what the repository has: its Go image is go.mod's version, it
// copies files that exist, builds commands that exist without cgo (the final image is
// distroless/static: no C library), and runs the binary and default config it copies,
// as a user that is not root.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	from := regexp.MustCompile(`(?m)^FROM golang:(\d+\.\d+)\S* AS build$`).FindStringSubmatch(text)
	if goVer == nil || from == nil || from[1] != string(goVer[1]) {
		t.Fatalf("go.mod's go %s, Dockerfile's golang image %v", goVer, from)
	}
	for _, cp := range regexp.MustCompile(`(?m)^COPY (?:--from=\S+ )?(.+) (\S+)$`).FindAllStringSubmatch(text, -1) {
		if strings.HasPrefix(cp[0], "COPY --from=") || cp[1] == "." {
			continue
		}
		for _, src := range strings.Fields(cp[1]) {
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
		}
	}
	builds := regexp.MustCompile(`go build .* -o (\S+) (\./cmd/\S+)`).FindAllStringSubmatch(text, -1)
	if len(builds) != 2 {
		t.Fatalf("builds %v", builds)
	}
	for _, b := range builds {
		// Every package the command needs has a build without cgo (go list reports
		// one that has not), without compiling it all again.
		cmd := exec.Command("go", "list", "-e", "-deps", "-f", "{{with .Error}}{{.}}{{end}}{{range .DepsErrors}}{{.}}{{end}}", b[2])
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		msg, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(msg)) > 0 {
			t.Fatalf("CGO_ENABLED=0 go list -deps %s: %v\n%s", b[2], err, msg)
		}
	}
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["(\S+)"\]$`).FindStringSubmatch(text)
	copied := regexp.MustCompile(`(?m)^COPY --from=build (.+) (\S+)/$`).FindStringSubmatch(text)
	if entry == nil || copied == nil || filepath.Dir(entry[1]) != copied[2] || !strings.Contains(copied[1], "/"+filepath.Base(entry[1])) {
		t.Fatalf("ENTRYPOINT %v runs no binary the image copies (%v)", entry, copied)
	}
	conf := regexp.MustCompile(`(?m)^COPY configs/tollgate.yaml (\S+)$`).FindStringSubmatch(text)
	if conf == nil || !strings.Contains(text, `"--config", "`+conf[1]+`"`) {
		t.Fatalf("CMD does not serve the config the image copies (%v)", conf)
	}
	// By number: runAsNonRoot cannot check a name (the kubelet refuses the container).
	user := regexp.MustCompile(`(?m)^USER (\d+)(?::\d+)?$`).FindStringSubmatch(text)
	if user == nil || user[1] == "0" {
		t.Fatal("the image runs as root, or names its user")
	}
}
