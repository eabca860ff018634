package mockllm

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/tollgate/tollgate/internal/jsonscan"
)

// claudeCaps is what a Claude model takes of the Messages API's newer settings, as
// Anthropic documents them per model. A model value of none of claudeModels and of no
// Claude model of major version 5 or later (claude-mock, an older model) has none of
// them: it keeps thinking budgets, sampling settings and prefills, and refuses effort
// xhigh and max and structured outputs.
type claudeCaps uint16

const (
	// capAdaptiveOnly: thinking enabled with a budget is refused, temperature, top_p
	// and top_k are refused but at their defaults, and thinking is omitted unless
	// display asks for it (Opus 4.7 and later).
	capAdaptiveOnly claudeCaps = 1 << iota
	// capNoPrefill: a final assistant turn (a prefill) is refused (the Claude 4.6
	// models and later: Anthropic's 4.6 migration guide, "Prefill removal").
	capNoPrefill
	// capXHigh and capMax: output_config.effort may be "xhigh" (Opus 4.7, 4.8 and the
	// Claude 5 models), "max" (those, Opus 4.6 and Sonnet 4.6: Anthropic's effort page
	// and the Claude 5 models' pages).
	capXHigh
	capMax
	// capFormat: output_config.format (structured outputs) is taken (Opus, Sonnet
	// and Haiku 4.5 and later).
	capFormat
	// capThinkByDefault: a request without thinking (or with null) thinks, adaptive
	// at the default effort, as thinking {"type":"adaptive"} does (the Claude 5
	// models: Anthropic's Opus 5 migration guide, "Thinking on by default").
	capThinkByDefault
	// capNoDisableHighEffort: thinking disabled is refused at effort xhigh and max,
	// taken at high and below (Opus 5: Anthropic's effort page; Haiku 5.5: its
	// prompting guide, "Use effort to control thinking").
	capNoDisableHighEffort
	// capNoForcedTool: tool_choice any and tool are refused, whatever the thinking
	// (Opus 5.5, Sonnet 5.5, Fable 5.1 and Mythos 5.1: their "what's new" pages,
	// "Forced tool use returns an error").
	capNoForcedTool
	// capForcedNoThinking: forced tool use is taken though thinking is always on; the
	// answer is the tool call alone, as forcing prefills the turn (Fable 5, which
	// Fable 5.1's "what's new" page says took it, and Mythos 5, which Fable 5's
	// migration guide says shares its settings).
	capForcedNoThinking
	// capBetweenTools: thinking {"type":"between_tools"} turns the up-front thinking
	// off, at effort high and below (Sonnet 5.5: its "what's new" page, "Turn off
	// up-front thinking").
	capBetweenTools
	// capMidSystem: a system message may sit in messages (mid-conversation system
	// messages: Opus 4.8's "what's new" page; Claude Code 2.1.332 sends its reminders
	// so to Opus 4.8 and every Claude 5 model, to none of Opus 4.7, Sonnet 4.6 or
	// Haiku 4.5), where the API's placement rules allow it (checkMidSystem).
	capMidSystem
)

// capsOpus48 are Opus 4.8's (Opus 4.7's but for mid-conversation system messages);
// the Claude 5 models take them and think by default, which is all a Claude model of major version 5 or later that claudeModels
// does not list is taken to do (claude5Later).
const (
	capsOpus48  = capAdaptiveOnly | capNoPrefill | capXHigh | capMax | capFormat | capMidSystem
	capsClaude5 = capsOpus48 | capThinkByDefault
)

// claudeModel is a model name whose settings differ, its caps, and, for a model that
// always thinks, its refusal of thinking {"type":"disabled"} (nil where disabled is
// taken).
type claudeModel struct {
	name      []byte
	caps      claudeCaps
	noDisable *badRequest
}

