// Package providers sends requests to upstream LLM APIs: one type per upstream API,
// pooled connections per target, and the wire translation between them.
package providers

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// Kind is the API operation a request asks for.
type Kind uint8

// The operations an endpoint can serve.
const (
	Chat Kind = iota + 1
	Completions
	Embeddings
	// Responses is OpenAI's Responses API, served by chat endpoints.
	Responses
	// Rerank scores documents against a query (vLLM's /rerank, Jina's and Cohere's
	// rerank APIs): an answer without generated tokens, as embeddings.
	Rerank
	// Score scores pairs of texts (vLLM's /score: queries with documents or items,
	// data_1 with data_2, text_1 with text_2), served by rerank endpoints: an answer
	// without generated tokens, as a rerank.
	Score
	// Messages is Anthropic's Messages API called by the client itself
	// (POST /v1/messages), served by chat endpoints: the body goes to the backend as
	// it came but for its model, natively to Anthropic and to OpenAI-compatible
	// servers that serve it too (vLLM, SGLang, Ollama) at {base_url}/messages.
	Messages
	// CountTokens is the Messages API's token count (POST /v1/messages/count_tokens),
	// served as Messages calls are: an answer ({"input_tokens": N}) without generated
	// tokens, which uses none.
	CountTokens
	// Tokenize and Detokenize are vLLM's tokenizer API (POST /tokenize, POST
	// /detokenize, at the server's root), served by an endpoint of any type: the
	// model's own tokenizer, an answer without generated tokens, which uses none.
	Tokenize
	Detokenize
	// Transcription and Translation are OpenAI's audio API (POST
	// /v1/audio/transcriptions, /v1/audio/translations), served by transcriptions
	// endpoints: a multipart/form-data body, whose model part alone the gateway
	// rewrites, answered as JSON or as text (text, srt, vtt), or streamed.
	Transcription
	Translation
	// KindCount bounds the kinds, for arrays indexed by kind.
	KindCount
)

// String names the kind as the config spells it.
func (k Kind) String() string {
	switch k {
	case Chat:
		return "chat"
	case Completions:
		return "completions"
	case Embeddings:
		return "embeddings"
	case Responses:
		return "responses"
	case Rerank:
		return "rerank"
	case Score:
		return "score"
	case Messages:
		return "messages"
	case CountTokens:
		return "count_tokens"
	case Tokenize:
		return "tokenize"
	case Detokenize:
		return "detokenize"
	case Transcription:
		return "transcriptions"
	case Translation:
		return "translations"
	}
	return "unknown"
}

// Endpoint is the endpoint type that serves calls of the kind: a chat endpoint
// serves the Responses API and the Messages API too, a rerank endpoint vLLM's score
// API.
func (k Kind) Endpoint() Kind {
	switch k {
	case Responses, Messages, CountTokens:
		return Chat
	case Score:
		return Rerank
	case Translation:
		return Transcription
	}
	return k
}

// Generates reports whether a call of the kind generates tokens, so that it may
// stream and has an output bound: not embeddings, not a rerank or score.
func (k Kind) Generates() bool {
	return k != Embeddings && k != Rerank && k != Score && !k.Tokenizer()
}

// Tokenizer reports whether a call of the kind only counts or converts tokens (the
// Messages API's count_tokens, vLLM's tokenize and detokenize): no model reads it, so
// no token limit is charged for it and no answer cache keeps it.
func (k Kind) Tokenizer() bool { return k == CountTokens || k == Tokenize || k == Detokenize }

// Form reports whether a call of the kind has a multipart/form-data body (the audio
// API's): its model is a part's raw value, not a JSON string, and no JSON scan, field
// dropping or usage forcing applies to it.
func (k Kind) Form() bool { return k == Transcription || k == Translation }

// AnyEndpoint reports whether an endpoint of any type serves calls of the kind:
// vLLM's tokenizer API, which every model vLLM serves has.
func (k Kind) AnyEndpoint() bool { return k == Tokenize || k == Detokenize }

// Anthropic reports whether a call of the kind is Anthropic's Messages API's: a
// message or a token count, answered in that API's shapes.
func (k Kind) Anthropic() bool { return k == Messages || k == CountTokens }

// Path is the OpenAI API path of the kind, relative to a base URL ending in /v1.
func (k Kind) Path() string {
	switch k {
	case Chat:
		return "/chat/completions"
	case Completions:
		return "/completions"
	case Embeddings:
		return "/embeddings"
	case Responses:
		return "/responses"
	case Rerank:
		return "/rerank"
	case Score:
		return "/score"
	case Messages:
		return "/messages"
	case CountTokens:
		return "/messages/count_tokens"
	case Tokenize:
		return "/tokenize"
	case Detokenize:
		return "/detokenize"
	case Transcription:
		return "/audio/transcriptions"
	case Translation:
		return "/audio/translations"
	}
	return ""
}

