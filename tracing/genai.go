package tracing

import (
	"bytes"
	"errors"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	// The Go semconv packages from v1.42.0 on no longer generate the gen_ai
	// namespace; v1.41.0 is the newest that carries the GenAI names.
	genai "go.opentelemetry.io/otel/semconv/v1.41.0"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// Attribute keys with no semantic convention: Tollgate's own, and
// gen_ai.system, which the GenAI conventions replaced with
// gen_ai.provider.name but which trace viewers from before that still read.
const (
	KeyEndpoint   = attribute.Key("tollgate.endpoint")
	KeyBackend    = attribute.Key("tollgate.backend")
	KeyTarget     = attribute.Key("tollgate.target")
	KeyVariant    = attribute.Key("tollgate.variant")
	KeyWeight     = attribute.Key("tollgate.route.weight")
	KeyStickyHash = attribute.Key("tollgate.sticky.hash")
	KeyAttempt    = attribute.Key("tollgate.attempt")
	KeyOutcome    = attribute.Key("tollgate.outcome")
	KeyLimitStore = attribute.Key("tollgate.limit.store")
	KeyLimitName  = attribute.Key("tollgate.limit.name")
	KeyRequestID  = attribute.Key("tollgate.request_id")
	KeyClient     = attribute.Key("tollgate.client")
	KeyGenAISys   = attribute.Key("gen_ai.system")
	// KeyWebSearches counts the web searches the upstream ran for an answer
	// (Anthropic's usage.server_tool_use.web_search_requests), which the GenAI
	// conventions have no name for.
	KeyWebSearches = attribute.Key("tollgate.web_search.requests")
	// KeyUsageEstimated marks gen_ai.usage.* as the gateway's estimate of a stream
	// cut before the upstream gave its usage, not the upstream's count.
	KeyUsageEstimated = attribute.Key("tollgate.usage.estimated")
	// KeyCache says what an endpoint's answer cache did for the request: hit,
	// miss or bypass; left out on an endpoint without one.
	KeyCache = attribute.Key("tollgate.cache")
	// KeyPrompt and KeyCompletion carry captured content on the
	// EventPrompt and EventCompletion events.
	KeyPrompt     = attribute.Key("gen_ai.prompt")
	KeyCompletion = attribute.Key("gen_ai.completion")
)

// Event names.
const (
	// EventFirstToken marks the first generated token of a stream, at the
	// instant it arrived; it carries gen_ai.response.time_to_first_chunk,
	// in seconds since the upstream attempt was sent.
	EventFirstToken = "gen_ai.first_token"
	// EventPrompt and EventCompletion carry the content when
	// capture_content is on.
	EventPrompt     = "gen_ai.content.prompt"
	EventCompletion = "gen_ai.content.completion"
)

// maxCapturedContent bounds a captured prompt or completion so that one
// long conversation cannot make a span too large for the collector.
const maxCapturedContent = 16 << 10

// Spec is a span's name, kind and static attributes, built with the config so
// that starting a span builds nothing per request.
type Spec struct {
	name string
	opts []trace.SpanStartOption
}

// NewSpec builds a Spec. attrs are copied.
func NewSpec(name string, kind trace.SpanKind, attrs ...attribute.KeyValue) *Spec {
	a := make([]attribute.KeyValue, len(attrs))
	copy(a, attrs)
	return &Spec{name: name, opts: []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(a...)}}
}

// Name returns the span name.
func (s *Spec) Name() string { return s.name }

// Specs of the gateway's internal steps, children of the server span.
var (
	SpecAuth  = NewSpec("tollgate.auth", trace.SpanKindInternal)
	SpecLimit = NewSpec("tollgate.ratelimit", trace.SpanKindInternal)
	SpecRoute = NewSpec("tollgate.route", trace.SpanKindInternal)
)

