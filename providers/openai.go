package providers

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
)

// openAI speaks the OpenAI HTTP API: vLLM, OpenAI, TGI, Ollama, Together …
type openAI struct {
	// model is the backend's model as a JSON string, or nil to send none (NoModel).
	model []byte
	// rawModel is the model unquoted: the value of an audio call's model part.
	rawModel []byte
	// drop are the client's fields never sent (drop_params).
	drop []string
	// reasoning is set for OpenAI's reasoning models: max_tokens goes as
	// max_completion_tokens.
	reasoning   bool
	auth        []byte
	headers     [][2]string
	streamUsage bool
	timeout     time.Duration
	maxBody     int64
	// developerAsSystem sends a chat call's developer messages as system messages
	// (developer_role: system).
	developerAsSystem bool
	// secrets are the key and header values sent upstream (and the credentials of an
	// Authorization-like header without its scheme), and the values of the targets'
	// URL query: an error answer that quotes one ("Incorrect API key provided:
	// sk-...") reaches the client masked.
	secrets [][]byte
}

// addSecret records v, the backend's key, as a value no error answer may pass on,
// however short; see appendCredential.
func (o *openAI) addSecret(v string) { o.secrets = appendCredential(o.secrets, v) }

// appendHeaderSecrets adds the value of header name to secrets and, where the value
// is "scheme credentials" (Authorization: Bearer <token>), the credentials alone too:
// an upstream that quotes what it received quotes the token, not the header
// ("Access token eyJ0... is missing or invalid"). Any scheme counts in a header named
// like Authorization (Proxy-Authorization, cf-aig-authorization); Bearer and Basic in
// any header. Basic credentials are user:password in base64 (RFC 7617), which an
// upstream decodes before it quotes them ("user gateway:s3cret refused"): the decoded
// user:password and the password alone are added too. The credentials, and the value
// of a header named for one (credentialHeader), are masked however short
// (appendCredential); another header's value only from appendSecret's length on.
func appendHeaderSecrets(secrets [][]byte, name, v string) [][]byte {
	if credentialHeader(name) {
		secrets = appendCredential(secrets, v)
	} else {
		secrets = appendSecret(secrets, v)
	}
	cred, ok := authCredentials(name, v)
	if !ok {
		return secrets
	}
	secrets = appendCredential(secrets, cred)
	if scheme, _, _ := strings.Cut(strings.TrimSpace(v), " "); strings.EqualFold(scheme, "Basic") {
		if userPass, pass, ok := basicCredentials(cred); ok {
			secrets = appendCredential(secrets, userPass)
			secrets = appendCredential(secrets, pass)
		}
	}
	return secrets
}

// basicCredentials decodes Basic credentials into user:password and the password
// (what follows the first colon, RFC 7617, 2), if cred is base64 of such a pair. The
// padding may be left out, as some clients do and servers accept.
func basicCredentials(cred string) (userPass, pass string, ok bool) {
	dec, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		if dec, err = base64.RawStdEncoding.DecodeString(cred); err != nil {
			return "", "", false
		}
	}
	userPass = string(dec)
	_, pass, ok = strings.Cut(userPass, ":")
	return userPass, pass, ok
}

// authCredentials splits a header value of the form auth-scheme 1*SP credentials
// (RFC 9110, 11.4) and returns the credentials, if the header carries them.
func authCredentials(name, v string) (string, bool) {
	v = strings.TrimSpace(v)
	sp := strings.IndexByte(v, ' ')
	if sp <= 0 {
		return "", false
	}
	scheme, cred := v[:sp], strings.TrimLeft(v[sp+1:], " ")
	if cred == "" || !httpguts.ValidHeaderFieldName(scheme) {
		return "", false
	}
	if !strings.Contains(strings.ToLower(name), "authorization") &&
		!strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "Basic") {
		return "", false
	}
	return cred, true
}

func newOpenAI(c *Config) *openAI {
	o := &openAI{model: quoteModel(c.Model), rawModel: []byte(c.Model), drop: c.DropParams, reasoning: openAIReasoningModel(c.Model),
		developerAsSystem: c.DeveloperRole == DeveloperAsSystem, streamUsage: c.streamUsage(), timeout: c.Timeout, maxBody: int64(c.MaxResponseBytes)}
	if c.NoModel && c.Model == "" {
		o.model = nil // appendBody leaves the member out
	}
	if c.APIKey != "" {
		o.auth = []byte("Bearer " + c.APIKey)
		o.addSecret(c.APIKey)
	}
	for k, v := range c.Headers {
		o.headers = append(o.headers, [2]string{k, v})
		o.secrets = appendHeaderSecrets(o.secrets, k, v)
	}
	o.secrets = appendEncoded(appendQuerySecrets(o.secrets, c))
	return o
}

