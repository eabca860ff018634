package providers

// An upstream's error answer or error event reaches the client with every secret it
// quotes masked: as it is, JSON-escaped, short as a whole token, or shortened around
// asterisks as OpenAI quotes a wrong key.

import (
	"bytes"
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// secretsOf is what a backend with key key and the header values of headers (name,
// value pairs) masks.
func secretsOf(key string, headers ...string) [][]byte {
	s := appendCredential(nil, key)
	for i := 0; i+1 < len(headers); i += 2 {
		s = appendHeaderSecrets(s, headers[i], headers[i+1])
	}
	return s
}

func TestMaskAll(t *testing.T) {
	const key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzr"
	cases := []struct {
		name    string
		secrets [][]byte
		in      string
		want    string
	}{
		{"as it is", secretsOf(key), `{"error":{"message":"Invalid API key: ` + key + `"}}`,
			`{"error":{"message":"Invalid API key: ***"}}`},
		{"slash escaped (PHP)", secretsOf(key), `{"error":{"message":"Invalid API key: wJalrXUtnFEMI\/K7MDENG+bPxRfiCYzzr"}}`,
			`{"error":{"message":"Invalid API key: ***"}}`},
		{"plus as \\u002B (.NET)", secretsOf(key), `"key wJalrXUtnFEMI/K7MDENG\u002BbPxRfiCYzzr"`, `"key ***"`},
		{"lower-case hex", secretsOf(key), `"key wJalrXUtnFEMI\u002fK7MDENG\u002bbPxRfiCYzzr."`, `"key ***."`},
		{"every character escaped", secretsOf("sk-0123456789"),
			`"\u0073\u006B\u002D\u0030\u0031\u0032\u0033\u0034\u0035\u0036\u0037\u0038\u0039"`, `"***"`},
		{"quote and backslash escaped", secretsOf(`pa"ss\word-99`), `"password pa\"ss\\word-99 refused"`,
			`"password *** refused"`},
		{"surrogate pair", secretsOf("key-😀-0123456789"), `"key-\ud83d\ude00-0123456789 refused"`, `"*** refused"`},
		{"lone surrogate as U+FFFD", secretsOf("tok\uFFFDen-0123456789"), `"tok\ud83den-0123456789"`, `"***"`},
		{"raw match within an escape takes the escape whole", secretsOf("u002Bxyz-0123456789"),
			`"\u002Bxyz-0123456789"`, `"***"`},
		{"escape before a short secret", secretsOf("EMPTY"), `"bad key:\nEMPTY"`, `"bad key:\n***"`},
		{"short secret as a word", secretsOf("Vk7#q2Z"), `api key Vk7#q2Z is not valid`, `api key *** is not valid`},
		{"short secret at the edges", secretsOf("EMPTY"), `EMPTY, not EMPTY`, `***, not ***`},
		{"short secret escaped", secretsOf("a/b-1"), `"key a\/b-1."`, `"key ***."`},
		{"short secret within a word", secretsOf("EMPTY"), `EMPTYING the queue, XEMPTY, EMPTY_1, EMPTY-2`,
			`EMPTYING the queue, XEMPTY, EMPTY_1, EMPTY-2`},
		// Read raw, the key stands alone: it goes, though decoded it reads token-12.
		{"short secret before an escape", secretsOf("token-1"), `"token-1\u0032"`, `"***\u0032"`},
		{"short secret next to a masked one", secretsOf("pw1", "X-Token", "sk-0123456789"),
			`sk-0123456789pw1`, `******`},
		{"short password", secretsOf("", "Authorization", "Basic b3BlcmF0b3I6cHcx"),
			`user operator:pw1 refused: no password pw1 for operator`,
			`user *** refused: no password *** for operator`},
		{"shortened by OpenAI", secretsOf("sk-proj-Zr8Qv2LmT5nXc7WbK4yHd9FsJ1pGa3Ue"),
			`Incorrect API key provided: sk-proj-Zr**************************a3Ue. You can find your API key at https://platform.openai.com/account/api-keys.`,
			`Incorrect API key provided: ***. You can find your API key at https://platform.openai.com/account/api-keys.`},
		{"shortened, older form", secretsOf("sk-abc0123456789wxyz"),
			`Incorrect API key provided: sk-abc***************wxyz.`, `Incorrect API key provided: ***.`},
		{"shortened without its end", secretsOf("sk-abc0123456789wxyz"), `key sk-abc0*** refused`, `key *** refused`},
		{"shortened and escaped", secretsOf("sk-ab/c0123456789wxyz"), `"key sk-ab\/c***wxyz refused"`,
			`"key *** refused"`},
		{"asterisks after no prefix", secretsOf("sk-abc0123456789wxyz"), `Rate limit *** exceeded; sk*** or ab***yz`,
			`Rate limit *** exceeded; sk*** or ab***yz`},
		{"two asterisks", secretsOf("sk-abc0123456789wxyz"), `sk-abc**wxyz`, `sk-abc**wxyz`},
		{"longest first", secretsOf("sk-0123456789", "X-Api-Key", "sk-0123456789-extra-part"),
			`key sk-0123456789-extra-part`, `key ***`},
		{"ordinary text", secretsOf(key, "Authorization", "Bearer EMPTY"),
			`{"error":{"message":"The model \"m\" does not exist.\nEMPTYING is not a word","code":404}}`,
			`{"error":{"message":"The model \"m\" does not exist.\nEMPTYING is not a word","code":404}}`},
		{"no secrets", nil, `key ` + key, `key ` + key},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			got := maskAll(in, c.secrets)
			if string(got) != c.want {
				t.Errorf("masked to\n%s\nwant\n%s", got, c.want)
			}
			if quotes := quotesAny(in, c.secrets); quotes != (c.in != c.want) {
				t.Errorf("quotesAny %v", quotes)
			}
			if c.in == c.want && len(in) > 0 && &got[0] != &in[0] {
				t.Error("a message that quotes no secret is copied, want it returned as it is")
			}
			if string(in) != c.in {
				t.Errorf("the message was changed in place: %s", in)
			}
		})
	}
}

