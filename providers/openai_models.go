package providers

import (
	"slices"
	"strings"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// openAIReasoningModel reports whether the model name is one of OpenAI's reasoning
// models (o1, o3, o4-mini, gpt-5 and later, with or without a provider prefix such
// as openai/, fine-tuned ones too), which refuse max_tokens ("Use 'max_completion_tokens' instead").
func openAIReasoningModel(name string) bool {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	// A fine-tuned model is named for its base: ft:o4-mini-2025-04-16:org::id.
	name = strings.TrimPrefix(name, "ft:")
	name = strings.ToLower(name)
	switch {
	case len(name) >= 2 && name[0] == 'o' && name[1] >= '1' && name[1] <= '9':
		// o1, o3-mini, o4-mini-2025-04-16; not o10n-style words.
		return len(name) == 2 || name[2] == '-'
	case strings.HasPrefix(name, "gpt-"):
		n, ok := leadingNumber(name[len("gpt-"):])
		return ok && n >= 5
	}
	return false
}

// leadingNumber parses the decimal number s starts with (gpt-5.1 is 5).
func leadingNumber(s string) (int, bool) {
	n, i := 0, 0
	for ; i < len(s) && i < 4 && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n, i > 0 && (i == len(s) || s[i] == '.' || s[i] == '-')
}

var (
	strMaxTokens               = []string{"max_tokens"}
	strMaxCompletionTokensName = []string{"max_completion_tokens"}
	strMaxCompletionTokens     = []byte(`"max_completion_tokens"`)
	strMaxCompletionTokensKey  = strMaxCompletionTokens[1 : len(strMaxCompletionTokens)-1]
)

// renameMaxTokens rewrites the request body b's max_tokens as max_completion_tokens,
// the same cap under the name reasoning models take; when the body has both, the
// client's max_completion_tokens stands and max_tokens goes (unless it is null).
func renameMaxTokens(b []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return b
	}
	ks, ke, more := -1, -1, false
	own, null := false, false // max_completion_tokens given; given as null
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case isKey(k, "max_completion_tokens"):
			own, null = true, jsonscan.IsNull(v)
		case !isKey(k, "max_tokens"):
		case ks < 0:
			ks = it.KeyOffset()
			ke = ks + len(k) + 2
		default:
			more = true
		}
	}
	switch {
	case it.Err() != nil:
		return b
	case own && !null:
		return dropFields(b, strMaxTokens)
	case ks < 0:
		return b
	case own:
		// null is no cap of the client's: it goes, and max_tokens takes its name.
		return renameMaxTokens(dropFields(b, strMaxCompletionTokensName))
	}
	b = slices.Replace(b, ks, ke, strMaxCompletionTokens...)
	if more {
		// A key given twice (JSON lets it): the first one named the cap.
		b = dropFields(b, strMaxTokens)
	}
	return b
}
