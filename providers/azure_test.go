package providers

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestAzureSend(t *testing.T) {
	cases := []struct {
		name    string
		base    string
		version string
		deploy  string
		kind    Kind
		body    string
		wantURI string
	}{
		{"chat", "", "", "", Chat, `{"model":"chat","messages":[]}`,
			"/openai/deployments/gpt-4o.prod/chat/completions?api-version=2024-10-21"},
		{"embeddings with a set version", "", "2025-01-01-preview", "", Embeddings, `{"model":"embed","input":"x"}`,
			"/openai/deployments/gpt-4o.prod/embeddings?api-version=2025-01-01-preview"},
		{"completions, base_url ending in /openai/", "/openai/", "", "", Completions, `{"model":"chat","prompt":"x"}`,
			"/openai/deployments/gpt-4o.prod/completions?api-version=2024-10-21"},
		// The path goes out as configured: escapes kept, never normalised.
		{"escaped deployment behind a path prefix", "/eu%2Fwest/./proxy", "", "gpt-4o_eu.1", Chat, `{"model":"chat","messages":[]}`,
			"/eu%2Fwest/./proxy/openai/deployments/gpt-4o_eu.1/chat/completions?api-version=2024-10-21"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				ctx.SetContentType("application/json")
				ctx.SetBodyString(`{"object":"list","usage":{"prompt_tokens":3,"total_tokens":3}}`)
			})
			deploy := c.deploy
			if deploy == "" {
				deploy = "gpt-4o.prod"
			}
			b := newTestBackend(t, Config{Provider: "azure", BaseURL: up.URL + c.base, Model: "gpt-4o",
				Deployment: deploy, APIVersion: c.version, APIKey: "azure-key"})
			call := &Call{Kind: c.kind, Body: []byte(c.body), Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1}, Header: clientHeader()}
			var out fasthttp.Response
			var res Result
			if err := b.Send(call, &out, &res); err != nil {
				t.Fatal(err)
			}
			uri, h, body, _ := up.last()
			if uri != c.wantURI {
				t.Errorf("URI %s, want %s", uri, c.wantURI)
			}
			if h["api-key"] != "azure-key" {
				t.Errorf("api-key header %q", h["api-key"])
			}
			if a, ok := h["authorization"]; ok {
				t.Errorf("Authorization %q sent to Azure", a)
			}
			if h["x-api-key"] != "" {
				t.Errorf("client's x-api-key forwarded")
			}
			if !bytes.HasPrefix(body, []byte(`{"model":"gpt-4o"`)) {
				t.Errorf("body %s", body)
			}
			if res.Usage.Input != 3 || out.StatusCode() != 200 {
				t.Errorf("usage %+v status %d", res.Usage, out.StatusCode())
			}
		})
	}
}

// An Azure answer passes through as OpenAI's does, errors included.
func TestAzureError(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(401)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}`)
	})
	b := newTestBackend(t, Config{Provider: "azure", BaseURL: up.URL, Model: "m", Deployment: "d", APIKey: "k"})
	var out fasthttp.Response
	var res Result
	call := &Call{Kind: Chat, Body: []byte(`{"model":"chat"}`), Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1}}
	err := b.Send(call, &out, &res)
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != 401 || out.StatusCode() != 401 {
		t.Fatalf("err = %v, status %d", err, out.StatusCode())
	}
}

// Answer header names reach the gateway as the upstream wrote them (vLLM writes
// lower case); Retry-After is found in any case.
func TestRetryAfterAnyCase(t *testing.T) {
	for _, name := range []string{"retry-after", "Retry-After", "RETRY-AFTER"} {
		t.Run(name, func(t *testing.T) {
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				ctx.Response.Header.DisableNormalizing()
				ctx.Response.Header.Set(name, "3")
				ctx.SetStatusCode(429)
				ctx.SetContentType("application/json")
				ctx.SetBodyString(`{"error":{"message":"slow down","type":"rate_limit"}}`)
			})
			b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL, Model: "m"})
			var out fasthttp.Response
			var res Result
			call := &Call{Kind: Chat, Body: []byte(`{"model":"chat"}`), Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1}}
			err := b.Send(call, &out, &res)
			var ue *UpstreamError
			if !errors.As(err, &ue) || ue.Status != 429 {
				t.Fatalf("err = %v", err)
			}
			if ue.RetryAfter != 3*time.Second {
				t.Errorf("retry after %v, want 3s", ue.RetryAfter)
			}
		})
	}
}

// Azure api-versions before 2024-09-01-preview refuse stream_options with a 400
// ("Unrecognized request argument supplied: stream_options"): a backend naming one gets
// no stream_options added to a stream whose client asked no usage (and streams without
// usage, as with stream_usage: false), unless stream_usage says otherwise.
func TestAzureStreamOptionsByAPIVersion(t *testing.T) {
	on, off := true, false
	cases := []struct {
		name    string
		version string
		usage   *bool
		want    bool
	}{
		{"default version", "", nil, true},
		{"GA version before stream_options", "2023-05-15", nil, false},
		{"last preview before stream_options", "2024-08-01-preview", nil, false},
		{"first preview with stream_options", "2024-09-01-preview", nil, true},
		{"later GA version", "2024-10-21", nil, true},
		{"old version, stream_usage on", "2023-05-15", &on, true},
		{"new version, stream_usage off", "2024-10-21", &off, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				ctx.SetContentType("text/event-stream")
				ctx.SetBodyString("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n")
			})
			b := newTestBackend(t, Config{Provider: "azure", BaseURL: up.URL, Model: "gpt-35-turbo",
				Deployment: "gpt35", APIVersion: c.version, APIKey: "azure-key", StreamUsage: c.usage})
			call := chatCall(`{"model":"chat","messages":[{"role":"user","content":"Hi"}],"stream":true}`, true)
			var out fasthttp.Response
			var res Result
			if err := b.Send(call, &out, &res); err != nil {
				t.Fatal(err)
			}
			if res.Stream != nil {
				_ = res.Stream.Close()
			}
			_, _, sent, _ := up.last()
			if got := bytes.Contains(sent, []byte(`"stream_options":{"include_usage":true}`)); got != c.want {
				t.Errorf("stream_options sent %v, want %v: %s", got, c.want, sent)
			}
		})
	}
}

// A Retry-After of seconds too many for a Duration is a long wait, not a negative one
// (which would retry at once an upstream that asked to be left alone).
func TestRetryAfterBounded(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"3", 3 * time.Second}, {"0.5", 500 * time.Millisecond}, {"", 0}, {"-1", 0}, {"NaN", 0},
		{"inf", maxRetryAfter}, {"1e30", maxRetryAfter}, {"9223372037", maxRetryAfter},
	} {
		if got := retryAfter([]byte(tc.v)); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.v, got, tc.want)
		}
	}
}

// throttledError sends one chat call to a backend of cfg whose upstream answers 429 with
// hdrs, and returns its UpstreamError. cfg.BaseURL is a path under the upstream's URL.
func throttledError(t *testing.T, cfg Config, hdrs map[string]string) *UpstreamError {
	t.Helper()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		for k, v := range hdrs {
			ctx.Response.Header.Set(k, v)
		}
		ctx.SetStatusCode(429)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded call rate limit."}}`)
	})
	cfg.BaseURL = up.URL + cfg.BaseURL
	b := newTestBackend(t, cfg)
	var out fasthttp.Response
	var res Result
	err := b.Send(chatCall(chatBody, false), &out, &res)
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != 429 {
		t.Fatalf("err = %v, want an upstream 429", err)
	}
	return ue
}

