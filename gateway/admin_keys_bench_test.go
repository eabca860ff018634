package gateway

import (
	"io"
	goruntime "runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
)

// BenchmarkAdminKeysList is GET /admin/keys on sizedConfig's 10,000 keys (a tenth
// with a limit of their own; 500 endpoints, 125 of them with a limit per api_key)
// with the redis store: a page of 100 and the whole list, the answer taken as a
// client would. B/op is what one answer allocates; answer-B its size; peak-live-B the
// most the live heap grew over its size before the answer: the heap a garbage
// collection during the answer found live (sampled every millisecond), which is what
// the answer holds at once, not the garbage it leaves.
func BenchmarkAdminKeysList(b *testing.B) {
	r := redistest.Start(b)
	config := strings.Replace(sizedConfig(startStaticUpstream(b), 10000, 500, 200),
		`admin_listen: "127.0.0.1:0"}`, `admin_listen: "127.0.0.1:0", admin_token: admtok}`, 1) +
		"limiter: {store: redis, redis: {url: \"" + r.URL() + "\"}, timeout: 5s}\n"
	s := newTestServer(b, config)
	for _, c := range []struct{ name, uri string }{
		{"page100", "/admin/keys?limit=100"},
		{"all", "/admin/keys"},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := &fasthttp.RequestCtx{}
			ctx.Init2(&sinkConn{wake: make(chan bool, 1)}, nopLogger{}, true)
			var size int64
			var peak heapPeak
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				peak.start()
				b.StartTimer()
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.SetRequestURI(c.uri)
				ctx.Request.Header.SetHost("127.0.0.1")
				ctx.Request.Header.Set("Authorization", "Bearer admtok")
				s.serveAdmin(ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("%s: %d %s", c.uri, ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if stream := ctx.Response.BodyStream(); stream != nil {
					n, err := io.Copy(io.Discard, stream)
					if err != nil {
						b.Fatal(err)
					}
					size = n
				} else {
					size = int64(len(ctx.Response.Body()))
				}
				ctx.Response.ResetBody()
				peak.stop()
			}
			b.ReportMetric(float64(size), "answer-B")
			b.ReportMetric(float64(peak.most), "peak-live-B")
		})
	}
}

// heapPeak samples the live heap while an operation runs: most is the largest
// growth over its size at start, of every operation timed.
type heapPeak struct {
	most int64
	done chan struct{}
	got  chan int64
}

// heapNow is the heap the last garbage collection found live.
func heapNow() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func (h *heapPeak) start() {
	h.done, h.got = make(chan struct{}), make(chan int64)
	goruntime.GC()
	base := heapNow()
	go func() {
		most := int64(0)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			most = max(most, heapNow()-base)
			select {
			case <-h.done:
				h.got <- most
				return
			case <-tick.C:
			}
		}
	}()
}

func (h *heapPeak) stop() {
	close(h.done)
	h.most = max(h.most, <-h.got)
}