// Errors a Send can return besides *UpstreamError.
var (
	// ErrTimeout means the upstream did not answer in time.
	ErrTimeout = errors.New("upstream timed out")
	// ErrConnect means no connection to the upstream could be made or kept.
	ErrConnect = errors.New("upstream unreachable")
	// ErrBadResponse means the upstream answered with something that is not its API.
	ErrBadResponse = errors.New("upstream sent an invalid response")
	// ErrUnsupported means the backend's API has no such operation.
	ErrUnsupported = errors.New("operation not supported by this backend")
	// ErrAnswerNoRoom means the call's Hold had no room for the buffer of its answer,
	// read whole: the gateway's own memory bound, not the upstream's failure (no
	// verdict on the target). The answer was not read on, and its connection was
	// closed.
	ErrAnswerNoRoom = errors.New("upstream answer not read on: no room to hold it in memory")
)

// UpstreamError is a non-2xx answer from the upstream, passed through to the client.
type UpstreamError struct {
	Status     int
	RetryAfter time.Duration
	// Retry is the upstream's x-should-retry.
	Retry RetryHint
}

// RetryHint is what an upstream's x-should-retry says: OpenAI's and Anthropic's APIs
// send it (vLLM does not), and their SDKs read it before the status, retrying on
// "true" and not on "false" whatever the status. They compare it with those two
// values exactly, so any other value is RetryUnsaid, as no header is.
type RetryHint int8

// The values of a RetryHint.
const (
	RetryUnsaid RetryHint = iota
	RetryYes
	RetryNo
)

// retryHint reads an upstream answer's x-should-retry.
func retryHint(h *fasthttp.ResponseHeader) RetryHint {
	switch string(peekFold(h, "X-Should-Retry")) {
	case "true":
		return RetryYes
	case "false":
		return RetryNo
	}
	return RetryUnsaid
}

// Error names the status only: the body may hold anything and goes to the client as is.
func (e *UpstreamError) Error() string {
	return "upstream answered " + strconv.Itoa(e.Status)
}

// RequestError is a call the backend's API cannot express (an Anthropic backend asked
// for n: 2), refused before any target was leased: its answer, OpenAI's error body with
// the parameter at fault, is already written, and no upstream saw the request.
type RequestError struct {
	Status int
}

// Error names the status only; the answer written says what is wrong.
func (e *RequestError) Error() string {
	return "request refused by the backend's translation: " + strconv.Itoa(e.Status)
}

// Retryable reports whether another attempt may succeed by the status alone: 429,
// 5xx. An upstream's Retry, when it said one, overrides it (as the SDKs read it).
func (e *UpstreamError) Retryable() bool { return e.Status == 429 || e.Status >= 500 }

// Usage is the token count of one request.
type Usage struct {
	// Input counts every prompt token, those of the prompt cache included, as
	// OpenAI's prompt_tokens does.
	Input  int64
	Output int64
	// CachedInput is the part of Input read from the upstream's prompt cache
	// (OpenAI's prompt_tokens_details.cached_tokens, Anthropic's
	// cache_read_input_tokens), which providers bill at a lower price.
	CachedInput int64
	// CacheWrite is the part of Input written to the prompt cache (Anthropic's
	// cache_creation_input_tokens), which Anthropic bills above the input price.
	// Only the Anthropic translation sets it.
	CacheWrite int64
	// CacheWrite1h is the part of CacheWrite written with a one-hour ttl (Anthropic's
	// cache_creation.ephemeral_1h_input_tokens), which Anthropic bills higher still.
	CacheWrite1h int64
	// Tier is the service tier the answer says served it (OpenAI's service_tier,
	// at the top level of an answer and of each chunk), which Pricing.Tiers
	// prices. It is no token count: an answer naming only its tier has no usage
	// (Counted).
	Tier ServiceTier
	// WebSearches counts the web searches the upstream ran for the answer
	// (Anthropic's usage.server_tool_use.web_search_requests), which it bills
	// apart from tokens (Pricing.WebSearchPerThousand). It is no token count
	// either: Counted leaves it out, and the limits never see it.
	WebSearches int64
	// AudioMillis is the duration of the audio an audio API answer transcribed, in
	// milliseconds (its usage of type duration: whisper-1's, vLLM's), which
	// Pricing.AudioPerMinute prices. No token count either.
	AudioMillis int64
	// Paused is set on an answer whose turn the upstream paused (Anthropic's
	// pause_turn in a long search turn): a partial answer, which the request sent
	// again starts over, so no cache keeps it. No count either.
	Paused bool
	// total is the total_tokens of a usage that named no split count (vLLM's and
	// Jina's rerank answers, Voyage's embeddings), 0 otherwise: the input of a call
	// that generates nothing (totalAsInput), no count for one that does.
	total int64
}

