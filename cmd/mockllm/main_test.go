package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a log sink the server goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeAndStop(t *testing.T) {
	var logs syncBuffer
	stop := make(chan os.Signal, 1)
	ready := make(chan string, 1)
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"--listen", "127.0.0.1:0", "--model", "m1", "--api-key", "k", "--max-tokens", "4", "--keep-alive-timeout", "2s"}, &logs, stop, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case c := <-code:
		t.Fatalf("exited %d: %s", c, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/chat/completions", strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !json.Valid(body) || !strings.Contains(string(body), `"model":"m1"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// vLLM's /version, like /health, needs no API key.
	resp, err = client.Get("http://" + addr + "/version")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"version":`) {
		t.Fatalf("GET /version: %d %s", resp.StatusCode, body)
	}

	stop <- syscall.SIGTERM
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d: %s", c, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"mockllm listening"`) || !strings.Contains(lines[0], `"model":"m1"`) ||
		!strings.Contains(lines[0], `"keep_alive_timeout":"2s"`) || strings.Contains(lines[0], `"k"`) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestBadFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"unknown flag", []string{"--nope"}, 2},
		{"unknown api", []string{"--api", "grpc"}, 2},
		{"error rate out of range", []string{"--error-rate", "2"}, 2},
		{"negative keep-alive timeout", []string{"--keep-alive-timeout", "-1s"}, 2},
		{"negative responses store", []string{"--responses-store", "-1"}, 2},
		{"stray argument", []string{"serve"}, 2},
		{"help", []string{"--help"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if c := run(tc.args, &out, nil, nil); c != tc.code {
				t.Errorf("exit %d, want %d: %s", c, tc.code, out.String())
			}
			if tc.name == "help" && !strings.Contains(out.String(), "x-mock-cut-after") {
				t.Errorf("help does not list the x-mock headers:\n%s", out.String())
			}
		})
	}
}

// TestResponsesStoreZero: --responses-store 0 keeps no Responses API answer.
func TestResponsesStoreZero(t *testing.T) {
	var logs syncBuffer
	stop := make(chan os.Signal, 1)
	ready := make(chan string, 1)
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"--listen", "127.0.0.1:0", "--responses-store", "0"}, &logs, stop, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case c := <-code:
		t.Fatalf("exited %d: %s", c, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Post("http://"+addr+"/v1/responses", "application/json", strings.NewReader(`{"input":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || r.ID == "" {
		t.Fatalf("%d %v %+v", resp.StatusCode, err, r)
	}
	resp, err = client.Get("http://" + addr + "/v1/responses/" + r.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET the response: %d, want 404", resp.StatusCode)
	}
	stop <- syscall.SIGTERM
	if c := <-code; c != 0 || !strings.Contains(logs.String(), `"responses_store":0`) {
		t.Errorf("exit %d: %s", c, logs.String())
	}
}
