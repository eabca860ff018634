package mockllm

import (
	"bytes"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// webSearch is the answer's use of the web search server tool (web_search_20250305,
// web_search_20260209 or web_search_20260318) a request declares. The model tries searchTries searches, as
// the API runs them within one turn: each is a server_tool_use block (the query) and a
// web_search_tool_result block (its results, deterministic), one past max_uses getting
// the result error max_uses_exceeded instead. A text block citing the first result of
// each search that ran comes next, its text holding multi-byte characters (citation
// offsets are counted in characters), then the answer as without the tool.
type webSearch struct {
	on bool
	// maxUses is the tool's max_uses, 0 for none.
	maxUses int64
	// ev is how many of its events a stream sent.
	ev int
	// pinged is set once a stream without thinking sent its ping, after the first
	// block's start as the API sends it.
	pinged bool
	// sent is set once a stream sent the cited text.
	sent bool
}

// searchTries is how many searches the model makes.
const searchTries = 2

// citedTokens is the cited text's token count (its words, appendCitedText).
const citedTokens = 6

// tries is the number of server_tool_use blocks.
func (w *webSearch) tries() int {
	if !w.on {
		return 0
	}
	return searchTries
}

// runs is the number of searches that ran, within max_uses: web_search_requests.
func (w *webSearch) runs() int {
	if w.maxUses > 0 && w.maxUses < searchTries {
		return int(w.maxUses)
	}
	return w.tries()
}

// blocks is the number of content blocks the searches add: two a search, and the
// cited text.
func (w *webSearch) blocks() int64 {
	if !w.on {
		return 0
	}
	return int64(2*w.tries() + 1)
}

// tokens is what the searches add to output_tokens: the cited text.
func (w *webSearch) tokens() int {
	if !w.on {
		return 0
	}
	return citedTokens
}

// results is how many results search k gives: two, then one.
func results(k int) int { return 2 - k%2 }

// The Messages API's refusals of a web search tool, in its words.
const (
	errExtra      = ": Extra inputs are not permitted"
	errDictionary = ": Input should be a valid dictionary or object to extract fields from"
)

// parseWebSearch checks the request's server tools as the API does and decides whether
// the answer searches: with the web search tool declared, tool_choice absent or auto
// (none uses no tool, a forced one is the first block), and room in max_tokens after
// the thinking for the cited text.
func (st *state) parseWebSearch(tools, choice []byte) *badRequest {
	var a jsonscan.Array
	if !a.Reset(tools) {
		return nil
	}
	for i := 0; ; i++ {
		t, ok := a.Next()
		if !ok {
			break
		}
		typ, _ := jsonscan.Field(t, "type")
		if !isServerTool(typ) || !bytes.HasPrefix(typ, strWebSearchPrefix) {
			continue
		}
		switch string(typ) {
		case `"web_search_20250305"`, `"web_search_20260209"`, `"web_search_20260318"`:
		default:
			return &badRequest{msg: "tools." + strconv.Itoa(i) + ": Input tag " + string(typ) + " found using 'type' does not match any of the expected tags"}
		}
		if e := st.checkWebSearchTool(i, typ, t); e != nil {
			return e
		}
	}
	if !st.tool.search.on {
		return nil
	}
	if choice != nil && !isNull(choice) {
		if t, _ := jsonscan.Field(choice, "type"); string(t) != `"auto"` {
			st.tool.search.on = false
		}
	}
	if st.maxTokens-int64(st.think.tokens()) <= citedTokens {
		st.tool.search.on = false
	}
	return nil
}

var strWebSearchPrefix = []byte(`"web_search_`)

// toolWhere names tool i of type typ (a JSON string) in refusals, as the API does:
// tools.0.web_search_20250305. Built only for one: a request taken costs nothing.
func toolWhere(i int, typ []byte) string {
	return "tools." + strconv.Itoa(i) + "." + string(typ[1:len(typ)-1])
}

// isServerTool reports whether a tool's type (raw JSON, nil when absent) names one of
// the API's own tools: a client tool has none, or "custom".
func isServerTool(typ []byte) bool {
	return typ != nil && !isNull(typ) && string(typ) != `"custom"`
}

// checkWebSearchTool checks the web search tool t, tool i of type typ: its name,
// max_uses of at least 1, user_location of type approximate with string members, and
// no member the API does not define.
func (st *state) checkWebSearchTool(i int, typ, t []byte) *badRequest {
	var it jsonscan.Iter
	it.Reset(t)
	domains := 0
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "type", "cache_control", "defer_loading", "strict", "allowed_callers":
		case "name":
			if string(v) != `"web_search"` {
				return &badRequest{msg: toolWhere(i, typ) + ".name: Input should be 'web_search'"}
			}
		case "max_uses":
			if isNull(v) {
				continue
			}
			n, ok := jsonscan.Int(v)
			switch {
			case !ok:
				return &badRequest{msg: toolWhere(i, typ) + ".max_uses: Input should be a valid integer"}
			case n < 1:
				return &badRequest{msg: toolWhere(i, typ) + ".max_uses: Input should be greater than 0"}
			}
			st.tool.search.maxUses = n
		case "allowed_domains", "blocked_domains":
			if !isNull(v) {
				domains++
			}
		case "user_location":
			if e := checkUserLocation(v); e != nil {
				e.msg = toolWhere(i, typ) + ".user_location" + e.msg
				return e
			}
		default:
			return &badRequest{msg: toolWhere(i, typ) + "." + string(k) + errExtra}
		}
	}
	if domains > 1 {
		return &badRequest{msg: "Only one of allowed_domains or blocked_domains can be specified for the web search tool."}
	}
	st.tool.search.on = true
	return nil
}

