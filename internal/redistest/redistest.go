// Package redistest starts real redis-server processes on loopback ports for tests.
//
// Integration tests of the limiter, router and gateway run against the real server
// rather than an emulation, because the Lua script, TIME, hash slots and failure
// behaviour (a killed or stopped server) are exactly what they need to check.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
)

// startTimeout bounds how long a fresh server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process owned by a test.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	extra []string
	conf  string // a Sentinel's configuration file; empty for a plain server

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a redis-server on a free 127.0.0.1 port with persistence off and its own
// temporary directory, waits until it answers PING and stops it when the test ends.
// Without the binary the test fails (make test installs it).
func Start(t testing.TB) *Server {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	dir := t.TempDir()
	var lastErr error
	// A port found free can be taken by someone else before redis binds it; a few
	// attempts make that race irrelevant.
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		s := &Server{t: t, bin: bin, dir: dir, port: port}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// CPU is the processor time the server has used so far, user and system, in seconds
// (INFO cpu): benchmarks divide its growth by the work done to price Redis's share. A
// failed reading fails tb.
func (s *Server) CPU(tb testing.TB) float64 {
	tb.Helper()
	info, err := Command(s.Addr(), "INFO", "cpu")
	if err != nil {
		tb.Fatalf("redistest: INFO cpu: %v", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("redistest: INFO cpu line %q", line)
			}
			total += f
		}
	}
	return total
}

// URL is a redis:// URL for database 0 of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Kill ends the server with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// Restart starts the server again on the same port after Kill; the data is gone, as
// after a real restart without persistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	if err := s.startLocked(); err != nil {
		s.t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
	}
}

