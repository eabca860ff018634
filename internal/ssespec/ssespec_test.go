package ssespec

import (
	"slices"
	"testing"
)

func TestEvents(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"data: a\n\n", []string{"a"}},
		{"data: a\r\n\r\ndata:b\r\r", []string{"a", "b"}},
		{"data: {\"x\":1,\r\"y\":2}\n\n", []string{`{"x":1,`}},
		{": comment\nevent: e\ndata: a\ndata: b\n\n", []string{"a\nb"}},
		{"event: only\n\ndata: tail", nil},
	} {
		if got := Events([]byte(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}