// appendQuerySecrets adds the values of the query of the backend's URLs to secrets, as
// written and decoded: every request carries that query (operationURL), and it may
// hold a credential (a signed token, the key of a gateway in front of the upstream)
// that an upstream refusing it quotes ("signature sv=... expired"). api-version is
// left out: it names the API version, which an error about it had better show.
func appendQuerySecrets(secrets [][]byte, c *Config) [][]byte {
	for _, raw := range append([]string{c.BaseURL}, c.Targets...) {
		_, q, ok := strings.Cut(raw, "?")
		if !ok {
			continue
		}
		q, _, _ = strings.Cut(q, "#")
		for part := range strings.SplitSeq(q, "&") {
			k, v, _ := strings.Cut(part, "=")
			if name, err := url.QueryUnescape(k); err == nil && strings.EqualFold(name, "api-version") {
				continue
			}
			secrets = appendSecret(secrets, v)
			if dec, err := url.QueryUnescape(v); err == nil {
				secrets = appendSecret(secrets, dec)
			}
		}
	}
	return secrets
}

var (
	strContentType = []byte("Content-Type")
	strJSON        = []byte("application/json")
	strPost        = []byte("POST")
	strAuthz       = []byte("Authorization")
	strEventStream = []byte("text/event-stream")
	// Sent with every request: without an Accept-Encoding the upstream (or a proxy
	// in front of it) may code the answer as it likes (RFC 9110, 12.5.3), and the
	// gateway reads usage from the body and passes it on uncoded.
	strAcceptEncoding = []byte("Accept-Encoding")
	strIdentity       = []byte("identity")
)

// Send implements Provider.
func (o *openAI) Send(t *Target, call *Call, out *fasthttp.Response, res *Result) error {
	if call.Kind.Anthropic() {
		return o.sendMessages(t, call, out, res)
	}
	if call.Kind.Form() {
		return o.sendForm(t, call, out, res)
	}
	req := o.request(t, call, call.Kind)
	defer fasthttp.ReleaseRequest(req)
	forceUsage := o.forceUsage(call)
	buf := bodyPool.Get().(*[]byte)
	*buf = appendBody((*buf)[:0], call, o.model, forceUsage)
	if o.reasoning && call.Kind == Chat {
		// Renamed first: drop_params names the fields as the upstream would get them.
		*buf = renameMaxTokens(*buf)
	}
	if len(o.drop) > 0 {
		*buf = dropFields(*buf, o.drop)
	}
	if o.developerAsSystem && call.Kind == Chat && call.bridged == nil && !call.messagesBridged {
		// A bridge's chat body holds no developer message: the Responses bridge
		// folds them into its system message, and the Messages API has none.
		*buf = developerAsSystem(*buf)
	}
	req.SetBodyRaw(*buf)

	up, err := o.answer(t, req, call, out, res)
	putBody(buf)
	if err != nil {
		return err
	}
	if call.Stream {
		r := o.events(t, up, out, forceUsage)
		if call.Kind == Chat || call.Kind == Completions {
			// A legacy completions stream ends as chat's: its chunks' choices
			// carry an index and a finish_reason, its usage comes as chat's.
			r.end.start(call.Choices, call.IncludeUsage || forceUsage)
		}
		if call.DeltaText && call.Kind == Completions {
			// MLflow's invocation route streams completions as its
			// text_completion_chunks, as the providers serving them through chat do.
			res.Stream = acquireTextStream(r, true, true)
			return nil
		}
		r.responses = call.Kind == Responses
		res.Stream = r
		return nil
	}
	err = o.passAnswer(t, up, out, res)
	if !call.Kind.Generates() {
		res.Usage.totalAsInput()
	}
	return err
}

// passAnswer gives out up, a 2xx answer on t read whole, as it came once it is found to
// be one JSON object, its usage read into res, an error object in it masked; the
// attempt ends (endAttempt).
func (o *openAI) passAnswer(t *Target, up, out *fasthttp.Response, res *Result) error {
	defer endAttempt(t, up)
	ok, isError := scanAnswerTo(up.Body(), &res.Usage, res)
	if !ok {
		return ErrBadResponse
	}
	out.SetStatusCode(up.StatusCode())
	out.Header.SetContentTypeBytes(jsonType(up.Header.ContentType()))
	swapBody(out, up)
	if isError {
		maskBody(out, o.secrets)
	}
	return nil
}

