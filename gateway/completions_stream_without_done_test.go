package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SRE: a legacy completions stream whose body ended cleanly after its finish_reason
// chunk and its usage chunk, with no data: [DONE], sent the client an
// upstream_stream_cut error event and counted against its target, where a chat stream
// ending so is whole. Completions streams now end as chat's: once every choice (n for
// each prompt) has finished and the usage asked for has come, the body's clean end is
// the stream's end, whether the upstream's completions API served it or its chat API
// did (MLflow's openai provider, completions through chat).
func TestCompletionsStreamWithoutDone(t *testing.T) {
	chunk := func(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
	cmpl := func(i int, text, finish string) string {
		return `data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":` + strconv.Itoa(i) +
			`,"text":"` + text + `","logprobs":null,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	chat := func(i int, text, finish string) string {
		return `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":` + strconv.Itoa(i) +
			`,"delta":{"content":"` + text + `"},"logprobs":null,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	usage := func(object string) string {
		return `data: {"id":"x","object":"` + object + `","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n"
	}
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		ev, object := cmpl, "text_completion"
		if strings.HasSuffix(req.URL.Path, "/chat/completions") {
			ev, object = chat, "chat.completion.chunk"
		}
		events := ev(0, "hello", "null")
		switch req.Header.Get("X-Test-Mode") {
		case "whole":
			events += ev(0, "", `"stop"`) + usage(object)
		case "two-whole":
			events += ev(1, "hi", "null") + ev(1, "", `"length"`) + ev(0, "", `"stop"`) + usage(object)
		case "one-of-two":
			events += ev(1, "hi", "null") + ev(0, "", `"stop"`) + usage(object)
		case "no-usage":
			events += ev(0, "", `"stop"`)
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(events)+"0\r\n\r\n")
	})
	native := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: m, health: {eject_after: 1}}
endpoints:
  - {name: legacy, type: completions, routes: [{backend: up}]}
`)
	viaChat := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: legacy
    endpoint_type: llm/v1/completions
    model:
      provider: openai
      name: m
      config:
        openai_api_key: sk-test
        openai_api_base: "http://`+addr+`/v1"
`)
	const (
		one        = `{"model":"legacy","stream":true,"prompt":"hi"}`
		oneUsage   = `{"model":"legacy","stream":true,"stream_options":{"include_usage":true},"prompt":"hi"}`
		twoPrompts = `{"model":"legacy","stream":true,"stream_options":{"include_usage":true},"prompt":["hi","yo"]}`
		twoChoices = `{"model":"legacy","stream":true,"stream_options":{"include_usage":true},"n":2,"prompt":"hi"}`
		mlflow     = `{"stream":true,"prompt":"hi"}`
	)
	cases := []struct {
		name, path, mode, body string
		g                      *gw
		whole                  bool
	}{
		{"usage asked by the client", "/v1/completions", "whole", oneUsage, native, true},
		{"usage asked by the gateway", "/v1/completions", "whole", one, native, true},
		{"every prompt's choice finished", "/v1/completions", "two-whole", twoPrompts, native, true},
		{"every choice finished", "/v1/completions", "two-whole", twoChoices, native, true},
		{"through chat", "/v1/completions", "whole", oneUsage, viaChat, true},
		{"through chat, every choice finished", "/v1/completions", "two-whole", twoChoices, viaChat, true},
		{"through chat on MLflow's route", "/endpoints/legacy/invocations", "whole", mlflow, viaChat, true},

		{"a prompt's choice not finished", "/v1/completions", "one-of-two", twoPrompts, native, false},
		{"a choice not finished", "/v1/completions", "one-of-two", twoChoices, native, false},
		{"usage not come", "/v1/completions", "no-usage", one, native, false},
		{"no finish_reason", "/v1/completions", "", oneUsage, native, false},
		{"through chat, a choice not finished", "/v1/completions", "one-of-two", twoChoices, viaChat, false},
		{"through chat, usage not come", "/v1/completions", "no-usage", one, viaChat, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g
			backend := "up"
			if g == viaChat {
				backend = "legacy"
			}
			okBefore := counterValue(t, g.Server, "tollgate_upstream_attempts_total", "backend", backend, "outcome", "ok")
			req, _ := http.NewRequest("POST", g.url+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Test-Mode", tc.mode)
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body, id := string(b), resp.Header.Get("X-Request-Id")
			if resp.StatusCode != 200 || !strings.Contains(body, "hello") || strings.Contains(body, "chat.completion") {
				t.Fatalf("status %d, want the completions stream begun:\n%s", resp.StatusCode, body)
			}
			line := accessLine(t, g, id)
			okAfter := counterValue(t, g.Server, "tollgate_upstream_attempts_total", "backend", backend, "outcome", "ok")
			if tc.whole {
				if !strings.HasSuffix(body, "data: [DONE]\n\n") || strings.Contains(body, `"error"`) {
					t.Fatalf("the client got %q, want the stream ending with data: [DONE], no error event", body)
				}
				if line["error"] != "" || line["status"] != float64(200) || line["output_tokens"] != float64(2) {
					t.Fatalf("access log %v, want status 200, no error, the usage's 2 output tokens", line)
				}
				if okAfter != okBefore+1 {
					t.Fatalf("attempts with outcome ok went from %v to %v, want the stream's counted", okBefore, okAfter)
				}
				if !g.rt.Load().backends[backend].Healthy() {
					t.Fatal("the whole stream counted against its target")
				}
				return
			}
			if !strings.Contains(body, "upstream_stream_cut") || strings.Contains(body, "[DONE]") {
				t.Fatalf("the client got %q, want an upstream_stream_cut error event, no [DONE]", body)
			}
			if line["error"] != "upstream_stream_cut" {
				t.Fatalf("access log %v, want error upstream_stream_cut", line)
			}
			if okAfter != okBefore {
				t.Fatalf("a cut stream counted as an attempt with outcome ok")
			}
		})
	}
}