// totalAsInput counts a usage's lone total_tokens as its input, for a call that
// generates nothing (an embeddings call, a rerank): there the total is the input.
func (u *Usage) totalAsInput() {
	if u.total > 0 && !u.Counted() {
		u.Input = u.total
	}
	u.total = 0
}

// Counted reports whether u holds a token count. Providers leave the counts at zero
// when none came, or when one of them could not be believed.
func (u *Usage) Counted() bool {
	return u.Input != 0 || u.Output != 0 || u.CachedInput != 0 || u.CacheWrite != 0 || u.CacheWrite1h != 0
}

// MaxServiceTierBytes is the longest service tier name an answer is believed to
// give (OpenAI's are default, flex, priority and scale): a longer one is taken as
// none.
const MaxServiceTierBytes = 32

// ServiceTier is the name of a service tier, held in place: reading it from an
// answer allocates nothing. Its zero value names none.
type ServiceTier struct {
	n    uint8
	name [MaxServiceTierBytes]byte
}

// Bytes is the tier's name, empty when none was named. The slice views t.
func (t *ServiceTier) Bytes() []byte { return t.name[:t.n] }

// String is the tier's name.
func (t ServiceTier) String() string { return string(t.name[:t.n]) }

// read sets t to the tier a service_tier value names, a JSON string, escapes decoded.
// Anything else (null, a number, an empty or too long name, a bad escape) names
// none and leaves t as it was: a stream's last chunk naming one counts.
func (t *ServiceTier) read(raw []byte) {
	if !jsonscan.IsString(raw) || len(raw) < 3 || raw[len(raw)-1] != '"' {
		return
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		// Decoded, an escape is never longer than itself: buf holds the name even
		// escaped whole, \uXXXX for each of its bytes.
		if len(s) > 6*MaxServiceTierBytes {
			return
		}
		var buf [6 * MaxServiceTierBytes]byte
		u, ok := jsonscan.AppendUnescape(buf[:0], s)
		if !ok {
			return
		}
		s = u
	}
	if len(s) == 0 || len(s) > MaxServiceTierBytes {
		return
	}
	t.n = uint8(copy(t.name[:], s))
}

// Call is one upstream attempt's input. The gateway owns it and reuses it; a provider
// must not keep any of its slices after Send returns (the stream it returns excepted,
// which may read Body until it is closed).
type Call struct {
	Kind Kind
	// Body is the client's JSON body.
	Body []byte
	// Model is the span [start, end) of the "model" value in Body, quotes included.
	Model [2]int
	// StreamOptions is the span of the "stream_options" value in Body, or {-1, -1}.
	StreamOptions [2]int
	// CacheKey is the span of the "prompt_cache_key" string in Body between its
	// quotes; an empty span (its zero value too) when there is none. Prefix affinity
	// places the call by it instead of by its prompt.
	CacheKey [2]int
	Stream   bool
	// IncludeUsage is the client's own stream_options.include_usage.
	IncludeUsage bool
	// MaxTokens is the client's max_tokens (or max_completion_tokens), 0 when absent.
	MaxTokens int64
	// Choices is the choices a chat or legacy completions call's answer holds (a
	// chat call's n, a completions call's n for each of its prompts), 0 for one: such
	// a stream whose body ends without [DONE] is whole once each of them has
	// finished (chatEnd).
	Choices int64
	// DeltaText has a completions stream (served through chat or by the upstream's
	// legacy completions) sent as MLflow's invocations route streams completions:
	// text_completion_chunk objects with each chunk's text in choices[].text and in
	// choices[].delta.content, instead of OpenAI's text_completion chunks.
	DeltaText bool
	// Header is the client's request header; providers copy what they may forward.
	// The gateway has set its request ID there (X-Request-Id), and its trace context
	// (traceparent, tracestate) when Traced.
	Header *fasthttp.RequestHeader
	// Traced is set when the trace context on Header is the gateway's own, for this
	// attempt (tracing.Inject), not the client's.
	Traced bool
	// Sent, when set, reads the body of each request the call sends upstream, just
	// before it goes: what the model is asked, after drop_params, defaults and
	// translation (the gateway records it on the attempt's span).
	Sent SentReader
	// Deadline bounds the whole attempt (for streams: the whole stream).
	Deadline time.Time
	// Client, when set, tells when the call's client hangs up. It is asked while the
	// call waits in a backend's queue, which it then leaves (ErrClientGone), and
	// while its answer (a stream's: the answer's header) is awaited from the
	// upstream, whose request is then aborted (ErrClientLeftUpstream; see
	// watched.go).
	Client ClientWatch
	// Tenants, when set, tells whose the call is, for a backend whose queue shares
	// its slots among tenants (queue.fair): asked only when the call waits there.
	Tenants Tenants
	// Hold, when set, bounds the memory an answer read whole takes (not a stream's):
	// its buffer grows past 64 KiB only as far as Hold allows, and an answer it has no
	// room for ends the attempt with ErrAnswerNoRoom (see readBody).
	Hold AnswerHold
	// gone is the channel of the watch clientGone started (watching).
	gone     <-chan struct{}
	watching bool
	// prepared is the upstream request body a preparer wrote for this attempt.
	prepared []byte
	// bridged is the Responses API request a chat call serves through the bridge:
	// its answer is turned into a response object before the attempt is judged, so
	// that an answer the bridge cannot read fails the target as a bad one does.
	bridged *respRequest
	// bridgeReq holds bridged's request, kept with the call: on the stack, the
	// pointer to it would have it allocated each call.
	bridgeReq respRequest
	// messagesBridged is set on the chat call a Messages API call becomes on a
	// backend that serves it through chat completions: its answer is turned into a
	// message before the attempt is judged (messagesAnswer).
	messagesBridged bool
	// failed holds the targets of backend failedOn whose attempt of this call failed:
	// a retry goes to another target in service. failedOn is set by any failed
	// attempt: the next one on it is a retry.
	failed   targetSet
	failedOn *Backend
	// pin and pinAt name the target the call must go to, while it is in service
	// (PinTo); pinned is the set of every other target, which the call avoids.
	pin    *Backend
	pinAt  int
	pinned targetSet
}