// ServerSpec is the server span of one route, named "{method} {route}" as the
// HTTP conventions ask (route is the template, e.g.
// "/endpoints/{name}/invocations", never the raw path). An empty route (a path
// the gateway has no route for) names the span by its method alone, and a
// method the conventions do not know is recorded as _OTHER, in a span named
// "HTTP": SetServerRequest records the method as sent.
func ServerSpec(method, route string) *Spec {
	name := method
	if !KnownMethod(method) {
		method, name = semconv.HTTPRequestMethodOther.Value.AsString(), "HTTP"
	}
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(method)}
	if route != "" {
		name += " " + route
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	return NewSpec(name, trace.SpanKindServer, attrs...)
}

// KnownMethods are the HTTP methods the HTTP conventions name
// (http.request.method); any other is _OTHER.
var KnownMethods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "QUERY"}

// KnownMethod reports whether method is one of KnownMethods.
func KnownMethod(method string) bool {
	return slices.Contains(KnownMethods[:], method)
}

// SetServerRequest records on the server span what its spec cannot hold: the
// url.scheme (https when the request came over TLS) and url.path the HTTP
// conventions require, the url.query they require when there is one (the raw query,
// its sensitive values redacted: redactQuery), and the method as sent
// (http.request.method_original) when it is not one they know.
func SetServerRequest(span trace.Span, tls bool, method, path, query []byte) {
	if !span.IsRecording() {
		return
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	span.SetAttributes(semconv.URLScheme(scheme), semconv.URLPath(validUTF8(string(path))))
	if len(query) > 0 {
		span.SetAttributes(semconv.URLQuery(validUTF8(redactQuery(query))))
	}
	if !KnownMethod(string(method)) {
		span.SetAttributes(semconv.HTTPRequestMethodOriginal(validUTF8(string(method))))
	}
}

// Redacted is what stands for the value of a sensitive query parameter in url.query,
// as the HTTP conventions ask.
const Redacted = "REDACTED"

// sensitiveQueryWords make a query parameter sensitive when its name, decoded, holds
// one of them in any case. They cover the conventions' list (X-Amz-Signature,
// X-Amz-Credential, X-Amz-Security-Token, sig, X-Goog-Signature), the ways LLM and
// cloud APIs take a key in the query (key, api-key, api_key, apikey, access_token,
// an Azure SAS's sig), and credentials in general (token, secret, password, auth):
// a client's key must never reach a span, and a name redacted that held nothing
// secret costs only that value.
var sensitiveQueryWords = [...]string{"key", "token", "secret", "sig", "password", "passwd", "pwd", "credential", "auth", "session"}

// sensitiveQueryNames are names sensitive as a whole: code is the key of an Azure
// Functions endpoint, and an OAuth authorization code.
var sensitiveQueryNames = [...]string{"code"}

// redactQuery is the raw query q with the value of each sensitive parameter
// (sensitiveQuery) replaced by Redacted, its name kept, as the HTTP conventions ask
// (q=OpenTelemetry&sig=REDACTED).
func redactQuery(q []byte) string {
	var b []byte
	for i := 0; i < len(q); {
		end := bytes.IndexByte(q[i:], '&')
		if end < 0 {
			end = len(q)
		} else {
			end += i
		}
		name, _, hasValue := bytes.Cut(q[i:end], []byte{'='})
		if hasValue && sensitiveQuery(name) {
			if b == nil {
				b = make([]byte, 0, len(q)+len(Redacted))
				b = append(b, q[:i]...)
			}
			b = append(b, name...)
			b = append(b, '=')
			b = append(b, Redacted...)
		} else if b != nil {
			b = append(b, q[i:end]...)
		}
		if end < len(q) && b != nil {
			b = append(b, '&')
		}
		i = end + 1
	}
	if b == nil {
		return string(q)
	}
	return string(b)
}

// maxQueryName bounds the parameter names sensitiveQuery decodes; a longer one is
// taken for sensitive.
const maxQueryName = 64

// sensitiveQuery reports whether the query parameter named name (as sent:
// percent-encoded, + for a space) names a credential (sensitiveQueryWords,
// sensitiveQueryNames).
func sensitiveQuery(name []byte) bool {
	var buf [maxQueryName]byte
	n := 0
	for i := 0; i < len(name); i++ {
		if n == len(buf) {
			return true
		}
		c := name[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(name) && jsonscan.HexDigit(name[i+1]) >= 0 && jsonscan.HexDigit(name[i+2]) >= 0:
			c = byte(jsonscan.HexDigit(name[i+1])<<4 | jsonscan.HexDigit(name[i+2]))
			i += 2
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	decoded := buf[:n]
	for _, w := range sensitiveQueryNames {
		if string(decoded) == w {
			return true
		}
	}
	for _, w := range sensitiveQueryWords {
		if bytes.Contains(decoded, []byte(w)) {
			return true
		}
	}
	return false
}

// Operation returns the gen_ai.operation.name of an endpoint type (chat,
// completions, embeddings).
func Operation(endpointType string) string {
	switch endpointType {
	case "chat":
		return genai.GenAIOperationNameChat.Value.AsString()
	case "completions":
		return genai.GenAIOperationNameTextCompletion.Value.AsString()
	case "embeddings":
		return genai.GenAIOperationNameEmbeddings.Value.AsString()
	}
	return endpointType
}

// ProviderName returns the gen_ai.provider.name of a backend's provider type.
// OpenAI-compatible servers (vLLM, TGI, Ollama) are configured as openai and
// reported as such: the gateway cannot tell them apart.
func ProviderName(providerType string) string {
	switch providerType {
	case "openai":
		return genai.GenAIProviderNameOpenAI.Value.AsString()
	case "azure":
		return genai.GenAIProviderNameAzureAIOpenAI.Value.AsString()
	case "anthropic":
		return genai.GenAIProviderNameAnthropic.Value.AsString()
	}
	return providerType
}

// EndpointAttrs are the attributes an endpoint adds to the server span once
// the request's model has named it.
type EndpointAttrs struct{ kv []attribute.KeyValue }

// NewEndpointAttrs builds the attributes of one endpoint.
func NewEndpointAttrs(name, endpointType string) *EndpointAttrs {
	return &EndpointAttrs{kv: []attribute.KeyValue{
		KeyEndpoint.String(name),
		genai.GenAIOperationNameKey.String(Operation(endpointType)),
	}}
}

// Annotate adds the endpoint's attributes to span.
func (e *EndpointAttrs) Annotate(span trace.Span) {
	if span.IsRecording() {
		span.SetAttributes(e.kv...)
	}
}

// UpstreamSpec is the client span of a call to one backend target, named
// "{operation} {model}" as the GenAI conventions ask. target is the target's
// base URL or host:port; only its host and port are recorded.
func UpstreamSpec(endpointType, providerType, model, backend, target string) *Spec {
	op := Operation(endpointType)
	provider := ProviderName(providerType)
	attrs := []attribute.KeyValue{
		genai.GenAIOperationNameKey.String(op),
		genai.GenAIProviderNameKey.String(provider),
		KeyGenAISys.String(provider),
		genai.GenAIRequestModel(model),
		KeyBackend.String(backend),
	}
	host, port, _ := hostPort(target)
	if host != "" {
		attrs = append(attrs, semconv.ServerAddress(host), KeyTarget.String(net.JoinHostPort(host, strconv.Itoa(port))))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	name := op
	if model != "" {
		name += " " + model
	}
	return NewSpec(name, trace.SpanKindClient, attrs...)
}

// hostPort extracts host and port from a URL or host:port, filling the
// scheme's default port; hostport is the URL's host and port as written.
func hostPort(target string) (host string, port int, hostport string) {
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			switch u.Scheme {
			case "https":
				port = 443
			case "http":
				port = 80
			}
		}
		return u.Hostname(), port, u.Host
	}
	if h, p, err := net.SplitHostPort(target); err == nil {
		port, _ := strconv.Atoi(p)
		return h, port, target
	}
	return target, 0, target
}

// The setters below do nothing on a span that is not recording, so the
// request path may call them unconditionally: with tracing off they cost a
// method call and build no attributes.

// Request is what SetRequest records of the generation parameters of a request
// to a model: ParseRequest reads them from the body sent.
type Request struct {
	// MaxTokens <= 0 and a NaN float mean "not given".
	MaxTokens                                                  int64
	Temperature, TopP, TopK, FrequencyPenalty, PresencePenalty float64
	Stream                                                     bool
	// Choices is the completions asked for (n); 0 or 1 records none, as the
	// GenAI conventions ask for gen_ai.request.choice.count only when it is not 1.
	Choices int64
	// Seed is recorded when HasSeed is set.
	Seed    int64
	HasSeed bool
	// OutputType is the gen_ai.output.type the request asks for (OutputText,
	// OutputJSON); empty when it names none.
	OutputType string
	// StopSequences and EncodingFormats are recorded when not empty.
	StopSequences, EncodingFormats []string
}

// OutputText and OutputJSON are values of gen_ai.output.type (genai.GenAIOutputTypeText
// and genai.GenAIOutputTypeJSON, whose values are not constants).
const (
	OutputText = "text"
	OutputJSON = "json"
)

// maxStopSequences bounds the stop sequences recorded: OpenAI takes 4, and a
// request to a server that takes thousands is not worth a span that large.
const maxStopSequences = 16

// ParseRequest reads the generation parameters of a request body as it goes to the
// model: an OpenAI chat, completions or embeddings request, or an Anthropic
// Messages one (top_k, stop_sequences, output_config.format). A member counts by
// its exact name, as the upstream's JSON decoder reads it, the last of a name
// winning; max_completion_tokens wins over max_tokens. A null, or a value of a type
// the parameter cannot take, is not given. Counts are read as vLLM reads them
// (jsonscan.Count).
func ParseRequest(body []byte) Request {
	nan := math.NaN()
	req := Request{Temperature: nan, TopP: nan, TopK: nan, FrequencyPenalty: nan, PresencePenalty: nan}
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return req
	}
	var maxTokens, maxCompletion int64
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if bytes.IndexByte(k, '\\') >= 0 {
			// The upstream reads the name the escapes spell.
			u, ok := jsonscan.AppendUnescape(nil, k)
			if !ok {
				continue
			}
			k = u
		}
		switch string(k) {
		case "max_tokens":
			maxTokens = count(v)
		case "max_completion_tokens", "max_output_tokens":
			// max_output_tokens: the Responses API's.
			maxCompletion = count(v)
		case "temperature":
			req.Temperature = number(v)
		case "top_p":
			req.TopP = number(v)
		case "top_k":
			req.TopK = number(v)
		case "frequency_penalty":
			req.FrequencyPenalty = number(v)
		case "presence_penalty":
			req.PresencePenalty = number(v)
		case "stream":
			req.Stream, _ = jsonscan.Bool(v)
		case "n":
			req.Choices = count(v)
		case "seed":
			req.Seed, req.HasSeed = jsonscan.Int(v)
		case "response_format":
			req.OutputType = outputType(v)
		case "output_config":
			// Anthropic's structured outputs: {"format":{"type":"json_schema",...}}.
			f, _ := jsonscan.Field(v, "format")
			req.OutputType = outputType(f)
		case "stop", "stop_sequences":
			req.StopSequences = appendStrings(req.StopSequences[:0], v, maxStopSequences)
		case "encoding_format":
			req.EncodingFormats = req.EncodingFormats[:0]
			if s, ok := unquote(v); ok {
				req.EncodingFormats = append(req.EncodingFormats, s)
			}
		}
	}
	req.MaxTokens = maxTokens
	if maxCompletion > 0 {
		req.MaxTokens = maxCompletion
	}
	return req
}

