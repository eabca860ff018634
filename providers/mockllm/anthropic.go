package mockllm

import (
	"bytes"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// toolCall is the tool_use block of an Anthropic answer, when there is one.
type toolCall struct {
	use bool
	// preamble puts a short text block before the tool_use block, as models do when
	// they choose a tool themselves (tool_choice auto).
	preamble bool
	name     []byte // the tool's name as a JSON string, as the request spelled it
	input    []byte // the tool input, a JSON object built from its input_schema; cut short when max_tokens ends it
	text     []byte // scratch: the last user message's text
	// search is the web search server tool's part in the answer.
	search webSearch
}

// thinkingAnswer is the thinking block of an Anthropic answer, when the request turns
// thinking on: a few words of deterministic text, one token each, and a signature
// made from the text, which a later request must send back unchanged.
type thinkingAnswer struct {
	on       bool
	disabled bool   // thinking {"type":"disabled"} was sent
	between  bool   // thinking {"type":"between_tools"} was sent: no up-front thinking
	omit     bool   // display "omitted": the block's text is empty, its tokens still count
	text     []byte // plain words, appended into JSON strings as they are
	sig      []byte
	off      int // stream: how much of text went out
	sent     int // stream: thinking tokens sent
}

// thinkingWords is how many words the thinking text holds after its opening.
const thinkingWords = 6

var thinkingOpening = []byte("Thinking it over:")

// tokens is the thinking text's token count: its opening's three words, and the rest.
func (t *thinkingAnswer) tokens() int {
	if !t.on {
		return 0
	}
	return 3 + thinkingWords
}

// appendThinkingSignature appends the signature of a thinking text: the API's are
// opaque, checked when the block comes back; mockllm's hash the text.
func appendThinkingSignature(dst, text []byte) []byte {
	dst = append(dst, "EqMock"...)
	return strconv.AppendUint(dst, xxhash.Sum64(text), 16)
}

// Tool choice modes.
const (
	choiceAuto = iota
	choiceAny
	choiceTool
	choiceNone
)

// maxPreamble bounds the text before a tool_use block.
const maxPreamble = 8

// jsonPiece is the size of input_json_delta fragments; the real service sends small,
// uneven pieces, so clients must join them before parsing.
const jsonPiece = 12

// parseMessages reads a Messages API request, or on rCountTokens a count_tokens one
// (no max_tokens). Anthropic's API refuses a member it does not define; vLLM's
// pydantic models (anthropic/protocol.py) drop it, and vLLM checks the rest as its
// models do (vllmChecks) rather than as Anthropic's API does (anthropicChecks).
func (st *state) parseMessages(body []byte) *badRequest {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errJSON
	}
	vllm := !st.s.anthropic
	var system, tools, choice, thinking, temperature, topP, topK, outputConfig []byte
	hasMax := false
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if skip, e := st.skipMember(k); e != nil {
			return e
		} else if skip {
			continue
		}
		switch string(k) {
		case "model":
			if !jsonscan.IsString(v) {
				return errBadModel
			}
			if vllm && len(v) == 2 {
				return errModelRequired
			}
			st.modelRaw = v
		case "messages":
			st.messages = v
		case "max_tokens":
			if vllm {
				n, ok := laxInt(v)
				switch {
				case !ok:
					return &badRequest{msg: "max_tokens: Input should be a valid integer"}
				case n < 1:
					return errMaxPositive
				}
				st.maxTokens, hasMax = n, true
				continue
			}
			n, ok := jsonscan.Int(v)
			if !ok {
				return &badRequest{msg: "max_tokens: Input should be a valid integer"}
			}
			if n < 1 {
				return &badRequest{msg: "max_tokens: must be greater than or equal to 1"}
			}
			st.maxTokens, hasMax = n, true
		case "system":
			system = v
		case "temperature", "top_p":
			if vllm {
				if e := st.vllmSampling(k, v); e != nil {
					return e
				}
				continue
			}
			if e := checkUnit(k, v); e != nil {
				return e
			}
			if string(k) == "temperature" {
				temperature = v
			} else {
				topP = v
			}
		case "top_k":
			if !isNull(v) {
				var ok bool
				if vllm {
					_, ok = laxInt(v)
				} else {
					_, ok = jsonscan.Int(v)
				}
				if !ok {
					return &badRequest{msg: "top_k: Input should be a valid integer"}
				}
				topK = v
			}
		case "thinking":
			thinking = v
		case "output_config":
			outputConfig = v
		case "stop_sequences":
			if !st.parseStops(v, true) {
				return &badRequest{msg: "stop_sequences: Input should be a valid list of strings"}
			}
		case "tools":
			tools = v
		case "tool_choice":
			choice = v
		case "stream":
			b, ok := jsonscan.Bool(v)
			if !ok && !(vllm && isNull(v)) {
				return errBadStream
			}
			st.stream = b
		default:
			if !vllm && !messagesKey(k) {
				return errExtraInput(k)
			}
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		return errJSON
	}
	switch {
	case st.modelRaw == nil:
		return &badRequest{msg: "model: Field required"}
	case !hasMax && st.route != rCountTokens:
		return &badRequest{msg: "max_tokens: Field required"}
	case st.messages == nil:
		return &badRequest{msg: "messages: Field required"}
	}
	if vllm {
		// vLLM serves every effort and structured outputs, whatever the model's name.
		st.caps = capXHigh | capMax | capFormat
	} else {
		st.setCaps()
	}
	n, ok := messagesBytes(st.messages)
	if !ok {
		return &badRequest{msg: "messages: Input should be a valid list"}
	}
	if string(bytes.TrimSpace(st.messages)) == "[]" {
		return &badRequest{msg: "messages: at least one message is required"}
	}
	if vllm {
		if e := st.vllmChecks(tools, choice); e != nil {
			return e
		}
	} else if e := st.anthropicChecks(system, tools, thinking, temperature, topP, topK); e != nil {
		return e
	}
	if e := st.parseOutputConfig(outputConfig); e != nil {
		return e
	}
	if !vllm {
		if e := st.checkThinkingEffort(); e != nil {
			return e
		}
		if e := st.checkThinkingBlocks(); e != nil {
			return e
		}
		if system != nil && !jsonscan.IsString(system) {
			if e := st.checkText("system", system); e != nil {
				return e
			}
		}
	}
	h := promptHash(st.s.opts.Seed, 0, false, st.messages)
	n += st.toolsBytes(tools)
	if system != nil {
		n += contentBytes(system)
		h = mix(h ^ xxhash.Sum64(system))
	}
	st.items = append(st.items, item{h: h, tokens: promptTokens(n)})
	st.promptTokens = promptTokens(n)
	st.setStops()
	for _, stop := range st.stops {
		switch {
		case len(stop) == 0 && vllm:
			return errVLLMEmptyStop
		case len(stop) == 0:
			return errEmptyStop
		case len(bytes.TrimSpace(stop)) == 0 && !vllm:
			return errBlankStop
		}
	}
	if e := st.chooseTool(tools, choice, h); e != nil {
		return e
	}
	if !vllm {
		if e := st.parseWebSearch(tools, choice); e != nil {
			return e
		}
	}
	if st.format.on {
		// The schema shapes the final answer: a tool call comes without a preamble,
		// and an answer without one is the JSON value.
		if st.tool.use {
			st.tool.preamble = false
		} else {
			st.format.text = appendSchemaValue(st.format.text[:0], st.format.schema, mix(h^golden), 0)
		}
	}
	return nil
}

