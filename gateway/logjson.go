package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// accessEntry is one access log line.
type accessEntry struct {
	requestID, traceID, endpoint, backend, variant, key, errKind string
	clientIP, serviceTier                                        string
	cache                                                        string
	status, attempts                                             int
	inputTokens, outputTokens, cachedTokens, cacheWrites         int64
	webSearches, audioMillis                                     int64
	cost, queueMS, ttftMS, latencyMS                             float64
	// estimated is set when the token counts (and the cost) are the gateway's
	// estimate of a stream cut before its usage came.
	estimated bool
}

// logAccess writes e as the "request" line: straight into a pooled buffer when the
// logger is the gateway's own JSON handler, through slog's attributes otherwise (the
// text format, or a logger handed in through Options).
func logAccess(log *slog.Logger, e *accessEntry) {
	if h, ok := log.Handler().(*jsonLogHandler); ok && h.direct {
		if h.Enabled(context.Background(), slog.LevelInfo) {
			h.writeAccess(time.Now(), e)
		}
		return
	}
	// The request ID, trace ID and client address view the pooled request's buffers,
	// which the next request reuses; a handler may keep the record (slog.Handler
	// allows it after Record.Clone, which keeps the strings), so they are copied.
	log.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("request_id", strings.Clone(e.requestID)),
		slog.String("trace_id", strings.Clone(e.traceID)),
		slog.String("endpoint", e.endpoint),
		slog.String("backend", e.backend),
		slog.String("variant", e.variant),
		slog.Int("status", e.status),
		slog.Int64("input_tokens", e.inputTokens),
		slog.Int64("output_tokens", e.outputTokens),
		slog.Int64("cached_input_tokens", e.cachedTokens),
		slog.Int64("cache_write_input_tokens", e.cacheWrites),
		slog.Float64("cost_usd", e.cost),
		estimatedAttr(e.estimated),
		tierAttr(e.serviceTier),
		searchesAttr(e.webSearches),
		audioAttr(e.audioMillis),
		queueAttr(e.queueMS),
		slog.Float64("ttft_ms", e.ttftMS),
		slog.Float64("latency_ms", e.latencyMS),
		slog.String("key", e.key),
		slog.String("client_ip", strings.Clone(e.clientIP)),
		slog.Int("attempts", e.attempts),
		slog.String("error", e.errKind),
		slog.String("cache", e.cache),
	)
}

// estimatedAttr is the access line's usage_estimated, true when the tokens are the
// gateway's estimate (streamedUsage, answeredUsage); otherwise the empty attribute.
func estimatedAttr(estimated bool) slog.Attr {
	if !estimated {
		return slog.Attr{}
	}
	return slog.Bool("usage_estimated", true)
}

// tierAttr is the access line's service_tier, copied as the request ID is; with no
// tier, the empty attribute, which slog's handlers leave out.
func tierAttr(tier string) slog.Attr {
	if tier == "" {
		return slog.Attr{}
	}
	return slog.String("service_tier", strings.Clone(tier))
}

// audioAttr is the access line's audio_seconds (an audio API answer's duration usage);
// without one, the empty attribute.
func audioAttr(ms int64) slog.Attr {
	if ms <= 0 {
		return slog.Attr{}
	}
	return slog.Float64("audio_seconds", float64(ms)/1e3)
}

// queueAttr is the access line's queue_ms (the attempts' wait in backends' queues at
// max_concurrency); without a wait, the empty attribute.
func queueAttr(ms float64) slog.Attr {
	if ms <= 0 {
		return slog.Attr{}
	}
	return slog.Float64("queue_ms", ms)
}

// searchesAttr is the access line's web_search_requests; with no search, the empty
// attribute, which slog's handlers leave out.
func searchesAttr(n int64) slog.Attr {
	if n <= 0 {
		return slog.Attr{}
	}
	return slog.Int64("web_search_requests", n)
}

// jsonLogHandler is slog's JSON handler with a direct encoder for the access log line.
// Both write whole lines through one locked writer, so lines never interleave. The
// access line is byte for byte what slog's JSON handler writes for the same attributes
// (a test holds the two together), at a fraction of the cost: no Record, no
// per-attribute dispatch, and floats without encoding/json.
type jsonLogHandler struct {
	slog.Handler
	// out is w behind a lock, or w itself when it is a lineQueue.
	out io.Writer
	// direct is false when the options change what slog writes (ReplaceAttr,
	// AddSource): the access line then goes through slog like any other.
	direct bool
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lineQueue is a log output (an io.Writer) that takes each Write whole, without
// waiting on its reader, and is safe for concurrent use: logq.Queue, which
// cmd/tollgate puts in front of the process's stderr so that a stalled log reader
// costs lines, not answers. It needs no lock of ours, counts the lines it drops
// (tollgate_log_lines_dropped_total), and writes its notice of them in the logger's
// format.
type lineQueue interface {
	Dropped() uint64
	SetNotice(func(b []byte, n uint64) []byte)
}

// NewJSONLogHandler returns the handler behind logging.format json. Its lines carry
// their time in UTC, whatever the process's time zone.
func NewJSONLogHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	out := w
	if _, ok := w.(lineQueue); !ok {
		out = &lockedWriter{w: w}
	}
	direct := opts == nil || (opts.ReplaceAttr == nil && !opts.AddSource)
	return &jsonLogHandler{Handler: slog.NewJSONHandler(out, opts), out: out, direct: direct}
}