// count reads a count as vLLM does; 0 when v is none.
func count(v []byte) int64 {
	n, _ := jsonscan.Count(v, math.MaxInt64)
	return n
}

// number reads a JSON number; NaN when v is none.
func number(v []byte) float64 {
	if f, ok := jsonscan.Float(v); ok {
		return f
	}
	return math.NaN()
}

// outputType is the gen_ai.output.type a response_format (or Anthropic's
// output_config.format) value asks for: json for a json_object or json_schema, text
// for text, none for anything else.
func outputType(v []byte) string {
	t, _ := jsonscan.Field(v, "type")
	switch string(t) {
	case `"json_object"`, `"json_schema"`:
		return OutputJSON
	case `"text"`:
		return OutputText
	}
	return ""
}

// appendStrings appends to dst the string v holds, or the strings of the array v
// holds (its other elements skipped), up to limit in all.
func appendStrings(dst []string, v []byte, limit int) []string {
	if jsonscan.IsString(v) {
		if s, ok := unquote(v); ok {
			dst = append(dst, s)
		}
		return dst
	}
	var arr jsonscan.Array
	if !arr.Reset(v) {
		return dst
	}
	for len(dst) < limit {
		e, ok := arr.Next()
		if !ok {
			break
		}
		if s, ok := unquote(e); ok {
			dst = append(dst, s)
		}
	}
	return dst
}

