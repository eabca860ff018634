package providers

import (
	"bytes"
	"math"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

var includeUsageJSON = []byte(`{"include_usage":true}`)

// appendBody appends the client's body with the model value replaced by model (a JSON
// string, quotes included), or the model member left out when model is empty, and,
// when forceUsage is set, stream_options replaced or added so that the upstream reports
// usage. Every other byte is forwarded untouched.
func appendBody(dst []byte, call *Call, model []byte, forceUsage bool) []byte {
	b := call.Body
	ms, me := call.Model[0], call.Model[1]
	if len(model) == 0 {
		ms, me = modelMember(b, ms, me)
	}
	if !forceUsage {
		dst = append(dst, b[:ms]...)
		dst = append(dst, model...)
		return append(dst, b[me:]...)
	}
	ss, se := call.StreamOptions[0], call.StreamOptions[1]
	if ss < 0 {
		end := lastBrace(b)
		dst = append(dst, b[:ms]...)
		dst = append(dst, model...)
		dst = append(dst, b[me:end]...)
		if lastNonSpace(dst) != '{' {
			// Not when the model, left out, was the only member.
			dst = append(dst, ',')
		}
		dst = append(dst, `"stream_options":`...)
		dst = append(dst, includeUsageJSON...)
		return append(dst, b[end:]...)
	}
	if ss < ms {
		dst = append(dst, b[:ss]...)
		dst = appendStreamOptions(dst, b[ss:se])
		dst = append(dst, b[se:ms]...)
		dst = append(dst, model...)
		return append(dst, b[me:]...)
	}
	dst = append(dst, b[:ms]...)
	dst = append(dst, model...)
	dst = append(dst, b[me:ss]...)
	dst = appendStreamOptions(dst, b[ss:se])
	return append(dst, b[se:]...)
}

// modelMember is the span of body b that leaves the member out whose value is b[ms:me]
// (the model's, which the gateway's scan found at the top level): its name, and the
// comma that parts it from the member before it, or else from the one after it. A
// member name holds no '"' but escaped, and "model" none at all. Where b is not so,
// the value's own span comes back, and the value is left out alone.
func modelMember(b []byte, ms, me int) (int, int) {
	i := ms - 1
	for i >= 0 && isSpace(b[i]) {
		i--
	}
	if i < 0 || b[i] != ':' {
		return ms, me
	}
	i--
	for i >= 0 && isSpace(b[i]) {
		i--
	}
	if i < 0 || b[i] != '"' {
		return ms, me
	}
	i--
	for i >= 0 && b[i] != '"' {
		i--
	}
	if i < 0 {
		return ms, me
	}
	start := i
	for i--; i >= 0 && isSpace(b[i]); i-- {
	}
	if i >= 0 && b[i] == ',' {
		return i, me
	}
	j := me
	for j < len(b) && isSpace(b[j]) {
		j++
	}
	if j < len(b) && b[j] == ',' {
		return start, j + 1
	}
	return start, me
}

// isSpace reports whether c is JSON's whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// lastNonSpace is the last byte of b that is not JSON's whitespace, or 0.
func lastNonSpace(b []byte) byte {
	for i := len(b) - 1; i >= 0; i-- {
		if !isSpace(b[i]) {
			return b[i]
		}
	}
	return 0
}

// appendStreamOptions appends the client's stream_options object opts with
// include_usage set to true, continuous_usage_stats set to false and its other members
// kept as they are; anything but an object becomes {"include_usage":true}. It is used
// only when the client did not ask for usage: vLLM puts per-chunk usage
// (continuous_usage_stats) only where include_usage holds, so a client that refused
// include_usage gets none, and forcing include_usage must not turn it on.
func appendStreamOptions(dst, opts []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(opts) != nil {
		return append(dst, includeUsageJSON...)
	}
	start := len(dst)
	dst = append(dst, includeUsageJSON[:len(includeUsageJSON)-1]...)
	for {
		k, v, ok := it.Next()
		if !ok {
			if it.Err() != nil {
				return append(dst[:start], includeUsageJSON...)
			}
			return append(dst, '}')
		}
		if isKey(k, "include_usage") {
			continue
		}
		dst = append(dst, ',', '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
		if isKey(k, "continuous_usage_stats") {
			dst = append(dst, "false"...)
			continue
		}
		dst = append(dst, v...)
	}
}

// isKey reports whether the raw (still escaped) key k is name.
func isKey(k []byte, name string) bool {
	if string(k) == name {
		return true
	}
	// An escape takes at most 6 bytes a byte it spells (\u0041; a surrogate pair 12
	// for 4): a key longer than 6 times name spells a longer string, and is never
	// decoded into more than buf holds for the names asked for, the longest of them
	// (continuous_usage_stats, 22 bytes) escaped whole included.
	if len(k) <= len(name) || len(k) > 6*len(name) || bytes.IndexByte(k, '\\') < 0 {
		return false
	}
	var buf [6 * 24]byte
	u, ok := jsonscan.AppendUnescape(buf[:0], k)
	return ok && string(u) == name
}

// lastBrace finds the closing brace of the top-level object.
func lastBrace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '}' {
			return i
		}
	}
	return len(b)
}

// quoteModel renders a model name as a JSON string once, at config load.
func quoteModel(name string) []byte { return jsonscan.AppendQuote(nil, name) }

