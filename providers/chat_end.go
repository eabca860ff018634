package providers

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// chatEnd follows a chat completions stream toward its end, for one that ends without
// data: [DONE]. Some OpenAI-compatible servers close the stream cleanly after its
// last chunk and send no [DONE]; the Messages and Responses bridges end such a stream
// at its usage chunk, or at its finish_reason chunk (relayQueue.readChunk), and a
// chat stream passed on whole is whole at the same point: once every choice has had
// its finish_reason and, when usage was asked for, the usage came after it. A stream
// whose body ends before that was cut. A legacy completions stream ends the same way:
// its chunks' choices carry an index and a finish_reason as chat's do (text in place
// of delta), and its usage comes as chat's.
type chatEnd struct {
	// on is set for a chat or legacy completions stream, usage when its usage was
	// asked for (by the client, or by the gateway on its behalf), one when it answers
	// one choice.
	on, usage, one bool
	// left counts the choices whose finish_reason has not come yet; finished marks,
	// by index, those whose has.
	left     int
	finished [maxEndChoices / 64]uint64
	// early is set once a chunk carried usage before every choice had finished:
	// usage on every chunk (continuous_usage_stats), so that only a chunk after the
	// last finish_reason carries the final usage.
	early bool
	// whole is set once the stream has all it answers.
	whole bool
}

// maxEndChoices bounds the choices chatEnd follows: OpenAI's n goes to 128. A stream
// of more choices is whole only at its [DONE].
const maxEndChoices = 128

// start follows a chat or completions stream that answers choices choices
// (Call.Choices; 0 is one), its usage asked for when usage is set.
func (e *chatEnd) start(choices int64, usage bool) {
	*e = chatEnd{on: true, usage: usage, one: choices <= 1, left: int(min(max(choices, 1), maxEndChoices+1))}
}

// note reads chunk ev (its choices array, raw) toward the stream's end.
func (e *chatEnd) note(ev *Event, choices []byte) {
	if !e.on || e.whole || ev.Error {
		return
	}
	last := false
	if e.left > 0 && len(choices) > 0 && !(e.one && endsUnfinished(choices)) && finishNamed(choices) {
		e.finish(choices)
		last = e.left == 0
	}
	switch {
	case e.left > 0:
		if ev.HasUsage {
			e.early = true
		}
	case !e.usage:
		e.whole = true
	case ev.HasUsage && (!last || !e.early):
		// The usage chunk after the last finish_reason, or usage on the
		// finish_reason chunk itself (Mistral's, Gemini's, LiteLLM's, older
		// llama.cpp's) where it does not come on every chunk.
		e.whole = true
	}
}

// finish marks the choices of choices that carry a finish_reason other than null or "",
// which some servers write on the chunks before the last, read
// as a bridge reads a choice (chatChoice), its delta left unread; a choice without an
// index is the first.
func (e *chatEnd) finish(choices []byte) {
	var a jsonscan.Array
	if !a.Reset(choices) {
		return
	}
	for {
		c, ok := a.Next()
		if !ok {
			return
		}
		var it jsonscan.Iter
		if it.Reset(c) != nil {
			continue
		}
		var idx, finish []byte
		for {
			k, v, more := it.Next()
			if !more {
				break
			}
			switch string(k) {
			case "index":
				idx = v
			case "finish_reason":
				finish = v
			}
		}
		if !finishes(finish) || it.Err() != nil {
			continue
		}
		var i int64
		if idx != nil {
			if i, ok = jsonscan.Int(idx); !ok {
				continue
			}
		}
		if i < 0 || i >= maxEndChoices || e.finished[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		e.finished[i/64] |= 1 << (i % 64)
		e.left--
	}
}

// endsUnfinished reports whether choices ends with a choice whose last member is
// "finish_reason":null, as OpenAI and vLLM write every chat chunk but the finishing
// one, or whose last two are "finish_reason":null,"stop_reason":null, as vLLM writes
// every legacy completions chunk but the finishing one: a look at its last bytes, a
// quarter of what finishNamed's look through the whole array costs, on every chunk a
// stream relays. The one choice of a stream that answers one has not finished then.
// Compared in parts of at most 16 bytes, which the compiler does in registers,
// without a call.
func endsUnfinished(choices []byte) bool {
	n := len(choices)
	if n < 22 || string(choices[n-15:]) != `_reason":null}]` {
		return false
	}
	if string(choices[n-22:n-15]) == `"finish` {
		return true
	}
	return n >= 41 && string(choices[n-20:n-15]) == `"stop` &&
		string(choices[n-41:n-26]) == `"finish_reason"` && string(choices[n-26:n-20]) == `:null,`
}

// strFinishKey is the name finishNamed looks for, less its opening quote: JSON has
// quotes everywhere, and a look for a name's first byte that stops at each would cost
// more than the chunk's own reading.
var strFinishKey = []byte(`finish_reason"`)

// finishNamed reports whether choices may hold a finish_reason other than null: a
// look for the member, which most chunks have as null, before finish reads the
// choices. A quoted name matches only a member's name or a string value, never inside
// a string, where its quotes would be escaped.
func finishNamed(choices []byte) bool {
	for {
		i := bytes.Index(choices, strFinishKey)
		if i < 0 {
			return false
		}
		quoted := i > 0 && choices[i-1] == '"'
		choices = choices[i+len(strFinishKey):]
		if !quoted {
			continue
		}
		j := jsonscan.SkipSpace(choices, 0)
		if j >= len(choices) || choices[j] != ':' {
			continue
		}
		if j = jsonscan.SkipSpace(choices, j+1); j < len(choices) && choices[j] != 'n' {
			return true
		}
	}
}
