package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// bins are the programs the harness runs, built once per invocation.
type bins struct {
	mockllm, tollgate, nginx string
}

// prepareBins builds mockllm and tollgate from this checkout into dir
// (unless given), and makes sure nginx is installed.
func prepareBins(o *options, dir string) (*bins, error) {
	b := &bins{mockllm: o.MockllmBin, tollgate: o.TollgateBin, nginx: o.NginxBin}
	if b.mockllm == "" || b.tollgate == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		if b.mockllm == "" {
			logf("building ./cmd/mockllm")
			if b.mockllm, err = goBuild(root, dir, "./cmd/mockllm"); err != nil {
				return nil, err
			}
		}
		if b.tollgate == "" {
			logf("building ./cmd/tollgate")
			if b.tollgate, err = goBuild(root, dir, "./cmd/tollgate"); err != nil {
				return nil, err
			}
		}
	}
	if o.wantsPath(pathNginx) {
		if err := ensureNginx(b.nginx); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// ensureNginx installs Debian's nginx-light when the binary is missing.
func ensureNginx(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	logf("%s missing: installing nginx-light with apt-get", path)
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "nginx-light")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install nginx-light: %w\n%s", err, out)
		}
		return nil
	}
	if err := install(); err != nil {
		if out, err2 := exec.Command("apt-get", "update").CombinedOutput(); err2 != nil {
			return fmt.Errorf("apt-get update: %w\n%s", err2, out)
		}
		if err := install(); err != nil {
			return err
		}
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("nginx-light installed but %s is still missing", path)
	}
	return nil
}

// upstreamTiming is how mockllm paces its answers.
type upstreamTiming struct {
	TTFT, TPOT time.Duration
	MaxTokens  int
	MaxSeqs    int // concurrent sequences before mockllm queues; 0 = its default
}

// upstreamCap is mockllm's --max-tokens for requests asking for n: mockllm
// picks each answer's natural length in [cap/2, cap], so with cap = 2n every
// answer runs to the request's max_tokens and is exactly n tokens long, on
// every path alike.
func upstreamCap(n int) int { return 2 * n }

// mockModel is the model mockllm serves and the direct and nginx paths ask for.
const mockModel = "mock-1"

// env is the set of processes one scenario runs against; close stops them
// all, last started first.
type env struct {
	o     *options
	bins  *bins
	dir   string
	cores CoreMap
	procs []*proc
	otlp  *otlpReceiver
	// redisPort is the scenario's redis-server, 0 when it has none.
	redisPort int
}

func newEnv(o *options, b *bins, cores CoreMap) (*env, error) {
	dir, err := os.MkdirTemp("", "tollgate-bench-")
	if err != nil {
		return nil, err
	}
	return &env{o: o, bins: b, dir: dir, cores: cores}, nil
}

