package gateway

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/logq"
)

func logQueueConfig(format, level string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
logging: {level: ` + level + `, format: ` + format + `}
`
}

// The binary's logs go through a logq.Queue in front of stderr (Options.LogOutput):
// the access line reaches it whole without a lock of ours, the lines it drops count
// in tollgate_log_lines_dropped_total, and its notice of them is a warning in the
// log's format, left out at a level above warn.
func TestLoggerOverLogQueue(t *testing.T) {
	t.Parallel()
	const notice = "log lines dropped: the log reader fell behind"
	tests := []struct {
		name, format, level string
		want, absent        []string
	}{
		{"json", "json", "info",
			[]string{`"msg":"request","request_id":"r1",`, `"level":"WARN","msg":"` + notice + `","lines":1}` + "\n"}, nil},
		{"text", "text", "info",
			[]string{`msg=request request_id=r1 `, `level=WARN msg="` + notice + `" lines=1` + "\n"}, nil},
		{"level above warn", "json", "error", nil, []string{notice, `"msg":"request"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			q := logq.New(&out)
			s := newServerWith(t, logQueueConfig(tt.format, tt.level), Options{LogOutput: q})
			if h, ok := s.log.Handler().(*jsonLogHandler); ok && h.out != q {
				t.Errorf("the JSON handler writes through %T, want the queue itself", h.out)
			}
			logAccess(s.log, &accessEntry{requestID: "r1", endpoint: "chat", status: 200})
			q.Write(make([]byte, logq.DefaultMax+1)) // more than the queue holds: dropped
			fams, err := s.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var dropped float64 = -1
			for _, f := range fams {
				if f.GetName() == "tollgate_log_lines_dropped_total" {
					dropped = f.GetMetric()[0].GetCounter().GetValue()
				}
			}
			if dropped != 1 {
				t.Errorf("tollgate_log_lines_dropped_total = %v, want 1", dropped)
			}
			if lost, err := q.Close(context.Background()); lost != 0 || err != nil {
				t.Fatalf("Close: %d lines lost, %v", lost, err)
			}
			got := out.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("output has %q:\n%s", a, got)
				}
			}
		})
	}
}

// BenchmarkAccessLineQueued prices the access line as the binary writes it: encoded
// and queued for stderr's writer goroutine.
func BenchmarkAccessLineQueued(b *testing.B) {
	q := logq.New(discardWriter{})
	defer q.Close(context.Background())
	log := slog.New(NewJSONLogHandler(q, nil))
	b.ReportAllocs()
	for b.Loop() {
		logAccess(log, &benchEntry)
	}
}

// discardWriter is io.Discard without its io.StringWriter and io.ReaderFrom.
type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
