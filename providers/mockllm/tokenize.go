package mockllm

import (
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// VLLMVersion is what GET /version reports: the vLLM release mockllm is modelled on.
const VLLMVersion = "0.11.0"

var bodyVersion = []byte(`{"version":"` + VLLMVersion + `"}`)

// tokenize answers vLLM's POST /tokenize: {"model","prompt"} or {"model","messages"}
// gives {"count","max_model_len","tokens","token_strs"}. The count is the estimate
// usage charges the same prompt (about four bytes a token; for messages, as a chat
// call's prompt_tokens counts them), and the ids are deterministic picks from the
// mock's vocabulary, so detokenize spells them as words rather than giving the prompt
// back. The chat form takes the members of vLLM's TokenizeChatRequest that shape the
// rendered prompt (add_generation_prompt, continue_final_message, add_special_tokens,
// tools, chat_template_kwargs), checked as vLLM checks them; a chat call's prompt
// count reads none of them, and neither does this one.
func (s *Server) tokenize(ctx *fasthttp.RequestCtx, st *state) {
	body := ctx.PostBody()
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		s.badRequest(ctx, st, errJSON)
		return
	}
	var prompt, messages []byte
	strs := false
	var chatForm chatTokenize
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "model":
			if e := st.setModel(v); e != nil {
				s.badRequest(ctx, st, e)
				return
			}
		case "prompt":
			prompt = v
		case "messages":
			messages = v
		case "return_token_strs":
			b, ok := jsonscan.Bool(v)
			if !ok && !isNull(v) {
				s.badRequest(ctx, st, &badRequest{msg: "return_token_strs: Input should be a valid boolean", param: "return_token_strs"})
				return
			}
			strs = b
		default:
			chatForm.read(k, v)
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		s.badRequest(ctx, st, errJSON)
		return
	}
	var raw []byte
	var count int
	switch {
	case messages != nil:
		n, ok := messagesBytes(messages)
		if !ok {
			s.badRequest(ctx, st, &badRequest{msg: "messages: Input should be a valid list of messages", param: "messages"})
			return
		}
		if e := chatForm.check(); e != nil {
			s.badRequest(ctx, st, e)
			return
		}
		raw, count = messages, promptTokens(n+st.toolsBytes(chatForm.tools))
	case prompt != nil:
		if !jsonscan.IsString(prompt) {
			s.badRequest(ctx, st, &badRequest{msg: "prompt: Input should be a valid string", param: "prompt"})
			return
		}
		raw, count = prompt, promptTokens(strLen(prompt))
	default:
		s.badRequest(ctx, st, &badRequest{msg: "prompt: Field required", param: "prompt"})
		return
	}
	if !s.modelOK(st.modelRaw, st.scratch) {
		s.modelNotFound(ctx, st, st.modelRaw)
		return
	}
	p := plan{h: promptHash(s.opts.Seed, 0, false, raw)}
	b := st.out[:0]
	b = append(b, `{"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, `,"max_model_len":`...)
	b = strconv.AppendInt(b, int64(s.opts.MaxModelLen), 10)
	b = append(b, `,"tokens":[`...)
	for i := range count {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(p.wordIndex(i)), 10)
	}
	b = append(b, `],"token_strs":`...)
	if strs {
		b = append(b, '[')
		for i := range count {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, p.word(i)...)
			b = append(b, '"')
		}
		b = append(b, ']')
	} else {
		b = append(b, "null"...)
	}
	st.out = append(b, '}')
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// chatTokenize holds the members of a chat form tokenize request that shape the
// prompt vLLM renders, as raw values (nil when absent).
type chatTokenize struct {
	generation, continueFinal, special, tools, kwargs []byte
}

func (c *chatTokenize) read(k, v []byte) {
	switch string(k) {
	case "add_generation_prompt":
		c.generation = v
	case "continue_final_message":
		c.continueFinal = v
	case "add_special_tokens":
		c.special = v
	case "tools":
		c.tools = v
	case "chat_template_kwargs":
		c.kwargs = v
	}
}

var (
	errTokenizeGeneration = &badRequest{msg: "add_generation_prompt: Input should be a valid boolean", param: "add_generation_prompt"}
	errTokenizeContinue   = &badRequest{msg: "continue_final_message: Input should be a valid boolean", param: "continue_final_message"}
	errTokenizeSpecial    = &badRequest{msg: "add_special_tokens: Input should be a valid boolean", param: "add_special_tokens"}
	errTokenizeTools      = &badRequest{msg: "tools: Input should be a valid list", param: "tools"}
	errTokenizeKwargs     = &badRequest{msg: "chat_template_kwargs: Input should be a valid dictionary", param: "chat_template_kwargs"}
	// TokenizeChatRequest's check_generation_prompt, which reads the members as
	// sent: both given true.
	errTokenizeBoth = &badRequest{msg: "Value error, Cannot set both `continue_final_message` and `add_generation_prompt` to True."}
)

// check refuses what vLLM's TokenizeChatRequest refuses: a member of the wrong type
// (its three booleans take no null, tools and chat_template_kwargs do), tools that
// are not a list of objects, and a final message continued with a generation prompt
// after it.
func (c *chatTokenize) check() *badRequest {
	gen, ok := memberBool(c.generation)
	if !ok {
		return errTokenizeGeneration
	}
	cont, ok := memberBool(c.continueFinal)
	if !ok {
		return errTokenizeContinue
	}
	if _, ok := memberBool(c.special); !ok {
		return errTokenizeSpecial
	}
	if c.tools != nil && !isNull(c.tools) {
		var a jsonscan.Array
		if !a.Reset(c.tools) {
			return errTokenizeTools
		}
		for {
			t, more := a.Next()
			if !more {
				break
			}
			if t[0] != '{' {
				return errTokenizeTools
			}
		}
	}
	if c.kwargs != nil && !isNull(c.kwargs) && c.kwargs[0] != '{' {
		return errTokenizeKwargs
	}
	if gen && cont {
		return errTokenizeBoth
	}
	return nil
}

// memberBool reads a boolean member that may be left out: v its value, false when
// absent; ok is false for any other value, null included.
func memberBool(raw []byte) (v, ok bool) {
	if raw == nil {
		return false, true
	}
	return jsonscan.Bool(raw)
}

// detokenize answers vLLM's POST /detokenize: {"model","tokens"} gives {"prompt"},
// the ids spelled with the mock's vocabulary (an id past its end wraps around).
func (s *Server) detokenize(ctx *fasthttp.RequestCtx, st *state) {
	body := ctx.PostBody()
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		s.badRequest(ctx, st, errJSON)
		return
	}
	var tokens []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "model":
			if e := st.setModel(v); e != nil {
				s.badRequest(ctx, st, e)
				return
			}
		case "tokens":
			tokens = v
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		s.badRequest(ctx, st, errJSON)
		return
	}
	if tokens == nil {
		s.badRequest(ctx, st, &badRequest{msg: "tokens: Field required", param: "tokens"})
		return
	}
	errTokens := &badRequest{msg: "tokens: Input should be a valid list of integers", param: "tokens"}
	var a jsonscan.Array
	if !a.Reset(tokens) {
		s.badRequest(ctx, st, errTokens)
		return
	}
	if !s.modelOK(st.modelRaw, st.scratch) {
		s.modelNotFound(ctx, st, st.modelRaw)
		return
	}
	b := append(st.out[:0], `{"prompt":"`...)
	for i := 0; ; i++ {
		v, ok := a.Next()
		if !ok {
			break
		}
		id, ok := jsonscan.Int(v)
		if !ok {
			s.badRequest(ctx, st, errTokens)
			return
		}
		if id < 0 {
			s.badRequest(ctx, st, &badRequest{serving: true, msg: "Token id " + strconv.FormatInt(id, 10) + " is out of vocabulary"})
			return
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[id%vocabSize]...)
	}
	st.out = append(b, `"}`...)
	s.setJSON(ctx, st, fasthttp.StatusOK)
}
