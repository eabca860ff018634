package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"testing"
	"unicode/utf8"
)

// The fuzzers below hold jsonscan to encoding/json, the reference an upstream written
// in Go uses; where Python's json reads differently the comment says so.

var diffSeeds = []string{
	`{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":5}`,
	`{"a":-0,"b":1e400,"c":9223372036854775808,"d":-9223372036854775808,"e":1.0}`,
	`{"k\u0065y":"\ud800","x":"\u0000\/\u2028","y":[1,{"z":null}],"w":true}`,
	"{\"a\":\"\xff\xfe\",\"b\":\"\xed\xa0\x80\"}",
	`[1,2,[3,{}],"x",false]`,
	`"plain"`, `0`, `-1.5e-3`, `truex`, `01`, `1.`, `.5`, `1e`, `-`, "\ufeff{}", "{}\x00",
	"{\"a\":1}\v", "\u00a0{}",
}

// FuzzValidAsEncodingJSON: jsonscan accepts exactly what encoding/json accepts, short of the
// depth bound (jsonscan's 512 against encoding/json's 10000).
func FuzzValidAsEncodingJSON(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := Valid(b), json.Valid(b)
		if got == want {
			return
		}
		i := SkipSpace(b, 0)
		if _, err := Skip(b, i); errors.Is(err, ErrDepth) {
			return
		}
		t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
	})
}

// FuzzIterAsEncodingJSON: for a valid object, the members Iter yields, keys decoded and the
// last of equal keys kept, are what encoding/json decodes into a map.
func FuzzIterAsEncodingJSON(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want map[string]json.RawMessage
		if !json.Valid(b) || json.Unmarshal(b, &want) != nil || want == nil {
			return
		}
		var it Iter
		if err := it.Reset(b); err != nil {
			t.Fatalf("Reset(%q): %v", b, err)
		}
		got := map[string]json.RawMessage{}
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			key, ok := AppendUnquote(nil, append(append([]byte{'"'}, k...), '"'))
			if !ok {
				t.Fatalf("key %q does not unquote", k)
			}
			if it.ValueOffset() < 0 || string(b[it.ValueOffset():it.ValueOffset()+len(v)]) != string(v) {
				t.Fatalf("ValueOffset %d does not point at %q", it.ValueOffset(), v)
			}
			// encoding/json turns invalid UTF-8 in keys into U+FFFD, byte by byte.
			got[string(fixUTF8(key))] = v
		}
		if err := it.Err(); err != nil {
			if errors.Is(err, ErrDepth) {
				return
			}
			t.Fatalf("Iter over %q: %v", b, err)
		}
		if SkipSpace(b, it.End()) != len(b) {
			t.Fatalf("End %d of %q is not the end of the object", it.End(), b)
		}
		if len(got) != len(want) {
			t.Fatalf("Iter read %d members of %q, encoding/json %d", len(got), b, len(want))
		}
		for k, v := range want {
			if string(got[k]) != string(v) {
				t.Fatalf("member %q of %q: Iter %q, encoding/json %q", k, b, got[k], v)
			}
		}
	})
}

// FuzzUnquoteAsEncodingJSON: AppendUnquote decodes what encoding/json decodes, for every string
// encoding/json accepts, and refuses nothing it accepts.
func FuzzUnquoteAsEncodingJSON(f *testing.F) {
	for _, s := range []string{`"a"`, `"\ud800"`, `"\ud800\udc00"`, `"\udc00\ud800"`, `"\ud800\ud800\udc00"`,
		`"\u0000"`, `"\/"`, "\"\xff\"", `"\uD83D\uDE00"`, "\"\xed\xa0\x80\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		// AppendUnquote takes a raw value as Iter returns it, with no space around.
		if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || json.Unmarshal(raw, &want) != nil {
			return
		}
		if !Valid(raw) {
			t.Fatalf("Valid(%q) = false, encoding/json decodes it", raw)
		}
		got, ok := AppendUnquote(nil, raw)
		if !ok {
			t.Fatalf("AppendUnquote(%q) refused, encoding/json reads %q", raw, want)
		}
		// AppendUnquote copies invalid UTF-8 as it is; encoding/json writes U+FFFD.
		if string(fixUTF8(got)) != want {
			t.Fatalf("AppendUnquote(%q) = %q, encoding/json %q", raw, got, want)
		}
	})
}