// unquote decodes the JSON string raw, made valid UTF-8.
func unquote(raw []byte) (string, bool) {
	if !jsonscan.IsString(raw) {
		return "", false
	}
	b, ok := jsonscan.AppendUnquote(nil, raw)
	if !ok {
		return "", false
	}
	return validUTF8(string(b)), true
}

// maxRequestAttrs is the most attributes SetRequest records.
const maxRequestAttrs = 13

// requestAttrs holds SetRequest's attributes for its one SetAttributes call, which
// copies them: the buffer escapes through the call, and a new one each request
// would cost some 700 bytes.
var requestAttrs = sync.Pool{New: func() any { return new([maxRequestAttrs]attribute.KeyValue) }}

// SetRequest records the request's generation parameters on the upstream
// span.
func SetRequest(span trace.Span, req Request) {
	if !span.IsRecording() {
		return
	}
	buf := requestAttrs.Get().(*[maxRequestAttrs]attribute.KeyValue)
	kv := append(buf[:0], genai.GenAIRequestStreamKey.Bool(req.Stream))
	if req.MaxTokens > 0 {
		kv = append(kv, genai.GenAIRequestMaxTokensKey.Int64(req.MaxTokens))
	}
	for _, f := range [...]struct {
		key attribute.Key
		v   float64
	}{
		{genai.GenAIRequestTemperatureKey, req.Temperature},
		{genai.GenAIRequestTopPKey, req.TopP},
		{genai.GenAIRequestTopKKey, req.TopK},
		{genai.GenAIRequestFrequencyPenaltyKey, req.FrequencyPenalty},
		{genai.GenAIRequestPresencePenaltyKey, req.PresencePenalty},
	} {
		if !math.IsNaN(f.v) {
			kv = append(kv, f.key.Float64(f.v))
		}
	}
	if req.Choices > 1 {
		kv = append(kv, genai.GenAIRequestChoiceCountKey.Int64(req.Choices))
	}
	if req.HasSeed {
		kv = append(kv, genai.GenAIRequestSeedKey.Int64(req.Seed))
	}
	if req.OutputType != "" {
		kv = append(kv, genai.GenAIOutputTypeKey.String(req.OutputType))
	}
	if len(req.StopSequences) > 0 {
		kv = append(kv, genai.GenAIRequestStopSequences(req.StopSequences...))
	}
	if len(req.EncodingFormats) > 0 {
		kv = append(kv, genai.GenAIRequestEncodingFormats(req.EncodingFormats...))
	}
	span.SetAttributes(kv...)
	// The pool must not keep the request's strings alive.
	clear(kv)
	requestAttrs.Put(buf)
}

