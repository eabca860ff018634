package providers

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// anthropicUsage is the Messages API's usage. Its input_tokens leave out prompt tokens
// read from or written to the prompt cache, which OpenAI's prompt_tokens include.
type anthropicUsage struct {
	input, cacheWrite, cacheRead, output int64
	// cacheWrite1h is the part of cacheWrite with a one-hour ttl
	// (cache_creation.ephemeral_1h_input_tokens).
	cacheWrite1h int64
	// tier is the service tier usage.service_tier names (priority, batch, or
	// default for Anthropic's standard: readTier), which Pricing.Tiers prices as
	// an OpenAI answer's service_tier.
	tier ServiceTier
	// searches counts the web searches that ran
	// (server_tool_use.web_search_requests), message_delta's the last word.
	searches int64
	// bad is set once a token count was not one (negative, huge, not an
	// integer); badSearches once the searches' count was not.
	bad, badSearches bool
}

func (u *anthropicUsage) read(raw []byte) {
	var it jsonscan.Iter
	if it.Reset(raw) != nil {
		return
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return
		}
		var dst *int64
		switch string(k) {
		case "input_tokens":
			dst = &u.input
		case "cache_creation_input_tokens":
			dst = &u.cacheWrite
		case "cache_read_input_tokens":
			dst = &u.cacheRead
		case "output_tokens":
			dst = &u.output
		case "cache_creation":
			if v, ok := jsonscan.Field(v, "ephemeral_1h_input_tokens"); ok {
				u.read1h(v)
			}
			continue
		case "service_tier":
			u.readTier(v)
			continue
		case "server_tool_use":
			if v, ok := jsonscan.Field(v, "web_search_requests"); ok {
				u.readSearches(v)
			}
			continue
		default:
			continue
		}
		if jsonscan.IsNull(v) {
			// message_delta may name a count it does not give: the one
			// message_start gave stands.
			continue
		}
		n, ok := tokenCount(v)
		if !ok {
			// Garbage: the whole usage is unknown, as parseUsage has it.
			u.bad = true
			continue
		}
		*dst = n
	}
}

// read1h reads the one-hour cache writes' count, null leaving the last one given.
func (u *anthropicUsage) read1h(v []byte) {
	if jsonscan.IsNull(v) {
		return
	}
	n, ok := tokenCount(v)
	if !ok {
		u.bad = true
		return
	}
	u.cacheWrite1h = n
}

// readSearches reads the web searches' count, null leaving the last one given. One
// that is not a count leaves the searches unknown (none priced), not the tokens: the
// API bills the two apart.
func (u *anthropicUsage) readSearches(v []byte) {
	if jsonscan.IsNull(v) {
		return
	}
	n, ok := tokenCount(v)
	if !ok {
		u.badSearches = true
		return
	}
	u.searches = n
}

// strStandard is Anthropic's name of its standard tier, which OpenAI names default.
var strStandard = []byte("standard")

// readTier reads usage.service_tier in OpenAI's words, as the translated answer gives
// it to the client: Anthropic's standard is OpenAI's default (the tier of the
// top-level prices); priority, batch and any other name stay as they are.
func (u *anthropicUsage) readTier(v []byte) {
	u.tier.read(v)
	if bytes.Equal(u.tier.Bytes(), strStandard) {
		u.tier = ServiceTier{}
		u.tier.n = uint8(copy(u.tier.name[:], "default"))
	}
}

func (u *anthropicUsage) usage() Usage {
	var searches int64
	if !u.badSearches {
		searches = u.searches
	}
	if u.bad || u.cacheWrite1h > u.cacheWrite {
		return Usage{Tier: u.tier, WebSearches: searches}
	}
	return Usage{
		Input:        u.input + u.cacheWrite + u.cacheRead,
		Output:       u.output,
		CachedInput:  u.cacheRead,
		CacheWrite:   u.cacheWrite,
		CacheWrite1h: u.cacheWrite1h,
		Tier:         u.tier,
		WebSearches:  searches,
	}
}

// appendServiceTier appends the service_tier member of a chat.completion or chunk,
// the tier u names in OpenAI's words; nothing when it names none.
func appendServiceTier(dst []byte, u *anthropicUsage) []byte {
	if u.tier.n == 0 {
		return dst
	}
	dst = append(dst, `,"service_tier":`...)
	return jsonscan.AppendQuote(dst, b2s(u.tier.Bytes()))
}

