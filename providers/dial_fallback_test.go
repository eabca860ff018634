//go:build linux

package providers

// A target named by a host whose IPv6 address black-holes (no answer to SYN) and whose
// IPv4 address serves is reached over IPv4 after a short fallback delay, within
// connect_timeout, for every new connection (RFC 8305, Happy Eyeballs).

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/dns/dnsmessage"
)

func TestDialFallsBackFromBlackHoledFamily(t *testing.T) {
	m := startMockReplica(t, mockllm.Options{Model: "m"})
	_, port, err := net.SplitHostPort(m.addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	blackHole6(t, p)
	const name = "dual.tollgate.test"
	cfg := Config{Provider: "openai", BaseURL: "http://" + name + ":" + port + "/v1", Model: "m",
		ConnectTimeout: 3 * time.Second}
	cfg.resolver = fakeDNS(t, name, net.ParseIP("127.0.0.1"), net.ParseIP("::1"))
	b := newTestBackend(t, cfg)
	// Each request dials anew: an address chosen first on one dial may come second on
	// the next, and every one of them must connect.
	for i := range 4 {
		b.targets[0].client.CloseIdleConnections()
		start := time.Now()
		out := fasthttp.AcquireResponse()
		var res Result
		err := b.Send(promptCall("hello", false), out, &res)
		took := time.Since(start)
		body := string(out.Body())
		fasthttp.ReleaseResponse(out)
		if err != nil {
			t.Fatalf("request %d failed after %v: %v", i, took.Round(time.Millisecond), err)
		}
		if !strings.Contains(body, "chat.completion") {
			t.Fatalf("request %d: answer %q", i, body)
		}
		if took >= cfg.ConnectTimeout {
			t.Fatalf("request %d took %v, the whole connect_timeout", i, took.Round(time.Millisecond))
		}
	}
}

// blackHole6 makes [::1]:port an address that never answers a SYN: a listener whose
// accept queue (backlog 0) is filled by connections never accepted, so that the
// kernel drops further SYNs, as a firewall that drops packets or a broken IPv6 route
// does. A listener that merely never accepts is no black hole: the kernel completes
// the handshake for it.
func blackHole6(t *testing.T, port int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("no IPv6 socket, which this test needs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}); err != nil {
		t.Fatalf("no IPv6 loopback (::1) at port %d, which this test needs: %v", port, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("::1", strconv.Itoa(port))
	for range 16 {
		c, err := net.DialTimeout("tcp6", addr, 300*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return
		}
		t.Fatalf("filling the accept queue of %s: %v", addr, err)
	}
	t.Fatalf("%s still completes handshakes with its accept queue full", addr)
}

// fakeDNS is a resolver that answers name with the given addresses (A and AAAA), and
// every other name with NXDOMAIN, from an in-process server: no network, no system
// resolver.
func fakeDNS(t *testing.T, name string, ips ...net.IP) *net.Resolver {
	t.Helper()
	fqdn := dnsmessage.MustNewName(name + ".")
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		c, s := net.Pipe()
		go serveDNS(s, fqdn, ips)
		return c, nil
	}}
}

// serveDNS answers the queries read from c, DNS over a stream (each message after its
// two-byte length), until c is closed.
func serveDNS(c net.Conn, name dnsmessage.Name, ips []net.IP) {
	defer c.Close()
	for {
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(msg)
		if err != nil {
			return
		}
		q, err := p.Question()
		if err != nil {
			return
		}
		rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true}
		if q.Name.String() != name.String() {
			rh.RCode = dnsmessage.RCodeNameError
		}
		bld := dnsmessage.NewBuilder(make([]byte, 2, 514), rh)
		bld.EnableCompression()
		_ = bld.StartQuestions()
		_ = bld.Question(q)
		_ = bld.StartAnswers()
		if rh.RCode == dnsmessage.RCodeSuccess {
			rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
			for _, ip := range ips {
				if v4 := ip.To4(); v4 != nil && q.Type == dnsmessage.TypeA {
					_ = bld.AResource(rr, dnsmessage.AResource{A: [4]byte(v4)})
				} else if v4 == nil && q.Type == dnsmessage.TypeAAAA {
					_ = bld.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: [16]byte(ip.To16())})
				}
			}
		}
		out, err := bld.Finish()
		if err != nil {
			return
		}
		binary.BigEndian.PutUint16(out, uint16(len(out)-2))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