// SentRequest records on an upstream attempt's span the generation parameters of
// the request the attempt sends: what the model was asked, after the backend's
// drop_params, defaults and translation (to Anthropic, a temperature capped at 1,
// top_p left out beside a temperature, a default max_tokens), which may differ
// from what the client asked the gateway. The gateway hands it to the provider
// (providers.Call.Sent) only when the span records, so a trace that is dropped
// pays nothing for it.
type SentRequest struct {
	Span trace.Span
}

// ReadSent records the parameters of body, the request an attempt sends, on
// s.Span (ParseRequest, SetRequest).
func (s *SentRequest) ReadSent(body []byte) {
	SetRequest(s.Span, ParseRequest(body))
}

// SetResponse records what the upstream answered: the model that answered,
// the response's ID and the finish reason of each choice. Empty values are
// skipped.
func SetResponse(span trace.Span, model, id string, finishReasons ...string) {
	if !span.IsRecording() {
		return
	}
	if model != "" {
		span.SetAttributes(genai.GenAIResponseModel(validUTF8(model)))
	}
	if id != "" {
		span.SetAttributes(genai.GenAIResponseID(validUTF8(id)))
	}
	// A copy: the attribute may keep the slice it is given, and the caller's
	// must not escape, lest a call with tracing off allocate it.
	reasons := make([]string, 0, len(finishReasons))
	for _, r := range finishReasons {
		if r != "" {
			reasons = append(reasons, validUTF8(r))
		}
	}
	if len(reasons) > 0 {
		span.SetAttributes(genai.GenAIResponseFinishReasons(reasons...))
	}
}