// appendOpenAIUsage appends OpenAI's usage object. The tokens written to the prompt
// cache stay in prompt_tokens without a count of their own, the answer clients have
// always had: only the gateway's Usage (cost, metrics, access log, spans) tells them
// apart.
func appendOpenAIUsage(dst []byte, u *anthropicUsage) []byte {
	t := u.usage()
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, t.Input, 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, t.Output, 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, t.Input+t.Output, 10)
	if u.cacheRead > 0 {
		dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
		dst = strconv.AppendInt(dst, u.cacheRead, 10)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

var (
	strFinishStop    = []byte(`"stop"`)
	strFinishLength  = []byte(`"length"`)
	strFinishTools   = []byte(`"tool_calls"`)
	strFinishFilter  = []byte(`"content_filter"`)
	strChatObject    = []byte(`,"object":"chat.completion","created":`)
	strChunkObject   = []byte(`,"object":"chat.completion.chunk","created":`)
	strChunkOpen     = []byte(`{"index":0,"delta":{`)
	strChunkClose    = []byte(`},"logprobs":null,"finish_reason":null}]}`)
	strToolCallOpen  = []byte(`"tool_calls":[{"index":`)
	strArgumentsOpen = []byte(`,"function":{"arguments":`)
)

// finishReason maps a stop_reason (a raw JSON string) onto OpenAI's finish_reason.
func finishReason(raw []byte) []byte {
	switch string(raw) {
	case `"max_tokens"`, `"model_context_window_exceeded"`:
		return strFinishLength
	case `"tool_use"`:
		return strFinishTools
	case `"refusal"`:
		return strFinishFilter
	}
	// end_turn, stop_sequence, pause_turn, and reasons yet to come.
	return strFinishStop
}

// arrayIter walks the elements of a JSON array that jsonscan has already validated.
type arrayIter struct {
	b   []byte
	pos int
}

func (a *arrayIter) reset(b []byte) bool {
	*a = arrayIter{b: b, pos: 1}
	return len(b) >= 2 && b[0] == '['
}

func (a *arrayIter) next() ([]byte, bool) {
	b := a.b
	i := jsonscan.SkipSpace(b, a.pos)
	if i < len(b) && b[i] == ',' {
		i = jsonscan.SkipSpace(b, i+1)
	}
	if i >= len(b) || b[i] == ']' {
		return nil, false
	}
	e, err := jsonscan.Skip(b, i)
	if err != nil {
		return nil, false
	}
	a.pos = e
	return b[i:e], true
}

// contentBlock is the part of a content block the translation reads; values are raw.
type contentBlock struct {
	typ, text, id, name, input, thinking, signature, data, citations []byte
}

func (c *contentBlock) read(raw []byte) bool {
	*c = contentBlock{}
	var it jsonscan.Iter
	if it.Reset(raw) != nil {
		return false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return it.Err() == nil
		}
		switch string(k) {
		case "type":
			c.typ = v
		case "text":
			c.text = v
		case "id":
			c.id = v
		case "name":
			c.name = v
		case "input":
			c.input = v
		case "thinking":
			c.thinking = v
		case "signature":
			c.signature = v
		case "data":
			c.data = v
		case "citations":
			c.citations = v
		}
	}
}

// appendChatCompletion appends the chat.completion for a Messages API answer and reads
// its usage: text blocks joined as the message content, tool_use blocks as tool_calls
// with the input object as the arguments string, thinking blocks' text joined as
// reasoning_content (the field vLLM and DeepSeek answer thinking in) and the thinking
// and redacted_thinking blocks as they came as thinking_blocks (LiteLLM's field), for
// the client to send back in a tool-use loop, and the text blocks' web search
// citations as annotations (appendAnnotations), and the tier usage names as
// service_tier. Server tool blocks (server_tool_use, web_search_tool_result, an error
// one included) are Anthropic's own work: the client declared no such function, and
// the text answers from what the searches gave; u counts them (Usage.WebSearches). An
// answer without usage sets res's NoUsage (res not nil) and OutputBytes, the size of
// its content's generated text. ok is false when body is not a Messages API answer.
func appendChatCompletion(dst, body []byte, created int64, u *Usage, res *Result) ([]byte, bool) {
	var id, model, content, stop []byte
	var au anthropicUsage
	usage := false
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return dst, false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			if it.Err() != nil || jsonscan.SkipSpace(body, it.End()) != len(body) {
				return dst, false
			}
			break
		}
		switch string(k) {
		case "id":
			id = v
		case "model":
			model = v
		case "content":
			content = v
		case "stop_reason":
			stop = v
		case "usage":
			usage = usage || !usageNone(v)
			au.read(v)
		}
	}
	var arr arrayIter
	if !jsonscan.IsString(id) || !jsonscan.IsString(model) || !arr.reset(content) {
		return dst, false
	}
	dst = append(dst, `{"id":`...)
	dst = append(dst, id...)
	dst = append(dst, strChatObject...)
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"model":`...)
	dst = append(dst, model...)
	dst = append(dst, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)

	var cb contentBlock
	mark := len(dst)
	dst = append(dst, '"')
	texts, tools, thoughts, redacted, cited := 0, 0, 0, 0, 0
	for {
		el, ok := arr.next()
		if !ok {
			break
		}
		if !cb.read(el) {
			return dst, false
		}
		switch string(cb.typ) {
		case `"text"`:
			if !jsonscan.IsString(cb.text) {
				return dst, false
			}
			dst = append(dst, cb.text[1:len(cb.text)-1]...)
			texts++
			if len(cb.citations) > 2 && cb.citations[0] == '[' {
				cited++
			}
		case `"tool_use"`:
			tools++
		case `"thinking"`:
			if !jsonscan.IsString(cb.thinking) || len(cb.signature) > 0 && !jsonscan.IsString(cb.signature) {
				return dst, false
			}
			thoughts++
		case `"redacted_thinking"`:
			if !jsonscan.IsString(cb.data) {
				return dst, false
			}
			redacted++
		}
	}
	if texts == 0 {
		dst = append(dst[:mark], "null"...)
	} else {
		dst = append(dst, '"')
	}
	if thoughts > 0 {
		dst = append(dst, `,"reasoning_content":"`...)
		arr.reset(content)
		for {
			el, ok := arr.next()
			if !ok {
				break
			}
			cb.read(el)
			if string(cb.typ) == `"thinking"` {
				dst = append(dst, cb.thinking[1:len(cb.thinking)-1]...)
			}
		}
		dst = append(dst, '"')
	}
	if thoughts+redacted > 0 {
		dst = append(dst, `,"thinking_blocks":[`...)
		arr.reset(content)
		n := 0
		for {
			el, ok := arr.next()
			if !ok {
				break
			}
			cb.read(el)
			if string(cb.typ) != `"thinking"` && string(cb.typ) != `"redacted_thinking"` {
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = appendThinkingBlock(dst, &cb)
		}
		dst = append(dst, ']')
	}
	if tools > 0 {
		dst = append(dst, `,"tool_calls":[`...)
		arr.reset(content)
		n := 0
		for {
			el, ok := arr.next()
			if !ok {
				break
			}
			cb.read(el)
			if string(cb.typ) != `"tool_use"` {
				continue
			}
			if !jsonscan.IsString(cb.id) || !jsonscan.IsString(cb.name) {
				return dst, false
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, `{"id":`...)
			dst = append(dst, cb.id...)
			dst = append(dst, `,"type":"function","function":{"name":`...)
			dst = append(dst, cb.name...)
			dst = append(dst, `,"arguments":`...)
			if len(cb.input) == 0 {
				cb.input = strEmptyObject
			}
			dst = appendQuotedCompact(dst, cb.input)
			dst = append(dst, "}}"...)
		}
		dst = append(dst, ']')
	}
	if cited > 0 {
		dst = appendAnnotations(dst, content)
	}
	dst = append(dst, `,"refusal":null},"logprobs":null,"finish_reason":`...)
	dst = append(dst, finishReason(stop)...)
	dst = append(dst, `}],"usage":`...)
	dst = appendOpenAIUsage(dst, &au)
	// After usage, where OpenAI's answers have it.
	dst = appendServiceTier(dst, &au)
	*u = au.usage()
	u.Paused = string(stop) == `"pause_turn"`
	if !usage && res != nil {
		res.NoUsage, res.OutputBytes = true, contentBytes(content)
	}
	return append(dst, '}'), true
}