// forceUsage reports whether the call's stream asks the upstream for usage on the
// client's behalf: chat and completions streams, whose usage comes only when asked
// for (a Responses API stream always ends with its usage).
func (o *openAI) forceUsage(call *Call) bool {
	return call.Stream && !call.IncludeUsage && o.streamUsage && (call.Kind == Chat || call.Kind == Completions)
}

// request is a request for operation op on t with the client's forwarded headers and
// the backend's own, without its body; the caller releases it.
func (o *openAI) request(t *Target, call *Call, op Kind) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	copyForwardHeaders(&req.Header, call)
	req.Header.SetMethodBytes(strPost)
	t.setRequestURL(req, op)
	req.Header.SetContentTypeBytes(strJSON)
	req.Header.SetBytesKV(strAcceptEncoding, strIdentity)
	if o.auth != nil {
		req.Header.SetBytesKV(strAuthz, o.auth)
	}
	for _, h := range o.headers {
		setHeader(&req.Header, h[0], h[1])
	}
	return req
}

// authorize sets on h the credentials and headers every request to the upstream
// carries: its key and the backend's headers (healthAuthorizer).
func (o *openAI) authorize(h *fasthttp.RequestHeader) {
	if o.auth != nil {
		h.SetBytesKV(strAuthz, o.auth)
	}
	for _, kv := range o.headers {
		setHeader(h, kv[0], kv[1])
	}
}

// answer sends req to t and returns the upstream's 2xx answer, an event stream for a
// stream call; the attempt stays in flight on t until it is released (endAttempt).
// Another answer is released here: an API error goes to out as the upstream's answer
// (passError), anything else is notAnswer or notStreamed's error. res.Status is the
// answer's status, whichever it was.
func (o *openAI) answer(t *Target, req *fasthttp.Request, call *Call, out *fasthttp.Response, res *Result) (*fasthttp.Response, error) {
	up, err := roundTrip(t, req, call, res, o.timeout)
	if err != nil {
		return nil, err
	}
	if status := up.StatusCode(); status < 200 || status > 299 {
		defer endAttempt(t, up)
		if !isErrorStatus(status) {
			return nil, notAnswer(status)
		}
		return nil, passError(up, out, status, o.maxBody, o.secrets, call.Hold)
	}
	if call.Stream {
		if call.Kind.Form() && up.BodyStream() != nil && !hasPrefixFold(up.Header.ContentType(), strEventStream) {
			// An audio upstream that does not stream (OpenAI's translations,
			// whisper-1) answers whole, as it documents: that answer is passed on.
			if err := wholeBody(up, o.maxBody, call.Hold); err != nil {
				endAttempt(t, up)
				return nil, err
			}
			return up, nil
		}
		if err := notStreamed(t, up); err != nil {
			return nil, err
		}
	} else if coded(up.Header.ContentEncoding()) {
		if err := decodeBody(up, o.maxBody, call.Hold); err != nil {
			endAttempt(t, up)
			return nil, err
		}
	}
	return up, nil
}

// events reads up, a 2xx event stream answer on t, as the call's stream, and gives out
// its status; forced is forceUsage's.
func (o *openAI) events(t *Target, up, out *fasthttp.Response, forced bool) *sseReader {
	out.SetStatusCode(up.StatusCode())
	s := acquireSSE()
	s.reset(up, t, up.BodyStream(), forced)
	s.secrets = o.secrets
	return s
}

// notStreamed is the error of a stream answered with a content type other than
// text/event-stream, or in a Content-Encoding, nil for an uncoded event stream; with
// an error, up is released (endAttempt).
func notStreamed(t *Target, up *fasthttp.Response) error {
	var err error
	switch {
	case up.BodyStream() == nil:
		// A 2xx without a body (204): nothing to stream, not the API's answer.
		err = errors.Join(ErrBadResponse, errors.New("upstream answered "+strconv.Itoa(up.StatusCode())+" without a body to stream"))
	case coded(up.Header.ContentEncoding()):
		// A stream's events are read as they come, not decoded: refused from the
		// header, before the client has any of it, rather than at its first bytes,
		// which may come after the header has gone out.
		err = errors.Join(ErrBadResponse, errors.New("upstream stream in Content-Encoding "+string(up.Header.ContentEncoding())+", whose events the gateway does not decode"))
	case hasPrefixFold(up.Header.ContentType(), strEventStream):
		return nil
	default:
		err = badStreamType(up.Header.ContentType())
	}
	endAttempt(t, up)
	return err
}

// endAttempt ends an attempt on t whose answer up gives no result: up goes back to
// fasthttp and the attempt no longer counts in flight on t.
func endAttempt(t *Target, up *fasthttp.Response) {
	t.inFlight.Add(-1)
	fasthttp.ReleaseResponse(up)
}

