package main

import "bytes"

var modelKey = []byte(`"model":"`)

// rewriteModel returns body with its first `"model":"<endpoint>"` replaced by the
// backend's model, appended to dst; ok is false (and dst unchanged) when there is
// nothing to replace.
func rewriteModel(dst, body []byte, rewrites map[string]string) (out []byte, ok bool) {
	i := bytes.Index(body, modelKey)
	if i < 0 {
		return dst, false
	}
	j := bytes.IndexByte(body[i+len(modelKey):], '"')
	if j < 0 {
		return dst, false
	}
	end := i + len(modelKey) + j + 1
	to, found := rewrites[string(body[i:end])]
	if !found {
		return dst, false
	}
	dst = append(dst, body[:i]...)
	dst = append(dst, to...)
	return append(dst, body[end:]...), true
}
