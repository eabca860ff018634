package main

import "bytes"

var modelKey = []byte(`"model":"`)

// modelSpan finds the first `"model":"<endpoint>"` in body: body[i:end] is it and
// to its replacement; ok is false when the model is not an endpoint's name.
func modelSpan(body []byte, rewrites map[string]string) (i, end int, to string, ok bool) {
	i = bytes.Index(body, modelKey)
	if i < 0 {
		return 0, 0, "", false
	}
	j := bytes.IndexByte(body[i+len(modelKey):], '"')
	if j < 0 {
		return 0, 0, "", false
	}
	end = i + len(modelKey) + j + 1
	to, ok = rewrites[string(body[i:end])]
	return i, end, to, ok
}

// rewriteModel returns body with its first `"model":"<endpoint>"` replaced by the
// backend's model, appended to dst; ok is false (and dst unchanged) when there is
// nothing to replace.
func rewriteModel(dst, body []byte, rewrites map[string]string) (out []byte, ok bool) {
	i, end, to, ok := modelSpan(body, rewrites)
	if !ok {
		return dst, false
	}
	dst = append(dst, body[:i]...)
	dst = append(dst, to...)
	return append(dst, body[end:]...), true
}
