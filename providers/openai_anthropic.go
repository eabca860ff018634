package providers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// The OpenAI chat request, as far as the Messages API has a use for it. Pieces that go
// across unchanged stay raw: their bytes were validated by the decoder, so they can be
// spliced into the translation without re-encoding.
type oaRequest struct {
	Messages            []oaMessage     `json:"messages"`
	Tools               []oaTool        `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Stop                json.RawMessage `json:"stop"`
	Temperature         json.RawMessage `json:"temperature"`
	TopP                json.RawMessage `json:"top_p"`
	TopK                json.RawMessage `json:"top_k"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	User                json.RawMessage `json:"user"`
	SafetyIdentifier    json.RawMessage `json:"safety_identifier"`
	N                   *int64          `json:"n"`
	ReasoningEffort     json.RawMessage `json:"reasoning_effort"`
	Thinking            json.RawMessage `json:"thinking"`
	// OutputConfig is Anthropic's own output_config (effort, format), sent on as the
	// client wrote it, with what reasoning_effort and response_format ask for added.
	OutputConfig   json.RawMessage `json:"output_config"`
	ResponseFormat json.RawMessage `json:"response_format"`
	// WebSearchOptions is OpenAI's web search for chat completions, sent as
	// Anthropic's web search server tool (readWebSearch).
	WebSearchOptions json.RawMessage `json:"web_search_options"`
	// Functions and FunctionCall are OpenAI's deprecated forms of tools and
	// tool_choice, read only to refuse them (legacyFunctions).
	Functions    given `json:"functions"`
	FunctionCall given `json:"function_call"`
}

// given records whether a member the translation only refuses is there and not null;
// unlike a json.RawMessage, it neither copies the value nor grows the struct the
// decoder allocates for every request (and every message) by a slice header.
type given bool

// UnmarshalJSON implements json.Unmarshaler.
func (g *given) UnmarshalJSON(b []byte) error {
	*g = given(!jsonscan.IsNull(b))
	return nil
}

type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []oaToolCall    `json:"tool_calls"`
	ToolCallID json.RawMessage `json:"tool_call_id"`
	// Refusal is an assistant answer's refusal, which OpenAI gives in place of
	// content; it goes back as the turn's text.
	Refusal json.RawMessage `json:"refusal"`
	// FunctionCall is the legacy form of an assistant's tool call, refused.
	FunctionCall given `json:"function_call"`
	// CacheControl on a message marks its last block (a string content's, a tool
	// result), as LiteLLM takes it.
	CacheControl json.RawMessage `json:"cache_control"`
	// ThinkingBlocks are an assistant answer's thinking blocks as the gateway gave them
	// (LiteLLM's convention), sent back in a tool-use loop.
	ThinkingBlocks json.RawMessage `json:"thinking_blocks"`
}