// anthropicChecks refuses what Anthropic's API refuses in messages, cache_control
// marks, thinking and sampling.
func (st *state) anthropicChecks(system, tools, thinking, temperature, topP, topK []byte) *badRequest {
	hist := history{tools: tools != nil && !isNull(tools) && string(bytes.TrimSpace(tools)) != "[]"}
	if e := st.checkMessages(&hist); e != nil {
		return e
	}
	if n := hist.marks + cacheMarks(system) + cacheMarks(tools); n > maxCacheMarks {
		return errCacheMarks(n)
	}
	if e := st.parseThinking(thinking, temperature, topP, topK); e != nil {
		return e
	}
	return st.checkDeprecatedSampling(temperature, topP, topK)
}

// The Messages API's refusals of what parseMessages reads, in its words.
var (
	errSystemRole = &badRequest{msg: `messages: Unexpected role "system". The Messages API accepts a top-level ` +
		"`system`" + ` parameter, not "system" as an input message role.`}
	errEmptyStop      = &badRequest{msg: "stop_sequences: each stop sequence must be non-empty"}
	errBlankStop      = &badRequest{msg: "stop_sequences: each stop sequence must contain non-whitespace"}
	errEmptyText      = &badRequest{msg: "messages: text content blocks must be non-empty"}
	errBlankText      = &badRequest{msg: "messages: text content blocks must contain non-whitespace text"}
	errTrailingSpace  = &badRequest{msg: "messages: final assistant content cannot end with trailing whitespace"}
	errEmptySystem    = &badRequest{msg: "system: text content blocks must be non-empty"}
	errBlankSystem    = &badRequest{msg: "system: text content blocks must contain non-whitespace text"}
	errBadTemperature = &badRequest{msg: "temperature: Input should be a valid number"}
	errBadTopP        = &badRequest{msg: "top_p: Input should be a valid number"}
	errTemperature    = &badRequest{msg: "temperature: range: 0..1"}
	errTopP           = &badRequest{msg: "top_p: range: 0..1"}
)

// checkUnit refuses a temperature or top_p outside Anthropic's range, 0 to 1 (OpenAI's
// temperature goes up to 2). The usual spellings (0, 1, 0.7, 1.0) need no ParseFloat.
func checkUnit(key, v []byte) *badRequest {
	if isNull(v) {
		return nil
	}
	if len(v) > 0 && (v[0] == '0' || v[0] == '1') {
		frac, ok := bytes.CutPrefix(v[1:], []byte{'.'})
		if len(v) == 1 || ok && len(frac) > 0 && onlyDigits(frac, v[0] == '1') {
			return nil
		}
	}
	f, ok := jsonscan.Float(v)
	switch {
	case !ok && string(key) == "temperature":
		return errBadTemperature
	case !ok:
		return errBadTopP
	case f >= 0 && f <= 1:
		return nil
	case string(key) == "temperature":
		return errTemperature
	}
	return errTopP
}

// onlyDigits reports whether b is all digits, or all zeros when zeros is true.
func onlyDigits(b []byte, zeros bool) bool {
	for _, c := range b {
		if c < '0' || c > '9' || zeros && c != '0' {
			return false
		}
	}
	return true
}

// checkMessages refuses what the Messages API refuses in messages: a role but user and
// assistant (a system prompt goes in the top-level system; a model with capMidSystem
// takes system messages placed as checkMidSystem says), content that is empty or only
// whitespace, and a final assistant turn (a prefill) that ends in whitespace, or any
// on a model without prefills. The final assistant message alone may be empty.
// checkBlocks checks each message's blocks, the tool-use history among them, into h.
func (st *state) checkMessages(h *history) *badRequest {
	var a jsonscan.Array
	a.Reset(st.messages)
	empty := -1 // an assistant message with empty content, allowed if it is the last
	var last, prevRole, prevContent []byte
	assistant := false
	for i := 0; ; i++ {
		m, ok := a.Next()
		if !ok {
			break
		}
		if empty >= 0 {
			return errEmptyContent(empty)
		}
		role, _ := jsonscan.Field(m, "role")
		switch string(role) {
		case `"user"`:
			assistant = false
		case `"assistant"`:
			assistant = true
		case `"system"`:
			if st.caps&capMidSystem == 0 {
				return errSystemRole
			}
			content, _ := jsonscan.Field(m, "content")
			if e := st.checkMidSystem(h, i, content, prevRole, prevContent, a); e != nil {
				return e
			}
			prevRole, prevContent, assistant = role, content, false
			continue
		default:
			return &badRequest{msg: "messages." + strconv.Itoa(i) + ".role: Input should be 'user' or 'assistant'"}
		}
		content, ok := jsonscan.Field(m, "content")
		if !ok {
			return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content: Field required"}
		}
		if e := st.checkBlocks(h, i, assistant, content); e != nil {
			return e
		}
		switch {
		case string(content) == `""` || string(bytes.TrimSpace(content)) == "[]":
			if !assistant {
				return errEmptyContent(i)
			}
			empty = i
			continue
		}
		if e := st.checkText("messages", content); e != nil {
			return e
		}
		last = content
		prevRole, prevContent = role, content
	}
	if assistant && st.caps&capNoPrefill != 0 {
		return errPrefill
	}
	if assistant && empty < 0 && st.endsInSpace(last) {
		return errTrailingSpace
	}
	return nil
}

