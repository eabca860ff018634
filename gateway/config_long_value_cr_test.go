package gateway

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A value quoted in backticks is cut by its bytes as written: a carriage return in it
// (a value read from a file of CRLF lines) is one of them. Cut by the value Go's raw
// string syntax reads, which drops every '\r', the cut would fall past where the
// runes were checked, inside one, and the message would not be UTF-8.
func TestConfigErrorBoundsBacktickValueWithCR(t *testing.T) {
	value := "\r" + strings.Repeat("é", 40)
	got := boundQuoted("server.read_timeout: cannot use `" + value + "` as a duration")
	if !utf8.ValidString(got) {
		t.Errorf("bounded problem is not UTF-8: %q", got)
	}
	if !strings.Contains(got, "("+"81 bytes)") {
		t.Errorf("bounded problem %q does not give the value's 81 bytes", got)
	}

}
