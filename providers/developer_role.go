package providers

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// The values of a backend's developer_role.
const (
	// DeveloperAsCame sends a chat call's developer messages with the role they
	// came with: the default.
	DeveloperAsCame = "developer"
	// DeveloperAsSystem sends them as system messages.
	DeveloperAsSystem = "system"
)

// validateDeveloperRole refuses a developer_role other than developer or system, and
// one on a provider whose calls it would not change: anthropic's translation already
// sends developer messages as its system prompt, and mock answers in process.
func (c *Config) validateDeveloperRole() []error {
	if c.DeveloperRole == "" {
		return nil
	}
	switch c.Provider {
	case "anthropic":
		return []error{fieldErr("developer_role", "does not apply to provider anthropic, whose translation sends developer messages as the system prompt already")}
	case "mock":
		return []error{fieldErr("developer_role", "does not apply to provider mock, which answers in process")}
	}
	switch c.DeveloperRole {
	case DeveloperAsCame, DeveloperAsSystem:
		return nil
	}
	return []error{fieldErr("developer_role", "must be developer (messages go with the role they came with; the default) or system")}
}

var (
	strDeveloper  = []byte("developer")
	strSystemRole = []byte(`"system"`)
	// strLowEscape begins the escape of an ASCII character: developer's letters,
	// escaped, are \u0064 to \u0076.
	strLowEscape = []byte(`\u00`)
)

// developerAsSystem rewrites, in the chat completions request body b and in place,
// the role of every message whose role is developer to system (developer_role:
// system), and returns b, shorter by the bytes that saved. Only the role members of
// the top-level messages' elements count: a "developer" in a message's content, in a
// tool's name or in a nested object's role stays. A role or a member name written
// with escapes ("develop\u0065r") counts by the string it spells, as the upstream's
// parser reads it; a name is matched exactly, as vLLM's and DeepSeek's parsers do.
// Every other byte keeps its place relative to its neighbours. A body that names no
// developer, written out or escaped, is returned after one search of its bytes, and
// one that is no JSON object as it came.
func developerAsSystem(b []byte) []byte {
	if !mayNameDeveloper(b) {
		return b
	}
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return b
	}
	e := roleEdit{b: b}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if isKey(k, "messages") {
			// Next has validated the value whole.
			at := it.ValueOffset()
			e.messages(at, at+len(v))
		}
	}
	return e.done()
}

// mayNameDeveloper reports whether b may hold the string developer: written out, or
// with a letter of it escaped, which takes \u006X or \u007X. A JSON serializer writes
// ASCII letters as they are, so a body that holds neither, nearly every one, is let
// through after two searches (memchr-fast) and no scan.
func mayNameDeveloper(b []byte) bool {
	if bytes.Contains(b, strDeveloper) {
		return true
	}
	for i := 0; ; {
		j := bytes.Index(b[i:], strLowEscape)
		if j < 0 {
			return false
		}
		i += j + len(strLowEscape)
		if i < len(b) && (b[i] == '6' || b[i] == '7') {
			return true
		}
	}
}

// roleEdit replaces spans of b, in place, by "system", each longer than it: w is where
// the next kept byte goes and r the first byte not yet moved there, w <= r. Writes
// stay behind what the scan has read.
type roleEdit struct {
	b      []byte
	w, r   int
	edited bool
}

// replace writes "system" in place of the role value b[vs:ve], vs >= r.
func (e *roleEdit) replace(vs, ve int) {
	if e.edited {
		e.w += copy(e.b[e.w:], e.b[e.r:vs])
	} else {
		// Nothing moved yet: the bytes before the value stay where they are.
		e.w, e.edited = vs, true
	}
	e.w += copy(e.b[e.w:], strSystemRole)
	e.r = ve
}

// done moves the bytes after the last replaced value and returns the body.
func (e *roleEdit) done() []byte {
	if !e.edited {
		return e.b
	}
	n := e.w + copy(e.b[e.w:], e.b[e.r:])
	return e.b[:n]
}

// messages rewrites the developer roles of the messages array b[at:end], which is
// valid JSON: each element is walked member by member once (a jsonscan.Array would
// skip it whole first, a third pass over the prompt).
func (e *roleEdit) messages(at, end int) {
	b := e.b[:end]
	i := jsonscan.SkipSpace(b, at)
	if i >= end || b[i] != '[' {
		return
	}
	i++
	for first := true; ; first = false {
		i = jsonscan.SkipSpace(b, i)
		if i >= end || b[i] == ']' {
			return
		}
		if !first {
			if b[i] != ',' {
				return
			}
			i = jsonscan.SkipSpace(b, i+1)
		}
		if i >= end || b[i] != '{' {
			n, err := jsonscan.Skip(b, i)
			if err != nil {
				return
			}
			i = n
			continue
		}
		var m jsonscan.Iter
		m.Reset(b[i:])
		for {
			k, v, ok := m.Next()
			if !ok {
				break
			}
			if isKey(k, "role") && isString(v, "developer") {
				vs := i + m.ValueOffset()
				e.replace(vs, vs+len(v))
			}
		}
		if m.Err() != nil {
			return
		}
		i += m.End()
	}
}