// checkMidSystem checks system message i, of content, as the API places one in
// messages: not first, right after a user message (or an assistant message ending
// in server tool use: the turn goes on after it), not after another system message,
// and last or followed by an assistant message (next holds the messages after it);
// its content a non-empty string or text blocks, their cache_control marks counted.
func (st *state) checkMidSystem(h *history, i int, content, prevRole, prevContent []byte, next jsonscan.Array) *badRequest {
	where := "messages." + strconv.Itoa(i)
	switch string(prevRole) {
	case "":
		return &badRequest{msg: where + ": a system message cannot be the first message"}
	case `"system"`:
		return &badRequest{msg: where + ": consecutive system messages are not allowed"}
	case `"assistant"`:
		if !endsInServerToolUse(prevContent) {
			return &badRequest{msg: where + ": a system message must follow a user message, or an assistant message that ends with server tool use"}
		}
	}
	if m, ok := next.Next(); ok {
		// A system message next is refused as such on its own turn.
		if role, _ := jsonscan.Field(m, "role"); string(role) != `"assistant"` && string(role) != `"system"` {
			return &badRequest{msg: where + ": a system message must be the last message or be followed by an assistant message"}
		}
	}
	if len(content) == 0 {
		return &badRequest{msg: where + ".content: Field required"}
	}
	if jsonscan.IsString(content) {
		return st.checkText("messages", content)
	}
	var a jsonscan.Array
	if !a.Reset(content) {
		return &badRequest{msg: where + ".content: Input should be a valid list"}
	}
	for j := 0; ; j++ {
		blk, ok := a.Next()
		if !ok {
			break
		}
		if t, _ := jsonscan.Field(blk, "type"); string(t) != `"text"` {
			return &badRequest{msg: where + ".content." + strconv.Itoa(j) + ".type: a system message takes text blocks only"}
		}
		if _, ok := jsonscan.Field(blk, "cache_control"); ok {
			h.marks++
		}
	}
	if string(bytes.TrimSpace(content)) == "[]" {
		return errEmptyContent(i)
	}
	return st.checkText("messages", content)
}

// endsInServerToolUse reports whether content, an assistant message's, ends with a
// server_tool_use block.
func endsInServerToolUse(content []byte) bool {
	blk, ok := lastBlock(content)
	if !ok {
		return false
	}
	t, _ := jsonscan.Field(blk, "type")
	return string(t) == `"server_tool_use"`
}

// lastBlock is the last element of content, a JSON array (nil when it is empty); ok
// is false when content is no array.
func lastBlock(content []byte) (blk []byte, ok bool) {
	var a jsonscan.Array
	if !a.Reset(content) {
		return nil, false
	}
	for {
		b, more := a.Next()
		if !more {
			return blk, true
		}
		blk = b
	}
}

func errEmptyContent(i int) *badRequest {
	return &badRequest{msg: "messages." + strconv.Itoa(i) + ": all messages must have non-empty content except for the optional final assistant message"}
}

// checkText refuses an empty or whitespace-only text: content that is a string, or a
// text block of content that is an array of blocks. where is the field the error names.
func (st *state) checkText(where string, content []byte) *badRequest {
	if jsonscan.IsString(content) {
		return st.blank(where, content)
	}
	var a jsonscan.Array
	if !a.Reset(content) {
		return nil
	}
	for {
		blk, ok := a.Next()
		if !ok {
			return nil
		}
		if t, _ := jsonscan.Field(blk, "type"); string(t) != `"text"` {
			continue
		}
		if txt, ok := jsonscan.Field(blk, "text"); ok {
			if e := st.blank(where, txt); e != nil {
				return e
			}
		}
	}
}

// blank refuses the JSON string raw when it is empty or only whitespace.
func (st *state) blank(where string, raw []byte) *badRequest {
	dec, _ := appendUnquoted(st.scratch[:0], raw)
	st.scratch = dec
	switch {
	case len(dec) == 0 && where == "system":
		return errEmptySystem
	case len(dec) == 0:
		return errEmptyText
	case len(bytes.TrimSpace(dec)) > 0:
		return nil
	case where == "system":
		return errBlankSystem
	}
	return errBlankText
}

// endsInSpace reports whether content, a string or an array of blocks, ends with a
// text that ends in whitespace.
func (st *state) endsInSpace(content []byte) bool {
	if !jsonscan.IsString(content) {
		blk, ok := lastBlock(content)
		if !ok {
			return false
		}
		if t, _ := jsonscan.Field(blk, "type"); string(t) != `"text"` {
			return false
		}
		content, _ = jsonscan.Field(blk, "text")
	}
	dec, _ := appendUnquoted(st.scratch[:0], content)
	st.scratch = dec
	return len(dec) > 0 && len(bytes.TrimRightFunc(dec, unicode.IsSpace)) < len(dec)
}

// chooseTool decides whether the answer calls a tool: the one tool_choice names, else
// the first whose name the last user message mentions; for "any" the first tool when
// none is mentioned.
func (st *state) chooseTool(tools, choice []byte, h uint64) *badRequest {
	var a jsonscan.Array
	if tools == nil || isNull(tools) {
		return nil
	}
	if !a.Reset(tools) {
		return &badRequest{msg: "tools: Input should be a valid list"}
	}
	if st.s.anthropic {
		if e := uniqueToolNames(tools); e != nil {
			return e
		}
	}
	mode := choiceAuto
	var want []byte
	if choice != nil && !isNull(choice) {
		t, _ := jsonscan.Field(choice, "type")
		switch string(t) {
		case `"auto"`:
		case `"any"`:
			mode = choiceAny
		case `"tool"`:
			mode = choiceTool
			want, _ = jsonscan.Field(choice, "name")
		case `"none"`:
			return nil
		default:
			return &badRequest{msg: "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"}
		}
	}
	if mode == choiceAny || mode == choiceTool {
		switch {
		case st.caps&capNoForcedTool != 0:
			return errForcedTool
		case st.think.on && st.caps&capForcedNoThinking != 0:
			st.think.on = false
		case st.think.on:
			return errThinkingForced
		}
	}
	if mode == choiceAuto {
		st.tool.text = lastUserText(st.tool.text[:0], st.messages)
	}
	var firstName, firstSchema, name, schema []byte
	for {
		t, ok := a.Next()
		if !ok {
			break
		}
		n, _ := jsonscan.Field(t, "name")
		if !jsonscan.IsString(n) {
			return &badRequest{msg: "tools: each tool needs a name"}
		}
		if typ, _ := jsonscan.Field(t, "type"); st.s.anthropic && isServerTool(typ) {
			// The API runs its own tools (parseWebSearch): the answer never calls one.
			continue
		}
		sc, _ := jsonscan.Field(t, "input_schema")
		if firstName == nil {
			firstName, firstSchema = n, sc
		}
		var match bool
		switch mode {
		case choiceTool:
			match = bytes.Equal(n, want)
		case choiceAuto:
			dec, _ := appendUnquoted(st.scratch[:0], n)
			st.scratch = dec
			match = len(dec) > 0 && bytes.Contains(st.tool.text, dec)
		}
		if match {
			name, schema = n, sc
			break
		}
	}
	if name == nil && mode == choiceAny {
		name, schema = firstName, firstSchema
	}
	if name == nil {
		return nil
	}
	st.tool.use = true
	st.tool.preamble = mode == choiceAuto
	st.tool.name = append(st.tool.name[:0], name...)
	st.tool.input = appendToolInput(st.tool.input[:0], schema, h, 0)
	return nil
}