// SetTarget records the target an attempt went to, a base URL (or
// host:port): server.address and server.port, the scheme's default port when
// the URL names none, and tollgate.target, its host:port as written, which is
// also the target label of the upstream metrics. An empty target (no replica
// was tried) records nothing.
func (t *Tracing) SetTarget(span trace.Span, target string) {
	if !span.IsRecording() || target == "" {
		return
	}
	span.SetAttributes(t.targets.get(target)...)
}

// maxTargets bounds targetTable: reloads that change the targets again and
// again must not grow it for good.
const maxTargets = 1024

// targetTable maps a target to the attributes SetTarget records for it. Targets
// are the configured base URLs, a few per backend, so parsing one on every
// attempt (url.Parse, an allocation and some 300 ns) would redo the same work
// for each request; they are parsed on first use instead. Lookups read an
// immutable map without a lock or an allocation; a miss copies it with the new
// entry, and a table full starts over.
type targetTable struct {
	mu sync.Mutex // held by writers
	m  atomic.Pointer[map[string][]attribute.KeyValue]
}

// get returns target's attributes; the caller must not change them (the SDK
// copies what SetAttributes is given).
func (t *targetTable) get(target string) []attribute.KeyValue {
	if m := t.m.Load(); m != nil {
		if kv, ok := (*m)[target]; ok {
			return kv
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.m.Load()
	if old != nil {
		if kv, ok := (*old)[target]; ok {
			return kv
		}
	}
	kv := newTargetAttrs(target)
	n := 1
	if old != nil && len(*old) < maxTargets {
		n += len(*old)
	}
	m := make(map[string][]attribute.KeyValue, n)
	if n > 1 {
		maps.Copy(m, *old)
	}
	m[target] = kv
	t.m.Store(&m)
	return kv
}

// newTargetAttrs builds the attributes of target: tollgate.target (its
// host:port as written), server.address and, when known, server.port.
func newTargetAttrs(target string) []attribute.KeyValue {
	host, port, hostport := hostPort(target)
	kv := []attribute.KeyValue{KeyTarget.String(hostport), semconv.ServerAddress(host)}
	if port > 0 {
		kv = append(kv, semconv.ServerPort(port))
	}
	return slices.Clip(kv)
}

// SetUsage records token counts.
func SetUsage(span trace.Span, inTok, outTok int64) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(genai.GenAIUsageInputTokensKey.Int64(inTok), genai.GenAIUsageOutputTokensKey.Int64(outTok))
}

// SetUsageEstimated marks the span's token counts (SetUsage) as the gateway's
// estimate: tollgate.usage.estimated true.
func SetUsageEstimated(span trace.Span) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(KeyUsageEstimated.Bool(true))
}