// appendAnnotations appends message.annotations for the text blocks of content, the
// answer's validated blocks: a url_citation for each of their web search citations
// (web_search_result_location), covering its block's span of message.content. OpenAI's
// indexes count characters as Python does, in Unicode code points (neither UTF-8
// bytes nor UTF-16 units); Anthropic's citations carry no offsets of their own, a
// citation belonging to the text block it came in.
func appendAnnotations(dst, content []byte) []byte {
	dst = append(dst, `,"annotations":[`...)
	var blocks, cites arrayIter
	var cb contentBlock
	blocks.reset(content)
	var pos int64
	n := 0
	for {
		el, ok := blocks.next()
		if !ok {
			break
		}
		cb.read(el)
		if string(cb.typ) != `"text"` {
			continue
		}
		end := pos + stringRunes(cb.text)
		if cites.reset(cb.citations) {
			for {
				c, ok := cites.next()
				if !ok {
					break
				}
				url, title, ok := webCitation(c)
				if !ok {
					continue
				}
				if n > 0 {
					dst = append(dst, ',')
				}
				n++
				dst = appendURLCitation(dst, pos, end, url, title)
			}
		}
		pos = end
	}
	return append(dst, ']')
}

// webCitation reads a citation's url and title, raw JSON strings; ok is false for one
// that is not a web search citation with a url (a document's has no url to give). A
// title that is not a string (the API's may be null) is the empty string, OpenAI's
// being required.
func webCitation(c []byte) (url, title []byte, ok bool) {
	var typ []byte
	var it jsonscan.Iter
	if it.Reset(c) != nil {
		return nil, nil, false
	}
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "type":
			typ = v
		case "url":
			url = v
		case "title":
			title = v
		}
	}
	if string(typ) != `"web_search_result_location"` || !jsonscan.IsString(url) {
		return nil, nil, false
	}
	if !jsonscan.IsString(title) {
		title = strEmptyString
	}
	return url, title, true
}

// appendURLCitation appends one of OpenAI's url_citation annotations.
func appendURLCitation(dst []byte, start, end int64, url, title []byte) []byte {
	dst = append(dst, `{"type":"url_citation","url_citation":{"start_index":`...)
	dst = strconv.AppendInt(dst, start, 10)
	dst = append(dst, `,"end_index":`...)
	dst = strconv.AppendInt(dst, end, 10)
	dst = append(dst, `,"url":`...)
	dst = append(dst, url...)
	dst = append(dst, `,"title":`...)
	dst = append(dst, title...)
	return append(dst, "}}"...)
}

// stringRunes is the number of Unicode code points in the text the raw JSON string s
// holds, counted in place: an escape is one, and so are a surrogate pair's two
// escapes; a byte that is not UTF-8 is one, as encoding/json decodes it to U+FFFD.
func stringRunes(s []byte) int64 {
	if len(s) < 2 {
		return 0
	}
	s = s[1 : len(s)-1]
	var n int64
	for i := 0; i < len(s); n++ {
		switch c := s[i]; {
		case c < utf8.RuneSelf && c != '\\':
			i++
		case c == '\\':
			i += escapeLen(s[i:])
		default:
			_, size := utf8.DecodeRune(s[i:])
			i += size
		}
	}
	return n
}