func TestSecretsKept(t *testing.T) {
	cases := []struct {
		name   string
		header string // "" for the backend's key
		value  string
		want   []string
	}{
		{"short key", "", "EMPTY", []string{"EMPTY"}},
		{"empty key", "", "", nil},
		{"short value of a key header", "X-Api-Key", "k-123", []string{"k-123"}},
		{"short token header", "X-Auth-Token", "t0k", []string{"t0k"}},
		// A short value of another header is a flag or a version, not a credential.
		{"short value of another header", "X-Debug", "1", nil},
		{"long value of another header", "OpenAI-Beta", "assistants=v2", []string{"assistants=v2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s [][]byte
			if c.header == "" {
				s = appendCredential(nil, c.value)
			} else {
				s = appendHeaderSecrets(nil, c.header, c.value)
			}
			var got []string
			for _, v := range s {
				got = append(got, string(v))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("secrets %q, want %q", got, c.want)
			}
		})
	}
}

func BenchmarkMaskAll(b *testing.B) {
	secrets := secretsOf("sk-proj-Zr8Qv2LmT5nXc7WbK4yHd9FsJ1pGa3Ue", "Authorization", "Basic b3BlcmF0b3I6cHcx",
		"X-Gateway-Token", "gw-token-5c2e81f4")
	msg := strings.Repeat(`The server had an error while processing your request; retry it or contact us. `, 8)
	for _, c := range []struct{ name, body string }{
		{"no backslash", `{"error":{"message":"` + msg + `","type":"server_error","code":null}}`},
		{"backslash", `{"error":{"message":"` + msg + `\nTraceback:\n  File \"\/app\/main.py\"","type":"server_error","code":null}}`},
		{"quoted", `{"error":{"message":"Incorrect API key provided: sk-proj-Zr***a3Ue. ` + msg + `","code":"invalid_api_key"}}`},
	} {
		body := []byte(c.body)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				maskAll(body, secrets)
			}
		})
	}
}

// FuzzMaskAll checks that no secret survives masking, as the client reads the answer
// raw or JSON-decoded, and that an answer quoting none is passed on unchanged.
func FuzzMaskAll(f *testing.F) {
	f.Add([]byte(`{"error":{"message":"key wJalrXUtnFEMI\/K7MDENG refused"}}`), "wJalrXUtnFEMI/K7MDENG", "pw1")
	f.Add([]byte(`"Zq7\u002BRt2WmX9\u002BkLp4 and EMPTY"`), "Zq7+Rt2WmX9+kLp4", "EMPTY")
	f.Add([]byte(`"tok\ud83d\ude00en-0123 \ud83d"`), "tok😀en-0123", "a\u00e9b")
	f.Add([]byte(`Incorrect API key provided: sk-abc***************wxyz`), "sk-abc0123456789wxyz", "wxyz")
	f.Add([]byte(`"gateway:pw1 pw1x \npw1\t"`), "gateway:pw1", "pw1")
	f.Add([]byte(`sk-0123456789pw1`), "sk-0123456789", "pw1")
	f.Add([]byte(`"a\\\"b\/c\u00e9\b\f\n\r\t"`), `a\"b/cé`, "\b\f\n\r\t")
	f.Fuzz(func(t *testing.T, body []byte, key, pass string) {
		for _, s := range []string{key, pass} {
			// Secrets are config text (UTF-8) without surrounding space (the config
			// refuses it); U+FFFD stands for bytes a decoder could not read, in no
			// credential's alphabet. One holding '*' may meet the mask itself: "**"
			// stands in every ***.
			if !utf8.ValidString(s) || s != strings.TrimSpace(s) || strings.ContainsAny(s, "*\uFFFD") {
				return
			}
		}
		secrets := appendCredential(appendCredential(nil, key), pass)
		in := bytes.Clone(body)
		out := maskAll(body, secrets)
		if !bytes.Equal(body, in) {
			t.Fatalf("the body was changed in place: %q", body)
		}
		var decIn, decOut string
		isString := json.Unmarshal(in, &decIn) == nil && len(bytes.TrimSpace(in)) > 0 && bytes.TrimSpace(in)[0] == '"'
		for _, s := range secrets {
			if quoted(out, s) {
				t.Fatalf("%q masked to %q, which quotes %q", in, out, s)
			}
		}
		if isString {
			if err := json.Unmarshal(out, &decOut); err != nil {
				if strings.Contains(key+pass, `"`) {
					// A secret holding '"' may take in the string's own quotes.
					return
				}
				t.Fatalf("%q masked to %q, no longer a JSON string: %v", in, out, err)
			}
			for _, s := range secrets {
				if quoted([]byte(decOut), s) {
					t.Fatalf("%q masked to %q, which reads %q, quoting %q", in, out, decOut, s)
				}
			}
		}
		plain := !bytes.Contains(in, strMask)
		if bytes.IndexByte(in, '\\') >= 0 {
			plain = plain && isString && !strings.Contains(decIn, "***")
		}
		for _, s := range secrets {
			plain = plain && !bytes.Contains(in, s) && !(isString && strings.Contains(decIn, string(s)))
		}
		if plain && !bytes.Equal(out, in) {
			t.Fatalf("%q quotes no secret, masked to %q", in, out)
		}
	})
}

