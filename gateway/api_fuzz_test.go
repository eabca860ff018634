package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

const (
	fuzzClientKey   = "sk-fuzz-client-7f3a9c"
	fuzzProviderKey = "sk-fuzz-provider-b81e44"
	fuzzClaudeKey   = "sk-ant-fuzz-29d0c1"
)

// fuzzStatuses are the statuses the API answers with (README, "Errors"): anything else,
// a 500 above all, is a gateway fault. 422 is the upstream's, passed on: vLLM (and
// mockllm) answer it to an audio form whose file part has no filename.
var fuzzStatuses = map[int]bool{200: true, 400: true, 401: true, 404: true, 405: true, 413: true,
	414: true, 422: true, 429: true, 431: true, 502: true, 503: true, 504: true}

// FuzzServeAPI sends the gateway well-formed HTTP requests with whatever method, path,
// headers and body the fuzzer makes, over a real connection, on a config with client
// keys, an OpenAI-style and an Anthropic backend, embeddings, legacy completions and a
// limit. Every request must get a complete answer with a documented status, an
// x-request-id, OpenAI's error shape on errors and valid JSON (or SSE of JSON events) on
// success, and no secret may reach the answer or the logs.
func FuzzServeAPI(f *testing.F) {
	_, up := startMock(f, mockllm.Options{MaxTokens: 4, APIKey: fuzzProviderKey, Seed: 3})
	_, claude := startMock(f, mockllm.Options{Model: "claude-up", API: mockllm.APIAnthropic, APIKey: fuzzClaudeKey, MaxTokens: 4})
	g := startGateway(f, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 16KiB}
auth:
  keys:
    - {name: team, key: `+fuzzClientKey+`}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, api_key: `+fuzzProviderKey+`, timeout: 2s}
  claude: {provider: anthropic, base_url: "http://`+claude+`/v1", model: claude-up, api_key: `+fuzzClaudeKey+`, timeout: 2s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], timeout: 2s}
  - {name: claude, type: chat, routes: [{backend: claude}], timeout: 2s, fallbacks: [up]}
  - {name: embed, type: embeddings, routes: [{backend: up}], timeout: 2s}
  - {name: legacy, type: completions, routes: [{backend: up}], timeout: 2s}
  - {name: rank, type: rerank, routes: [{backend: up}], timeout: 2s, limits: [{per: api_key, tokens: 1000000, window: minute}]}
  - {name: whisper, type: transcriptions, routes: [{backend: up}], timeout: 2s}
  - {name: limited, type: chat, routes: [{backend: up}], timeout: 2s,
     limits: [{per: user, tokens: 1000000, window: minute}, {per: api_key, requests: 1000000, window: minute}]}