// escapeLen is the length of the escape e begins with: a surrogate pair's two \u
// escapes together, as they are one code point.
func escapeLen(e []byte) int {
	if len(e) < 6 || e[1] != 'u' {
		return min(2, len(e))
	}
	if r, ok := hex4(e[2:6]); ok && r >= 0xD800 && r < 0xDC00 && len(e) >= 12 && e[6] == '\\' && e[7] == 'u' {
		if r2, ok := hex4(e[8:12]); ok && r2 >= 0xDC00 && r2 < 0xE000 {
			return 12
		}
	}
	return 6
}

// hex4 reads four hex digits.
func hex4(h []byte) (rune, bool) {
	var r rune
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			r = r<<4 | rune(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// appendThinkingBlock appends a thinking or redacted_thinking block of the answer in
// the shape the Messages API takes back: type, thinking and signature, or type and
// data.
func appendThinkingBlock(dst []byte, cb *contentBlock) []byte {
	if string(cb.typ) == `"redacted_thinking"` {
		dst = append(dst, `{"type":"redacted_thinking","data":`...)
		dst = append(dst, cb.data...)
		return append(dst, '}')
	}
	dst = append(dst, `{"type":"thinking","thinking":`...)
	dst = append(dst, cb.thinking...)
	if len(cb.signature) > 0 {
		dst = append(dst, `,"signature":`...)
		dst = append(dst, cb.signature...)
	}
	return append(dst, '}')
}

// appendQuotedCompact appends raw, a validated JSON value, as a JSON string with the
// insignificant whitespace left out: tool arguments read the same as OpenAI's own.
func appendQuotedCompact(dst, raw []byte) []byte {
	dst = append(dst, '"')
	in := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case in && c == '\\' && i+1 < len(raw):
			i++
			dst = append(dst, '\\', '\\')
			if e := raw[i]; e == '"' || e == '\\' {
				dst = append(dst, '\\', e)
			} else {
				dst = append(dst, e)
			}
		case c == '"':
			in = !in
			dst = append(dst, '\\', '"')
		case !in && (c == ' ' || c == '\n' || c == '\t' || c == '\r'):
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// anthropicStream turns the Messages API's event stream into chat.completion.chunk
// events, one chunk per event that carries something:
//
//	message_start                      → the role chunk
//	content_block_start (tool_use)     → tool_calls delta with id, name, empty arguments
//	content_block_delta (text_delta)   → content delta
//	content_block_delta (input_json_delta) → tool_calls arguments delta
//	content_block_delta (thinking_delta)   → reasoning_content delta
//	content_block_stop (tool_use)      → arguments "{}" when none came before
//	content_block_stop (thinking)      → thinking_blocks delta: the block, signature and all
//	content_block_start (redacted_thinking) → thinking_blocks delta with the block
//	content_block_stop (text with web search citations) → annotations delta
//	message_delta                      → the finish_reason chunk
//	message_stop                       → the usage chunk (choices: []), then [DONE]
//	error                              → Next fails with ErrStreamCut
//
// ping, signature_delta, citations_delta (kept for its block's annotations delta),
// server tool blocks (server_tool_use with its input_json_delta, web_search_tool_result:
// Anthropic's own searches, no call of the client's), other content_block_stop events
// and unknown events (the API adds types over time) are skipped. Chunks are written
// into one reused buffer: no allocation per chunk. A thinking block's text is kept
// until the block ends, so that its thinking_blocks delta holds what the client must
// send back (LiteLLM's clients put the block together from the thinking_blocks deltas
// alone). A text block's citations come before or among its text; its annotations go
// when it ends, once its span of the content is known, as OpenAI's search models send
// theirs after the text they cite. Every chunk names the service tier once usage has
// (tierHead).
type anthropicStream struct {
	// r holds the backend's secrets (its key and header values), masked in the
	// messages of error events and of a bare error object.
	r *sseReader
	// head is every chunk's opening up to and including `"choices":[`, the service
	// tier among its members once usage names one; headTier is where the tier goes:
	// after model.
	head     []byte
	headTier int
	out      []byte
	// tools holds, by tool call ordinal, each tool_use block.
	tools []toolBlock
	// think is the thinking block under way, if any.
	think thinkBlock
	// runes counts the code points of the content sent so far, which annotations'
	// indexes count in (appendAnnotations).
	runes int64
	// cite is the text block under way and its web search citations.
	cite    citeBlock
	usage   anthropicUsage
	created int64
	started bool
	stopped bool
	done    bool
	// first is the chunk prime read, which Next hands out first.
	first  Event
	primed bool
}

// toolBlock is a tool_use block of the stream: its content block index, and whether
// any of its arguments went out. A tool called with no arguments streams as input {}
// and one input_json_delta with an empty partial_json; OpenAI's clients parse the
// arguments they put together, so such a call must still end up with "{}".
type toolBlock struct {
	index int64
	args  bool
}

// thinkBlock is a thinking block of the stream: its content block index, and its
// thinking text and signature so far, each the inside of a JSON string (the deltas'
// raw strings without their quotes, which join into one).
type thinkBlock struct {
	open      bool
	index     int64
	text, sig []byte
}

// citeBlock is a text block of the stream: its content block index, where it starts
// in the content (in code points), and its web search citations so far, each one's
// url and title members (`"url":…,"title":…`) in list, ending at its offset in ends.
type citeBlock struct {
	open         bool
	index, start int64
	list         []byte
	ends         []int
}

// add keeps c, a citation of the block, when it is a web search citation.
func (b *citeBlock) add(c []byte) {
	url, title, ok := webCitation(c)
	if !ok {
		return
	}
	b.list = append(b.list, `"url":`...)
	b.list = append(b.list, url...)
	b.list = append(b.list, `,"title":`...)
	b.list = append(b.list, title...)
	b.ends = append(b.ends, len(b.list))
}

// maxPooledThinking bounds the thinking text buffer a pooled stream keeps: a long
// thought's buffer goes with its stream rather than staying with every pooled one.
const maxPooledThinking = 64 << 10

var anthropicStreamPool = sync.Pool{New: func() any {
	return &anthropicStream{head: make([]byte, 0, 256), out: make([]byte, 0, 512)}
}}

func acquireAnthropicStream() *anthropicStream {
	s := anthropicStreamPool.Get().(*anthropicStream)
	s.r = acquireSSE()
	return s
}

func (s *anthropicStream) reset() {
	s.head, s.out, s.tools = s.head[:0], s.out[:0], s.tools[:0]
	s.think = thinkBlock{text: s.think.text[:0], sig: s.think.sig[:0]}
	if cap(s.think.text) > maxPooledThinking {
		s.think.text = nil
	}
	// A thinking block's whole text and signature go out in one chunk when the
	// block ends (its thinking_blocks delta), so out grows to the longest block
	// relayed: a buffer grown for one long event goes with its stream, as the
	// reader's do (maxPooledBuffer), not to every later one.
	if cap(s.out) > maxPooledBuffer {
		s.out = nil
	}
	if cap(s.head) > maxPooledBuffer {
		s.head = nil
	}
	if cap(s.think.sig) > maxPooledBuffer {
		s.think.sig = nil
	}
	s.runes = 0
	s.cite = citeBlock{list: s.cite.list[:0], ends: s.cite.ends[:0]}
	if cap(s.cite.list) > maxPooledBuffer {
		s.cite = citeBlock{}
	}
	s.usage = anthropicUsage{}
	s.headTier = 0
	s.created = 0
	s.started, s.stopped, s.done = false, false, false
	s.first, s.primed = Event{}, false
}

// prime reads the stream up to its first chunk. The API may answer 200 and then an
// error event (overloaded_error, above all) before message_start; read here, that error
// is Send's, before any byte has gone to the client, while a retry can still help.
func (s *anthropicStream) prime() error {
	if err := s.Next(&s.first); err != nil {
		return err
	}
	s.primed = true
	return nil
}

// NotifyWait implements Waiter.
func (s *anthropicStream) NotifyWait(fn func() error) bool { return s.r.NotifyWait(fn) }

// NotifySilence implements SilenceNotifier.
func (s *anthropicStream) NotifySilence(every time.Duration, fn func() error) bool {
	return s.r.NotifySilence(every, fn)
}

// Abort implements Aborter.
func (s *anthropicStream) Abort() { s.r.Abort() }

// Close implements Events.
func (s *anthropicStream) Close() error {
	err := s.r.Close()
	s.r = nil
	s.reset()
	anthropicStreamPool.Put(s)
	return err
}

// errStreamBad is a stream whose events are not the Messages API's.
var errStreamBad = errors.Join(ErrStreamCut, ErrBadResponse)

// Next implements Events.
func (s *anthropicStream) Next(ev *Event) error {
	if s.primed {
		s.primed = false
		*ev = s.first
		return nil
	}
	*ev = Event{}
	if s.done {
		return io.EOF
	}
	if s.stopped {
		s.done = true
		ev.Done = true
		return nil
	}
	for {
		if err := s.r.readEvent(); err != nil {
			return s.r.streamErr(err)
		}
		if len(s.r.data) == 0 {
			if s.r.ping && s.started {
				ev.KeepAlive = true
				return nil
			}
			continue
		}
		emitted, err := s.translate(s.r.data, ev)
		if err != nil {
			return err
		}
		if emitted {
			return nil
		}
	}
}

// streamEvent is the part of an event's data the translation reads; values are raw.
type streamEvent struct {
	typ, index, delta, block, message, usage, err []byte
}

func (e *streamEvent) read(data []byte) bool {
	*e = streamEvent{}
	var it jsonscan.Iter
	if it.Reset(data) != nil {
		return false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return it.Err() == nil
		}
		switch string(k) {
		case "type":
			e.typ = v
		case "index":
			e.index = v
		case "delta":
			e.delta = v
		case "content_block":
			e.block = v
		case "message":
			e.message = v
		case "usage":
			e.usage = v
		case "error":
			e.err = v
		}
	}
}

// translate turns one event into at most one chunk; emitted says whether ev holds one.
func (s *anthropicStream) translate(data []byte, ev *Event) (emitted bool, err error) {
	var e streamEvent
	if !e.read(data) {
		return false, errStreamBad
	}
	typ := e.typ
	if len(typ) == 0 {
		// The data's type is the spec's; the event line is its copy, used when a proxy
		// has stripped the other.
		typ = s.r.name
	} else if jsonscan.IsString(typ) {
		typ = typ[1 : len(typ)-1]
	}
	switch string(typ) {
	case "ping":
		// Passed on as a keep-alive once the stream has begun; before that, the
		// stream is being primed (an error event there can still be retried).
		ev.KeepAlive = s.started
		return s.started, nil
	case "error":
		return false, streamError(e.err, s.r.secrets)
	case "message_start":
		if s.started {
			return false, nil
		}
		return s.start(e.message, ev)
	}
	if !s.started {
		if isKnownEvent(typ) {
			return false, errStreamBad
		}
		return false, nil
	}
	switch string(typ) {
	case "content_block_start":
		return s.blockStart(&e, ev)
	case "content_block_stop":
		return s.blockStop(&e, ev)
	case "content_block_delta":
		return s.blockDelta(&e, ev)
	case "message_delta":
		if len(e.usage) > 0 {
			s.usage.read(e.usage)
			s.tierHead()
		}
		stop, _ := jsonscan.Field(e.delta, "stop_reason")
		if !jsonscan.IsString(stop) {
			return false, nil
		}
		s.out = append(s.out[:0], s.head...)
		s.out = append(s.out, `{"index":0,"delta":{},"logprobs":null,"finish_reason":`...)
		s.out = append(s.out, finishReason(stop)...)
		s.out = append(s.out, "}]}"...)
		ev.Data = s.out
		return true, nil
	case "message_stop":
		// The Messages API's last event: what follows is the body's end, which the
		// reader's Close drains as after OpenAI's [DONE].
		s.stopped, s.r.done = true, true
		s.out = append(s.out[:0], s.head...)
		s.out = append(s.out, `],"usage":`...)
		s.out = appendOpenAIUsage(s.out, &s.usage)
		s.out = append(s.out, '}')
		ev.Data = s.out
		ev.UsageOnly, ev.HasUsage, ev.Usage = true, true, s.usage.usage()
		return true, nil
	}
	return false, nil
}

func isKnownEvent(typ []byte) bool {
	switch string(typ) {
	case "content_block_start", "content_block_delta", "message_delta", "message_stop":
		return true
	}
	return false
}

// start reads message_start: the id and model every chunk repeats, and the prompt's
// usage, and emits the role chunk.
func (s *anthropicStream) start(msg []byte, ev *Event) (bool, error) {
	var id, model []byte
	var it jsonscan.Iter
	if it.Reset(msg) != nil {
		return false, errStreamBad
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "id":
			id = v
		case "model":
			model = v
		case "usage":
			s.usage.read(v)
		}
	}
	if !jsonscan.IsString(id) || !jsonscan.IsString(model) {
		return false, errStreamBad
	}
	s.started = true
	s.head = append(s.head[:0], `{"id":`...)
	s.head = append(s.head, id...)
	s.head = append(s.head, strChunkObject...)
	s.head = strconv.AppendInt(s.head, s.created, 10)
	s.head = append(s.head, `,"model":`...)
	s.head = append(s.head, model...)
	s.headTier = len(s.head)
	s.head = append(s.head, `,"choices":[`...)
	s.tierHead()
	s.out = append(s.out[:0], s.head...)
	s.out = append(s.out, strChunkOpen...)
	s.out = append(s.out, `"role":"assistant","content":""`...)
	s.out = append(s.out, strChunkClose...)
	ev.Data = s.out
	// The prompt's tokens, exact from the start: what a stream cut before its usage
	// chunk is settled with. The output count here (Anthropic writes 1) is none yet.
	ev.Usage, ev.SoFar = s.usage.usage(), true
	ev.Usage.Output = 0
	return true, nil
}

// tierHead puts the service tier usage names into head: OpenAI names it in every
// chunk, after model. message_start's usage names it; one message_delta names (first,
// or another) goes in the chunks from there on, the finish_reason and usage chunks.
func (s *anthropicStream) tierHead() {
	if s.usage.tier.n == 0 || s.headTier == 0 {
		return
	}
	s.head = appendServiceTier(s.head[:s.headTier], &s.usage)
	s.head = append(s.head, `,"choices":[`...)
}

func (s *anthropicStream) blockStart(e *streamEvent, ev *Event) (bool, error) {
	var cb contentBlock
	if !cb.read(e.block) {
		return false, errStreamBad
	}
	switch string(cb.typ) {
	case `"text"`:
		if !jsonscan.IsString(cb.text) {
			return false, nil
		}
		s.textStart(e.index, cb.citations)
		if len(cb.text) == 2 {
			return false, nil
		}
		s.runes += stringRunes(cb.text)
		s.content(cb.text, ev)
		return true, nil
	case `"tool_use"`:
		idx, ok := jsonscan.Int(e.index)
		if !ok || !jsonscan.IsString(cb.id) || !jsonscan.IsString(cb.name) {
			return false, errStreamBad
		}
		ord := len(s.tools)
		s.tools = append(s.tools, toolBlock{index: idx})
		s.out = append(s.out[:0], s.head...)
		s.out = append(s.out, strChunkOpen...)
		s.out = append(s.out, strToolCallOpen...)
		s.out = strconv.AppendInt(s.out, int64(ord), 10)
		s.out = append(s.out, `,"id":`...)
		s.out = append(s.out, cb.id...)
		s.out = append(s.out, `,"type":"function","function":{"name":`...)
		s.out = append(s.out, cb.name...)
		s.out = append(s.out, `,"arguments":""}}]`...)
		s.out = append(s.out, strChunkClose...)
		ev.Data, ev.Content = s.out, true
		return true, nil
	case `"thinking"`:
		idx, ok := jsonscan.Int(e.index)
		if !ok || !jsonscan.IsString(cb.thinking) || len(cb.signature) > 0 && !jsonscan.IsString(cb.signature) {
			return false, errStreamBad
		}
		s.think = thinkBlock{open: true, index: idx, text: s.think.text[:0], sig: s.think.sig[:0]}
		if len(cb.signature) > 0 {
			s.think.sig = append(s.think.sig, cb.signature[1:len(cb.signature)-1]...)
		}
		if len(cb.thinking) == 2 {
			return false, nil
		}
		// Text the block starts with is part of what the signature covers, so it goes
		// into the thinking_blocks delta too.
		s.think.text = append(s.think.text, cb.thinking[1:len(cb.thinking)-1]...)
		s.reasoning(cb.thinking, ev)
		return true, nil
	case `"redacted_thinking"`:
		if !jsonscan.IsString(cb.data) {
			return false, errStreamBad
		}
		s.out = append(s.out[:0], s.head...)
		s.out = append(s.out, strChunkOpen...)
		s.out = append(s.out, `"thinking_blocks":[`...)
		s.out = appendThinkingBlock(s.out, &cb)
		s.out = append(s.out, ']')
		s.out = append(s.out, strChunkClose...)
		ev.Data, ev.Content = s.out, true
		return true, nil
	}
	// Server-side tool blocks have no OpenAI form.
	return false, nil
}

// textStart opens the text block at content block index raw, taking the citations
// it starts with (an array, when it has any).
func (s *anthropicStream) textStart(raw, citations []byte) {
	idx, ok := jsonscan.Int(raw)
	s.cite = citeBlock{open: ok, index: idx, start: s.runes, list: s.cite.list[:0], ends: s.cite.ends[:0]}
	var a arrayIter
	if !ok || !a.reset(citations) {
		return
	}
	for {
		c, ok := a.next()
		if !ok {
			return
		}
		s.cite.add(c)
	}
}

func (s *anthropicStream) blockDelta(e *streamEvent, ev *Event) (bool, error) {
	var typ, text, partial, thought, sig, citation []byte
	var it jsonscan.Iter
	if it.Reset(e.delta) != nil {
		return false, errStreamBad
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "type":
			typ = v
		case "text":
			text = v
		case "partial_json":
			partial = v
		case "thinking":
			thought = v
		case "signature":
			sig = v
		case "citation":
			citation = v
		}
	}
	switch string(typ) {
	case `"text_delta"`:
		if !jsonscan.IsString(text) {
			return false, errStreamBad
		}
		if len(text) == 2 {
			return false, nil
		}
		s.runes += stringRunes(text)
		s.content(text, ev)
		return true, nil
	case `"input_json_delta"`:
		if !jsonscan.IsString(partial) {
			return false, errStreamBad
		}
		ord := s.tool(e.index)
		if ord < 0 || len(partial) == 2 {
			return false, nil
		}
		s.tools[ord].args = true
		s.arguments(ord, partial, ev)
		return true, nil
	case `"thinking_delta"`:
		if !jsonscan.IsString(thought) {
			return false, errStreamBad
		}
		if !s.inThinking(e.index) || len(thought) == 2 {
			return false, nil
		}
		s.think.text = append(s.think.text, thought[1:len(thought)-1]...)
		s.reasoning(thought, ev)
		return true, nil
	case `"signature_delta"`:
		if !jsonscan.IsString(sig) {
			return false, errStreamBad
		}
		if s.inThinking(e.index) {
			s.think.sig = append(s.think.sig, sig[1:len(sig)-1]...)
		}
		return false, nil
	case `"citations_delta"`:
		if s.inText(e.index) {
			s.cite.add(citation)
		}
		return false, nil
	}
	return false, nil
}

