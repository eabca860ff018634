package mockllm

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

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
// ChatCompletionLogProbs for chat and CompletionLogProbs for the legacy API. echo,
// when not nil, is the item whose prompt the text begins with: its tokens come first,
// as vLLM lists the prompt logprobs that echo asks for, the first without a logprob.
func (st *state) appendLogprobs(b []byte, p *plan, from, to, off int, echo *item) []byte {
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
	var cuts []int
	var pp plan
	if echo != nil {
		st.splitPrompt(echo)
		cuts, pp = st.echoCuts, plan{h: mix(echo.h ^ promptSalt)}
	}
	dec := st.echoDec
	prompt := max(len(cuts)-1, 0)
	b = append(b, `{"text_offset":[`...)
	chars := 0
	for k := range prompt {
		if k > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(chars), 10)
		chars += utf8.RuneCount(dec[cuts[k]:cuts[k+1]])
	}
	for i := from; i < to; i++ {
		if i > from || prompt > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(off), 10)
		off += p.tokenLen(i)
	}
	b = append(b, `],"token_logprobs":[`...)
	for k := range prompt {
		switch k {
		case 0:
			b = append(b, "null"...)
		default:
			b = append(b, ',')
			b = strconv.AppendFloat(b, pp.logprob(k, 0), 'f', -1, 64)
		}
	}
	for i := from; i < to; i++ {
		if i > from || prompt > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, p.logprob(i, 0), 'f', -1, 64)
	}
	b = append(b, `],"tokens":[`...)
	for k := range prompt {
		if k > 0 {
			b = append(b, ',')
		}
		b = appendQuoteBytes(b, dec[cuts[k]:cuts[k+1]])
	}
	for i := from; i < to; i++ {
		if i > from || prompt > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = p.appendToken(b, i)
		b = append(b, '"')
	}
	b = append(b, `],"top_logprobs":[`...)
	for k := range prompt {
		if k == 0 {
			b = append(b, "null"...)
			continue
		}
		piece := dec[cuts[k]:cuts[k+1]]
		b = append(b, ",{"...)
		b = appendQuoteBytes(b, piece)
		b = append(b, ':')
		b = strconv.AppendFloat(b, pp.logprob(k, 0), 'f', -1, 64)
		// Other words follow, never the token itself.
		w := spacedWord(piece)
		if w < 0 {
			w = pp.wordIndex(k)
		}
		for c := 1; c < top; c++ {
			b = append(b, `," `...)
			b = append(b, words[(w+c)&(vocabSize-1)]...)
			b = append(b, `":`...)
			b = strconv.AppendFloat(b, pp.logprob(k, c), 'f', -1, 64)
		}
		b = append(b, '}')
	}
	for i := from; i < to; i++ {
		if i > from || prompt > 0 {
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

// promptSalt seeds an echoed prompt's logprobs apart from its answer's.
const promptSalt = 0x70726f6d7074

// splitPrompt splits the prompt echo holds into as many tokens as it counts, for
// logprobs, leaving their bounds in st.echoCuts over st.echoDec, the decoded prompt:
// a token-id prompt into its words (with their spaces, as an answer's tokens have
// them); a text prompt into pieces of about four bytes, cut at rune starts, so that
// the tokens spell the echoed text.
func (st *state) splitPrompt(echo *item) {
	text := st.echoBuf[echo.echoFrom:echo.echoTo]
	if echo.ids {
		st.echoDec = append(st.echoDec[:0], text...)
	} else {
		st.echoDec, _ = jsonscan.AppendUnescape(st.echoDec[:0], text)
	}
	dec := st.echoDec
	cuts := append(st.echoCuts[:0], 0)
	for k := 1; k < echo.tokens; k++ {
		last := cuts[len(cuts)-1]
		var end int
		if echo.ids {
			end = last + 1 + bytes.IndexByte(dec[last+1:], ' ')
		} else {
			end = max(k*len(dec)/echo.tokens, last)
			for end < len(dec) && !utf8.RuneStart(dec[end]) {
				end++
			}
		}
		cuts = append(cuts, end)
	}
	st.echoCuts = append(cuts, len(dec))
}

// spacedWord is the vocabulary index of piece when it is a word after a space, else -1.
func spacedWord(piece []byte) int {
	if len(piece) < 2 || piece[0] != ' ' {
		return -1
	}
	for j, w := range words {
		if string(piece[1:]) == w {
			return j
		}
	}
	return -1
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