// Handle writes r with its time in UTC.
func (h *jsonLogHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Time = r.Time.UTC()
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the UTC times; the access line of a logger with attributes goes
// through slog, which writes them.
func (h *jsonLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return utcHandler{h.Handler.WithAttrs(as)}
}

// WithGroup keeps the UTC times, as WithAttrs does.
func (h *jsonLogHandler) WithGroup(name string) slog.Handler {
	return utcHandler{h.Handler.WithGroup(name)}
}

// NewTextLogHandler returns the handler behind logging.format text: slog's text
// handler with its times in UTC.
func NewTextLogHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	return utcHandler{slog.NewTextHandler(w, opts)}
}

// utcHandler writes its records' times in UTC. slog's handlers write a record's time
// in its own location, time.Now's being the process's zone (TZ, /etc/localtime); log
// pipelines and README's examples expect RFC 3339 times ending in Z wherever the
// gateway runs.
type utcHandler struct{ slog.Handler }

func (h utcHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Time = r.Time.UTC()
	return h.Handler.Handle(ctx, r)
}

func (h utcHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return utcHandler{h.Handler.WithAttrs(as)}
}

func (h utcHandler) WithGroup(name string) slog.Handler {
	return utcHandler{h.Handler.WithGroup(name)}
}

// dropNotice is the line a lineQueue writes for n lines it dropped: a warning of the
// logger's format, or nothing at a level above warn.
func dropNotice(text bool, opts *slog.HandlerOptions) func(b []byte, n uint64) []byte {
	return func(b []byte, n uint64) []byte {
		buf := bytes.NewBuffer(b)
		var h slog.Handler = slog.NewJSONHandler(buf, opts)
		if text {
			h = slog.NewTextHandler(buf, opts)
		}
		slog.New(utcHandler{h}).Warn("log lines dropped: the log reader fell behind", "lines", n)
		return buf.Bytes()
	}
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (h *jsonLogHandler) writeAccess(now time.Time, e *accessEntry) {
	bp := lineBufs.Get().(*[]byte)
	b := appendAccessLine((*bp)[:0], now, e)
	_, _ = h.out.Write(b)
	if cap(b) <= 4096 {
		*bp = b
		lineBufs.Put(bp)
	}
}

func appendAccessLine(b []byte, now time.Time, e *accessEntry) []byte {
	b = append(b, `{"time":"`...)
	// In UTC, as every other log line (utcHandler): RFC 3339 with Z.
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","request_id":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.requestID)
	b = append(b, `,"trace_id":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.traceID)
	b = append(b, `,"endpoint":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.endpoint)
	b = append(b, `,"backend":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.backend)
	b = append(b, `,"variant":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.variant)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"input_tokens":`...)
	b = strconv.AppendInt(b, e.inputTokens, 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, e.outputTokens, 10)
	b = append(b, `,"cached_input_tokens":`...)
	b = strconv.AppendInt(b, e.cachedTokens, 10)
	b = append(b, `,"cache_write_input_tokens":`...)
	b = strconv.AppendInt(b, e.cacheWrites, 10)
	b = append(b, `,"cost_usd":`...)
	b = appendJSONFloat(b, e.cost)
	if e.estimated {
		// Only for a stream cut before its usage came, or a stream or an answer
		// that came without usage: its tokens and cost are the gateway's estimate
		// of what it streamed or answered.
		b = append(b, `,"usage_estimated":true`...)
	}
	if e.serviceTier != "" {
		// Only when the answer named the tier that served it.
		b = append(b, `,"service_tier":`...)
		b = jsonscan.AppendQuoteNoHTML(b, e.serviceTier)
	}
	if e.webSearches > 0 {
		// Only when the upstream ran searches for the answer (their price is in
		// cost_usd).
		b = append(b, `,"web_search_requests":`...)
		b = strconv.AppendInt(b, e.webSearches, 10)
	}
	if e.audioMillis > 0 {
		// Only when an audio API answer reported the audio's duration.
		b = append(b, `,"audio_seconds":`...)
		b = appendJSONFloat(b, float64(e.audioMillis)/1e3)
	}
	if e.queueMS > 0 {
		// Only when an attempt waited for a slot in a backend's queue.
		b = append(b, `,"queue_ms":`...)
		b = appendJSONFloat(b, e.queueMS)
	}
	b = append(b, `,"ttft_ms":`...)
	b = appendJSONFloat(b, e.ttftMS)
	b = append(b, `,"latency_ms":`...)
	b = appendJSONFloat(b, e.latencyMS)
	b = append(b, `,"key":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.key)
	b = append(b, `,"client_ip":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.clientIP)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.attempts), 10)
	b = append(b, `,"error":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.errKind)
	b = append(b, `,"cache":`...)
	b = jsonscan.AppendQuoteNoHTML(b, e.cache)
	return append(b, "}\n"...)
}

// appendJSONFloat writes f as encoding/json does (and so slog's JSON handler): plain
// decimals, exponent form below 1e-6 and from 1e21 on. NaN and infinities, which JSON
// cannot carry, are written as null.
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
