package mockllm

import (
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// Chat's structured outputs, as vLLM serves them with its guided decoding: a
// response_format of type json_schema makes each choice's content a JSON value of the
// schema, json_object a JSON object; a tool_choice that forces a call (a named
// function, or "required") makes the answer that call, its arguments a JSON object of
// the function's parameters. The Responses API's text.format does for its output text
// what response_format does for chat's content. The JSON is the one the Messages API's structured outputs
// and tool inputs get (appendSchemaValue, appendToolInput), deterministic for the
// prompt, about four bytes a token (formatAnswer); max_tokens and stop strings cut it
// as they cut text, leaving it unfinished. x-mock-tool-calls answers first, and
// logprobs are null for such an answer.

// The tool calls a chat request's tool_choice forces.
const (
	forceNone = iota
	// forceNamed is {"type":"function","function":{"name":…}}: vLLM answers that
	// function's call with finish_reason "stop" (serving_chat.py names tool_calls
	// only for auto and required), its content "".
	forceNamed
	// forceRequired is "required": a call of one of the tools (here the first),
	// finish_reason "tool_calls".
	forceRequired
)

var (
	strJSONSchemaType = []byte(`"json_schema"`)
	strJSONObjectType = []byte(`"json_object"`)
	strRequired       = []byte(`"required"`)
	strFunctionType   = []byte(`"function"`)
	// objectSchema is json_object's: any JSON object, which mockllm makes empty.
	objectSchema = []byte(`{"type":"object"}`)
)

// setStructured readies a chat answer that tool_choice or response_format constrain
// (st.format.text its JSON) and cuts every choice's plan to it: capTokens is
// --max-tokens, reqMax the request's max_tokens (0 for none).
func (st *state) setStructured(h uint64, capTokens int, reqMax int64) {
	if st.calls.n > 0 || len(st.plans) == 0 {
		return
	}
	r := mix(h ^ golden)
	if st.forced = st.forcedTool(); st.forced != forceNone {
		st.format.text = appendToolInput(st.format.text[:0], st.format.schema, r, 0)
	} else if schema, ok := chatFormatSchema(st.respFormat); ok {
		st.format.text = appendSchemaValue(st.format.text[:0], schema, r, 0)
	} else {
		return
	}
	st.format.on = true
	limit := capTokens
	if reqMax > 0 && reqMax < int64(limit) {
		limit = int(reqMax)
	}
	p := &st.plans[0]
	st.fitFormat(p, limit)
	for i := 1; i < len(st.plans); i++ {
		q := &st.plans[i]
		q.n, q.natural, q.stop, q.stopSeq, q.lastLen = p.n, p.natural, p.stop, p.stopSeq, p.lastLen
	}
}

// forcedTool reads tool_choice: the function it forces goes into st.tool.name (a raw
// JSON string) and its parameters schema, viewing the request, into st.format.schema.
// A choice naming no function of tools forces nothing (vLLM refuses it: not modelled).
func (st *state) forcedTool() uint8 {
	mode := uint8(forceNone)
	var want []byte
	switch {
	case len(st.toolChoice) == 0:
		return forceNone
	case string(st.toolChoice) == string(strRequired):
		mode = forceRequired
	case st.toolChoice[0] == '{':
		fn, _ := jsonscan.Field(st.toolChoice, "function")
		want, _ = jsonscan.Field(fn, "name")
		if !jsonscan.IsString(want) {
			return forceNone
		}
		mode = forceNamed
	default:
		return forceNone
	}
	var a jsonscan.Array
	if !a.Reset(st.tools) {
		return forceNone
	}
	for {
		t, ok := a.Next()
		if !ok {
			return forceNone
		}
		fn, _ := jsonscan.Field(t, "function")
		name, _ := jsonscan.Field(fn, "name")
		if typ, _ := jsonscan.Field(t, "type"); string(typ) != string(strFunctionType) || !jsonscan.IsString(name) {
			continue
		}
		if mode == forceNamed && string(name) != string(want) {
			continue
		}
		params, _ := jsonscan.Field(fn, "parameters")
		st.tool.name = append(st.tool.name[:0], name...)
		st.format.schema = params
		return mode
	}
}

// chatFormatSchema is the schema response_format holds the answer to: json_schema's
// schema, or any object for json_object.
func chatFormatSchema(rf []byte) ([]byte, bool) {
	if len(rf) == 0 || rf[0] != '{' {
		return nil, false
	}
	typ, _ := jsonscan.Field(rf, "type")
	switch string(typ) {
	case string(strJSONSchemaType):
		js, _ := jsonscan.Field(rf, "json_schema")
		if schema, ok := jsonscan.Field(js, "schema"); ok && len(schema) > 0 && schema[0] == '{' {
			return schema, true
		}
		return objectSchema, true
	case string(strJSONObjectType):
		return objectSchema, true
	}
	return nil, false
}

// appendToolCallID appends a forced call's id, the inside of its JSON string: vLLM's
// chatcmpl-tool- and 32 hex digits, one per choice.
func (st *state) appendToolCallID(b []byte, c int) []byte {
	b = append(b, "chatcmpl-tool-"...)
	b = appendHex64(b, mix(st.idA^golden^uint64(c)))
	return appendHex64(b, mix(st.idB+golden))
}

// appendStructuredChoice appends choice c of a plain answer after its index: the JSON
// as content, or as the forced call's arguments.
func (st *state) appendStructuredChoice(b []byte, p *plan, c int) []byte {
	if st.forced == forceNone {
		b = append(b, `,"message":{"role":"assistant","content":"`...)
		b = appendJSONText(b, st.format.text)
		b = append(b, `","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[]`...)
	} else {
		b = append(b, `,"message":{"role":"assistant","content":"","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[{"id":"`...)
		b = st.appendToolCallID(b, c)
		b = append(b, `","type":"function","function":{"name":`...)
		b = append(b, st.tool.name...)
		b = append(b, `,"arguments":"`...)
		b = appendJSONText(b, st.format.text)
		b = append(b, `"}}]`...)
	}
	b = append(b, `,"reasoning_content":null},"logprobs":null,"finish_reason":`...)
	b = st.appendChatFinish(b, p)
	return append(b, '}')
}

// appendStructuredDelta appends the delta of choice c's next stream token, up to its
// logprobs value: a piece of the JSON as content, or of the forced call's arguments,
// the first with the call's id and name as vLLM sends them (its index the choice's).
func (st *state) appendStructuredDelta(b []byte, p *plan, c int) []byte {
	end := st.format.pieceEnd(p.off)
	piece := st.format.text[p.off:end]
	if st.forced == forceNone {
		b = append(b, `,"delta":{"content":"`...)
		b = appendJSONText(b, piece)
		p.off = end
		return append(b, `"},"logprobs":`...)
	}
	b = append(b, `,"delta":{"tool_calls":[{`...)
	if p.off == 0 {
		b = append(b, `"id":"`...)
		b = st.appendToolCallID(b, c)
		b = append(b, `","type":"function",`...)
	}
	b = append(b, `"index":`...)
	b = strconv.AppendInt(b, int64(c), 10)
	b = append(b, `,"function":{`...)
	if p.off == 0 {
		b = append(b, `"name":`...)
		b = append(b, st.tool.name...)
		b = append(b, ',')
	}
	b = append(b, `"arguments":"`...)
	b = appendJSONText(b, piece)
	p.off = end
	return append(b, `"}}]},"logprobs":`...)
}

// appendChatFinish appends a chat choice's finish_reason and stop_reason:
// "tool_calls" for the call tool_choice "required" forced, when it ended whole.
func (st *state) appendChatFinish(b []byte, p *plan) []byte {
	if st.forced == forceRequired && p.stop {
		return append(b, `"tool_calls","stop_reason":null`...)
	}
	return appendFinish(b, st, p)
}

// setTextFormat readies a Responses API answer whose text.format is json_schema (its
// schema, flat in the format as the API has it) or json_object, as setStructured does
// chat's response_format.
func (st *state) setTextFormat(h uint64, capTokens int, reqMax int64) {
	f, _ := jsonscan.Field(st.rsp.text, "format")
	if len(f) == 0 || f[0] != '{' {
		return
	}
	typ, _ := jsonscan.Field(f, "type")
	switch string(typ) {
	case string(strJSONSchemaType):
		schema, ok := jsonscan.Field(f, "schema")
		if !ok || len(schema) == 0 || schema[0] != '{' {
			schema = objectSchema
		}
		st.format.text = appendSchemaValue(st.format.text[:0], schema, mix(h^golden), 0)
	case string(strJSONObjectType):
		st.format.text = appendSchemaValue(st.format.text[:0], objectSchema, mix(h^golden), 0)
	default:
		return
	}
	st.format.on = true
	limit := capTokens
	if reqMax > 0 && reqMax < int64(limit) {
		limit = int(reqMax)
	}
	st.fitFormat(&st.plans[0], limit)
}

// appendRespText appends a Responses API answer's whole output text: the JSON of its
// text.format, or the words.
func (st *state) appendRespText(b []byte) []byte {
	if st.format.on {
		return appendJSONText(b, st.format.text)
	}
	return st.plans[0].appendText(b)
}