// FuzzQuoteReadsBack: AppendQuote writes a string every parser accepts and reads back as
// the input (invalid bytes as U+FFFD), with no raw U+2028/2029 and no raw control byte.
func FuzzQuoteReadsBack(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "<>&", "\x00\x1f\x7f", "é😀", "\u2028\u2029", "\xff", "\xed\xa0\x80", "\xe2\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, sb []byte) {
		s := string(sb)
		for _, q := range [][]byte{AppendQuote(nil, s), AppendQuoteNoHTML(nil, s)} {
			if !json.Valid(q) || !Valid(q) || !utf8.Valid(q) {
				t.Fatalf("quote of %q = %q is not valid JSON", s, q)
			}
			var back string
			if err := json.Unmarshal(q, &back); err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(s)
			var w string
			_ = json.Unmarshal(want, &w)
			if back != w {
				t.Fatalf("quote of %q reads back %q, encoding/json round trip %q", s, back, w)
			}
			if bytes.Contains(q, []byte("\u2028")) || bytes.Contains(q, []byte("\u2029")) {
				t.Fatalf("quote of %q keeps a raw line separator: %q", s, q)
			}
			u, ok := AppendUnquote(nil, q)
			if !ok || string(u) != w {
				t.Fatalf("AppendUnquote(AppendQuote(%q)) = %q %v", s, u, ok)
			}
		}
		if q := AppendQuote(nil, s); bytes.ContainsAny(q, "<>&") {
			t.Fatalf("AppendQuote(%q) = %q keeps an HTML character", s, q)
		}
	})
}

// FuzzNumberAsEncodingJSON: Int and Float read a valid JSON number as encoding/json reads it
// into int64 and float64.
func FuzzNumberAsEncodingJSON(f *testing.F) {
	for _, s := range []string{"0", "-0", "1", "-1", "9223372036854775807", "1.0", "1e3", "1e400", "-1e-400", "123456789012345678", "0.1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Int and Float take a raw value as Iter returns it, with no space around.
		if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') || !json.Valid(raw) || SkipSpace(raw, len(raw)-1) == len(raw) {
			return
		}
		var wi int64
		ierr := json.Unmarshal(raw, &wi)
		gi, iok := Int(raw)
		if len(raw) == 20 && raw[0] == '-' {
			// MinInt64 itself is refused: no field the gateway reads can be negative.
			return
		}
		switch {
		case iok && ierr != nil:
			t.Fatalf("Int(%s) = %d, encoding/json refuses it for int64: %v", raw, gi, ierr)
		case iok && gi != wi:
			t.Fatalf("Int(%s) = %d, encoding/json %d", raw, gi, wi)
		case !iok && ierr == nil:
			// Int is allowed to be stricter only where the value cannot be held.
			t.Fatalf("Int(%s) refused, encoding/json reads %d", raw, wi)
		}
		var wf float64
		ferr := json.Unmarshal(raw, &wf)
		gf, fok := Float(raw)
		if fok != (ferr == nil) || fok && math.Float64bits(gf) != math.Float64bits(wf) {
			t.Fatalf("Float(%s) = %v %v, encoding/json %v %v", raw, gf, fok, wf, ferr)
		}
	})
}

// FuzzSkipPrefix: Skip on any prefix of a valid value neither panics nor reads
// past the prefix, and says nothing complete before the value's real end unless the
// prefix is itself a value.
func FuzzSkipPrefix(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for n := 0; n <= len(b); n++ {
			p := b[:n:n]
			e, err := Skip(p, 0)
			if e < 0 || e > n {
				t.Fatalf("Skip(%q) = %d, past the end", p, e)
			}
			if err == nil && !json.Valid(p[:e]) {
				t.Fatalf("Skip(%q) accepted %q, not JSON", p, p[:e])
			}
		}
	})
}

// A nineteen-digit number above MaxInt64 is refused, not wrapped: max_tokens and
// every usage count go through Int.
func TestIntOverflow(t *testing.T) {
	for _, s := range []string{"9223372036854775808", "9999999999999999999"} {
		t.Run(s, func(t *testing.T) {
			want, err := strconv.ParseInt(s, 10, 64)
			if n, ok := Int([]byte(s)); ok {
				t.Fatalf("Int(%s) = %d, true; ParseInt says %d, %v", s, n, want, err)
			}
		})
	}
}

// fixUTF8 writes each byte of b that is not part of valid UTF-8 as U+FFFD, as
// encoding/json's decoder does.
func fixUTF8(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}
