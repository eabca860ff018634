package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// slogAccessLine is the line slog's own JSON handler writes for e, without its time.
func slogAccessLine(t testing.TB, e *accessEntry) string {
	var buf bytes.Buffer
	logAccess(slog.New(slog.NewJSONHandler(&buf, nil)), e)
	return stripTime(t, buf.String())
}

// fastAccessLine is the line the gateway's handler writes for e, without its time.
func fastAccessLine(t testing.TB, e *accessEntry) string {
	var buf bytes.Buffer
	logAccess(slog.New(NewJSONLogHandler(&buf, nil)), e)
	return stripTime(t, buf.String())
}

func stripTime(t testing.TB, line string) string {
	t.Helper()
	const prefix = `{"time":"`
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("line does not start with the time: %q", line)
	}
	end := strings.Index(line[len(prefix):], `"`)
	if end < 0 {
		t.Fatalf("unterminated time in %q", line)
	}
	if _, err := time.Parse(time.RFC3339Nano, line[len(prefix):len(prefix)+end]); err != nil {
		t.Fatalf("time of %q: %v", line, err)
	}
	return line[len(prefix)+end+1:]
}

func TestAccessLineMatchesSlog(t *testing.T) {
	entries := []accessEntry{
		{},
		{
			requestID: "req-0123456789abcdef", traceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			endpoint: "chat", backend: "vllm-a", variant: "canary", status: 200,
			inputTokens: 12, outputTokens: 345, cost: 0.000123, ttftMS: 12.345678,
			latencyMS: 1234.5, key: "team-a", attempts: 2,
		},
		{endpoint: `quo"te\back`, backend: "tab\tnl\ncr\rnul\x00del\x7f", variant: "<html>&amp;",
			key: "bad\xffutf8", errKind: "line\u2028para\u2029", status: 502, cost: 3e-9,
			ttftMS: 1e21, latencyMS: -0.5, inputTokens: -1, outputTokens: math.MaxInt64},
		{endpoint: "ünïcödé 日本語 😀", cost: 1e-6, ttftMS: 9.999999e20, latencyMS: 123456789.123},
		// A stream cut before its usage: its counts are the gateway's estimate.
		{endpoint: "chat", status: 499, inputTokens: 13, outputTokens: 7, cost: 1.272e-05, estimated: true,
			serviceTier: "flex", errKind: "client_gone"},
	}
	for i := range entries {
		e := &entries[i]
		fast, slow := fastAccessLine(t, e), slogAccessLine(t, e)
		if fast != slow {
			t.Errorf("entry %d:\n fast %s\n slog %s", i, fast, slow)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(`{"time":""`+fast), &m); err != nil {
			t.Errorf("entry %d: not JSON: %v", i, err)
		}
	}
}

func TestAccessLineNotANumber(t *testing.T) {
	line := fastAccessLine(t, &accessEntry{cost: math.NaN(), ttftMS: math.Inf(1), latencyMS: math.Inf(-1)})
	var m map[string]any
	if err := json.Unmarshal([]byte(`{"time":""`+line), &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, line)
	}
	if m["cost_usd"] != nil || m["ttft_ms"] != nil || m["latency_ms"] != nil {
		t.Fatalf("NaN and infinities should be null: %s", line)
	}
}

// TestLogLinesDoNotInterleave writes access lines and ordinary slog lines from many
// goroutines into one buffer: every line must come out whole.
func TestLogLinesDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewJSONLogHandler(&buf, nil))
	derived := log.With("component", "test")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				switch i % 3 {
				case 0:
					logAccess(log, &accessEntry{endpoint: strings.Repeat("e", 100*g), status: 200 + i})
				case 1:
					log.Info("other", "i", i)
				default:
					derived.Warn("derived", "i", i)
				}
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("broken line %q: %v", l, err)
		}
	}
}

func TestAccessLineLevel(t *testing.T) {
	var buf bytes.Buffer
	logAccess(slog.New(NewJSONLogHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), &accessEntry{status: 200})
	if buf.Len() != 0 {
		t.Fatalf("an info line was written at level warn: %s", buf.String())
	}
}

func FuzzAccessLine(f *testing.F) {
	f.Add("chat", "key\x00\"\\", "\xff\u2028", 0.000123, 12.5, -3.0)
	f.Add("", "", "", 0.0, 1e21, 1e-7)
	f.Fuzz(func(t *testing.T, endpoint, key, errKind string, cost, ttft, latency float64) {
		e := &accessEntry{endpoint: endpoint, key: key, errKind: errKind, cost: cost, ttftMS: ttft, latencyMS: latency}
		var m map[string]any
		if err := json.Unmarshal([]byte(`{"time":""`+fastAccessLine(t, e)), &m); err != nil {
			t.Fatalf("not JSON: %v", err)
		}
		if utf8.ValidString(endpoint) && m["endpoint"] != endpoint {
			t.Fatalf("endpoint %q came back as %q", endpoint, m["endpoint"])
		}
		for _, v := range []float64{cost, ttft, latency} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				// slog writes an error text there; the gateway writes null (TestAccessLineNotANumber).
				return
			}
		}
		fast, slow := fastAccessLine(t, e), slogAccessLine(t, e)
		if fast != slow {
			t.Fatalf("\n fast %s\n slog %s", fast, slow)
		}
	})
}

var benchEntry = accessEntry{
	requestID: "0123456789abcdef0123", traceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	endpoint: "chat", backend: "vllm-a", variant: "stable", status: 200,
	inputTokens: 12, outputTokens: 345, cost: 0.000123, ttftMS: 12.345678,
	latencyMS: 1234.567891, key: "team-a", attempts: 1,
}

// BenchmarkAccessLine prices one access log line through the gateway's JSON handler.
func BenchmarkAccessLine(b *testing.B) {
	log := slog.New(NewJSONLogHandler(io.Discard, nil))
	b.ReportAllocs()
	for b.Loop() {
		logAccess(log, &benchEntry)
	}
}

// BenchmarkAccessLineSlog is the same line through slog's own JSON handler.
func BenchmarkAccessLineSlog(b *testing.B) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	b.ReportAllocs()
	for b.Loop() {
		logAccess(log, &benchEntry)
	}
}

// Options that change slog's output apply to the access line too: it then goes
// through slog instead of the direct encoder.
func TestAccessLineHonoursReplaceAttr(t *testing.T) {
	var buf bytes.Buffer
	drop := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "key" {
			return slog.Attr{}
		}
		return a
	}
	logAccess(slog.New(NewJSONLogHandler(&buf, &slog.HandlerOptions{ReplaceAttr: drop})), &accessEntry{key: "team-a", status: 200})
	if strings.Contains(buf.String(), `"key"`) || !strings.Contains(buf.String(), `"status":200`) {
		t.Fatalf("ReplaceAttr not applied to the access line: %s", buf.String())
	}
}
