//go:build linux

package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func init() {
	stacks["epoll"] = func(t *testing.T, s settings) string {
		p, err := startEpoll(s, 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p.addr.String()
	}
}

func TestMessageLen(t *testing.T) {
	const head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
	for _, tc := range []struct {
		in   string
		want int
	}{
		{head + "Content-Length: 2\r\n\r\n{}", len(head) + 23},
		{head + "content-LENGTH:  2 \r\n\r\n{}rest", len(head) + 25},
		{head + "Content-Length: 2\r\n\r\n{", 0},
		{head + "Content-Length: 2\r\n", 0},
		{"GET / HTTP/1.1\r\n\r\n", 18},
		{head + "Content-Length: x\r\n\r\n", -1},
		{head + "Content-Length: -1\r\n\r\n", -1},
		{head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", -1},
		{strings.Repeat("x", 70<<10), -1},
	} {
		if got := messageLen([]byte(tc.in)); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestEpollBadRequestClosesOnlyItsConnection(t *testing.T) {
	addr := start(t, "epoll", startMock(t))
	bad, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_ = bad.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(bad, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if n, err := bad.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("chunked request: read %d, %v; want the connection closed", n, err)
	}
	good, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	_ = good.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(good, request("/v1/chat/completions", `{"model":"chat","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`))
	if code, body := readAnswer(t, bufio.NewReader(good)); code != 200 || !bytes.Contains([]byte(body), []byte("choices")) {
		t.Fatalf("after a bad request elsewhere: %d %s", code, body)
	}
}
