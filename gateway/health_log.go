package gateway

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/providers"
)

// healthLog logs a backend's targets leaving service and coming back
// (providers.Config.OnHealth): a warning when one leaves, with why and, for an
// ejection, for how long; an info line when it comes back, with how long it was out.
// Only what tollgate_backend_up shows would say so otherwise. A target is named by
// its metrics label, never by its URL, which may hold credentials.
type healthLog struct {
	log *slog.Logger
	// labels are the target labels of the backend's targets (targetLabels), in
	// their order; set before the backend starts.
	labels []string
}

func (h *healthLog) note(c providers.HealthChange) {
	var target string
	if c.Target >= 0 && c.Target < len(h.labels) {
		target = h.labels[c.Target]
	} else {
		target = targetLabels([]string{c.URL})[0]
	}
	if c.Up {
		h.log.LogAttrs(context.Background(), slog.LevelInfo, "upstream target back in service",
			slog.String("backend", c.Backend), slog.String("target", target), slog.String("reason", c.Cause.String()),
			slog.String("out_for", c.Out.Round(time.Millisecond).String()))
		return
	}
	attrs := [6]slog.Attr{slog.String("backend", c.Backend), slog.String("target", target), slog.String("reason", c.Cause.String())}
	n := 3
	switch c.Cause {
	case providers.CauseCheckFailed:
		if c.Status != 0 {
			attrs[n] = slog.Int("status", c.Status)
		} else {
			attrs[n] = slog.String("error", checkErrorClass(c.Err))
		}
		n++
	case providers.CauseEjected:
		attrs[n] = slog.Int("failures", c.Failures)
		n++
	}
	if c.For > 0 {
		attrs[n] = slog.String("for", c.For.String())
		n++
	}
	h.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream target out of service", attrs[:n]...)
}

// checkErrorClass names the class of a failed health check's error as the error
// codes of the gateway's answers do (upstream_timeout, upstream_unreachable,
// upstream_bad_response, with a header over max_response_header_bytes apart),
// without its text.
func checkErrorClass(err error) string {
	switch {
	case errors.Is(err, providers.ErrTimeout):
		return "timeout"
	case errors.Is(err, providers.ErrHeaderTooLarge):
		// The one bad answer a config key mends: max_response_header_bytes.
		return "header_too_large"
	case errors.Is(err, providers.ErrBadResponse):
		return "bad_response"
	case errors.Is(err, providers.ErrConnect):
		return "unreachable"
	}
	return "error"
}
