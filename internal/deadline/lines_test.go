package deadline

import (
	"strings"
	"testing"
)

// LineFeedIn tells whether a line feed came in the last n bytes read past their
// first skip, as an HTTP server asks it of the header block that filled its read
// buffer (n 16 here), and says when it cannot tell: a read that brought a line feed
// before those bytes also brought some of them, and its later line feeds are not
// followed.
func TestLineFeedIn(t *testing.T) {
	tests := []struct {
		name  string
		reads []string
		skip  int
		found bool
		known bool
	}{
		{"none read", []string{"GET /aaaaaaaaaaaaaaaaaaaa"}, 0, false, true},
		{"in a read of its own", []string{"GET /a HTTP/1.1\r\nHost: x"}, 0, true, true},
		{"in a later read", []string{"GET /aaaaaaaaaa", "aaa HTTP/1.1\r\n", "Cookie: kkk"}, 0, true, true},
		{"only before the last 16", []string{"GET / HTTP/1.1\r\n", "Cookie: kkkkkkkkkkkkkkkkkkkk"}, 0, false, true},
		{"only among the first skip", []string{"GET / HTTP/1.1\r\n", "\r\n", "GET /aaaaaaaaa"}, 2, false, true},
		{"past the first skip", []string{"GET / HTTP/1.1\r\n", "\r\n", "GET /a", " HTTP\r\nHo"}, 2, true, true},
		{"in a read that began before the last 16", []string{"GET / HTTP/1.1\r\n\r\nGET /aaaaaaaaaaaaaaaaaa"}, 0, false, false},
		{"past an empty line of the same read", []string{"\r\nGET /a HTTP\r\nH"}, 2, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Conn{}
			c.lines.on = true
			for _, r := range tc.reads {
				c.lines.add([]byte(r))
			}
			if found, known := c.LineFeedIn(16, tc.skip); found != tc.found || known != tc.known {
				t.Errorf("after %q: found %v, known %v; want %v, %v", strings.Join(tc.reads, "|"), found, known, tc.found, tc.known)
			}
		})
	}
	if _, known := Wrap(nil).LineFeedIn(16, 0); known {
		t.Error("a connection not following its lines says it knows")
	}
}
