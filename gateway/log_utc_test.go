package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/logq"
)

// india is a zone other than UTC, with a half-hour offset.
var india = time.FixedZone("IST", 5*3600+1800)

// A record stamped in another zone is written in UTC, RFC 3339 with Z, by every
// handler the logging section can build and by loggers derived from them.
func TestLogRecordTimesInUTC(t *testing.T) {
	at := time.Date(2026, 11, 23, 17, 20, 2, 123456789, india)
	derive := func(h slog.Handler) slog.Handler {
		return h.WithAttrs([]slog.Attr{slog.String("component", "test")}).WithGroup("g")
	}
	for _, c := range []struct {
		name string
		h    func(io.Writer) slog.Handler
		want string
	}{
		{"json", func(w io.Writer) slog.Handler { return NewJSONLogHandler(w, nil) }, `{"time":"2026-11-23T11:50:02.123456789Z",`},
		{"json derived", func(w io.Writer) slog.Handler { return derive(NewJSONLogHandler(w, nil)) }, `{"time":"2026-11-23T11:50:02.123456789Z",`},
		{"text", func(w io.Writer) slog.Handler { return NewTextLogHandler(w, nil) }, `time=2026-11-23T11:50:02.123Z `},
		{"text derived", func(w io.Writer) slog.Handler { return derive(NewTextLogHandler(w, nil)) }, `time=2026-11-23T11:50:02.123Z `},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := c.h(&buf).Handle(context.Background(), slog.NewRecord(at, slog.LevelInfo, "m", 0)); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(buf.String(), c.want) {
				t.Errorf("line %q, want it to start %q", buf.String(), c.want)
			}
		})
	}
	t.Run("access line", func(t *testing.T) {
		const want = `{"time":"2026-11-23T11:50:02.123456789Z","level":"INFO","msg":"request",`
		if b := appendAccessLine(nil, at, &accessEntry{status: 200}); !bytes.HasPrefix(b, []byte(want)) {
			t.Errorf("access line %q, want it to start %q", b, want)
		}
	})
}

// utcChildEnv makes TestLogTimesUTCWhereLocalIsNot run its checks: in a process of its
// own, because it swaps time.Local, which every time.Now reads, and other tests leave
// goroutines that call it.
const utcChildEnv = "TOLLGATE_TEST_LOG_UTC"

// With the process's zone other than UTC (time.Local swapped, as TZ would set it),
// every line the binary's loggers write carries its time in UTC: ordinary lines,
// derived loggers, the access line on its direct path and through slog, and the log
// queue's notice of dropped lines, in both formats.
func TestLogTimesUTCWhereLocalIsNot(t *testing.T) {
	t.Parallel()
	if os.Getenv(utcChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLogTimesUTCWhereLocalIsNot$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), utcChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestLogTimesUTCWhereLocalIsNot") {
			t.Fatalf("checks in a process of their own: %v\n%s", err, out)
		}
		return
	}
	local := time.Local
	time.Local = india
	t.Cleanup(func() { time.Local = local })
	if _, off := time.Now().Zone(); off != 5*3600+1800 {
		t.Fatalf("time.Now is in a zone %d s from UTC, want the swapped one", off)
	}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var out syncBuffer
			q := logq.New(&out)
			log := newLogger(LoggingConfig{Level: "info", Format: format}, q, new(slog.LevelVar))
			before := time.Now()
			log.Info("plain")
			log.With("component", "test").Warn("derived")
			logAccess(log, &accessEntry{requestID: "r1", status: 200})
			logAccess(log.With("component", "test"), &accessEntry{requestID: "r2", status: 200})
			q.Write(make([]byte, logq.DefaultMax+1)) // dropped: the queue writes its notice
			if _, err := q.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 5 {
				t.Fatalf("%d lines, want 5:\n%s", len(lines), out.String())
			}
			stamp := regexp.MustCompile(`^(?:\{"time":"|time=)([^" ]+)`)
			for _, l := range lines {
				m := stamp.FindStringSubmatch(l)
				if m == nil {
					t.Errorf("no time at the start of %q", l)
					continue
				}
				ts, err := time.Parse(time.RFC3339Nano, m[1])
				if err != nil || !strings.HasSuffix(m[1], "Z") {
					t.Errorf("time %q of %q: want RFC 3339 in UTC (Z), parse error %v", m[1], l, err)
					continue
				}
				// Text lines are stamped to the millisecond.
				if ts.Before(before.Truncate(time.Millisecond)) || ts.After(after) {
					t.Errorf("time %s of %q is not the instant it was written (%s to %s)", ts, l, before.UTC(), after.UTC())
				}
			}
		})
	}
}

// BenchmarkLogLine prices an ordinary log line (not the access line) through the logger
// each logging.format builds, its time written in UTC.
func BenchmarkLogLine(b *testing.B) {
	for _, format := range []string{"json", "text"} {
		b.Run(format, func(b *testing.B) {
			log := newLogger(LoggingConfig{Level: "info", Format: format}, io.Discard, new(slog.LevelVar))
			b.ReportAllocs()
			for b.Loop() {
				log.Warn("upstream failed", "request_id", "0123456789abcdef0123", "endpoint", "chat", "status", 502)
			}
		})
	}
}