// PinTo sends the call's attempts on b to target i of b alone, retries too: it holds
// what the call needs (a Responses API call continuing a response stored on that
// replica). While that target is out of service, b has none for the call
// (ErrNoHealthyTarget). Its attempts on other backends go as any call's.
func (c *Call) PinTo(b *Backend, i int) {
	c.pin, c.pinAt = b, i
}

// Unpin undoes PinTo.
func (c *Call) Unpin() { c.pin = nil }

// SentReader reads the body of a request a call sends upstream; it must not keep it.
type SentReader interface {
	ReadSent(body []byte)
}

// AnswerHold counts the buffer of a call's answer, read whole, against a bound on
// the memory such buffers take, all calls together. The gateway's request implements
// it.
type AnswerHold interface {
	// HoldAnswer counts a buffer of n bytes for the call's answer, in place of the one
	// it counted before, and reports false, counting nothing, when the bound has no
	// room for it.
	HoldAnswer(n int) bool
}

// ClientWatch watches the client a call is made for. The gateway's client connection
// implements it.
type ClientWatch interface {
	// Watch starts watching and returns a channel that receives when the client hangs
	// up; nil when the client cannot be watched.
	Watch() <-chan struct{}
	// Unwatch ends the watch Watch started.
	Unwatch()
}

// Result is what one attempt produced besides the response body.
type Result struct {
	// Stream is set when a streaming request got a 2xx answer; the caller reads it to
	// the end and closes it.
	Stream Events
	Usage  Usage
	// Target is the upstream URL the attempt went to.
	Target string
	// Sent is when the attempt went upstream: once it held a target and a slot, after
	// any wait in the backend's queue, which is the gateway's time, not the
	// upstream's. Zero when it never went.
	Sent time.Time
	// Queued is how long the attempt waited in the backend's queue for a slot (0
	// when it took one at once).
	Queued time.Duration
	// Status is the status of the upstream's answer once its header was read,
	// whatever became of the answer then (a redirect, an HTML page where JSON
	// belongs, a body cut short); 0 when no answer came.
	Status int
	// IDEnds are the offsets in the answer's body of the closing quotes of its id and
	// previous_response_id strings (responseIDs), for the gateway to tag a Responses
	// API answer's IDs without scanning it again.
	IDEnds IDEnds
	// NoUsage is set on a 2xx answer read whole that came without usage (no usage
	// member, null, or an empty object), as some OpenAI-compatible servers answer,
	// OutputBytes then the size of its generated text as a stream's events count it
	// (Event.OutputBytes):
	// the gateway estimates its tokens by it, as it does a stream's that came without
	// usage. Not on an answer holding an error object, nor on a Responses API answer
	// whose work is still to come (a background response, queued or in progress).
	NoUsage     bool
	OutputBytes int
	// Judged and Failed are the verdict the target's health took of an attempt that
	// ended without a stream to read (Judge's, knowing also whether the attempt
	// waited in the queue: a deadline spent there is no verdict). A stream's verdict
	// is taken when it closes.
	Judged, Failed bool
}

