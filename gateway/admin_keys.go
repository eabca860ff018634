package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/limiter"
)

// keyView is one client key as GET /admin/keys shows it: its name, never the key,
// its hash or anything made from them.
type keyView struct {
	Name string `json:"name"`
	// Endpoints are the endpoints the key may call, or ["*"] for every one.
	Endpoints []string `json:"endpoints"`
	// ExpiresAt is when the key stops working (auth.keys[].expires_at), RFC 3339 in
	// UTC; null when it does not. Expired is whether it has, at this read.
	ExpiresAt *string `json:"expires_at"`
	Expired   bool    `json:"expired"`
	// Revoked is whether the key is revoked (POST /admin/keys/{name}/revoke), since
	// RevokedAt (RFC 3339 in UTC) for Reason; both null while it is not.
	Revoked   bool        `json:"revoked"`
	RevokedAt *string     `json:"revoked_at"`
	Reason    *string     `json:"reason"`
	Limits    []limitView `json:"limits"`
}

// limitView is one limit that counts a key, and its bucket for the key now.
type limitView struct {
	// Scope says whose limits list it is in: the key's (auth.keys[].limits) or an
	// endpoint's (endpoints[].limits, per api_key).
	Scope string `json:"scope"`
	// Endpoint is the endpoint of an endpoint's limit, or the endpoint a key's
	// limit per endpoint counts (it has a bucket for each).
	Endpoint string      `json:"endpoint,omitempty"`
	Per      string      `json:"per"`
	Kind     string      `json:"kind"`
	Amount   json.Number `json:"amount"`
	Window   string      `json:"window,omitempty"`
	Burst    json.Number `json:"burst,omitempty"`
	// Limit, Remaining and Reset are the bucket's figures as the x-ratelimit-*
	// headers give them (usd in dollars, reset in seconds until full); Remaining is
	// null where there are none (Source unavailable or per_subject).
	Limit     json.Number  `json:"limit,omitempty"`
	Remaining *json.Number `json:"remaining"`
	Reset     json.Number  `json:"reset,omitempty"`
	// InUse is a concurrency limit's requests in flight.
	InUse *int64 `json:"in_use,omitempty"`
	// Source is memory (this replica's buckets), redis (every replica's),
	// unavailable (Redis did not answer) or per_subject (a key's limit per user or
	// ip: a bucket for each, none of them the key's).
	Source string `json:"source"`

	usd bool
}

// serveKeys answers GET /admin/keys (name "") and GET /admin/keys/{name}, from the
// running runtime, held while it reads and writes: one a reload retired would have its
// limiter closed under the reads, which would read unavailable.
func (s *Server) serveKeys(ctx *fasthttp.RequestCtx, name string, one bool) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(&ctx.Response, methodNotAllowed(ctx, strGetHead))
		return
	}
	rt := s.hold()
	if rt == nil {
		writeError(&ctx.Response, &errShuttingDown)
		return
	}
	held := true
	defer func() {
		if held {
			rt.release()
		}
	}()
	if !one {
		page, next, err := keyPage(ctx.QueryArgs(), rt.keysByName)
		if err != nil {
			writeError(&ctx.Response, err)
			return
		}
		l := &keyListing{rt: rt, log: s.log, keys: page, next: next, wait: keyReadWait}
		l.reads.now = s.keyClock(time.Now())
		ctx.SetStatusCode(200)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		if len(page) <= keyChunk {
			// Within a chunk: read and written whole, with its length.
			for !l.ended {
				l.fill()
			}
			ctx.SetBody(l.out)
			return
		}
		// Written a chunk at a time as the client takes it (chunked), holding no
		// more than a chunk: built whole (every view, then its encoding), the
		// listing of 10,000 keys, most with 125 limits, held 635 MB at once
		// (BenchmarkAdminKeysList). The runtime is held until fasthttp closes the
		// stream, once written or dropped.
		l.held, held = true, false
		l.ctx, l.writeWait = ctx, keyWriteWait
		if d := s.keyWriteWait.Load(); d > 0 {
			l.writeWait = time.Duration(d)
		}
		ctx.Response.SetBodyStream(l, -1)
		return
	}
	k := rt.keyNamed(name)
	if k == nil {
		// A slash at the end is none of the name's, as for an endpoint's.
		k = rt.keyNamed(strings.TrimRight(name, "/"))
	}
	if k == nil {
		writeError(&ctx.Response, &errKeyNotFound)
		return
	}
	peekCtx, cancel := context.WithTimeout(context.Background(), keyReadWait)
	defer cancel()
	b := keyReads{now: s.keyClock(time.Now())}
	views := []keyView{b.view(rt, k)}
	s.readKeys(peekCtx, &b, rt, views)
	writeJSON(ctx, 200, views[0])
}

