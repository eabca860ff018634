package providers

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// minSecretLen is the length under which a secret is masked only where it stands as a
// whole token (see maskAll), and under which a value that is not a credential by its
// place is not taken as a secret at all (appendSecret).
const minSecretLen = 8

// strMask replaces every secret an error answer or error event quotes.
var strMask = []byte("***")

// appendSecret adds v, a header or URL query value sent upstream, to secrets (see
// appendCredential). A value under minSecretLen is left out: such a value is a flag or
// a version ("1", "true", "v2", "json"), and masking every one of them would mangle
// the message and, where it is a JSON value, the answer itself ("index":***).
func appendSecret(secrets [][]byte, v string) [][]byte {
	if len(v) < minSecretLen {
		return secrets
	}
	return appendCredential(secrets, v)
}

// appendCredential adds v, a credential by its place (a backend's key, the token of an
// Authorization-like header, a Basic password), to secrets however short: vLLM's
// --api-key takes any string, and "EMPTY" or "token-1" are common on internal pools.
// Secrets are kept longest first and once: masking a key that is part of a longer one
// first would leave the rest of the longer one showing.
func appendCredential(secrets [][]byte, v string) [][]byte {
	if v == "" {
		return secrets
	}
	i := 0
	for ; i < len(secrets) && len(secrets[i]) >= len(v); i++ {
		if string(secrets[i]) == v {
			return secrets
		}
	}
	return slices.Insert(secrets, i, []byte(v))
}

// appendEncoded adds to secrets the percent-encoded forms of each (as a query value and
// as a path segment encode it) where they differ from it: an upstream that quotes a URL
// or a form it was sent writes a key so ("sk-a%2Fb%2Bc" for "sk-a/b+c").
func appendEncoded(secrets [][]byte) [][]byte {
	for _, s := range slices.Clone(secrets) {
		v := string(s)
		if e := url.QueryEscape(v); e != v {
			secrets = appendCredential(secrets, e)
		}
		if e := url.PathEscape(v); e != v {
			secrets = appendCredential(secrets, e)
		}
	}
	return secrets
}