// SetCacheUsage records the input tokens read from and written to the upstream's
// prompt cache, each only when there were some: the GenAI conventions count both
// within gen_ai.usage.input_tokens, and most answers have neither.
func SetCacheUsage(span trace.Span, read, written int64) {
	if !span.IsRecording() {
		return
	}
	if read > 0 {
		span.SetAttributes(genai.GenAIUsageCacheReadInputTokensKey.Int64(read))
	}
	if written > 0 {
		span.SetAttributes(genai.GenAIUsageCacheCreationInputTokensKey.Int64(written))
	}
}

// serviceTiers are the openai.response.service_tier attributes of the tiers OpenAI's
// and Anthropic's answers name (Anthropic's standard reaches the gateway as
// default), built once: recording one of them allocates nothing.
var serviceTiers = [...]attribute.KeyValue{
	genai.OpenAIResponseServiceTier("default"),
	genai.OpenAIResponseServiceTier("flex"),
	genai.OpenAIResponseServiceTier("priority"),
	genai.OpenAIResponseServiceTier("scale"),
	genai.OpenAIResponseServiceTier("batch"),
	genai.OpenAIResponseServiceTier("auto"),
}

// SetServiceTier records the service tier the answer says served it,
// openai.response.service_tier, when it names one (tier, a name, may view a
// buffer: it is copied unless it is a tier of serviceTiers).
func SetServiceTier(span trace.Span, tier []byte) {
	if len(tier) == 0 || !span.IsRecording() {
		return
	}
	for _, kv := range serviceTiers {
		if kv.Value.AsString() == string(tier) {
			span.SetAttributes(kv)
			return
		}
	}
	span.SetAttributes(genai.OpenAIResponseServiceTier(validUTF8(string(tier))))
}

// SetWebSearches records the web searches the upstream ran for the answer,
// tollgate.web_search.requests, when it ran some.
func SetWebSearches(span trace.Span, n int64) {
	if n <= 0 || !span.IsRecording() {
		return
	}
	span.SetAttributes(KeyWebSearches.Int64(n))
}

// FirstToken records the first generated token of a stream, which arrived
// at at, ttft after the upstream attempt was sent: the GenAI conventions
// measure gen_ai.response.time_to_first_chunk from the issuing of the
// generation request, which for an upstream span is the attempt, not the
// client's request to the gateway. The event is stamped at, since it is
// added only when the stream ends; the span carries the attribute too, where
// trace viewers can filter on it.
func FirstToken(span trace.Span, at time.Time, ttft time.Duration) {
	if !span.IsRecording() {
		return
	}
	kv := genai.GenAIResponseTimeToFirstChunkKey.Float64(ttft.Seconds())
	span.SetAttributes(kv)
	span.AddEvent(EventFirstToken, trace.WithTimestamp(at), trace.WithAttributes(kv))
}

// SetRequestID records the gateway's request ID and the client key's name
// (never the key) on the server span.
func SetRequestID(span trace.Span, requestID []byte, client string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(KeyRequestID.String(validUTF8(string(requestID))))
	if client != "" {
		span.SetAttributes(KeyClient.String(client))
	}
}

// SetRoute records the routing decision. The sticky key itself is never
// recorded: stickyHash is its hash, and hasSticky says there was one.
func SetRoute(span trace.Span, backend, variant string, weight int, stickyHash uint64, hasSticky bool) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(KeyBackend.String(backend), KeyVariant.String(variant), KeyWeight.Int(weight))
	if hasSticky {
		span.SetAttributes(KeyStickyHash.String(strconv.FormatUint(stickyHash, 16)))
	}
}

// SetLimit records a limit check: the store (memory or redis), the outcome
// (allowed, refused, degraded) and, when refused, the limit's name.
func SetLimit(span trace.Span, store, outcome, limit string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(KeyLimitStore.String(store), KeyOutcome.String(outcome))
	if limit != "" {
		span.SetAttributes(KeyLimitName.String(limit))
	}
}