type oaToolCall struct {
	ID       json.RawMessage `json:"id"`
	Type     string          `json:"type"`
	Function struct {
		Name      json.RawMessage `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

type oaPart struct {
	Type    string          `json:"type"`
	Text    json.RawMessage `json:"text"`
	Refusal json.RawMessage `json:"refusal"`
	// CacheControl is Anthropic's prompt-cache mark ({"type":"ephemeral"}, a ttl),
	// which OpenAI-compatible gateways take on a content part and pass on.
	CacheControl json.RawMessage `json:"cache_control"`
	ImageURL     *struct {
		URL string `json:"url"`
	} `json:"image_url"`
	File *struct {
		FileData string `json:"file_data"`
		FileID   string `json:"file_id"`
	} `json:"file"`
}

type oaTool struct {
	Type         string          `json:"type"`
	CacheControl json.RawMessage `json:"cache_control"`
	Function     struct {
		Name        json.RawMessage `json:"name"`
		Description json.RawMessage `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

// requestError is a chat request the Messages API cannot express; it becomes a 400 in
// OpenAI's shape. Messages name fields, never their contents.
type requestError struct{ param, msg string }

func badRequest(param, msg string) *requestError { return &requestError{param, msg} }

// The names of request fields in refusals are built only when a request is refused:
// formatting them up front would cost every accepted request allocations.

func msgField(i int, rest string) string { return "messages[" + strconv.Itoa(i) + "]" + rest }

func toolField(i int, rest string) string { return "tools[" + strconv.Itoa(i) + "]" + rest }

func partField(i, j int, rest string) string {
	return msgField(i, ".content["+strconv.Itoa(j)+"]"+rest)
}

var (
	strEmptySchema = []byte(`{"type":"object","properties":{}}`)
	strEmptyObject = []byte(`{}`)
	// strAnyObject is the input_schema of a tool declared for a history's tool calls
	// (appendHistoryTools): any object, as the calls' arguments are.
	strAnyObject = []byte(`{"type":"object"}`)
)

// appendAnthropicRequest appends the Messages API request for an OpenAI chat request:
// system and developer messages become system, tool messages user tool_result blocks,
// assistant tool_calls tool_use blocks, and consecutive messages of one role merge into
// one, as the API wants turns to alternate. maxTokens stands in when the client sets
// neither max_tokens nor max_completion_tokens, since the API requires one; cm says
// what the model takes.
func appendAnthropicRequest(dst, body, model []byte, maxTokens int64, cm claudeModel, stream bool) ([]byte, *requestError) {
	var r oaRequest
	if err := json.Unmarshal(body, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return dst, badRequest(te.Field, te.Field+" has the wrong type: "+te.Value+" is not accepted there.")
		}
		return dst, badRequest("", "We could not parse the JSON body of your request.")
	}
	if len(r.Messages) == 0 {
		return dst, badRequest("messages", "messages must hold at least one message.")
	}
	if r.N != nil && *r.N != 1 {
		return dst, badRequest("n", "n must be 1: this model returns one choice per request.")
	}
	if err := legacyFunctions(&r); err != nil {
		return dst, err
	}
	ws, err := readWebSearch(r.WebSearchOptions)
	if err != nil {
		return dst, err
	}
	maxParam := ""
	switch {
	case r.MaxCompletionTokens != nil:
		if *r.MaxCompletionTokens < 1 {
			return dst, badRequest("max_completion_tokens", "max_completion_tokens must be at least 1.")
		}
		maxTokens, maxParam = *r.MaxCompletionTokens, "max_completion_tokens"
	case r.MaxTokens != nil:
		if *r.MaxTokens < 1 {
			return dst, badRequest("max_tokens", "max_tokens must be at least 1.")
		}
		maxTokens, maxParam = *r.MaxTokens, "max_tokens"
	}
	th, err := chatThinking(&r, cm)
	if err != nil {
		return dst, err
	}
	switch {
	case th.budget <= 0:
		if maxParam == "" {
			// Adaptive thinking has no budget; the answer keeps the room it would
			// have had beside the budget of the same effort.
			maxTokens += th.room
		}
	case maxParam == "":
		// The Messages API wants max_tokens above the budget, thinking included. As
		// LiteLLM does, the default is the answer's room on top of the budget.
		maxTokens += th.budget
	case th.budget >= maxTokens:
		// OpenAI's max_completion_tokens bounds reasoning tokens too: the client's cap
		// (and the cost and token limits reckoned from it) stands, and a budget it
		// cannot hold is refused here rather than by the API.
		return dst, badRequest(maxParam, maxParam+" must be greater than the thinking budget of "+
			strconv.FormatInt(th.budget, 10)+" tokens ("+th.source+"): thinking tokens count toward it.")
	}

	dst = append(dst, `{"model":`...)
	dst = append(dst, model...)
	dst = append(dst, `,"max_tokens":`...)
	dst = strconv.AppendInt(dst, maxTokens, 10)
	if th.raw != nil {
		dst = append(dst, `,"thinking":`...)
		dst = append(dst, th.raw...)
	}
	var schema []byte
	if cm.structured {
		if schema, err = strictSchema(r.ResponseFormat); err != nil {
			return dst, err
		}
	}
	if dst, err = appendOutputConfig(dst, r.OutputConfig, th.effort, schema); err != nil {
		return dst, err
	}

	if dst, err = appendSystem(dst, r.Messages); err != nil {
		return dst, err
	}
	if dst, err = appendMessages(dst, r.Messages, th.on); err != nil {
		return dst, err
	}
	switch {
	case len(r.Tools) > 0:
		var allow [][]byte
		if allow, err = readAllowedTools(r.ToolChoice); err != nil {
			return dst, err
		}
		if dst, err = appendTools(dst, r.Tools, cm.structured, &ws, allow); err != nil {
			return dst, err
		}
		if dst, err = appendToolChoice(dst, r.ToolChoice, r.ParallelToolCalls, th.on && !cm.forcedToolAllowed); err != nil {
			return dst, err
		}
	case historyCalls(r.Messages):
		dst = appendHistoryTools(dst, r.Messages, &ws)
	case forcesTool(r.ToolChoice):
		// Nothing the client offered could be called (web_search_options is not a
		// tool): OpenAI refuses it so, where the translation would drop the force.
		return dst, badRequest("tool_choice", "tool_choice 'required' or a named function is only allowed when tools are specified.")
	case ws.on:
		dst = appendWebSearchTool(append(dst, `,"tools":[`...), &ws)
		dst = append(dst, ']')
		if string(r.ToolChoice) == `"none"` {
			// OpenAI's model then answers without searching: sent without its
			// tool_choice, the tool would let Claude search all the same.
			dst = append(dst, `,"tool_choice":{"type":"none"}`...)
		}
	}
	if dst, err = appendStop(dst, r.Stop); err != nil {
		return dst, err
	}
	temperature := len(r.Temperature) > 0 && !jsonscan.IsNull(r.Temperature)
	for _, f := range [...]struct {
		name string
		raw  []byte
	}{{"temperature", r.Temperature}, {"top_p", r.TopP}, {"top_k", r.TopK}} {
		if len(f.raw) == 0 || jsonscan.IsNull(f.raw) {
			continue
		}
		v, ok := jsonscan.Float(f.raw)
		if ok && cm.noSampling {
			// Opus 4.7 and later refuse any of the three ("`temperature` is
			// deprecated for this model"): the model chooses its own sampling.
			continue
		}
		if !ok {
			return dst, badRequest(f.name, f.name+" must be a number.")
		}
		switch {
		case f.name == "top_p" && temperature:
			// Claude models from Sonnet 4.5, Haiku 4.5 and Opus 4.1 on refuse both
			// ("`temperature` and `top_p` cannot both be specified for this model"),
			// and OpenAI clients commonly send both (top_p: 1).
			continue
		case f.name == "top_k" && v < 1:
			// vLLM's clients send -1 (or 0) for no top-k cut; the Messages API has no
			// such value, and leaving top_k out means the same.
			continue
		case th.on && f.name != "top_p":
			// With thinking on the API refuses any temperature but 1, its default
			// ("`temperature` may only be set to 1 when thinking is enabled"), and
			// any top_k ("`top_k` must be unset when thinking is enabled").
			continue
		}
		dst = append(dst, ',', '"')
		dst = append(dst, f.name...)
		dst = append(dst, '"', ':')
		switch {
		case f.name == "temperature" && cm.temperatureScale > 0:
			dst = strconv.AppendFloat(dst, min(v*cm.temperatureScale, 1), 'g', -1, 64)
		case f.name == "temperature" && v > 1:
			// OpenAI's temperature runs 0..2, the Messages API's 0..1 (it refuses more
			// with a 400); Anthropic's own OpenAI compatibility layer caps it at 1 too.
			dst = append(dst, '1')
		case th.on && f.name == "top_p" && v < minThinkingTopP:
			// With thinking on, the API takes top_p from 0.95 to 1 only: the nearest
			// it takes.
			dst = append(dst, "0.95"...)
		default:
			dst = append(dst, f.raw...)
		}
	}
	id, rerr := endUser(r.SafetyIdentifier, r.User)
	if rerr != nil {
		return dst, rerr
	}
	if id != nil {
		dst = appendUserID(dst, id)
	}
	if stream {
		dst = append(dst, `,"stream":true`...)
	}
	return append(dst, '}'), nil
}

// legacyFunctions refuses OpenAI's deprecated function calling: functions,
// function_call, and an assistant message's function_call. Dropped, they would leave a
// client that offered a function with a text answer and no word why; translated, the
// answer would have to go back in the legacy shape too (message.function_call, its
// stream deltas, finish_reason function_call). tools and tool_choice say the same and
// translate.
func legacyFunctions(r *oaRequest) *requestError {
	const use = " is the deprecated form of function calling, which this model does not support; use tools and tool_choice."
	switch {
	case bool(r.Functions):
		return badRequest("functions", "functions"+use)
	case bool(r.FunctionCall):
		return badRequest("function_call", "function_call"+use)
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		if m.Role == "assistant" && bool(m.FunctionCall) {
			param := msgField(i, ".function_call")
			return badRequest(param, param+" is the deprecated form of tool calls, which this model does not support; send tool_calls and tool messages.")
		}
	}
	return nil
}

// thinking is the extended thinking a request asks for.
type thinking struct {
	// raw is the thinking object to send, nil for none.
	raw []byte
	// on is set when thinking is anything but disabled.
	on bool
	// budget is its budget_tokens, 0 when it has none.
	budget int64
	// room is what a default max_tokens gains beside adaptive thinking: the budget
	// reasoning_effort maps to on earlier models.
	room int64
	// effort is the output_config.effort reasoning_effort maps to with adaptive
	// thinking, a JSON string; nil for none.
	effort []byte
	// byDefault is set when the model thinks by its own default, asked for nothing:
	// a forced tool call then turns thinking off, which the model allows.
	byDefault bool
	// source names what set it, for refusals.
	source string
}

// minThinkingTopP is the least top_p the API takes with thinking on.
const minThinkingTopP = 0.95

// readThinking reads the client's thinking object, sent as it is (the OpenAI SDKs
// send it as an extra field: enabled with budget_tokens, disabled, adaptive, or a
// type yet to come), and reasoning_effort: mapped onto an enabled budget or, on a
// model with adaptive thinking, onto adaptive thinking with the effort of the same
// name (which a client's adaptive thinking object, one asking for its display, keeps).
// A model that thinks unless told not to (Claude 5) thinks without either; one that
// always thinks takes no thinking object, only the effort.
func readThinking(obj, effort json.RawMessage, cm claudeModel) (thinking, *requestError) {
	var e *reasoningEffort
	if len(effort) > 0 && !jsonscan.IsNull(effort) {
		for i := range reasoningEfforts {
			if string(effort) == reasoningEfforts[i].name {
				e = &reasoningEfforts[i]
				break
			}
		}
		if e == nil {
			return thinking{}, badRequest("reasoning_effort", "reasoning_effort must be none, minimal, low, medium, high, xhigh or max.")
		}
	}
	if len(obj) > 0 && !jsonscan.IsNull(obj) {
		if obj[0] != '{' {
			return thinking{}, badRequest("thinking", `thinking must be an object, such as {"type":"enabled","budget_tokens":2048}.`)
		}
		typ, _ := jsonscan.Field(obj, "type")
		t := thinking{raw: obj, on: string(typ) != `"disabled"`, source: "thinking.budget_tokens"}
		if b, ok := jsonscan.Field(obj, "budget_tokens"); ok && t.on {
			// One the API would refuse as too large goes to it as it is: added to
			// the default max_tokens it could overflow.
			if n, ok := jsonscan.Int(b); ok && n <= math.MaxInt32 {
				t.budget = n
			}
		}
		if string(typ) == `"adaptive"` {
			// The default max_tokens keeps the room of the effort asked for, else
			// of the model's default effort, high.
			t.room = highBudget
			if e != nil && e.budget > 0 {
				t.effort, t.room = e.effort, e.budget
			}
		}
		return t, nil
	}
	switch {
	case e == nil && cm.thinksByDefault:
		// The model's own default: adaptive thinking at effort high.
		return thinking{on: true, room: highBudget, byDefault: !cm.alwaysThinks}, nil
	case e == nil:
		return thinking{}, nil
	case e.budget == 0 && cm.alwaysThinks:
		// none on a model that cannot stop thinking: the least it takes.
		return thinking{on: true, room: lowBudget, effort: strEffortLow}, nil
	case e.budget == 0 && cm.thinksByDefault:
		return thinking{raw: strThinkingDisabled}, nil
	case e.budget == 0:
		return thinking{}, nil
	case cm.alwaysThinks:
		return thinking{on: true, room: e.budget, effort: e.effort}, nil
	case cm.adaptive:
		return thinking{raw: strThinkingAdaptive, on: true, room: e.budget, effort: e.effort}, nil
	}
	return thinking{raw: e.thinking, on: true, budget: e.budget, source: e.source}, nil
}

// reasoningEfforts are reasoning_effort's values (JSON strings) with the budget each
// maps to, LiteLLM's (DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET; minimal goes as low,
// since the API's least budget is 1024 tokens; xhigh and max are the OpenAI SDKs'
// levels above high), and the output_config.effort of adaptive thinking (minimal is
// low, Anthropic's least).
type reasoningEffort struct {
	name, source string
	budget       int64
	thinking     []byte
	effort       []byte
}

var reasoningEfforts = [...]reasoningEffort{
	{`"none"`, "", 0, nil, nil},
	{`"minimal"`, `reasoning_effort "minimal"`, lowBudget, strThinkingLow, strEffortLow},
	{`"low"`, `reasoning_effort "low"`, lowBudget, strThinkingLow, strEffortLow},
	{`"medium"`, `reasoning_effort "medium"`, 2048, []byte(`{"type":"enabled","budget_tokens":2048}`), []byte(`"medium"`)},
	{`"high"`, `reasoning_effort "high"`, highBudget, []byte(`{"type":"enabled","budget_tokens":4096}`), []byte(`"high"`)},
	{`"xhigh"`, `reasoning_effort "xhigh"`, 8192, []byte(`{"type":"enabled","budget_tokens":8192}`), []byte(`"xhigh"`)},
	{`"max"`, `reasoning_effort "max"`, 16384, []byte(`{"type":"enabled","budget_tokens":16384}`), []byte(`"max"`)},
}

var (
	strThinkingLow      = []byte(`{"type":"enabled","budget_tokens":1024}`)
	strThinkingAdaptive = []byte(`{"type":"adaptive"}`)
	strThinkingDisabled = []byte(`{"type":"disabled"}`)
	strEffortLow        = []byte(`"low"`)
)

// The budgets of reasoning_effort low and high, the room a default max_tokens gains
// for thinking at those efforts.
const (
	lowBudget  = 1024
	highBudget = 4096
)

// strictSchema is the schema of a response_format asking for a strict JSON schema
// ({"type":"json_schema","json_schema":{"strict":true,"schema":…}}), sent as
// output_config.format; nil for any other. Only a strict schema goes: Anthropic constrains the answer to the
// schema as OpenAI does in strict mode, and refuses the schemas strict mode refuses
// (objects without "additionalProperties": false); a schema without strict is a hint
// to OpenAI's models, which the Messages API has no form for.
func strictSchema(rf json.RawMessage) ([]byte, *requestError) {
	if len(rf) == 0 || rf[0] != '{' {
		return nil, nil
	}
	if typ, _ := jsonscan.Field(rf, "type"); string(typ) != `"json_schema"` {
		return nil, nil
	}
	js, ok := jsonscan.Field(rf, "json_schema")
	if !ok || len(js) == 0 || js[0] != '{' {
		return nil, badRequest("response_format.json_schema", "response_format.json_schema must be an object.")
	}
	if strict, _ := jsonscan.Field(js, "strict"); string(strict) != "true" {
		return nil, nil
	}
	schema, ok := jsonscan.Field(js, "schema")
	if !ok || len(schema) == 0 || schema[0] != '{' {
		return nil, badRequest("response_format.json_schema.schema", "response_format.json_schema.schema must be a JSON schema object.")
	}
	return schema, nil
}

// appendOutputConfig appends output_config: the client's own object with effort and
// a JSON schema format added where it has none of its own. Nothing is appended when
// there is nothing to send.
func appendOutputConfig(dst []byte, own json.RawMessage, effort, schema []byte) ([]byte, *requestError) {
	hasOwn := len(own) > 0 && !jsonscan.IsNull(own)
	if hasOwn && own[0] != '{' {
		return dst, badRequest("output_config", `output_config must be an object, such as {"effort":"medium"}.`)
	}
	if hasOwn {
		var it jsonscan.Iter
		it.Reset(own)
		for {
			k, _, ok := it.Next()
			if !ok {
				break
			}
			switch {
			case isKey(k, "effort"):
				effort = nil
			case isKey(k, "format"):
				schema = nil
			}
		}
	}
	if !hasOwn && effort == nil && schema == nil {
		return dst, nil
	}
	dst = append(dst, `,"output_config":{`...)
	n := 0
	if effort != nil {
		dst = append(dst, `"effort":`...)
		dst = append(dst, effort...)
		n++
	}
	if schema != nil {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, `"format":{"type":"json_schema","schema":`...)
		dst = append(dst, schema...)
		dst = append(dst, '}')
	}
	if hasOwn {
		var it jsonscan.Iter
		it.Reset(own)
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, '"')
			dst = append(dst, k...)
			dst = append(dst, '"', ':')
			dst = append(dst, v...)
		}
	}
	return append(dst, '}'), nil
}

