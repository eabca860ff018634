package gateway

// Secrets must never reach logs, error answers, config errors, metrics, spans or the
// admin API. Each test configures a recognisable secret, drives one path and
// asserts the secret (or a part of it long enough to matter) is absent from the sink.

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// secretsPost sends a chat request to the gateway and returns status and body.
func secretsPost(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A client key written as a plain list entry (keys: ["${TEAM_A_KEY}"], a common slip
// for keys: [{name: .., key: ..}]) is a type error, which yaml.v3 words with the value
// in it: the gateway's message leaves it out, in `tollgate validate`, the reload log
// and POST /admin/reload's answer alike.
func TestSecretsConfigTypeErrorQuotesKey(t *testing.T) {
	const short = "Tk9vQ2xZmW"         // 10 bytes: quoted whole
	const long = "Zx7Qp3KvN8mWb2LrTy5" // longer: its first 7 bytes are quoted
	env := func(name string) (string, bool) {
		switch name {
		case "TEAM_A_KEY":
			return short, true
		case "TEAM_B_KEY":
			return long, true
		}
		return "", false
	}
	yaml := `
auth:
  mode: keys
  keys: ["${TEAM_A_KEY}", "${TEAM_B_KEY}"]
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`
	_, err := ParseConfig("tollgate.yaml", []byte(yaml), env)
	if err == nil {
		t.Fatal("config accepted")
	}
	msg := err.Error()
	if strings.Contains(msg, short) || strings.Contains(msg, long[:7]) {
		t.Errorf("config error quotes a client key:\n%s", msg)
	}

	// The same message through a reload: the admin API's answer and the log.
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`)
	t.Setenv("TEAM_A_KEY", short)
	t.Setenv("TEAM_B_KEY", long)
	if err := os.WriteFile(g.path, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
`+yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+g.AdminAddr()+"/admin/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), short) || strings.Contains(string(body), long[:7]) {
		t.Errorf("POST /admin/reload answer quotes a client key:\n%s", body)
	}
	if logs := g.logs.String(); strings.Contains(logs, short) || strings.Contains(logs, long[:7]) {
		t.Errorf("reload log quotes a client key:\n%s", logs)
	}
}

// An OpenAI-compatible upstream whose error answer quotes the key it was sent: the
// body goes to the client with the key masked, as the Anthropic provider does.
func TestSecretsOpenAIUpstreamErrorEchoesKey(t *testing.T) {
	const key = "sk-review-openai-7f3c9a1e"
	for _, prov := range []string{"openai", "azure"} {
		t.Run(prov, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
				if got == "" {
					got = r.Header.Get("Api-Key")
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(401)
				io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+got+`","type":"invalid_request_error","code":"invalid_api_key"}}`)
			}))
			defer up.Close()
			extra := ""
			if prov == "azure" {
				extra = ", deployment: d1"
			}
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: `+prov+`, base_url: "`+up.URL+`/v1", model: m, api_key: `+key+extra+`}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
			status, body := secretsPost(t, g.url, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
			if strings.Contains(body, key) {
				t.Errorf("error answer to the client (%d) carries the provider key:\n%s", status, body)
			}
		})
	}
}

