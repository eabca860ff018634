package gateway

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// A vision request with one photo inline as a base64 data URL (1 MiB of JPEG, 1.4 MB
// of base64: a phone photo downscaled) costs about a thousand tokens (OpenAI: 85 + 170
// per 512-px tile, at most ~1.1k; Anthropic: about w*h/750, at most ~1.6k), whatever
// its byte size. Read as text at 4 bytes a token it was ~350k tokens, over the
// 100k-a-minute limit of README's example, so it was charged the limit's whole burst
// and refused with 429 whenever any earlier request had used any of the bucket. The
// same request with the image given by URL was admitted.
func TestInlineImageFitsTokenLimit(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		prompt := 30000
		if bytes.Contains(b, []byte("image_url")) {
			prompt = 1200
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":`+strconv.Itoa(prompt)+`,"completion_tokens":200,"total_tokens":`+strconv.Itoa(prompt+200)+`}}`)
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 20MiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "`+up.URL+`/v1", model: gpt-4o, timeout: 20s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits:
      - {per: endpoint, tokens: 100000, window: minute}
logging: {level: error, access_log: false}
`)
	post := func(body string) (int, string, string) {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
	}
	// A long document summarised: 30k tokens of the 100k a minute.
	doc := strings.Repeat("lorem ipsum dolor sit amet ", 4400)
	if st, b, _ := post(`{"model":"chat","max_tokens":300,"messages":[{"role":"user","content":"Summarise: ` + doc + `"}]}`); st != 200 {
		t.Fatalf("text request: %d %s", st, b)
	}
	photo := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range photo {
		photo[i] = byte(rng.Uint32())
	}
	image := func(url string) string {
		return `{"model":"chat","max_tokens":300,"messages":[{"role":"user","content":[{"type":"text","text":"What is in this photo?"},{"type":"image_url","image_url":{"url":"` + url + `"}}]}]}`
	}
	if st, b, _ := post(image("https://example.com/photo.jpg")); st != 200 {
		t.Fatalf("image by URL: %d %s", st, b)
	}
	st, b, ra := post(image("data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(photo)))
	if st != 200 {
		t.Fatalf("the same image inline (%d KiB of base64), with %d of the 100000 tokens a minute used: answered %d (retry-after %q) %s; want 200: an image costs about a thousand tokens whatever its size",
			len(photo)*4/3>>10, 30200+1400, st, ra, b)
	}
}

// An image costs an upstream the same tokens inline or by URL, and so it is estimated:
// imageTokens each, its string's bytes left out of the text. Audio inline is charged a
// token per KiB of its base64.
func TestMediaEstimateCharged(t *testing.T) {
	up, _ := recordingChatUpstream(t)
	eps := ""
	for _, name := range []string{"byurl", "inline", "escaped", "audio"} {
		eps += `
  - name: ` + name + `
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 100000, window: minute}]
`
	}
	cfg := strings.Replace(mockConfig(up, "", eps), "max_body_bytes: 64KiB", "max_body_bytes: 1MiB", 1)
	g := startGateway(t, cfg)
	b64 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 300<<10)) // 400 KiB of base64
	part := func(p string) string {
		return `{"role":"user","content":[{"type":"text","text":"What is this?"},` + p + `]}`
	}
	remaining := func(model, message string) int {
		t.Helper()
		resp, body := postWith(t, g.url+"/v1/chat/completions",
			`{"model":"`+model+`","max_tokens":100,"messages":[`+message+`]}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", model, resp.StatusCode, body)
		}
		rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if err != nil {
			t.Fatalf("%s: x-ratelimit-remaining-tokens %q", model, resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		}
		return rem
	}
	byURL := remaining("byurl", part(`{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}`))
	inline := remaining("inline", part(`{"type":"image_url","image_url":{"url":"data:image/png;base64,`+b64+`"}}`))
	escaped := remaining("escaped", part(`{"type":"image_url","image_url":{"url":"data:image\/png;base64,`+b64+`"}}`))
	audio := remaining("audio", part(`{"type":"input_audio","input_audio":{"data":"`+b64+`","format":"wav"}}`))
	// The text, max_tokens and one image: about 100 + 1600 + 30 tokens; the bucket
	// refills ~1.7 tokens a millisecond meanwhile.
	if byURL > 100000-1700 || byURL < 100000-1800 {
		t.Errorf("image by URL: %d tokens remaining, want 100000 less ~1,730 (100 max_tokens, 1,600 for the image, the text)", byURL)
	}
	for _, c := range []struct {
		name string
		rem  int
	}{{"inline", inline}, {"inline with escaped slashes", escaped}} {
		if d := c.rem - byURL; d < -50 || d > 50 {
			t.Errorf("image %s: %d tokens remaining, by URL %d: want the same estimate, the base64 (%d KiB) charged as one image",
				c.name, c.rem, byURL, len(b64)>>10)
		}
	}
	// 400 KiB of base64 audio: about 400 tokens in place of the image's 1,600.
	if d := audio - byURL; d < 1100 || d > 1300 {
		t.Errorf("audio inline: %d tokens remaining, image by URL %d: want ~1,200 more (400 KiB of base64 at a token per KiB)", audio, byURL)
	}
}