// Events yields the events of a streaming answer in OpenAI's chat.completion.chunk
// (or text_completion) form.
type Events interface {
	// Next returns the next event. The event's slices are valid until the next call.
	Next(ev *Event) error
	// Close releases the upstream connection; it aborts the upstream request when the
	// stream was not read to its end.
	Close() error
}

// Event is one server-sent event of a stream.
type Event struct {
	// Data is the event's JSON payload; empty for the final [DONE].
	Data []byte
	// Name is the event's name (its event: field), passed on for a Responses API
	// stream, whose events are named by their type; empty otherwise.
	Name []byte
	// Done marks the stream's clean end: [DONE], or for a Responses API stream the
	// end after its terminal event (response.completed, response.incomplete,
	// response.failed), or for a chat or legacy completions stream the body's clean
	// end once its answer was whole (chatEnd). The event carries no data.
	Done bool
	// Terminal is set on Done when the stream ended with its own terminal event
	// (a Responses API one, message_stop, transcript.text.done): no [DONE] follows.
	Terminal bool
	// UsageOnly marks the usage chunk (usage, with choices empty, null or absent)
	// the gateway may have asked for on the client's behalf.
	UsageOnly bool
	// HasUsage is set when Usage holds the chunk's token counts.
	HasUsage bool
	Usage    Usage
	// Content is set when the chunk carries generated text or a tool call.
	Content bool
	// OutputBytes is the size of the generated text the event carries: content,
	// reasoning, a refusal, a tool call's arguments, each the inside of its JSON
	// string as sent. The gateway estimates the output tokens of a stream cut before
	// its usage came from it (about four bytes a token).
	OutputBytes int
	// SoFar is set when Usage holds the stream's usage so far rather than its final
	// count (HasUsage unset): the prompt's tokens once the stream began (Anthropic's
	// message_start; its output count there is no count yet and is left at 0), and,
	// where usage on every chunk was asked for (continuous_usage_stats), the tokens
	// generated so far. A stream cut before its usage is settled with it.
	SoFar bool
	// Error is set when the chunk is an error object (an upstream failing mid-stream
	// sends one in place of a chunk).
	Error bool
	// IDEnds are the offsets in Data of the closing quotes of the id and
	// previous_response_id of the response a Responses API event carries.
	IDEnds IDEnds
	// KeepAlive marks an upstream's keep-alive with no data (an SSE comment such as
	// ": ping", Anthropic's ping event): the gateway passes one on, so that the
	// client's side of a stream the upstream keeps alive is not silent either.
	KeepAlive bool
}

// Target is one upstream replica of a backend.
type Target struct {
	// URL is the target's URL as configured. Its query goes with every request and
	// may hold a credential: what is shown of a target (labels, spans, logs) is its
	// host.
	URL    string
	client *fasthttp.HostClient
	// uris holds the URL of each operation, indexed by Kind, parsed once: a request
	// copies its operation's URI instead of parsing a URL.
	uris     [KindCount]fasthttp.URI
	inFlight atomic.Int64
	// dial is the client's dial (its DialTimeout) under a context, which ends it
	// wherever it is: resolving, connecting, in a proxy's or the TLS handshake.
	dial contextDial
}

// contextDial connects to addr within timeout (zero: no bound), or until ctx ends.
type contextDial func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)

// setURL points operation k at u.
func (t *Target) setURL(k Kind, u string) {
	t.uris[k].Reset()
	// DisablePathNormalizing as the client sets it: the path goes out as given.
	t.uris[k].DisablePathNormalizing = true
	_ = t.uris[k].Parse(nil, []byte(u))
	if h := t.uris[k].Host(); bytes.IndexByte(h, '%') >= 0 {
		t.uris[k].SetHost(withoutZone(string(h)))
	}
}

// withoutZone is addr (an IPv6 address in brackets, with or without a port) without
// its zone id (RFC 6874: [fe80::1%25eth0]:8000): the zone names the interface to dial
// from, only the dial uses it, and a client must leave it out of what it sends (the
// Host header, a proxy's CONNECT line), which upstreams refuse with it (a bare %); nor
// is it part of the name a certificate holds. Any other addr is returned as it is.
func withoutZone(addr string) string {
	i := strings.IndexByte(addr, '%')
	j := strings.IndexByte(addr, ']')
	if len(addr) == 0 || addr[0] != '[' || i < 0 || j < i {
		return addr
	}
	return addr[:i] + addr[j:]
}