// credentialHeader reports whether a header named name carries a credential by its
// name (x-api-key, api-key, X-Auth-Token, cf-aig-authorization), so that its value is
// masked however short.
func credentialHeader(name string) bool {
	name = strings.ToLower(name)
	for _, w := range [...]string{"auth", "key", "token", "secret", "password"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// quotesAny reports whether msg quotes one of secrets in a form maskAll hides.
func quotesAny(msg []byte, secrets [][]byte) bool {
	if len(secrets) == 0 || len(msg) == 0 {
		return false
	}
	u := unescape(msg)
	defer u.release()
	return len(u.spans(msg, secrets, nil)) > 0
}

// maskBody masks out's body (see maskAll) should it quote one of secrets.
func maskBody(out *fasthttp.Response, secrets [][]byte) {
	b := out.Body()
	if m := maskAll(b, secrets); len(m) != len(b) || len(m) > 0 && &m[0] != &b[0] {
		out.SetBodyRaw(m)
	}
}

// maskAll hides every one of secrets that msg quotes, each run that spells one
// becoming ***; it returns msg itself when it quotes none. A run spells a secret
//   - as it is, or with JSON's escapes decoded (PHP writes '/' as \/, .NET '+' as
//     \u002B): what the client's SDK reads once it decodes the message;
//   - for a secret under minSecretLen, only as a whole token (the characters either
//     side are not letters, digits, '-' or '_'), so that "EMPTY" or a short password
//     does not mangle the words it is part of;
//   - or shortened around asterisks, its first characters (3 or more) then *** or
//     more then its last ones (2 or more, or none), as OpenAI quotes a wrong key
//     ("Incorrect API key provided: sk-proj-Zr*****...a3Ue"): the prefix and last
//     four identify the key.
//
// msg without a backslash (most answers) is matched as it is, without allocating
// unless it quotes a secret.
func maskAll(msg []byte, secrets [][]byte) []byte {
	if len(secrets) == 0 || len(msg) == 0 {
		return msg
	}
	// Masking may make a secret stand where it did not: a short one that followed a
	// longer one stands as a whole token once *** replaced that. A second round masks
	// it; a third ends what a secret of asterisks would start again.
	for range 3 {
		m := maskOnce(msg, secrets)
		if m == nil || bytes.Equal(m, msg) {
			break
		}
		msg = m
	}
	return msg
}

// maskOnce is msg with the runs that spell one of secrets replaced, nil if none.
func maskOnce(msg []byte, secrets [][]byte) []byte {
	u := unescape(msg)
	defer u.release()
	spans := u.spans(msg, secrets, nil)
	if len(spans) == 0 {
		return nil
	}
	out := make([]byte, 0, len(msg))
	prev := 0
	for _, s := range spans {
		out = append(out, msg[prev:s.from]...)
		out = append(out, strMask...)
		prev = s.to
	}
	return append(out, msg[prev:]...)
}

// span is the run msg[from:to].
type span struct{ from, to int }

// unescaped is a message with its JSON escapes decoded: text, and (built only once a
// run of it is to be masked) esc, the escapes it decoded, in order, to map offsets of
// text back to the message. A message without a backslash needs none: unescape
// returns nil.
type unescaped struct {
	msg  []byte
	text []byte
	esc  []escape
	// mapped says esc is built.
	mapped bool
}

// escape is one escape of the message, msg[m:m+n], decoded into text[t:t+k]; between
// two escapes the message and text hold the same bytes.
type escape struct{ t, m, k, n int }

// maxPooledUnescaped bounds the buffers kept for the next error: a large error answer
// (a proxy's HTML page) should not pin its size in the pool.
const maxPooledUnescaped = 64 << 10

var unescapedPool = sync.Pool{New: func() any { return new(unescaped) }}

// unescape decodes msg's JSON escapes as encoding/json does in a string
// (jsonscan.DecodeEscape); a backslash that begins no escape is kept as it is. It returns nil when msg holds no backslash; the caller releases what
// it returns. The text takes at most len(msg) bytes and is the only buffer built
// unless a secret is found (offsets).
func unescape(msg []byte) *unescaped {
	if bytes.IndexByte(msg, '\\') < 0 {
		return nil
	}
	u := unescapedPool.Get().(*unescaped)
	u.msg, u.esc, u.mapped = msg, u.esc[:0], false
	text := u.text[:0]
	if cap(text) < len(msg) {
		text = make([]byte, 0, len(msg))
	}
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\\')
		if j < 0 {
			text = append(text, msg[i:]...)
			break
		}
		text = append(text, msg[i:i+j]...)
		i += j
		r, n := jsonscan.DecodeEscape(msg, i)
		if n == 0 {
			text = append(text, '\\')
			i++
			continue
		}
		text = utf8.AppendRune(text, r)
		i += n
	}
	u.text = text
	return u
}

// offsets builds esc, walking the message again as unescape did.
func (u *unescaped) offsets() {
	if u.mapped {
		return
	}
	u.mapped = true
	msg, t := u.msg, 0
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\\')
		if j < 0 {
			return
		}
		i, t = i+j, t+j
		r, n := jsonscan.DecodeEscape(msg, i)
		if n == 0 {
			i, t = i+1, t+1
			continue
		}
		k := utf8.RuneLen(r)
		u.esc = append(u.esc, escape{t: t, m: i, k: k, n: n})
		i, t = i+n, t+k
	}
}

// at is the offset in the message of the character text[x] belongs to; at(len(text))
// is the message's length.
func (u *unescaped) at(x int) int {
	u.offsets()
	i, _ := slices.BinarySearchFunc(u.esc, x, func(e escape, x int) int { return e.t - x })
	// esc[i] is the first escape at or after x.
	if i < len(u.esc) && u.esc[i].t == x {
		return u.esc[i].m
	}
	if i == 0 {
		return x
	}
	e := u.esc[i-1]
	if x < e.t+e.k {
		return e.m
	}
	return e.m + e.n + x - e.t - e.k
}

func (u *unescaped) release() {
	if u == nil {
		return
	}
	u.msg = nil
	if cap(u.text) > maxPooledUnescaped || cap(u.esc) > maxPooledUnescaped/32 {
		return
	}
	unescapedPool.Put(u)
}