logging: {level: info, access_log: true}
`)
	addr := strings.TrimPrefix(g.url, "http://")
	auth := "Authorization: Bearer " + fuzzClientKey + "\n"
	chat := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	for _, s := range []struct{ method, path, header, body string }{
		{"POST", "/v1/chat/completions", auth, chat},
		{"POST", "/v1/chat/completions", auth + "X-Request-Id: seed-1\n", `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"claude","max_tokens":3,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"claude","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"claude","n":2,"messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"claude","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}`},
		{"POST", "/v1/embeddings", auth, `{"model":"embed","input":["a","b"]}`},
		{"POST", "/v1/completions", auth, `{"model":"legacy","prompt":"Once","stream":true}`},
		{"POST", "/v1/rerank", auth, `{"model":"rank","query":"q","documents":["a","q b"],"top_n":1}`},
		{"POST", "/v2/rerank", auth, `{"model":"rank","query":"q","documents":[{"text":"a"}],"stream":true}`},
		{"POST", "/rerank", auth, `{"model":"rank","query":1,"documents":"x"}`},
		{"POST", "/score", auth, `{"model":"rank","queries":"q","documents":["a","q b"],"text_1":"x","text_2":["y"]}`},
		{"POST", "/v1/score", auth, `{"model":"rank","data_1":["a","b"],"data_2":["c","d","e"]}`},
		{"POST", "/v1/messages", "x-api-key: " + fuzzClientKey + "\nanthropic-version: 2023-06-01\n", `{"model":"claude","max_tokens":8,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"u"}}`},
		{"POST", "/v1/messages", auth, `{"model":"chat","max_tokens":8,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`},
		{"POST", "/v1/messages/count_tokens", auth, `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/tokenize", auth, `{"model":"embed","prompt":"hi"}`},
		{"POST", "/detokenize", auth, `{"model":"chat","tokens":[1,2,3]}`},
		{"POST", "/v1/chat/completions", auth + "X-Tollgate-User: u1\n", `{"model":"limited","user":"u2","messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"chat","messages":[`},
		{"POST", "/v1/chat/completions", auth, `{"mod\u0065l":"chat","model":"chat","messages":[]}`},
		{"POST", "/v1/chat/completions", auth, `{"Model":"chat","messages":[]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"nope","messages":[]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"embed","input":"x"}`},
		{"POST", "/v1/chat/completions", auth, `[1,2,3]`},
		{"POST", "/v1/chat/completions", "x-no-auth: 1\n", chat},
		{"POST", "/v1/chat/completions", "Authorization: Bearer sk-wrong\n", chat},
		{"POST", "/v1/chat/completions", "Authorization: Basic " + fuzzClientKey + "\n", chat},
		{"POST", "/v1/chat/completions", auth + "Content-Type: text/plain\n", chat},
		{"POST", "/v1/chat/completions", auth, `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("x", 20000) + `"}]}`},
		{"POST", "/v1/chat/completions", auth + "traceparent: 00-zz-00-01\nX-Request-Id: \x01bad id\n", chat},
		{"POST", "/v1/chat/completions", auth + "X-Request-Id: " + strings.Repeat("r", 200) + "\n", chat},
		{"POST", "/v1/chat/completions", auth + "x-mock-status: 500\n", chat},
		{"POST", "/v1/chat/completions", auth + "x-mock-garbage: 1\n", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"GET", "/v1/models", auth, ""},
		{"GET", "/v1/models/chat", auth, ""},
		{"GET", "/v1/models/nope", auth, ""},
		{"GET", "/v1/models?limit=2&after_id=chat", auth + "anthropic-version: 2023-06-01\n", ""},
		{"GET", "/v1/models?limit=x&before_id=%00", auth + "anthropic-version: 2023-06-01\n", ""},
		{"GET", "/v1/models/claude", "x-api-key: " + fuzzClientKey + "\nanthropic-version: 2023-06-01\nx-no-auth: 1\n", ""},
		{"DELETE", "/v1/chat/completions", auth, chat},
		{"GET", "/v1/chat/completions", auth, ""},
		{"POST", "/v2/anything?x=1", auth, chat},
		{"POST", "/v1/chat/completions/../embeddings", auth, chat},
		{"POST", "/v1/chat/completions", auth, `{"model":"chat","stream":"yes","messages":[]}`},
		{"POST", "/v1/chat/completions", auth, `{"model":"chat","max_tokens":-1,"stream_options":{"include_usage":"no"},"messages":[]}`},
		{"POST", "/v1/audio/transcriptions", auth + "Content-Type: multipart/form-data; boundary=B\n", fuzzForm("model", "whisper")},
		{"POST", "/v1/audio/transcriptions", auth + "Content-Type: multipart/form-data; boundary=\"B\"\n", fuzzForm("model", "whisper", "stream", "true", "stream_include_usage", "true")},
		{"POST", "/v1/audio/translations", auth + "Content-Type: multipart/form-data; boundary=B\nx-mock-audio-api: openai\n", fuzzForm("response_format", "srt", "model", "whisper")},
		{"POST", "/v1/audio/transcriptions", auth + "Content-Type: multipart/form-data; boundary=B\nx-mock-audio-api: openai\n", fuzzForm("model", "whisper", "stream", "1")},
		{"POST", "/v1/audio/transcriptions", auth + "Content-Type: multipart/form-data; boundary=B\n", fuzzForm("model", "chat")},
		{"POST", "/v1/audio/transcriptions", auth + "Content-Type: multipart/form-data; boundary=B\n", fuzzForm("model", "whisper")[:40]},
		{"POST", "/v1/audio/translations", auth, `{"model":"whisper"}`},
	} {
		f.Add(s.method, s.path, s.header, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, path, header string, body []byte) {
		req, clientID := fuzzRequest(method, path, header, body)
		resp, got, err := fuzzExchange(addr, req)
		if err != nil {
			t.Fatalf("%v\nrequest:\n%q", err, req)
		}
		logs := g.logs.drain()
		for _, secret := range []string{fuzzProviderKey, fuzzClaudeKey} {
			if strings.Contains(string(got), secret) || strings.Contains(fmtHeader(resp.Header), secret) {
				t.Fatalf("answer carries a provider key:\n%s", got)
			}
			if strings.Contains(logs, secret) {
				t.Fatalf("logs carry a provider key:\n%s", logs)
			}
		}
		if !strings.Contains(string(req), fuzzClientKey) {
			t.Fatalf("request builder lost the client key")
		}
		if strings.Contains(string(got), fuzzClientKey) || strings.Contains(logs, fuzzClientKey) {
			t.Fatalf("the client key reached the answer or the logs:\n%s\n%s", got, logs)
		}
		fuzzCheckAnswer(t, req, resp, got, clientID)
	})
}

// fuzzForm is a multipart body (boundary B) with the given fields, then a file part of
// a few bytes of audio.
func fuzzForm(fields ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(fields); i += 2 {
		b.WriteString("--B\r\nContent-Disposition: form-data; name=\"" + fields[i] + "\"\r\n\r\n" + fields[i+1] + "\r\n")
	}
	b.WriteString("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
	b.WriteString(strings.Repeat("\x00\x01", 200) + "\r\n--B--\r\n")
	return b.String()
}

// fuzzRequest makes a well-formed HTTP/1.1 request from the fuzzer's parts, and the
// x-request-id it sends (empty for none). The request always carries the client key,
// so that its leaking can be checked: as its bearer token unless header sets an
// Authorization of its own or an x-no-auth line, else in another header.
func fuzzRequest(method, path, header string, body []byte) ([]byte, string) {
	var b bytes.Buffer
	m := strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r
		}
		return -1
	}, method)
	if m == "" {
		m = "POST"
	}
	p := strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f {
			return -1
		}
		return r
	}, path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	b.WriteString(m + " " + p + " HTTP/1.1\r\nHost: gateway\r\n")
	var id string
	hasAuth := false
	for line := range strings.SplitSeq(header, "\n") {
		name, value, ok := strings.Cut(strings.TrimSuffix(line, "\r"), ":")
		if !ok || name == "" || !fuzzToken(name) || !fuzzFieldValue(value) {
			continue
		}
		switch strings.ToLower(name) {
		case "host", "content-length", "transfer-encoding", "connection", "expect", "upgrade":
			continue
		case "authorization", "x-no-auth":
			hasAuth = true
		case "x-request-id":
			id = strings.Trim(value, " \t")
		}
		b.WriteString(name + ":" + value + "\r\n")
	}
	if !hasAuth {
		b.WriteString("Authorization: Bearer " + fuzzClientKey + "\r\n")
	}
	// The client key rides along in another header too, where nothing may echo it.
	b.WriteString("X-Client-Note: " + fuzzClientKey + "\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n")
	b.Write(body)
	return b.Bytes(), id
}