// quoted reports whether text holds s, as maskAll matches it: a secret under
// minSecretLen only as a whole token.
func quoted(text, s []byte) bool {
	for off := 0; ; {
		i := bytes.Index(text[off:], s)
		if i < 0 {
			return false
		}
		i += off
		if len(s) >= minSecretLen || isWholeToken(text, i, i+len(s)) {
			return true
		}
		off = i + 1
	}
}

// An upstream's error answer may be large and full of JSON escapes: vLLM's 400 for a
// request it cannot validate echoes the request's input in pydantic's message, a
// prompt's quotes and newlines written \" and \n. Checking it for the backend's
// secrets decodes it once (the text, at most its size); offsets back into the
// message are built only for a secret found, so a 4 MiB error quoting none costs a
// small multiple of its size, not gigabytes for a 64 MiB one.
func TestLargeEscapedErrorCheckedInLinearSpace(t *testing.T) {
	const key = "sk-proj-Zr8Qv2LmT5nXc7WbK4yHd9FsJ1pGa3Ue"
	secrets := secretsOf(key, "X-Api-Key", "EMPTY")
	turn := `{'role': 'user', 'content': \"Summarise the report below.\\nLine one of it.\\n\"}, `
	var b strings.Builder
	b.WriteString(`{"error":{"message":"[{'type': 'extra_forbidden', 'loc': ('body', 'foo'), 'msg': 'Extra inputs are not permitted', 'input': [`)
	for b.Len() < 4<<20 {
		b.WriteString(turn)
	}
	b.WriteString(`]}]","type":"BadRequestError","param":null,"code":400}}`)
	body := []byte(b.String())

	up := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(up)
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	up.SetStatusCode(400)
	up.Header.SetContentType("application/json")
	up.SetBody(body)

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err := passError(up, out, 400, 64<<20, secrets, nil)
	runtime.ReadMemStats(&m1)
	if err == nil {
		t.Fatal("passError: no UpstreamError")
	}
	if !bytes.Equal(out.Body(), body) {
		t.Fatalf("the body quotes no secret and should pass on as it came")
	}
	alloc := m1.TotalAlloc - m0.TotalAlloc
	if ratio := float64(alloc) / float64(len(body)); ratio > 4 {
		t.Errorf("passing on a %d-byte error answer that quotes no secret allocated %d bytes (%.0f times its size), want at most 4 times", len(body), alloc, ratio)
	}
}

// A flat error body ({"error":"text"}, as TGI and Ollama answer) is rewritten in
// OpenAI's shape, and a key its text quotes is masked there as in any other answer,
// written as the upstream wrote it or with JSON's escapes.
func TestFlatErrorMasked(t *testing.T) {
	const key = "sk-flat-0123456789abcdef"
	secrets := secretsOf(key)
	for _, body := range []string{
		`{"error":"invalid api key sk-flat-0123456789abcdef","error_type":"sk-flat-0123456789abcdef"}`,
		`{"error":"invalid api key sk\u002dflat-0123456789abcdef"}`,
	} {
		up := fasthttp.AcquireResponse()
		out := fasthttp.AcquireResponse()
		up.SetStatusCode(401)
		up.SetBody([]byte(body))
		if err := passError(up, out, 401, 64<<20, secrets, nil); err == nil {
			t.Fatal("passError: no UpstreamError")
		}
		got := string(out.Body())
		if strings.Contains(got, "0123456789abcdef") || !strings.Contains(got, `{"error":{"message":"invalid api key ***"`) {
			t.Errorf("flat error %s answered %s, want OpenAI's shape with the key masked", body, got)
		}
		if ct := string(out.Header.ContentType()); ct != "application/json" {
			t.Errorf("flat error answered as %q, want application/json", ct)
		}
		fasthttp.ReleaseResponse(up)
		fasthttp.ReleaseResponse(out)
	}
}