// keyList is GET /admin/keys's answer: a page of keys in name order, and the name to
// pass as after for the next page (none on the last). keyListing writes it.
type keyList struct {
	Keys []keyView `json:"keys"`
	Next string    `json:"next,omitempty"`
}

// keyChunk is how many keys a listing reads (one Peek: one Redis round trip) and
// encodes at a time.
const keyChunk = 256

// keyReadWait is how long an answer of GET /admin/keys may wait on Redis in all, its
// chunks together; the chunks read after it has passed read unavailable.
const keyReadWait = 5 * time.Second

// keyWriteWait is how long a listing written by chunks waits for its client to take
// each chunk: the listing holds its runtime until it ends, and a client that stopped
// reading (a pager left open, a stopped process) would otherwise keep a runtime a
// reload retired, its config and series, for as long as it stays connected.
const keyWriteWait = 30 * time.Second

// keyListing writes keyList for keys and next, a chunk of keys at a time: it reads
// their buckets, encodes their views and hands the bytes out before it reads the next
// chunk, so that it holds a chunk's views and encoding, whatever the number of keys.
// The bytes are json.Marshal's of keyList. It is the body stream of a listing of more
// than a chunk, read by fasthttp as it writes the answer.
type keyListing struct {
	rt   *runtime
	held bool // rt acquired, released by Close
	// log takes the listing's one warning of buckets Redis could not give (warned).
	log    *slog.Logger
	warned bool
	keys   []*clientKey
	next   string
	// wait is what is left of keyReadWait: only the time spent reading Redis
	// counts, not the client's taking the answer.
	wait time.Duration
	// ctx is the request the listing answers, whose connection WriteTo gives
	// writeWait to take each chunk (keyWriteWait); nil when read through Read.
	ctx       *fasthttp.RequestCtx
	writeWait time.Duration

	reads keyReads
	views []keyView
	buf   bytes.Buffer
	enc   *json.Encoder
	// out is what the last fill made and was not yet handed out.
	out []byte
	// listed is how many keys were encoded.
	listed  int
	started bool
	ended   bool
}

// fill encodes the next piece of the listing into out: the opening and the next chunk
// of keys, and after the last one the closing.
func (l *keyListing) fill() {
	l.buf.Reset()
	if l.enc == nil {
		l.enc = json.NewEncoder(&l.buf)
		l.views = make([]keyView, 0, min(len(l.keys), keyChunk))
	}
	if !l.started {
		l.started = true
		l.buf.WriteString(`{"keys":[`)
	}
	if n := min(len(l.keys), keyChunk); n > 0 {
		chunk := l.keys[:n]
		l.keys = l.keys[n:]
		l.reads.reset()
		l.views = l.views[:0]
		for _, k := range chunk {
			l.views = append(l.views, l.reads.view(l.rt, k))
		}
		l.read()
		for i := range l.views {
			if l.listed > 0 {
				l.buf.WriteByte(',')
			}
			l.listed++
			l.encode(&l.views[i])
		}
		clear(l.views)
	}
	if len(l.keys) == 0 {
		l.buf.WriteByte(']')
		if l.next != "" {
			l.buf.WriteString(`,"next":`)
			l.encode(l.next)
		}
		l.buf.WriteByte('}')
		l.ended = true
	}
	l.out = l.buf.Bytes()
}

// read reads the chunk's buckets, in one Peek, within what is left of wait; past it,
// they read unavailable without a call.
func (l *keyListing) read() {
	if l.wait <= 0 {
		for i := range l.reads.at {
			l.views[l.reads.at[i][0]].Limits[l.reads.at[i][1]].read(limiter.Reading{Source: limiter.Unavailable})
		}
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), l.wait)
	err := l.reads.read(ctx, l.rt, l.views)
	cancel()
	if err != nil && !l.warned {
		l.warned = true
		warnUnread(l.log, err)
	}
	l.wait -= time.Since(start)
}

// encode appends v as json.Marshal writes it (the encoder adds a newline, taken off).
func (l *keyListing) encode(v any) {
	if err := l.enc.Encode(v); err != nil {
		// A view is strings, numbers and bools: nothing json cannot encode.
		panic(err)
	}
	l.buf.Truncate(l.buf.Len() - 1)
}