// An upstream that answers with what it was sent (a wrong port, a debugging echo, a
// non-HTTP service): fasthttp's response-header parse error would quote its read
// buffer, which holds the request's Authorization header, in the "upstream failed" log
// and on the upstream span; the clients are built with SecureErrorLogMessage.
func TestSecretsFasthttpParseErrorQuotesKey(t *testing.T) {
	const key = "sk-review-echo-4b8d2e6f"
	// The request line and Authorization header sent back as the "status line".
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		_, _ = io.WriteString(c, req.Method+" "+req.URL.Path+" HTTP/1.1\r\nAuthorization: "+req.Header.Get("Authorization")+"\r\n\r\n")
		c.Close()
	})
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: m, api_key: ` + key + `}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	logs := &syncBuffer{}
	exp := tracetest.NewInMemoryExporter()
	s := newServerWith(t, yaml, Options{Logger: slogTo(logs), SpanExporter: exp})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	status, body := secretsPost(t, "http://"+s.Addr(), `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if strings.Contains(body, key) {
		t.Errorf("answer (%d) carries the provider key:\n%s", status, body)
	}
	if l := logs.String(); strings.Contains(l, key) {
		t.Errorf("log carries the provider key:\n%s", l)
	}
	// Spans are exported in batches: flush through the runtime's tracer.
	if rt := s.rt.Load(); rt != nil && rt.tr != nil {
		fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = rt.tr.ForceFlush(fctx)
		fcancel()
	}
	for _, sp := range exp.GetSpans() {
		for _, ev := range sp.Events {
			for _, a := range ev.Attributes {
				if strings.Contains(a.Value.Emit(), key) {
					t.Errorf("span %q event %q attribute %s carries the provider key", sp.Name, ev.Name, a.Key)
				}
			}
		}
		for _, a := range sp.Attributes {
			if strings.Contains(a.Value.Emit(), key) {
				t.Errorf("span %q attribute %s carries the provider key", sp.Name, a.Key)
			}
		}
	}
}

// An Anthropic stream that fails with an error event after its first event: the
// message goes into the "upstream stream failed" log with the key masked, as it is
// when it comes before the first event or in an error answer.
func TestSecretsAnthropicStreamErrorLogsKey(t *testing.T) {
	const key = "sk-ant-review-9e1d3c5b"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Api-Key")
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\n")
		io.WriteString(w, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
		io.WriteString(w, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"key "+got+" was revoked\"}}\n\n")
	}))
	defer up.Close()
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "`+up.URL+`/v1", model: claude-x, api_key: `+key+`}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}]}
`)
	status, body := secretsPost(t, g.url, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if strings.Contains(body, key) {
		t.Errorf("answer (%d) carries the provider key:\n%s", status, body)
	}
	// The log line is written as the stream ends.
	time.Sleep(100 * time.Millisecond)
	if l := g.logs.String(); strings.Contains(l, key) {
		t.Errorf("log carries the provider key:\n%s", l)
	}
}

// A ${VAR} written where a key goes ("key:" or "api_key:" forgotten in a flow mapping,
// or a collector header pasted in OTEL_EXPORTER_OTLP_HEADERS' name=value form) is not
// expanded (references are read in values only) and said so, so no message names a
// key path that holds the secret.
func TestSecretsConfigKeyPathQuotesExpandedSecret(t *testing.T) {
	const secret = "Qm4rT8vWz2Kp6Ls1"
	env := func(name string) (string, bool) {
		if name == "SECRET" {
			return secret, true
		}
		return "", false
	}
	for name, yaml := range map[string]string{
		"auth key without key:": `
auth:
  keys: [{name: team-a, "${SECRET}"}]
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`,
		"backend key without api_key:": `
backends:
  gpt: {provider: openai, base_url: "https://api.openai.com/v1", model: gpt-4o-mini, "${SECRET}"}
endpoints:
  - {name: chat, type: chat, routes: [{backend: gpt}]}
`,
		"otlp header as name=value": `
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
tracing:
  exporter: otlp-http
  endpoint: "http://127.0.0.1:4318"
  headers: {"authorization=Bearer ${SECRET}"}
`,
	} {
		_, err := ParseConfig("tollgate.yaml", []byte(yaml), env)
		if err == nil {
			t.Errorf("%s: config accepted", name)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: config error quotes the secret:\n%s", name, err)
		}
	}
}