// parseUsage reads OpenAI's usage object, with the prompt cache's share of the input
// from prompt_tokens_details.cached_tokens (input_tokens_details in the Responses API's
// shape). vLLM writes the details only with --enable-prompt-tokens-details, else null.
// A usage with total_tokens alone (vLLM's and Jina's rerank answers) notes that total,
// which a call that generates nothing counts as its input (Usage.totalAsInput); for
// any other it is no count, and the estimate stands.
func parseUsage(raw []byte, u *Usage) bool {
	var it jsonscan.Iter
	if it.Reset(raw) != nil {
		return false
	}
	bad := false
	var total int64
	split, totalSeen, totalBad := false, false, false
	for {
		k, v, ok := it.Next()
		if !ok {
			if totalSeen && !split {
				// A bad total is garbage only where it is the count.
				u.total, bad = total, bad || totalBad
			}
			if bad || u.CachedInput > u.Input {
				// One count the gateway cannot believe makes the whole usage
				// unknown: counted alone, the other would settle a tokens limit
				// for less than the answer cost. Cached tokens are a part of
				// the prompt's: more of them than the prompt has is garbage too.
				// The answer's tier is no count: it stays.
				*u = Usage{Tier: u.Tier}
			}
			return it.Err() == nil
		}
		switch string(k) {
		case "prompt_tokens", "input_tokens":
			u.Input, ok = tokenCount(v)
			bad = bad || !ok
			split = true
		case "completion_tokens", "output_tokens":
			u.Output, ok = tokenCount(v)
			bad = bad || !ok
			split = true
		case "total_tokens":
			total, ok = tokenCount(v)
			totalBad = totalBad || !ok
			totalSeen = true
		case "prompt_tokens_details", "input_tokens_details":
			u.CachedInput, ok = cachedTokens(v)
			bad = bad || !ok
		case "seconds":
			// The audio API's usage of type duration.
			u.AudioMillis, ok = audioMillis(v)
			bad = bad || !ok
		}
	}
}

// cachedTokens reads cached_tokens from a prompt_tokens_details value. null, an object
// without the count, or a value that is no object at all is 0 cached: the prompt is
// then priced in full, never below what it cost.
func cachedTokens(v []byte) (int64, bool) {
	var it jsonscan.Iter
	if jsonscan.IsNull(v) || it.Reset(v) != nil {
		return 0, true
	}
	var n int64
	bad := false
	for {
		k, c, ok := it.Next()
		if !ok {
			return n, !bad
		}
		if string(k) == "cached_tokens" {
			n, ok = tokenCount(c)
			bad = bad || !ok
		}
	}
}

// maxTokenCount is the most tokens one answer is believed to have counted, the bound
// the gateway's own estimates have: an upstream's count above it (or below 0, or not
// an integer) is garbage, and would put metrics, cost and a limit's debt out of
// reach of any real traffic.
const maxTokenCount = 1 << 40

// tokenCount reads an upstream's token count; null is 0, a whole number written with
// a fraction or an exponent (12.0, 1.2e1: servers that count in floats write them, and
// OpenAI's Python SDK reads them) is that number, and ok is false for a negative or
// huge number, or anything else that is not a count (0 is then returned).
func tokenCount(v []byte) (int64, bool) {
	if jsonscan.IsNull(v) {
		return 0, true
	}
	n, ok := jsonscan.Int(v)
	if !ok {
		n, ok = wholeFloat(v)
	}
	if !ok || n < 0 || n > maxTokenCount {
		return 0, false
	}
	return n, true
}

// wholeFloat reads a JSON number with a fraction or an exponent that is a whole
// number; the rare path: it may allocate.
func wholeFloat(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 64 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) || !jsonscan.Valid(v) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > maxTokenCount {
		return 0, false
	}
	return int64(f), true
}

// scanAnswer checks that an OpenAI answer is one JSON object, with nothing but space
// after it, reads its usage and the service tier that served it, and reports whether
// the object has an error member: a router that answered 200 before the model failed
// puts the error there (OpenRouter), and it may quote the backend's key.
func scanAnswer(body []byte, u *Usage) (ok, isError bool) {
	return scanAnswerTo(body, u, nil)
}

// scanAnswerTo is scanAnswer that also notes in res, when not nil, the answer's IDs
// (IDEnds) and, for an answer without usage, NoUsage and the size of its generated
// text: its choices' (chat, legacy completions) or a Responses API answer's output's,
// sized once the scan is over and found no usage, which most answers have, after them.
func scanAnswerTo(body []byte, u *Usage, res *Result) (ok, isError bool) {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return false, false
	}
	var choices, output []byte
	usage, pending := false, false
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		if res != nil {
			res.IDEnds.note(k, v, it.ValueOffset())
		}
		switch string(k) {
		case "usage":
			if !jsonscan.IsNull(v) {
				usage = usage || !usageNone(v)
				parseUsage(v, u)
			}
		case "service_tier":
			u.Tier.read(v)
		case "error":
			isError = isError || !jsonscan.IsNull(v)
		case "choices":
			choices = v
		case "output":
			output = v
		case "status":
			// A Responses API answer's: a background response answers at once,
			// queued, and generates later.
			pending = string(v) == `"queued"` || string(v) == `"in_progress"`
		}
	}
	ok = it.Err() == nil && jsonscan.SkipSpace(body, it.End()) == len(body)
	if ok && res != nil && !usage && !isError && !pending {
		res.NoUsage, res.OutputBytes = true, choicesBytes(choices)+outputBytes(output)
	}
	return ok, isError
}