// setRequestURL sets req's URL to operation k's.
func (t *Target) setRequestURL(req *fasthttp.Request, k Kind) {
	req.SetURI(&t.uris[k])
}

// InFlight is the number of attempts now open on the target.
func (t *Target) InFlight() int64 { return t.inFlight.Load() }

// maxConnAge is how long an upstream connection is used before it is replaced.
var maxConnAge = time.Hour // tests shorten it

func newTarget(raw string, cfg *Config, name string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("not an http(s) URL")
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	hc := &fasthttp.HostClient{
		Addr:     host,
		Name:     "tollgate",
		IsTLS:    u.Scheme == "https",
		MaxConns: cfg.MaxConnections,
		// Below the upstream's own keep-alive timeout, so that the client drops an
		// idle connection before the upstream does (see IdleConnTimeout).
		MaxIdleConnDuration: cfg.IdleConnTimeout,
		// A busy connection is also closed once it is this old, after the answer in
		// flight: a gateway that is never idle would otherwise keep the addresses
		// its upstream's name had at the first dial forever (nginx's keepalive_time).
		MaxConnDuration:          maxConnAge,
		MaxConnWaitTimeout:       cfg.ConnectTimeout,
		NoDefaultUserAgentHeader: true,
		// fasthttp's parse errors would otherwise quote what it read, and an upstream
		// that echoes what it got (a wrong port, a debugging echo) sends back the
		// request's Authorization header: the error reaches logs and spans.
		SecureErrorLogMessage: true,
		// Answer header names stay as the upstream wrote them: the gateway reads the
		// content type (which fasthttp matches in any case) and, on errors only,
		// Retry-After through peekFold; normalising every name of every answer is
		// work for nothing.
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		MaxResponseBodySize:           int(cfg.MaxResponseBytes),
		// Small buffers: every open stream holds one connection, and bodies larger
		// than a buffer stream through it anyway. An answer's header must fit in the
		// read buffer (over it: ErrHeaderTooLarge, headerFit), so its size is the
		// backend's max_response_header_bytes.
		ReadBufferSize:  int(cfg.MaxResponseHeaderBytes),
		WriteBufferSize: 4 << 10,
		// An upstream may close a kept-alive connection just as the gateway sends
		// on it, and fasthttp does not look at a pooled connection before using it
		// nor retry a POST by itself. One retry is allowed, and upstreamTransport
		// and retryClosed let it happen only when the upstream closed a connection
		// that had served before, without a byte of the answer.
		MaxIdemponentCallAttempts: 2,
		Transport:                 upstreamTransport{},
	}
	hc.RetryIfErr = func(req *fasthttp.Request, _ int, err error) (bool, bool) {
		return false, retryClosed(hc, req, err)
	}
	// The dial is bounded by connect_timeout and by what is left of the attempt's
	// deadline (fasthttp passes that as timeout), a retry's dial included.
	// fasthttp moves the read and write deadlines of the connection later for every
	// request; deadline.Conn makes that free. upstreamConn lets a stream hear of
	// its reads (Waiter) and tells a retry whether the connection had served.
	// The dial races the addresses of a name (RFC 8305, Happy Eyeballs, see dialer):
	// one that black-holes (an IPv6 route that drops SYNs, a zone's load balancer
	// address in an outage) costs a new connection 250 ms, not the timeout. The name
	// is looked up at each dial: for a new connection only, never for a request on a
	// kept-alive one. Health checks and /metrics reads reuse this dial. Through a
	// proxy, the same bound covers the connection to the proxy and its answer to
	// CONNECT or its SOCKS5 handshake.
	direct := &dialer{resolver: cfg.resolver}
	connect := cfg.ConnectTimeout
	viaProxy, err := proxyDial(cfg.Proxy, net.Dialer{Resolver: cfg.resolver})
	if err != nil {
		return nil, err
	}
	// An https target's TLS handshake is made here too, within the same bound: a
	// connection is had once it can carry the request. Requests dial with a ctx that
	// never ends; health checks and /metrics reads with one their backend's stop
	// cancels (probeConns).
	var tlsCfg clientTLS
	dialCtx := func(ctx context.Context, addr string, timeout time.Duration) (netConn, error) {
		if connect > 0 && (timeout <= 0 || connect < timeout) {
			timeout = connect
		}
		var end time.Time
		if timeout > 0 {
			end = time.Now().Add(timeout)
		}
		dial := hc.Dial
		var c netConn
		var err error
		switch {
		case dial != nil:
			// A Dial set on the client after it was built (the in-process mock's
			// in-memory pipe) takes the place of the TCP dial.
			c, err = dial(addr)
		case viaProxy != nil:
			c, err = viaProxy(ctx, addr, end)
		default:
			c, err = direct.dial(ctx, addr, end)
		}
		if err != nil {
			return nil, err
		}
		if !hc.IsTLS {
			if dial != nil {
				return c, nil
			}
			return wrapUpstream(c), nil
		}
		cfg, err := tlsCfg.get(hc.TLSConfig, addr)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		u := wrapUpstream(c)
		if err := u.handshake(ctx, cfg, end); err != nil {
			return nil, err
		}
		return u, nil
	}
	hc.DialTimeout = func(addr string, timeout time.Duration) (netConn, error) {
		return dialCtx(context.Background(), addr, timeout)
	}
	t := &Target{URL: raw, client: hc, dial: dialCtx}
	for _, k := range []Kind{Chat, Completions, Embeddings, Responses, Rerank, Score, Messages, CountTokens, Transcription, Translation} {
		t.setURL(k, operationURL(raw, k.Path()))
	}
	for _, k := range []Kind{Tokenize, Detokenize} {
		t.setURL(k, rootOperationURL(raw, k.Path()))
	}
	return t, nil
}