// claudeModels are the model names whose settings differ, as they appear in the
// Anthropic, Bedrock (anthropic.claude-opus-4-7-v1:0) and Vertex
// (claude-opus-4-7@20260416) model values; package []byte values, so that matching
// allocates nothing.
var claudeModels = [...]claudeModel{
	{[]byte("claude-opus-5-5"), capsClaude5 | capNoForcedTool, errDisabledOpus55},
	{[]byte("claude-sonnet-5-5"), capsClaude5 | capNoForcedTool | capBetweenTools, errDisabledSonnet55},
	{[]byte("claude-haiku-5-5"), capsClaude5 | capNoDisableHighEffort, nil},
	{[]byte("claude-fable-5-1"), capsClaude5 | capNoForcedTool, errDisabledFable5},
	{[]byte("claude-mythos-5-1"), capsClaude5 | capNoForcedTool, errDisabledFable5},
	{[]byte("claude-fable-5"), capsClaude5 | capForcedNoThinking, errDisabledFable5},
	{[]byte("claude-mythos-5"), capsClaude5 | capForcedNoThinking, errDisabledFable5},
	{[]byte("claude-opus-5"), capsClaude5 | capNoDisableHighEffort, nil},
	{[]byte("claude-sonnet-5"), capsClaude5, nil},
	{[]byte("claude-opus-4-8"), capsOpus48, nil},
	{[]byte("claude-opus-4-7"), capsOpus48 &^ capMidSystem, nil},
	{[]byte("claude-opus-4-6"), capNoPrefill | capMax | capFormat, nil},
	{[]byte("claude-sonnet-4-6"), capNoPrefill | capMax | capFormat, nil},
	{[]byte("claude-opus-4-5"), capFormat, nil},
	{[]byte("claude-sonnet-4-5"), capFormat, nil},
	{[]byte("claude-haiku-4-5"), capFormat, nil},
}

// claudeCapsOf reads the caps of a model value (unquoted): those of claudeModelOf.
func claudeCapsOf(model []byte) claudeCaps {
	if m := claudeModelOf(model); m != nil {
		return m.caps
	}
	return 0
}

// claude5Later is a Claude model of major version 5 or later that claudeModels does
// not list (claude-opus-5-1, claude-haiku-6): it keeps to the rules the Claude 5
// models share, and takes thinking disabled at any effort, as Sonnet 5 does.
var claude5Later = claudeModel{name: []byte("claude-<family>-5+"), caps: capsClaude5}

// claudeModelOf finds the first model of claudeModels whose name the model value
// holds, followed neither by another digit (claude-opus-4-5-20251101 is Opus 4.5; a
// claude-opus-4-50 would not be) nor by a minor version (claude-opus-5-1 is Opus 5.1,
// not Opus 5; a date or a Bedrock -v1:0 is no version); else claude5Later for another
// Claude model of major version 5 or later; nil for none.
func claudeModelOf(model []byte) *claudeModel {
	for i := range claudeModels {
		m := &claudeModels[i]
		at := bytes.Index(model, m.name)
		if at < 0 {
			continue
		}
		rest := model[at+len(m.name):]
		if len(rest) > 0 && isDigit(rest[0]) || minorVersion(rest) {
			continue
		}
		return m
	}
	if claudeMajor5(model) {
		return &claude5Later
	}
	return nil
}

var claudePrefix = []byte("claude-")

// claudeMajor5 reports whether the model value holds "claude-", a family (lowercase
// letters), a dash and a major version of 5 or more: one or two digits, then no more
// (claude-opus-5-1, anthropic.claude-haiku-6-v1:0, claude-sonnet-7@20270101; not
// claude-3-7-sonnet-20250219, which names no family first, nor a date in the place of
// the version).
func claudeMajor5(model []byte) bool {
	rest := model
	for {
		at := bytes.Index(rest, claudePrefix)
		if at < 0 {
			return false
		}
		rest = rest[at+len(claudePrefix):]
		n := 0
		for n < len(rest) && rest[n] >= 'a' && rest[n] <= 'z' {
			n++
		}
		if n == 0 || n+1 >= len(rest) || rest[n] != '-' {
			continue
		}
		v := rest[n+1:]
		d := 0
		for d < len(v) && isDigit(v[d]) {
			d++
		}
		if d == 1 && v[0] >= '5' || d == 2 && v[0] != '0' {
			return true
		}
	}
}

