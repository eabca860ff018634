package tracing

import (
	"bytes"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// The OTLP endpoint may carry a collector's password as its user information, and a
// base64 password holds '/' and '+'. Written unencoded, a '/' (or a '?' or '#') makes
// the URL one Go cannot parse, and OpenTelemetry's envconfig warns with
// global.Error(err, "parse url", "input", v): the error and the input both quote the
// value, the error the password's part before that character again (`invalid port
// ":part" after host`).

// endpointsWithPassword are endpoints Go cannot parse for the password's unencoded
// '/', '?' or '#'.
func endpointsWithPassword(password string) []string {
	var out []string
	for _, sep := range []string{"/", "?", "#"} {
		out = append(out, "https://tollgate:"+strings.ReplaceAll(password, "/", sep)+"@collector.example:4318")
	}
	return out
}

// Even unlearnt, such a password is masked past its '/': the URL's user information
// runs to its last '@' when what follows the first '@' is no host Go reads.
func TestDiagnosticsEndpointPasswordWithSlashMasked(t *testing.T) {
	const password = "s3cr3t/Pa55w0rd+x"
	for _, v := range endpointsWithPassword(password) {
		var buf bytes.Buffer
		d, _ := testDiagnostics(&buf, slog.LevelInfo)
		d.learn(newRedactor(Config{}, func(string) string { return "" }))
		_, err := url.Parse(v)
		if err == nil {
			t.Fatalf("%s parsed", v)
		}
		// What envconfig's WithURL does with OTEL_EXPORTER_OTLP_ENDPOINT it cannot parse.
		diagSink{d: d}.Error(err, "parse url", "input", v)
		secret := v[len("https://tollgate:"):strings.LastIndexByte(v, '@')]
		if out := buf.String(); out == "" || strings.Contains(out, secret) || strings.Contains(out, secret[6:]) {
			t.Errorf("the endpoint's password %q is in the log:\n%s", secret, out)
		}
	}
}

// The endpoint's password, learnt from the variable or the config, is masked whole
// and in every part, the part Go's error quotes included, the collector's host left
// to read.
func TestDiagnosticsEndpointPasswordLearntMaskedWhole(t *testing.T) {
	const password = "s3cr3t/Pa55w0rd+x"
	for _, src := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "tracing.endpoint"} {
		for _, v := range endpointsWithPassword(password) {
			t.Run(src+" "+v[len("https://tollgate:s3cr3t"):][:1], func(t *testing.T) {
				var cfg Config
				if src == "tracing.endpoint" {
					cfg.Endpoint = v
				}
				var buf bytes.Buffer
				d, _ := testDiagnostics(&buf, slog.LevelInfo)
				d.learn(newRedactor(cfg, func(k string) string {
					if k == src {
						return v
					}
					return ""
				}))
				_, err := url.Parse(v)
				diagSink{d: d}.Error(err, "parse url", "input", v)
				out := buf.String()
				for _, part := range []string{"s3cr3t", "Pa55w0rd+x"} {
					if strings.Contains(out, part) {
						t.Errorf("%q of the password is in the log:\n%s", part, out)
					}
				}
				if !strings.Contains(out, "collector.example:4318") {
					t.Errorf("the collector's host is masked:\n%s", out)
				}
			})
		}
	}
}

func TestRedactorEndpointUserinfo(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "https://otel:enc%2Fpa55%2Bword@collector:4318",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "  grpc://tok3n-only@collector:4317  ",
	}
	r := newRedactor(Config{Endpoint: "https://cfg-user:cfg-pa55@collector:4318/v1/traces"}, func(k string) string { return env[k] })
	for _, c := range []struct{ name, in, want string }{
		{"user and password, encoded", "userinfo otel:enc%2Fpa55%2Bword", "userinfo REDACTED"},
		{"password, decoded", "password enc/pa55+word", "password REDACTED"},
		{"a part under 4 characters is no secret", `invalid port ":enc" after host`, `invalid port ":enc" after host`},
		{"password's part after its slash, decoded", "tail pa55+word", "tail REDACTED"},
		{"user alone is a token", "token tok3n-only", "token REDACTED"},
		{"config endpoint's password", "pass cfg-pa55", "pass REDACTED"},
		{"user name is no secret", "user otel, user cfg-user", "user otel, user cfg-user"},
		{"host is no secret", "dial collector:4318", "dial collector:4318"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := r.clean(c.in); got != c.want {
				t.Errorf("clean(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}
