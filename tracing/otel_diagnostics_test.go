package tracing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// diagLines are the JSON lines written to buf.
func diagLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// testDiagnostics returns diagnostics writing JSON at level into buf, on a clock the
// test moves with the returned function.
func testDiagnostics(buf *bytes.Buffer, level slog.Level) (*diagnostics, func(time.Duration)) {
	now := time.Date(2026, 11, 23, 11, 50, 0, 0, time.UTC)
	d := newDiagnostics(slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level})), func() time.Time { return now })
	return d, func(dt time.Duration) { now = now.Add(dt) }
}

// A collector that fails every batch would have otel.Handle called per batch: one
// line per kind of error per 10 s, the next one counting those left out.
func TestDiagnosticsRateLimit(t *testing.T) {
	type step struct {
		after time.Duration
		err   string
	}
	type line struct {
		err        string
		suppressed float64
	}
	for _, c := range []struct {
		name  string
		steps []step
		want  []line
	}{
		{
			name: "repeats within 10s are counted into the next line",
			steps: []step{
				{0, "traces export: connection refused 1"}, {time.Second, "traces export: connection refused 2"},
				{time.Second, "traces export: connection refused 3"}, {8 * time.Second, "traces export: connection refused 4"},
			},
			want: []line{{"traces export: connection refused 1", 0}, {"traces export: connection refused 4", 2}},
		},
		{
			name:  "other kinds are limited apart",
			steps: []step{{0, "traces export: refused"}, {time.Second, "partial resource: missing value"}, {time.Second, "traces export: refused"}},
			want:  []line{{"traces export: refused", 0}, {"partial resource: missing value", 0}},
		},
		{
			name:  "a quiet kind logs again at once",
			steps: []step{{0, "traces export: refused"}, {time.Minute, "traces export: refused"}},
			want:  []line{{"traces export: refused", 0}, {"traces export: refused", 0}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			d, advance := testDiagnostics(&buf, slog.LevelInfo)
			for _, s := range c.steps {
				advance(s.after)
				d.Handle(errors.New(s.err))
			}
			got := diagLines(t, &buf)
			if len(got) != len(c.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(c.want), buf.String())
			}
			for i, w := range c.want {
				g := got[i]
				s, _ := g["suppressed"].(float64)
				if g["level"] != "WARN" || g["msg"] != "tracing: opentelemetry error" || g["error"] != w.err || s != w.suppressed {
					t.Errorf("line %d = %v, want a warning with error %q, suppressed %v", i, g, w.err, w.suppressed)
				}
			}
		})
	}
}

// Past diagKinds kinds within 10 s, new kinds share one limit instead of growing the
// table.
func TestDiagnosticsKindsBounded(t *testing.T) {
	var buf bytes.Buffer
	d, _ := testDiagnostics(&buf, slog.LevelInfo)
	for i := range diagKinds + 10 {
		d.Handle(fmt.Errorf("kind %d: failed", i))
	}
	if n := len(diagLines(t, &buf)); n != diagKinds+1 {
		t.Errorf("%d lines for %d kinds, want %d", n, diagKinds+10, diagKinds+1)
	}
	if n := len(d.kinds); n > diagKinds+1 {
		t.Errorf("%d kinds remembered, bound %d", n, diagKinds+1)
	}
}

