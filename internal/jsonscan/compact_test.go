package jsonscan

import "testing"

// AppendCompact drops the whitespace between tokens, never inside strings (escaped
// quotes included).
func TestAppendCompact(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1}`:                               `{"a":1}`,
		"{ \"a\" :\n [1, 2],\t\"b\": \"x y\" }": `{"a":[1,2],"b":"x y"}`,
		`{"s": "a \" b ", "t" : 1}`:             `{"s":"a \" b ","t":1}`,
		` "tail\\" `:                            `"tail\\"`,
	} {
		if got := string(AppendCompact([]byte("x"), []byte(in))); got != "x"+want {
			t.Errorf("%q: %q, want %q", in, got, "x"+want)
		}
	}
}
