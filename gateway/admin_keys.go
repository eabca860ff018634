package gateway

import (
	"context"
	"encoding/json"
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

// serveKeys answers GET /admin/keys (name "") and GET /admin/keys/{name}.
func (s *Server) serveKeys(ctx *fasthttp.RequestCtx, rt *runtime, name string, one bool) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(&ctx.Response, methodNotAllowed(ctx, strGetHead))
		return
	}
	byIdx := make([]*clientKey, len(rt.cfg.Auth.Keys))
	for _, k := range rt.keys {
		byIdx[k.idx] = k
	}
	peekCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !one {
		page, next, err := keyPage(ctx.QueryArgs(), byIdx)
		if err != nil {
			writeError(&ctx.Response, err)
			return
		}
		b := keyReads{now: s.keyClock(time.Now())}
		views := make([]keyView, len(page))
		for i, k := range page {
			views[i] = b.view(rt, k)
		}
		// The page's buckets in one read: one round trip to Redis, not one a key.
		s.readKeys(peekCtx, &b, rt, views)
		writeJSON(ctx, 200, keyList{Keys: views, Next: next})
		return
	}
	k := keyNamed(byIdx, name)
	if k == nil {
		// A slash at the end is none of the name's, as for an endpoint's.
		k = keyNamed(byIdx, strings.TrimRight(name, "/"))
	}
	if k == nil {
		writeError(&ctx.Response, &errKeyNotFound)
		return
	}
	b := keyReads{now: s.keyClock(time.Now())}
	views := []keyView{b.view(rt, k)}
	s.readKeys(peekCtx, &b, rt, views)
	writeJSON(ctx, 200, views[0])
}

// keyList is GET /admin/keys's answer: a page of keys in name order, and the name to
// pass as after for the next page (none on the last).
type keyList struct {
	Keys []keyView `json:"keys"`
	Next string    `json:"next,omitempty"`
}

// errLimitMessage refuses a limit of GET /admin/keys: it names the range, as a
// number past it (past int64) is a whole number from 1 up all the same.
var errLimitMessage = "`limit` must be a whole number of keys from 1 to " + strconv.Itoa(math.MaxInt) + ", in decimal digits."

// keyPage is the page of keys GET /admin/keys's query asks for: in name order (byte
// order, as strings compare), those after the name `after` gives (a name no key has
// still places the page: keys removed by a reload between two pages do not restart
// the listing), at most `limit` of them (every one without); next is the page's last
// name when more follow. A parameter other than these two, one given twice or a limit
// that is not decimal digits making a whole number from 1 to math.MaxInt is refused
// (a sign too, which strconv.Atoi would take).
func keyPage(q *fasthttp.Args, keys []*clientKey) (page []*clientKey, next string, err *apiError) {
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
	sorted := make([]*clientKey, 0, len(keys))
	for _, k := range keys {
		if k != nil {
			sorted = append(sorted, k)
		}
	}
	slices.SortFunc(sorted, func(a, b *clientKey) int { return strings.Compare(a.name, b.name) })
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

func keyNamed(keys []*clientKey, name string) *clientKey {
	for _, k := range keys {
		if k != nil && k.name == name {
			return k
		}
	}
	return nil
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
		b.probes = append(b.probes, limiter.Probe{Policy: pol, Limit: i, Subject: limiter.Subject{APIKey: []byte(k.name), Endpoint: []byte(endpoint)}})
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
		s.log.Warn("admin keys: limit buckets not read from Redis; they read unavailable", "error", err.Error())
	}
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
