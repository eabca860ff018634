package tracing

import (
	"errors"
	"math"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/headerconf"
)

// Exporters accepted in tracing.exporter.
const (
	ExporterNone     = "none"
	ExporterStdout   = "stdout"
	ExporterOTLPGRPC = "otlp-grpc"
	ExporterOTLPHTTP = "otlp-http"
)

// Defaults of the optional keys.
const (
	DefaultServiceName      = "tollgate"
	DefaultSampleRatio      = 1.0
	DefaultMaxPendingTraces = 8192
)

// Config is the `tracing:` section of the gateway's YAML.
type Config struct {
	// Exporter is none (the default), stdout (pretty JSON, for debugging),
	// otlp-grpc or otlp-http.
	Exporter string `yaml:"exporter"`
	// Endpoint is the collector's host:port, or a URL whose scheme picks
	// TLS. Empty means the OTLP exporters' own default, which honours
	// OTEL_EXPORTER_OTLP_ENDPOINT and otherwise is localhost:4317 (gRPC) or
	// localhost:4318 (HTTP). An otlp-http URL without a path gets /v1/traces.
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with every export, e.g. a collector's API key.
	Headers map[string]string `yaml:"headers"`
	// Insecure disables TLS for a host:port endpoint.
	Insecure bool `yaml:"insecure"`
	// SampleRatio is the share of traces kept by trace ID, 0..1 (default 1).
	// A sampled parent from the client is always honoured.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// KeepErrors keeps every trace with a span in error status (default true).
	KeepErrors *bool `yaml:"keep_errors"`
	// KeepSlowerThan keeps every trace whose root span lasted at least this
	// long; 0 disables the rule.
	KeepSlowerThan time.Duration `yaml:"keep_slower_than"`
	// CaptureContent adds prompts and completions as span events. Off by
	// default: they are user data.
	CaptureContent bool `yaml:"capture_content"`
	// ServiceName is the service.name resource attribute (default tollgate).
	ServiceName string `yaml:"service_name"`
	// MaxPendingTraces bounds the requests whose spans are held in memory
	// while their root span runs (default 8192); beyond it the oldest is
	// dropped. Requests that share a client's trace ID count one each.
	MaxPendingTraces int `yaml:"max_pending_traces"`
}

func (c Config) exporter() string {
	if c.Exporter == "" {
		return ExporterNone
	}
	return c.Exporter
}

func (c Config) sampleRatio() float64 {
	if c.SampleRatio == nil {
		return DefaultSampleRatio
	}
	return *c.SampleRatio
}

func (c Config) keepErrors() bool { return c.KeepErrors == nil || *c.KeepErrors }

// serviceName is the name the config gives, or DefaultServiceName; the resource
// lets OTEL_SERVICE_NAME override the default only.
func (c Config) serviceName() string {
	if c.ServiceName == "" {
		return DefaultServiceName
	}
	return c.ServiceName
}

func (c Config) maxPendingTraces() int {
	if c.MaxPendingTraces <= 0 {
		return DefaultMaxPendingTraces
	}
	return c.MaxPendingTraces
}

// maxPendingTracesLimit keeps a typo from reserving gigabytes: a pending
// trace holds a few spans of about a kilobyte each.
const maxPendingTracesLimit = 1 << 20

