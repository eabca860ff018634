package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
)

// OpenTelemetry reports its own problems through two process-wide channels: otel.Handle
// (the global ErrorHandler: a span processor's failed export or shutdown, a resource
// detector's error, such as a malformed OTEL_RESOURCE_ATTRIBUTES) and its internal logr
// logger (a malformed OTEL_EXPORTER_OTLP_* variable, spans over their limits). Left as
// they are, both write with the log package straight to the process's stderr: lines
// that are not JSON in the middle of the gateway's log, written around the log queue,
// so that a stalled log reader blocks whichever goroutine reports (the batch
// processor's among them), and lines that quote OTEL_EXPORTER_OTLP_HEADERS entries,
// collector keys included. New routes both into the gateway's logger, rate-limited,
// with the exporter's secrets masked.

const (
	// diagInterval spaces the lines of one kind of diagnostic. An error reported per
	// batch (every 5 s by default, or per full batch of 512 spans) logs at most once in
	// it; the next line of the kind says how many were left out.
	diagInterval = 10 * time.Second
	// diagKinds bounds the kinds whose last line is remembered; past it, new kinds
	// share one limit.
	diagKinds = 64
	// diagOverflow is the kind every new kind counts as while diagKinds are remembered.
	diagOverflow = ""
)

// diagnostics is OpenTelemetry's error handler (otel.SetErrorHandler) and the sink of its
// internal logger (otel.SetLogger), writing both as warnings of one slog logger.
type diagnostics struct {
	logger *slog.Logger
	now    func() time.Time
	// redact masks the exporter secrets of every Tracing built on logger: a Tracing
	// retired by a reload may still report with the values of its own config.
	redact atomic.Pointer[redactor]

	mu    sync.Mutex
	kinds map[string]*diagKind
}

// diagKind is the rate limit of one kind of diagnostic.
type diagKind struct {
	last       time.Time
	suppressed int
}

func newDiagnostics(logger *slog.Logger, now func() time.Time) *diagnostics {
	d := &diagnostics{logger: logger, now: now, kinds: make(map[string]*diagKind)}
	d.redact.Store(&redactor{})
	return d
}

// routeDiagnostics makes logger receive OpenTelemetry's diagnostics, with r's secrets
// masked. A handler already installed for logger is kept, so that its rate limits
// outlast a reload, and learns r's secrets.
func routeDiagnostics(logger *slog.Logger, r *redactor) {
	d, ok := otel.GetErrorHandler().(*diagnostics)
	if !ok || d.logger != logger {
		d = newDiagnostics(logger, time.Now)
		otel.SetErrorHandler(d)
		otel.SetLogger(logr.New(diagSink{d: d}))
	}
	d.learn(r)
}

// learn adds r's secrets to those masked.
func (d *diagnostics) learn(r *redactor) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.redact.Store(d.redact.Load().merge(r))
}

// Handle implements otel.ErrorHandler: err is logged as a warning, at most once per
// diagInterval for errors of its kind.
func (d *diagnostics) Handle(err error) {
	if err == nil {
		return
	}
	text := d.redact.Load().clean(err.Error())
	logged, suppressed := d.allow("error " + errKind(text))
	if !logged {
		return
	}
	attrs := []slog.Attr{slog.String("error", text)}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	d.logger.LogAttrs(context.Background(), slog.LevelWarn, "tracing: opentelemetry error", attrs...)
}

// errKind is what tells errors apart for the rate limit: the text up to its first colon,
// where OpenTelemetry's errors name what failed ("traces export", "partial resource")
// before the detail that varies from one to the next.
func errKind(text string) string {
	if i := strings.IndexAny(text, ":\n"); i >= 0 {
		text = text[:i]
	}
	if len(text) > 64 {
		text = text[:64]
	}
	return text
}

// allow reports whether a diagnostic of kind may be logged now and, when it may, how
// many of its kind were left out since its last line.
func (d *diagnostics) allow(kind string) (bool, int) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	k, ok := d.kinds[kind]
	if !ok && len(d.kinds) >= diagKinds {
		for name, o := range d.kinds {
			if now.Sub(o.last) >= diagInterval {
				delete(d.kinds, name)
			}
		}
		if len(d.kinds) >= diagKinds {
			kind = diagOverflow
			k, ok = d.kinds[kind]
		}
	}
	if !ok {
		d.kinds[kind] = &diagKind{last: now}
		return true, 0
	}
	if now.Sub(k.last) < diagInterval {
		k.suppressed++
		return false, 0
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	return true, n
}