// The Messages API's refusals around extended thinking, in its words.
var (
	errThinkingType   = &badRequest{msg: "thinking: Input tag does not match any of the expected tags: 'adaptive', 'disabled', 'enabled'"}
	errThinkingObject = &badRequest{msg: "thinking: Input should be a valid dictionary or object to extract fields from"}
	errThinkingBudget = &badRequest{msg: "thinking.enabled.budget_tokens: Field required"}
	errThinkingMin    = &badRequest{msg: "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"}
	errThinkingRoom   = &badRequest{msg: "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"}
	errThinkingTemp   = &badRequest{msg: "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"}
	errThinkingTopK   = &badRequest{msg: "`top_k` must be unset when thinking is enabled or in adaptive mode. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"}
	errThinkingTopP   = &badRequest{msg: "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled or in adaptive mode. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"}
	errThinkingForced = &badRequest{msg: "Thinking may not be enabled when `tool_choice` forces tool use."}
)

// errThinkingLast is the API's refusal of an assistant message that ends with a thinking
// block; errThinkingOff ends that of thinking blocks in the last assistant message of a
// request without thinking.
const (
	errThinkingLast = ": The final block in an assistant message cannot be `thinking`."
	errThinkingOff  = ": When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`. " +
		"To use thinking blocks, enable `thinking` in your request."
)

// errThinkingMissing ends the refusal of a tool-use loop whose last assistant turn
// does not begin with its thinking block.
const errThinkingMissing = "When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). " +
	"We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. " +
	"Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"

// parseThinking reads the thinking object as the Messages API does: enabled with a
// budget_tokens of at least 1024 and under max_tokens (not on Opus 4.7 and later),
// adaptive, or disabled (not on the models that always think), with a display; on
// Sonnet 5.5 also between_tools. Absent, the Claude 5 models think as adaptive does.
// With thinking on, the API refuses a temperature but 1, any top_k, and a top_p under
// 0.95. The answer then opens with a thinking block, its text left out when display
// is "omitted"; its tokens count all the same.
func (st *state) parseThinking(raw, temperature, topP, topK []byte) *badRequest {
	if raw == nil || isNull(raw) {
		if st.caps&capThinkByDefault == 0 {
			return nil
		}
		raw = adaptiveThinking
	}
	if raw[0] != '{' {
		return errThinkingObject
	}
	typ, _ := jsonscan.Field(raw, "type")
	switch string(typ) {
	case `"disabled"`:
		if st.noDisable != nil {
			return st.noDisable
		}
		st.think.disabled = true
		return nil
	case `"between_tools"`:
		if st.caps&capBetweenTools == 0 {
			return errThinkingType
		}
		// Its notes between tool calls come back only in later turns: this answer
		// has no up-front thinking, as one with thinking disabled.
		st.think.between = true
		return nil
	case `"adaptive"`:
		if e := st.parseDisplay(raw, errDisplayAdaptive); e != nil {
			return e
		}
	case `"enabled"`:
		b, ok := jsonscan.Field(raw, "budget_tokens")
		if !ok {
			return errThinkingBudget
		}
		n, ok := jsonscan.Int(b)
		switch {
		case !ok:
			return &badRequest{msg: "thinking.enabled.budget_tokens: Input should be a valid integer"}
		case n < 1024:
			return errThinkingMin
		}
		if e := st.parseDisplay(raw, errDisplayEnabled); e != nil {
			return e
		}
		switch {
		case st.caps&capAdaptiveOnly != 0:
			return errThinkingEnabled
		case n >= st.maxTokens && st.route != rCountTokens:
			// count_tokens has no max_tokens to hold the budget.
			return errThinkingRoom
		}
	default:
		return errThinkingType
	}
	if temperature != nil && !isNull(temperature) {
		if f, _ := jsonscan.Float(temperature); f != 1 {
			return errThinkingTemp
		}
	}
	if topK != nil {
		return errThinkingTopK
	}
	if topP != nil && !isNull(topP) {
		if f, _ := jsonscan.Float(topP); f < 0.95 {
			return errThinkingTopP
		}
	}
	st.think.on = true
	st.think.text = append(st.think.text[:0], thinkingOpening...)
	h := mix(promptHash(st.s.opts.Seed, 0, false, st.messages) ^ golden)
	for i := range thinkingWords {
		st.think.text = append(st.think.text, ' ')
		st.think.text = append(st.think.text, words[mix(h+uint64(i))&(vocabSize-1)]...)
	}
	if st.think.omit {
		st.think.sig = appendOmittedSignature(st.think.sig[:0], st.think.text)
	} else {
		st.think.sig = appendThinkingSignature(st.think.sig[:0], st.think.text)
	}
	return nil
}

// adaptiveThinking is what a Claude 5 model does with no thinking field.
var adaptiveThinking = []byte(`{"type":"adaptive"}`)

// checkThinkingBlocks checks the thinking blocks of assistant turns as the API does:
// each signature must be the one its text was given, none may carry cache_control or
// end its turn; with thinking off the last assistant turn may hold none, and with
// thinking on, the last assistant turn of a tool-use loop (its tool_use blocks answered
// by the final user turn's tool_result blocks) must begin with its thinking block.
func (st *state) checkThinkingBlocks() *badRequest {
	var a jsonscan.Array
	a.Reset(st.messages)
	last, lastUser, lastThinking := -1, false, -1
	var lastContent, userContent []byte
	for i := 0; ; i++ {
		m, ok := a.Next()
		if !ok {
			break
		}
		role, _ := jsonscan.Field(m, "role")
		if string(role) == `"system"` {
			// A mid-conversation system message (checkMidSystem): no turn of its own.
			continue
		}
		content, _ := jsonscan.Field(m, "content")
		lastUser = string(role) == `"user"`
		if lastUser {
			userContent = content
			continue
		}
		var e *badRequest
		last, lastContent = i, content
		if lastThinking, e = st.checkAssistant(i, content); e != nil {
			return e
		}
	}
	// between_tools sends its notes between tool calls back as thinking blocks.
	if !st.think.on && !st.think.between && lastThinking >= 0 {
		return &badRequest{msg: "messages." + strconv.Itoa(last) + ".content." + strconv.Itoa(lastThinking) + errThinkingOff}
	}
	if !st.think.on || last < 0 || !lastUser || !hasBlock(userContent, `"tool_result"`) || !hasBlock(lastContent, `"tool_use"`) {
		return nil
	}
	var b jsonscan.Array
	b.Reset(lastContent)
	first, _ := b.Next()
	typ, _ := jsonscan.Field(first, "type")
	if string(typ) == `"thinking"` || string(typ) == `"redacted_thinking"` {
		return nil
	}
	found, _ := appendUnquoted(nil, typ)
	return &badRequest{msg: "messages." + strconv.Itoa(last) + ".content.0.type: Expected `thinking` or `redacted_thinking`, but found `" +
		string(found) + "`. " + errThinkingMissing}
}

