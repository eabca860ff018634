package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// Upstreams charge media by pixels or duration, not bytes: the scan leaves the strings
// of images and audio out of the prompt's text and estimates them on their own.
func TestPromptMedia(t *testing.T) {
	b64 := strings.Repeat("QUJD", 1024) // 4 KiB of base64
	dataURL := `"data:image/png;base64,` + b64 + `"`
	for _, c := range []struct {
		name   string
		prompt string
		media  string // the strings charged as media, concatenated
		tokens int64
	}{
		{"image inline", `[{"role":"user","content":[{"type":"image_url","image_url":{"url":` + dataURL + `,"detail":"high"}}]}]`, dataURL, imageTokens},
		{"image by URL", `[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/cat.png"}}]}]`, `"https://x/cat.png"`, imageTokens},
		{"image_url a plain string (vLLM)", `[{"content":[{"image_url":"https://x/cat.png"}]}]`, `"https://x/cat.png"`, imageTokens},
		{"escaped slash in the data URL", `[{"content":[{"image_url":{"url":"data:image\/png;base64,` + b64 + `"}}]}]`, `"data:image\/png;base64,` + b64 + `"`, imageTokens},
		{"spaces around the colon", `[{"content":[{"image_url" : { "url" :` + dataURL + ` } }]}]`, dataURL, imageTokens},
		{"two images", `[{"content":[{"image_url":{"url":"a"}},{"image_url":{"url":"b"}}]}]`, `"a""b"`, 2 * imageTokens},
		{"input_audio", `[{"content":[{"type":"input_audio","input_audio":{"data":"` + b64 + `","format":"wav"}}]}]`, `"` + b64 + `"`, 5},
		{"audio_url and video_url (vLLM)", `[{"content":[{"audio_url":{"url":"` + b64 + `"}},{"video_url":"` + b64 + `"}]}]`, `"` + b64 + `""` + b64 + `"`, 10},
		{"type names are not keys", `[{"content":[{"type":"image_url"},{"type":"input_audio"}]}]`, ``, 0},
		{"a key inside text", `[{"content":"say \"image_url\": \"x\""}]`, ``, 0},
		{"after an escaped backslash", `[{"content":"a\\","image_url":"x"}]`, `"x"`, imageTokens},
		{"key written with escapes counts as text", `[{"content":[{"image\u005furl":{"url":` + dataURL + `}}]}]`, ``, 0},
		{"a PDF counts as text", `[{"content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,` + b64 + `"}}]}]`, ``, 0},
		{"input_audio as a string is not audio", `[{"content":[{"input_audio":"` + b64 + `"}]}]`, ``, 0},
		{"media inside media is the outer one's", `[{"image_url":{"url":"a","x":{"image_url":"b"}}}]`, `"a"`, imageTokens},
		{"other members of the part", `[{"image_url":{"detail":"low","url":"a","n":[1,{"url":"c"}]}}]`, `"a"`, imageTokens},
		{"text with underscores", `[{"role":"tool","tool_call_id":"call_1","content":"snake_case image_ audio_url"}]`, ``, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !json.Valid([]byte(c.prompt)) {
				t.Fatalf("invalid JSON in the case: %s", c.prompt)
			}
			n, tokens := promptMedia([]byte(c.prompt))
			if n != len(c.media) || tokens != c.tokens {
				t.Errorf("%d bytes of media, %d tokens; want %d bytes (%.60s), %d tokens", n, tokens, len(c.media), c.media, c.tokens)
			}
			if wn, wt := refPromptMedia([]byte(c.prompt)); wn != n || wt != tokens {
				t.Errorf("the reference reads %d bytes, %d tokens", wn, wt)
			}
		})
	}
}

// The whole body's count: every prompt member, the folded "Messages" an upstream reads
// as messages too, and nothing of the rest.
func TestScanBodyPromptSize(t *testing.T) {
	img := `[{"content":[{"image_url":{"url":"data:image/png;base64,QUJD"}}]}]`
	for _, c := range []struct {
		name, body string
		text       int
		tokens     int64
	}{
		{"messages", `{"model":"m","messages":` + img + `}`, len(img) - len(`"data:image/png;base64,QUJD"`), imageTokens},
		{"Messages", `{"model":"m","Messages":` + img + `}`, len(img) - len(`"data:image/png;base64,QUJD"`), imageTokens},
		{"media outside the prompt", `{"model":"m","image_url":"x","messages":[]}`, 2, 0},
		{"text only", `{"model":"m","prompt":"a_b"}`, 5, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			if e := scanBody([]byte(c.body), &f); e != nil {
				t.Fatal(e.message)
			}
			if f.promptBytes != c.text || f.mediaTokens != c.tokens {
				t.Errorf("%d bytes of text, %d media tokens; want %d, %d", f.promptBytes, f.mediaTokens, c.text, c.tokens)
			}
		})
	}
}