// OpenTelemetry's internal logger: errors and V(1) warnings become the gateway's
// warnings, V(4) info and V(8) debug (a tracer provider's whole configuration) are
// left out, and nothing is written when the gateway's level is above warn.
func TestDiagnosticsLoggerLevels(t *testing.T) {
	for _, c := range []struct {
		name  string
		level slog.Level
		log   func(logr.Logger)
		want  string // the message logged; "" for none
	}{
		{"error", slog.LevelInfo, func(l logr.Logger) { l.Error(errors.New("bad"), "parse url") }, "tracing: opentelemetry: parse url"},
		{"warning", slog.LevelInfo, func(l logr.Logger) { l.V(1).Info("limit reached") }, "tracing: opentelemetry: limit reached"},
		{"info left out", slog.LevelDebug, func(l logr.Logger) { l.V(4).Info("TracerProvider created", "config", "…") }, ""},
		{"debug left out", slog.LevelDebug, func(l logr.Logger) { l.V(8).Info("exporting") }, ""},
		{"warning at level error", slog.LevelError, func(l logr.Logger) { l.V(1).Info("limit reached") }, ""},
		{"error at level error", slog.LevelError, func(l logr.Logger) { l.Error(errors.New("bad"), "parse url") }, ""},
		{"named, with values", slog.LevelInfo, func(l logr.Logger) {
			l.WithName("otlp").WithValues("a", 1).Error(errors.New("bad"), "parse duration", "input", "xyz")
		}, "tracing: opentelemetry: parse duration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			d, _ := testDiagnostics(&buf, c.level)
			c.log(logr.New(diagSink{d: d}))
			got := diagLines(t, &buf)
			if c.want == "" {
				if len(got) != 0 {
					t.Fatalf("logged %v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0]["msg"] != c.want || got[0]["level"] != "WARN" {
				t.Fatalf("logged %v, want one warning %q", got, c.want)
			}
			if c.name == "named, with values" {
				if g := got[0]; g["logger"] != "otlp" || g["a"] != "1" || g["input"] != "xyz" || g["error"] != "bad" {
					t.Errorf("attributes %v, want logger otlp, a 1, input xyz, error bad", g)
				}
			}
		})
	}
}

// A header entry OpenTelemetry cannot read is quoted in its log call whole, key or not:
// the line keeps the message and the error without what it quotes.
func TestDiagnosticsHeaderLinesWithholdTheEntry(t *testing.T) {
	var buf bytes.Buffer
	d, _ := testDiagnostics(&buf, slog.LevelInfo)
	l := logr.New(diagSink{d: d})
	l.Error(errors.New("missing '="), "parse headers", "input", "authorization Bearer s3cr3t-value")
	l.Error(errors.New(`invalid URL escape "%zz"`), "escape header value", "value", "%zzs3cr3t-value")
	got := diagLines(t, &buf)
	if len(got) != 2 || got[0]["error"] != "missing '=" || got[1]["error"] != `invalid URL escape "…"` {
		t.Fatalf("logged %v", got)
	}
	if strings.Contains(buf.String(), "s3cr3t") || strings.Contains(buf.String(), "%zz") {
		t.Errorf("header entry logged: %s", buf.String())
	}
}

func TestRedactor(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_HEADERS":        "x-a=env%20secret%2Fone, authorization=Basic dXNlcjpwYXNz",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "no-equals-secret-entry,x-b=on",
	}
	r := newRedactor(Config{Headers: map[string]string{"x-api-key": "cfg-secret", "authorization": "Bearer tok-123456", "x-flag": "1"}},
		func(k string) string { return env[k] })
	for _, c := range []struct{ name, in, want string }{
		{"config header value", "401 (body: invalid key cfg-secret)", "401 (body: invalid key REDACTED)"},
		{"credential without its scheme", "token tok-123456 expired", "token REDACTED expired"},
		{"scheme and credential", "got Bearer tok-123456", "got REDACTED"},
		{"environment value, encoded", "key env%20secret%2Fone", "key REDACTED"},
		{"environment value, decoded", "key env secret/one", "key REDACTED"},
		{"basic credential", "auth dXNlcjpwYXNz refused", "auth REDACTED refused"},
		{"entry without '='", "input no-equals-secret-entry", "input REDACTED"},
		{"short values are no secret", "x-flag 1, x-b on", "x-flag 1, x-b on"},
		{"URL user information", `parse "http://user:pa55@collector:4318/v1/traces": bad`, `parse "http://REDACTED@collector:4318/v1/traces": bad`},
		{"two URLs", "https://a:b@h1/ and grpc://c@h2", "https://REDACTED@h1/ and grpc://REDACTED@h2"},
		{"URL without user information", `Post "http://127.0.0.1:4318/v1/traces": refused`, `Post "http://127.0.0.1:4318/v1/traces": refused`},
		{"at sign after the host", "http://host/path@x", "http://host/path@x"},
		{"at sign after a host and port", "http://host:4318/path@x", "http://host:4318/path@x"},
		{"at sign after an IPv6 host", "http://[::1]:4318/v1?to=a@b", "http://[::1]:4318/v1?to=a@b"},
		{"password with an unencoded slash", `parse "https://u:abc/def+g@collector:4318": bad`, `parse "https://REDACTED@collector:4318": bad`},
		{"password with an unencoded '?'", "input https://u:abc?def@collector:4318 x@y", "input https://REDACTED@collector:4318 x@y"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := r.clean(c.in); got != c.want {
				t.Errorf("clean(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// A reload's redactor adds its secrets to those of the configs before it: a retired
// tracer may still report an error quoting its own.
func TestRedactorMergeKeepsEarlierSecrets(t *testing.T) {
	none := func(string) string { return "" }
	old := newRedactor(Config{Headers: map[string]string{"x-api-key": "old-secret"}}, none)
	cur := newRedactor(Config{Headers: map[string]string{"x-api-key": "new-secret"}}, none)
	m := old.merge(cur)
	if got := m.clean("old-secret new-secret"); got != "REDACTED REDACTED" {
		t.Errorf("merged clean = %q", got)
	}
	big := &redactor{}
	for i := range maxSecrets + 5 {
		big.add(fmt.Sprintf("secret-%04d", i))
	}
	if n := len(big.merge(cur).secrets); n != maxSecrets {
		t.Errorf("%d secrets after merge, bound %d", n, maxSecrets)
	}
	if got := big.merge(cur).clean("new-secret"); got != "REDACTED" {
		t.Errorf("the newest config's secret was dropped at the bound: %q", got)
	}
}
