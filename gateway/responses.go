package gateway

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"net/url"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/tracing"
	"github.com/valyala/fasthttp"
)

// A response of the Responses API is stored by the replica that made it (vLLM keeps it
// in its process, OpenAI per organisation), and a later call naming it
// (previous_response_id, GET /v1/responses/{id}) must reach that replica. The gateway
// tags each response ID it passes to a client with the replica that answered: the ID
// gains "-tg" and 12 hex digits, a hash of the backend's name and the target's URL
// without its query (which may hold a credential that is rotated), the same on every
// gateway replica with that config and unchanged by reloads that keep the target. A
// call naming a tagged ID is sent to that target, the tag cut from what goes upstream.
//
// With auth.response_secret set, the tag goes on with 16 hex digits more: the first
// 64 bits of an HMAC-SHA256, under that secret, of the client key's name, the target's
// tag and the ID. Only the key that was answered with an ID can then name it: another
// key's tag on it, or none, is refused as an ID not found. While the secret is
// rotated, auth.previous_response_secret's signatures are taken too; IDs are
// answered signed under the new one.
const (
	respTagPrefix = "-tg"
	respTagHex    = 12
	respTagLen    = len(respTagPrefix) + respTagHex
	respMACHex    = 16
	respSignedLen = respTagLen + respMACHex
	// minResponseSecret is the shortest auth.response_secret taken.
	minResponseSecret = 16
)

// respTarget is the target a response tag names.
type respTarget struct {
	b *providers.Backend
	// bi is b's index in the runtime's backendList, i the target's in b's.
	bi, i int
}

// responseTag is the tag of the target at rawURL of backend name: its scheme, host and
// path count, not its query or fragment.
func responseTag(name, rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		rawURL = u.Scheme + "://" + u.Host + u.EscapedPath()
	}
	h := xxhash.Sum64String(name + "\x00" + rawURL)
	var b [respTagLen]byte
	copy(b[:], respTagPrefix)
	putHex(b[len(respTagPrefix):], int(h))
	return string(b[:])
}

// respSigner signs response IDs under auth.response_secret (see above) and takes
// those signed under auth.previous_response_secret too, while a secret is rotated;
// its HMACs are pooled, a reset one computing without allocating.
type respSigner struct {
	cur  hmacPool
	prev *hmacPool // nil without a previous secret
}

// hmacPool holds the HMAC states of one secret.
type hmacPool struct {
	pool sync.Pool // of *signState
}

// signState is an HMAC and the buffers it reads and writes: an array on the stack
// passed to an interface's method would be allocated each call.
type signState struct {
	h   hash.Hash
	n   [2]byte
	sum [sha256.Size]byte
}

func newHMACPool(secret string) *hmacPool {
	key := []byte(secret)
	p := &hmacPool{}
	p.pool.New = func() any { return &signState{h: hmac.New(sha256.New, key)} }
	return p
}

// newRespSigner signs under secret and also takes signatures made under previous,
// when it is not empty.
func newRespSigner(secret, previous string) *respSigner {
	s := &respSigner{cur: *newHMACPool(secret)}
	if previous != "" {
		s.prev = newHMACPool(previous)
	}
	return s
}

// sign writes into dst (respMACHex bytes) the signature of id, tagged with tag
// (respTagLen bytes), as answered to the key named key.
func (s *respSigner) sign(dst, key, tag, id []byte) {
	s.cur.sign(dst, key, tag, id)
}

func (p *hmacPool) sign(dst, key, tag, id []byte) {
	st := p.pool.Get().(*signState)
	h := st.h
	h.Reset()
	binary.BigEndian.PutUint16(st.n[:], uint16(len(key)))
	h.Write(st.n[:])
	h.Write(key)
	h.Write(tag)
	h.Write(id)
	h.Sum(st.sum[:0])
	putHex(dst, int(binary.BigEndian.Uint64(st.sum[:8])))
	p.pool.Put(st)
}

