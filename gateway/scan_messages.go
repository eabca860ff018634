package gateway

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// messagesAPI completes the fields of a Messages API call (fields.system,
// fields.metadata and fields.messages, which scanBody noted for any call) once its
// kind is known: its system prompt is prompt too, its media are the source objects of
// its content blocks (image and document blocks, in messages and tool results;
// anthropicMedia), and its end user is metadata.user_id, the member Anthropic's API
// names for it.
func (f *fields) messagesAPI(body []byte) {
	if f.system[1] > f.system[0] {
		v := body[f.system[0]:f.system[1]]
		n, tokens := anthropicMedia(v)
		f.promptBytes += len(v) - n
		f.mediaTokens += tokens
	}
	if f.messages[1] > f.messages[0] {
		n, tokens := anthropicMedia(body[f.messages[0]:f.messages[1]])
		f.promptBytes -= n
		f.mediaTokens += tokens
	}
	f.user, f.safetyID = [2]int{-1, -1}, [2]int{-1, -1}
	if f.metadata[1] > f.metadata[0] {
		var it jsonscan.Iter
		if it.Reset(body[f.metadata[0]:f.metadata[1]]) != nil {
			return
		}
		var keyBuf [32]byte
		for {
			k, v, ok := it.Next()
			if !ok {
				return
			}
			if bytes.IndexByte(k, '\\') >= 0 {
				k = unescapeKey(keyBuf[:0], k)
			}
			if string(k) != "user_id" {
				continue
			}
			// The last one, as the upstream's parser keeps it.
			f.user = [2]int{-1, -1}
			if jsonscan.IsString(v) {
				off := f.metadata[0] + it.ValueOffset()
				f.user = [2]int{off + 1, off + len(v) - 1}
			}
		}
	}
}

var strSourceKey = []byte(`"source"`)

// anthropicMedia finds the media of a Messages API prompt value v (validated JSON)
// without decoding it, and returns the bytes of their strings and their estimate:
// each "source" object of an image block (base64 data or a URL) is one image at
// imageTokens; a document's (a PDF's base64, a URL, plain text) is left as text, the
// larger estimate. Media in a tool result's content are found so too.
func anthropicMedia(v []byte) (n int, tokens int64) {
	for i := 0; i < len(v); {
		j := bytes.Index(v[i:], strSourceKey)
		if j < 0 {
			break
		}
		j += i
		i = j + len(strSourceKey)
		if escaped(v, j) {
			continue
		}
		c := jsonscan.SkipSpace(v, i)
		if c >= len(v) || v[c] != ':' {
			continue
		}
		o := jsonscan.SkipSpace(v, c+1)
		if o >= len(v) || v[o] != '{' {
			continue
		}
		end, err := jsonscan.Skip(v, o)
		if err != nil {
			break
		}
		obj := v[o:end]
		i = end
		mt, _ := jsonscan.Field(obj, "media_type")
		typ, _ := jsonscan.Field(obj, "type")
		var data []byte
		switch {
		case string(typ) == `"base64"`:
			if !bytes.HasPrefix(mt, strImageType) {
				continue
			}
			data, _ = jsonscan.Field(obj, "data")
		case string(typ) == `"url"`:
			// An image's URL, or a document's: told apart by nothing in the
			// source, so counted as an image (the smaller estimate of a PDF's
			// pages comes back at settlement).
			data, _ = jsonscan.Field(obj, "url")
		default:
			continue
		}
		if !jsonscan.IsString(data) {
			continue
		}
		n += len(data)
		tokens += imageTokens
	}
	return n, tokens
}

var strImageType = []byte(`"image/`)