// A proxy with user:password@ that refuses (407) or cannot be reached: neither the
// answer nor the log may carry the password.
func TestSecretsProxyPassword(t *testing.T) {
	t.Parallel()
	const pw = "ProxyPw-3e7a91c2"
	refusing, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
	})
	deadAddr := holdPort(t).Addr()
	for _, proxy := range []string{"http://user:" + pw + "@" + refusing, "http://user:" + pw + "@" + deadAddr, "socks5://user:" + pw + "@" + deadAddr} {
		g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://10.255.255.1:8000/v1", model: m, proxy: "`+proxy+`", connect_timeout: 1s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
		status, body := secretsPost(t, g.url, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
		if strings.Contains(body, pw) {
			t.Errorf("%s: answer (%d) carries the proxy password:\n%s", proxy, status, body)
		}
		resp, err := http.Get("http://" + g.AdminAddr() + "/metrics")
		if err == nil {
			m, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(m), pw) {
				t.Errorf("%s: metrics carry the proxy password", proxy)
			}
		}
		if l := g.logs.String(); strings.Contains(l, pw) {
			t.Errorf("%s: log carries the proxy password:\n%s", proxy, l)
		}
	}
}

// An OpenAI-compatible upstream that fails mid-stream with an error event quoting the
// key: the event reaches the client with the key masked.
func TestSecretsOpenAIStreamErrorEventMasked(t *testing.T) {
	const key = "sk-review-stream-3e5a7c91"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}`+"\n\n")
		io.WriteString(w, `data: {"error":{"message":"key `+got+` revoked mid-stream","type":"invalid_request_error","code":"invalid_api_key"}}`+"\n\n")
	}))
	defer up.Close()
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "`+up.URL+`/v1", model: m, api_key: `+key+`}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	status, body := secretsPost(t, g.url, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if !strings.Contains(body, "revoked mid-stream") {
		t.Fatalf("%d: the error event did not reach the client:\n%s", status, body)
	}
	if strings.Contains(body, key) {
		t.Errorf("the error event carries the provider key:\n%s", body)
	}
}

// An Anthropic backend reached through an API gateway that wants its own credential in
// a header (headers: {x-gateway-token: ${TOKEN}}, as Cloudflare's cf-aig-authorization
// or a corporate egress gateway asks): an error answer quoting it reaches the client
// masked, as the key is.
func TestAnthropicHeaderValueMaskedInErrorAnswer(t *testing.T) {
	const tok = "gw-token-5c2e81f4"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Gateway-Token")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(403)
		io.WriteString(w, `{"type":"error","error":{"type":"permission_error","message":"gateway token `+got+` is not allowed to use this model"}}`)
	}))
	defer up.Close()
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "`+up.URL+`/v1", model: claude-x, api_key: sk-ant-1234567890,
           headers: {x-gateway-token: `+tok+`}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}]}
`)
	status, body := secretsPost(t, g.url, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if !strings.Contains(body, "not allowed") {
		t.Fatalf("%d: the upstream's error did not reach the client:\n%s", status, body)
	}
	if strings.Contains(body, tok) {
		t.Errorf("error answer (%d) carries the backend's header value:\n%s", status, body)
	}
}