// appendSystem gathers every system and developer message, wherever it stands, into the
// top-level system blocks: the Messages API has no system role inside messages.
func appendSystem(dst []byte, msgs []oaMessage) ([]byte, *requestError) {
	n := 0
	var err *requestError
	for i := range msgs {
		m := &msgs[i]
		if m.Role != "system" && m.Role != "developer" {
			continue
		}
		switch {
		case len(m.Content) == 0 || jsonscan.IsNull(m.Content):
			continue
		case jsonscan.IsString(m.Content):
			if dst, n, err = appendSystemText(dst, m.Content, m.CacheControl, n); err != nil {
				err.param = msgField(i, ".cache_control")
				return dst, err
			}
			continue
		}
		// Declared past the string case: decoded into, it lives on the heap.
		var parts []oaPart
		switch {
		case m.Content[0] != '[' || json.Unmarshal(m.Content, &parts) != nil:
			param := msgField(i, ".content")
			return dst, badRequest(param, param+" must be a string or an array of text parts.")
		}
		first, marked := n, -1
		for j := range parts {
			p := &parts[j]
			if p.Type != "text" || !jsonscan.IsString(p.Text) {
				return dst, badRequest(partField(i, j, ".type"), "System and developer messages may hold only text parts.")
			}
			mark := len(dst)
			if dst, n, err = appendSystemText(dst, p.Text, p.CacheControl, n); err != nil {
				err.param = partField(i, j, ".cache_control")
				return dst, err
			}
			if len(p.CacheControl) > 0 && !jsonscan.IsNull(p.CacheControl) && len(dst) > mark {
				marked = len(dst)
			}
		}
		if n > first {
			// The message's own mark goes on its last block, as for the other roles.
			if dst, err = appendMessageMark(dst, m.CacheControl, marked); err != nil {
				err.param = msgField(i, ".cache_control")
				return dst, err
			}
		}
	}
	if n > 0 {
		dst = append(dst, ']')
	}
	return dst, nil
}

// endUser is the raw JSON string naming the request's end user, nil without one:
// safety_identifier, which replaces OpenAI's deprecated user, when it is a non-empty
// string, else user (the gateway's sticky key and per: user limits take the same).
// Either one given as anything but a string or null is refused, as OpenAI does.
func endUser(safetyID, user json.RawMessage) (json.RawMessage, *requestError) {
	if len(safetyID) > 0 && !jsonscan.IsNull(safetyID) && !jsonscan.IsString(safetyID) {
		return nil, badRequest("safety_identifier", "safety_identifier must be a string.")
	}
	if len(user) > 0 && !jsonscan.IsNull(user) && !jsonscan.IsString(user) {
		return nil, badRequest("user", "user must be a string.")
	}
	switch {
	case jsonscan.IsString(safetyID) && len(safetyID) > 2:
		return safetyID, nil
	case jsonscan.IsString(user) && len(user) > 2:
		return user, nil
	}
	return nil, nil
}

// appendUserID appends metadata.user_id for the end user (endUser), a raw JSON string,
// as the hex of the first 16 bytes of its SHA-256: it is often an e-mail address, which the
// Messages API refuses there (reportedly any id outside [a-zA-Z0-9_-]), and an opaque
// id still lets Anthropic tell one end user's abuse from another's without learning
// who they are. The string is hashed unquoted, so escaped spellings of one user agree.
func appendUserID(dst, user []byte) []byte {
	mark := len(dst)
	// Unquoted into dst's spare room: a buffer grown here is the one the id then goes
	// into, so the scratch space costs no allocation of its own.
	u, _ := jsonscan.AppendUnquote(dst, user)
	sum := sha256.Sum256(u[mark:])
	dst = append(u[:mark], `,"metadata":{"user_id":"`...)
	dst = hex.AppendEncode(dst, sum[:16])
	return append(dst, `"}`...)
}

// appendSystemText appends a text holding more than whitespace as the next of n
// system blocks, with its cache mark cc: the API refuses blank ones.
func appendSystemText(dst, text, cc []byte, n int) ([]byte, int, *requestError) {
	if isBlankString(text) {
		return dst, n, nil
	}
	if n == 0 {
		dst = append(dst, `,"system":[`...)
	} else {
		dst = append(dst, ',')
	}
	dst, err := appendCacheControl(appendTextBlock(dst, text), cc)
	return dst, n + 1, err
}