// valid reports whether mac is the signature of id tagged with tag for key, under
// the secret or the previous one.
func (s *respSigner) valid(mac, key, tag, id []byte) bool {
	var want [respMACHex]byte
	s.cur.sign(want[:], key, tag, id)
	if subtle.ConstantTimeCompare(want[:], mac) == 1 {
		return true
	}
	if s.prev == nil {
		return false
	}
	s.prev.sign(want[:], key, tag, id)
	return subtle.ConstantTimeCompare(want[:], mac) == 1
}

// taggedTarget returns the ID without its tag, the target the tag names and the tag's
// signature (nil without auth.response_secret), when id ends with a tag of one of the
// runtime's targets.
func (rt *runtime) taggedTarget(id []byte) (orig []byte, t respTarget, mac []byte, ok bool) {
	n := rt.tagLen
	t, ok = rt.tagAt(id, n)
	if !ok && rt.signer == nil {
		// Signed while auth.response_secret was set: without it now, the signature
		// is not checked, and the conversations go on.
		n = respSignedLen
		t, ok = rt.tagAt(id, n)
	}
	if !ok {
		return id, respTarget{}, nil, false
	}
	if rt.signer != nil {
		mac = id[len(id)-respMACHex:]
	}
	return id[:len(id)-n], t, mac, true
}

// tagAt returns the target named by a tag at the end of id, n bytes from it.
func (rt *runtime) tagAt(id []byte, n int) (respTarget, bool) {
	if len(id) <= n || string(id[len(id)-n:len(id)-n+len(respTagPrefix)]) != respTagPrefix {
		return respTarget{}, false
	}
	t, ok := rt.respTags[string(id[len(id)-n:len(id)-n+respTagLen])]
	return t, ok
}

// sharedResponses reports whether two client keys reach one backend with the
// Responses API through chat endpoints: without auth.response_secret, either could
// name the other's stored responses.
func (rt *runtime) sharedResponses() bool {
	for bi, b := range rt.backendList {
		if rt.byIDSpecs[b] == nil {
			continue
		}
		n := 0
		for _, k := range rt.keys {
			for _, ep := range rt.endpoints {
				if ep.kind == providers.Chat && k.allowed[ep.idx] && bi < len(ep.refused) && ep.refused[bi] != nil {
					n++
					break
				}
			}
			if n > 1 {
				return true
			}
		}
	}
	return false
}

// keyName is the name of the request's key, as response IDs are signed for it; empty
// without keys.
func (r *request) keyName() []byte {
	if r.key == nil {
		return nil
	}
	return r.key.nameBytes
}

// ownsResponse reports whether the request's key may name the response orig, tagged
// with t's tag and signed mac: always without auth.response_secret.
func (r *request) ownsResponse(orig []byte, t respTarget, mac []byte) bool {
	s := r.rt.signer
	return s == nil || s.valid(mac, r.keyName(), r.rt.attempts[t.b][t.i].tag, orig)
}

// tagOf is the tag of the target r's last attempt went to, nil when unknown; the
// attempt that answers keeps it in r.tag.
func (r *request) tagOf() []byte {
	if t := r.rt.target(r.be, r.res.Target); t != nil {
		return t.tag
	}
	return nil
}

// appendTagged appends src to dst with the IDs whose closing quotes are at offsets
// at[k] (those the provider's scan found: providers.IDEnds) tagged with tags[k], and
// signed for the request's key with auth.response_secret; an offset of 0, or one
// whose tag is empty, changes nothing.
func (r *request) appendTagged(dst, src []byte, at providers.IDEnds, tags [2][]byte) []byte {
	if at[1] < at[0] {
		at[0], at[1] = at[1], at[0]
		tags[0], tags[1] = tags[1], tags[0]
	}
	from := 0
	for k, i := range at {
		if i <= 0 || i < from || i > len(src) || len(tags[k]) == 0 {
			continue
		}
		dst = append(append(dst, src[from:i]...), tags[k]...)
		if s := r.rt.signer; s != nil {
			// The ID has no escapes (IDEnds): it begins after the quote before.
			id := src[bytes.LastIndexByte(src[:i], '"')+1 : i]
			n := len(dst)
			dst = append(dst, zeroMAC[:]...)
			s.sign(dst[n:], r.keyName(), tags[k], id)
		}
		from = i
	}
	return append(dst, src[from:]...)
}

