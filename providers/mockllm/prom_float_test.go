package mockllm

import (
	"math"
	"strconv"
	"testing"
)

// Sample values and le bounds as prometheus_client writes them (utils.floatToGoString
// over Python's repr), and Python's repr itself for the JSON answers.
func TestPromFloat(t *testing.T) {
	for _, c := range []struct {
		f          float64
		prom, repr string
	}{
		{0, "0.0", "0.0"},
		{1, "1.0", "1.0"},
		{3, "3.0", "3.0"},
		{0.25, "0.25", "0.25"},
		{0.001, "0.001", "0.001"},
		{0.0001, "0.0001", "0.0001"},
		{0.00001, "1e-05", "1e-05"},
		{1.5e-7, "1.5e-07", "1.5e-07"},
		{123456, "123456.0", "123456.0"},
		{1234567, "1.234567e+06", "1234567.0"},
		{10000000, "1e+07", "10000000.0"},
		{12345678.5, "1.23456785e+07", "12345678.5"},
		{2560, "2560.0", "2560.0"},
		{1e16, "1e+16", "1e+16"},
		{1.5e300, "1.5e+300", "1.5e+300"},
		{-1234567, "-1234567.0", "-1234567.0"},
		{-0.5, "-0.5", "-0.5"},
		{math.Inf(1), "+Inf", ""},
		{math.Inf(-1), "-Inf", ""},
		{math.NaN(), "NaN", ""},
	} {
		if got := string(appendPromFloat([]byte("x "), c.f)); got != "x "+c.prom {
			t.Errorf("appendPromFloat(%v) = %q, want %q", c.f, got[2:], c.prom)
		}
		if c.repr == "" {
			continue
		}
		if got := string(appendPyFloat(nil, c.f)); got != c.repr {
			t.Errorf("appendPyFloat(%v) = %q, want %q", c.f, got, c.repr)
		}
		if v, err := strconv.ParseFloat(c.prom, 64); err != nil || v != c.f {
			t.Errorf("%q parses as %v, %v: want %v", c.prom, v, err, c.f)
		}
	}
}
