package providers

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// passFlat passes body, an upstream's error answer with status, through passError and
// returns the client's answer.
func passFlat(t *testing.T, status int, body string, secrets [][]byte) (ct string, got []byte) {
	t.Helper()
	up := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(up)
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	up.SetStatusCode(status)
	up.Header.SetContentType("application/json")
	up.SetBody([]byte(body))
	if err := passError(up, out, status, 64<<20, secrets, nil); err == nil {
		t.Fatal("passError: no UpstreamError")
	}
	if out.StatusCode() != status {
		t.Errorf("status %d, want the upstream's %d", out.StatusCode(), status)
	}
	return string(out.Header.ContentType()), append([]byte(nil), out.Body()...)
}

// The flat error shapes of OpenAI-compatible servers reach the client in OpenAI's
// {"error":{message,type,param,code}}, the one member the official SDKs read: vLLM's
// older, SGLang's and FastChat's {"object":"error",…} keeps its message, type and
// param, and its numeric code (the HTTP status again) goes as null, OpenAI's code
// being a string or null.
func TestFlatErrorAnsweredInOpenAIShape(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"vllm with param", `{"object":"error","message":"temperature must be non-negative, got -1.0.","type":"BadRequestError","param":"temperature","code":400}`,
			400, `{"error":{"message":"temperature must be non-negative, got -1.0.","type":"BadRequestError","param":"temperature","code":null}}`},
		{"vllm escapes kept", `{"object":"error","message":"bad \"x\"\n","type":"BadRequestError","param":null,"code":400}`,
			400, `{"error":{"message":"bad \"x\"\n","type":"BadRequestError","param":null,"code":null}}`},
		{"sglang members in any order", ` { "code" : 404, "type":"NotFoundError", "message" : "The model 'x' does not exist.", "object" : "error" } `,
			404, `{"error":{"message":"The model 'x' does not exist.","type":"NotFoundError","param":null,"code":null}}`},
		{"no type: the status's", `{"object":"error","message":"engine dead"}`,
			503, `{"error":{"message":"engine dead","type":"server_error","param":null,"code":null}}`},
		{"string code kept", `{"object":"error","message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}`,
			400, `{"error":{"message":"too long","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}`},
		{"tgi", `{"error":"Input validation error","error_type":"validation"}`,
			422, `{"error":{"message":"Input validation error","type":"invalid_request_error","param":null,"code":"validation"}}`},
		{"ollama", `{"error":"model \"llama3\" not found"}`,
			404, `{"error":{"message":"model \"llama3\" not found","type":"invalid_request_error","param":null,"code":null}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, got := passFlat(t, tc.status, tc.body, nil)
			if string(got) != tc.want {
				t.Errorf("answered %s\nwant       %s", got, tc.want)
			}
			if !json.Valid(got) || ct != "application/json" {
				t.Errorf("answer %s as %q: want valid JSON as application/json", got, ct)
			}
		})
	}
}

// A body that is not one of the flat shapes goes to the client as the upstream sent it.
func TestFlatErrorOtherBodiesPassedOn(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"openai shape", `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`},
		{"openai shape beside object", `{"object":"error","message":"m","error":{"message":"bad"}}`},
		{"object not error", `{"object":"list","message":"m"}`},
		{"message not a string", `{"object":"error","message":{"text":"m"}}`},
		{"no message", `{"object":"error","type":"BadRequestError","code":400}`},
		{"trailing bytes", `{"object":"error","message":"m"} x`},
		{"not json", `Internal Server Error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := passFlat(t, 400, tc.body, nil); string(got) != tc.body {
				t.Errorf("answered %s, want the upstream's body %s", got, tc.body)
			}
		})
	}
}

