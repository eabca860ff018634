package providers

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// WebSearchBound is the most web searches one answer to a request of kind, with body,
// may run on an anthropic backend, as the translation asks for them: a chat request's
// web_search_options (its search_context_size low, medium or high as max_uses 1, 5 or
// 10: readWebSearch), and a Responses API call's web search tool, which the bridge
// sends as web_search_options. It is 0 for a request without the tool, one the
// translation refuses, one with tool_choice "none" (sent to Anthropic as its own: the
// model answers without searching), and one without search_context_size: that tool
// goes without max_uses, and Anthropic documents no default cap, so there is nothing
// to bound the searches by (the settlement charges those that ran). Other kinds have
// no search.
func WebSearchBound(kind Kind, body []byte) int64 {
	var ws []byte
	switch kind {
	case Chat:
		ws = chatWebSearch(body)
	case Responses:
		return responsesWebSearch(body)
	case Messages:
		return messagesWebSearch(body)
	default:
		return 0
	}
	if ws == nil {
		return 0
	}
	t, err := readWebSearch(ws)
	if err != nil || !t.on {
		return 0
	}
	return int64(t.maxUses)
}

// chatWebSearch is the web_search_options value of a chat body as the translation's
// decoder (encoding/json) takes it: the last member of that name, in any case, escapes
// decoded; nil without one, or with tool_choice "none", which the translation sends
// as Anthropic's, so that the model answers without searching.
func chatWebSearch(body []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return nil
	}
	var ws, tc []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			if choiceNone(tc) {
				return nil
			}
			return ws
		}
		switch {
		case len(k) >= len("web_search_options") && foldedKey(k, "web_search_options"):
			ws = v
		case len(k) >= len("tool_choice") && foldedKey(k, "tool_choice"):
			tc = v
		}
	}
}

// choiceNone reports whether a tool_choice value is "none" as the translation
// compares it (byte for byte).
func choiceNone(tc []byte) bool { return string(tc) == `"none"` }

// responsesWebSearch is WebSearchBound of a Responses API body: its tools' web search
// tool, read as the bridge reads it (appendBridgeTools), search_context_size mapped as
// readWebSearch maps it. A second web search tool is refused by the bridge: 0.
func responsesWebSearch(body []byte) int64 {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return 0
	}
	var buf keyBuf
	var tools, tc []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(keyName(k, &buf)) {
		case "tools":
			tools = v
		case "tool_choice":
			tc = v
		}
	}
	var a jsonscan.Array
	if tools == nil || choiceNone(tc) || !a.Reset(tools) {
		// With tool_choice "none" the bridge passes it on, and the translation sends
		// Anthropic's: no search runs.
		return 0
	}
	var uses int64
	found := false
	for {
		raw, ok := a.Next()
		if !ok {
			return uses
		}
		var typ, size []byte
		var t jsonscan.Iter
		if t.Reset(raw) != nil {
			return 0
		}
		for {
			k, v, ok := t.Next()
			if !ok {
				break
			}
			if jsonscan.IsNull(v) {
				v = nil
			}
			switch string(keyName(k, &buf)) {
			case "type":
				typ = v
			case "search_context_size":
				// A null one is passed over (appendWebSearchOptions).
				if v != nil {
					size = v
				}
			}
		}
		if !isString(typ, "web_search") && !isString(typ, "web_search_preview") &&
			!isString(typ, "web_search_2025_08_26") && !isString(typ, "web_search_preview_2025_03_11") {
			continue
		}
		if found {
			return 0
		}
		found = true
		if size != nil {
			uses = contextSizeUses(size)
		}
	}
}

// messagesWebSearch is WebSearchBound of a Messages API body, which the backend gets
// as it came: the max_uses of its web search tools (type web_search_…), none with
// tool_choice {"type": "none"}. A tool without max_uses is bounded by nothing the body
// says and counts none, as a chat call's without search_context_size.
func messagesWebSearch(body []byte) int64 {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return 0
	}
	var tools, tc []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "tools":
			tools = v
		case "tool_choice":
			tc = v
		}
	}
	var a jsonscan.Array
	if t, _ := jsonscan.Field(tc, "type"); isString(t, "none") || !a.Reset(tools) {
		return 0
	}
	var uses int64
	for {
		raw, ok := a.Next()
		if !ok {
			return uses
		}
		typ, _ := jsonscan.Field(raw, "type")
		if !jsonscan.IsString(typ) || !bytes.HasPrefix(typ, strWebSearchType) {
			continue
		}
		if n, ok := jsonscan.Count(fieldOf(raw, "max_uses"), 1<<20); ok && n > 0 {
			uses += n
		}
	}
}

// strWebSearchType begins the type of Anthropic's web search tools, as a JSON string.
var strWebSearchType = []byte(`"web_search_`)

// fieldOf is the value of member key of the object raw, nil without one.
func fieldOf(raw []byte, key string) []byte {
	v, _ := jsonscan.Field(raw, key)
	return v
}

// contextSizeUses is the max_uses search_context_size goes as (webSearchUses), 0 for
// a value the translation refuses.
func contextSizeUses(size []byte) int64 {
	for _, u := range webSearchUses {
		if sameString(size, u.size) {
			return int64(u.uses)
		}
	}
	return 0
}

// MarksPromptCache reports whether body has a cache_control member anywhere:
// Anthropic writes to its prompt cache only what a request marks, and the translation
// passes a mark on from a message, a content part or a tool. The name is matched as
// the translation's decoder matches it (any case, \u escapes decoded); a string that
// spells it whole counts too, which only makes an estimate higher.
func MarksPromptCache(body []byte) bool {
	for i := 0; i < len(body); {
		j := bytes.IndexByte(body[i:], '"')
		if j < 0 {
			return false
		}
		i += j + 1
		if i == len(body) {
			return false
		}
		if c := body[i]; c != 'c' && c != 'C' && c != '\\' {
			// Most strings: not worth a call.
			continue
		}
		if n := spells(body[i:], "cache_control"); n > 0 && i+n < len(body) && body[i+n] == '"' {
			return true
		}
	}
	return false
}

// spells is the length of the prefix of b that spells name (lower-case ASCII) in any
// case, each character written as it is or as a \u escape; 0 when b begins otherwise.
// Only ASCII folds to the letters of the names read here (encoding/json's other
// foldings are the Kelvin sign's to k and the long s's to s).
func spells(b []byte, name string) int {
	i := 0
	for k := 0; k < len(name); k++ {
		if i >= len(b) {
			return 0
		}
		c, n := rune(b[i]), 1
		if c == '\\' {
			if c, n = jsonscan.DecodeEscape(b, i); n == 0 {
				return 0
			}
		}
		i += n
		want := rune(name[k])
		if c != want && (want < 'a' || want > 'z' || c != want-'a'+'A') {
			return 0
		}
	}
	return i
}
