package providers

import "github.com/tollgate/tollgate/internal/jsonscan"

// chatChunk is what a bridge reads of a chat completions chunk's own members: raw
// values, nil when absent. model is nil when it is no string with text (Azure's first
// chunk has "model": "").
type chatChunk struct {
	created, model, usage, choices []byte
}

// read reads chunk data's members; ok is false when data is no JSON object.
func (c *chatChunk) read(data []byte) bool {
	*c = chatChunk{}
	var it jsonscan.Iter
	if it.Reset(data) != nil {
		return false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "created":
			c.created = v
		case "model":
			if nonEmpty(v) {
				c.model = v
			}
		case "choices":
			c.choices = v
		case "usage":
			c.usage = v
		}
	}
	return it.Err() == nil
}

// finishes reports whether v, a choice's finish_reason, says it has finished: not
// absent, null or "", which some servers write on the chunks before the last.
func finishes(v []byte) bool {
	return len(v) > 0 && !jsonscan.IsNull(v) && string(v) != `""`
}

// chatChoice is what a bridge reads of a chunk's choice: raw values, nil when absent.
// finish is its finish_reason, nil for null and "" too, logprobs its logprobs; the others are
// its delta's members, reasoning its reasoning_content or else (OpenRouter's, newer
// vLLM's) its reasoning, blocks its thinking_blocks.
type chatChoice struct {
	finish, logprobs                                 []byte
	stopStr                                          []byte // stop_reason, as chatAnswer's
	content, reasoning, blocks, refusal, calls, anns []byte
}

// read reads choice c's members and its delta's; ok is false when c is no JSON
// object. A delta that is none gives no pieces.
func (ch *chatChoice) read(c []byte) bool {
	*ch = chatChoice{}
	var delta []byte
	var it jsonscan.Iter
	if it.Reset(c) != nil {
		return false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "delta":
			delta = v
		case "finish_reason":
			ch.finish = v
		case "logprobs":
			ch.logprobs = v
		case "stop_reason":
			ch.stopStr = v
		}
	}
	if !finishes(ch.finish) {
		ch.finish = nil
	}
	if it.Reset(delta) != nil {
		return true
	}
	var reasoning []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "content":
			ch.content = v
		case "reasoning_content":
			ch.reasoning = v
		case "reasoning":
			reasoning = v
		case "thinking_blocks":
			ch.blocks = v
		case "refusal":
			ch.refusal = v
		case "tool_calls":
			ch.calls = v
		case "annotations":
			ch.anns = v
		}
	}
	if !nonEmpty(ch.reasoning) {
		ch.reasoning = reasoning
	}
	return true
}

// readChunk reads the chat chunk in q.iev for r to translate: the chunk's own members
// and usage, then, the stream begun, its choice of index 0 (a bridge asks for one).
// The chunk that ends the answer (the usage chunk after the finish_reason chunk, or a
// finish_reason chunk with usage where usage was not asked for on every chunk)
// finishes the stream.
func (q *relayQueue) readChunk(r relay) error {
	iev, c := &q.iev, &q.chunk
	if !c.read(iev.Data) {
		return errEventNotJSON
	}
	r.take(iev, c)
	if !q.begun && !iev.HasUsage && !nonEmptyArray(c.choices) {
		// Azure's first chunk holds its prompt filter results only: the stream
		// begins with the first chunk that has a choice.
		return nil
	}
	r.begin()
	if iev.HasUsage && !nonEmptyArray(c.choices) && q.finished {
		// The usage chunk, after the finish_reason chunk, is the last of a chat
		// stream: the answer is whole, and its end goes now, its usage counted even
		// if the upstream drops the connection before [DONE].
		r.finish()
		q.drain = true
		return nil
	}
	var a jsonscan.Array
	if !a.Reset(c.choices) {
		return nil
	}
	for {
		ch, ok := a.Next()
		if !ok {
			return nil
		}
		if idx, _ := jsonscan.Field(ch, "index"); len(idx) > 0 && string(idx) != "0" {
			continue
		}
		if !q.choice.read(ch) {
			return errEventNotJSON
		}
		if q.choice.finish != nil {
			q.finished = true
		}
		if err := r.choice(&q.choice); err != nil {
			return err
		}
		if iev.HasUsage && q.finished && !q.continuous {
			// Usage on the finish_reason chunk itself (Mistral's, Gemini's,
			// LiteLLM's, older llama.cpp's): the last chunk too. Asked for on
			// every chunk, it is not: the usage chunk or [DONE] ends the stream.
			r.finish()
			q.drain = true
		}
		return nil
	}
}

// callRelay is a bridge's translation of a delta's tool call pieces, which readCalls
// reads for it.
type callRelay interface {
	// callDelta translates a piece of tool call n (numbered unset when the server
	// numbers no calls): its id, function name and arguments piece, raw, nil when
	// absent.
	callDelta(n int64, numbered bool, id, name, args []byte) error
}

// readCalls reads a delta's tool_calls (calls, raw) for r, piece by piece, stopping
// at the first error r gives.
func readCalls(calls []byte, r callRelay) error {
	var a jsonscan.Array
	if !a.Reset(calls) {
		return nil
	}
	for {
		call, ok := a.Next()
		if !ok {
			return nil
		}
		idx, id, name, args, ok := readCallDelta(call)
		if !ok {
			return errEventNotJSON
		}
		n, numbered := jsonscan.Int(idx)
		if err := r.callDelta(n, numbered, id, name, args); err != nil {
			return err
		}
	}
}

// readCallDelta reads a chat stream's tool call delta: its index, id, function name
// and arguments piece, raw (nil when absent); ok is false when call is no JSON
// object.
func readCallDelta(call []byte) (idx, id, name, args []byte, ok bool) {
	var fn []byte
	var it jsonscan.Iter
	if it.Reset(call) != nil {
		return nil, nil, nil, nil, false
	}
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "index":
			idx = v
		case "id":
			id = v
		case "function":
			fn = v
		}
	}
	if len(fn) > 0 && fn[0] == '{' {
		name, _ = jsonscan.Field(fn, "name")
		args, _ = jsonscan.Field(fn, "arguments")
	}
	return idx, id, name, args, true
}