// checkAssistant refuses, in assistant message i, a thinking block whose signature is
// missing or is not the one mockllm gave its text (or, for an empty text, one it gave
// a block whose text it omitted), a thinking or redacted_thinking block
// with cache_control, and one that ends the message. It returns the index of the
// message's first thinking or redacted_thinking block, -1 for none.
func (st *state) checkAssistant(i int, content []byte) (int, *badRequest) {
	var a jsonscan.Array
	if !a.Reset(content) {
		return -1, nil
	}
	first, thinkingLast := -1, false
	for j := 0; ; j++ {
		blk, ok := a.Next()
		if !ok {
			break
		}
		t, _ := jsonscan.Field(blk, "type")
		thinkingLast = string(t) == `"thinking"` || string(t) == `"redacted_thinking"`
		if !thinkingLast {
			continue
		}
		if first < 0 {
			first = j
		}
		where := "messages." + strconv.Itoa(i) + ".content." + strconv.Itoa(j)
		if _, ok := jsonscan.Field(blk, "cache_control"); ok {
			typ, _ := appendUnquoted(nil, t)
			return first, &badRequest{msg: where + "." + string(typ) + ".cache_control: Extra inputs are not permitted"}
		}
		if string(t) != `"thinking"` {
			continue
		}
		text, _ := jsonscan.Field(blk, "thinking")
		sig, _ := jsonscan.Field(blk, "signature")
		if !jsonscan.IsString(sig) {
			return first, &badRequest{msg: where + ".thinking.signature: Field required"}
		}
		dec, _ := appendUnquoted(st.scratch[:0], text)
		st.scratch = appendThinkingSignature(dec, dec)
		sig = sig[1 : len(sig)-1]
		// An omitted block comes back with the empty text it was given.
		if !bytes.Equal(st.scratch[len(dec):], sig) && (len(dec) > 0 || !omittedSignatureOK(sig)) {
			return first, &badRequest{msg: where + ": Invalid `signature` in `thinking` block"}
		}
	}
	if thinkingLast {
		return first, &badRequest{msg: "messages." + strconv.Itoa(i) + errThinkingLast}
	}
	return first, nil
}

// hasBlock reports whether content, an array of blocks, holds one of type typ (a JSON
// string).
func hasBlock(content []byte, typ string) bool {
	var a jsonscan.Array
	if !a.Reset(content) {
		return false
	}
	for {
		blk, ok := a.Next()
		if !ok {
			return false
		}
		if t, _ := jsonscan.Field(blk, "type"); string(t) == typ {
			return true
		}
	}
}

// lastUserText appends the text of the last user message: its string content or its
// text blocks. tool_result blocks are not text, so an answer to a tool result is prose.
func lastUserText(dst, messages []byte) []byte {
	var a jsonscan.Array
	a.Reset(messages)
	var content []byte
	for {
		m, ok := a.Next()
		if !ok {
			break
		}
		role, _ := jsonscan.Field(m, "role")
		if string(role) == `"user"` {
			content, _ = jsonscan.Field(m, "content")
		}
	}
	if jsonscan.IsString(content) {
		dst, _ = appendUnquoted(dst, content)
		return dst
	}
	if !a.Reset(content) {
		return dst
	}
	for {
		blk, ok := a.Next()
		if !ok {
			return dst
		}
		if t, _ := jsonscan.Field(blk, "type"); string(t) != `"text"` {
			continue
		}
		if txt, ok := jsonscan.Field(blk, "text"); ok {
			dst, _ = appendUnquoted(dst, txt)
			dst = append(dst, '\n')
		}
	}
}

// maxSchemaDepth bounds the nesting of generated tool input.
const maxSchemaDepth = 8

// appendToolInput builds a JSON object with one value per property of a JSON schema,
// each chosen from the property's enum or type and the prompt hash.
func appendToolInput(dst, schema []byte, h uint64, depth int) []byte {
	dst = append(dst, '{')
	props, ok := jsonscan.Field(schema, "properties")
	var it jsonscan.Iter
	if !ok || depth >= maxSchemaDepth || it.Reset(props) != nil {
		return append(dst, '}')
	}
	for i := 0; ; i++ {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
		dst = appendSchemaValue(dst, v, mix(h+uint64(i+1)*golden), depth)
	}
	return append(dst, '}')
}

