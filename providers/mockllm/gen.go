package mockllm

import (
	"bytes"

	"github.com/cespare/xxhash/v2"
)

// words is the vocabulary, one token per word. Lower-case ASCII letters only, so token
// text is appended into JSON strings without escaping.
var words = [vocabSize]string{
	"the", "model", "answers", "quickly", "while", "tokens", "stream", "through",
	"a", "gateway", "that", "routes", "every", "request", "to", "one",
	"healthy", "replica", "and", "keeps", "users", "sticky", "under", "load",
	"with", "limits", "shared", "across", "nodes", "so", "canary", "weights",
	"move", "slowly", "as", "errors", "stay", "low", "latency", "remains",
	"small", "traces", "show", "each", "span", "metrics", "count", "cost",
	"per", "million", "input", "output", "prompt", "cache", "hits", "often",
	"when", "prefixes", "match", "batches", "grow", "large", "queues", "drain",
}

// vocabSize is the vocabulary's size, a power of two: token ids run from 0 to
// vocabSize-1, and /tokenize hands them out.
const vocabSize = 64

// mix is splitmix64's finalizer: a cheap bijection that spreads every input bit.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

const golden = 0x9e3779b97f4a7c15

// promptHash seeds the generator from the prompt bytes and the server and request
// seeds, and nothing else: stream, max_tokens and the rest leave the text unchanged.
func promptHash(serverSeed int64, reqSeed int64, hasReqSeed bool, prompt []byte) uint64 {
	h := mix(xxhash.Sum64(prompt) ^ mix(uint64(serverSeed)+golden))
	if hasReqSeed {
		h = mix(h ^ mix(uint64(reqSeed)^golden+1))
	}
	return h
}

// plan is one generated answer: which tokens, how many, and why it ended.
type plan struct {
	h uint64
	// natural is the length the answer has when nothing cuts it; its last token ends
	// with a full stop.
	natural int
	// n is the number of tokens emitted.
	n int
	// lastLen, when >= 0, truncates token n-1 to that many bytes (a stop sequence
	// began inside it).
	lastLen int
	// stop is true for a natural end or a stop sequence, false when max_tokens cut it.
	stop bool
	// stopSeq is the index of the matched stop sequence, or -1.
	stopSeq int
	// off is the text offset of the next token a stream sends, for logprobs.
	off int
}

// newPlan chooses the answer's length. forced > 0 (x-mock-tokens) sets the natural
// length; otherwise it is drawn from [cap/2, cap] so that both a natural stop and a
// max_tokens cut occur for ordinary max_tokens values. minTokens (vLLM's min_tokens)
// holds off the natural end, and ignoreEOS (vLLM's ignore_eos, which its benchmarks
// send to fix output lengths) puts it past the limit. The answer is cut, with
// finish_reason "length", at reqMax (the request's max_tokens, 0 for none) and at
// capTokens (Options.MaxTokens), which bounds forced lengths too.
func newPlan(h uint64, capTokens int, reqMax int64, forced, minTokens int, ignoreEOS bool) plan {
	p := plan{h: h, lastLen: -1, stopSeq: -1, stop: true}
	limit := capTokens
	if reqMax > 0 && reqMax < int64(limit) {
		limit = int(reqMax)
	}
	switch {
	case ignoreEOS:
		// The end of sequence (the natural end and its full stop) never comes.
		p.natural = limit + 1
	case forced > 0:
		p.natural = forced
	default:
		lo := (capTokens + 1) / 2
		p.natural = lo + int(mix(h^golden)%uint64(capTokens-lo+1))
	}
	p.natural = max(p.natural, minTokens)
	p.n = p.natural
	if p.n > limit {
		p.n = limit
		p.stop = false
	}
	return p
}

// wordIndex returns the vocabulary index of token i.
func (p *plan) wordIndex(i int) int {
	return int(mix(p.h+uint64(i+1)*golden) & (vocabSize - 1))
}

// word returns the text of token i without its space or full stop.
func (p *plan) word(i int) string {
	return words[p.wordIndex(i)]
}

// appendToken appends token i's text: a space before every token but the first, and a
// full stop after the last token of a natural end.
func (p *plan) appendToken(dst []byte, i int) []byte {
	start := len(dst)
	if i > 0 {
		dst = append(dst, ' ')
	}
	dst = append(dst, p.word(i)...)
	if i == p.natural-1 {
		dst = append(dst, '.')
	}
	if i == p.n-1 && p.lastLen >= 0 {
		dst = dst[:start+p.lastLen]
	}
	return dst
}

// tokenLen is len(appendToken(nil, i)) without building it.
func (p *plan) tokenLen(i int) int {
	if i == p.n-1 && p.lastLen >= 0 {
		return p.lastLen
	}
	l := len(p.word(i))
	if i > 0 {
		l++
	}
	if i == p.natural-1 {
		l++
	}
	return l
}

// appendText appends the whole answer.
func (p *plan) appendText(dst []byte) []byte {
	for i := 0; i < p.n; i++ {
		dst = p.appendToken(dst, i)
	}
	return dst
}

// applyStops ends the answer at the first occurrence of any stop sequence, as vLLM
// does: before it, or after it when include (include_stop_str_in_output) holds.
// Since vLLM 0.10.2 (PR #22014) the text of the first minTokens tokens is not
// searched: a match must end after it, so it may begin up to len(stop)-1 bytes
// earlier, as vLLM's search window over the new text does. scratch is reused for
// the text.
func (p *plan) applyStops(stops [][]byte, scratch []byte, minTokens int, include bool) []byte {
	if len(stops) == 0 || p.n <= minTokens {
		return scratch
	}
	text := p.appendText(scratch[:0])
	held := 0
	for i := range minTokens {
		held += p.tokenLen(i)
	}
	at, which := -1, -1
	for k, s := range stops {
		if len(s) == 0 {
			continue
		}
		from := max(held-len(s)+1, 0)
		if j := bytes.Index(text[from:], s); j >= 0 && (at < 0 || from+j < at) {
			at, which = from+j, k
		}
	}
	if at < 0 {
		return text
	}
	end := at
	if include {
		end += len(stops[which])
	}
	p.stop, p.stopSeq = true, which
	off := 0
	for i := 0; i < p.n; i++ {
		l := p.tokenLen(i)
		// The answer ends with the token the cut falls in; with include, with the
		// one the stop sequence ends in.
		if end < off+l || include && end == off+l {
			if end == off {
				p.n = i
			} else {
				p.n, p.lastLen = i+1, end-off
			}
			break
		}
		off += l
	}
	return text
}

// promptTokens estimates a token count from content bytes: about four bytes a token,
// never less than one.
func promptTokens(contentBytes int) int {
	if contentBytes <= 0 {
		return 1
	}
	return (contentBytes + 3) / 4
}

const hexDigits = "0123456789abcdef"

// appendHex64 appends v as 16 lower-case hex digits.
func appendHex64(dst []byte, v uint64) []byte {
	for s := 60; s >= 0; s -= 4 {
		dst = append(dst, hexDigits[(v>>uint(s))&0xf])
	}
	return dst
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// appendBase62 appends n base-62 digits drawn from a and b, for Anthropic-style ids.
func appendBase62(dst []byte, a, b uint64, n int) []byte {
	for i := 0; i < n; i++ {
		if i == 11 {
			a = b
		}
		dst = append(dst, base62[a%62])
		a /= 62
	}
	return dst
}
