package mockllm

import (
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// messagesKey reports whether k is a top-level member the Messages API defines; it
// refuses any other ("response_format: Extra inputs are not permitted"), so an OpenAI
// field a translation leaks is a 400 there. mockllm reads some of them and takes the
// rest (metadata, service_tier, container, ...) without acting on them.
func messagesKey(k []byte) bool {
	switch string(k) {
	case "model", "messages", "max_tokens", "system", "metadata", "stop_sequences",
		"stream", "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking",
		"output_config", "output_format", "service_tier", "container", "mcp_servers",
		"context_management", "inference_geo", "cache_control":
		return true
	}
	return false
}

// errExtraInput is the API's refusal of a top-level member it does not define.
func errExtraInput(k []byte) *badRequest {
	return &badRequest{msg: string(k) + ": Extra inputs are not permitted"}
}

// maxCacheMarks is how many blocks may carry cache_control in one request, counted
// over tools, system and messages.
const maxCacheMarks = 4

// The Messages API's refusals of a tool-use history and of tools, in its words.
var (
	errToolsRequired = &badRequest{msg: "Requests which include `tool_use` or `tool_result` blocks must define tools."}
	errToolNames     = &badRequest{msg: "tools: Tool names must be unique."}
)

// history is checkMessages' view of the tool-use turns so far: the tool_use ids of the
// previous message (st.useIDs[from:to], sent by message at), which the next message
// must answer, the cache_control marks counted, and whether the request defines tools.
type history struct {
	from, to, at int
	marks        int
	tools        bool
}

// checkBlocks checks message i's content blocks as the API does: a tool_use id matches
// ^[a-zA-Z0-9_-]+$ and is unique in the request; the message after one with tool_use
// blocks is a user message that opens with a tool_result block for each of them and
// for nothing else; either block needs the request to define tools; a base64 image is
// JPEG, PNG, GIF or WebP. It counts the blocks with cache_control.
func (st *state) checkBlocks(h *history, i int, assistant bool, content []byte) *badRequest {
	from := len(st.useIDs)
	var a jsonscan.Array
	if a.Reset(content) {
		lead := true // only tool_result blocks so far
		for j := 0; ; j++ {
			blk, ok := a.Next()
			if !ok {
				break
			}
			if _, ok := jsonscan.Field(blk, "cache_control"); ok {
				h.marks++
			}
			t, _ := jsonscan.Field(blk, "type")
			switch string(t) {
			case `"tool_use"`:
				if e := st.checkToolUse(h, i, j, blk); e != nil {
					return e
				}
			case `"tool_result"`:
				if e := st.checkToolResult(h, i, j, lead, blk); e != nil {
					return e
				}
			case `"image"`:
				if e := checkImage(i, j, blk, ""); e != nil {
					return e
				}
			}
			lead = lead && string(t) == `"tool_result"`
		}
	}
	if e := st.unanswered(h); e != nil {
		return e
	}
	h.from, h.to, h.at = from, len(st.useIDs), i
	if !assistant {
		// A user message's tool_use blocks are not calls to answer.
		h.from = h.to
	}
	return nil
}

func (st *state) checkToolUse(h *history, i, j int, blk []byte) *badRequest {
	if !h.tools {
		return errToolsRequired
	}
	id, _ := jsonscan.Field(blk, "id")
	if !toolUseID(id) {
		return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content." + strconv.Itoa(j) +
			".tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"}
	}
	for _, seen := range st.useIDs {
		if string(seen) == string(id) {
			return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content." + strconv.Itoa(j) + ": `tool_use` ids must be unique"}
		}
	}
	st.useIDs = append(st.useIDs, id)
	st.useDone = append(st.useDone, false)
	return nil
}