// checkUserLocation checks a web search tool's user_location; a refusal's message
// goes on from the member's name.
func checkUserLocation(v []byte) *badRequest {
	if isNull(v) {
		return nil
	}
	if len(v) == 0 || v[0] != '{' {
		return &badRequest{msg: errDictionary}
	}
	typ, _ := jsonscan.Field(v, "type")
	if string(typ) != `"approximate"` {
		return &badRequest{msg: ".type: Input should be 'approximate'"}
	}
	var it jsonscan.Iter
	it.Reset(v)
	for {
		k, m, ok := it.Next()
		if !ok {
			return nil
		}
		switch string(k) {
		case "type":
		case "city", "region", "country", "timezone":
			if !isNull(m) && !jsonscan.IsString(m) {
				return &badRequest{msg: "." + string(k) + ": Input should be a valid string"}
			}
		default:
			return &badRequest{msg: "." + string(k) + errExtra}
		}
	}
}

// searchWord is word i of search k's query, drawn from the prompt hash.
func (st *state) searchWord(k, i int) string {
	return words[mix(st.items[0].h^uint64(k+3)*golden+uint64(i))&(vocabSize-1)]
}

// appendQuery appends search k's query as the inside of a JSON string.
func (st *state) appendQuery(b []byte, k int) []byte {
	for i := range 3 {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, st.searchWord(k, i)...)
	}
	return b
}

// appendSearchID appends search k's server_tool_use id as a JSON string.
func (st *state) appendSearchID(b []byte, k int) []byte {
	b = append(b, `"srvtoolu_01`...)
	b = appendBase62(b, mix(st.idA^uint64(k+1)*golden), mix(st.idB+uint64(k)), 22)
	return append(b, '"')
}

// appendResultURL appends the URL of result r of search k as a JSON string.
func (st *state) appendResultURL(b []byte, k, r int) []byte {
	b = append(b, `"https://example.com/`...)
	b = append(b, st.searchWord(k, 0)...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(k+1), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(r+1), 10)
	return append(b, '"')
}

// appendResultTitle appends the title of result r of search k as a JSON string.
func (st *state) appendResultTitle(b []byte, k, r int) []byte {
	b = append(b, `"Résumé: `...)
	b = append(b, st.searchWord(k, r)...)
	return append(b, '"')
}

// appendServerToolUse appends search k's server_tool_use block, its input given
// whole (a stream sends it as an input_json_delta, the block opening with {}).
func (st *state) appendServerToolUse(b []byte, k int, input bool) []byte {
	b = append(b, `{"type":"server_tool_use","id":`...)
	b = st.appendSearchID(b, k)
	b = append(b, `,"name":"web_search","input":`...)
	if !input {
		return append(b, "{}}"...)
	}
	b = append(b, `{"query":"`...)
	b = st.appendQuery(b, k)
	return append(b, `"}}`...)
}

// appendSearchResult appends search k's web_search_tool_result block: its results, or
// the max_uses_exceeded error of a search past max_uses.
func (st *state) appendSearchResult(b []byte, k int) []byte {
	b = append(b, `{"type":"web_search_tool_result","tool_use_id":`...)
	b = st.appendSearchID(b, k)
	b = append(b, `,"content":`...)
	if k >= st.tool.search.runs() {
		return append(b, `{"type":"web_search_tool_result_error","error_code":"max_uses_exceeded"}}`...)
	}
	b = append(b, '[')
	for r := range results(k) {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"web_search_result","url":`...)
		b = st.appendResultURL(b, k, r)
		b = append(b, `,"title":`...)
		b = st.appendResultTitle(b, k, r)
		b = append(b, `,"encrypted_content":"EqMock`...)
		b = strconv.AppendUint(b, mix(st.items[0].h+uint64(k*4+r)), 16)
		b = append(b, `","page_age":"January 2, 2025"}`...)
	}
	return append(b, "]}"...)
}