// Pause stops the process with SIGSTOP: connections stay open and nothing answers,
// which is how a Redis stuck in a slow command or a long fork looks to a client.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *Server) startLocked() error {
	var args []string
	if s.conf != "" {
		args = append(args, s.conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log"),
		"--daemonize", "no",
	)
	if s.conf == "" {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			s.cmd = nil
			return errors.New("redis-server exited: " + s.logTail())
		default:
		}
		if reply, err := Command(s.Addr(), "PING"); err == nil && reply == "PONG" {
			// The answer may come from another process's server: another test
			// binary's port finder can hand out the same free port, or take this
			// one while a test has the server killed, and the loser of the race to
			// bind it exits after the winner answered its PING. A test sharing
			// another's server loses it when that test ends (connection refused
			// mid-test), so the server must be this process's own.
			pid, err := processID(s.Addr())
			if err == nil && pid == cmd.Process.Pid {
				return nil
			}
			if err == nil {
				s.killLocked()
				return errors.New("port " + strconv.Itoa(s.port) + " is another redis-server's (pid " + strconv.Itoa(pid) + ")")
			}
		}
		if time.Now().After(deadline) {
			s.killLocked()
			return errors.New("no PING answer within " + startTimeout.String() + ": " + s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processID is the process ID the server at addr reports (INFO server).
func processID(addr string) (int, error) {
	info, err := Command(addr, "INFO", "server")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("redistest: INFO server without process_id")
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process must run to die
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *Server) stop() {
	s.Kill()
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// StartSentinel starts a Sentinel on a free loopback port that monitors master under
// the given name, and returns its address; clients then find the master through it.
func StartSentinel(t testing.TB, master *Server, name string) string {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	dir := t.TempDir()
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		conf := filepath.Join(dir, "sentinel.conf")
		// Sentinel rewrites its configuration file, so it must be a file of its own.
		body := "port " + strconv.Itoa(port) + "\nbind 127.0.0.1\ndir " + dir + "\n" +
			"sentinel monitor " + name + " 127.0.0.1 " + strconv.Itoa(master.port) + " 1\n"
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s := &Server{t: t, bin: bin, dir: dir, port: port, conf: conf}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.stop)
			return s.Addr()
		}
	}
	t.Fatalf("redistest: start sentinel: %v", lastErr)
	return ""
}

// StartCluster starts masters (at least 3) cluster-enabled servers on loopback ports,
// joins them with redis-cli --cluster create, waits for cluster_state:ok on every node
// and returns their addresses as seeds for a cluster client.
func StartCluster(t testing.TB, masters int) []string {
	t.Helper()
	return startCluster(t, masters, 0)
}

// StartClusterReplicas starts a Redis Cluster as StartCluster does, each of its
// masters (at least 3) with one replica, and returns the addresses of every node,
// masters and replicas; it waits until every replica has its master's data in sync,
// so that CLUSTER FAILOVER on one promotes it.
func StartClusterReplicas(t testing.TB, masters int) []string {
	t.Helper()
	return startCluster(t, masters, 1)
}

func startCluster(t testing.TB, masters, replicas int) []string {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	bin := lookBinary(t, "redis-server")
	cli := lookBinary(t, "redis-cli")
	nodes := masters * (1 + replicas)
	addrs := make([]string, 0, nodes)
	for i := range nodes {
		dir := filepath.Join(t.TempDir(), "node"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		var s *Server
		var lastErr error
		for range 5 {
			port, err := freePort()
			if err != nil {
				t.Fatalf("redistest: free port: %v", err)
			}
			bus, err := freePort()
			if err != nil {
				t.Fatalf("redistest: free port: %v", err)
			}
			s = &Server{t: t, bin: bin, dir: dir, port: port, extra: []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", "5000",
				"--cluster-port", strconv.Itoa(bus),
			}}
			if lastErr = s.start(); lastErr == nil {
				break
			}
			s = nil
		}
		if s == nil {
			t.Fatalf("redistest: start cluster node: %v", lastErr)
		}
		t.Cleanup(s.stop)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(startTimeout)
	for _, a := range addrs {
		for {
			info, err := Command(a, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ok: %q %v", a, info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if replicas == 0 {
		return addrs
	}
	for _, a := range addrs {
		for {
			info, err := Command(a, "INFO", "replication")
			if err == nil && (strings.Contains(info, "role:master") && strings.Contains(info, "connected_slaves:"+strconv.Itoa(replicas)) ||
				strings.Contains(info, "master_link_status:up")) {
				break
			}
			if time.Now().After(deadline.Add(startTimeout)) {
				t.Fatalf("redistest: cluster node %s replication not up: %q %v", a, info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return addrs
}

// Command sends one command to addr over a fresh connection and returns its reply: a
// simple, integer or bulk string, or an array of those one element per line; an error
// reply comes back as an error. It is enough for setup and assertions in tests, which
// is all it is for.
func Command(addr string, args ...string) (string, error) {
	replies, err := Commands(addr, args)
	if err != nil {
		return "", err
	}
	return replies[0], nil
}

// Commands sends cmds on one fresh connection to addr, so that one holds for the
// next (an AUTH, a SELECT), and returns their replies as Command does; the first
// error reply ends it.
func Commands(addr string, cmds ...[]string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b []byte
	for _, args := range cmds {
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(len(args)), 10)
		b = append(b, "\r\n"...)
		for _, a := range args {
			b = append(b, '$')
			b = strconv.AppendInt(b, int64(len(a)), 10)
			b = append(b, "\r\n"...)
			b = append(b, a...)
			b = append(b, "\r\n"...)
		}
	}
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	replies := make([]string, 0, len(cmds))
	for range cmds {
		r, err := readReply(br, true)
		if err != nil {
			return replies, err
		}
		replies = append(replies, r)
	}
	return replies, nil
}

// readReply reads a simple, integer, bulk or error reply, or (at the top level) an
// array of those, whose elements come back one per line.
func readReply(r *bufio.Reader, top bool) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || !top {
			return "", errors.New("redistest: unsupported reply " + strconv.Quote(line))
		}
		elems := make([]string, 0, max(n, 0))
		for range n {
			e, err := readReply(r, false)
			if err != nil {
				return "", err
			}
			elems = append(elems, e)
		}
		return strings.Join(elems, "\n"), nil
	default:
		return "", errors.New("redistest: unsupported reply " + strconv.Quote(line))
	}
}

func lookBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	// A test that needs a real part fails without it, in CI and out of it: make test
	// installs it.
	t.Fatalf("redistest: %s is not installed (%v): apt-get install redis-server, or run make test", name, err)
	return ""
}

func freePort() (int, error) { return freeport.Get() }
