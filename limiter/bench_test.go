package limiter

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tollgate/tollgate/internal/redistest"
)

// benchPolicy never refuses within a benchmark (the bursts are enormous) yet every
// check moves its buckets away from full, so Redis stores state as it does under a
// real limit rather than deleting full buckets.
func benchPolicy(b *testing.B) *Policy {
	return mustPolicy(b, "bench",
		Limit{Per: "api_key", Requests: 1000, Window: "day", Burst: maxAmount},
		Limit{Per: "api_key", Tokens: 1000, Window: "day", Burst: maxAmount})
}

func benchSubjects(n int) []*Subject {
	s := make([]*Subject, n)
	for i := range s {
		s[i] = &Subject{APIKey: []byte("key-" + strconv.Itoa(i)), Endpoint: []byte("chat")}
	}
	return s
}

func BenchmarkNilPolicyTake(b *testing.B) {
	l := newMemLimiter(b, newTestClock())
	var tk Ticket
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Take(bg, nil, alice, 100, &tk)
		l.Settle(&tk, 100)
	}
}

func BenchmarkMemoryTake(b *testing.B) {
	o := defaultOptions()
	l, err := newLimiter(Config{}, nil, o, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	pol := mustPolicy(b, "bench", Limit{Per: "api_key", Requests: maxAmount, Window: "second"})
	var tk Ticket
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryTakeSettle(b *testing.B) {
	l, err := newLimiter(Config{}, nil, defaultOptions(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	pol := benchPolicy(b)
	var tk Ticket
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
			b.Fatal(err)
		}
		l.Settle(&tk, 80)
	}
}

// BenchmarkMemoryTakeParallel is the throughput baseline for BenchmarkRedisTake: 64
// goroutines over 64 API keys.
func BenchmarkMemoryTakeParallel(b *testing.B) {
	l, err := newLimiter(Config{}, nil, defaultOptions(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	pol := benchPolicy(b)
	subjects := benchSubjects(64)
	var next atomic.Int64
	b.SetParallelism(parallelismFor(64))
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		s := subjects[int(next.Add(1))%len(subjects)]
		var tk Ticket
		for pb.Next() {
			if err := l.Take(bg, pol, s, 100, &tk); err != nil {
				b.Error(err)
				return
			}
			l.Settle(&tk, 80)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
}

func parallelismFor(goroutines int) int {
	p := runtime.GOMAXPROCS(0)
	return (goroutines + p - 1) / p
}

// BenchmarkRedisTake measures Take+Settle against a local redis-server: latency
// percentiles per check, throughput, and how many checks share a round trip. Every
// check goes to Redis: the policy's rates are too low to prefetch.
func BenchmarkRedisTake(b *testing.B) {
	benchRedisTake(b, benchPolicy(b))
}

// BenchmarkRedisTakePrefetched is the same with limits far above the load, the common
// case: most checks are answered from units prefetched from Redis.
func BenchmarkRedisTakePrefetched(b *testing.B) {
	benchRedisTake(b, mustPolicy(b, "bench",
		Limit{Per: "api_key", Requests: 1_000_000_000, Window: "minute"},
		Limit{Per: "api_key", Tokens: 1_000_000_000_000, Window: "minute"}))
}

func benchRedisTake(b *testing.B, pol *Policy) {
	srv := redistest.Start(b)
	for _, goroutines := range []int{1, 8, 64} {
		b.Run("goroutines="+strconv.Itoa(goroutines), func(b *testing.B) {
			l := newRedisLimiter(b, Config{Redis: RedisConfig{URL: srv.URL()}})
			subjects := benchSubjects(goroutines)
			var nextSubject atomic.Int64
			var mu sync.Mutex
			all := hdrhistogram.New(1, int64(10*time.Second/time.Nanosecond), 3)
			before := l.Stats()
			cpu0 := srv.CPU(b)
			b.ReportAllocs()
			start := time.Now()
			run := func(next func() bool) {
				s := subjects[int(nextSubject.Add(1))%len(subjects)]
				h := hdrhistogram.New(1, int64(10*time.Second/time.Nanosecond), 3)
				var tk Ticket
				for next() {
					t0 := time.Now()
					if err := l.Take(bg, pol, s, 100, &tk); err != nil {
						b.Error(err)
						return
					}
					_ = h.RecordValue(int64(time.Since(t0)))
					l.Settle(&tk, 80)
				}
				mu.Lock()
				all.Merge(h)
				mu.Unlock()
			}
			if goroutines == 1 {
				run(b.Loop)
			} else {
				b.SetParallelism(parallelismFor(goroutines))
				b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
			}
			elapsed := time.Since(start)
			after := l.Stats()
			if after.Fallbacks != before.Fallbacks {
				b.Fatalf("fell back to local buckets: %+v", after)
			}
			checks := after.RedisChecks - before.RedisChecks
			trips := after.RoundTrips - before.RoundTrips
			b.ReportMetric(float64(all.ValueAtQuantile(50))/1e3, "p50-µs")
			b.ReportMetric(float64(all.ValueAtQuantile(99))/1e3, "p99-µs")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "checks/s")
			if checks > 0 {
				b.ReportMetric(1000*float64(trips)/float64(checks), "roundtrips/1000checks")
				b.ReportMetric((srv.CPU(b)-cpu0)*1e6/float64(checks), "redis-cpu-µs/check")
			}
			if local := after.LocalChecks - before.LocalChecks; local > 0 {
				b.ReportMetric(1000*float64(trips)/float64(uint64(b.N)), "roundtrips/1000takes")
			}
		})
	}
}

func BenchmarkAppendHeaders(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendReset(buf[:0], 6*time.Minute+1500*time.Millisecond)
		buf = AppendRetryAfter(buf, 1500*time.Millisecond)
	}
}