// SetAttempt records an upstream attempt's number (1 for the first) and
// outcome (the metrics' outcome names: ok, status_5xx, timeout...).
func SetAttempt(span trace.Span, attempt int, outcome string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(KeyAttempt.Int(attempt), KeyOutcome.String(outcome))
}

// SetServerStatus records the response status of the server span; 5xx marks
// it as an error, 4xx does not (the client's fault, per the HTTP
// conventions).
func SetServerStatus(span trace.Span, status int) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		span.SetStatus(codes.Error, "")
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
	}
}

// SetClientStatus records the upstream's status on a client span; any 4xx or
// 5xx marks it as an error.
func SetClientStatus(span trace.Span, status int) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 400 {
		span.SetStatus(codes.Error, "")
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
	}
}

// RecordError marks span as failed with err. errType is a short,
// low-cardinality class for error.type (e.g. "upstream_timeout"), and the
// exception event's exception.type: a Go error's dynamic type
// (*errors.errorString, a package's unexported struct) names nothing a trace
// backend could group failures by. Without errType the event takes the Go type, as
// span.RecordError writes it.
func RecordError(span trace.Span, err error, errType string) {
	if !span.IsRecording() || err == nil {
		return
	}
	msg := err.Error()
	if !utf8.ValidString(msg) {
		msg = validUTF8(msg)
		err = errors.New(msg)
	}
	if errType == "" {
		span.RecordError(err)
	} else {
		span.AddEvent(semconv.ExceptionEventName, trace.WithAttributes(
			semconv.ExceptionType(errType), semconv.ExceptionMessage(msg)))
	}
	span.SetStatus(codes.Error, errType)
	if errType != "" {
		span.SetAttributes(semconv.ErrorTypeKey.String(errType))
	}
}

// RecordRefusal marks span with the error.type of a failure the client caused (a
// bad key, a hang-up) without setting its status to Error: keep_errors keeps the
// gateway's and the upstreams' failures, and a flood of bad keys would otherwise
// bypass sampling.
func RecordRefusal(span trace.Span, errType string) {
	if span.IsRecording() && errType != "" {
		span.SetAttributes(semconv.ErrorTypeKey.String(errType))
	}
}

// discardedName is the name Discard gives a span: no span the gateway starts has it
// (their names come from Specs, and none holds a NUL), so the tail processor tells
// a discarded span by its name alone.
const discardedName = "\x00discarded"

// Discard ends span without exporting it: it turned out to stand for nothing, as an
// upstream attempt's span does when the backend refused the call before any upstream
// saw it (the span is started before the call, to pass its traceparent upstream).
func Discard(span trace.Span) {
	if span.IsRecording() {
		span.SetName(discardedName)
	}
	span.End()
}

// CapturePrompt adds the request body as an EventPrompt event when
// capture_content is on; it is truncated to 16 KiB.
func (t *Tracing) CapturePrompt(span trace.Span, body []byte) {
	if !t.capture || !span.IsRecording() {
		return
	}
	span.AddEvent(EventPrompt, trace.WithAttributes(KeyPrompt.String(truncate(body))))
}

// CaptureCompletion adds the generated text as an EventCompletion event when
// capture_content is on; it is truncated to 16 KiB.
func (t *Tracing) CaptureCompletion(span trace.Span, text []byte) {
	if !t.capture || !span.IsRecording() {
		return
	}
	addCompletion(span, text)
}

func addCompletion(span trace.Span, text []byte) {
	span.AddEvent(EventCompletion, trace.WithAttributes(KeyCompletion.String(truncate(text))))
}

func truncate(b []byte) string {
	if len(b) > maxCapturedContent {
		n := maxCapturedContent
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		b = b[:n]
	}
	return validUTF8(string(b))
}

// validUTF8 replaces invalid UTF-8 in values that come from clients or
// upstreams: OTLP carries strings as protobuf strings, and one invalid
// value makes the exporter reject the whole batch.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