// appendCacheControl gives the block dst ends with Anthropic's cache mark cc, the raw
// cache_control the client sent with it: an object goes as it is (the API checks its
// type and ttl), null or none adds nothing.
func appendCacheControl(dst, cc []byte) ([]byte, *requestError) {
	switch {
	case len(cc) == 0 || jsonscan.IsNull(cc):
		return dst, nil
	case cc[0] != '{':
		return dst, badRequest("", "cache_control must be an object such as {\"type\":\"ephemeral\"}.")
	}
	dst = append(dst[:len(dst)-1], `,"cache_control":`...)
	dst = append(dst, cc...)
	return append(dst, '}'), nil
}

// appendMessageMark gives a message's last block, the one dst ends with, the message's
// cache mark cc, unless the block carries a mark of its own (it ends at marked): the
// part's mark names that very block, and a second cache_control member would repeat
// the key. A mark that is not an object is refused either way.
func appendMessageMark(dst, cc []byte, marked int) ([]byte, *requestError) {
	if marked != len(dst) {
		return appendCacheControl(dst, cc)
	}
	if len(cc) > 0 && !jsonscan.IsNull(cc) && cc[0] != '{' {
		return appendCacheControl(dst, cc)
	}
	return dst, nil
}

// turnWriter writes the messages array, opening a message at its first block so that
// a message with nothing to say is left out and consecutive ones of a role merge. A flat
// writer writes one plain array of blocks instead (a tool_result's content).
type turnWriter struct {
	dst    []byte
	role   string
	open   string
	flat   bool
	blocks int
	turns  int
	// text is where the last block starts in dst when it is a text block, else -1.
	text int
	// lead is where the open turn's thinking blocks end in dst, the first of its
	// other blocks starting there: where more thinking goes.
	lead int
	// ids are the tool calls sent so far, in order, each with the id it had
	// (appendUseID).
	ids []toolID
	// marked is where the last block carrying a content part's own cache mark ends
	// in dst (appendMessageMark).
	marked int
}

// toolID is a tool call's id as the client sent it (raw JSON) and as it was sent, and
// whether a tool message answered it yet.
type toolID struct {
	orig, sent string
	answered   bool
}

// block starts the next content block of the current role's message.
func (w *turnWriter) block() {
	w.text = -1
	if w.flat || w.open == w.role {
		if w.blocks > 0 {
			w.dst = append(w.dst, ',')
		}
		w.blocks++
		return
	}
	if w.open != "" {
		w.dst = append(w.dst, "]}"...)
	}
	if w.turns > 0 {
		w.dst = append(w.dst, ',')
	}
	w.dst = append(w.dst, `{"role":"`...)
	w.dst = append(w.dst, w.role...)
	w.dst = append(w.dst, `","content":[`...)
	w.open = w.role
	w.turns++
	w.blocks = 1
	w.lead = len(w.dst)
}

// appendMessages appends the messages array. thinking says whether the request turns
// extended thinking on: assistant messages' thinking blocks are sent only then.
func appendMessages(dst []byte, msgs []oaMessage, thinking bool) ([]byte, *requestError) {
	w := turnWriter{dst: append(dst, `,"messages":[`...)}
	for i := range msgs {
		m := &msgs[i]
		var err *requestError
		start := len(w.dst)
		switch m.Role {
		case "system", "developer":
			continue
		case "user":
			w.role = "user"
			mark := len(w.dst)
			if err = w.content(m.Content, i, true); err == nil && len(w.dst) == mark {
				// The API refuses it too, and leaving it out could end the request on
				// the assistant's turn, which the model would continue, not answer.
				param := msgField(i, ".content")
				err = badRequest(param, param+" must hold more than whitespace: this model refuses user messages without content.")
			}
		case "assistant":
			w.role = "assistant"
			if err = w.content(m.Content, i, false); err == nil {
				err = w.refusal(m.Refusal, i)
			}
			if err == nil {
				err = w.toolUses(m.ToolCalls, i)
			}
			if err == nil {
				// Thinking alone would make a turn end with a thinking block, which
				// the API refuses ("The final block in an assistant message cannot
				// be `thinking`"); the gateway itself answers only thinking when
				// max_tokens runs out. With thinking off it refuses them in the last
				// assistant turn ("When thinking is disabled, an `assistant` message
				// in the final position cannot contain `thinking`"), and ignores them
				// in earlier ones.
				err = w.thinkingBlocks(m.ThinkingBlocks, i, thinking && len(w.dst) > start)
			}
		case "tool":
			w.role = "user"
			err = w.toolResult(m, i)
		case "function":
			err = badRequest(msgField(i, ".role"), "Function messages are not supported by this model; use tool messages.")
		default:
			param := msgField(i, ".role")
			err = badRequest(param, param+" must be one of system, developer, user, assistant or tool.")
		}
		if err == nil && len(w.dst) > start {
			// The message's own mark goes on its last block.
			if w.dst, err = appendMessageMark(w.dst, m.CacheControl, w.marked); err != nil {
				err.param = msgField(i, ".cache_control")
			}
		}
		if err != nil {
			return w.dst, err
		}
	}
	if w.turns == 0 {
		return w.dst, badRequest("messages", "messages must hold at least one user or assistant message with content.")
	}
	if w.open == "assistant" && w.text >= 0 {
		w.dst = trimPrefill(w.dst, w.text)
	}
	return append(w.dst, "]}]"...), nil
}

// trimPrefill drops the trailing whitespace of the text block at dst[at:], the last
// block of a request that ends on the assistant's turn (a prefill the model continues):
// the API refuses such a request ("final assistant content cannot end with trailing
// whitespace"). OpenAI-compatible servers take it, and clients build prefills such as
// "Answer: " or a code fence and newline.
func trimPrefill(dst []byte, at int) []byte {
	start := at + len(`{"type":"text","text":`)
	end, err := jsonscan.Skip(dst, start)
	if err != nil {
		return dst
	}
	s, ok := jsonscan.AppendUnquote(nil, dst[start:end])
	if !ok {
		return dst
	}
	t := bytes.TrimRightFunc(s, unicode.IsSpace)
	if len(t) == len(s) {
		return dst
	}
	// What follows the text in its block: the closing brace, or a cache mark first.
	tail := append([]byte(nil), dst[end:]...)
	dst = jsonscan.AppendQuoteNoHTML(dst[:start], b2s(t))
	return append(dst, tail...)
}

// content writes a message's content, a string or an array of parts, as blocks. Blank
// text is left out: the API refuses text blocks of only whitespace ("text content
// blocks must contain non-whitespace text"), where OpenAI takes them, and several
// models answer "\n\n" before their tool calls, a turn replayed in every later request.
func (w *turnWriter) content(raw json.RawMessage, i int, user bool) *requestError {
	switch {
	case len(raw) == 0 || jsonscan.IsNull(raw):
		return nil
	case jsonscan.IsString(raw):
		if !isBlankString(raw) {
			w.block()
			w.text = len(w.dst)
			w.dst = appendTextBlock(w.dst, raw)
		}
		return nil
	}
	var parts []oaPart
	if raw[0] != '[' || json.Unmarshal(raw, &parts) != nil {
		param := msgField(i, ".content")
		return badRequest(param, param+" must be a string or an array of content parts.")
	}
	for j := range parts {
		p := &parts[j]
		var err *requestError
		switch {
		case p.Type == "text" && jsonscan.IsString(p.Text):
			if isBlankString(p.Text) {
				continue
			}
			w.block()
			w.text = len(w.dst)
			w.dst = appendTextBlock(w.dst, p.Text)
		case p.Type == "refusal" && !user && jsonscan.IsString(p.Refusal):
			if isBlankString(p.Refusal) {
				continue
			}
			w.block()
			w.text = len(w.dst)
			w.dst = appendTextBlock(w.dst, p.Refusal)
		case p.Type == "image_url" && user && p.ImageURL != nil:
			w.block()
			if w.dst, err = appendImageBlock(w.dst, p.ImageURL.URL); err != nil {
				err.param = partField(i, j, ".image_url.url")
				return err
			}
		case p.Type == "file" && user && p.File != nil:
			if p.File.FileData == "" {
				return badRequest(partField(i, j, ".file"), "Files must be sent inline as file_data: this model cannot read uploaded file_id references.")
			}
			w.block()
			if w.dst, err = appendDocumentBlock(w.dst, p.File.FileData); err != nil {
				err.param = partField(i, j, ".file.file_data")
				return err
			}
		default:
			return badRequest(partField(i, j, ".type"), "Content parts of type "+strconv.Quote(p.Type)+" are not supported here by this model.")
		}
		mark := len(w.dst)
		if w.dst, err = appendCacheControl(w.dst, p.CacheControl); err != nil {
			err.param = partField(i, j, ".cache_control")
			return err
		}
		if len(w.dst) > mark {
			w.marked = len(w.dst)
		}
	}
	return nil
}