var zeroMAC [respMACHex]byte

// errPreviousNotFound refuses a previous_response_id the gateway did not answer the
// request's key with (auth.response_secret): as OpenAI refuses an unknown one.
func errPreviousNotFound(id []byte) apiError {
	return apiError{400, "invalid_request_error", "previous_response_not_found", "previous_response_id",
		"Previous response with id '" + string(id) + "' not found."}
}

// untag cuts the tag from the previous_response_id of a Responses call and pins the
// call to the target the tag names; the body, copied without the tag, is scanned
// again, its spans moved. With auth.response_secret, an ID not signed for the
// request's key is refused.
func (r *request) untag() *apiError {
	span := r.f.prevResponse
	if span[0] < 0 {
		return nil
	}
	raw := r.body[span[0]:span[1]]
	id, t, mac, ok := r.rt.taggedTarget(raw)
	if r.rt.signer != nil && (!ok || !r.ownsResponse(id, t, mac)) {
		e := errPreviousNotFound(raw)
		return &e
	}
	if !ok {
		return nil
	}
	r.pin, r.prevTag = t, r.rt.attempts[t.b][t.i].tag
	if r.rt.signer == nil {
		// The answer's previous_response_id is the ID as sent, a signature made while
		// auth.response_secret was set included.
		r.prevTag = append(r.sentTag[:0], raw[len(id):]...)
	}
	// Into the request's own buffer: the body read may be the fasthttp request's.
	cut := span[0] + len(id)
	if cap(r.spliceBuf) == 0 {
		r.spliceBuf = getBodyBuf()
	}
	r.spliceBuf = append(append(r.spliceBuf[:0], r.body[:cut]...), r.body[span[1]:]...)
	r.body = r.spliceBuf
	return scanBody(r.body, &r.f)
}

// pinPlan sends the request to the backend and target its previous_response_id's tag
// names: the route whose backend it is, even if the caller's bucket picks another (a
// weight change moved the caller since), or, when it is a fallback of the planned
// route, first among that route's backends; when it is a context fallback (the
// conversation outgrew the route's context window), first before them. A backend the
// endpoint cannot reach is no pin: the request goes as planned and its upstream says
// what it knows of the ID.
func (r *request) pinPlan() {
	p := &r.plan
	bi := r.pin.bi
	if p.Targets[0].Backend != bi && !r.ep.routing.PlanFor(bi, r.start, p) {
		k := -1
		for j := range p.Targets {
			if p.Targets[j].Backend == bi {
				k = j
				break
			}
		}
		switch {
		case k >= 0:
			// The plan's targets are the router's: reordered in the request's own slice.
			r.pinTargets = append(append(append(r.pinTargets[:0], p.Targets[k]), p.Targets[:k]...), p.Targets[k+1:]...)
		case !r.pinContext(bi):
			return
		}
		p.Targets = r.pinTargets
	}
	r.call.PinTo(r.pin.b, r.pin.i)
}

// appendEvent appends data, a Responses API stream event, with the IDs of the
// response it carries (their offsets found by the provider's read of the event)
// tagged.
func (r *request) appendEvent(dst, data []byte) []byte {
	return r.appendTagged(dst, data, r.ev.IDEnds, [2][]byte{r.tag, r.prevTag})
}

// tagBody tags the IDs of the response object a Responses call was answered with
// (a 2xx body, its IDs found by the provider's scan): its id with the target that answered, its previous_response_id with
// the tag the client sent it with (none when it came without one). The body is
// written anew in the answer's own buffer.
func (r *request) tagBody(resp *fasthttp.Response) {
	if resp.StatusCode() < 200 || resp.StatusCode() > 299 {
		return
	}
	tags := [2][]byte{r.tag, r.prevTag}
	at := r.res.IDEnds
	if len(tags[0]) == 0 && len(tags[1]) == 0 || at[0] == 0 && at[1] == 0 {
		return
	}
	buf := r.appendTagged(getBodyBuf(), resp.Body(), at, tags)
	resp.SetBody(buf)
	putBodyBuf(buf)
}

