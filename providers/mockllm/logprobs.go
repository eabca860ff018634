package mockllm

import "strconv"

// maxLogprobs is vLLM's default --max-logprobs: the most top candidates a request may
// ask for per token.
const maxLogprobs = 20

// topCandidates is the number of top candidates per token the request asked for:
// chat's top_logprobs or the legacy completions' logprobs, -1 meaning the whole
// vocabulary.
func (st *state) topCandidates() int {
	if st.topLogprobs < 0 {
		return vocabSize
	}
	return int(min(st.topLogprobs, vocabSize))
}

// logprob is the fake log-probability of candidate k at token i: k = 0 is the token
// generated, the most likely, and each further candidate is less likely. The values
// are deterministic, and exact in binary so that they print short.
func (p *plan) logprob(i, k int) float64 {
	r := mix(p.h ^ uint64(i+1)*golden ^ 0x6c6f6770726f6273)
	return -float64(r&1023+1)/1024 - float64(k)*0.75
}

// appendCandidate appends candidate k's text at token i: the token itself for k = 0,
// else another vocabulary word with the token's leading space.
func (p *plan) appendCandidate(b []byte, i, k int) []byte {
	if k == 0 {
		return p.appendToken(b, i)
	}
	if i > 0 {
		b = append(b, ' ')
	}
	return append(b, words[(p.wordIndex(i)+k)&(vocabSize-1)]...)
}

// appendLogprobs appends a choice's logprobs member for tokens [from, to), off being
// the text offset of token from: null when none were asked for, else vLLM's
// ChatCompletionLogProbs for chat and CompletionLogProbs for the legacy API.
func (st *state) appendLogprobs(b []byte, p *plan, from, to, off int) []byte {
	if !st.logprobs {
		return append(b, "null"...)
	}
	top := st.topCandidates()
	if st.route == rChat {
		b = append(b, `{"content":[`...)
		for i := from; i < to; i++ {
			if i > from {
				b = append(b, ',')
			}
			b = p.appendChatLogprob(b, i, 0)
			b = b[:len(b)-1] // reopened for top_logprobs
			b = append(b, `,"top_logprobs":[`...)
			for k := range top {
				if k > 0 {
					b = append(b, ',')
				}
				b = p.appendChatLogprob(b, i, k)
			}
			b = append(b, "]}"...)
		}
		return append(b, "]}"...)
	}
	// The legacy API's dict of top candidates holds the generated token and the top
	// logprobs others, the generated one among them (serving_completion.py
	// _create_completion_logprobs), so logprobs 0 still lists one.
	top = max(top, 1)
	b = append(b, `{"text_offset":[`...)
	for i := from; i < to; i++ {
		if i > from {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(off), 10)
		off += p.tokenLen(i)
	}
	b = append(b, `],"token_logprobs":[`...)
	for i := from; i < to; i++ {
		if i > from {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, p.logprob(i, 0), 'f', -1, 64)
	}
	b = append(b, `],"tokens":[`...)
	for i := from; i < to; i++ {
		if i > from {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = p.appendToken(b, i)
		b = append(b, '"')
	}
	b = append(b, `],"top_logprobs":[`...)
	for i := from; i < to; i++ {
		if i > from {
			b = append(b, ',')
		}
		b = append(b, '{')
		for k := range top {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = p.appendCandidate(b, i, k)
			b = append(b, `":`...)
			b = strconv.AppendFloat(b, p.logprob(i, k), 'f', -1, 64)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendChatLogprob appends candidate k at token i as vLLM's ChatCompletionLogProb:
// token, logprob and the token's UTF-8 bytes. Token text is lower-case ASCII, a space
// and a full stop, so it needs no escaping.
func (p *plan) appendChatLogprob(b []byte, i, k int) []byte {
	b = append(b, `{"token":"`...)
	start := len(b)
	b = p.appendCandidate(b, i, k)
	end := len(b)
	b = append(b, `","logprob":`...)
	b = strconv.AppendFloat(b, p.logprob(i, k), 'f', -1, 64)
	b = append(b, `,"bytes":[`...)
	for j := start; j < end; j++ {
		if j > start {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(b[j]), 10)
	}
	return append(b, "]}"...)
}