// logSDK writes one line of OpenTelemetry's internal logger: msg, err and the key-value
// pairs, their text masked. The lines about headers (a malformed
// OTEL_EXPORTER_OTLP_HEADERS entry) quote the entry, which holds a collector key
// whether or not it parsed: they keep the message and error only, without what the
// error quotes.
func (d *diagnostics) logSDK(name, msg string, err error, kvs ...[]any) {
	logged, suppressed := d.allow("log " + msg)
	if !logged {
		return
	}
	r := d.redact.Load()
	header := strings.Contains(strings.ToLower(msg), "header")
	attrs := make([]slog.Attr, 0, 4)
	if name != "" {
		attrs = append(attrs, slog.String("logger", name))
	}
	if err != nil {
		text := r.clean(err.Error())
		if header {
			text = withholdQuoted(text)
		}
		attrs = append(attrs, slog.String("error", text))
	}
	if !header {
		for _, kv := range kvs {
			for i := 0; i < len(kv); i += 2 {
				var v any
				if i+1 < len(kv) {
					v = kv[i+1]
				}
				attrs = append(attrs, slog.String(r.clean(fmt.Sprint(kv[i])), r.clean(fmt.Sprint(v))))
			}
		}
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	d.logger.LogAttrs(context.Background(), slog.LevelWarn, "tracing: opentelemetry: "+msg, attrs...)
}

// diagSink is the logr.LogSink behind OpenTelemetry's internal logger. OpenTelemetry
// logs errors with Error, warnings at V(1), what it calls info at V(4) (a tracer
// provider created, with its whole configuration; an environment variable it could not
// read as a number) and debug at V(8). The sink writes errors and warnings, both as the
// gateway's warnings (the gateway goes on serving; its traces are what suffers), and
// leaves out the rest. logr.FromSlogHandler would map V(1) to slog level -1, below
// info, and so drop OpenTelemetry's warnings at the default level.
type diagSink struct {
	d      *diagnostics
	name   string
	values []any
}

func (s diagSink) Init(logr.RuntimeInfo) {}

func (s diagSink) Enabled(level int) bool {
	return level <= 1 && s.d.logger.Enabled(context.Background(), slog.LevelWarn)
}

func (s diagSink) Info(level int, msg string, kv ...any) {
	if level <= 1 {
		s.d.logSDK(s.name, msg, nil, s.values, kv)
	}
}

func (s diagSink) Error(err error, msg string, kv ...any) {
	s.d.logSDK(s.name, msg, err, s.values, kv)
}

func (s diagSink) WithValues(kv ...any) logr.LogSink {
	s.values = append(slices.Clip(s.values), kv...)
	return s
}

func (s diagSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		s.name += "/"
	}
	s.name += name
	return s
}

// redacted replaces a secret in logged text, as url.query does in spans.
const redacted = "REDACTED"

// minSecretLen is the shortest header value masked: shorter ones (a flag such as
// "1" or "on") are no credential, and masking them would garble every line that
// contains those characters.
const minSecretLen = 4

// redactor masks the exporter's secrets in text the gateway logs: the values of the
// headers it sends to the collector (tracing.headers, and OTEL_EXPORTER_OTLP_HEADERS
// and OTEL_EXPORTER_OTLP_TRACES_HEADERS, which the OTLP exporters add), the user
// information of its endpoint (tracing.endpoint, OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and that of any URL (the exporters' own errors
// name the collector by host only).
type redactor struct {
	// secrets are longest first, so that a secret inside another is masked with it.
	secrets []string
}

// maxSecrets bounds the secrets a diagnostics remembers over reloads.
const maxSecrets = 256

