package logq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stallWriter records the batches it is given; while stalled, each Write blocks until
// release is closed, as a write to a pipe its reader has stopped reading does.
type stallWriter struct {
	entered chan struct{} // gets one value as each Write begins
	release chan struct{}

	mu      sync.Mutex
	out     bytes.Buffer
	batches int
}

func newStallWriter() *stallWriter {
	return &stallWriter{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.entered <- struct{}{}
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out.Write(p)
	s.batches++
	return len(p), nil
}

func (s *stallWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// recorder takes every batch at once and records it.
type recorder struct {
	mu      sync.Mutex
	out     bytes.Buffer
	batches []string
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out.Write(p)
	r.batches = append(r.batches, string(p))
	return len(p), nil
}

func line(s string) []byte { return []byte(s + "\n") }

// TestLinesComeOutWholeAndInOrder writes from many goroutines, lines of lengths that
// straddle the batches: every line comes out whole, each goroutine's in its order,
// every batch ends on a line's end, and Close writes the last of them.
func TestLinesComeOutWholeAndInOrder(t *testing.T) {
	for _, c := range []struct {
		name   string
		linger time.Duration
	}{
		{"writer goes idle at once", 0},
		{"writer lingers for a batch", linger},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r recorder
			q := newQueue(&r, DefaultMax, c.linger)
			const goroutines, lines = 8, 500
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range lines {
						fmt.Fprintf(q, `{"g":%d,"i":%d,"pad":%q}`+"\n", g, i, strings.Repeat("x", (g*131+i*17)%700))
					}
				})
			}
			wg.Wait()
			if lost, err := q.Close(context.Background()); lost != 0 || err != nil {
				t.Fatalf("Close: %d lines lost, %v; want 0, nil", lost, err)
			}
			next := make([]int, goroutines)
			for _, l := range strings.Split(strings.TrimSuffix(r.out.String(), "\n"), "\n") {
				var v struct{ G, I int }
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Fatalf("line not whole: %q: %v", l, err)
				}
				if v.I != next[v.G] {
					t.Fatalf("goroutine %d: line %d came after line %d", v.G, v.I, next[v.G]-1)
				}
				next[v.G]++
			}
			for g, n := range next {
				if n != lines {
					t.Errorf("goroutine %d: %d lines written, want %d", g, n, lines)
				}
			}
			for i, b := range r.batches {
				if !strings.HasSuffix(b, "\n") {
					t.Fatalf("batch %d does not end a line: ...%q", i, b[max(0, len(b)-40):])
				}
			}
			if q.Dropped() != 0 {
				t.Errorf("Dropped() = %d, want 0", q.Dropped())
			}
		})
	}
}

// TestStalledWriterDropsAndCountsLines stalls the writer in its first batch: Write
// keeps returning at once, queues what fits under the bound (the stalled batch counted
// in it) and drops the rest; Close gives up when its context ends and says how many
// queued lines it leaves; once the reader reads again, the queued lines follow, then
// one notice with the number dropped.
func TestStalledWriterDropsAndCountsLines(t *testing.T) {
	sw := newStallWriter()
	q := newQueue(sw, 100, 0)
	l40 := line(strings.Repeat("a", 39))
	q.Write(l40) // the writer takes it and stalls
	<-sw.entered
	writes := []struct {
		line    []byte
		dropped uint64
	}{
		{line("b" + strings.Repeat(".", 38)), 0}, // 40 + 40 of 100
		{line("c" + strings.Repeat(".", 38)), 1}, // 120 would not fit
		{line("d" + strings.Repeat(".", 18)), 1}, // 100 exactly
		{line("e"), 2},
	}
	for _, w := range writes {
		if n, err := q.Write(w.line); n != len(w.line) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(w.line))
		}
		if got := q.Dropped(); got != w.dropped {
			t.Fatalf("after writing %q: Dropped() = %d, want %d", w.line[:1], got, w.dropped)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	lost, err := q.Close(ctx)
	if lost != 3 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with the writer stalled: %d lines lost, %v; want 3 (a, b, d), context.Canceled", lost, err)
	}
	q.Write(line("f")) // after Close, with the queue full
	if got := q.Dropped(); got != 3 {
		t.Fatalf("Dropped() = %d after a line written to a full closed queue, want 3", got)
	}
	close(sw.release)
	if lost, err := q.Close(context.Background()); lost != 0 || err != nil {
		t.Fatalf("Close once the writer is released: %d, %v; want 0, nil", lost, err)
	}
	got := sw.String()
	want := string(l40) + "b" + strings.Repeat(".", 38) + "\nd" + strings.Repeat(".", 18) + "\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("output %q, want it to begin %q", got, want)
	}
	notice := strings.TrimPrefix(got, want)
	var v struct {
		Level, Msg string
		Lines      int
	}
	if err := json.Unmarshal([]byte(notice), &v); err != nil || v.Level != "WARN" || v.Lines != 3 || strings.Count(notice, "\n") != 1 {
		t.Fatalf("after the queued lines: %q (%v); want one WARN line with lines 3", notice, err)
	}
	if sw.batches != 2 {
		t.Errorf("%d writes, want 2: the stalled line, then the queue and its notice in one", sw.batches)
	}
}

