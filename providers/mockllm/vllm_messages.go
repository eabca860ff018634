package mockllm

import (
	"bytes"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// vLLM serves Anthropic's Messages API on its OpenAI server (vllm/entrypoints/
// anthropic: api_router.py, serving.py, protocol.py): POST /v1/messages turns the
// request into a chat completion and its answer back into a message, POST
// /v1/messages/count_tokens renders the prompt and counts it. In the default (openai)
// API mockllm answers them as vLLM does, with the Messages handler of the anthropic
// API (anthropic.go) and these differences:
//   - no anthropic-version header is needed, and the API key is vLLM's, read from
//     Authorization: Bearer alone (its AuthenticationMiddleware; x-api-key is not
//     read: vllm-project/vllm#51572);
//   - members the request models do not define are dropped, not refused, and the
//     Anthropic-only rules (message content, tool-use pairing, cache_control marks,
//     thinking, closed objects in output_config.format's schema) are not checked;
//     thinking, which the models do not define, is off; every effort and
//     output_config.format are taken, whatever the model's name;
//   - a body the models refuse gets the app's RequestValidationError answer, in
//     OpenAI's shape ("Bad Request"); an error while serving (an unknown model, the
//     context length, the sampling ranges, a fault) gets translate_error_response's
//     {"type":"error","error":{"type","message"}}, its type vLLM's OpenAI one
//     (NotFoundError, BadRequestError, InternalServerError);
//   - the answer is the chat completion's (id chatcmpl-…, tool_use ids
//     chatcmpl-tool-…, stop_reason end_turn for a stop sequence too, usage of
//     input_tokens and output_tokens alone), dumped without its None members;
//   - a stream is message_stream_converter's: message_start (dumped without its unset
//     members: no type or role) with the first token, content_block_start,
//     content_block_delta and content_block_stop with the index last, no ping and no
//     empty first input_json_delta, message_delta with input_tokens and
//     output_tokens, then message_stop in place of the chat stream's [DONE]; a
//     failure mid-stream is an error event of type internal_error.

// vllmMessagesKey reports whether k is a member of vLLM's AnthropicMessagesRequest.
func vllmMessagesKey(k []byte) bool {
	switch string(k) {
	case "model", "messages", "max_tokens", "metadata", "output_config", "stop_sequences",
		"stream", "system", "temperature", "tool_choice", "tools", "top_k", "top_p",
		"kv_transfer_params", "chat_template_kwargs":
		return true
	}
	return false
}

// vllmCountKey reports whether k is a member of vLLM's AnthropicCountTokensRequest.
func vllmCountKey(k []byte) bool {
	switch string(k) {
	case "model", "messages", "system", "tool_choice", "tools", "chat_template_kwargs":
		return true
	}
	return false
}

// countKey reports whether k is a member of Anthropic's count_tokens request: the
// Messages request's, less those about generating (max_tokens, stream,
// stop_sequences, sampling, metadata, service_tier, ...), which it refuses
// ("max_tokens: Extra inputs are not permitted", as Wei-Shaw/sub2api#4913 met it).
func countKey(k []byte) bool {
	switch string(k) {
	case "model", "messages", "system", "tools", "tool_choice", "thinking", "output_config",
		"output_format", "context_management", "mcp_servers", "cache_control":
		return true
	}
	return false
}

// skipMember reports whether parseMessages passes over the request's member k: vLLM's
// pydantic models drop the members they do not define, Anthropic's count_tokens
// refuses them (its Messages route's are refused by parseMessages itself).
func (st *state) skipMember(k []byte) (bool, *badRequest) {
	switch {
	case st.s.anthropic && st.route == rCountTokens:
		if countKey(k) {
			return false, nil
		}
		return true, errExtraInput(k)
	case st.s.anthropic:
		return false, nil
	case st.route == rCountTokens:
		return !vllmCountKey(k), nil
	}
	return !vllmMessagesKey(k), nil
}

// vLLM's refusals of a Messages request: its models' validators, and SamplingParams'
// refusal of an empty stop string, raised while serving.
var (
	errModelRequired = &badRequest{msg: "model: Value error, Model is required"}
	errMaxPositive   = &badRequest{msg: "max_tokens: Value error, max_tokens must be positive"}
	errVLLMEmptyStop = &badRequest{msg: "stop cannot contain an empty string.", serving: true}
	errToolChoiceFor = &badRequest{msg: "tool_choice: Value error, tool_choice.name is required when type is 'tool'"}
)

// vllmSampling reads temperature or top_p as vLLM's model does, a number or null;
// SamplingParams' ranges are checked once the request is served (checkSampling). The
// spellings of values in range (any unsigned temperature, a top_p of 1 or 0.x) need
// no ParseFloat.
func (st *state) vllmSampling(k, v []byte) *badRequest {
	if isNull(v) {
		return nil
	}
	temp := string(k) == "temperature"
	if len(v) > 0 && v[0] >= '0' && v[0] <= '9' && (temp || unitFraction(v)) {
		return nil
	}
	f, ok := jsonscan.Float(v)
	switch {
	case !ok:
		return &badRequest{msg: string(k) + ": Input should be a valid number"}
	case temp:
		st.temperature = f
	default:
		st.topP = f
	}
	return nil
}

// unitFraction reports whether the JSON number v is spelled 1, 1.0… or 0.d… with a
// digit d… not all zeros: a value in (0, 1].
func unitFraction(v []byte) bool {
	frac, ok := bytes.CutPrefix(v[1:], []byte{'.'})
	switch v[0] {
	case '1':
		return len(v) == 1 || ok && len(frac) > 0 && onlyDigits(frac, true)
	case '0':
		return ok && len(frac) > 0 && onlyDigits(frac, false) && !onlyDigits(frac, true)
	}
	return false
}

// vllmChecks checks messages, tools and tool_choice as vLLM's models do: a role of
// user, assistant or system (the ctx and msg of Claude Code, mapped to user), content
// that is a string or a list of blocks of the types it knows; each tool a name and an
// input_schema object (a server tool, which has none, is refused: vLLM runs none); a
// tool_choice of type tool names its tool.
func (st *state) vllmChecks(tools, choice []byte) *badRequest {
	var a jsonscan.Array
	a.Reset(st.messages)
	for i := 0; ; i++ {
		m, ok := a.Next()
		if !ok {
			break
		}
		switch role, _ := jsonscan.Field(m, "role"); string(role) {
		case `"user"`, `"assistant"`, `"system"`, `"ctx"`, `"msg"`:
		default:
			return &badRequest{msg: "messages." + strconv.Itoa(i) + ".role: Input should be 'user', 'assistant' or 'system'"}
		}
		content, ok := jsonscan.Field(m, "content")
		if !ok {
			return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content: Field required"}
		}
		if e := vllmBlocks(i, content); e != nil {
			return e
		}
	}
	if tools != nil && !isNull(tools) {
		if !a.Reset(tools) {
			return &badRequest{msg: "tools: Input should be a valid list"}
		}
		for i := 0; ; i++ {
			t, ok := a.Next()
			if !ok {
				break
			}
			name, ok := jsonscan.Field(t, "name")
			switch {
			case !ok:
				return &badRequest{msg: "tools." + strconv.Itoa(i) + ".name: Field required"}
			case !jsonscan.IsString(name):
				return &badRequest{msg: "tools." + strconv.Itoa(i) + ".name: Input should be a valid string"}
			}
			schema, ok := jsonscan.Field(t, "input_schema")
			switch {
			case !ok:
				return &badRequest{msg: "tools." + strconv.Itoa(i) + ".input_schema: Field required"}
			case len(schema) == 0 || schema[0] != '{':
				return &badRequest{msg: "tools." + strconv.Itoa(i) + ".input_schema: Input should be a valid dictionary"}
			}
		}
	}
	if choice != nil && !isNull(choice) {
		if t, _ := jsonscan.Field(choice, "type"); string(t) == `"tool"` {
			if name, _ := jsonscan.Field(choice, "name"); !jsonscan.IsString(name) || len(name) == 2 {
				return errToolChoiceFor
			}
		}
	}
	return nil
}

// vllmBlocks checks message i's content: a string, or a list of blocks whose types
// AnthropicContentBlock knows.
func vllmBlocks(i int, content []byte) *badRequest {
	if jsonscan.IsString(content) {
		return nil
	}
	var a jsonscan.Array
	if !a.Reset(content) {
		return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content: Input should be a valid string or a valid list"}
	}
	for j := 0; ; j++ {
		blk, ok := a.Next()
		if !ok {
			return nil
		}
		switch t, _ := jsonscan.Field(blk, "type"); string(t) {
		case `"text"`, `"image"`, `"tool_use"`, `"tool_result"`, `"tool_reference"`, `"thinking"`, `"redacted_thinking"`:
		default:
			return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content." + strconv.Itoa(j) +
				".type: Input should be 'text', 'image', 'tool_use', 'tool_result', 'tool_reference', 'thinking' or 'redacted_thinking'"}
		}
	}
}