// isErrorStatus reports whether status is an API error (4xx, 5xx), whose body goes to
// the client as the upstream's answer.
func isErrorStatus(status int) bool { return status >= 400 && status <= 599 }

// notAnswer is the error for an upstream status that is neither a success nor an
// error: a redirect, a 304 to a POST, an interim 1xx where the final answer belongs.
// It is not the API's answer, so it is an invalid one: passed on, a redirect would
// send the client around the gateway (and following it, the backend's key elsewhere).
func notAnswer(status int) error {
	return errors.Join(ErrBadResponse, errors.New("upstream answered "+strconv.Itoa(status)+", neither a success nor an error"))
}

// badStreamType is the error for a stream answered with another content type.
func badStreamType(ct []byte) error {
	if len(ct) == 0 {
		return errors.Join(ErrBadResponse, errors.New("stream answered without a content type"))
	}
	return errors.Join(ErrBadResponse, errors.New("stream answered with content type "+string(ct)))
}

// jsonIfNone is ct, or application/json when the upstream sent no Content-Type: the
// body was checked to be JSON (a success) or is passed on as the upstream's JSON error,
// and the official SDKs refuse an answer labelled otherwise. roundTrip keeps fasthttp
// from filling in its own default, text/plain.
func jsonIfNone(ct []byte) []byte {
	if len(ct) == 0 {
		return strJSON
	}
	return ct
}

// jsonType is the Content-Type of a body known to be JSON that the upstream labelled
// ct: ct when it says JSON (application/json, parameters and all, or a +json type),
// else application/json. An upstream or a proxy in front of it may label JSON
// text/plain or application/octet-stream, and the official SDKs refuse a success
// labelled other than JSON (openai-go: "content-type ... that is not
// application/json") though the gateway checked its body.
func jsonType(ct []byte) []byte {
	mt := ct
	if i := bytes.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = bytes.TrimSpace(mt)
	if bytes.EqualFold(mt, strJSON) || len(mt) > len(strPlusJSON) && bytes.EqualFold(mt[len(mt)-len(strPlusJSON):], strPlusJSON) {
		return ct
	}
	return strJSON
}

var strPlusJSON = []byte("+json")

// errorType is the Content-Type of an upstream error answer labelled ct with body b:
// jsonType's when b is JSON, so that a client reads the upstream's error as one;
// otherwise (a proxy's HTML page) ct as it came (jsonIfNone).
func errorType(ct, b []byte) []byte {
	if jsonscan.Valid(b) {
		return jsonType(ct)
	}
	return jsonIfNone(ct)
}

// coded reports whether enc, a Content-Encoding value, names a coding other than
// identity: one, or a list of the codings applied in turn (RFC 9110, 8.4).
func coded(enc []byte) bool {
	for len(enc) > 0 {
		c := enc
		if i := bytes.IndexByte(enc, ','); i >= 0 {
			c, enc = enc[:i], enc[i+1:]
		} else {
			enc = nil
		}
		if isCoding(c) {
			return true
		}
	}
	return false
}

// isCoding reports whether c, one member of a Content-Encoding list, is a coding to
// undo: not empty, not identity.
func isCoding(c []byte) bool {
	c = bytes.TrimSpace(c)
	return len(c) > 0 && !bytes.EqualFold(c, strIdentity)
}

var (
	strGzip    = []byte("gzip")
	strXGzip   = []byte("x-gzip")
	strDeflate = []byte("deflate")
	strBr      = []byte("br")
	strZstd    = []byte("zstd")
)

// decodeBody replaces up's buffered body, coded as its Content-Encoding says, by the
// body decoded. Every request asks for identity, but an upstream or a proxy in front
// of it (one that compresses whatever it passes) may code the answer anyway; the
// gateway reads it and passes it on uncoded, without its Content-Encoding, the
// decoded buffer held as uncodedHeld holds it.
func decodeBody(up *fasthttp.Response, max int64, hold AnswerHold) error {
	b, err := uncodedHeld(up.Header.ContentEncoding(), up.Body(), max, hold)
	if err != nil {
		return err
	}
	up.SwapBody(b)
	up.Header.SetContentEncodingBytes(nil)
	return nil
}

