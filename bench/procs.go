package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/valyala/fasthttp"
)

// proc is a child process the harness started and must stop.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts bin with args, pinned to cores with taskset when cores
// is set; its output goes to dir/name.log. taskset execs the program, so
// the pid is the program's own.
func startProc(dir, name, cores, bin string, args ...string) (*proc, error) {
	argv := append([]string{bin}, args...)
	if cores != "" {
		argv = append([]string{"taskset", "-c", cores}, argv...)
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	// Its own process group: a Ctrl-C at the terminal reaches the harness,
	// which then stops its children in order.
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process's whole group, waits up to grace for
// every member to end, then SIGKILLs the group and waits for it to go. The
// group, not the leader alone: nginx's workers outlive a master killed after
// the grace, and a wrapper's children outlive the wrapper; left running, they
// keep their ports and cores through the next scenario's measurement.
// startProc made the child a group leader, so its pid is the group's id.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	pgid := p.pid()
	if p.exited() && !groupAlive(pgid) {
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	if !p.waitGone(pgid, grace) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		// SIGKILL cannot be caught: the bound only covers a member stuck in
		// an uninterruptible sleep, which no signal would end sooner.
		p.waitGone(pgid, 5*time.Second)
	}
	<-p.done
}

// waitGone waits up to limit for the leader to be reaped and every other
// member of group pgid to end, and reports whether they did.
func (p *proc) waitGone(pgid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	select {
	case <-p.done:
	case <-time.After(limit):
		return false
	}
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie. Members that outlived the leader are reparented to init, or to
// whatever is PID 1 in a container, which may never reap them: kill(-pgid, 0)
// alone would count such zombies as running forever.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	want := strconv.Itoa(pgid)
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f := procStatFields(e.Name())
		// After the name: state, ppid, pgrp.
		if len(f) > 2 && f[2] == want && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// procStatFields are the fields of /proc/PID/stat after the command name,
// which is in parentheses and may hold spaces: state, ppid, pgrp, …; nil when
// the process is gone.
func procStatFields(pid string) []string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// logTail returns the end of the process's output, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// freePort is an unused loopback port (internal/freeport). Another process can take
// it before ours binds; on this harness's own machine that is rare and shows as a
// start failure, never as a wrong measurement.
func freePort() (int, error) { return freeport.Get() }

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// waitReady polls url until it answers 200, the process dies or the time
// is up.
func waitReady(ctx context.Context, p *proc, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		code, _, err := fasthttp.GetTimeout(nil, url, time.Second)
		if err == nil && code == fasthttp.StatusOK {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before it was ready: %v\n%s", p.name, p.err, p.logTail())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			msg := fmt.Sprintf("%s not ready at %s after %s (last: code %d, %v)", nameOf(p), url, limit, code, err)
			if p != nil {
				msg += "\n" + p.logTail()
			}
			return errors.New(msg)
		}
		time.Sleep(min(time.Duration(i+1)*20*time.Millisecond, 200*time.Millisecond))
	}
}

func nameOf(p *proc) string {
	if p == nil {
		return "server"
	}
	return p.name
}

// moduleRoot finds the directory of Tollgate's go.mod from the working
// directory up, so `go run ./bench` works from anywhere in the tree.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/tollgate/tollgate")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("not inside the tollgate module (no go.mod found above the working directory)")
}

// goBuild builds the package pkg (e.g. ./cmd/mockllm) of the module at root
// into dir and returns the binary's path.
func goBuild(root, dir, pkg string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// hasFlag reports whether bin's -h output lists --name, so optional flags
// are passed only to binaries that know them.
func hasFlag(bin, name string) bool {
	b, _ := exec.Command(bin, "-h").CombinedOutput()
	return bytes.Contains(b, []byte("-"+name+" ")) || bytes.Contains(b, []byte("-"+name+"\n")) ||
		bytes.Contains(b, []byte("-"+name+"="))
}

// rssKB reads VmRSS of pid from /proc, in KiB.
func rssKB(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseVmRSS(f)
}

func parseVmRSS(r interface{ Read([]byte) (int, error) }) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}

