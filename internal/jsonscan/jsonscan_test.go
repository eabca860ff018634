package jsonscan

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestIter(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want map[string]string
		err  bool
	}{
		{"members", `{"model":"m","stream":true,"n":[1,{"a":2}]}`, map[string]string{"model": `"m"`, "stream": "true", "n": `[1,{"a":2}]`}, false},
		{"spaces", " { \"a\" : 1 , \"b\" :\n\"x\\\"y\" } ", map[string]string{"a": "1", "b": `"x\"y"`}, false},
		{"empty", `{}`, map[string]string{}, false},
		{"trailing comma", `{"a":1,}`, nil, true},
		{"missing colon", `{"a" 1}`, nil, true},
		{"not an object", `[1]`, nil, true},
		{"unterminated", `{"a":"b`, nil, true},
		{"bad literal", `{"a":tru}`, nil, true},
		{"bad number", `{"a":01}`, nil, true},
		{"control char in string", "{\"a\":\"\x01\"}", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var it Iter
			got := map[string]string{}
			if it.Reset([]byte(c.in)) == nil {
				for {
					k, v, ok := it.Next()
					if !ok {
						break
					}
					got[string(k)] = string(v)
				}
			}
			if (it.Err() != nil) != c.err {
				t.Fatalf("err = %v, want error %v", it.Err(), c.err)
			}
			if c.err {
				return
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestUnquote(t *testing.T) {
	cases := []struct{ in, want string }{
		{`"plain"`, "plain"},
		{`"a\nb\t\"c\"\\"`, "a\nb\t\"c\"\\"},
		{`"\u00e9\ud83d\ude00"`, "é😀"},
		{`"\ud800x"`, "\uFFFDx"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			got, ok := AppendUnquote(nil, []byte(c.in))
			if !ok || string(got) != c.want {
				t.Fatalf("AppendUnquote(%s) = %q %v, want %q", c.in, got, ok, c.want)
			}
		})
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a\"b\\c", "<tag>&", "\x00\x1f", "é😀", "\u2028", "\xff", "long run before a \n and after"} {
		for name, quote := range map[string]func([]byte, string) []byte{"AppendQuote": AppendQuote, "AppendQuoteNoHTML": AppendQuoteNoHTML} {
			q := quote(nil, s)
			var back string
			if err := json.Unmarshal(q, &back); err != nil {
				t.Fatalf("%s(%q) = %s: %v", name, s, q, err)
			}
			if want := string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD"))); back != want {
				t.Fatalf("%s: round trip of %q gave %q", name, s, back)
			}
			if html := bytes.ContainsAny(q, "<>&"); html != (name == "AppendQuoteNoHTML" && strings.ContainsAny(s, "<>&")) {
				t.Fatalf("%s(%q) = %s: HTML characters", name, s, q)
			}
		}
	}
}

func TestInt(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{{"0", 0, true}, {"-12", -12, true}, {"1.5", 0, false}, {"", 0, false}, {"-", 0, false}, {"12345678901234567890", 0, false}}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, ok := Int([]byte(c.in))
			if got != c.want || ok != c.ok {
				t.Fatalf("Int(%q) = %d %v", c.in, got, ok)
			}
		})
	}
}

func TestDepthBound(t *testing.T) {
	deep := bytes.Repeat([]byte("["), MaxDepth+2)
	if _, err := Skip(deep, 0); err != ErrDepth {
		t.Fatalf("err = %v, want ErrDepth", err)
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,2,"x"]`, `"\u00e9"`, `-0.5e+3`, `{"a":[{}]}`, `tru`, "\"\xff\"",
		`"seven b\"eight by\\u00e9tes and then a longer run of plain text\n"`, "\"plain text then a control\x01 byte\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func FuzzIter(f *testing.F) {
	for _, s := range []string{`{"model":"x","stream":true}`, `{"a":{"b":[1,2]},"c":null}`, `{}`, `{"a":"\ud83d"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var it Iter
		if it.Reset(b) != nil {
			return
		}
		n := 0
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			n++
			if !json.Valid(v) {
				t.Fatalf("member %q has invalid value %q", k, v)
			}
			if _, ok := AppendUnquote(nil, append(append([]byte{'"'}, k...), '"')); !ok {
				t.Fatalf("key %q does not unquote", k)
			}
		}
		if it.Err() == nil {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b[:it.End()], &m); err != nil {
				t.Fatalf("Iter accepted %q but encoding/json rejects it: %v", b[:it.End()], err)
			}
		}
	})
}

