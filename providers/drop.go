package providers

import (
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// dropFields removes the members of the JSON object b named in names (drop_params),
// in place, and returns b shortened; a key matches in any case, and spelled with JSON
// escapes it matches the name it spells. The members kept keep their bytes; the
// separators between them become single commas once one is removed. b is returned as
// it is when it holds none of the names or is not a well-formed object.
func dropFields(b []byte, names []string) []byte {
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return b
	}
	w := jsonscan.SkipSpace(b, 0) + 1
	kept, dropped := 0, false
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if namedIn(k, names) {
			dropped = true
			continue
		}
		end := it.ValueOffset() + len(v)
		if !dropped {
			// Nothing moved yet: the member stays where it is.
			kept, w = kept+1, end
			continue
		}
		if kept > 0 {
			b[w] = ','
			w++
		}
		kept++
		// Writes stay behind the iterator: w is at most the member's start.
		w += copy(b[w:], b[it.KeyOffset():end])
	}
	if it.Err() != nil || !dropped {
		return b
	}
	end := it.End()
	b[w] = '}'
	w++
	w += copy(b[w:], b[end:])
	return b[:w]
}

// namedIn reports whether the key k (raw, escapes left) is one of names, in any case:
// the Anthropic translation decodes with encoding/json, which matches keys so.
func namedIn(k []byte, names []string) bool {
	for _, n := range names {
		if foldedKey(k, n) {
			return true
		}
	}
	return false
}

// Uncapped reports whether the backend removes (drop_params) every max_tokens,
// max_completion_tokens and max_output_tokens (the Responses API's) member of the
// request body of a call of kind k that is not null, and it holds one:
// the client's cap on the output then never reaches the upstream, and the gateway's
// token estimate may not take it for the most the call produces. A chat call's
// max_tokens to an OpenAI reasoning model goes as max_completion_tokens, and is
// dropped under that name.
func (b *Backend) Uncapped(k Kind, body []byte) bool {
	if !b.dropsCap {
		return false
	}
	renamed := k == Chat && b.renamesCap
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return false
	}
	capped := false
	for {
		key, v, ok := it.Next()
		if !ok {
			break
		}
		if (foldedKey(key, "max_tokens") || foldedKey(key, "max_completion_tokens") || foldedKey(key, "max_output_tokens")) && !jsonscan.IsNull(v) {
			if renamed && isKey(key, "max_tokens") {
				key = strMaxCompletionTokensKey
			}
			// Through the bridge, max_output_tokens goes up as the chat call's cap,
			// which drop_params may name too: counted as dropped.
			if !namedIn(key, b.cfg.DropParams) && (b.native || !foldedKey(key, "max_output_tokens")) {
				return false
			}
			capped = true
		}
	}
	return capped && it.Err() == nil
}

// dropsCap reports whether drop_params names a field that caps a completion.
func dropsCap(drop []string) bool {
	for _, n := range drop {
		if strings.EqualFold(n, "max_tokens") || strings.EqualFold(n, "max_completion_tokens") || strings.EqualFold(n, "max_output_tokens") {
			return true
		}
	}
	return false
}

// keptParams are the fields drop_params may not name, in any case (a drop matches in
// any case): the gateway reads them, routes and answers by them.
var keptParams = [...]string{"model", "messages", "prompt", "input", "stream", "stream_options"}

func (c *Config) validateDropParams() []error {
	if len(c.DropParams) == 0 {
		return nil
	}
	if c.Provider == "mock" {
		return []error{fieldErr("drop_params", "does not apply to provider mock, which answers in process")}
	}
	var errs []error
	for i, name := range c.DropParams {
		key := "drop_params[" + strconv.Itoa(i) + "]"
		switch {
		case name == "":
			errs = append(errs, fieldErr(key, "must name a field of the request"))
		case slices.ContainsFunc(keptParams[:], func(k string) bool { return strings.EqualFold(k, name) }):
			errs = append(errs, fieldErr(key, name+" cannot be dropped: the gateway needs it"))
		case slices.ContainsFunc(c.DropParams[:i], func(k string) bool { return strings.EqualFold(k, name) }):
			errs = append(errs, fieldErr(key, name+" is named twice"))
		}
	}
	return errs
}