// childPids lists the direct children of pid (nginx's workers) by scanning
// /proc, which works whether or not the kernel has /proc/PID/task/*/children.
func childPids(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStatFields(e.Name()); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// treeRSSKB is the RSS of pid and its direct children (nginx master and
// workers).
func treeRSSKB(pid int) (int64, error) {
	total, err := rssKB(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range childPids(pid) {
		if v, err := rssKB(c); err == nil {
			total += v
		}
	}
	return total, nil
}

// goStats is what a Go process's admin /metrics says of its goroutines and memory.
type goStats struct {
	Goroutines int64
	HeapInuse  int64 // bytes in in-use heap spans, garbage not yet swept included
	StackInuse int64 // bytes of goroutine stacks
}

// adminMetrics is a Go process's admin /metrics page.
func adminMetrics(adminAddr string) ([]byte, error) {
	code, body, err := fasthttp.GetTimeout(nil, "http://"+adminAddr+"/metrics", 5*time.Second)
	if err != nil {
		return nil, err
	}
	if code != fasthttp.StatusOK {
		return nil, fmt.Errorf("metrics: status %d", code)
	}
	return body, nil
}

func readGoStats(adminAddr string) (goStats, error) {
	var st goStats
	body, err := adminMetrics(adminAddr)
	if err != nil {
		return st, err
	}
	if st.Goroutines, err = parseGauge(body, "go_goroutines"); err != nil {
		return st, err
	}
	if st.HeapInuse, err = parseGauge(body, "go_memstats_heap_inuse_bytes"); err != nil {
		return st, err
	}
	st.StackInuse, err = parseGauge(body, "go_memstats_stack_inuse_bytes")
	return st, err
}

func parseGauge(body []byte, name string) (int64, error) {
	for line := range bytes.SplitSeq(body, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			j := bytes.IndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return int64(v), nil
	}
	return 0, fmt.Errorf("%s not in metrics", name)
}

// raiseNoFile lifts RLIMIT_NOFILE to at least want (hard limit included
// when running as root). Children inherit it: an explicit Setrlimit also
// stops os/exec from restoring the original soft limit in them.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if uint64(lim.Cur) >= want {
		return uint64(lim.Cur), syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	next := lim
	setLimit(&next.Cur, want)
	if uint64(next.Max) < want {
		setLimit(&next.Max, want)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Not root: go as high as the hard limit allows.
		lim.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err2 != nil {
			return 0, err2
		}
		return uint64(lim.Cur), nil
	}
	return uint64(next.Cur), nil
}

// setLimit sets a field of syscall.Rlimit, unsigned on Linux and macOS, signed on
// FreeBSD.
func setLimit[T int64 | uint64](f *T, v uint64) { *f = T(v) }

// userHZ is the unit of the CPU times in /proc/PID/stat: 100 on every Linux
// architecture Go runs on (the kernel's USER_HZ, fixed by its ABI).
const userHZ = 100

// procCPU is the user and system CPU time pid has used, its exited threads
// included, from /proc/PID/stat.
func procCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name in /proc/PID/stat")
	}
	// After the name: state(3) ppid(4) … utime(14) stime(15), numbered from 1.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("short /proc/PID/stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return time.Duration(u) * time.Second / userHZ, time.Duration(k) * time.Second / userHZ, nil
}

// treeCPU is procCPU of pid and its direct children (nginx master and workers).
func treeCPU(pid int) (user, sys time.Duration, err error) {
	user, sys, err = procCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	for _, c := range childPids(pid) {
		if u, k, err := procCPU(c); err == nil {
			user += u
			sys += k
		}
	}
	return user, sys, nil
}

// readGCCycles is go_gc_duration_seconds_count from a Go process's admin /metrics.
func readGCCycles(adminAddr string) (int64, error) {
	body, err := adminMetrics(adminAddr)
	if err != nil {
		return 0, err
	}
	return parseGauge(body, "go_gc_duration_seconds_count")
}