// clientTLS is the tls.Config of a target's connections, made at its first dial from
// the client's TLSConfig (set once the target is built) as fasthttp made it for the
// handshake it no longer makes: a copy, naming the target's host as ServerName (SNI
// and the name verified) when the config names none, and the same one for every
// connection. Like fasthttp, it adds nothing to the backend's settings: no ALPN
// protocol (the connection speaks HTTP/1.1), no session cache.
type clientTLS struct {
	once sync.Once
	cfg  *tls.Config
	err  error
}

func (c *clientTLS) get(base *tls.Config, addr string) (*tls.Config, error) {
	c.once.Do(func() {
		if base == nil {
			c.cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		} else {
			c.cfg = base.Clone()
		}
		if c.cfg.ServerName != "" {
			return
		}
		host, _, err := net.SplitHostPort(withoutZone(addr))
		switch {
		case err == nil:
			c.cfg.ServerName = host
		case !c.cfg.InsecureSkipVerify:
			c.err = errors.New("no TLS server name in " + addr)
		}
	})
	return c.cfg, c.err
}

// operationURL is base with op appended to its path, base's query kept after it: an
// OpenAI-compatible host may take its version in the query (?api-version=...).
func operationURL(base, op string) string {
	path, query := base, ""
	if i := strings.IndexAny(base, "?#"); i >= 0 {
		path, query = base[:i], base[i:]
	}
	return strings.TrimRight(path, "/") + op + query
}

// rootOperationURL is the URL of an operation vLLM serves at its root, not under
// /v1: base's path without a last /v1 segment, then op, then base's query.
func rootOperationURL(base, op string) string {
	path, query := base, ""
	if i := strings.IndexAny(base, "?#"); i >= 0 {
		path, query = base[:i], base[i:]
	}
	path = strings.TrimSuffix(strings.TrimRight(path, "/"), "/v1")
	return path + op + query
}

// hopHeaders are never forwarded: they describe one connection, not the request, or
// carry the client's own credentials for the gateway. OpenAI-Organization and
// OpenAI-Project choose which organization and project the upstream key bills: the
// key is the operator's (a client's credentials never go upstream), so the choice is
// the operator's too, made with the backend's `headers:`. Content-Length and
// Content-Encoding describe the client's body, not the one the gateway sends (the
// model rewritten, stream_options added; the gateway takes uncoded bodies only).
// HTTP2-Settings belongs to an h2c upgrade of the client's connection (RFC 9113, 3.2),
// which the gateway does not make: it is dropped whether or not Connection names it.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization", "Api-Key", "X-Api-Key",
	"Cookie", "Accept-Encoding", "Content-Length", "Content-Encoding", "Host", "Expect",
	"Openai-Organization", "Openai-Project", "Http2-Settings",
}