// inText reports whether content block index raw is the text block under way.
func (s *anthropicStream) inText(raw []byte) bool {
	idx, ok := jsonscan.Int(raw)
	return ok && s.cite.open && s.cite.index == idx
}

// annotations emits the annotations delta of the text block that ended: a
// url_citation for each of its web search citations, covering the block's span of
// the content sent so far.
func (s *anthropicStream) annotations(ev *Event) {
	s.out = append(s.out[:0], s.head...)
	s.out = append(s.out, strChunkOpen...)
	s.out = append(s.out, `"annotations":[`...)
	from := 0
	for i, end := range s.cite.ends {
		if i > 0 {
			s.out = append(s.out, ',')
		}
		s.out = append(s.out, `{"type":"url_citation","url_citation":{"start_index":`...)
		s.out = strconv.AppendInt(s.out, s.cite.start, 10)
		s.out = append(s.out, `,"end_index":`...)
		s.out = strconv.AppendInt(s.out, s.runes, 10)
		s.out = append(s.out, ',')
		s.out = append(s.out, s.cite.list[from:end]...)
		s.out = append(s.out, "}}"...)
		from = end
	}
	s.out = append(s.out, ']')
	s.out = append(s.out, strChunkClose...)
	// Not generated text: the tokens it cites went out before it.
	ev.Data = s.out
}