func (e *env) close() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].stop(5 * time.Second)
	}
	e.procs = nil
	if e.otlp != nil {
		e.otlp.stop()
	}
	if e.o.Keep {
		logf("kept %s", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

func (e *env) add(p *proc) *proc {
	e.procs = append(e.procs, p)
	return p
}

// startMock starts one mockllm and waits for its /health.
func (e *env) startMock(ctx context.Context, name string, t upstreamTiming) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := loopback(port)
	args := []string{"--listen", addr, "--model", mockModel, "--api", "openai",
		"--ttft", t.TTFT.String(), "--tpot", t.TPOT.String(), "--max-tokens", strconv.Itoa(t.MaxTokens),
		"--error-rate", "0", "--seed", "1"}
	if t.MaxSeqs > 0 && hasFlag(e.bins.mockllm, "max-num-seqs") {
		args = append(args, "--max-num-seqs", strconv.Itoa(t.MaxSeqs))
	}
	if hasFlag(e.bins.mockllm, "keep-alive-timeout") {
		// Paths take turns, so each path's connections sit idle for whole rounds:
		// mockllm would close them after vLLM's 5 s and the next round would pay for
		// reconnecting (the direct path on its first requests), which is not what
		// the rounds compare.
		args = append(args, "--keep-alive-timeout", upstreamKeepAlive.String())
	}
	p, err := startProc(e.dir, name, e.cores.Upstream, e.bins.mockllm, args...)
	if err != nil {
		return nil, "", err
	}
	e.add(p)
	if err := waitReady(ctx, p, "http://"+addr+"/health", 30*time.Second); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

// startGateway writes the scenario's YAML and starts tollgate on it.
func (e *env) startGateway(ctx context.Context, name string, gp gwParams) (*proc, *target, error) {
	lp, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	ap, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	gp.Listen, gp.Admin, gp.Model = loopback(lp), loopback(ap), mockModel
	y, err := gatewayConfig(gp)
	if err != nil {
		return nil, nil, err
	}
	cfg := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(cfg, y, 0o644); err != nil {
		return nil, nil, err
	}
	p, err := startProc(e.dir, name, e.cores.Gateway, e.bins.tollgate, "--config", cfg)
	if err != nil {
		return nil, nil, err
	}
	e.add(p)
	if err := waitReady(ctx, p, "http://"+gp.Admin+"/readyz", 30*time.Second); err != nil {
		return nil, nil, err
	}
	return p, &target{Name: name, Addr: gp.Listen, Pid: p.pid(), AdminAddr: gp.Admin}, nil
}

// startNginx writes nginx.conf and starts nginx in the foreground.
func (e *env) startNginx(ctx context.Context, np nginxParams) (*proc, *target, error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	np.Dir, np.Listen = e.dir, loopback(port)
	if e.cores.Pinned {
		np.Workers = e.cores.GatewayCores
	}
	cfg := filepath.Join(e.dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(nginxConfig(np)), 0o644); err != nil {
		return nil, nil, err
	}
	p, err := startProc(e.dir, "nginx", e.cores.Gateway, e.bins.nginx,
		"-p", e.dir, "-c", cfg, "-e", filepath.Join(e.dir, "nginx-error.log"))
	if err != nil {
		return nil, nil, err
	}
	e.add(p)
	if err := waitReady(ctx, p, "http://"+np.Listen+"/health", 30*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(e.dir, "nginx-error.log"))
		return nil, nil, fmt.Errorf("%w\n%s", err, b)
	}
	return p, &target{Name: pathNginx, Addr: np.Listen, Model: mockModel, Pid: p.pid()}, nil
}

// startRedis starts a throwaway redis-server and returns its URL.
func (e *env) startRedis(ctx context.Context) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server not found (apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	p, err := startProc(e.dir, "redis", e.cores.Upstream, bin, "--port", strconv.Itoa(port),
		"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", e.dir)
	if err != nil {
		return "", err
	}
	e.add(p)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "redis-cli", "-p", strconv.Itoa(port), "ping").Output()
		if err == nil && string(out) == "PONG\n" {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			return "", fmt.Errorf("redis-server not ready: %v\n%s", err, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.redisPort = port
	return "redis://" + loopback(port) + "/0", nil
}

// redisScriptCalls is how many script calls (EVALSHA and EVAL) the scenario's
// redis-server has run, from INFO commandstats; 0 without one or on error.
func (e *env) redisScriptCalls(ctx context.Context) int64 {
	if e.redisPort == 0 {
		return 0
	}
	out, err := exec.CommandContext(ctx, "redis-cli", "-p", strconv.Itoa(e.redisPort), "info", "commandstats").Output()
	if err != nil {
		return 0
	}
	return scriptCalls(string(out))
}

// scriptCalls sums the calls= of the evalsha and eval lines of INFO commandstats.
func scriptCalls(info string) int64 {
	var n int64
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			v, ok := strings.CutPrefix(line, cmd)
			if !ok {
				continue
			}
			if i := strings.IndexByte(v, ','); i >= 0 {
				v = v[:i]
			}
			if c, err := strconv.ParseInt(v, 10, 64); err == nil {
				n += c
			}
		}
	}
	return n
}

// probe sends one request through t and reports what went wrong, so a
// misconfigured path fails before the load starts and says why.
func probe(t *target, k reqKind, maxTokens int) error {
	if k == kindStream {
		// One short non-streamed answer proves the route; the load itself
		// checks the event stream, and a long stream here would only wait.
		k, maxTokens = kindChat, 1
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	setKindHeaders(&req.Header, k)
	req.SetRequestURI("http://" + t.Addr + requestPath(k))
	req.SetBodyRaw(requestBody(k, t.Model, maxTokens))
	if err := fasthttp.DoTimeout(req, resp, 30*time.Second); err != nil {
		return fmt.Errorf("probe %s: %w", t.Name, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		body := resp.Body()
		if len(body) > 500 {
			body = body[:500]
		}
		return fmt.Errorf("probe %s: status %d: %s", t.Name, resp.StatusCode(), body)
	}
	return nil
}