// uncodedHeld is uncoded(enc, body, max), its buffer counted by hold, when set, in
// place of the coded one read (readBody, readToClose) once it is over
// maxPooledBuffer: a decoded answer grows past what came (a few KiB of gzip can hold
// max bytes), and one hold has no room for is ErrAnswerNoRoom, its buffer let go
// rather than held while it is passed on.
func uncodedHeld(enc, body []byte, max int64, hold AnswerHold) ([]byte, error) {
	b, err := uncoded(enc, body, max)
	if err == nil && hold != nil && cap(b) > maxPooledBuffer && !hold.HoldAnswer(cap(b)) {
		return nil, ErrAnswerNoRoom
	}
	return b, err
}

// uncoded is body, coded in the content codings enc lists, decoded into a new slice:
// the last coding applied is undone first (RFC 9110, 8.4); identity in the list is no
// step. The decoded size is bounded by max, the buffered-answer limit, at every step,
// not only the coded one: a few KiB of gzip can hold gigabytes of zeros. An answer
// that does not decode, or in a coding the gateway does not know, is an invalid answer.
func uncoded(enc, body []byte, max int64) ([]byte, error) {
	if len(body) == 0 {
		// Nothing to decode (a proxy that labels every answer it passes gzip), as
		// Go's transport and curl --compressed read it.
		return body, nil
	}
	for rest := enc; ; {
		i := bytes.LastIndexByte(rest, ',')
		if c := bytes.TrimSpace(rest[i+1:]); isCoding(c) {
			var err error
			if body, err = uncode(c, body, max); err != nil {
				return nil, err
			}
		}
		if i < 0 {
			return body, nil
		}
		rest = rest[:i]
	}
}

// uncode is body, coded in the one content coding c, decoded into a new slice of at
// most max bytes.
func uncode(c, body []byte, max int64) ([]byte, error) {
	r := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(r)
	r.SetBodyRaw(body)
	var b []byte
	var err error
	switch limit := int(max); {
	case bytes.EqualFold(c, strGzip), bytes.EqualFold(c, strXGzip):
		b, err = r.BodyGunzipWithLimit(limit)
	case bytes.EqualFold(c, strDeflate):
		b, err = r.BodyInflateWithLimit(limit)
	case bytes.EqualFold(c, strBr):
		b, err = r.BodyUnbrotliWithLimit(limit)
	case bytes.EqualFold(c, strZstd):
		b, err = r.BodyUnzstdWithLimit(limit)
	default:
		return nil, errors.Join(ErrBadResponse, errors.New("upstream answer in Content-Encoding "+string(c)+", which the gateway does not decode"))
	}
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return nil, ErrAnswerTooLarge
	case err != nil:
		return nil, errors.Join(ErrBadResponse, errors.New("upstream answer does not decode as its Content-Encoding "+string(c)+" says"), err)
	}
	return b, nil
}