// countTokens answers count_tokens with the prompt tokens a Messages answer to the
// same body counts (its usage.input_tokens; Anthropic's splits off what
// x-mock-cached-tokens and x-mock-cache-write-tokens say the cache held):
// Anthropic's {"input_tokens"}, or vLLM's, which adds
// context_management.original_input_tokens. Nothing is generated, so neither
// --error-rate nor a --max-num-seqs slot applies, as on /tokenize.
func (s *Server) countTokens(ctx *fasthttp.RequestCtx, st *state) {
	if !s.modelOK(st.modelRaw, st.scratch) {
		s.modelNotFound(ctx, st, st.modelRaw)
		return
	}
	b := append(st.out[:0], `{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(st.promptTokens), 10)
	if s.anthropic {
		a, h := s.nextID(st.items[0].h)
		st.setAnthropicID(ctx, a, mix(h^a))
	} else {
		b = append(b, `,"context_management":{"original_input_tokens":`...)
		b = strconv.AppendInt(b, int64(st.promptTokens), 10)
		b = append(b, '}')
	}
	st.out = append(b, '}')
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// appendVLLMMessage appends the answer as vLLM's messages_full_converter makes it from
// its chat completion, dumped without its None members: the completion's id, a text
// block when there is text, the tool_use block, the stop reason (no stop_sequence)
// and usage of input and output tokens alone.
func (st *state) appendVLLMMessage(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = st.appendID(b, "chatcmpl-")
	b = append(b, `","type":"message","role":"assistant","content":[`...)
	if st.hasText() {
		b = append(b, `{"type":"text","text":"`...)
		if st.format.on {
			b = appendJSONText(b, st.format.text)
		} else {
			b = st.plans[0].appendText(b)
		}
		b = append(b, `"}`...)
		if st.tool.use {
			b = append(b, ',')
		}
	}
	if st.tool.use {
		b = st.appendVLLMToolBlock(b)
		b = st.appendToolInput(b)
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = append(b, st.s.modelJSON...)
	b = append(b, `,"stop_reason":`...)
	b = st.appendVLLMStopReason(b)
	b = append(b, `,"usage":`...)
	b = st.appendVLLMUsage(b, st.outputTokens())
	return append(b, '}')
}

// appendVLLMUsage appends an AnthropicUsage of the prompt's tokens and output
// tokens, as vLLM fills it from the chat completion's usage.
func (st *state) appendVLLMUsage(b []byte, output int) []byte {
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(st.promptTokens), 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, int64(output), 10)
	return append(b, '}')
}

// appendVLLMStopReason maps the chat completion's finish_reason as vLLM does: stop
// (a stop sequence's too) is end_turn, length max_tokens, tool_calls tool_use.
func (st *state) appendVLLMStopReason(b []byte) []byte {
	p := &st.plans[0]
	switch {
	case st.tool.use && p.stop:
		return append(b, `"tool_use"`...)
	case p.stop:
		return append(b, `"end_turn"`...)
	}
	return append(b, `"max_tokens"`...)
}

// appendVLLMToolBlock opens the tool_use block of the answer's tool call up to its
// "input": value; the id is the one vLLM's tool parsers give a call,
// chatcmpl-tool- and 32 hex digits.
func (st *state) appendVLLMToolBlock(b []byte) []byte {
	b = append(b, `{"type":"tool_use","id":"chatcmpl-tool-`...)
	b = appendHex64(b, mix(st.idA^golden))
	b = appendHex64(b, mix(st.idB+golden))
	b = append(b, `","name":`...)
	b = append(b, st.tool.name...)
	return append(b, `,"input":`...)
}

// appendVLLMStart appends vLLM's message_start event, made from the chat stream's
// first chunk and dumped without its unset members (no type or role).
func (st *state) appendVLLMStart(b []byte) []byte {
	b = append(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\""...)
	b = st.appendID(b, "chatcmpl-")
	b = append(b, `","content":[],"model":`...)
	b = append(b, st.s.modelJSON...)
	b = append(b, `,"stop_reason":null,"stop_sequence":null,"usage":`...)
	b = st.appendVLLMUsage(b, 0)
	return append(b, "}}\n\n"...)
}