// minorVersion reports whether rest, what follows a model name, opens with a minor
// version: a dash and one or two digits, then no more digits.
func minorVersion(rest []byte) bool {
	if len(rest) < 2 || rest[0] != '-' || !isDigit(rest[1]) {
		return false
	}
	n := 1
	for n < len(rest)-1 && isDigit(rest[n+1]) {
		n++
	}
	return n <= 2
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// setCaps decides the request's caps from its model value, a JSON string.
func (st *state) setCaps() {
	name := st.modelRaw[1 : len(st.modelRaw)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		st.scratch, _ = appendUnquoted(st.scratch[:0], st.modelRaw)
		name = st.scratch
	}
	if m := claudeModelOf(name); m != nil {
		st.caps, st.noDisable = m.caps, m.noDisable
	}
}

// The Messages API's refusals of the newer models' settings. The prefill and
// "deprecated" wordings are the API's as clients quote them; the others follow its
// pydantic messages and its "... is not supported for this model" sentences.
var (
	errThinkingEnabled = &badRequest{msg: `"thinking.type.enabled" is not supported for this model. ` +
		`Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.`}
	errPrefill               = &badRequest{msg: "This model does not support assistant message prefill. The conversation must end with a user message."}
	errTemperatureDeprecated = &badRequest{msg: "`temperature` is deprecated for this model."}
	errTopPDeprecated        = &badRequest{msg: "`top_p` is deprecated for this model."}
	errTopKDeprecated        = &badRequest{msg: "`top_k` is deprecated for this model."}
	errDisplayAdaptive       = &badRequest{msg: "thinking.adaptive.display: Input should be 'summarized' or 'omitted'"}
	errDisplayEnabled        = &badRequest{msg: "thinking.enabled.display: Input should be 'summarized' or 'omitted'"}
	errOutputConfigObject    = &badRequest{msg: "output_config: Input should be a valid dictionary or object to extract fields from"}
	errEffort                = &badRequest{msg: "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"}
	errEffortXHigh           = &badRequest{msg: "output_config.effort 'xhigh' is not supported for this model."}
	errEffortMax             = &badRequest{msg: "output_config.effort 'max' is not supported for this model."}
	errFormatObject          = &badRequest{msg: "output_config.format: Input should be a valid dictionary or object to extract fields from"}
	errFormatTypeMissing     = &badRequest{msg: "output_config.format.type: Field required"}
	errFormatType            = &badRequest{msg: "output_config.format.type: Input should be 'json_schema'"}
	errFormatSchemaMissing   = &badRequest{msg: "output_config.format.schema: Field required"}
	errFormatSchemaObject    = &badRequest{msg: "output_config.format.schema: Input should be a valid dictionary"}
	errFormatModel           = &badRequest{msg: "output_config.format: structured outputs are not supported for this model"}
)

// The Claude 5 models' refusals. Opus 5.5's disabled thinking is in the words of its
// "what's new" page; Fable 5's as a client quoted the API (openclaw/openclaw#91805),
// which Mythos 5, Fable 5.1 and Mythos 5.1, of the same line, are taken to share (no
// client quotes theirs); the forced tool use wording as a client quoted Fable 5.1's
// (anthropics/claude-cookbooks#854), the same change; Opus 5's effort refusal as
// Claude Code's issues quote it (anthropics/claude-code#82389). Sonnet 5.5's, whose
// pages say only that the disabled refusal points to between_tools, follow them.
var (
	errDisabledOpus55   = &badRequest{msg: `"thinking.type.disabled" is not supported for this model. Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.`}
	errDisabledFable5   = &badRequest{msg: `"thinking.type.disabled" is not supported for this model. Thinking defaults to adaptive mode when not specified.`}
	errDisabledSonnet55 = &badRequest{msg: `"thinking.type.disabled" is not supported for this model. Use "thinking.type.between_tools" to turn off up-front thinking, and "output_config.effort" to control thinking behavior.`}
	errForcedTool       = &badRequest{msg: `tool_choice: type "tool" and "any" are not supported for this model.`}
	errXHighDisabled    = &badRequest{msg: "output_config.effort 'xhigh' is not supported when thinking is disabled on this model. Use effort 'high' or below, or enable thinking."}
	errMaxDisabled      = &badRequest{msg: "output_config.effort 'max' is not supported when thinking is disabled on this model. Use effort 'high' or below, or enable thinking."}
	errXHighBetween     = &badRequest{msg: `output_config.effort 'xhigh' is not supported with "thinking.type.between_tools" on this model. Use effort 'high' or below, or "thinking.type.adaptive".`}
	errMaxBetween       = &badRequest{msg: `output_config.effort 'max' is not supported with "thinking.type.between_tools" on this model. Use effort 'high' or below, or "thinking.type.adaptive".`}
)

// checkThinkingEffort refuses effort xhigh and max where the thinking turns them
// down: disabled on Opus 5 and Haiku 5.5, between_tools on Sonnet 5.5. Without an
// effort the model's default (high, medium on Haiku 5.5) is taken.
func (st *state) checkThinkingEffort() *badRequest {
	xhigh, top := string(st.effort) == `"xhigh"`, string(st.effort) == `"max"`
	switch {
	case !xhigh && !top:
		return nil
	case st.think.disabled && st.caps&capNoDisableHighEffort != 0 && xhigh:
		return errXHighDisabled
	case st.think.disabled && st.caps&capNoDisableHighEffort != 0:
		return errMaxDisabled
	case st.think.between && xhigh:
		return errXHighBetween
	case st.think.between:
		return errMaxBetween
	}
	return nil
}

// errAdditionalProperties ends the refusal of a schema object that does not forbid
// other properties, after the path of that object.
const errAdditionalProperties = ": For 'object' type, 'additionalProperties' must be explicitly set to false"

// parseDisplay reads thinking.display: "summarized" shows the thinking text,
// "omitted" leaves it out (the signature stays); absent, Opus 4.7 and later omit it.
func (st *state) parseDisplay(raw []byte, bad *badRequest) *badRequest {
	st.think.omit = st.caps&capAdaptiveOnly != 0
	v, ok := jsonscan.Field(raw, "display")
	if !ok || isNull(v) {
		return nil
	}
	switch string(v) {
	case `"summarized"`:
		st.think.omit = false
	case `"omitted"`:
		st.think.omit = true
	default:
		return bad
	}
	return nil
}

// checkDeprecatedSampling refuses, on Opus 4.7 and later, a temperature or top_p but 1
// and any top_k: the API refuses them whether thinking is on or off (with thinking on,
// parseThinking's refusals come first, as the API's do).
func (st *state) checkDeprecatedSampling(temperature, topP, topK []byte) *badRequest {
	if st.caps&capAdaptiveOnly == 0 {
		return nil
	}
	if temperature != nil && !isNull(temperature) {
		if f, _ := jsonscan.Float(temperature); f != 1 {
			return errTemperatureDeprecated
		}
	}
	if topP != nil && !isNull(topP) {
		if f, _ := jsonscan.Float(topP); f != 1 {
			return errTopPDeprecated
		}
	}
	if topK != nil {
		return errTopKDeprecated
	}
	return nil
}

// parseOutputConfig reads output_config: effort, one of the five levels the model
// takes, and format, a json_schema whose objects all set additionalProperties false,
// on a model with structured outputs. The answer is then a JSON value of the schema.
func (st *state) parseOutputConfig(raw []byte) *badRequest {
	if raw == nil || isNull(raw) {
		return nil
	}
	if raw[0] != '{' {
		return errOutputConfigObject
	}
	if v, ok := jsonscan.Field(raw, "effort"); ok && !isNull(v) {
		st.effort = v
		switch string(v) {
		case `"low"`, `"medium"`, `"high"`:
		case `"xhigh"`:
			if st.caps&capXHigh == 0 {
				return errEffortXHigh
			}
		case `"max"`:
			if st.caps&capMax == 0 {
				return errEffortMax
			}
		default:
			return errEffort
		}
	}
	f, ok := jsonscan.Field(raw, "format")
	if !ok || isNull(f) {
		return nil
	}
	if f[0] != '{' {
		return errFormatObject
	}
	// vLLM's AnthropicJsonOutputFormat defaults type to json_schema and takes a format
	// without a schema, which then shapes nothing; its guided decoding needs no
	// closed objects.
	vllm := !st.s.anthropic
	typ, ok := jsonscan.Field(f, "type")
	switch {
	case !ok && !vllm:
		return errFormatTypeMissing
	case ok && string(typ) != `"json_schema"`:
		return errFormatType
	}
	schema, ok := jsonscan.Field(f, "schema")
	switch {
	case vllm && (!ok || isNull(schema)):
		return nil
	case !ok:
		return errFormatSchemaMissing
	case schema[0] != '{':
		return errFormatSchemaObject
	case st.caps&capFormat == 0:
		return errFormatModel
	}
	if !vllm {
		if e := checkClosedObjects(schema, "output_config.format.schema", 0); e != nil {
			return e
		}
	}
	st.format.on = true
	st.format.schema = schema
	return nil
}

// checkClosedObjects refuses, as structured outputs do, a schema of type object
// without "additionalProperties": false, here or in the schemas below it (properties,
// items, anyOf, allOf, $defs, definitions); path names the schema in the refusal.
// Only a refusal builds strings.
func checkClosedObjects(schema []byte, path string, depth int) *badRequest {
	if depth > maxSchemaDepth || len(schema) == 0 || schema[0] != '{' {
		return nil
	}
	if isObjectSchema(schema) {
		if ap, _ := jsonscan.Field(schema, "additionalProperties"); string(ap) != "false" {
			return &badRequest{msg: path + errAdditionalProperties}
		}
	}
	var it jsonscan.Iter
	if it.Reset(schema) != nil {
		return nil
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return nil
		}
		var e *badRequest
		switch string(k) {
		case "items":
			if e = checkClosedObjects(v, "", depth+1); e != nil {
				return named(e, path+".items")
			}
		case "properties", "$defs", "definitions":
			var sub jsonscan.Iter
			if sub.Reset(v) != nil {
				continue
			}
			for {
				name, s, ok := sub.Next()
				if !ok {
					break
				}
				if e = checkClosedObjects(s, "", depth+1); e != nil {
					return named(e, path+"."+string(k)+"."+string(name))
				}
			}
		case "anyOf", "allOf":
			var a jsonscan.Array
			if !a.Reset(v) {
				continue
			}
			for i := 0; ; i++ {
				s, ok := a.Next()
				if !ok {
					break
				}
				if e = checkClosedObjects(s, "", depth+1); e != nil {
					return named(e, path+"."+string(k)+"."+strconv.Itoa(i))
				}
			}
		}
	}
}