// appendCitation appends the citation of search k's first result.
func (st *state) appendCitation(b []byte, k int) []byte {
	b = append(b, `{"type":"web_search_result_location","url":`...)
	b = st.appendResultURL(b, k, 0)
	b = append(b, `,"title":`...)
	b = st.appendResultTitle(b, k, 0)
	b = append(b, `,"encrypted_index":"EoMock`...)
	b = strconv.AppendUint(b, mix(st.items[0].h^uint64(k+1)), 16)
	b = append(b, `","cited_text":"`...)
	b = st.appendQuery(b, k)
	return append(b, `."}`...)
}

// appendCitedText appends the cited text, citedTokens words, as the inside of a JSON
// string: characters of two, three and four UTF-8 bytes (one UTF-16 unit, and two for
// the last), before three words of the first query.
func (st *state) appendCitedText(b []byte) []byte {
	b = append(b, "Résumé ☕ 🌍: "...)
	b = st.appendQuery(b, 0)
	return append(b, ". "...)
}

// appendSearchBlocks appends the searches' blocks and the cited text block, each
// followed by a comma: the answer's blocks go on after them.
func (st *state) appendSearchBlocks(b []byte) []byte {
	w := &st.tool.search
	for k := range w.tries() {
		b = st.appendServerToolUse(b, k, true)
		b = append(b, ',')
		b = st.appendSearchResult(b, k)
		b = append(b, ',')
	}
	b = append(b, `{"type":"text","text":"`...)
	b = st.appendCitedText(b)
	b = append(b, `","citations":[`...)
	for k := range w.runs() {
		if k > 0 {
			b = append(b, ',')
		}
		b = st.appendCitation(b, k)
	}
	return append(b, "]},"...)
}

// appendSearchUsage appends usage.server_tool_use when the answer searched.
func (st *state) appendSearchUsage(b []byte) []byte {
	if !st.tool.search.on {
		return b
	}
	b = append(b, `,"server_tool_use":{"web_search_requests":`...)
	b = strconv.AppendInt(b, int64(st.tool.search.runs()), 10)
	return append(b, '}')
}

// searchEvents is how many events a stream sends for the searches: five a search
// (the server_tool_use block's start, input_json_delta and stop, the result block's
// start and stop), and the cited text block's start, citations_delta events,
// text_delta and stop.
func (w *webSearch) searchEvents() int { return 5*w.tries() + 3 + w.runs() }

// nextSearch appends the stream's next search event; last says it was the last.
func (st *state) nextSearch(b []byte) (out []byte, last bool, err error) {
	w := &st.tool.search
	if w.ev == 1 && !st.think.on && !w.pinged {
		w.pinged = true
		return append(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n"...), false, nil
	}
	e := w.ev
	w.ev++
	base := st.textIndex() - w.blocks()
	b = append(b, "event: "...)
	if k := e / 5; k < w.tries() {
		idx := base + int64(2*k)
		switch e % 5 {
		case 0:
			b = appendBlockEvent(b, "content_block_start", idx)
			b = append(b, `,"content_block":`...)
			b = st.appendServerToolUse(b, k, false)
		case 1:
			b = appendBlockEvent(b, "content_block_delta", idx)
			b = append(b, `,"delta":{"type":"input_json_delta","partial_json":"{\"query\":\"`...)
			b = st.appendQuery(b, k)
			b = append(b, `\"}"}`...)
		case 2:
			b = appendBlockEvent(b, "content_block_stop", idx)
		case 3:
			b = appendBlockEvent(b, "content_block_start", idx+1)
			b = append(b, `,"content_block":`...)
			b = st.appendSearchResult(b, k)
		default:
			b = appendBlockEvent(b, "content_block_stop", idx+1)
		}
		return append(b, "}\n\n"...), false, nil
	}
	idx := base + int64(2*w.tries())
	switch c := e - 5*w.tries(); {
	case c == 0:
		b = appendBlockEvent(b, "content_block_start", idx)
		b = append(b, `,"content_block":{"type":"text","text":"","citations":[]}`...)
	case c <= w.runs():
		b = appendBlockEvent(b, "content_block_delta", idx)
		b = append(b, `,"delta":{"type":"citations_delta","citation":`...)
		b = st.appendCitation(b, c-1)
		b = append(b, '}')
	case c == w.runs()+1:
		// The searches' pause is over: the first text comes as a token would.
		if err := st.waitContent(-100); err != nil {
			return nil, false, err
		}
		b = appendBlockEvent(b, "content_block_delta", idx)
		b = append(b, `,"delta":{"type":"text_delta","text":"`...)
		b = st.appendCitedText(b)
		b = append(b, `"}`...)
		w.sent = true
	default:
		b = appendBlockEvent(b, "content_block_stop", idx)
	}
	return append(b, "}\n\n"...), w.ev == w.searchEvents(), nil
}

// appendBlockEvent appends a content block event's name line and its data up to its
// index, the object left open.
func appendBlockEvent(b []byte, name string, idx int64) []byte {
	b = append(b, name...)
	b = append(b, "\ndata: {\"type\":\""...)
	b = append(b, name...)
	b = append(b, `","index":`...)
	return strconv.AppendInt(b, idx, 10)
}