// fuzzToken reports whether s is an HTTP header name (RFC 9110 token).
func fuzzToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// fuzzFieldValue reports whether s may be a header value (RFC 9110: visible
// characters, spaces, tabs and obs-text; no other control character).
func fuzzFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// fuzzExchange sends req on a fresh connection and reads the whole answer.
func fuzzExchange(addr string, req []byte) (*http.Response, []byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(req); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, err
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, got, nil
}

func fmtHeader(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return b.String()
}

// fuzzCheckAnswer checks one answer against the API's contract.
func fuzzCheckAnswer(t *testing.T, req []byte, resp *http.Response, got []byte, clientID string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nrequest:\n%q\nanswer %d %v:\n%s", append(args, req, resp.StatusCode, resp.Header, got)...)
	}
	// mockllm answers the status an x-mock-status header asks for, and the gateway
	// passes an upstream's error through as it is.
	upstreams := resp.StatusCode >= 400 && bytes.Contains(got, []byte(`"message":"mockllm: `))
	if !fuzzStatuses[resp.StatusCode] && !upstreams {
		fail("status %d is not one the API documents", resp.StatusCode)
	}
	if resp.StatusCode == 431 {
		// fasthttp's own answer to a header block over its limit, before any handler.
		return
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" || len(id) > 128 || !printable([]byte(id)) {
		fail("x-request-id %q", id)
	}
	if clientID != "" && len(clientID) <= 128 && printable([]byte(clientID)) && id != clientID {
		fail("x-request-id %q, the client sent %q", id, clientID)
	}
	ct := resp.Header.Get("Content-Type")
	switch {
	case resp.StatusCode >= 400:
		var e struct {
			Error *struct {
				Message *string `json:"message"`
				Type    *string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(got, &e); err != nil || e.Error == nil || e.Error.Message == nil || *e.Error.Message == "" {
			fail("error answer not in OpenAI's shape (%v)", err)
		}
		if !strings.HasPrefix(ct, "application/json") {
			fail("error answer with content type %q", ct)
		}
	case strings.HasPrefix(ct, "text/event-stream"):
		if _, _, bad := sseCheck(got); bad != "" {
			fail("stream event %q", bad)
		}
	case strings.HasPrefix(ct, "text/plain") && bytes.Contains(req, []byte(" /v1/audio/")):
		// The audio API's text, srt and vtt answers.
	default:
		if !json.Valid(got) {
			fail("a %d answer that is not JSON", resp.StatusCode)
		}
	}
}

// sseCheck reads an event stream's data lines: whether it ended with [DONE], whether
// it carried an error event, and the first event that is not a JSON object or that came
// after [DONE] ("" when none).
func sseCheck(body []byte) (done, errEvent bool, bad string) {
	for line := range strings.SplitSeq(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" && !done {
			done = true
			continue
		}
		if done || !json.Valid([]byte(data)) || data[0] != '{' {
			return done, errEvent, data
		}
		errEvent = errEvent || strings.HasPrefix(data, `{"error"`)
	}
	return done, errEvent, ""
}

// drain returns what was written so far and forgets it.
func (s *syncBuffer) drain() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}