// TestNoticeOfAnOversizedLine drops a line longer than the whole bound while the
// writer is idle: the drop alone wakes it to write its notice, once.
func TestNoticeOfAnOversizedLine(t *testing.T) {
	var r recorder
	q := newQueue(&r, 64, 0)
	q.Write(line(strings.Repeat("z", 64)))
	q.Write(line("after"))
	if lost, err := q.Close(context.Background()); lost != 0 || err != nil {
		t.Fatalf("Close: %d, %v", lost, err)
	}
	out := r.out.String()
	if strings.Contains(out, "zzz") || strings.Count(out, `"lines":1}`) != 1 || !strings.Contains(out, "after\n") {
		t.Fatalf("output %q: want the oversized line dropped, one notice of 1 line, and the next line", out)
	}
}

// TestSetNoticeFormatsOrSilences: the gateway writes the notice in its log format, or
// none at a level that leaves warnings out.
func TestSetNoticeFormatsOrSilences(t *testing.T) {
	for _, c := range []struct {
		name   string
		notice func([]byte, uint64) []byte
		want   string
	}{
		{"formatted", func(b []byte, n uint64) []byte { return fmt.Appendf(b, "dropped=%d\n", n) }, "dropped=1\n"},
		{"silenced", func(b []byte, _ uint64) []byte { return b }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r recorder
			q := newQueue(&r, 8, 0)
			q.SetNotice(c.notice)
			q.Write(line("too long for 8"))
			q.Close(context.Background())
			if got := r.out.String(); got != c.want {
				t.Fatalf("output %q, want %q", got, c.want)
			}
		})
	}
}

// TestWriteAfterStopIsDropped: a line logged once Close has written everything (a
// goroutine still logging as the process exits) is counted, not left waiting.
func TestWriteAfterStopIsDropped(t *testing.T) {
	var r recorder
	q := New(&r)
	q.Write(line("last"))
	q.Close(context.Background())
	q.Write(line("too late"))
	if got := q.Dropped(); got != 1 {
		t.Fatalf("Dropped() = %d, want 1", got)
	}
	if got := r.out.String(); got != "last\n" {
		t.Fatalf("output %q, want %q", got, "last\n")
	}
}

var accessLine = []byte(`{"time":"2026-11-23T11:50:02.123456789Z","level":"INFO","msg":"request","request_id":"b7c1a0f2","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","endpoint":"chat","backend":"vllm-a","variant":"stable","status":200,"input_tokens":12,"output_tokens":345,"cached_input_tokens":0,"cache_write_input_tokens":0,"cost_usd":0.000123,"ttft_ms":12.3,"latency_ms":1234.5,"key":"team-a","client_ip":"203.0.113.5","attempts":1,"error":""}` + "\n")

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkWrite(b *testing.B) {
	q := New(discard{})
	defer q.Close(context.Background())
	b.ReportAllocs()
	b.SetBytes(int64(len(accessLine)))
	for b.Loop() {
		q.Write(accessLine)
	}
}

func BenchmarkWriteParallel(b *testing.B) {
	q := New(discard{})
	defer q.Close(context.Background())
	b.ReportAllocs()
	b.SetBytes(int64(len(accessLine)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			q.Write(accessLine)
		}
	})
}
