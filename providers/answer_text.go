package providers

import "github.com/tollgate/tollgate/internal/jsonscan"

// The generated text of an answer read whole that came without usage, sized as a
// stream's events are (textBytes, Event.OutputBytes) for the gateway to estimate its
// output tokens by: the inside of each string as written, escapes as they are.

var strInputKey = []byte(`"input"`)

// usageNone reports whether an answer's usage value v gives no usage: null, or an
// empty object, which holds no count, believable or not (a stream's usage chunk of {}
// is one without counts too, and estimated as one).
func usageNone(v []byte) bool {
	if jsonscan.IsNull(v) {
		return true
	}
	if len(v) < 2 || v[0] != '{' {
		return false
	}
	return jsonscan.SkipSpace(v, 1) == len(v)-1
}

// choiceKeys are the members of a chat completion's choices (or a legacy
// completion's) whose strings are generated text: a message's content, its tool
// calls' arguments, a legacy completion's text (or a content part's), a refusal.
// A reasoning model's thinking is counted apart (choicesBytes).
var choiceKeys = [...][]byte{strContentKey, strArgumentsKey, strTextKey, strRefusalKey}

// choicesBytes is the size of the generated text of an answer's choices. Thinking
// counts once, under the name that has more of it: vLLM has written it under both
// reasoning_content and reasoning.
func choicesBytes(v []byte) int {
	if len(v) == 0 {
		return 0
	}
	n := 0
	for _, key := range choiceKeys {
		n += textBytes(v, key)
	}
	return n + max(textBytes(v, strReasoningKey), textBytes(v, strReasoningAlt))
}

// outputKeys are the members of a Responses API answer's output items whose strings
// are generated text: a message's output text and a reasoning item's summary and
// text, a function call's arguments, a custom tool call's input, a refusal.
var outputKeys = [...][]byte{strTextKey, strArgumentsKey, strInputKey, strRefusalKey}

// outputBytes is the size of the generated text of a Responses API answer's output.
func outputBytes(v []byte) int {
	if len(v) == 0 {
		return 0
	}
	n := 0
	for _, key := range outputKeys {
		n += textBytes(v, key)
	}
	return n
}

// contentBytes is the size of the generated text of a Messages API answer's content:
// its text and thinking blocks' text, and its tool_use blocks' input, an object,
// whole (a stream carries it as the partial_json strings that write it).
func contentBytes(v []byte) int {
	if len(v) == 0 {
		return 0
	}
	return textBytes(v, strTextKey) + textBytes(v, strThinkingKey) + valueBytes(v, strInputKey, '{')
}