// named puts the path of a schema in front of a refusal about it or below it, whose
// message starts with the rest of the path (empty when it is about that schema).
func named(e *badRequest, path string) *badRequest {
	return &badRequest{msg: path + e.msg}
}

// isObjectSchema reports whether a schema's type is "object", or a list holding it.
func isObjectSchema(schema []byte) bool {
	typ, _ := jsonscan.Field(schema, "type")
	if string(typ) == `"object"` {
		return true
	}
	var a jsonscan.Array
	if len(typ) == 0 || typ[0] != '[' || !a.Reset(typ) {
		return false
	}
	for {
		v, ok := a.Next()
		if !ok {
			return false
		}
		if string(v) == `"object"` {
			return true
		}
	}
}

// formatAnswer is the answer of a request with output_config.format: a JSON value of
// its schema, sent as the text block, four bytes a token (the estimate prompts and
// tool inputs use), each token a text_delta in a stream.
type formatAnswer struct {
	on     bool
	schema []byte // points into the request: read inside the handler only
	text   []byte // the JSON value, cut where the answer ends
	off    int    // stream: how much of text went out
}

// pieceEnd is where the text token that starts at off ends: four bytes on, moved to
// the next rune start so that every text_delta is valid UTF-8.
func (f *formatAnswer) pieceEnd(off int) int {
	end := min(off+4, len(f.text))
	for end < len(f.text) && !utf8.RuneStart(f.text[end]) {
		end++
	}
	return end
}