// refusal writes an assistant message's refusal, a raw JSON string, as a text block:
// OpenAI answers a refusal in this field, content null, and clients send the message
// back as they got it (a conversation begun on OpenAI that goes on with Claude).
// Left out, the model would not see that it declined, and the user turns around it
// would merge.
func (w *turnWriter) refusal(raw json.RawMessage, i int) *requestError {
	switch {
	case len(raw) == 0 || jsonscan.IsNull(raw) || isBlankString(raw):
		return nil
	case !jsonscan.IsString(raw):
		param := msgField(i, ".refusal")
		return badRequest(param, param+" must be a string.")
	}
	w.block()
	w.text = len(w.dst)
	w.dst = appendTextBlock(w.dst, raw)
	return nil
}

func appendTextBlock(dst, text []byte) []byte {
	dst = append(dst, `{"type":"text","text":`...)
	dst = append(dst, text...)
	return append(dst, '}')
}

// appendImageBlock turns an image URL into an image block: a data: URL into a base64
// source, an http(s) URL into a url source the API fetches itself.
func appendImageBlock(dst []byte, url string) ([]byte, *requestError) {
	if strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://") {
		dst = append(dst, `{"type":"image","source":{"type":"url","url":`...)
		dst = jsonscan.AppendQuote(dst, url)
		return append(dst, "}}"...), nil
	}
	media, data, ok := splitDataURL(url)
	if !ok {
		return dst, badRequest("", "Image URLs must be http(s) URLs or base64 data: URLs.")
	}
	if strings.EqualFold(media, "image/jpg") {
		// A common misspelling (browsers and PIL accept it); the API takes only
		// image/jpeg, image/png, image/gif and image/webp.
		media = "image/jpeg"
	}
	return appendBase64Source(dst, "image", media, data), nil
}

// appendDocumentBlock turns a file part's data: URL (a PDF, typically) into a document
// block.
func appendDocumentBlock(dst []byte, url string) ([]byte, *requestError) {
	media, data, ok := splitDataURL(url)
	if !ok {
		return dst, badRequest("", "file_data must be a base64 data: URL.")
	}
	return appendBase64Source(dst, "document", media, data), nil
}

func appendBase64Source(dst []byte, typ, media, data string) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","source":{"type":"base64","media_type":`...)
	dst = jsonscan.AppendQuote(dst, media)
	dst = append(dst, `,"data":`...)
	dst = jsonscan.AppendQuote(dst, data)
	return append(dst, "}}"...)
}

// splitDataURL splits data:<media type>[;params];base64,<data>.
func splitDataURL(u string) (media, data string, ok bool) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return "", "", false
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok || !strings.HasSuffix(meta, ";base64") {
		return "", "", false
	}
	media, _, _ = strings.Cut(meta, ";")
	if media == "" || data == "" {
		return "", "", false
	}
	return media, data, true
}

// thinkingBlocks checks an assistant message's thinking_blocks and, when write is set,
// puts them first in its turn, after those of the turn's earlier messages: the API
// wants the last assistant turn of a tool-use loop to begin with the thinking that led
// to its tool calls, signature and all. They are written after the message's other
// blocks, which write requires, and moved in front of the turn's non-thinking blocks.
// A thinking block without a signature is left out, as the API would refuse it, and so
// is reasoning_content: it has none.
func (w *turnWriter) thinkingBlocks(raw json.RawMessage, i int, write bool) *requestError {
	if len(raw) == 0 || jsonscan.IsNull(raw) {
		return nil
	}
	var a jsonscan.Array
	if !a.Reset(raw) {
		param := msgField(i, ".thinking_blocks")
		return badRequest(param, param+" must be an array of thinking blocks.")
	}
	mark, text := len(w.dst), w.text
	var cb contentBlock
	for j := 0; ; j++ {
		el, ok := a.Next()
		if !ok {
			break
		}
		cb.read(el)
		field := ""
		switch string(cb.typ) {
		case `"thinking"`:
			if !jsonscan.IsString(cb.signature) || len(cb.signature) == 2 {
				continue
			}
			if !jsonscan.IsString(cb.thinking) {
				field = ".thinking"
			}
		case `"redacted_thinking"`:
			if !jsonscan.IsString(cb.data) {
				field = ".data"
			}
		default:
			param := msgField(i, ".thinking_blocks["+strconv.Itoa(j)+"].type")
			return badRequest(param, param+" must be thinking or redacted_thinking.")
		}
		if field != "" {
			param := msgField(i, ".thinking_blocks["+strconv.Itoa(j)+"]"+field)
			return badRequest(param, param+" must be a string.")
		}
		if write {
			w.block()
			w.dst = appendThinkingBlock(w.dst, &cb)
		}
	}
	if len(w.dst) == mark {
		return nil
	}
	// dst[w.lead:] is the turn's other blocks, a comma, and the thinking blocks: three
	// reversals swap the two lists in place.
	seg := w.dst[w.lead:]
	n := len(w.dst) - mark - 1
	slices.Reverse(seg)
	slices.Reverse(seg[:n])
	slices.Reverse(seg[n+1:])
	w.lead += n + 1
	if w.text = text; text >= 0 {
		w.text += n + 1
	}
	if w.marked == mark {
		// The marked block that ended the turn still does, further on.
		w.marked = len(w.dst)
	}
	return nil
}

// toolUses writes an assistant's tool calls as tool_use blocks; their arguments, a JSON
// string on OpenAI's side, are the input object itself on Anthropic's. The arguments are
// unquoted straight into the output and checked there.
func (w *turnWriter) toolUses(calls []oaToolCall, i int) *requestError {
	for j := range calls {
		c := &calls[j]
		field, problem := "", ""
		switch {
		case c.Type != "" && c.Type != "function":
			field, problem = ".type", " must be function: only function tool calls are supported by this model."
		case !jsonscan.IsString(c.ID):
			field, problem = ".id", " must be a string."
		case !jsonscan.IsString(c.Function.Name):
			field, problem = ".function.name", " must be a string."
		}
		if field == "" {
			w.block()
			w.dst = append(w.dst, `{"type":"tool_use","id":`...)
			w.dst = w.appendUseID(w.dst, c.ID, i, j)
			w.dst = append(w.dst, `,"name":`...)
			w.dst = append(w.dst, c.Function.Name...)
			w.dst = append(w.dst, `,"input":`...)
			if !w.arguments(c.Function.Arguments) {
				field, problem = ".function.arguments", " must be a string holding a JSON object."
			}
			w.dst = append(w.dst, '}')
		}
		if field != "" {
			param := msgField(i, ".tool_calls["+strconv.Itoa(j)+"]"+field)
			return badRequest(param, param+problem)
		}
	}
	return nil
}

// arguments appends a tool call's arguments, a raw JSON string, as the object it holds;
// none, null or blank are the empty object.
func (w *turnWriter) arguments(raw json.RawMessage) bool {
	if len(raw) == 0 || jsonscan.IsNull(raw) {
		w.dst = append(w.dst, strEmptyObject...)
		return true
	}
	mark := len(w.dst)
	var ok bool
	if w.dst, ok = jsonscan.AppendUnquote(w.dst, raw); !ok {
		return false
	}
	// JSON's own whitespace only: what is written is w.dst as it is, and \v, \f or
	// U+00A0 around the object would make it invalid.
	args := bytes.Trim(w.dst[mark:], " \t\r\n")
	if len(args) == 0 {
		w.dst = append(w.dst[:mark], strEmptyObject...)
		return true
	}
	return args[0] == '{' && jsonscan.Valid(args)
}

// toolResult writes a tool message as a tool_result block of a user turn; consecutive
// tool messages (parallel calls) share that turn.
func (w *turnWriter) toolResult(m *oaMessage, i int) *requestError {
	if !jsonscan.IsString(m.ToolCallID) {
		return badRequest(msgField(i, ".tool_call_id"), "Tool messages need a tool_call_id string.")
	}
	w.block()
	w.dst = append(w.dst, `{"type":"tool_result","tool_use_id":`...)
	w.dst = w.appendResultID(w.dst, m.ToolCallID)
	c := m.Content
	switch {
	case len(c) == 0 || jsonscan.IsNull(c) || isBlankString(c):
		// Blank goes as no content: the string is shorthand for a text block, and the
		// API refuses blank ones.
	case jsonscan.IsString(c):
		w.dst = append(w.dst, `,"content":`...)
		w.dst = append(w.dst, c...)
	case c[0] == '[':
		inner := turnWriter{dst: append(w.dst, `,"content":[`...), flat: true}
		if err := inner.content(c, i, true); err != nil {
			return err
		}
		w.dst = append(inner.dst, ']')
	default:
		param := msgField(i, ".content")
		return badRequest(param, param+" must be a string or an array of content parts.")
	}
	w.dst = append(w.dst, '}')
	return nil
}