// Azure OpenAI throttles with 429 and says how long to wait in retry-after-ms, at times
// with no Retry-After; the OpenAI SDKs read it before Retry-After, and so does the
// gateway, so that it neither retries a throttled deployment at once nor leaves the
// client without a Retry-After.
func TestRetryAfterMsReadFirst(t *testing.T) {
	azure := Config{Provider: "azure", Model: "gpt-4o", Deployment: "gpt-4o", APIKey: "k"}
	for _, tc := range []struct {
		name string
		cfg  Config
		hdrs map[string]string
		want time.Duration
	}{
		{"azure retry-after-ms alone", azure, map[string]string{"retry-after-ms": "2500"}, 2500 * time.Millisecond},
		{"retry-after-ms before Retry-After", azure, map[string]string{"retry-after-ms": "2500", "Retry-After": "3"}, 2500 * time.Millisecond},
		{"fractional milliseconds", azure, map[string]string{"retry-after-ms": "0.5"}, 500 * time.Microsecond},
		{"invalid retry-after-ms leaves Retry-After", azure, map[string]string{"retry-after-ms": "soon", "Retry-After": "3"}, 3 * time.Second},
		{"negative retry-after-ms leaves Retry-After", azure, map[string]string{"retry-after-ms": "-1", "Retry-After": "3"}, 3 * time.Second},
		{"retry-after-ms bounded", azure, map[string]string{"retry-after-ms": "1e30"}, maxRetryAfter},
		{"openai", Config{Provider: "openai", BaseURL: "/v1", Model: "m"}, map[string]string{"retry-after-ms": "1200"}, 1200 * time.Millisecond},
		{"anthropic", Config{Provider: "anthropic", BaseURL: "/v1", Model: "claude-x", APIKey: "k"}, map[string]string{"retry-after-ms": "1200"}, 1200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ue := throttledError(t, tc.cfg, tc.hdrs); ue.RetryAfter != tc.want {
				t.Fatalf("RetryAfter %v, want %v", ue.RetryAfter, tc.want)
			}
		})
	}
}

// RFC 9110 §5.6.7: a recipient of an HTTP-date must accept all three of its forms, the
// obsolete RFC 850 and asctime ones included.
func TestRetryAfterDateForms(t *testing.T) {
	at := time.Now().Add(4 * time.Second).UTC()
	for _, tc := range []struct{ name, v string }{
		{"IMF-fixdate", at.Format(http.TimeFormat)},
		{"RFC 850", strings.Replace(at.Format(time.RFC850), "UTC", "GMT", 1)},
		{"asctime", at.Format(time.ANSIC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter([]byte(tc.v)); got < 2*time.Second || got > 5*time.Second {
				t.Fatalf("Retry-After %q: %v, want about 3-4s", tc.v, got)
			}
		})
	}
}

// Azure's content-filter 400 (with innererror) reaches the client as it came and says
// nothing against the target's health.
func TestAzureContentFilterPassedOn(t *testing.T) {
	const cf = `{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}`
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(400)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(cf)
	})
	b := newTestBackend(t, Config{Provider: "azure", BaseURL: up.URL, Model: "gpt-4o", Deployment: "d", APIKey: "k"})
	var out fasthttp.Response
	var res Result
	err := b.Send(chatCall(chatBody, false), &out, &res)
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != 400 || ue.Retryable() {
		t.Fatalf("err = %v; want a non-retryable upstream 400", err)
	}
	if judged, failed := Judge(err); !judged || failed {
		t.Fatalf("Judge = %v,%v; want a judged, non-failed answer", judged, failed)
	}
	if out.StatusCode() != 400 || string(out.Body()) != cf || !strings.HasPrefix(string(out.Header.ContentType()), "application/json") {
		t.Fatalf("%d %s; want Azure's body untouched", out.StatusCode(), out.Body())
	}
}