// fitFormat makes the JSON value the plan's text: cut before the first stop sequence
// (stop_reason "stop_sequence"), then at limit tokens (max_tokens, or --max-tokens when
// lower, after the thinking), which leaves the JSON unfinished with stop_reason
// "max_tokens", as the API does: the schema constrains what is generated, not where
// max_tokens ends it.
func (st *state) fitFormat(p *plan, limit int) {
	f := &st.format
	p.stop, p.stopSeq, p.lastLen = true, -1, -1
	at, which := -1, -1
	for k, s := range st.stops {
		if j := bytes.Index(f.text, s); j >= 0 && (at < 0 || j < at) {
			at, which = j, k
		}
	}
	if at >= 0 {
		f.text, p.stopSeq = f.text[:at], which
	}
	n, end := 0, 0
	for end < len(f.text) {
		if n == limit {
			f.text = f.text[:end]
			p.stop, p.stopSeq = false, -1
			break
		}
		end = f.pieceEnd(end)
		n++
	}
	p.n, p.natural = n, n
}

// appendJSONText appends b, text, escaped for the inside of a JSON string. The
// generated JSON holds quotes and the schema's own escapes; UTF-8 passes as it is.
func appendJSONText(dst, b []byte) []byte {
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// omitSalt keys the check part of an omitted thinking block's signature.
const omitSalt = 0x6f6d6974746564

// appendOmittedSignature appends the signature of a thinking block whose text is
// omitted: the signature of the full text, as the API's carries the thinking the
// client does not see, then 'O' and a check of it. The block comes back with an empty
// text, so the check is what tells a signature mockllm gave from a tampered one.
func appendOmittedSignature(dst, text []byte) []byte {
	start := len(dst)
	dst = appendThinkingSignature(dst, text)
	sum := xxhash.Sum64(dst[start:])
	dst = append(dst, 'O')
	return strconv.AppendUint(dst, mix(sum^omitSalt), 16)
}

// omittedSignatureOK reports whether sig is one appendOmittedSignature made.
func omittedSignatureOK(sig []byte) bool {
	i := bytes.LastIndexByte(sig, 'O')
	if i < 0 || !bytes.HasPrefix(sig, sigPrefix) {
		return false
	}
	var buf [16]byte
	want := strconv.AppendUint(buf[:0], mix(xxhash.Sum64(sig[:i])^omitSalt), 16)
	return bytes.Equal(sig[i+1:], want)
}

var sigPrefix = []byte("EqMock")
