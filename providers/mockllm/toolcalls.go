package mockllm

import (
	"strconv"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// maxToolCalls bounds x-mock-tool-calls.
const maxToolCalls = 16

// chatCalls is a chat answer of parallel tool calls, which x-mock-tool-calls asks
// for: call i calls the request's function tool i (modulo their number) with the
// arguments {"n":i}, each call a token of its head (id and name) and two of its
// arguments ({"n": and i}). A stream sends them one call after the other, as vLLM
// does, or with interleaved set, the heads of all, then each call's first piece of
// arguments, then each one's second: index 0, 1, 0, 1, as some OpenAI-compatible
// servers stream parallel calls. x-mock-tool-arguments gives every call its
// arguments instead, their two pieces split at the middle character.
type chatCalls struct {
	n          int
	interleave bool
	// names are the function tools' names as the request has them (raw JSON
	// strings), one after the other, each ending at its ends entry.
	names []byte
	ends  []int
}

// setToolCalls readies the tool calls x-mock-tool-calls asks for, when the request
// (tools, its raw tools member) has function tools and one choice: the answer is
// then the calls, whatever max_tokens.
func (st *state) setToolCalls(tools []byte) {
	c := &st.calls
	if st.hdr.toolCalls == 0 || st.n > 1 {
		return
	}
	var a jsonscan.Array
	if !a.Reset(tools) {
		return
	}
	for {
		t, ok := a.Next()
		if !ok {
			break
		}
		fn, _ := jsonscan.Field(t, "function")
		name, _ := jsonscan.Field(fn, "name")
		if typ, _ := jsonscan.Field(t, "type"); string(typ) != `"function"` || !jsonscan.IsString(name) {
			continue
		}
		c.names = append(c.names, name...)
		c.ends = append(c.ends, len(c.names))
	}
	if len(c.ends) == 0 {
		return
	}
	c.n, c.interleave = st.hdr.toolCalls, st.hdr.interleave
	n := 3 * c.n
	st.plans[0] = plan{h: st.plans[0].h, natural: n, n: n, lastLen: -1, stop: true, stopSeq: -1}
}

// name is call i's function name, a raw JSON string.
func (c *chatCalls) name(i int) []byte {
	j := i % len(c.ends)
	from := 0
	if j > 0 {
		from = c.ends[j-1]
	}
	return c.names[from:c.ends[j]]
}

// appendCallID appends call i's id, the inside of its JSON string: deterministic, as
// the rest of the answer, for the prompt and seed.
func (st *state) appendCallID(b []byte, i int) []byte {
	b = append(b, "call_"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, '_')
	return appendHex64(b, st.plans[0].h)
}

// appendToolCalls appends a chat message's tool_calls, whole.
func (st *state) appendToolCalls(b []byte) []byte {
	b = append(b, '[')
	for i := range st.calls.n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = st.appendCallID(b, i)
		b = append(b, `","type":"function","function":{"name":`...)
		b = append(b, st.calls.name(i)...)
		if args := st.hdr.toolArgs; len(args) > 0 {
			b = append(b, `,"arguments":`...)
			b = appendQuoteBytes(b, args)
			b = append(b, "}}"...)
			continue
		}
		b = append(b, `,"arguments":"{\"n\":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `}"}}`...)
	}
	return append(b, ']')
}

// argsHalf is where x-mock-tool-arguments' args split into a stream's two pieces: the
// first character at or after their middle.
func argsHalf(args []byte) int {
	h := len(args) / 2
	for h < len(args) && !utf8.RuneStart(args[h]) {
		h++
	}
	return h
}

// appendToolDelta appends the choice of a stream's k-th tool call chunk: a call's
// head, or a piece of its arguments.
func (st *state) appendToolDelta(b []byte, k int) []byte {
	c := &st.calls
	call, piece := k/3, k%3
	if c.interleave {
		call, piece = k%c.n, k/c.n
	}
	b = append(b, `{"index":0,"delta":{"tool_calls":[{"index":`...)
	b = strconv.AppendInt(b, int64(call), 10)
	switch piece {
	case 0:
		b = append(b, `,"id":"`...)
		b = st.appendCallID(b, call)
		b = append(b, `","type":"function","function":{"name":`...)
		b = append(b, c.name(call)...)
		b = append(b, `,"arguments":""}}]}`...)
	case 1:
		if args := st.hdr.toolArgs; len(args) > 0 {
			b = append(b, `,"function":{"arguments":`...)
			b = appendQuoteBytes(b, args[:argsHalf(args)])
			b = append(b, "}}]}"...)
			break
		}
		b = append(b, `,"function":{"arguments":"{\"n\":"}}]}`...)
	default:
		if args := st.hdr.toolArgs; len(args) > 0 {
			b = append(b, `,"function":{"arguments":`...)
			b = appendQuoteBytes(b, args[argsHalf(args):])
			b = append(b, "}}]}"...)
			break
		}
		b = append(b, `,"function":{"arguments":"`...)
		b = strconv.AppendInt(b, int64(call), 10)
		b = append(b, `}"}}]}`...)
	}
	return append(b, `,"logprobs":null,"finish_reason":null}`...)
}
