package router

import (
	"strings"
	"testing"
)

// sticky.name is a header name: an RFC 9110 token, so every token character is
// accepted and separators, spaces, controls and non-ASCII bytes are refused.
func TestStickyHeaderNameIsAToken(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"X-User-ID", true},
		{"x_user.id", true},
		{"!#$%&'*+-.^_`|~09azAZ", true},
		{"X User", false},
		{"X-User:", false},
		{"X-User\t", false},
		{"(X-User)", false},
		{`"X-User"`, false},
		{"X/User", false},
		{"X-Üser", false},
		{"X-User\x7f", false},
		{"X-User\x00", false},
		{"{X}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Config{
				Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 40}},
				Sticky: &Sticky{From: StickyHeader, Name: tt.name},
			}).Validate()
			refused := err != nil && strings.Contains(err.Error(), "sticky.name: is not a valid header name")
			if refused == tt.ok {
				t.Errorf("sticky.name %q: error %v, want accepted %v", tt.name, err, tt.ok)
			}
		})
	}
}