func BenchmarkIter(b *testing.B) {
	body := []byte(`{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Tell me a story about a gateway that was very fast and never dropped a request."}],"stream":false,"max_tokens":64,"user":"u-123","temperature":0.7}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var it Iter
		it.Reset(body)
		for {
			if _, _, ok := it.Next(); !ok {
				break
			}
		}
	}
}

// TestStringStops checks the word-at-a-time scan against a byte loop: the lowest
// flagged byte of every word is the first '"', '\\' or control byte in it.
func TestStringStops(t *testing.T) {
	stop := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 }
	r := rand.New(rand.NewPCG(1, 2))
	interesting := []byte{0, 0x1f, 0x20, 0x21, '"', '\\', 0x5b, 0x5d, 0x7f, 0x80, 0x9f, 0xa0, 0xdc, 0xe2, 0xff}
	var w [8]byte
	for n := 0; n < 1_000_000; n++ {
		for i := range w {
			if r.IntN(2) == 0 {
				w[i] = interesting[r.IntN(len(interesting))]
			} else {
				w[i] = byte(r.Uint32())
			}
		}
		want := 8
		for i, c := range w {
			if stop(c) {
				want = i
				break
			}
		}
		got := 8
		if m := stringStops(binary.LittleEndian.Uint64(w[:])); m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if got != want {
			t.Fatalf("word % x: first stop at %d, want %d", w, got, want)
		}
	}
}

func BenchmarkSkipString(b *testing.B) {
	s := []byte(`"` + strings.Repeat(`Once upon a time, a gateway relayed every token as it came. `, 8) + `"`)
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := Skip(s, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func TestArray(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string
		ok   bool
	}{
		{`[]`, nil, true},
		{`[ 1 , "a,b" ,{"x":[2]} ]`, []string{`1`, `"a,b"`, `{"x":[2]}`}, true},
		{"[\n\ttrue]", []string{`true`}, true},
		{`{"a":1}`, nil, false},
		{`"["`, nil, false},
	} {
		var a Array
		if ok := a.Reset([]byte(tc.raw)); ok != tc.ok {
			t.Fatalf("Reset(%s) = %v", tc.raw, ok)
		}
		var got []string
		for e, ok := a.Next(); tc.ok && ok; e, ok = a.Next() {
			got = append(got, string(e))
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("elements of %s: %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestCount(t *testing.T) {
	for _, c := range []struct {
		raw string
		n   int64
		ok  bool
	}{
		{"5000", 5000, true}, {"5000.0", 5000, true}, {"5e3", 5000, true}, {"5E+3", 5000, true},
		{"1e300", 1 << 40, true}, {"2000000000000", 1 << 40, true}, {"-3", -3, true}, {"-3.0", -3, true},
		{`"5"`, 5, true}, {`"5000000000000"`, 1 << 40, true}, {`"-2"`, -2, true},
		{"2.5", 0, false}, {"1e-3", 0, false}, {`"five"`, 0, false}, {`""`, 0, false}, {"null", 0, false}, {"", 0, false},
		// Strings as pydantic's lax mode reads them (str_as_int), behind vLLM.
		{`"5_000"`, 5000, true}, {`" 5000 "`, 5000, true}, {`"+5000"`, 5000, true}, {`"5000.0"`, 5000, true},
		{`"5.00"`, 5, true}, {`"0005000"`, 5000, true}, {`"00000000000000000000005000"`, 5000, true},
		{`"5000\n"`, 5000, true}, {`"\u00a05000"`, 5000, true}, {`"\u20035000"`, 5000, true}, {`"1_0.0"`, 10, true},
		{`"-0"`, 0, true}, {`"99999999999999999999999"`, 1 << 40, true}, {`"-99999999999999999999999"`, -(1 << 40), true},
		{`"5000."`, 0, false}, {`"5__000"`, 0, false}, {`"_5000"`, 0, false}, {`"5000_"`, 0, false}, {`"+_5"`, 0, false},
		{`"5e3"`, 0, false}, {`"5000.01"`, 0, false}, {`".0"`, 0, false}, {`"5000.0_0"`, 0, false}, {`"+"`, 0, false},
		{`" "`, 0, false}, {`"٥"`, 0, false}, {`"5\u0"`, 0, false},
	} {
		n, ok := Count([]byte(c.raw), 1<<40)
		if n != c.n || ok != c.ok {
			t.Errorf("%s: %d %v, want %d %v", c.raw, n, ok, c.n, c.ok)
		}
	}
}