// Validate reports every invalid key as a *FieldError, joined.
func (c Config) Validate() error {
	var errs []error
	add := func(key, problem string) { errs = append(errs, &FieldError{key: key, problem: problem}) }

	switch c.exporter() {
	case ExporterNone, ExporterStdout:
		// Collector settings without an OTLP exporter would be silently unused:
		// an endpoint given with no exporter means tracing was meant to be on.
		why := "applies only to exporter otlp-grpc or otlp-http (exporter is " + c.exporter() + ")"
		if c.Endpoint != "" {
			add("endpoint", why)
		}
		if len(c.Headers) > 0 {
			add("headers", why)
		}
		if c.Insecure {
			add("insecure", why)
		}
	case ExporterOTLPGRPC, ExporterOTLPHTTP:
		if c.Endpoint != "" {
			if u, isURL, err := parseEndpoint(c.Endpoint); err != nil {
				add("endpoint", err.Error())
			} else if isURL && u.Scheme == "https" && c.Insecure {
				add("insecure", "conflicts with the https endpoint; use an http:// URL for plaintext")
			}
		}
	default:
		add("exporter", "must be one of none, stdout, otlp-grpc, otlp-http")
	}
	keys := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		same := slices.IndexFunc(keys[:i], func(n string) bool { return strings.EqualFold(n, k) })
		switch p := headerconf.Unquoted(k, c.Headers[k]); {
		case p != "":
			// Said of headers at the entry's line, without its name: a collector's API
			// key pasted as a name with nothing after it ({key} or {key:}) reads so, and
			// sent as a name it would authenticate nothing.
			errs = append(errs, &FieldError{key: "headers", at: "headers." + k, problem: p})
		case same >= 0:
			// One header (gRPC metadata keys are lower case): which value went out
			// would change with map order.
			add("headers."+k, "is the same header as "+keys[same]+" (header names ignore case)")
		case strings.ContainsAny(c.Headers[k], "\r\n\x00"):
			add("headers."+k, "must not contain line breaks or NUL")
		case c.Exporter == ExporterOTLPGRPC:
			// gRPC refuses such metadata in the process, on every export: no span
			// would ever reach the collector.
			if p := grpcMetadataProblem(k, c.Headers[k]); p != "" {
				add("headers."+k, p)
			}
		}
	}
	if r := c.SampleRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		add("sample_ratio", "must be between 0 and 1")
	}
	if c.KeepSlowerThan < 0 {
		add("keep_slower_than", "must not be negative")
	}
	if c.MaxPendingTraces < 0 || c.MaxPendingTraces > maxPendingTracesLimit {
		add("max_pending_traces", "must be between 0 (default) and 1048576")
	}
	if strings.ContainsAny(c.ServiceName, "\r\n\x00") {
		add("service_name", "must not contain line breaks or NUL")
	}
	return errors.Join(errs...)
}

// parseEndpoint accepts host:port or an http(s) URL with a host.
func parseEndpoint(s string) (u *url.URL, isURL bool, err error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, true, errors.New("must be host:port or an http:// or https:// URL")
		}
		if u.User != nil {
			return nil, true, errors.New("must not carry credentials; use headers")
		}
		if !validHost(u.Hostname()) || (u.Port() != "" && !validPort(u.Port())) {
			return nil, true, errHostPort
		}
		return u, true, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" {
		return nil, false, errors.New("must be host:port or an http:// or https:// URL")
	}
	if !validHost(host) || !validPort(port) {
		return nil, false, errHostPort
	}
	return nil, false, nil
}

var errHostPort = errors.New("has no valid host and port (a DNS name or IP address, a port 1-65535)")

// validHost accepts an IP address or a DNS name (letters, digits, '-', '.',
// and '_' as container names use): what the exporters' dialers can resolve,
// so that a name gRPC cannot parse as a target fails validation instead of
// the start or reload that builds the exporter.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '+'
}

// grpcMetadataProblem says what gRPC would refuse in a header sent as metadata: a key
// of other than letters, digits, '-', '_' and '.', or one starting "grpc-" (reserved),
// and a value of other than printable ASCII unless its key ends "-bin".
func grpcMetadataProblem(k, v string) string {
	lk := strings.ToLower(k)
	if strings.HasPrefix(lk, "grpc-") {
		return "is reserved by gRPC (otlp-grpc)"
	}
	for i := 0; i < len(lk); i++ {
		c := lk[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "is not a valid gRPC metadata key (otlp-grpc: letters, digits, '-', '_' and '.' only)"
		}
	}
	if strings.HasSuffix(lk, "-bin") {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "must be printable ASCII for otlp-grpc (or the key must end in -bin)"
		}
	}
	return ""
}

// FieldError is one invalid configuration key.
type FieldError struct {
	key, problem string
	// at is the key whose line the problem is at, when that is not key: a headers
	// entry the message must not name.
	at string
}

// Key returns the dotted path of the key relative to Config, e.g. "sample_ratio".
func (e *FieldError) Key() string { return e.key }

// At is the dotted path of the key whose line the problem is at: Key, or a headers
// entry that Key leaves unnamed.
func (e *FieldError) At() string {
	if e.at != "" {
		return e.at
	}
	return e.key
}

// Problem says what is wrong with the key's value.
func (e *FieldError) Problem() string { return e.problem }

// Error returns key + ": " + problem.
func (e *FieldError) Error() string { return e.key + ": " + e.problem }