func appendSchemaValue(dst, schema []byte, r uint64, depth int) []byte {
	if enum, ok := jsonscan.Field(schema, "enum"); ok {
		var a jsonscan.Array
		if a.Reset(enum) {
			if v, ok := a.Next(); ok {
				return append(dst, v...)
			}
		}
	}
	typ, _ := jsonscan.Field(schema, "type")
	if len(typ) > 0 && typ[0] == '[' {
		var a jsonscan.Array
		a.Reset(typ)
		typ, _ = a.Next()
	}
	switch string(typ) {
	case `"integer"`:
		return strconv.AppendInt(dst, int64(r%100), 10)
	case `"number"`:
		dst = strconv.AppendInt(dst, int64(r%100), 10)
		return append(dst, ".5"...)
	case `"boolean"`:
		if r&1 == 0 {
			return append(dst, "false"...)
		}
		return append(dst, "true"...)
	case `"array"`:
		return append(dst, "[]"...)
	case `"object"`:
		return appendToolInput(dst, schema, r, depth+1)
	case `"null"`:
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = append(dst, words[r&63]...)
	return append(dst, '"')
}

// messages answers POST /v1/messages and /v1/messages/count_tokens, as Anthropic's
// API does or, in the openai API, as vLLM's router does (vllm_messages.go).
func (s *Server) messages(ctx *fasthttp.RequestCtx, st *state) {
	if s.anthropic && !st.hdr.version {
		s.badRequest(ctx, st, &badRequest{msg: "anthropic-version: header is required"})
		return
	}
	if e := st.parseMessages(ctx.PostBody()); e != nil {
		s.badRequest(ctx, st, e)
		return
	}
	if st.route == rCountTokens {
		s.countTokens(ctx, st)
		return
	}
	if !s.admit(ctx, st) {
		return
	}
	h := st.items[0].h
	// Thinking tokens count toward max_tokens, which is over the budget, which is
	// over what mockllm thinks.
	// So is the searches' cited text.
	room := st.maxTokens - int64(st.think.tokens()+st.tool.search.tokens())
	p := newPlan(h, s.opts.MaxTokens, room, st.hdr.tokens, 0, false)
	if st.tool.use {
		if st.tool.preamble {
			p.natural = min(p.natural, maxPreamble)
			p.n, p.stop = min(p.n, p.natural), p.n >= p.natural
		} else {
			p.n, p.stop = 0, true
		}
	}
	if st.format.on && !st.tool.use {
		st.fitFormat(&p, int(max(min(int64(s.opts.MaxTokens), room), 0)))
	} else {
		st.scratch = p.applyStops(st.stops, st.scratch, 0, false)
	}
	st.fitTool(&p, int(min(int64(s.opts.MaxTokens), st.maxTokens-int64(st.tool.search.tokens()))))
	st.plans = append(st.plans, p)
	st.idA, st.idB = s.nextID(h)
	if s.anthropic {
		st.setAnthropicID(ctx, mix(st.idA^golden), st.idB)
	}
	s.promptTok.Add(int64(st.promptTokens))
	if st.stream {
		st.kind = kMessages
		st.ttftD, st.tpotD = st.ttft(), st.tpot()
		st.steps = st.think.tokens() + st.searchSteps() + p.n + st.jsonPieces()
		st.cutAfter = st.cutPoint(p.n + st.jsonPieces())
		st.hdr.errorAfter = min(st.hdr.errorAfter, p.n+st.jsonPieces())
		s.beginStream(ctx, st)
		return
	}
	out := st.outputTokens()
	if !st.done(ctx, st.think.tokens()+st.searchSteps()+p.n+st.jsonPieces(), out) {
		return
	}
	if !s.anthropic {
		st.out = st.appendVLLMMessage(st.out[:0])
		s.setJSON(ctx, st, fasthttp.StatusOK)
		return
	}
	b := st.out[:0]
	b = st.appendMessageHead(b)
	b = append(b, `"content":[`...)
	if st.think.on {
		b = append(b, `{"type":"thinking","thinking":"`...)
		if !st.think.omit {
			b = append(b, st.think.text...)
		}
		b = append(b, `","signature":"`...)
		b = append(b, st.think.sig...)
		b = append(b, `"},`...)
	}
	if st.tool.search.on {
		b = st.appendSearchBlocks(b)
	}
	if st.hasText() {
		b = append(b, `{"type":"text","text":"`...)
		if st.format.on {
			b = appendJSONText(b, st.format.text)
		} else {
			b = p.appendText(b)
		}
		b = append(b, `"}`...)
		if st.tool.use {
			b = append(b, ',')
		}
	}
	if st.tool.use {
		b = st.appendToolBlock(b)
		b = st.appendToolInput(b)
		b = append(b, '}')
	}
	b = append(b, `],"stop_reason":`...)
	b = st.appendStopReason(b)
	b = append(b, `,"usage":`...)
	b = st.appendInputUsage(b)
	b = strconv.AppendInt(b, int64(out), 10)
	b = st.appendSearchUsage(b)
	b = st.appendServiceTier(b)
	b = append(b, "}}"...)
	st.out = b
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// appendInputUsage opens a Messages API usage object with its input counts, up to the
// output_tokens value. input_tokens leaves out the prompt tokens read from the prompt
// cache and written to it (x-mock-cached-tokens, x-mock-cache-write-tokens), which
// have counts of their own.
func (st *state) appendInputUsage(b []byte) []byte {
	read, written, rest := st.cacheCounts(st.promptTokens)
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(rest), 10)
	b = append(b, `,"cache_creation_input_tokens":`...)
	b = strconv.AppendInt(b, int64(written), 10)
	b = append(b, `,"cache_read_input_tokens":`...)
	b = strconv.AppendInt(b, int64(read), 10)
	return append(b, `,"output_tokens":`...)
}

// appendServiceTier appends usage.service_tier, the tier that served the answer:
// standard, or x-mock-service-tier's. The API names it in an answer's usage and in
// message_start's, not in message_delta's.
func (st *state) appendServiceTier(b []byte) []byte {
	b = append(b, `,"service_tier":"`...)
	if len(st.hdr.tier) > 0 {
		b = append(b, st.hdr.tier...)
	} else {
		b = append(b, "standard"...)
	}
	return append(b, '"')
}

// hasText reports whether the answer has a text block: one without a tool call, or
// the preamble of one. vLLM starts a block with its first text, so an answer of no
// text tokens has none.
func (st *state) hasText() bool {
	return (!st.tool.use || st.tool.preamble) && (st.s.anthropic || st.plans[0].n > 0)
}

// fitTool gives the tool input what is left of limit (max_tokens, or --max-tokens when
// lower) after the text, as the Messages API never generates past max_tokens: a call
// without room for its input is cut short, p.stop false for stop_reason "max_tokens";
// one that has no token left, or whose preamble a stop sequence or the limit ended,
// is never begun.
func (st *state) fitTool(p *plan, limit int) {
	if !st.tool.use {
		return
	}
	left := limit - p.n
	switch {
	case p.stopSeq >= 0:
		st.tool.use = false
		return
	case !p.stop || left <= 0:
		st.tool.use, p.stop = false, false
		return
	}
	if st.toolTokens() <= left {
		return
	}
	// toolTokens counts four bytes a token: keep at most that many, ending on a rune
	// start so that the cut-off input stays valid UTF-8.
	end := left * 4
	for end > 0 && !utf8.RuneStart(st.tool.input[end]) {
		end--
	}
	st.tool.input = st.tool.input[:end]
	p.stop = false
}

// appendToolInput appends the tool_use block's input. A cut-off input holds the members
// that were generated whole, as the API parses what it generated; a stream sends the
// generated bytes as they are.
func (st *state) appendToolInput(b []byte) []byte {
	if st.plans[0].stop {
		return append(b, st.tool.input...)
	}
	var it jsonscan.Iter
	end := 0
	if it.Reset(st.tool.input) == nil {
		for {
			if _, _, ok := it.Next(); !ok {
				break
			}
			// A value that reaches the end of the cut may be cut itself: 4 of 42.
			if it.End() < len(st.tool.input) {
				end = it.End()
			}
		}
	}
	if end == 0 {
		return append(b, "{}"...)
	}
	b = append(b, st.tool.input[:end]...)
	return append(b, '}')
}

// toolTokens is the output-token estimate of the tool input.
func (st *state) toolTokens() int {
	if !st.tool.use {
		return 0
	}
	return promptTokens(len(st.tool.input))
}

func (st *state) outputTokens() int {
	return st.think.tokens() + st.tool.search.tokens() + st.plans[0].n + st.toolTokens()
}

// searchSteps is the generation steps of the searches: the cited text.
func (st *state) searchSteps() int {
	if st.tool.search.on {
		return 1
	}
	return 0
}

// outputTokensSent counts what a stream has sent: its thinking, cited and text tokens,
// and the tool input once all of it went out.
func (st *state) outputTokensSent() int {
	n := st.think.sent + min(st.emitted, st.plans[0].n)
	if st.tool.search.sent {
		n += citedTokens
	}
	if st.phase > mToolJSON {
		n += st.toolTokens()
	}
	return n
}

// jsonPieces is the number of input_json_delta fragments after the first, empty one.
func (st *state) jsonPieces() int {
	if !st.tool.use {
		return 0
	}
	return (len(st.tool.input) + jsonPiece - 1) / jsonPiece
}

// appendMessageHead opens a message: id, type, role, model, then the comma.
func (st *state) appendMessageHead(b []byte) []byte {
	b = append(b, `{"id":"msg_01`...)
	b = appendBase62(b, st.idA, st.idB, 22)
	b = append(b, `","type":"message","role":"assistant","model":`...)
	b = append(b, st.s.modelJSON...)
	return append(b, ',')
}

// appendToolBlock opens a tool_use block up to its "input": value.
func (st *state) appendToolBlock(b []byte) []byte {
	b = append(b, `{"type":"tool_use","id":"toolu_01`...)
	b = appendBase62(b, mix(st.idA^golden), mix(st.idB+golden), 22)
	b = append(b, `","name":`...)
	b = append(b, st.tool.name...)
	return append(b, `,"input":`...)
}

func (st *state) appendStopReason(b []byte) []byte {
	p := &st.plans[0]
	switch {
	case st.tool.use && p.stop:
		b = append(b, `"tool_use"`...)
	case p.stopSeq >= 0:
		b = append(b, `"stop_sequence","stop_sequence":`...)
		return appendQuoteBytes(b, st.stops[p.stopSeq])
	case p.stop:
		b = append(b, `"end_turn"`...)
	default:
		b = append(b, `"max_tokens"`...)
	}
	return append(b, `,"stop_sequence":null`...)
}

// Stream phases of the Messages grammar.
const (
	mStart = iota
	mThinkStart
	mThinkDelta
	mThinkSig
	mThinkStop
	mSearch
	mBlockStart
	mPing
	mText
	mTextStop
	mToolStart
	mToolFirst
	mToolJSON
	mToolStop
	mDelta
	mStop
	mEnd
)

// textIndex is the content block index of the text block: after the thinking block
// and the searches' blocks.
func (st *state) textIndex() int64 {
	i := st.tool.search.blocks()
	if st.think.on {
		i++
	}
	return i
}

// toolIndex is the content block index of the tool_use block.
func (st *state) toolIndex() int64 {
	if st.hasText() {
		return st.textIndex() + 1
	}
	return st.textIndex()
}

// nextMessages yields Anthropic's event sequence: message_start, content_block_start,
// ping, content_block_delta (text_delta per token), content_block_stop, then for a
// tool call its own block with input_json_delta fragments, message_delta with the
// stop reason and output tokens, message_stop. With thinking on, a thinking block
// comes first (thinking_delta per word, none when its display is omitted, then
// signature_delta), the ping inside it. With web search the searches' blocks come
// next, then the cited text block (nextSearch), the ping inside the first when no
// thinking went before. With a format the text_delta pieces are the JSON value's
// tokens. In the openai API it yields vLLM's sequence instead (vllm_messages.go).
func (st *state) nextMessages() ([]byte, error) {
	b := st.ev[:0]
	p := &st.plans[0]
	switch st.phase {
	case mStart:
		if !st.s.anthropic {
			// vLLM makes message_start of the chat stream's first chunk, which
			// comes with the first token.
			if err := st.waitContent(0); err != nil {
				return nil, err
			}
			b = st.appendVLLMStart(b)
			st.phase = mBlockStart
			break
		}
		b = append(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"...)
		b = st.appendMessageHead(b)
		b = append(b, `"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
		b = st.appendInputUsage(b)
		b = append(b, '1')
		b = st.appendServiceTier(b)
		b = append(b, `}}}`+"\n\n"...)
		st.phase = st.afterThinking()
		if st.think.on {
			st.phase = mThinkStart
		}
	case mThinkStart:
		b = append(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n"...)
		st.phase = mPing
	case mThinkDelta:
		t := &st.think
		if t.omit {
			// No thinking_delta, but the signature comes when the thinking would
			// have ended: the model thinks all the same.
			for ; t.sent < t.tokens(); t.sent++ {
				if err := st.waitContent(-1 - t.sent); err != nil {
					return nil, err
				}
			}
			t.off = len(t.text)
		}
		if t.off >= len(t.text) {
			st.phase = mThinkSig
			return st.nextMessages()
		}
		// Steps below 0, so that the text's first token, step 0, is a step of its own.
		if err := st.waitContent(-1 - t.sent); err != nil {
			return nil, err
		}
		end := bytes.IndexByte(t.text[t.off+1:], ' ')
		if end < 0 {
			end = len(t.text)
		} else {
			end += t.off + 1
		}
		b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\""...)
		b = append(b, t.text[t.off:end]...)
		b = append(b, "\"}}\n\n"...)
		t.off = end
		t.sent++
	case mThinkSig:
		b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\""...)
		b = append(b, st.think.sig...)
		b = append(b, "\"}}\n\n"...)
		st.phase = mThinkStop
	case mThinkStop:
		b = append(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"...)
		st.phase = st.afterThinking()
	case mSearch:
		var last bool
		var err error
		if b, last, err = st.nextSearch(b); err != nil {
			return nil, err
		}
		if last {
			st.phase = mBlockStart
		}
	case mBlockStart:
		if !st.s.anthropic {
			// No ping follows: vLLM sends none.
			switch {
			case st.hasText():
				b = append(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"content_block\":{\"type\":\"text\",\"text\":\"\"},\"index\":"...)
				b = strconv.AppendInt(b, st.textIndex(), 10)
				b = append(b, "}\n\n"...)
				st.phase = mText
			case st.tool.use:
				b = st.appendToolStart(b)
				st.phase = mToolJSON
			default:
				st.phase = mDelta
				return st.nextMessages()
			}
			break
		}
		if st.hasText() {
			b = append(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"...)
			b = strconv.AppendInt(b, st.textIndex(), 10)
			b = append(b, ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"...)
		} else {
			b = st.appendToolStart(b)
		}
		st.phase = mPing
		if st.think.on || st.tool.search.on {
			// The ping went out in the thinking block, or the first search's.
			st.phase = mText
			if !st.hasText() {
				st.phase = mToolFirst
			}
		}
	case mPing:
		b = append(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n"...)
		st.phase = mText
		switch {
		case st.think.on && st.think.off == 0:
			st.phase = mThinkDelta
		case !st.hasText():
			st.phase = mToolFirst
		}
	case mText:
		if st.step >= p.n {
			st.phase = mTextStop
			return st.nextMessages()
		}
		if st.cutNow() {
			return nil, errCut
		}
		if st.errorNow() {
			return st.errorEvent(), nil
		}
		if err := st.waitContent(st.step); err != nil {
			return nil, err
		}
		idx := st.textIndex()
		if st.s.anthropic {
			b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...)
			b = strconv.AppendInt(b, idx, 10)
			b = append(b, ",\"delta\":{\"type\":\"text_delta\",\"text\":\""...)
		} else {
			b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\""...)
		}
		if f := &st.format; f.on {
			end := f.pieceEnd(f.off)
			b = appendJSONText(b, f.text[f.off:end])
			f.off = end
		} else {
			b = p.appendToken(b, st.step)
		}
		if st.s.anthropic {
			b = append(b, "\"}}\n\n"...)
		} else {
			// vLLM's names the index last, in pydantic's field order.
			b = append(b, "\"},\"index\":"...)
			b = strconv.AppendInt(b, idx, 10)
			b = append(b, "}\n\n"...)
		}
		st.step++
		st.emitted++
	case mTextStop:
		if st.cutNow() {
			return nil, errCut
		}
		if st.errorNow() {
			return st.errorEvent(), nil
		}
		b = append(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":"...)
		b = strconv.AppendInt(b, st.textIndex(), 10)
		b = append(b, "}\n\n"...)
		st.phase = mDelta
		if st.tool.use {
			st.phase = mToolStart
		}
	case mToolStart:
		b = st.appendToolStart(b)
		st.phase = mToolFirst
		if !st.s.anthropic {
			// vLLM sends no input_json_delta of empty arguments.
			st.phase = mToolJSON
		}
	case mToolFirst:
		b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...)
		b = strconv.AppendInt(b, st.toolIndex(), 10)
		b = append(b, ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n"...)
		st.phase = mToolJSON
	case mToolJSON:
		in := st.tool.input
		if st.jsonOff >= len(in) {
			st.phase = mToolStop
			return st.nextMessages()
		}
		if st.cutNow() {
			return nil, errCut
		}
		if st.errorNow() {
			return st.errorEvent(), nil
		}
		if err := st.waitContent(st.step); err != nil {
			return nil, err
		}
		end := min(st.jsonOff+jsonPiece, len(in))
		for end < len(in) && !utf8.RuneStart(in[end]) {
			end++
		}
		idx := st.toolIndex()
		if st.s.anthropic {
			b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...)
			b = strconv.AppendInt(b, idx, 10)
			b = append(b, ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"...)
		} else {
			b = append(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"...)
		}
		b = appendQuoteBytes(b, in[st.jsonOff:end])
		if st.s.anthropic {
			b = append(b, "}}\n\n"...)
		} else {
			b = append(b, "},\"index\":"...)
			b = strconv.AppendInt(b, idx, 10)
			b = append(b, "}\n\n"...)
		}
		st.jsonOff = end
		st.step++
		st.emitted++
	case mToolStop:
		if st.cutNow() {
			return nil, errCut
		}
		if st.errorNow() {
			return st.errorEvent(), nil
		}
		b = append(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":"...)
		b = strconv.AppendInt(b, st.toolIndex(), 10)
		b = append(b, "}\n\n"...)
		st.phase = mDelta
	case mDelta:
		if !st.s.anthropic {
			b = append(b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"...)
			b = st.appendVLLMStopReason(b)
			b = append(b, `},"usage":`...)
			b = st.appendVLLMUsage(b, st.outputTokens())
			b = append(b, "}\n\n"...)
			st.phase = mStop
			break
		}
		b = append(b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"...)
		b = st.appendStopReason(b)
		b = append(b, `},"usage":{"output_tokens":`...)
		b = strconv.AppendInt(b, int64(st.outputTokens()), 10)
		b = st.appendSearchUsage(b)
		b = append(b, "}}\n\n"...)
		st.phase = mStop
	case mStop:
		b = append(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
		st.phase = mEnd
		st.finished = true
	default:
		return nil, io.EOF
	}
	st.ev = b
	return b, nil
}

// afterThinking is the phase after the thinking block (or the message start): the
// searches, when the answer makes any.
func (st *state) afterThinking() int {
	if st.tool.search.on {
		return mSearch
	}
	return mBlockStart
}

func (st *state) appendToolStart(b []byte) []byte {
	if !st.s.anthropic {
		b = append(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"content_block\":"...)
		b = st.appendVLLMToolBlock(b)
		b = append(b, `{}},"index":`...)
		b = strconv.AppendInt(b, st.toolIndex(), 10)
		return append(b, "}\n\n"...)
	}
	b = append(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"...)
	b = strconv.AppendInt(b, st.toolIndex(), 10)
	b = append(b, `,"content_block":`...)
	b = st.appendToolBlock(b)
	return append(b, "{}}}\n\n"...)
}

// errorNow reports whether x-mock-error-after ends the stream before the next content
// delta.
func (st *state) errorNow() bool { return st.hdr.errorAfter >= 0 && st.emitted >= st.hdr.errorAfter }

// errorEvent is the event the Messages API sends when it fails mid-answer (vLLM's of
// type internal_error): the stream had its 200, so the error comes as an event, and
// the stream ends after it, without content_block_stop, message_delta or
// message_stop.
func (st *state) errorEvent() []byte {
	st.s.injected.Add(1)
	st.failed = true
	st.phase = mEnd
	if !st.s.anthropic {
		// vLLM's message_stream_converter ends on the exception the chat stream's
		// error raises in it with this event.
		st.ev = append(st.ev[:0], "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"internal_error\",\"message\":\"mockllm: injected error (x-mock-error-after)\"}}\n\n"...)
		return st.ev
	}
	st.ev = append(st.ev[:0], "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"...)
	return st.ev
}