// roundTrip sends req to t within the call's deadline and the backend's timeout. On
// success the attempt stays counted in flight on t until the caller releases the
// response (and decrements the count): for a stream, when the stream closes.
// res.Status is the answer's status once its header came, even when its body then
// failed: the attempt's span tells an upstream that answered something invalid from
// one that never answered.
func roundTrip(t *Target, req *fasthttp.Request, call *Call, res *Result, timeout time.Duration) (*fasthttp.Response, error) {
	up := fasthttp.AcquireResponse()
	up.StreamBody = call.Stream
	// An answer without a Content-Type then reads as one (ContentType() empty)
	// instead of fasthttp's default text/plain; see jsonIfNone.
	up.Header.SetNoDefaultContentType(true)
	// The attempt's start (Backend.Send sets it just before): no clock reading of
	// its own on every request.
	now := res.Sent
	if now.IsZero() {
		now = time.Now()
	}
	deadline, callBound := call.Deadline, true
	if d := now.Add(timeout); deadline.IsZero() || d.Before(deadline) {
		deadline, callBound = d, false
	}
	if !now.Before(deadline) {
		// The deadline ran out while the attempt waited for a slot: nothing was
		// sent, so nothing counts against the target.
		fasthttp.ReleaseResponse(up)
		return nil, errDeadlineSpent
	}
	if call.Sent != nil {
		call.Sent.ReadSent(req.Body())
	}
	t.inFlight.Add(1)
	watchClient(req, call)
	err := t.client.DoDeadline(req, up, deadline)
	call.unwatchClient()
	if err != nil {
		// fasthttp keeps an answer's header when the read of its body fails and
		// resets one it could not read whole, so a Content-Length other than 0
		// (a length, -1 chunked, -2 up to the close) says the header came.
		headed := up.Header.ContentLength() != 0
		if headed {
			res.Status = up.StatusCode()
		}
		endAttempt(t, up)
		if headed {
			err = classifyBody(err)
		} else {
			err = classify(err)
		}
		if callBound && errors.Is(err, ErrTimeout) && !time.Now().Before(deadline) {
			// It ran to the call's own deadline: a first-byte bound that fired would
			// have ended it sooner. See callDeadlineError.
			err = callDeadlineError{err}
		}
		return nil, err
	}
	res.Status = up.StatusCode()
	return up, nil
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// putBody returns an upstream request body buffer to bodyPool. One grown past
// maxPooledBuffer by a large request is dropped: one big prompt should not pin its
// memory to every later request.
func putBody(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	bodyPool.Put(b)
}

// swapBody moves up's body into out without copying, handing out's buffer to up.
// The buffer goes back with its full capacity as its length: fasthttp's body pool
// sizes what it keeps by the length of what it is given, and a gateway's server
// responses arrive empty (fasthttp resets them before the handler runs), so
// handing back an empty slice would teach the pool that bodies are under 64
// bytes; past its calibration it would then drop every buffer handed back and
// allocate (and grow) one for each upstream answer. A body over maxPooledBuffer
// goes to out as setAnswer gives it, and up's buffer back empty: fasthttp's pool
// then keeps no buffer that size either.
func swapBody(out, up *fasthttp.Response) {
	if cap(up.Body()) > maxPooledBuffer {
		out.SetBodyRaw(up.SwapBody(nil))
		return
	}
	b := out.SwapBody(nil)
	out.SwapBody(up.SwapBody(b[:cap(b)]))
}

// setAnswer makes b, a body built for the client, out's body. One over
// maxPooledBuffer is out's raw body, which the server lets go once it is written:
// swapped in as out's body buffer, it would stay with the client's connection,
// which the server keeps with its response's buffer (ReduceMemoryUsage off) for the
// next request on it, for as long as the client keeps the connection idle in its
// pool (Go's for 90s, up to server.idle_timeout): a batch client's eight idle
// connections held over 300 MB after 40 MB embeddings answers.
func setAnswer(out *fasthttp.Response, b []byte) {
	if cap(b) > maxPooledBuffer {
		out.SetBodyRaw(b)
		return
	}
	out.SwapBody(b)
}

// passError copies an upstream error answer to out, reading a streamed body in full,
// with any of secrets it quotes masked. A streamed body over max is not cut to fit
// (the client would get a truncated body as the upstream's error): the answer is
// invalid, ErrAnswerTooLarge, as a buffered one over the limit is. A streamed body
// is read as hold allows, as a buffered one was (readStreamed): one it has no room
// for is ErrAnswerNoRoom.
func passError(up, out *fasthttp.Response, status int, max int64, secrets [][]byte, hold AnswerHold) error {
	ue := &UpstreamError{Status: status, RetryAfter: upstreamRetryAfter(&up.Header), Retry: retryHint(&up.Header)}
	enc := up.Header.ContentEncoding()
	if up.StreamBody && up.BodyStream() != nil {
		body, err := readStreamed(up, max, hold)
		if err != nil {
			return err
		}
		if len(body) == 0 {
			fe := emptyError(status)
			fe.write(out, status, secrets)
			return ue
		}
		if fe, ok := flatError(body); ok {
			fe.write(out, status, secrets)
			return ue
		}
		out.SetStatusCode(status)
		out.Header.SetContentTypeBytes(errorType(up.Header.ContentType(), body))
		out.SetBodyRaw(maskAll(body, secrets))
		return ue
	}
	if coded(enc) {
		if err := decodeBody(up, max, hold); err != nil {
			return err
		}
	}
	if len(up.Body()) == 0 {
		fe := emptyError(status)
		fe.write(out, status, secrets)
		return ue
	}
	if fe, ok := flatError(up.Body()); ok {
		fe.write(out, status, secrets)
		return ue
	}
	out.SetStatusCode(status)
	out.Header.SetContentTypeBytes(errorType(up.Header.ContentType(), up.Body()))
	swapBody(out, up)
	maskBody(out, secrets)
	return ue
}

// emptyError is the error object for an upstream error answered with an empty body,
// which the SDKs would report with no message (or fail to decode as JSON): it says so,
// with the type of the status (flatErrorType) and no code.
func emptyError(status int) flatErr {
	return flatErr{msg: jsonscan.AppendQuote(nil, "The upstream answered HTTP "+strconv.Itoa(status)+" with an empty body.")}
}

// flatErr is an upstream error answered outside OpenAI's "error" object (flatError):
// its members as the upstream wrote them, JSON strings with their quotes, nil where
// it gave none.
type flatErr struct {
	msg, typ, param, code []byte
}

// flatError reads an error body in one of the flat shapes OpenAI-compatible servers
// answer with where OpenAI's holds an "error" object:
//   - {"error":"text"}, TGI's (which adds "error_type":"validation") and Ollama's:
//     msg is the text, code TGI's error_type;
//   - {"object":"error","message":…,"type":…,"param":…,"code":400}, the ErrorResponse
//     of vLLM before 0.10, SGLang and FastChat, dumped at the top level: msg, typ and
//     param are the upstream's, code only a string one. Their numeric code repeats
//     the HTTP status, which the client has, and OpenAI's code is a string or null
//     (openai-go's Error.Code is a string).
//
// The official SDKs cannot read either as an API error (the Node SDK reads only the
// body's "error" member and raises "400 status code (no body)"; openai-go fails to
// decode TGI's and returns a JSON error, losing the status), so the gateway answers
// such a body in OpenAI's shape. ok is false for any other body, which goes to the
// client as the upstream sent it.
func flatError(body []byte) (fe flatErr, ok bool) {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return flatErr{}, false
	}
	var text, object, msg, typ, param, code []byte
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "error":
			// An object here is OpenAI's shape already.
			if !jsonscan.IsString(v) {
				return flatErr{}, false
			}
			text = v
		case "error_type":
			fe.code = v
		case "object":
			object = v
		case "message":
			msg = v
		case "type":
			typ = v
		case "param":
			param = v
		case "code":
			code = v
		}
	}
	if it.Err() != nil || jsonscan.SkipSpace(body, it.End()) != len(body) {
		return flatErr{}, false
	}
	switch {
	case text != nil:
		return flatErr{msg: text, code: stringOrNil(fe.code)}, true
	case string(object) == `"error"` && jsonscan.IsString(msg):
		return flatErr{msg: msg, typ: stringOrNil(typ), param: stringOrNil(param), code: stringOrNil(code)}, true
	}
	return flatErr{}, false
}

