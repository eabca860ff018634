package limiter

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// TestReleaseLostInFailoverFreed: a Sentinel failover promotes the replica while the
// old primary still answers, until Sentinel demotes it (11 s after SENTINEL FAILOVER,
// measured), and the clients move over only once told of the promotion (1 s after
// it). A release sent in between is answered OK by the old primary and lost with
// everything it wrote then; the promoted replica still holds the slot, taken before
// the promotion, of a request that ended. No heartbeat renews or removes it: the cap
// stays short of it for the whole lease (10 minutes by default; with a cap of 6
// under load, every slot). Here the limiter reaches Redis through a proxy that
// moves to the promoted replica as the Sentinel client does (it closes the
// connections to the old primary). The slot must free within a few heartbeats.
func TestReleaseLostInFailoverFreed(t *testing.T) {
	t.Parallel()
	r := startReleaseRig(t, Config{})
	l, primary, replica, pol, key := r.l, r.primary, r.replica, r.pol, r.key
	tk := &r.tk
	// Sentinel promotes the replica; the old primary answers on.
	if _, err := redistest.Command(replica.Addr(), "REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	l.Settle(tk, 0)
	barrier(t, l)
	if n, _ := redistest.Command(primary.Addr(), "ZCARD", key); n != "0" {
		t.Fatalf("the release did not reach the old primary: %s slots", n)
	}
	if n, _ := redistest.Command(replica.Addr(), "ZCARD", key); n != "1" {
		t.Fatalf("the promoted replica holds %s slots, want the one released on the old primary", n)
	}
	r.proxy.switchTo(replica.Addr())

	deadline := time.Now().Add(5 * time.Second)
	for {
		err := l.Take(bg, pol, alice, 0, tk)
		if err == nil {
			src := tk.src
			l.Settle(tk, 0)
			if src == srcRedis {
				return
			}
		} else if ref := (*Refused)(nil); !errors.As(err, &ref) {
			t.Fatalf("Take = %v, want a slot or a refusal", err)
		}
		if time.Now().After(deadline) {
			n, _ := redistest.Command(replica.Addr(), "ZCARD", key)
			t.Fatalf("a slot released on the old primary after the promotion still holds the cap 5 s after the move (%s in Redis, none in flight)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// releaseRig is a limiter on cfg (its Redis URL set) reaching a primary with a
// replica through a switchProxy (cfg, with that URL), holding tk, a slot of pol (a cap of 1) taken from
// Redis, the slot's concurrency set key already on the replica.
type releaseRig struct {
	primary, replica *redistest.Server
	proxy            *switchProxy
	cfg              Config
	l                *Limiter
	pol              *Policy
	key              string
	tk               Ticket
}

func startReleaseRig(t *testing.T, cfg Config) *releaseRig {
	t.Helper()
	r := &releaseRig{primary: redistest.Start(t), replica: redistest.Start(t)}
	// A replica's first sync otherwise waits 5 s for others to share it.
	if _, err := redistest.Command(r.primary.Addr(), "CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(r.primary.Addr(), ":")
	if _, err := redistest.Command(r.replica.Addr(), "REPLICAOF", host, port); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "replication link", func() bool {
		info, _ := redistest.Command(r.replica.Addr(), "INFO", "replication")
		return strings.Contains(info, "master_link_status:up")
	})
	r.proxy = startSwitchProxy(t, r.primary.Addr())
	cfg.Redis.URL = "redis://" + r.proxy.addr() + "/0"
	r.cfg = cfg
	r.l = newRedisLimiter(t, cfg)
	r.pol = mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 1})
	if err := r.l.Take(bg, r.pol, alice, 0, &r.tk); err != nil || r.tk.src != srcRedis {
		t.Fatalf("Take = %v from %d, want a slot from Redis", err, r.tk.src)
	}
	r.key = concurrencyKey(t, r.primary.Addr())
	waitFor(t, 5*time.Second, "the slot on the replica", func() bool {
		n, _ := redistest.Command(r.replica.Addr(), "ZCARD", r.key)
		return n == "1"
	})
	return r
}

// concurrencyKey is the one concurrency bucket (a sorted set of leases) in Redis at addr.
func concurrencyKey(t *testing.T, addr string) string {
	t.Helper()
	keys, err := redistest.Command(addr, "KEYS", "tg:*")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range strings.Split(keys, "\n") {
		if k == replicasKey {
			continue
		}
		if typ, _ := redistest.Command(addr, "TYPE", k); typ == "zset" {
			return k
		}
	}
	t.Fatalf("no concurrency bucket in Redis among %q", keys)
	return ""
}

// switchProxy forwards connections to one Redis until switchTo moves it to another:
// it closes the connections it forwards, as go-redis's Sentinel client closes those
// to a demoted primary, and forwards new ones to the new address.
type switchProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	to    string
	conns []net.Conn
	wg    sync.WaitGroup
}

func startSwitchProxy(t *testing.T, to string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, to: to}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) addr() string { return p.ln.Addr().String() }

func (p *switchProxy) switchTo(to string) {
	p.mu.Lock()
	p.to = to
	p.mu.Unlock()
	p.closeAll()
}

func (p *switchProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *switchProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		to := p.to
		p.mu.Unlock()
		s, err := net.Dial("tcp", to)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(s, c)
			_ = s.Close()
		}()
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, s)
			_ = c.Close()
		}()
	}
}