// appendTools appends the client's function tools, and after them the web search tool
// when ws asks for it. With allow (tool_choice allowed_tools) only the functions it
// names are sent, each of which must be in tools; every tool is checked all the same.
func appendTools(dst []byte, tools []oaTool, strict bool, ws *webSearchTool, allow [][]byte) ([]byte, *requestError) {
	dst = append(dst, `,"tools":[`...)
	sent := 0
	for i := range tools {
		t := &tools[i]
		if t.Type != "function" {
			return dst, badRequest(toolField(i, ".type"), "Only function tools are supported by this model.")
		}
		if !jsonscan.IsString(t.Function.Name) {
			param := toolField(i, ".function.name")
			return dst, badRequest(param, param+" must be a string.")
		}
		if ws.on && sameString(t.Function.Name, strWebSearchName) {
			// The API refuses two tools of one name ("Tool names must be unique").
			param := toolField(i, ".function.name")
			return dst, badRequest(param, param+" cannot be web_search with web_search_options: this model's web search tool has that name.")
		}
		mark := len(dst)
		if sent > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = append(dst, t.Function.Name...)
		if jsonscan.IsString(t.Function.Description) {
			dst = append(dst, `,"description":`...)
			dst = append(dst, t.Function.Description...)
		}
		dst = append(dst, `,"input_schema":`...)
		switch p := t.Function.Parameters; {
		case len(p) == 0 || jsonscan.IsNull(p):
			dst = append(dst, strEmptySchema...)
		case p[0] == '{':
			dst = appendInputSchema(dst, p)
		default:
			param := toolField(i, ".function.parameters")
			return dst, badRequest(param, param+" must be a JSON schema object.")
		}
		if strict && t.Function.Strict != nil && *t.Function.Strict {
			// Strict tool use: the input is held to the schema, as OpenAI's strict
			// function calling holds the arguments.
			dst = append(dst, `,"strict":true`...)
		}
		var err *requestError
		if dst, err = appendCacheControl(append(dst, '}'), t.CacheControl); err != nil {
			err.param = toolField(i, ".cache_control")
			return dst, err
		}
		if allow != nil && !nameIn(t.Function.Name, allow) {
			// Checked as any tool, and not sent: the model may not call it.
			dst = dst[:mark]
			continue
		}
		sent++
	}
	for j, name := range allow {
		found := false
		for i := range tools {
			found = found || sameString(tools[i].Function.Name, name)
		}
		if !found {
			param := "tool_choice.allowed_tools.tools[" + strconv.Itoa(j) + "].function.name"
			return dst, badRequest(param, param+" names no function in tools.")
		}
	}
	if ws.on {
		dst = appendWebSearchTool(append(dst, ','), ws)
	}
	return append(dst, ']'), nil
}

// nameIn reports whether the JSON string name is one of names.
func nameIn(name []byte, names [][]byte) bool {
	for _, n := range names {
		if sameString(name, n) {
			return true
		}
	}
	return false
}

