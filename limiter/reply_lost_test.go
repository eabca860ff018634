package limiter

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// cuttingProxy forwards connections to Redis; once armed, it swallows the next reply
// Redis sends and closes that connection: the command ran, its answer is lost.
type cuttingProxy struct {
	ln    net.Listener
	to    string
	armed atomic.Bool
	cuts  atomic.Int32
	conns atomic.Int32
	wg    sync.WaitGroup
}

func startCuttingProxy(t *testing.T, to string) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, to: to}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *cuttingProxy) addr() string { return p.ln.Addr().String() }

func (p *cuttingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.conns.Add(1)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(s, c)
			_ = s.Close()
		}()
		go func() {
			defer p.wg.Done()
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && p.armed.CompareAndSwap(true, false) {
					p.cuts.Add(1)
					_ = s.Close()
					return
				}
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						_ = s.Close()
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// A check whose reply is lost on the way back (the connection to Redis breaks after
// the script ran) is charged once: sent again, it would run again and charge the
// bucket twice for one request.
func TestRedisReplyLostChargesOnce(t *testing.T) {
	srv := redistest.Start(t)
	proxy := startCuttingProxy(t, srv.Addr())
	off := time.Duration(0)
	cfg := Config{Redis: RedisConfig{URL: "redis://" + proxy.addr() + "/0"}, Prefetch: &off, OnRedisError: "allow"}
	l := newRedisLimiter(t, cfg, func(o *options) {
		o.heartbeatEvery = time.Hour
	})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 10, Window: "hour", Burst: 10})
	subj := &Subject{APIKey: []byte("team-cut"), Endpoint: []byte("chat")}

	var tk Ticket
	if err := l.Take(bg, pol, subj, 0, &tk); err != nil {
		t.Fatalf("first check: %v", err)
	}
	l.Settle(&tk, 0)
	proxy.armed.Store(true)
	var lost Ticket
	_ = l.Take(bg, pol, subj, 0, &lost)
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d replies, want 1", proxy.cuts.Load())
	}

	// Count what is left in the bucket through a limiter that talks to Redis directly.
	direct := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: &off})
	admitted := 0
	for range 20 {
		var d Ticket
		err := direct.Take(bg, pol, subj, 0, &d)
		if err != nil {
			if _, refused := err.(*Refused); !refused {
				t.Fatalf("direct check: %v", err)
			}
			break
		}
		admitted++
	}
	if admitted != 8 {
		t.Errorf("after two checks (one reply lost) the bucket admitted %d more, want 8: the lost check was charged %d times", admitted, 10-1-admitted)
	}
}
