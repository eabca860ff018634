package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Handler serves the registry's metrics in the Prometheus exposition formats
// (text, or protobuf when the scraper asks for it, which native histograms
// need) for the admin listener's /metrics. The adaptor copies each request
// into net/http types, which is fine at scrape rates.
func Handler(g prometheus.Gatherer) fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{
		// A failing collector must not hide all the other metrics.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are cheap but not free; a misconfigured fleet of
		// scrapers should not pile them up.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
}
