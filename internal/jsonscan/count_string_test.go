package jsonscan

import (
	"math/big"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// pydanticInt is pydantic-core's str_as_int written another way: the whole text,
// trimmed of Unicode space, is a signed run of digits with single underscores between
// them and an optional fraction of zeros.
var pydanticInt = regexp.MustCompile(`^[+-]?[0-9]+(_[0-9]+)*(\.0+)?$`)

func referenceCount(s string, limit int64) (int64, bool) {
	s = strings.TrimFunc(s, unicode.IsSpace)
	if !pydanticInt.MatchString(s) {
		return 0, false
	}
	s, _, _ = strings.Cut(strings.ReplaceAll(s, "_", ""), ".")
	n, _ := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
	switch l := big.NewInt(limit); {
	case n.Cmp(l) > 0:
		return limit, true
	case n.Cmp(l.Neg(l)) < 0:
		return -limit, true
	}
	return n.Int64(), true
}

// FuzzCountString checks Count on a JSON string against the reference reading.
func FuzzCountString(f *testing.F) {
	for _, s := range []string{"5000", " 5_000 ", "+5000", "5000.0", "5000.", "0005000", "5__000", "_5", "-0",
		"99999999999999999999999", "1_0.0", "\u00a05000", "5e3", ".0", "٥", "5000\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw := AppendQuote(nil, s)
		for _, limit := range []int64{128, 1 << 40} {
			n, ok := Count(raw, limit)
			wn, wok := referenceCount(s, limit)
			if n != wn || ok != wok {
				t.Fatalf("Count(%s, %d) = %d %v, want %d %v", raw, limit, n, ok, wn, wok)
			}
		}
	})
}