// stringOrNil is raw if it is a JSON string, else nil.
func stringOrNil(raw []byte) []byte {
	if !jsonscan.IsString(raw) {
		return nil
	}
	return raw
}

// write answers fe to the client in OpenAI's shape with status, with any of secrets
// its members quote masked; one without a type gets flatErrorType's. The upstream's
// strings go as it escaped them (the scan validated them), not decoded and quoted
// again: a 4 MiB validation error echoing a request costs about its size once more,
// not several times it.
func (fe *flatErr) write(out *fasthttp.Response, status int, secrets [][]byte) {
	out.SetStatusCode(status)
	out.Header.SetContentTypeBytes(strJSON)
	b := out.SwapBody(nil)[:0]
	if n := len(fe.msg) + len(fe.typ) + len(fe.param) + len(fe.code) + 64; cap(b) < n {
		b = make([]byte, 0, n)
	}
	b = append(b, `{"error":{"message":`...)
	b = appendMaskedString(b, fe.msg, secrets)
	b = append(b, `,"type":`...)
	if fe.typ == nil {
		b = jsonscan.AppendQuote(b, b2s(flatErrorType(status)))
	} else {
		b = appendMaskedString(b, fe.typ, secrets)
	}
	b = append(b, `,"param":`...)
	if fe.param == nil {
		b = append(b, "null"...)
	} else {
		b = appendMaskedString(b, fe.param, secrets)
	}
	b = append(b, `,"code":`...)
	if fe.code == nil {
		b = append(b, "null"...)
	} else {
		b = appendMaskedString(b, fe.code, secrets)
	}
	setAnswer(out, append(b, "}}"...))
}

// appendMaskedString appends raw, a valid JSON string, with any of secrets its text
// quotes masked. One quoting none (the common case) is copied as it is; one quoting
// a secret is decoded, masked and quoted again, since *** put in place of escaped
// text could leave a broken escape or stand for a quote.
func appendMaskedString(dst, raw []byte, secrets [][]byte) []byte {
	inner := raw[1 : len(raw)-1]
	if m := maskAll(inner, secrets); len(m) == len(inner) && (len(m) == 0 || &m[0] == &inner[0]) {
		return append(dst, raw...)
	}
	text, _ := jsonscan.AppendUnquote(nil, raw)
	return jsonscan.AppendQuote(dst, b2s(maskAll(text, secrets)))
}

var strServerError = []byte("server_error")

// flatErrorType is the OpenAI error type of a flat upstream error answered with
// status: the client's request for a 4xx, the server for the rest.
func flatErrorType(status int) []byte {
	if status < 500 {
		return strInvalidRequest
	}
	return strServerError
}

// maxRetryAfter bounds the wait an upstream's Retry-After asks for.
const maxRetryAfter = 24 * time.Hour