// prefixResponses is the path of the calls on a stored response.
var prefixResponses = []byte("/v1/responses/")

var (
	strSlash     = []byte("/")
	strGetDelete = []byte("GET, DELETE")
	strGet       = []byte("GET")
)

// errStreamStored refuses the retrieval of a stored response as a stream (?stream=true,
// for a response made in the background): the gateway relays streams only as the
// answers to the calls that make them.
var errStreamStored = apiError{400, "invalid_request_error", "unsupported_parameter", "stream",
	"Streaming a stored response is not served by this gateway: retrieve it without stream=true, polling until its status is final."}

var strFalse = []byte("false")

// responseNotFound is 404 for a response ID the gateway cannot place: not tagged by
// it, or tagged with a target no longer in its config, or one the client's key may
// not reach.
func responseNotFound(id []byte) apiError {
	return apiError{404, "invalid_request_error", "not_found", "",
		"Response with id '" + string(id) + "' not found: the gateway finds a response by the ID it returned for it."}
}

// serveResponse serves a call on a stored response of the Responses API (GET or
// DELETE /v1/responses/{id}, POST .../{id}/cancel, GET .../{id}/input_items): the
// ID's tag names the backend and target that stored it, and the call goes there as
// the client made it, the tag cut. The caller's key must be allowed an endpoint that
// routes to that backend. The IDs of a response in the answer are tagged again.
func (s *Server) serveResponse(ctx *fasthttp.RequestCtx, rest []byte) {
	r := s.ownRequest(ctx)
	id, sub, _ := bytes.Cut(rest, strSlash)
	var allow []byte
	var ok bool
	switch responseRoute(ctx.Path()) {
	case routeResponse:
		allow, ok = strGetDelete, ctx.IsGet() || ctx.IsDelete()
	case routeResponseCancel:
		allow, ok = strPost, ctx.IsPost()
	case routeResponseItems:
		allow, ok = strGet, ctx.IsGet()
	default:
		r.fail(ctx, &errNotFound)
		return
	}
	if !ok {
		r.fail(ctx, methodNotAllowed(ctx, allow))
		return
	}
	if r.rt == nil {
		r.fail(ctx, &errShuttingDown)
		return
	}
	if e := r.auth(ctx); e != nil {
		r.fail(ctx, e)
		return
	}
	orig, t, mac, ok := r.rt.taggedTarget(id)
	if !ok || !plainID(orig) || !r.reaches(t.bi) || !r.ownsResponse(orig, t, mac) {
		e := responseNotFound(id)
		r.fail(ctx, &e)
		return
	}
	if ctx.QueryArgs().Has("stream") && !bytes.Equal(ctx.QueryArgs().Peek("stream"), strFalse) {
		r.fail(ctx, &errStreamStored)
		return
	}
	if ctx.IsGet() && len(sub) == 0 && ctx.Request.Header.ContentLength() != 0 {
		// The openai-go SDK's GetStreaming asks for the stream in a JSON body: without
		// this refusal it would read the plain answer as a stream with no event.
		if e := r.readBody(ctx); e != nil {
			if e == &errShuttingDown {
				r.cutOff(ctx)
				return
			}
			r.fail(ctx, e)
			return
		}
		if v, ok := jsonscan.Field(r.body, "stream"); ok {
			if on, _ := jsonscan.Bool(v); on {
				r.fail(ctx, &errStreamStored)
				return
			}
		}
	}
	// A stored response continues one stored on the same target.
	r.be, r.backend, r.tag = t.b, t.b.Name, r.rt.attempts[t.b][t.i].tag
	r.prevTag = r.tag
	if r.rt.signer == nil {
		// The answer names the response by the ID as sent (one signed before
		// included).
		r.tag = append(r.sentTag[:0], id[len(orig):]...)
	}
	r.series = r.rt.byID[t.b]
	r.forwardRequestID(&ctx.Request.Header)
	// Watched as a call's upstream wait is: a client that hangs up aborts it (499), and
	// so does the shutdown once shutdown_grace runs out (503 shutting_down).
	r.call = providers.Call{Kind: providers.Responses, Header: &ctx.Request.Header, Client: &r.hang, Hold: r}
	r.hang.conn, r.hang.s, r.hang.id = ctx.Conn(), r.s, ctx.ConnID()
	if cap(r.spliceBuf) == 0 {
		r.spliceBuf = getBodyBuf()
	}
	path := append(append(r.spliceBuf[:0], '/'), orig...)
	if len(sub) > 0 {
		path = append(append(path, '/'), sub...)
	}
	r.spliceBuf = path
	tr := r.rt.tr
	actx, as := tr.Start(r.tctx, r.rt.byIDSpecs[t.b])
	if tr.Enabled() {
		r.call.Traced = tracing.Inject(actx, &ctx.Request.Header)
	}
	err := t.b.Forward(t.i, &r.call, ctx.Method(), path, ctx.URI().QueryString(), &ctx.Response, &r.res)
	r.holdAnswerBody(&ctx.Response)
	r.attempts = 1
	gone := errors.Is(err, providers.ErrClientGone)
	cut := gone && r.s.cut.Load()
	r.countAttempt(ctx, as, t.b, err, cut)
	as.End()
	// AsType: a variable whose address errors.As took would be allocated each call.
	ue, upstream := errors.AsType[*providers.UpstreamError](err)
	switch {
	case cut:
		r.cutOff(ctx)
		return
	case gone:
		r.abandoned = errors.Is(err, providers.ErrClientLeftUpstream)
		r.hangUp(ctx)
		return
	case upstream:
		r.errKind = "upstream_" + strconv.Itoa(ue.Status)
		r.passUpstreamError(ctx, ue)
	case errors.Is(err, providers.ErrAnswerNoRoom):
		r.fail(ctx, r.refuseAnswer(ctx))
		return
	case err != nil:
		r.warnUpstreamFailed("", 1, err)
		r.fail(ctx, upstreamFailure(err))
		return
	default:
		r.setHeaders(ctx)
		if len(sub) == 0 || string(sub) == "cancel" {
			r.tagBody(&ctx.Response)
		}
	}
	r.finish(ctx, ctx.Response.StatusCode())
}