// copyForwardHeaders copies the client's headers into up, without hop-by-hop headers or
// credentials. A header sent on several lines goes on as sent, every line in its order
// (RFC 9110 5.3: one list; W3C baggage and tracestate are often split so). The client's
// Accept-Encoding is dropped: the gateway asks for an uncoded answer, to read usage
// from it. It must run before the provider sets its own headers on up, which the
// clean-up of Connection-named headers would otherwise remove; a header the provider
// sets that a client may send too goes through setHeader.
func copyForwardHeaders(up *fasthttp.RequestHeader, call *Call) {
	client := call.Header
	if client == nil {
		return
	}
	named := false
	// Every line must go up, but Add costs more than Set, which appends a name's
	// first line just as well (up has none yet): Add checks and copies the name once
	// more, 30 % more time for the whole copy were every line added. So seen has bit
	// nameBit(k) set once a line named k went up, and only a line whose bit is set,
	// which may repeat a name, is added. Normalising is off meanwhile: the gateway's
	// server hands over names in canonical form already (it normalises them as it
	// parses), and Add normalising them again would double the copy's time; names
	// looked up later (Del, Set) are normalised again.
	var seen uint64
	wasRaw := up.DisableNormalizing()
	for k, v := range client.All() {
		if isHopHeader(k) {
			if !named && len(k) == len("Connection") && strings.EqualFold(b2s(k), "Connection") {
				named = namesHeaders(v)
			}
			continue
		}
		if bit := nameBit(k); seen&bit == 0 {
			seen |= bit
			up.SetCanonical(k, v)
		} else {
			up.AddBytesKV(k, v)
		}
	}
	if !wasRaw {
		up.EnableNormalizing()
	}
	if named {
		dropConnectionNamed(up, client, call.Traced)
	}
}

// nameBit is a bit for header name k, the same for every line of a name. Two names
// may share one: the second name's lines are then added as repeated lines are, which
// is as right, only slower.
func nameBit(k []byte) uint64 {
	if len(k) == 0 {
		return 1
	}
	return 1 << ((uint(len(k)) + uint(k[len(k)-1])) & 63)
}

// setHeader sets the provider's header k on up in place of every line of that name
// the client sent: fasthttp's Set replaces only the first of several lines, and a
// client's second line would reach the upstream beside the provider's value.
func setHeader(up *fasthttp.RequestHeader, k, v string) {
	up.Del(k)
	up.Set(k, v)
}

// namesHeaders reports whether a Connection header value names a header other than
// Keep-Alive: the usual "keep-alive" (or "close") costs one comparison.
func namesHeaders(v []byte) bool {
	return !strings.EqualFold(b2s(v), "keep-alive") && !strings.EqualFold(b2s(v), "close")
}

// dropConnectionNamed removes from up the headers the client's Connection headers name:
// they are hop-by-hop too, for this connection only (RFC 9110, 7.6.1). The names are
// removed after the copy rather than skipped during it, so that the usual request,
// whose Connection names nothing, pays for no second pass over its headers. What the
// gateway itself sends in the client's header stays, whatever the client named: its
// X-Request-Id, and its trace context when traced; a client's own line of those was
// replaced, not forwarded.
func dropConnectionNamed(up, client *fasthttp.RequestHeader, traced bool) {
	for k, v := range client.All() {
		if len(k) != len("Connection") || !strings.EqualFold(b2s(k), "Connection") {
			continue
		}
		for len(v) > 0 {
			name := v
			if i := bytes.IndexByte(v, ','); i >= 0 {
				name, v = v[:i], v[i+1:]
			} else {
				v = nil
			}
			if name = bytes.Trim(name, " \t"); len(name) > 0 && !gatewaySets(name, traced) {
				up.DelBytes(name)
			}
		}
	}
}

// gatewaySets reports whether header name is one the gateway writes into the client's
// header for the upstream: X-Request-Id always, traceparent and tracestate when traced.
func gatewaySets(name []byte, traced bool) bool {
	n := b2s(name)
	return strings.EqualFold(n, "X-Request-Id") ||
		traced && (strings.EqualFold(n, "Traceparent") || strings.EqualFold(n, "Tracestate"))
}

func isHopHeader(k []byte) bool {
	if n := len(k); n < len(hopByLen) {
		for _, h := range hopByLen[n] {
			if strings.EqualFold(h, b2s(k)) {
				return true
			}
		}
	}
	return len(k) > 11 && k[0]|0x20 == 'x' && strings.EqualFold("x-tollgate-", b2s(k[:11]))
}

// hopByLen is hopHeaders by name length: a client's header is compared with the
// names of its own length only.
var hopByLen = func() (t [20][]string) {
	for _, h := range hopHeaders {
		t[len(h)] = append(t[len(h)], h)
	}
	return t
}()

// peekFold is the value of the answer header named name in any letter case (the
// upstream client keeps names as sent), or nil.
func peekFold(h *fasthttp.ResponseHeader, name string) []byte {
	for k, v := range h.All() {
		if len(k) == len(name) && strings.EqualFold(b2s(k), name) {
			return v
		}
	}
	return nil
}