// readAllowedTools reads chat's tool_choice {"type":"allowed_tools","allowed_tools":
// {"mode","tools":[{"type":"function","function":{"name"}}]}}: the names of the
// functions the model may call (nil for any other tool_choice). The Messages API has
// no such choice: the translation sends only those tools, and the mode as
// appendToolChoice maps it.
func readAllowedTools(raw json.RawMessage) ([][]byte, *requestError) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, nil
	}
	var c struct {
		Type         string `json:"type"`
		AllowedTools *struct {
			Mode  string `json:"mode"`
			Tools []struct {
				Type     string `json:"type"`
				Function struct {
					Name json.RawMessage `json:"name"`
				} `json:"function"`
			} `json:"tools"`
		} `json:"allowed_tools"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Type != "allowed_tools" {
		// Any other object is appendToolChoice's to judge.
		return nil, nil
	}
	a := c.AllowedTools
	if a == nil || len(a.Tools) == 0 {
		return nil, badRequest("tool_choice.allowed_tools.tools", "tool_choice.allowed_tools.tools must list at least one function.")
	}
	if a.Mode != "auto" && a.Mode != "required" {
		return nil, badRequest("tool_choice.allowed_tools.mode", "tool_choice.allowed_tools.mode must be auto or required.")
	}
	names := make([][]byte, len(a.Tools))
	for j, t := range a.Tools {
		param := "tool_choice.allowed_tools.tools[" + strconv.Itoa(j) + "]"
		if t.Type != "function" {
			return nil, badRequest(param+".type", "Only function tools can be allowed on this model.")
		}
		if !jsonscan.IsString(t.Function.Name) {
			return nil, badRequest(param+".function.name", param+".function.name must be a string.")
		}
		names[j] = t.Function.Name
	}
	return names, nil
}

// appendHistoryTools declares, for a request without tools, a tool for each name its
// history's tool calls use, with tool_choice none. The Messages API refuses tool_use
// and tool_result blocks in a request that defines no tools ("Requests which include
// `tool_use` or `tool_result` blocks must define tools"), where OpenAI takes such a
// history: clients send one to ask for a summary after a tool loop, leaving the tools
// out so that the answer is text. Declared with the names used, the model reads the
// history as it was; with none, it calls nothing, as OpenAI's model without tools.
// The web search tool ws asks for goes last; a call named web_search is then read as
// one of it, as the API refuses a name declared twice.
func appendHistoryTools(dst []byte, msgs []oaMessage, ws *webSearchTool) []byte {
	n := 0
	for i := range msgs {
		if msgs[i].Role != "assistant" {
			continue
		}
		for j := range msgs[i].ToolCalls {
			name := msgs[i].ToolCalls[j].Function.Name
			if calledBefore(msgs, i, j, name) || ws.on && sameString(name, strWebSearchName) {
				continue
			}
			if n == 0 {
				dst = append(dst, `,"tools":[`...)
			} else {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, `{"name":`...)
			dst = append(dst, name...)
			dst = append(dst, `,"input_schema":`...)
			dst = append(dst, strAnyObject...)
			dst = append(dst, '}')
		}
	}
	if ws.on {
		if n == 0 {
			dst = append(dst, `,"tools":[`...)
		} else {
			dst = append(dst, ',')
		}
		n++
		dst = appendWebSearchTool(dst, ws)
	}
	if n == 0 {
		return dst
	}
	return append(dst, `],"tool_choice":{"type":"none"}`...)
}

// webSearchTool is the web search server tool a request's web_search_options asks for
// (readWebSearch): OpenAI's search models look the question up on the web, and so
// does Claude given this tool, citing what it found.
type webSearchTool struct {
	on bool
	// maxUses bounds the searches of one answer; 0 sends none, the API's default.
	maxUses int
	// located is set when user_location goes; its members are raw JSON strings, nil
	// where not given.
	located                         bool
	city, region, country, timezone []byte
}

// webSearchUses are search_context_size's values (JSON strings) with the max_uses
// each goes as, LiteLLM's (ANTHROPIC_WEB_SEARCH_TOOL_MAX_USES): the Messages API has
// no context size, and the number of searches is what bounds the context they add.
var webSearchUses = [...]struct {
	size []byte
	uses int
}{{[]byte(`"low"`), 1}, {[]byte(`"medium"`), 5}, {[]byte(`"high"`), 10}}

var (
	strWebSearchName = []byte(`"web_search"`)
	strApproximate   = []byte(`"approximate"`)
)

// readWebSearch reads web_search_options: {"search_context_size": "low" | "medium" |
// "high", "user_location": {"type": "approximate", "approximate": {"city", "country",
// "region", "timezone"}}}, what the OpenAI SDKs send. Its members are found as
// encoding/json finds a struct's (keys in any case, the last of a name winning);
// members it does not know are left out, as LiteLLM leaves them.
func readWebSearch(raw json.RawMessage) (webSearchTool, *requestError) {
	var ws webSearchTool
	if len(raw) == 0 || jsonscan.IsNull(raw) {
		return ws, nil
	}
	if raw[0] != '{' {
		return ws, badRequest("web_search_options", `web_search_options must be an object, such as {"search_context_size":"medium"}.`)
	}
	ws.on = true
	var size, loc []byte
	var it jsonscan.Iter
	it.Reset(raw)
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case foldedKey(k, "search_context_size"):
			size = v
		case foldedKey(k, "user_location"):
			loc = v
		}
	}
	if len(size) > 0 && !jsonscan.IsNull(size) {
		for _, u := range webSearchUses {
			if sameString(size, u.size) {
				ws.maxUses = u.uses
			}
		}
		if ws.maxUses == 0 {
			return ws, badRequest("web_search_options.search_context_size", "web_search_options.search_context_size must be low, medium or high.")
		}
	}
	if len(loc) == 0 || jsonscan.IsNull(loc) {
		return ws, nil
	}
	return ws, ws.readLocation(loc)
}

// readLocation reads user_location: type approximate (or none, its only value), and
// the members of approximate that are strings; null ones are left out.
func (ws *webSearchTool) readLocation(loc []byte) *requestError {
	const param = "web_search_options.user_location"
	if loc[0] != '{' {
		return badRequest(param, param+` must be an object, such as {"type":"approximate","approximate":{"country":"GB"}}.`)
	}
	var typ, approx []byte
	var it jsonscan.Iter
	it.Reset(loc)
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case foldedKey(k, "type"):
			typ = v
		case foldedKey(k, "approximate"):
			approx = v
		}
	}
	if len(typ) > 0 && !jsonscan.IsNull(typ) && !sameString(typ, strApproximate) {
		return badRequest(param+".type", param+".type must be approximate.")
	}
	if len(approx) == 0 || approx[0] != '{' {
		return badRequest(param+".approximate", param+".approximate must be an object with city, country, region or timezone.")
	}
	it.Reset(approx)
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		var dst *[]byte
		name := ""
		for _, m := range [...]struct {
			name string
			dst  *[]byte
		}{{"city", &ws.city}, {"region", &ws.region}, {"country", &ws.country}, {"timezone", &ws.timezone}} {
			if foldedKey(k, m.name) {
				name, dst = m.name, m.dst
			}
		}
		switch {
		case dst == nil:
		case jsonscan.IsNull(v):
			*dst = nil
		case !jsonscan.IsString(v):
			field := param + ".approximate." + name
			return badRequest(field, field+" must be a string.")
		default:
			*dst = v
		}
	}
	ws.located = true
	return nil
}

// appendWebSearchTool appends the web search server tool: max_uses and user_location
// with the members given.
func appendWebSearchTool(dst []byte, ws *webSearchTool) []byte {
	dst = append(dst, `{"type":"web_search_20250305","name":"web_search"`...)
	if ws.maxUses > 0 {
		dst = append(dst, `,"max_uses":`...)
		dst = strconv.AppendInt(dst, int64(ws.maxUses), 10)
	}
	if ws.located {
		dst = append(dst, `,"user_location":{"type":"approximate"`...)
		for _, m := range [...]struct {
			key string
			v   []byte
		}{{`,"city":`, ws.city}, {`,"region":`, ws.region}, {`,"country":`, ws.country}, {`,"timezone":`, ws.timezone}} {
			if m.v != nil {
				dst = append(dst, m.key...)
				dst = append(dst, m.v...)
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// historyCalls reports whether an assistant message of msgs holds tool calls.
func historyCalls(msgs []oaMessage) bool {
	for i := range msgs {
		if msgs[i].Role == "assistant" && len(msgs[i].ToolCalls) > 0 {
			return true
		}
	}
	return false
}

// calledBefore reports whether a tool call before the j-th of assistant message i
// names the function name.
func calledBefore(msgs []oaMessage, i, j int, name []byte) bool {
	for k := 0; k <= i; k++ {
		if msgs[k].Role != "assistant" {
			continue
		}
		calls := msgs[k].ToolCalls
		if k == i {
			calls = calls[:j]
		}
		for l := range calls {
			if sameString(calls[l].Function.Name, name) {
				return true
			}
		}
	}
	return false
}

// sameString reports whether the raw JSON strings a and b hold the same text: a tool
// named twice in two spellings ("get_weather", "get\u005fweather") is one tool, and
// the API refuses a name declared twice.
func sameString(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if bytes.IndexByte(a, '\\') < 0 && bytes.IndexByte(b, '\\') < 0 {
		return false
	}
	ua, okA := jsonscan.AppendUnquote(nil, a)
	ub, okB := jsonscan.AppendUnquote(nil, b)
	return okA && okB && bytes.Equal(ua, ub)
}

// appendInputSchema appends a tool's parameters, a JSON object, as its input_schema.
// The Messages API requires the schema's "type" ("object") where OpenAI lets it out:
// many clients declare a function without arguments as "parameters": {}. An empty
// object becomes the empty-object schema, and a schema without a type gets
// "type":"object".
func appendInputSchema(dst, p []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(p) != nil {
		return append(dst, p...)
	}
	members := 0
	for {
		k, _, ok := it.Next()
		if !ok {
			break
		}
		if string(k) == "type" {
			return append(dst, p...)
		}
		members++
	}
	switch {
	case it.Err() != nil:
		// Nested past what the scanner reads: the decoder has validated it, so it
		// goes as it is.
		return append(dst, p...)
	case members == 0:
		return append(dst, strEmptySchema...)
	}
	dst = append(dst, `{"type":"object",`...)
	return append(dst, p[1:]...)
}

// appendToolChoice maps auto, none, required and a named function onto auto, none, any
// and tool, and allowed_tools onto auto or any by its mode (appendTools sent only
// the functions it allows); parallel_tool_calls: false becomes disable_parallel_tool_use. With thinking
// on, a choice that forces a tool call is refused: the API refuses it too ("Thinking
// may not be enabled when tool_choice forces tool use"), and neither way out keeps
// what the client asked for. Dropping the force could answer text to a client whose
// code expects a call; dropping thinking would ignore reasoning_effort or thinking.
func appendToolChoice(dst []byte, raw json.RawMessage, parallel *bool, thinking bool) ([]byte, *requestError) {
	serial := parallel != nil && !*parallel
	var name json.RawMessage
	typ := "auto"
	switch {
	case len(raw) == 0 || jsonscan.IsNull(raw):
		if !serial {
			return dst, nil
		}
	case jsonscan.IsString(raw):
		switch string(raw) {
		case `"auto"`:
		case `"none"`:
			typ = "none"
		case `"required"`:
			typ = "any"
		default:
			return dst, badRequest("tool_choice", "tool_choice must be auto, none, required or a function.")
		}
	case raw[0] == '{':
		var c struct {
			Type     string `json:"type"`
			Function struct {
				Name json.RawMessage `json:"name"`
			} `json:"function"`
			AllowedTools struct {
				Mode string `json:"mode"`
			} `json:"allowed_tools"`
		}
		bad := json.Unmarshal(raw, &c) != nil
		if !bad && c.Type == "allowed_tools" {
			// Only the allowed functions were sent (readAllowedTools, which
			// checked the mode): auto or any among them.
			if c.AllowedTools.Mode == "required" {
				typ = "any"
			}
			break
		}
		if bad || c.Type != "function" || !jsonscan.IsString(c.Function.Name) {
			return dst, badRequest("tool_choice", "tool_choice must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":...}}.")
		}
		typ, name = "tool", c.Function.Name
	default:
		return dst, badRequest("tool_choice", "tool_choice must be auto, none, required or a function.")
	}
	if thinking && (typ == "any" || typ == "tool") {
		return dst, badRequest("tool_choice", "tool_choice cannot force a tool call (required or a named function) while thinking is on "+
			"(reasoning_effort or thinking): this model takes only auto or none with extended thinking.")
	}
	dst = append(dst, `,"tool_choice":{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, '"')
	if name != nil {
		dst = append(dst, `,"name":`...)
		dst = append(dst, name...)
	}
	if serial && typ != "none" {
		dst = append(dst, `,"disable_parallel_tool_use":true`...)
	}
	return append(dst, '}'), nil
}

// requestThinking is the thinking a request sends (readThinking), off when it forces
// a tool call on a model that thinks by default and it asked for no thinking: the API
// refuses forced tool use with thinking on, and the client asked only for the tool.
func requestThinking(obj, effort, toolChoice json.RawMessage, tools bool, cm claudeModel) (thinking, *requestError) {
	th, err := readThinking(obj, effort, cm)
	if err == nil && th.byDefault && tools && forcesTool(toolChoice) {
		th = thinking{raw: strThinkingDisabled}
	}
	return th, err
}

// chatThinking is the thinking a chat request sends (requestThinking), off too when
// the model would think by its own default and the request continues a tool-use loop
// whose last assistant turn carries no thinking blocks (unthoughtToolLoop). With
// thinking on, the API refuses such a turn ("a final `assistant` message must start
// with a thinking block"), and OpenAI clients replay an answer without the gateway's
// thinking_blocks: the Node SDK's runTools rebuilds each assistant message from
// OpenAI's request fields alone (toRequestMessage), so every tool loop it runs on a
// Claude 5 model would fail on its second request. LiteLLM (modify_params) drops
// thinking in the same case. A client that asked for thinking keeps it, and the API's
// refusal.
func chatThinking(r *oaRequest, cm claudeModel) (thinking, *requestError) {
	th, err := requestThinking(r.Thinking, r.ReasoningEffort, r.ToolChoice, len(r.Tools) > 0, cm)
	if err == nil && th.byDefault && unthoughtToolLoop(r.Messages) {
		th = thinking{raw: strThinkingDisabled}
	}
	return th, err
}

// unthoughtToolLoop reports whether msgs end a tool-use loop, as the API reads one:
// the final user turn (the messages after the last assistant one, tool results
// merged with any user text) answers tool calls, and the assistant turn before it
// (its consecutive assistant messages, merged into one) has tool calls but no
// thinking block that would be sent (thinkingBlocks skips one without a signature).
func unthoughtToolLoop(msgs []oaMessage) bool {
	i := len(msgs) - 1
	results := false
	for ; i >= 0 && msgs[i].Role != "assistant"; i-- {
		results = results || msgs[i].Role == "tool"
	}
	if !results {
		return false
	}
	calls := false
	for ; i >= 0; i-- {
		m := &msgs[i]
		switch m.Role {
		case "assistant":
			if sendsThinking(m.ThinkingBlocks) {
				return false
			}
			calls = calls || len(m.ToolCalls) > 0
		case "system", "developer":
			// Left out of messages: the turns either side still merge.
		default:
			return calls
		}
	}
	return calls
}

// sendsThinking reports whether an assistant message's thinking_blocks hold one that
// goes to the API: a signed thinking block or a redacted one.
func sendsThinking(raw json.RawMessage) bool {
	var a jsonscan.Array
	if len(raw) == 0 || !a.Reset(raw) {
		return false
	}
	var cb contentBlock
	for {
		el, ok := a.Next()
		if !ok {
			return false
		}
		cb.read(el)
		switch string(cb.typ) {
		case `"thinking"`:
			if jsonscan.IsString(cb.signature) && len(cb.signature) > 2 {
				return true
			}
		case `"redacted_thinking"`:
			return true
		}
	}
}

// forcesTool reports whether tool_choice forces a tool call: required, a named
// function (appendToolChoice checks its shape) or allowed_tools in mode required.
func forcesTool(raw json.RawMessage) bool {
	if len(raw) == 0 || raw[0] != '{' {
		return string(raw) == `"required"`
	}
	if typ, _ := jsonscan.Field(raw, "type"); !isString(typ, "allowed_tools") {
		return true
	}
	at, _ := jsonscan.Field(raw, "allowed_tools")
	mode, _ := jsonscan.Field(at, "mode")
	return isString(mode, "required")
}

// appendStop maps stop, a string or a list of them, onto stop_sequences. The Messages
// API refuses an empty or whitespace-only sequence with a 400 ("each stop sequence must
// contain non-whitespace") where OpenAI honours it, so such sequences are left out, and
// stop_sequences with them when none is left: the answer may then run past where an
// OpenAI model would have stopped, rather than fail.
func appendStop(dst []byte, raw json.RawMessage) ([]byte, *requestError) {
	const msg = "stop must be a string or an array of strings."
	switch {
	case len(raw) == 0 || jsonscan.IsNull(raw):
		return dst, nil
	case jsonscan.IsString(raw):
		if !isBlankString(raw) {
			dst = append(dst, `,"stop_sequences":[`...)
			dst = append(append(dst, raw...), ']')
		}
		return dst, nil
	}
	// The request was decoded already: raw is valid JSON, walked in place.
	var list jsonscan.Array
	if !list.Reset(raw) {
		return dst, badRequest("stop", msg)
	}
	n := 0
	for {
		s, ok := list.Next()
		if !ok {
			break
		}
		if !jsonscan.IsString(s) {
			return dst, badRequest("stop", msg)
		}
		if isBlankString(s) {
			continue
		}
		if n == 0 {
			dst = append(dst, `,"stop_sequences":[`...)
		} else {
			dst = append(dst, ',')
		}
		dst = append(dst, s...)
		n++
	}
	if n > 0 {
		dst = append(dst, ']')
	}
	return dst, nil
}

// isBlankString reports whether the raw JSON string s holds only whitespace (as
// unicode.IsSpace has it) once unquoted; a malformed one is not blank. It reads s in
// place and stops at the first other character, so a long prompt costs a byte or two.
func isBlankString(s []byte) bool {
	if !jsonscan.IsString(s) || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; {
		var r rune
		size := 1
		switch c := s[i]; {
		case c == '\\' && i+2 < len(s):
			size = 2
			switch s[i+1] {
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'f':
				r = '\f'
			case 'u':
				if i+6 >= len(s) {
					return false
				}
				size = 6
				for _, h := range s[i+2 : i+6] {
					switch {
					case h >= '0' && h <= '9':
						r = r<<4 | rune(h-'0')
					case h|0x20 >= 'a' && h|0x20 <= 'f':
						r = r<<4 | rune(h|0x20-'a'+10)
					default:
						return false
					}
				}
			default:
				return false
			}
		case c < utf8.RuneSelf:
			r = rune(c)
		default:
			r, size = utf8.DecodeRune(s[i:])
		}
		if !unicode.IsSpace(r) {
			return false
		}
		i += size
	}
	return true
}

// appendUseID appends the id of the j-th tool call of message i, raw JSON, as
// appendToolID writes it, unless an earlier tool call was sent with that id: the
// Messages API refuses a request whose tool_use ids repeat, where OpenAI-compatible
// servers take a history whose turns reuse one (vLLM's Kimi parser numbers the calls
// of each answer, functions.get_weather:0 in every turn), each tool message answering
// the call just before it. A repeated id gets the message's and the call's index
// added, and the tool messages after it answer it under that id (appendResultID).
func (w *turnWriter) appendUseID(dst, raw []byte, i, j int) []byte {
	mark := len(dst)
	dst = appendToolID(dst, raw)
	if w.used(dst[mark:]) {
		end := len(dst) - 1 // the closing quote
		for n := 0; n == 0 || w.used(dst[mark:]); n++ {
			dst = append(dst[:end], "_m"...)
			dst = strconv.AppendInt(dst, int64(i), 10)
			dst = append(dst, '_')
			dst = strconv.AppendInt(dst, int64(j), 10)
			if n > 0 {
				// The client sent this very id before.
				dst = append(dst, '_')
				dst = strconv.AppendInt(dst, int64(n), 10)
			}
			dst = append(dst, '"')
		}
	}
	w.ids = append(w.ids, toolID{orig: string(raw), sent: string(dst[mark:])})
	return dst
}

// used reports whether a tool call was sent with the id sent (quoted) already.
func (w *turnWriter) used(sent []byte) bool {
	for _, id := range w.ids {
		if id.sent == string(sent) {
			return true
		}
	}
	return false
}

// appendResultID appends the id a tool message answers, raw JSON: the first call sent
// with that id that no tool message answered yet, so that the tool messages after
// calls sharing an id (parallel calls that came without ids) answer them in order;
// else the id the call was last sent with (appendUseID), else as appendToolID writes
// it.
func (w *turnWriter) appendResultID(dst, raw []byte) []byte {
	last := -1
	for k := range w.ids {
		id := &w.ids[k]
		if id.orig != string(raw) {
			continue
		}
		if !id.answered {
			id.answered = true
			return append(dst, id.sent...)
		}
		last = k
	}
	if last >= 0 {
		return append(dst, w.ids[last].sent...)
	}
	return appendToolID(dst, raw)
}

// appendToolID appends a tool call's id, a raw JSON string, as Anthropic takes ids:
// ^[a-zA-Z0-9_-]+$. OpenAI sets no such bound, and clients and other servers make ids
// such as "functions.get_weather:0" (vLLM's Kimi and GLM tool parsers) or with "/" and
// ".": such an id, or an empty one, has every other character replaced by "_" and the
// hex of its SHA-256's first 6 bytes added, so that a tool_use and its tool_result
// still match and two ids that differ only there do not collide.
func appendToolID(dst, raw []byte) []byte {
	if fitsToolID(raw[1 : len(raw)-1]) {
		return append(dst, raw...)
	}
	id, ok := jsonscan.AppendUnquote(nil, raw)
	if !ok {
		id = raw
	}
	dst = append(dst, '"')
	for _, c := range id {
		if isToolIDByte(c) {
			dst = append(dst, c)
		} else {
			dst = append(dst, '_')
		}
	}
	sum := sha256.Sum256(id)
	dst = append(dst, '_')
	dst = hex.AppendEncode(dst, sum[:6])
	return append(dst, '"')
}

func fitsToolID(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if !isToolIDByte(c) {
			return false
		}
	}
	return true
}

func isToolIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