// checkToolResult marks the tool_use a tool_result block answers. One that follows a
// block of another kind answers nothing: the API wants the tool results first.
func (st *state) checkToolResult(h *history, i, j int, lead bool, blk []byte) *badRequest {
	if !h.tools {
		return errToolsRequired
	}
	id, _ := jsonscan.Field(blk, "tool_use_id")
	k := -1
	for n := h.from; n < h.to && lead; n++ {
		if string(st.useIDs[n]) == string(id) {
			k = n
			break
		}
	}
	if k < 0 && !lead {
		if e := st.unanswered(h); e != nil {
			return e
		}
	}
	if k < 0 {
		dec, _ := appendUnquoted(nil, id)
		return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content." + strconv.Itoa(j) +
			": unexpected `tool_use_id` found in `tool_result` blocks: " + string(dec) +
			". Each `tool_result` block must have a corresponding `tool_use` block in the previous message."}
	}
	st.useDone[k] = true
	content, _ := jsonscan.Field(blk, "content")
	var a jsonscan.Array
	if !a.Reset(content) {
		return nil
	}
	for n := 0; ; n++ {
		inner, ok := a.Next()
		if !ok {
			return nil
		}
		if _, ok := jsonscan.Field(inner, "cache_control"); ok {
			h.marks++
		}
		if t, _ := jsonscan.Field(inner, "type"); string(t) == `"image"` {
			if e := checkImage(i, j, inner, ".tool_result.content."+strconv.Itoa(n)); e != nil {
				return e
			}
		}
	}
}

// unanswered refuses the previous message's tool_use blocks that no tool_result
// answered.
func (st *state) unanswered(h *history) *badRequest {
	var missing []byte
	for n := h.from; n < h.to; n++ {
		if st.useDone[n] {
			continue
		}
		if missing != nil {
			missing = append(missing, ", "...)
		}
		missing, _ = appendUnquoted(missing, st.useIDs[n])
	}
	if missing == nil {
		return nil
	}
	return &badRequest{msg: "messages." + strconv.Itoa(h.at) + ": `tool_use` ids were found without `tool_result` blocks immediately after: " +
		string(missing) + ". Each `tool_use` block must have a corresponding `tool_result` block in the next message."}
}

// toolUseID reports whether id, a JSON string, matches ^[a-zA-Z0-9_-]+$.
func toolUseID(id []byte) bool {
	if len(id) < 3 || !jsonscan.IsString(id) {
		return false
	}
	for _, c := range id[1 : len(id)-1] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkImage refuses a base64 image block of a media type the API does not take
// (image/jpg among them: the type is image/jpeg). inner is the path below block j of
// message i, for an image inside a tool_result.
func checkImage(i, j int, blk []byte, inner string) *badRequest {
	src, _ := jsonscan.Field(blk, "source")
	if t, _ := jsonscan.Field(src, "type"); string(t) != `"base64"` {
		return nil
	}
	switch mt, _ := jsonscan.Field(src, "media_type"); string(mt) {
	case `"image/jpeg"`, `"image/png"`, `"image/gif"`, `"image/webp"`:
		return nil
	}
	return &badRequest{msg: "messages." + strconv.Itoa(i) + ".content." + strconv.Itoa(j) + inner +
		".image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"}
}

// cacheMarks counts the blocks of an array (system blocks, tools) with cache_control.
func cacheMarks(arr []byte) int {
	var a jsonscan.Array
	if !a.Reset(arr) {
		return 0
	}
	n := 0
	for {
		blk, ok := a.Next()
		if !ok {
			return n
		}
		if _, ok := jsonscan.Field(blk, "cache_control"); ok {
			n++
		}
	}
}

// errCacheMarks is the API's refusal of more than maxCacheMarks breakpoints.
func errCacheMarks(n int) *badRequest {
	return &badRequest{msg: "A maximum of " + strconv.Itoa(maxCacheMarks) + " blocks with cache_control may be provided. Found " +
		strconv.Itoa(n) + "."}
}

// uniqueToolNames refuses tools of one name.
func uniqueToolNames(tools []byte) *badRequest {
	var a, b jsonscan.Array
	a.Reset(tools)
	for i := 0; ; i++ {
		t, ok := a.Next()
		if !ok {
			return nil
		}
		n, _ := jsonscan.Field(t, "name")
		b.Reset(tools)
		for j := 0; j < i; j++ {
			u, _ := b.Next()
			if m, _ := jsonscan.Field(u, "name"); string(m) == string(n) {
				return errToolNames
			}
		}
	}
}

var strRequestIDHeader = []byte("request-id")

// setAnthropicID gives an Anthropic answer its request-id header, req_011 and 21 base62
// digits of a and b, kept in st.rid for an error body's request_id.
func (st *state) setAnthropicID(ctx *fasthttp.RequestCtx, a, b uint64) {
	st.rid = append(st.rid[:0], "req_011"...)
	st.rid = appendBase62(st.rid, a, b, 21)
	ctx.Response.Header.SetBytesKV(strRequestIDHeader, st.rid)
}