// refMedia is the reference's table of media members, written apart from mediaKeys.
var refMedia = map[string]struct {
	member      string
	bare, image bool
}{
	`"image_url"`:   {`"url"`, true, true},
	`"audio_url"`:   {`"url"`, true, false},
	`"video_url"`:   {`"url"`, true, false},
	`"input_audio"`: {`"data"`, false, false},
}

// refPromptMedia reads a prompt value's media as the rule says, with encoding/json's
// tokenizer: a string that is the value of an image_url, audio_url or video_url
// member, or of the url member of an object value of one, or of the data member of an
// input_audio object, keys compared as written; nothing inside a media member's value
// is looked at further. An image is imageTokens, other media a token per KiB of its
// string, quotes included.
func refPromptMedia(raw []byte) (n int, tokens int64) {
	type frame struct {
		obj, wantKey bool
		key          string
		inert        bool   // inside a media member's value
		member       string // for a media object: the member holding its media
		image        bool
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var stack []frame
	count := func(s []byte, image bool) {
		n += len(s)
		if image {
			tokens += imageTokens
		} else {
			tokens += int64(len(s)+1023) / 1024
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return n, tokens
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch tok := tok.(type) {
		case json.Delim:
			if tok == '}' || tok == ']' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].wantKey = stack[len(stack)-1].obj
				}
				continue
			}
			f := frame{obj: tok == '{', wantKey: tok == '{'}
			if top != nil {
				f.inert = top.inert
				if m, ok := refMedia[top.key]; ok && top.obj && !top.inert {
					f.inert = true
					if f.obj {
						f.member, f.image = m.member, m.image
					}
				}
			}
			stack = append(stack, f)
		case string:
			s := raw[start:dec.InputOffset()]
			s = s[bytes.IndexByte(s, '"'):]
			if top == nil || !top.obj {
				continue
			}
			if top.wantKey {
				top.key, top.wantKey = string(s), false
				continue
			}
			if m, ok := refMedia[top.key]; ok && !top.inert && m.bare {
				count(s, m.image)
			} else if top.member != "" && top.key == top.member {
				count(s, top.image)
			}
			top.wantKey = true
		default:
			if top != nil && top.obj {
				top.wantKey = true
			}
		}
	}
}

// refPromptSize is the reference's reading of a body's prompt: the text bytes and media
// tokens of every member a JSON parser, or one folding case as encoding/json does,
// reads as messages, input or prompt.
func refPromptSize(body []byte) (text int, tokens int64) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return 0, 0
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return text, tokens
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return text, tokens
		}
		key, _ := k.(string)
		for _, p := range []string{"messages", "input", "prompt"} {
			if strings.EqualFold(key, p) {
				n, t := refPromptMedia(v)
				text += len(v) - n
				tokens += t
				break
			}
		}
	}
	return text, tokens
}

// FuzzScanPromptSize: for every body the gateway accepts, the prompt's text bytes and
// media tokens are the reference's.
func FuzzScanPromptSize(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,QUJD","detail":"auto"}}]}]}`,
		`{"model":"m","messages":[{"content":[{"image_url":{"url":"data:image\/jpeg;base64,QUJD"}},{"image_url":"https://x/y.png"}]}]}`,
		`{"model":"m","messages":[{"content":[{"type":"input_audio","input_audio":{"data":"QUJD","format":"wav"}},{"audio_url":{"url":"data:audio/wav;base64,QUJD"}}]}]}`,
		`{"model":"m","messages":[{"content":"a \"image_url\":\"b\" \\","image_url" :{"url":"c","image_url":"d"}}]}`,
		`{"model":"m","Messages":[{"image\u005furl":"x","video_url":["y"]}],"input":{"input_audio":{"data":"z","data":"w"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fl fields
		if scanBody(body, &fl) != nil {
			return
		}
		text, tokens := refPromptSize(body)
		if fl.promptBytes != text || fl.mediaTokens != tokens {
			t.Fatalf("prompt of %d bytes of text and %d media tokens, the reference reads %d and %d in %q",
				fl.promptBytes, fl.mediaTokens, text, tokens, body)
		}
	})
}

// benchImageBody is a vision request with a photo inline: 1 MiB of JPEG as a base64
// data URL, 1.4 MB of the body.
var benchImageBody = func() []byte {
	photo := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range photo {
		photo[i] = byte(rng.Uint32())
	}
	return []byte(`{"model":"chat","max_tokens":300,"messages":[{"role":"user","content":[{"type":"text","text":"What is in this photo?"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,` +
		base64.StdEncoding.EncodeToString(photo) + `","detail":"auto"}}]}]}`)
}()

func BenchmarkScanBodyImage(b *testing.B) {
	var f fields
	b.ReportAllocs()
	b.SetBytes(int64(len(benchImageBody)))
	for b.Loop() {
		if scanBody(benchImageBody, &f) != nil {
			b.Fatal("scan failed")
		}
	}
}