// A key that vLLM's flat error quotes, in its message or param, is masked as in any
// other answer, written as the upstream wrote it or with JSON's escapes.
func TestFlatVLLMErrorMasked(t *testing.T) {
	const key = "sk-flat-0123456789abcdef"
	for _, body := range []string{
		`{"object":"error","message":"invalid api key sk-flat-0123456789abcdef","type":"BadRequestError","param":"sk-flat-0123456789abcdef","code":400}`,
		`{"object":"error","message":"invalid api key sk\u002dflat-0123456789abcdef","type":"BadRequestError","param":"sk\u002dflat-0123456789abcdef","code":400}`,
	} {
		_, got := passFlat(t, 401, body, secretsOf(key))
		const want = `{"error":{"message":"invalid api key ***","type":"BadRequestError","param":"***","code":null}}`
		if string(got) != want {
			t.Errorf("flat error %s answered %s, want %s", body, got, want)
		}
	}
}

// vLLM's 400 for a request it cannot validate echoes the request in its message; in
// the older flat shape the rewrite copies the upstream's escaped text once rather
// than decoding and quoting it again, so a 4 MiB answer costs a small multiple of
// its size.
func TestFlatVLLMErrorRewrittenInLinearSpace(t *testing.T) {
	secrets := secretsOf("sk-proj-Zr8Qv2LmT5nXc7WbK4yHd9FsJ1pGa3Ue", "X-Api-Key", "EMPTY")
	turn := `{'role': 'user', 'content': \"Summarise the report below.\\nLine one of it.\\n\"}, `
	var b strings.Builder
	b.WriteString(`{"object":"error","message":"[{'type': 'extra_forbidden', 'input': [`)
	for b.Len() < 4<<20 {
		b.WriteString(turn)
	}
	b.WriteString(`]}]","type":"BadRequestError","param":null,"code":400}`)
	body := []byte(b.String())

	up := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(up)
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	up.SetStatusCode(400)
	up.SetBody(body)

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err := passError(up, out, 400, 64<<20, secrets, nil)
	runtime.ReadMemStats(&m1)
	if err == nil {
		t.Fatal("passError: no UpstreamError")
	}
	var sent, got struct {
		Message string `json:"message"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &sent) != nil || json.Unmarshal(out.Body(), &got) != nil || got.Error.Message != sent.Message {
		t.Fatalf("error.message is not the upstream's message (%d bytes answered)", len(out.Body()))
	}
	alloc := m1.TotalAlloc - m0.TotalAlloc
	if ratio := float64(alloc) / float64(len(body)); ratio > 4 {
		t.Errorf("rewriting a %d-byte flat error allocated %d bytes (%.0f times its size), want at most 4 times", len(body), alloc, ratio)
	}
}

// Whatever the upstream's body, a flat error rewritten for the client is valid JSON in
// OpenAI's shape, its message the upstream's text, masked or not.
func FuzzFlatError(f *testing.F) {
	f.Add([]byte(`{"object":"error","message":"bad \"x\"\n","type":"BadRequestError","param":"temperature","code":400}`), "sk-flat-0123456789abcdef")
	f.Add([]byte(`{"error":"key sk\u002dflat-0123456789abcdef","error_type":"validation"}`), "sk-flat-0123456789abcdef")
	f.Add([]byte(`{"object":"error","message":"\ud83d tok","code":"c","type":null}`), "tok")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		fe, ok := flatError(body)
		if !ok {
			return
		}
		out := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(out)
		fe.write(out, 400, nil)
		var got struct {
			Error struct {
				Message *string `json:"message"`
				Type    *string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(out.Body(), &got); err != nil || got.Error.Message == nil || got.Error.Type == nil {
			t.Fatalf("%q answered %q: not OpenAI's shape (%v)", body, out.Body(), err)
		}
		var msg string
		if json.Unmarshal(fe.msg, &msg) != nil || msg != *got.Error.Message {
			t.Fatalf("%q answered message %q, want the upstream's %q", body, *got.Error.Message, msg)
		}
		if key == "" || key != strings.TrimSpace(key) || strings.ContainsAny(key, "*\uFFFD") {
			return
		}
		fe.write(out, 400, appendCredential(nil, key))
		if !json.Valid(out.Body()) {
			t.Fatalf("%q masked for %q answered %q: not JSON", body, key, out.Body())
		}
	})
}
