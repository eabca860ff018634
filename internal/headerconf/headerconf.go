// Package headerconf holds the problems a configured headers entry (a backend's, the
// trace exporter's) can have that its error must state without quoting the entry's
// name: a secret pasted where the value belongs reads as a name.
package headerconf

import "golang.org/x/net/http/httpguts"

// NameProblem is the problem of an entry whose name is not an HTTP token;
// EmptyProblem that of one whose value is empty ({sk-…} or {sk-…:} in a flow mapping).
const (
	NameProblem  = "holds a header whose name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only); the name is not quoted, as it may be a secret"
	EmptyProblem = "holds a header with an empty value (a key written as a header's name?): give it a value or take it out; the name is not quoted, as it may be a secret"
)

// Unquoted returns the problem of entry name: value that must be reported without the
// name, or "" when it has none of them.
func Unquoted(name, value string) string {
	switch {
	case !httpguts.ValidHeaderFieldName(name):
		return NameProblem
	case value == "":
		return EmptyProblem
	}
	return ""
}