// Read implements io.Reader.
func (l *keyListing) Read(p []byte) (int, error) {
	if !l.more() {
		return 0, io.EOF
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}

// WriteTo writes the listing a chunk at a time: fasthttp frames each write as one
// HTTP chunk, instead of one for each of its 4 KiB reads.
func (l *keyListing) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for l.more() {
		if l.ctx != nil {
			// fasthttp takes the deadline off once the answer is written.
			_ = l.ctx.SetWriteDeadline(time.Now().Add(l.writeWait))
		}
		n, err := w.Write(l.out)
		total += int64(n)
		l.out = l.out[n:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// more fills out with the listing's next piece when it is empty, and reports whether
// it holds bytes to hand out (false once the listing has ended).
func (l *keyListing) more() bool {
	for len(l.out) == 0 {
		if l.ended {
			return false
		}
		l.fill()
	}
	return true
}

// SupportsBodyWriteTo tells fasthttp WriteTo may stand for Read.
func (l *keyListing) SupportsBodyWriteTo() bool { return true }

// Close lets go of the runtime and of what the listing holds.
func (l *keyListing) Close() error {
	if l.held {
		l.held = false
		l.rt.release()
	}
	*l = keyListing{ended: true}
	return nil
}

// errLimitMessage refuses a limit of GET /admin/keys: it names the range, as a
// number past it (past int64) is a whole number from 1 up all the same.
var errLimitMessage = "`limit` must be a whole number of keys from 1 to " + strconv.Itoa(math.MaxInt) + ", in decimal digits."

// keyPage is the page of keys GET /admin/keys's query asks for, of sorted (keys in
// name order): in name order (byte order, as strings compare), those after the name
// `after` gives (a name no key has still places the page: keys removed by a reload
// between two pages do not restart the listing), at most `limit` of them (every one
// without); next is the page's last name when more follow. A parameter other than
// these two, one given twice or a limit that is not decimal digits making a whole
// number from 1 to math.MaxInt is refused (a sign too, which strconv.Atoi would take).
// The page is part of sorted, not a copy.
func keyPage(q *fasthttp.Args, sorted []*clientKey) (page []*clientKey, next string, err *apiError) {
	limit := -1
	var after []byte
	bad := func(param, msg string) (page []*clientKey, next string, err *apiError) {
		return nil, "", &apiError{400, "invalid_request_error", "invalid_parameter", param, msg}
	}
	for name, value := range q.All() {
		switch string(name) {
		case "limit":
			if len(q.PeekMulti("limit")) > 1 {
				return bad("limit", "`limit` is given more than once.")
			}
			n, perr := strconv.Atoi(string(value))
			if perr != nil || n < 1 || value[0] < '0' || value[0] > '9' {
				return bad("limit", errLimitMessage)
			}
			limit = n
		case "after":
			if len(q.PeekMulti("after")) > 1 {
				return bad("after", "`after` is given more than once.")
			}
			after = value
		default:
			return bad(string(name), "GET /admin/keys takes `limit` and `after` only, not `"+string(name)+"`.")
		}
	}
	if after != nil {
		from, found := slices.BinarySearchFunc(sorted, string(after), func(k *clientKey, name string) int { return strings.Compare(k.name, name) })
		if found {
			from++
		}
		sorted = sorted[from:]
	}
	if limit >= 0 && len(sorted) > limit {
		sorted = sorted[:limit]
		next = sorted[limit-1].name
	}
	return sorted, next, nil
}

// keyNamed is the key of that name, nil for none: a binary search of keysByName.
func (rt *runtime) keyNamed(name string) *clientKey {
	i, found := slices.BinarySearchFunc(rt.keysByName, name, func(k *clientKey, name string) int { return strings.Compare(k.name, name) })
	if !found {
		return nil
	}
	return rt.keysByName[i]
}

// keyReads gathers the buckets of the keys' views, to read them in one go.
type keyReads struct {
	probes []limiter.Probe
	// at is the view and the limit of each probe.
	at [][2]int
	// views is how many views view made: the place of the next.
	views int
	// now is the instant the keys' expiry is judged at.
	now time.Time
}

// reset readies b for the next views, keeping its room.
func (b *keyReads) reset() {
	b.probes, b.at, b.views = b.probes[:0], b.at[:0], 0
}

// view is k's view without its buckets' figures: its own limits, one per endpoint
// listed for each endpoint it may call, and the limits per api_key of each endpoint it
// may call; its buckets are gathered in b for read, which takes the views in the order
// view made them.
func (b *keyReads) view(rt *runtime, k *clientKey) keyView {
	kc := &rt.cfg.Auth.Keys[k.idx]
	v := keyView{Name: k.name, Endpoints: kc.Endpoints, Limits: []limitView{}}
	if mayCallAll(kc) {
		v.Endpoints = []string{"*"}
	}
	if x := k.expiry; x != nil {
		at := expiryText(x.at)
		v.ExpiresAt, v.Expired = &at, x.passed(b.now)
	}
	if k.revoke != nil {
		v.Revoked, v.RevokedAt, v.Reason = revokedFields(k.revoke.cur.Load())
	}
	place := b.views
	b.views++
	probe := func(lv limitView, pol *limiter.Policy, i int, endpoint string) {
		b.at = append(b.at, [2]int{place, len(v.Limits)})
		v.Limits = append(v.Limits, lv)
		b.probes = append(b.probes, limiter.Probe{Policy: pol, Limit: i, Subject: limiter.Subject{APIKey: k.nameBytes, Endpoint: []byte(endpoint)}})
	}
	for i, l := range kc.Limits {
		lv := limitViewOf("key", l)
		switch l.Per {
		case "api_key":
			probe(lv, k.policy, i, "")
		case "endpoint", "model":
			for j := range rt.cfg.Endpoints {
				if k.allowed[j] {
					lv.Endpoint = rt.cfg.Endpoints[j].Name
					probe(lv, k.policy, i, lv.Endpoint)
				}
			}
		default:
			lv.Source = "per_subject"
			v.Limits = append(v.Limits, lv)
		}
	}
	for j := range rt.cfg.Endpoints {
		ec := &rt.cfg.Endpoints[j]
		e := rt.endpoints[ec.Name]
		if !k.allowed[j] || e == nil {
			continue
		}
		for i, l := range ec.Limits {
			if l.Per == "api_key" {
				lv := limitViewOf("endpoint", l)
				lv.Endpoint = ec.Name
				probe(lv, e.policy, i, ec.Name)
			}
		}
	}
	return v
}

// read fills the gathered buckets' figures into views, made by view in turn. It
// returns the error of the first bucket Redis could not give, if any.
func (b *keyReads) read(ctx context.Context, rt *runtime, views []keyView) error {
	var first error
	for i, r := range rt.lim.Peek(ctx, b.probes) {
		views[b.at[i][0]].Limits[b.at[i][1]].read(r)
		if first == nil {
			first = r.Err
		}
	}
	return first
}

// readKeys is b.read, with a warning naming Redis's error when buckets read
// unavailable: the answer says only that Redis did not give them.
func (s *Server) readKeys(ctx context.Context, b *keyReads, rt *runtime, views []keyView) {
	if err := b.read(ctx, rt, views); err != nil {
		warnUnread(s.log, err)
	}
}

// warnUnread logs err, Redis's error for buckets of GET /admin/keys that read
// unavailable: once an answer.
func warnUnread(log *slog.Logger, err error) {
	log.Warn("admin keys: limit buckets not read from Redis; they read unavailable", "error", err.Error())
}

// limitViewOf is l as configured; its bucket's figures come with read.
func limitViewOf(scope string, l limiter.Limit) limitView {
	lv := limitView{Scope: scope, Per: l.Per, Window: l.Window}
	burst := l.Burst
	switch {
	case l.Concurrency > 0:
		lv.Kind, lv.Amount, lv.Window = "concurrency", jsonInt(l.Concurrency), ""
		return lv
	case l.USD > 0:
		lv.Kind, lv.Amount, lv.usd = "usd", dollars(limiter.NanoUSD(l.USD)), true
		if burst == 0 {
			burst = l.USD
		}
		lv.Burst = dollars(limiter.NanoUSD(burst))
		return lv
	case l.Tokens > 0:
		lv.Kind, lv.Amount = "tokens", jsonInt(l.Tokens)
		if burst == 0 {
			burst = float64(l.Tokens)
		}
	default:
		lv.Kind, lv.Amount = "requests", jsonInt(l.Requests)
		if burst == 0 {
			burst = float64(l.Requests)
		}
	}
	lv.Burst = jsonInt(int64(burst))
	return lv
}

// read fills in the bucket's figures.
func (lv *limitView) read(r limiter.Reading) {
	lv.Source = r.Source.String()
	if r.Source == limiter.Unavailable {
		return
	}
	num := jsonInt
	if lv.usd {
		num = dollars
	}
	rem := num(r.Quota.Remaining)
	lv.Limit, lv.Remaining = num(r.Quota.Limit), &rem
	if lv.Kind == "concurrency" {
		n := r.InUse
		lv.InUse = &n
		return
	}
	// As the reset headers round it: up, to the millisecond.
	ms := (r.Quota.Reset + time.Millisecond - 1) / time.Millisecond
	lv.Reset = json.Number(strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64))
}

func jsonInt(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }

// dollars is nano nano-dollars as the usd headers write them.
func dollars(nano int64) json.Number { return json.Number(limiter.AppendUSD(nil, nano)) }
