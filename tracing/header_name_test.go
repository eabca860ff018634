package tracing

import (
	"errors"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/tollgate/tollgate/internal/headerconf"
)

// tracing.headers names are checked with the same rule as every other header
// name the gateway takes from its config (an RFC 9110 token), byte for byte, and
// refused without quoting the name.
func TestHeaderNameRuleIsHTTPToken(t *testing.T) {
	names := []string{""}
	for b := range 256 {
		names = append(names, string([]byte{byte(b)}), "x-"+string([]byte{byte(b)})+"-key")
	}
	for _, name := range names {
		cfg := Config{Exporter: ExporterOTLPHTTP, Headers: map[string]string{name: "v"}}
		rejected := false
		for _, e := range unjoin(cfg.Validate()) {
			var fe *FieldError
			if errors.As(e, &fe) && fe.Key() == "headers" && fe.At() == "headers."+name && fe.Problem() == headerconf.NameProblem {
				rejected = true
			}
		}
		if want := !httpguts.ValidHeaderFieldName(name); rejected != want {
			t.Errorf("header name %q: rejected = %v, want %v", name, rejected, want)
		}
	}
}