// inThinking reports whether content block index raw is the thinking block under way.
func (s *anthropicStream) inThinking(raw []byte) bool {
	idx, ok := jsonscan.Int(raw)
	return ok && s.think.open && s.think.index == idx
}

// reasoning emits a reasoning_content delta holding text, a raw JSON string. Thinking
// tokens are generated tokens: the chunk counts as content (the first token for TTFT).
func (s *anthropicStream) reasoning(text []byte, ev *Event) {
	s.out = append(s.out[:0], s.head...)
	s.out = append(s.out, strChunkOpen...)
	s.out = append(s.out, `"reasoning_content":`...)
	s.out = append(s.out, text...)
	s.out = append(s.out, strChunkClose...)
	ev.Data, ev.Content, ev.OutputBytes = s.out, true, len(text)-2
}

// thinkingDone emits the thinking_blocks delta of the thinking block that ended: its
// whole text and its signature, which signature_delta gave just before the end.
func (s *anthropicStream) thinkingDone(ev *Event) {
	s.think.open = false
	s.out = append(s.out[:0], s.head...)
	s.out = append(s.out, strChunkOpen...)
	s.out = append(s.out, `"thinking_blocks":[{"type":"thinking","thinking":"`...)
	s.out = append(s.out, s.think.text...)
	s.out = append(s.out, '"')
	if len(s.think.sig) > 0 {
		s.out = append(s.out, `,"signature":"`...)
		s.out = append(s.out, s.think.sig...)
		s.out = append(s.out, '"')
	}
	s.out = append(s.out, "}]"...)
	s.out = append(s.out, strChunkClose...)
	// Generated output even when its text is left out (Opus 4.7's omitted display):
	// billed thinking, for TTFT and for what a hang-up keeps charged.
	ev.Data, ev.Content = s.out, true
}