// newRedactor returns the redactor of cfg's headers and endpoint and those getenv
// gives.
func newRedactor(cfg Config, getenv func(string) string) *redactor {
	r := &redactor{}
	for _, v := range cfg.Headers {
		r.addValue(v)
	}
	r.addEndpoint(cfg.Endpoint)
	r.addEndpoint(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	r.addEndpoint(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		// The exporters read "key=value,key=value" with values percent-encoded; an entry
		// they cannot read is masked whole, as it may be nothing but a key.
		for _, entry := range strings.Split(getenv(name), ",") {
			_, v, found := strings.Cut(entry, "=")
			if !found {
				r.add(strings.TrimSpace(entry))
				continue
			}
			r.addValue(v)
			if u, err := url.PathUnescape(v); err == nil {
				r.addValue(u)
			}
		}
	}
	r.sort()
	return r
}

// addValue adds a header value, and the credential of a "Scheme credential" value
// alone, as an error may quote it without its scheme.
func (r *redactor) addValue(v string) {
	v = strings.TrimSpace(v)
	r.add(v)
	if i := strings.LastIndexAny(v, " \t"); i >= 0 {
		r.add(strings.TrimSpace(v[i+1:]))
	}
}

// addEndpoint adds the user information of an endpoint URL, what lies between "://"
// and its last '@' (an '@' in an endpoint's path is not worth the risk of reading a
// password as one): whole, its password alone, and the password's parts before and
// after its first '/', '?' or '#', each raw and percent-decoded. A password written
// with one of those unencoded (a base64 password holds '/') makes the URL one Go
// cannot parse, and OpenTelemetry warns quoting the value and Go's error, which
// quotes the password's part before that character on its own (`invalid port
// ":part" after host`), where no URL shows withoutUserinfo that it is one.
func (r *redactor) addEndpoint(v string) {
	v = strings.TrimSpace(v)
	if _, rest, ok := strings.Cut(v, "://"); ok {
		v = rest
	}
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		return
	}
	userinfo := v[:at]
	decoded, err := url.PathUnescape(userinfo)
	if err != nil {
		decoded = ""
	}
	for _, u := range []string{userinfo, decoded} {
		r.add(u)
		_, password, ok := strings.Cut(u, ":")
		if !ok {
			continue
		}
		r.add(password)
		if i := strings.IndexAny(password, "/?#"); i >= 0 {
			r.add(password[:i])
			r.add(password[i+1:])
		}
	}
}

func (r *redactor) add(s string) {
	if len(s) >= minSecretLen && !slices.Contains(r.secrets, s) {
		r.secrets = append(r.secrets, s)
	}
}

func (r *redactor) sort() {
	slices.SortStableFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// merge returns a redactor of r's secrets and o's, o's kept first when there are more
// than maxSecrets.
func (r *redactor) merge(o *redactor) *redactor {
	m := &redactor{secrets: slices.Clone(o.secrets)}
	for _, s := range r.secrets {
		if len(m.secrets) == maxSecrets {
			break
		}
		m.add(s)
	}
	m.sort()
	return m
}

// clean returns s with every secret and URL user information replaced by REDACTED.
func (r *redactor) clean(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, redacted)
	}
	return withoutUserinfo(s)
}

// withoutUserinfo replaces the user information of every URL in s
// ("https://user:pass@host/") with REDACTED. The authority ends at the first '/', '?'
// or '#'; when what follows its last '@' is no host[:port] Go's url.Parse reads (a
// password holding an unencoded '/', the value OpenTelemetry warns about, such as
// "https://user:abc/def@host" read as host "user:abc"), the user information runs to
// the URL's last '@' before a space or a quote.
func withoutUserinfo(s string) string {
	for from := 0; ; {
		i := strings.Index(s[from:], "://")
		if i < 0 {
			return s
		}
		start := from + i + len("://")
		end := start + strings.IndexAny(s[start:], "\"'` \t\r\n")
		if end < start {
			end = len(s)
		}
		authority := s[start:end]
		if j := strings.IndexAny(authority, "/?#"); j >= 0 {
			authority = authority[:j]
		}
		at := strings.LastIndexByte(authority, '@')
		if !readsAsHost(authority[at+1:]) {
			at = max(at, strings.LastIndexByte(s[start:end], '@'))
		}
		if at >= 0 {
			s = s[:start] + redacted + s[start+at:]
		}
		from = start
	}
}

// readsAsHost reports whether h is a host with an optional port as url.Parse reads it:
// digits only after the last ':' that follows a bracketed IPv6 address, if any.
func readsAsHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		i := strings.LastIndexByte(h, ']')
		if i < 0 {
			return false
		}
		if h = h[i+1:]; h != "" && h[0] != ':' {
			return false
		}
	}
	i := strings.LastIndexByte(h, ':')
	if i < 0 {
		return true
	}
	return strings.Trim(h[i+1:], "0123456789") == ""
}

// withholdQuoted replaces what s quotes ("...") with an ellipsis.
func withholdQuoted(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		b.WriteString(s[:i])
		b.WriteString(`"…"`)
		if j >= len(s) {
			return b.String()
		}
		s = s[j+1:]
	}
}