// spans appends to dst the runs of msg that spell one of secrets (see maskAll), in
// order and merged where they overlap or touch. u is msg unescaped, nil when msg has
// no escapes.
func (u *unescaped) spans(msg []byte, secrets [][]byte, dst []span) []span {
	dst = appendMatches(dst, msg, secrets)
	if u != nil {
		raw := len(dst)
		dst = appendMatches(dst, u.text, secrets)
		n := 0
		for i, s := range dst {
			if i < raw {
				// A run of the raw text may begin or end within an escape: the
				// escape goes whole, or the answer would hold a broken one (\***).
				s.from, s.to = u.charStart(s.from), u.charEnd(s.to)
			} else {
				s.from, s.to = u.at(s.from), u.at(s.to)
			}
			if s.from < s.to {
				dst[n] = s
				n++
			}
		}
		dst = dst[:n]
	}
	if len(dst) < 2 {
		return dst
	}
	slices.SortFunc(dst, func(a, b span) int { return a.from - b.from })
	merged := dst[:1]
	for _, s := range dst[1:] {
		if last := &merged[len(merged)-1]; s.from <= last.to {
			last.to = max(last.to, s.to)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// charStart is the offset where the character holding offset off of the message
// begins: off, or the start of the escape off falls within.
func (u *unescaped) charStart(off int) int {
	if e, ok := u.escapeHolding(off); ok {
		return e.m
	}
	return off
}

// charEnd is the offset where the character holding offset off-1 of the message ends.
func (u *unescaped) charEnd(off int) int {
	if e, ok := u.escapeHolding(off); ok {
		return e.m + e.n
	}
	return off
}

// escapeHolding is the escape whose bytes off falls strictly within (after its
// backslash, before its end), if any.
func (u *unescaped) escapeHolding(off int) (escape, bool) {
	u.offsets()
	i, _ := slices.BinarySearchFunc(u.esc, off, func(e escape, off int) int { return e.m - off })
	// esc[i] is the first escape starting at or after off.
	if i == 0 {
		return escape{}, false
	}
	e := u.esc[i-1]
	return e, off > e.m && off < e.m+e.n
}

// appendMatches appends the runs of text that spell one of secrets as they are, and
// their shortened forms.
func appendMatches(dst []span, text []byte, secrets [][]byte) []span {
	for _, s := range secrets {
		whole := len(s) < minSecretLen
		for off := 0; ; {
			i := bytes.Index(text[off:], s)
			if i < 0 {
				break
			}
			i += off
			j := i + len(s)
			if whole && !isWholeToken(text, i, j) {
				off = i + 1
				continue
			}
			dst = append(dst, span{i, j})
			off = j
		}
	}
	if bytes.Contains(text, strMask) {
		dst = appendShortened(dst, text, secrets)
	}
	return dst
}

// isWholeToken reports whether text[i:j] stands as a whole token.
func isWholeToken(text []byte, i, j int) bool {
	return (i == 0 || !isTokenByte(text[i-1])) && (j == len(text) || !isTokenByte(text[j]))
}

func isTokenByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-' || c == '_'
}

// appendShortened appends the runs of text that spell one of secrets shortened: 3 or
// more of its first characters, 3 or more asterisks, then none or 2 or more of its last
// characters. The suffix may be missing: what is left then (a prefix already part of
// the secret and asterisks) is never ordinary text worth keeping.
func appendShortened(dst []span, text []byte, secrets [][]byte) []span {
	for off := 0; ; {
		i := bytes.Index(text[off:], strMask)
		if i < 0 {
			return dst
		}
		i += off
		j := i + len(strMask)
		for j < len(text) && text[j] == '*' {
			j++
		}
		for _, s := range secrets {
			if p := sharedPrefix(text[:i], s); p > 0 {
				dst = append(dst, span{i - p, j + sharedSuffix(text[j:], s)})
			}
		}
		off = j
	}
}

// sharedPrefix is the length of the longest prefix of s, 3 bytes or more, that before
// ends with; 0 if none.
func sharedPrefix(before, s []byte) int {
	if len(s) < 3 {
		return 0
	}
	for k := min(len(s), len(before)); k >= 3; k-- {
		// Only where before holds s[0] may a prefix begin: the first such place
		// from k back is the longest prefix still possible.
		at := bytes.IndexByte(before[len(before)-k:len(before)-2], s[0])
		if at < 0 {
			return 0
		}
		k -= at
		if bytes.Equal(before[len(before)-k:], s[:k]) {
			return k
		}
	}
	return 0
}

// sharedSuffix is the length of the longest suffix of s, 2 bytes or more, that after
// begins with; 0 if none.
func sharedSuffix(after, s []byte) int {
	for k := min(len(s), len(after)); k >= 2; k-- {
		if bytes.Equal(after[:k], s[len(s)-k:]) {
			return k
		}
	}
	return 0
}