// blockStop ends a content block: a tool_use block none of whose arguments went out
// gets "{}", as the non-streamed answer has for the same call; a thinking block goes
// out whole in thinking_blocks; a text block with web search citations gives their
// annotations.
func (s *anthropicStream) blockStop(e *streamEvent, ev *Event) (bool, error) {
	if s.inThinking(e.index) {
		s.thinkingDone(ev)
		return true, nil
	}
	if s.inText(e.index) {
		s.cite.open = false
		if len(s.cite.ends) == 0 {
			return false, nil
		}
		s.annotations(ev)
		return true, nil
	}
	ord := s.tool(e.index)
	if ord < 0 || s.tools[ord].args {
		return false, nil
	}
	s.tools[ord].args = true
	s.arguments(ord, strQuotedEmptyObject, ev)
	return true, nil
}

// tool returns the ordinal of the tool_use block at content block index raw, or -1.
func (s *anthropicStream) tool(raw []byte) int {
	idx, ok := jsonscan.Int(raw)
	if !ok {
		return -1
	}
	for i := range s.tools {
		if s.tools[i].index == idx {
			return i
		}
	}
	return -1
}

var strQuotedEmptyObject = []byte(`"{}"`)

// arguments emits a tool_calls delta adding args, a raw JSON string, to the arguments
// of tool call ord.
func (s *anthropicStream) arguments(ord int, args []byte, ev *Event) {
	s.out = append(s.out[:0], s.head...)
	s.out = append(s.out, strChunkOpen...)
	s.out = append(s.out, strToolCallOpen...)
	s.out = strconv.AppendInt(s.out, int64(ord), 10)
	s.out = append(s.out, strArgumentsOpen...)
	s.out = append(s.out, args...)
	s.out = append(s.out, "}}]"...)
	s.out = append(s.out, strChunkClose...)
	ev.Data, ev.Content, ev.OutputBytes = s.out, true, len(args)-2
}

