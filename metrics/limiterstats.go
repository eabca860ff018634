package metrics

import "github.com/prometheus/client_golang/prometheus"

// LimiterStats is what the limiter reports about how its checks were answered; the
// counters only grow for the life of one limiter.
type LimiterStats struct {
	// Checks answered by Redis, from units prefetched from Redis, refused from a
	// refusal Redis gave until its retry time, from this replica's local share while
	// Redis failed, and refused as unavailable (on_redis_error: deny).
	Redis, Prefetched, RefusedLocally, Fallback, Unavailable uint64
	// RoundTrips counts pipelines sent to Redis (checks, refills and settlements).
	RoundTrips uint64
	// DroppedSettlements counts token settlements and releases lost to Redis failures.
	DroppedSettlements uint64
}

// WatchLimiter adds a limiter to the exported limiter statistics, read from f at
// each scrape, and returns the function to call once that limiter is closed: f
// is read a last time and its counts stay in the totals. The counters sum every
// limiter of the process's life, so a reload that replaces the limiter does not
// set them back (Prometheus would take it for a restart), and one retired while
// requests still use it counts them until it is closed.
func (m *Metrics) WatchLimiter(f func() LimiterStats) (retire func()) { return m.limiter.watch(f) }

// plus adds o's statistics to s's.
func (s LimiterStats) plus(o LimiterStats) LimiterStats {
	s.Redis += o.Redis
	s.Prefetched += o.Prefetched
	s.RefusedLocally += o.RefusedLocally
	s.Fallback += o.Fallback
	s.Unavailable += o.Unavailable
	s.RoundTrips += o.RoundTrips
	s.DroppedSettlements += o.DroppedSettlements
	return s
}

// counts is s: every field is a counter.
func (s LimiterStats) counts() LimiterStats { return s }

var (
	limiterChecksDesc = prometheus.NewDesc("tollgate_limiter_checks_total",
		"Limit checks by what answered them: redis, prefetched (units taken from Redis ahead), refused_locally (a requests bucket Redis refused until its retry time), fallback (local share while Redis fails), unavailable (refused, on_redis_error: deny).",
		[]string{"answered"}, nil)
	limiterRoundTripsDesc = prometheus.NewDesc("tollgate_limiter_redis_round_trips_total",
		"Pipelines sent to Redis by the limiter: checks of concurrent requests share one.", nil, nil)
	limiterDroppedDesc = prometheus.NewDesc("tollgate_limiter_settlements_dropped_total",
		"Settlements the limiter gave up on: token true-ups whose call to Redis failed after it may have run, and any settlement past the 65,536 queued while Redis is slow or away.", nil, nil)
)

// limiterCollector reads the limiters' statistics at scrape time, so the limiter
// package needs no dependency on Prometheus.
type limiterCollector struct{ totals[LimiterStats] }

func (c *limiterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- limiterChecksDesc
	ch <- limiterRoundTripsDesc
	ch <- limiterDroppedDesc
}

func (c *limiterCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.read()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(limiterChecksDesc, prometheus.CounterValue, float64(s.Redis), "redis")
	ch <- prometheus.MustNewConstMetric(limiterChecksDesc, prometheus.CounterValue, float64(s.Prefetched), "prefetched")
	ch <- prometheus.MustNewConstMetric(limiterChecksDesc, prometheus.CounterValue, float64(s.RefusedLocally), "refused_locally")
	ch <- prometheus.MustNewConstMetric(limiterChecksDesc, prometheus.CounterValue, float64(s.Fallback), "fallback")
	ch <- prometheus.MustNewConstMetric(limiterChecksDesc, prometheus.CounterValue, float64(s.Unavailable), "unavailable")
	ch <- prometheus.MustNewConstMetric(limiterRoundTripsDesc, prometheus.CounterValue, float64(s.RoundTrips))
	ch <- prometheus.MustNewConstMetric(limiterDroppedDesc, prometheus.CounterValue, float64(s.DroppedSettlements))
}