// An MLflow config with provider azuread (an Entra ID token) sends the token as
// "Authorization: Bearer <token>": an upstream error quoting the token alone (as token
// validation errors do) reaches the client masked, as provider azure's api-key is.
func TestMLflowAzureADTokenMaskedInErrorAnswer(t *testing.T) {
	const tok = "eyJ0eXAiOiJKV1QiLCJhbGciOi-7d3f"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"code":"401","message":"Access token `+got+` is missing or invalid, audience is incorrect."}}`)
	}))
	defer up.Close()
	path := filepath.Join(t.TempDir(), "mlflow.yaml")
	t.Setenv("SECRETS_AZURE_AD_TOKEN", tok)
	if err := os.WriteFile(path, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model:
      provider: azuread
      name: gpt-4o
      config:
        openai_api_key: $SECRETS_AZURE_AD_TOKEN
        openai_api_base: `+up.URL+`
        openai_deployment_name: gpt-4o
        openai_api_version: "2024-10-21"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	g := serveConfig(t, path)
	status, body := secretsPost(t, g.url, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if !strings.Contains(body, "missing or invalid") {
		t.Fatalf("%d: the upstream's error did not reach the client:\n%s", status, body)
	}
	if strings.Contains(body, tok) {
		t.Errorf("error answer (%d) carries the Azure AD token:\n%s", status, body)
	}
}

// proxyEchoServer accepts connections and sends back the first request head it reads
// (up to the blank line), then closes: a wrong port, a debugging echo, a non-HTTP
// service where a proxy was meant to be.
func proxyEchoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				var head []byte
				buf := make([]byte, 4096)
				for !bytes.Contains(head, []byte("\r\n\r\n")) {
					n, err := c.Read(buf)
					head = append(head, buf[:n]...)
					if err != nil {
						break
					}
				}
				_, _ = c.Write(head)
			}()
		}
	}()
	return ln.Addr().String()
}

// A backend's egress proxy (proxy: http://user:password@host:port) that is no HTTP
// proxy and answers with what it was sent, the CONNECT request's Proxy-Authorization
// header included: the "upstream failed" log line names the proxy, never what it
// sent back.
func TestProxyEchoLeavesCredentialsOutOfLogs(t *testing.T) {
	const pw = "ProxyPw-echo-8d41c7"
	auth := base64.StdEncoding.EncodeToString([]byte("user:" + pw))
	proxy := proxyEchoServer(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://10.255.255.1:8000/v1", model: m, api_key: sk-proxyecho-1234,
       proxy: "http://user:`+pw+`@`+proxy+`", connect_timeout: 2s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	status, body := secretsPost(t, g.url, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if strings.Contains(body, pw) || strings.Contains(body, auth[:16]) {
		t.Errorf("answer (%d) carries the proxy credentials:\n%s", status, body)
	}
	waitFor(t, func() bool { return strings.Contains(g.logs.String(), "proxy "+proxy) })
	if l := g.logs.String(); strings.Contains(l, pw) || strings.Contains(l, auth[:16]) {
		t.Errorf("log carries the proxy credentials (Proxy-Authorization: Basic %s):\n%s", auth, l)
	}
}

// A backend key or header value with surrounding whitespace (a secret file read into
// ${VAR} with its trailing newline) is refused, as client keys are, naming file, line
// and key but not the value: sent, it works, and an upstream quoting the trimmed value
// it read would quote one that masking does not know. MLflow configs' keys too.
func TestBackendSecretWhitespaceRefused(t *testing.T) {
	const key = "sk-nl-0b7e4d29c1"
	const problem = "has leading or trailing whitespace (a trailing newline from a secret file?)"
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(key+" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const rest = "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	mlflow := func(provider, config string) string {
		return "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n      provider: " + provider +
			"\n      name: m\n      config:\n" + config
	}
	cases := []struct{ name, yaml, want string }{
		{"api_key", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m,\n       api_key: \"${K}\"}\n" + rest,
			"t.yaml:3: backends.up.api_key: " + problem},
		{"header value", "backends:\n  up:\n    provider: anthropic\n    base_url: \"http://127.0.0.1:1/v1\"\n    model: m\n    headers:\n      x-gateway-token: \"${K}\"\n" + rest,
			"t.yaml:7: backends.up.headers.x-gateway-token: " + problem},
		{"mlflow key", mlflow("openai", "        openai_api_key: $K\n"),
			"t.yaml:8: endpoints[0].model.config.openai_api_key: " + problem},
		{"mlflow azuread token", mlflow("azuread", "        openai_api_key: $K\n        openai_api_base: https://example.openai.azure.com\n"),
			"t.yaml:8: endpoints[0].model.config.openai_api_key: " + problem},
		{"mlflow key file", mlflow("anthropic", "        anthropic_api_key: "+keyFile+"\n"),
			"t.yaml:8: endpoints[0].model.config.anthropic_api_key: " + problem},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(map[string]string{"K": key + "\n"}))
			if err == nil || err.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("the message shows the key: %v", err)
			}
		})
	}
}
