package providers

import "strings"

// claudeModel is what a Claude model takes of the settings the translation may send,
// as Anthropic documents them per model.
type claudeModel struct {
	// adaptive sends reasoning_effort as adaptive thinking with output_config.effort
	// (Opus 4.6 and Sonnet 4.6 recommend it, Opus 4.7 and later take nothing else);
	// otherwise as thinking enabled with a budget_tokens.
	adaptive bool
	// noSampling leaves temperature, top_p and top_k out: Opus 4.7 and later refuse
	// them ("`temperature` is deprecated for this model").
	noSampling bool
	// structured sends a strict json_schema response_format as output_config.format
	// and strict tools as strict (structured outputs: Opus 4.5 and later, Sonnet 4.5
	// and later, Haiku 4.5 and later).
	structured bool
	// thinksByDefault: without a thinking object the model thinks adaptively at
	// effort high (Claude 5); reasoning_effort none sends thinking disabled.
	thinksByDefault bool
	// alwaysThinks: thinking cannot be turned off, and the model takes no thinking
	// object, only output_config.effort (Opus and Sonnet 5.5, Fable and Mythos).
	alwaysThinks bool
	// forcedToolAllowed: a forced tool call is taken though the model always thinks
	// (Fable and Mythos 5 answer it with the call alone; their 5.1 and the 5.5 models
	// refuse it).
	forcedToolAllowed bool
	// temperatureScale multiplies the temperature sent, before its cap of 1; 0
	// sends it as it came. Not the model's: the backend's ChatTemperatureScale.
	temperatureScale float64
}

// claudeVersion reads the version out of a Claude model name as Anthropic, Bedrock
// and Vertex spell it (claude-opus-4-7, claude-3-7-sonnet-20250219,
// anthropic.claude-sonnet-4-5-20250929-v1:0, claude-opus-4-1@20250805): the family
// (opus, sonnet, haiku, or another word), the major and the minor version. A date
// where the minor would be (claude-sonnet-4-20250514) is minor 0. ok is false for a
// name without "claude-" followed by a version.
func claudeVersion(name string) (family string, major, minor int, ok bool) {
	i := strings.Index(name, "claude-")
	if i < 0 {
		return "", 0, 0, false
	}
	rest := name[i+len("claude-"):]
	major = -1
	for rest != "" {
		tok := rest
		if j := strings.IndexByte(rest, '-'); j >= 0 {
			tok, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
		}
		if j := strings.IndexAny(tok, "@:"); j >= 0 {
			tok, rest = tok[:j], ""
		}
		n, isNum := smallNumber(tok)
		switch {
		case major < 0 && isNum:
			major = n
		case major < 0:
			if family == "" {
				family = tok
			}
		case isNum && len(tok) <= 2:
			return family, major, n, true
		default:
			if family == "" && !isNum {
				family = tok
				continue
			}
			return family, major, 0, true
		}
	}
	if major < 0 {
		return family, 0, 0, false
	}
	return family, major, 0, true
}

// smallNumber parses tok as a decimal number of at most 8 digits.
func smallNumber(tok string) (int, bool) {
	if tok == "" || len(tok) > 8 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// claudeModelOf is what the named model takes, from its version: Opus 4.7 and later
// (and any Claude 5) take only adaptive thinking and no sampling settings, Opus and
// Sonnet 4.6 take adaptive thinking, and earlier models a thinking budget; Claude 5
// models think unless told not to, and Opus and Sonnet 5.5, Fable and Mythos always do
// (Haiku 5.5 takes thinking disabled). A name
// without a version (an alias, a proxy's own name) is taken as an earlier model:
// what it takes is set with the backend's thinking and drop_params keys.
func claudeModelOf(name string) claudeModel {
	family, major, minor, ok := claudeVersion(strings.ToLower(name))
	if !ok {
		return claudeModel{}
	}
	var m claudeModel
	switch {
	case major >= 5 || major == 4 && minor >= 7:
		m = claudeModel{adaptive: true, noSampling: true}
	case major == 4 && minor == 6:
		m.adaptive = true
	}
	switch family {
	case "opus", "sonnet", "haiku":
		m.structured = major > 4 || major == 4 && minor >= 5
	case "fable", "mythos":
		// Fable and Mythos 5.1 (not 5) have structured outputs and strict tools.
		m.structured = major > 5 || major == 5 && minor >= 1
	}
	if major >= 5 {
		m.thinksByDefault = true
		switch family {
		case "fable", "mythos":
			// Thinking cannot be turned off; 5 takes a forced tool call, 5.1 refuses it.
			m.alwaysThinks = true
			m.forcedToolAllowed = major == 5 && minor == 0
		case "opus", "sonnet":
			// From 5.5 on (Sonnet 5.5's between_tools is not disabled).
			m.alwaysThinks = major > 5 || minor >= 5
		}
	}
	return m
}