// upstreamRetryAfter is the wait an upstream's error answer asks for. Its
// retry-after-ms (milliseconds) is read before Retry-After, as the OpenAI SDKs do:
// Azure OpenAI throttles with it, at times with no Retry-After at all.
func upstreamRetryAfter(h *fasthttp.ResponseHeader) time.Duration {
	if v := peekFold(h, "Retry-After-Ms"); len(v) > 0 {
		if n, err := strconv.ParseFloat(string(v), 64); err == nil && n >= 0 {
			return time.Duration(min(n, float64(maxRetryAfter.Milliseconds())) * float64(time.Millisecond))
		}
	}
	return retryAfter(peekFold(h, "Retry-After"))
}

// retryAfter reads a Retry-After value: delay-seconds or an HTTP-date in any of the
// three forms RFC 9110 §5.6.7 has a recipient accept (IMF-fixdate, RFC 850, asctime).
func retryAfter(v []byte) time.Duration {
	if len(v) == 0 {
		return 0
	}
	if n, err := strconv.ParseFloat(string(v), 64); err == nil && n >= 0 {
		// "inf" or 1e30 seconds would overflow a Duration into a negative wait:
		// a day is as good as forever to a request.
		return time.Duration(min(n, maxRetryAfter.Seconds()) * float64(time.Second))
	}
	if t, err := http.ParseTime(string(v)); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}

// ErrAnswerTooLarge is an upstream answer over the buffered-answer limit
// (MaxResponseBytes): the upstream's invalid answer, not a connection failure. It is
// not retried, since another attempt re-runs the whole generation for the same answer.
// It names the key, for the operator reading the log of a legitimate large answer.
var ErrAnswerTooLarge = errors.Join(ErrBadResponse, errors.New("upstream answer too large: over the backend's max_response_bytes"))

// classify maps transport errors onto ErrTimeout or ErrConnect, keeping the cause, and
// an answer that is not HTTP or is over the limit onto ErrBadResponse; an answer the
// call's Hold had no room for stays ErrAnswerNoRoom. Every
// connection max_connections allows being busy is the gateway's own limit:
// ErrOverloaded, which says nothing against the target.
func classify(err error) error {
	var ne net.Error
	if we, ok := errors.AsType[*waitError](err); ok {
		// The reader gave up (a watched call's client left), not the upstream.
		return we.err
	}
	switch {
	case errors.Is(err, ErrBadResponse):
		// The transport found the answer invalid already (errBothFramings).
		return err
	case errors.Is(err, ErrAnswerNoRoom):
		// The gateway's own bound on the answers it holds, not the upstream's.
		return err
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return ErrAnswerTooLarge
	case notHTTP(err):
		return errors.Join(ErrBadResponse, err)
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return errors.Join(errConnsBusy, err)
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded):
		return errors.Join(ErrTimeout, err)
	case errors.As(err, &ne) && ne.Timeout():
		return errors.Join(ErrTimeout, err)
	}
	return errors.Join(ErrConnect, err)
}

// errAnswerCut is an answer whose body the connection's close or reset cut short
// (fewer bytes than its Content-Length, a chunked body without its last chunk): the
// upstream was reached and answered, so it is an invalid answer, not an unreachable
// upstream. It is not retried: the upstream has done the work that an answer it
// began sending stands for, as with an answer over the limit.
var errAnswerCut = errors.Join(ErrBadResponse, errors.New("upstream answer cut short after its header"))

// classifyBody is classify for a failure to read an answer's body, its header having
// come: what classify takes for an unreachable upstream is a cut answer
// (errAnswerCut); a timeout stays one, the upstream too slow.
func classifyBody(err error) error {
	if c := classify(err); !errors.Is(c, ErrConnect) {
		return c
	}
	return errors.Join(errAnswerCut, err)
}

// notHTTP reports whether err is fasthttp failing to parse what the upstream sent as
// a response header (a status line that is not HTTP's: another protocol on the port,
// an HTML page with no header): an invalid answer, not an unreachable upstream. A
// header cut short by the connection closing (EOF) or a timeout stays a transport
// error.
func notHTTP(err error) bool {
	var ne net.Error
	return strings.HasPrefix(err.Error(), "error when reading response headers: ") &&
		!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &ne) &&
		!errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, fasthttp.ErrTimeout)
}

func hasPrefixFold(b, prefix []byte) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i, c := range prefix {
		d := b[i]
		if d >= 'A' && d <= 'Z' {
			d += 'a' - 'A'
		}
		if d != c {
			return false
		}
	}
	return true
}