// plainID reports whether id is one an upstream's path can carry as it is: letters,
// digits and "-._~" (RFC 3986's unreserved characters), as OpenAI's and vLLM's IDs
// are, and the '+' and '=' of base64 (LiteLLM's IDs): no '/', '%', '?' or '#'.
func plainID(id []byte) bool {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == '~' || c == '+' || c == '=') {
			return false
		}
	}
	return len(id) > 0
}

// reaches reports whether the request's key, if keys are on, may use a chat endpoint
// (one serving the Responses API) that routes to backend bi.
func (r *request) reaches(bi int) bool {
	for _, ep := range r.rt.endpoints {
		if ep.kind == providers.Chat && (r.key == nil || r.key.allowed[ep.idx]) && bi < len(ep.refused) && ep.refused[bi] != nil {
			return true
		}
	}
	return false
}

// responseRoute is the route of path, a call on a stored response, routeNone for
// another path under /v1/responses/.
func responseRoute(path []byte) int {
	rest, ok := bytes.CutPrefix(path, prefixResponses)
	if !ok || len(rest) == 0 {
		return routeNone
	}
	id, sub, _ := bytes.Cut(rest, strSlash)
	switch string(sub) {
	case "":
		if string(id) == "input_tokens" || string(id) == "compact" {
			// OpenAI's token count and compaction of a Responses input: not served.
			return routeNone
		}
		return routeResponse
	case "cancel":
		return routeResponseCancel
	case "input_items":
		return routeResponseItems
	}
	return routeNone
}
