package mockllm

import (
	"strings"
	"testing"
)

// TestRequestIDHeaderIsResponseID: vLLM takes a request's X-Request-Id as its
// request id (OpenAIServing._base_request_id): the answer's id is "chatcmpl-<id>"
// ("cmpl-<id>" for completions), on every chunk of a stream too. The gateway's README
// relies on it: the upstream gets the gateway's request id as X-Request-Id.
func TestRequestIDHeaderIsResponseID(t *testing.T) {
	h := start(t, Options{})
	const id = "tg-0123456789abcdef"
	_, b := h.must("POST", "/v1/chat/completions", chatBody("hi", `"max_tokens":2`), "X-Request-Id", id)
	if got := decode[chatResp](t, b).ID; got != "chatcmpl-"+id {
		t.Errorf("chat id %q, want %q", got, "chatcmpl-"+id)
	}
	_, b = h.must("POST", "/v1/completions", `{"model":"mock-1","prompt":"hi","max_tokens":2}`, "X-Request-Id", id)
	if got := decode[chatResp](t, b).ID; got != "cmpl-"+id {
		t.Errorf("completions id %q, want %q", got, "cmpl-"+id)
	}
	_, b = h.must("POST", "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"stream":true`), "X-Request-Id", id)
	for _, ev := range parseSSE(t, b) {
		if ev.data == "[DONE]" {
			continue
		}
		if got := decode[chatResp](t, []byte(ev.data)).ID; got != "chatcmpl-"+id {
			t.Errorf("stream chunk id %q, want %q", got, "chatcmpl-"+id)
			break
		}
	}
}

// TestRequestIDSources: the id's sources in vLLM's order (the X-Request-Id header,
// else the body's request_id, else a random one) on every OpenAI route; an id mockllm
// cannot carry (too long, or bytes that are not printable ASCII) gives way to its own.
func TestRequestIDSources(t *testing.T) {
	h := start(t, Options{})
	long := strings.Repeat("x", maxRequestIDLen+1)
	cases := []struct {
		name, path, body string
		hdr              []string
		want             string // the id; "" for one of mockllm's own
	}{
		{"embeddings take the header", "/v1/embeddings", `{"input":"hi"}`, []string{"X-Request-Id", "r-1"}, "embd-r-1"},
		{"completions stream takes the header", "/v1/completions", `{"prompt":"hi","max_tokens":2,"stream":true}`, []string{"X-Request-Id", "r-2"}, "cmpl-r-2"},
		{"the body's request_id without the header", "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"request_id":"body-1"`), nil, "chatcmpl-body-1"},
		{"the body's request_id on completions", "/v1/completions", `{"prompt":"hi","max_tokens":2,"request_id":"body-2"}`, nil, "cmpl-body-2"},
		{"the body's request_id on embeddings", "/v1/embeddings", `{"input":"hi","request_id":"body-3"}`, nil, "embd-body-3"},
		{"the header wins over the body", "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"request_id":"body-1"`), []string{"X-Request-Id", "hdr-1"}, "chatcmpl-hdr-1"},
		{"quotes and backslashes are escaped", "/v1/chat/completions", chatBody("hi", `"max_tokens":2`), []string{"X-Request-Id", `a"b\c d`}, `chatcmpl-a"b\c d`},
		{"escapes in the body's id come back as sent", "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"request_id":"a\"b\u00e9"`), nil, `chatcmpl-a"bé`},
		{"an id too long for the header is not taken", "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"request_id":"body-1"`), []string{"X-Request-Id", long}, ""},
		{"an id too long for the body is not taken", "/v1/chat/completions", chatBody("hi", `"max_tokens":2,"request_id":"`+long+`"`), nil, ""},
		{"no id after one had an id", "/v1/chat/completions", chatBody("hi", `"max_tokens":2`), nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", tc.path, tc.body, tc.hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			ids := []string{}
			if strings.Contains(tc.body, `"stream":true`) {
				for _, ev := range parseSSE(t, b) {
					if ev.data != "[DONE]" {
						ids = append(ids, decode[chatResp](t, []byte(ev.data)).ID)
					}
				}
			} else {
				ids = append(ids, decode[chatResp](t, b).ID)
			}
			for _, id := range ids {
				prefix, own, _ := strings.Cut(id, "-")
				switch {
				case tc.want == "" && (len(own) != 32 || strings.Trim(own, "0123456789abcdef") != "" || prefix != "chatcmpl"):
					t.Errorf("id %q, want chatcmpl- and 32 hex digits of mockllm's own", id)
				case tc.want != "" && id != tc.want:
					t.Errorf("id %q, want %q", id, tc.want)
				}
			}
		})
	}
}

// TestRequestIDMustBeString: request_id is a str in vLLM's request models.
func TestRequestIDMustBeString(t *testing.T) {
	h := start(t, Options{})
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"} {
		t.Run(path, func(t *testing.T) {
			body := chatBody("hi", `"request_id":7`)
			if path != "/v1/chat/completions" {
				body = `{"prompt":"hi","input":"hi","request_id":null}`
			}
			resp, b := h.must("POST", path, body)
			const want = `{"error":{"message":"request_id: Input should be a valid string","type":"Bad Request","param":null,"code":400}}`
			if resp.StatusCode != 400 || string(b) != want {
				t.Errorf("%d %s\nwant 400 %s", resp.StatusCode, b, want)
			}
		})
	}
}