// content emits a content delta holding text, a raw JSON string.
func (s *anthropicStream) content(text []byte, ev *Event) {
	s.out = append(s.out[:0], s.head...)
	s.out = append(s.out, strChunkOpen...)
	s.out = append(s.out, `"content":`...)
	s.out = append(s.out, text...)
	s.out = append(s.out, strChunkClose...)
	ev.Data, ev.Content, ev.OutputBytes = s.out, true, len(text)-2
}

// streamFailure is an error event in the middle of an Anthropic stream, such as
// overloaded_error; it matches ErrStreamCut.
type streamFailure struct{ typ, msg string }

func (e *streamFailure) Error() string {
	return "upstream stream failed: " + e.typ + ": " + e.msg
}

func (e *streamFailure) Unwrap() error { return ErrStreamCut }

// UpstreamDetail is the error event's type and message (masked), for the client's
// error event.
func (e *streamFailure) UpstreamDetail() string {
	if e.msg == "" {
		return e.typ
	}
	return e.typ + ": " + e.msg
}

// streamError reads an error event's {"type","message"}, masking any of secrets.
func streamError(raw []byte, secrets [][]byte) error {
	e := &streamFailure{typ: "unknown_error"}
	var it jsonscan.Iter
	if it.Reset(raw) == nil {
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			m, ok := jsonscan.AppendUnquote(nil, v)
			if !ok {
				continue
			}
			switch string(k) {
			case "type":
				e.typ = string(m)
			case "message":
				// Logged by the gateway: the backend's key and header values never go
				// with it.
				e.msg = string(maskAll(m, secrets))
			}
		}
	}
	return e
}

var _ Events = (*anthropicStream)(nil)
