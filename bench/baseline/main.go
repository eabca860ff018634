// Command baseline is a measuring stick for the bench harness, not a gateway: the least
// a Go proxy can do for the harness's non-streaming requests, in two network stacks, so
// that Tollgate's cost can be split into what its own code adds and what its network
// stack costs.
//
//   - fasthttp (TOLLGATE_BASELINE=fasthttp): fasthttp's server and HostClient, the
//     stack Tollgate is built on, with nothing in between but the model rewrite. A
//     goroutine per connection, parked on Go's netpoller whenever it waits.
//   - epoll (TOLLGATE_BASELINE=epoll, the default): one event loop per core on raw
//     epoll (golang.org/x/sys/unix), each with its own SO_REUSEPORT listener, the way
//     nginx runs its workers. Each client connection gets its own upstream connection
//     on the same loop; requests are framed by Content-Length and have their model
//     rewritten, answers are passed back byte for byte (one request is in flight per
//     connection, so they need no framing; streamed answers pass too).
//
// It takes the gateway's command line (--config tollgate.yaml), so the harness runs
// it in Tollgate's place: go run ./bench --tollgate-bin PATH. From the config it uses
// server.listen, server.admin_listen (which answers /readyz, /health and the Go
// runtime's /metrics) and the first backend's base_url and model, which replaces the
// name of any endpoint in a request's "model". Nothing else of Tollgate is there:
// no auth, limits, routing, retries, metrics or tracing, and no error bodies (on a
// failed upstream the fasthttp stack answers a bare 502, the event loop closes the
// connection; the event loop also closes it on a request it cannot frame).
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"
)

// settings is what baseline takes from a tollgate.yaml.
type settings struct {
	listen, admin, upstream string
	// rewrites maps `"model":"<endpoint>"` to `"model":"<backend model>"`.
	rewrites map[string]string
}

type config struct {
	Server struct {
		Listen      string `yaml:"listen"`
		AdminListen string `yaml:"admin_listen"`
	} `yaml:"server"`
	Backends map[string]struct {
		BaseURL string `yaml:"base_url"`
		Model   string `yaml:"model"`
	} `yaml:"backends"`
	Endpoints []struct {
		Name string `yaml:"name"`
	} `yaml:"endpoints"`
}

func load(path string) (settings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return settings{}, err
	}
	var c config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return settings{}, fmt.Errorf("%s: %w", path, err)
	}
	if c.Server.Listen == "" || len(c.Backends) == 0 {
		return settings{}, fmt.Errorf("%s: needs server.listen and a backend", path)
	}
	names := make([]string, 0, len(c.Backends))
	for n := range c.Backends {
		names = append(names, n)
	}
	sort.Strings(names)
	be := c.Backends[names[0]]
	u, err := url.Parse(be.BaseURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return settings{}, fmt.Errorf("%s: backend %s: base_url %q is not an http URL", path, names[0], be.BaseURL)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":80"
	}
	s := settings{listen: c.Server.Listen, admin: c.Server.AdminListen, upstream: host, rewrites: map[string]string{}}
	if be.Model != "" {
		for _, ep := range c.Endpoints {
			s.rewrites[`"model":"`+ep.Name+`"`] = `"model":"` + be.Model + `"`
		}
	}
	return s, nil
}

func serveAdmin(addr string) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	mux.HandleFunc("/readyz", ok)
	mux.HandleFunc("/health", ok)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil {
			fmt.Fprintln(os.Stderr, "baseline: admin:", err)
			os.Exit(1)
		}
	}()
}

func main() {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	cfg := fs.String("config", "", "tollgate.yaml to take listen, admin_listen, upstream and model from")
	listen := fs.String("listen", "", "address to listen on (without --config)")
	upstream := fs.String("upstream", "", "upstream host:port (without --config)")
	_ = fs.Parse(os.Args[1:])
	s := settings{listen: *listen, upstream: *upstream}
	if *cfg != "" {
		var err error
		if s, err = load(*cfg); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(2)
		}
	}
	if s.listen == "" || s.upstream == "" {
		fmt.Fprintln(os.Stderr, "baseline: need --config, or --listen and --upstream")
		os.Exit(2)
	}
	if s.admin != "" {
		serveAdmin(s.admin)
	}
	var err error
	switch mode := os.Getenv("TOLLGATE_BASELINE"); mode {
	case "", "epoll":
		err = serveEpoll(s, runtime.GOMAXPROCS(0))
	case "fasthttp":
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.listen); err == nil {
			err = serveFasthttp(ln, s)
		}
	default:
		err = errors.New("TOLLGATE_BASELINE is epoll or fasthttp, not " + mode)
	}
	fmt.Fprintln(os.Stderr, "baseline:", err)
	os.Exit(1)
}
