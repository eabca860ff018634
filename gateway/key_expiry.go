package gateway

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/metrics"
)

// codeKeyExpired is the error code of a request refused for its key's expires_at, and
// its error kind in the access log and on the auth span. OpenAI answers a revoked key
// invalid_api_key; a code of its own lets a client tell "ask for a new key" from "this
// key is wrong", and both are a 401 the SDKs raise as an authentication error.
const codeKeyExpired = "expired_api_key"

// keyExpiry is when a client key stops working (auth.keys[].expires_at) and the 401s
// that refuse it from then on, made with the config: refusing it costs no allocation.
// A key without expires_at has none (nil), and costs no more memory than a pointer.
type keyExpiry struct {
	at time.Time
	// bearer answers a key sent as a bearer token, header one sent in api-key or
	// x-api-key: their challenges differ (challenge).
	bearer, header apiError
}

// newKeyExpiry is the expiry of a key whose expires_at is v, valid (Config.problems);
// nil for none.
func newKeyExpiry(v string) *keyExpiry {
	at, err := parseExpiry(v)
	if v == "" || err != nil {
		return nil
	}
	e := apiError{401, "authentication_error", codeKeyExpired, "",
		"This API key expired at " + expiryText(at) + "; ask for a new one."}
	return &keyExpiry{at: at, bearer: e, header: e}
}

// passed reports whether the key no longer works at now: from its expires_at on, the
// instant itself included; never without one.
func (x *keyExpiry) passed(now time.Time) bool {
	return x != nil && !now.Before(x.at)
}

// refusal is the 401 to the key, sent as a bearer token or not.
func (x *keyExpiry) refusal(bearer bool) *apiError {
	if bearer {
		return &x.bearer
	}
	return &x.header
}

// challenge sets the WWW-Authenticate of e, a refusal of the key: RFC 6750 3.1's
// invalid_token ("expired") for a bearer token, the bare challenge for a key sent in
// another header, as for a wrong key (writeError). A key without expiry (nil) has
// none to set: its refusal, a revocation's, is writeError's.
func (x *keyExpiry) challenge(h *fasthttp.ResponseHeader, e *apiError) {
	if x == nil {
		return
	}
	if e == &x.bearer {
		h.SetBytesKV(hdrWWWAuthenticate, strAPIChallengeExpired)
	} else if e == &x.header {
		h.SetBytesKV(hdrWWWAuthenticate, strAPIChallenge)
	}
}

var strAPIChallengeExpired = []byte(`Bearer realm="tollgate", error="invalid_token", error_description="The API key expired"`)

// expiryText is t as the admin API and the refusals write it: RFC 3339 in UTC.
func expiryText(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// parseExpiry reads an expires_at: an RFC 3339 timestamp with its zone (Z or an
// offset), fractions of a second allowed; "" is none. A date alone is refused rather
// than read as some instant of that day: whether the key should still work on it, and
// in which zone the day ends, is the operator's to write.
func parseExpiry(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	// RFC 3339 5.6 allows t and z in lower case; time.Parse takes them upper case only.
	t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(v))
	if err == nil {
		switch {
		case !offsetInRange(v):
			return time.Time{}, errors.New("has an offset out of range: hours 00 to 23, minutes 00 to 59 (RFC 3339)")
		case t.UTC().Year() < 1 || t.UTC().Year() > 9999:
			// Written back in UTC (the admin API, the refusal), it would not be RFC 3339.
			return time.Time{}, errors.New("must fall between the years 0001 and 9999 in UTC")
		}
		return t, nil
	}
	switch {
	case len(v) == len(time.DateOnly) && dateOnly(v):
		return time.Time{}, errors.New("is a date without a time: write the instant the key stops working with its zone, e.g. " + v + "T23:59:59Z (RFC 3339)")
	case len(v) > len(time.DateOnly) && dateOnly(v[:len(time.DateOnly)]) && !zoned(v):
		return time.Time{}, errors.New("has no zone: end it with Z (UTC) or an offset such as +02:00 (RFC 3339)")
	}
	return time.Time{}, errors.New("must be an RFC 3339 timestamp with its zone, e.g. 2026-12-31T23:59:59Z or 2026-12-31T18:00:00-05:00")
}

// offsetInRange reports whether v, a timestamp time.Parse took, ends with Z or an
// offset RFC 3339 allows: time.Parse takes hours up to 24 and minutes up to 60
// (+24:00 would move the instant a whole day).
func offsetInRange(v string) bool {
	if n := len(v); n > 0 && (v[n-1] == 'Z' || v[n-1] == 'z') {
		return true
	}
	if len(v) < 6 {
		return false
	}
	o := v[len(v)-6:]
	return (o[0] == '+' || o[0] == '-') && o[3] == ':' && o[1] <= '2' && (o[1] < '2' || o[2] <= '3') && o[4] <= '5'
}

// dateOnly reports whether v is a date YYYY-MM-DD.
func dateOnly(v string) bool {
	_, err := time.Parse(time.DateOnly, v)
	return err == nil
}

// zoned reports whether the time after a timestamp's date ends with a zone: Z or an
// offset.
func zoned(v string) bool {
	clock := v[len(time.DateOnly):]
	return strings.HasSuffix(clock, "Z") || strings.HasSuffix(clock, "z") || strings.ContainsAny(clock[1:], "+-")
}

// keyClock is the instant the keys' expiries are judged at for a request that arrived
// at: that arrival itself (the request's start, no clock read of its own), moved by
// expirySkew in tests.
func (s *Server) keyClock(arrived time.Time) time.Time {
	if d := s.expirySkew.Load(); d != 0 {
		return arrived.Add(time.Duration(d))
	}
	return arrived
}

// noteKeyExpiries follows rt's keys' expires_at, as rt is installed: the gauge
// tollgate_key_expiry_timestamp_seconds holds exactly its keys that have one, and a
// key expired already is logged once, a warning naming it (it stays loaded: a key
// rotated out is refused as expired, not as unknown, and listed in /admin/keys).
func (s *Server) noteKeyExpiries(rt *runtime) {
	now := s.keyClock(time.Now())
	var exp []metrics.KeyExpiry
	for i, kc := range rt.cfg.Auth.Keys {
		x := newKeyExpiry(kc.ExpiresAt)
		if x == nil {
			continue
		}
		exp = append(exp, metrics.KeyExpiry{Name: kc.Name, At: x.at})
		if x.passed(now) && s.log != nil {
			s.log.Warn(warnKeyExpired, "key", kc.Name,
				"expires_at", expiryText(x.at), "config_key", "auth.keys["+strconv.Itoa(i)+"].expires_at")
		}
	}
	s.m.SetKeyExpiries(exp)
}

// ParseExpiresAt reads a value for auth.keys[].expires_at as the config does (an RFC
// 3339 timestamp with its zone), for `tollgate key --expires-at`; the error says what
// is wrong without quoting the value.
func ParseExpiresAt(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, errors.New("is empty: give the instant the key stops working (RFC 3339, e.g. 2026-12-31T23:59:59Z)")
	}
	return parseExpiry(v)
}
