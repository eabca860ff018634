package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/metrics"
)

// A client key is revoked at run time by name (POST /admin/keys/{name}/revoke), for a
// key that leaked: from then on its requests are refused 401 revoked_api_key, as an
// expired key's are, until POST /admin/keys/{name}/restore. The revocations live
// outside the config, by key name: a reload keeps them (a key renamed is another
// name), and a name taken out of auth.keys stays revoked until restored.
//
// With limiter.store redis they are shared through the Redis the gateway started
// with, under keys that neither the limiter (tg:{...}), the router
// (tollgate:router:) nor the answer cache (tollgate:cache:) uses, one hash tag so
// that a Cluster keeps them in one slot (the scripts touch both):
//
//	tollgate:revoked:{keys}        hash: key name -> {"reason","at"}
//	tollgate:revoked:{keys}:meta   hash: epoch (random, set when the hash is first
//	                               written), n (one more with each change)
//
// Every replica polls them each second in one round trip, which carries the hash
// only when epoch or n moved or the hash has another number of names than the
// replica applied. A replica that cannot reach Redis keeps the revocations it
// knows. An epoch other than the one a replica knew, the meta missing while the
// replica knows revocations, or the hash short of them at the epoch and n applied,
// is Redis's data lost (a restart without persistence, a failover to an empty
// replica, an eviction under maxmemory): the replica writes back
// what it knows, so that a lost Redis never restores a key; every replica doing so
// leaves the union of what they knew.
const (
	codeKeyRevoked = "revoked_api_key"
	revokeHashKey  = "tollgate:revoked:{keys}"
	revokeMetaKey  = "tollgate:revoked:{keys}:meta"
	// revokePollEvery is how often a replica reads the shared revocations: a
	// revocation made on one replica applies on the others within it and a round
	// trip.
	revokePollEvery = time.Second
	// revokeLogEvery bounds the lines about a Redis that does not answer the polls.
	revokeLogEvery = 10 * time.Second
	// revokeTimeout bounds each round trip with Redis.
	revokeTimeout = time.Second
	// revokeReasonMax is the longest reason taken, in bytes.
	revokeReasonMax = 200
	// secretMin is the shortest secret holdsSecret looks for.
	secretMin = 8
)

// The refusals of a revoked key: one answer for every key, made once, so that
// refusing costs no allocation; bearer for a key sent as a bearer token, header for
// one sent in api-key or x-api-key (their challenges differ: writeError). The message
// names neither the key nor its name: the client knows which key it sent.
var (
	errKeyRevoked = apiError{401, "authentication_error", codeKeyRevoked, "",
		"This API key was revoked; ask for a new one."}
	errKeyRevokedHeader = errKeyRevoked

	strAPIChallengeRevoked = []byte(`Bearer realm="tollgate", error="invalid_token", error_description="The API key was revoked"`)
)

// revokedRefusal is the 401 to a revoked key, sent as a bearer token or not.
func revokedRefusal(bearer bool) *apiError {
	if bearer {
		return &errKeyRevoked
	}
	return &errKeyRevokedHeader
}

// revocation is one key name's revocation: why, and since when.
type revocation struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// keyRevoke is whether a key name is revoked now: the revocation, nil while it is
// not. Every runtime's clientKey of the name shares it, so that a revocation reaches
// the running config and the ones still finishing requests at once, and a request
// checks it with one atomic load.
type keyRevoke struct{ cur atomic.Pointer[revocation] }

// revoked reports whether k is revoked now. A key of a runtime no server installed
// (tollgate validate) has no keyRevoke.
func (k *clientKey) revoked() bool {
	return k.revoke != nil && k.revoke.cur.Load() != nil
}

// revocations are the key revocations this replica applies, and their shared copy
// in Redis when there is one.
type revocations struct {
	log *slog.Logger
	m   *metrics.Metrics
	now func() time.Time
	// rdb is the Redis the revocations are shared through; nil keeps them on this
	// replica alone.
	rdb redis.UniversalClient

	// syncMu serializes the round trips with Redis and what they apply, so that a
	// poll's answer never lands after a change it predates, and guards what follows:
	// epoch and n are those of the shared set last applied ("" and 0 for none yet),
	// failing whether the last poll failed, warned when that was last logged and
	// missed the polls failed since.
	syncMu  sync.Mutex
	epoch   string
	n       int64
	failing bool
	warned  time.Time
	missed  int
	// read is set by the first poll that reads Redis: the revocations it finds are
	// logged in one line.
	read bool

	// mu guards known, the revocations by name, and flags, the keyRevoke of each
	// name the installed config has or that is revoked.
	mu    sync.Mutex
	known map[string]*revocation
	flags map[string]*keyRevoke
}

// newRevocations holds the revocations of a gateway started with cfg: shared through
// its limiter's Redis when it has one (a client of their own, fixed at start as the
// router's is).
func newRevocations(cfg *Config, log *slog.Logger, m *metrics.Metrics) (*revocations, error) {
	rv := &revocations{log: log, m: m, now: time.Now, known: map[string]*revocation{}, flags: map[string]*keyRevoke{}}
	if rv.log == nil {
		rv.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Limiter.Store == "redis" {
		c, err := cfg.Limiter.Redis.Client(revokeTimeout)
		if err != nil {
			return nil, err
		}
		rv.rdb = c
	}
	return rv, nil
}

// scope is where a revocation made here applies: every replica sharing the Redis, or
// this one.
func (rv *revocations) scope() string {
	if rv.rdb != nil {
		return "cluster"
	}
	return "replica"
}

// attach gives rt's keys their names' keyRevoke before rt is installed, and drops the
// flags of names neither rt has nor are revoked. It returns the names revoked that
// rt's config no longer has.
func (rv *revocations) attach(rt *runtime) (orphans []string) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	names := make(map[string]struct{}, len(rt.keys))
	for _, k := range rt.keys {
		names[k.name] = struct{}{}
		f := rv.flags[k.name]
		if f == nil {
			f = &keyRevoke{}
			f.cur.Store(rv.known[k.name])
			rv.flags[k.name] = f
		}
		k.revoke = f
	}
	for name := range rv.flags {
		if _, ok := names[name]; !ok && rv.known[name] == nil {
			delete(rv.flags, name)
		}
	}
	for name := range rv.known {
		if _, ok := names[name]; !ok {
			orphans = append(orphans, name)
		}
	}
	slices.Sort(orphans)
	return orphans
}

// get is name's revocation, nil when it is not revoked.
func (rv *revocations) get(name string) *revocation {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.known[name]
}

// setLocked revokes name (r) or restores it (nil) on this replica; rv.mu is held.
func (rv *revocations) setLocked(name string, r *revocation) {
	if r == nil {
		delete(rv.known, name)
	} else {
		rv.known[name] = r
	}
	if f := rv.flags[name]; f != nil {
		f.cur.Store(r)
	}
}

// set revokes or restores name on this replica and updates the gauge.
func (rv *revocations) set(name string, r *revocation) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.setLocked(name, r)
	rv.publishLocked()
}

// publishLocked sets tollgate_key_revoked to the names revoked; rv.mu is held.
func (rv *revocations) publishLocked() {
	names := make([]string, 0, len(rv.known))
	for name := range rv.known {
		names = append(names, name)
	}
	rv.m.SetKeysRevoked(names)
}

// errRevokeUnshared is a revocation or restore that Redis did not take. Redis's
// error follows it after a colon, on the same line (errors.Join would break the
// logged line in two).
var errRevokeUnshared = errors.New("key revocations: redis")

// revoke revokes name for reason: in Redis first when shared (nothing changes when
// Redis does not take it), then here. A name revoked already keeps its revocation,
// which is returned with changed false.
func (rv *revocations) revoke(ctx context.Context, name, reason string) (r *revocation, changed bool, err error) {
	r = &revocation{Reason: reason, At: rv.now().UTC()}
	if rv.rdb == nil {
		rv.mu.Lock()
		defer rv.mu.Unlock()
		if cur := rv.known[name]; cur != nil {
			return cur, false, nil
		}
		rv.setLocked(name, r)
		rv.publishLocked()
		return r, true, nil
	}
	val, _ := json.Marshal(r)
	rv.syncMu.Lock()
	defer rv.syncMu.Unlock()
	res, err := revokeScript.Run(ctx, rv.rdb, revokeKeys, name, val, newEpoch()).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", errRevokeUnshared, err)
	}
	if len(res) == 2 {
		// Revoked already: Redis's revocation stands, and applies here now.
		cur := parseRevocation(res[1])
		rv.set(name, cur)
		return cur, false, nil
	}
	rv.set(name, r)
	rv.step(res)
	return r, true, nil
}

// restore takes name's revocation back: in Redis first when shared, then here.
// was reports whether it was revoked. A name neither configured (configured) nor
// revoked here or in Redis leaves Redis as it was: a mistyped name marks nothing there.
func (rv *revocations) restore(ctx context.Context, name string, configured bool) (was bool, err error) {
	if rv.rdb == nil {
		rv.mu.Lock()
		defer rv.mu.Unlock()
		was = rv.known[name] != nil
		rv.setLocked(name, nil)
		rv.publishLocked()
		return was, nil
	}
	rv.syncMu.Lock()
	defer rv.syncMu.Unlock()
	mark := "0"
	if configured || rv.get(name) != nil {
		mark = "1"
	}
	res, err := restoreScript.Run(ctx, rv.rdb, revokeKeys, name, newEpoch(), mark).Slice()
	if err != nil {
		return false, fmt.Errorf("%w: %w", errRevokeUnshared, err)
	}
	if len(res) == 1 {
		// Unknown everywhere: nothing was written.
		return false, nil
	}
	had, _ := res[0].(int64)
	was = rv.get(name) != nil || had == 1
	rv.set(name, nil)
	rv.step(res)
	return was, nil
}

// step follows a change this replica made, res being the script's {1, epoch, n}: the
// shared set is the one applied plus this change when it is the next one; otherwise
// the next poll reads it whole. A replica that has read no epoch yet takes this one
// as the epoch of what it knows, so that a later epoch reads as Redis's data lost.
// syncMu is held.
func (rv *revocations) step(res []any) {
	epoch, _ := res[1].(string)
	n, _ := res[2].(int64)
	switch {
	case rv.epoch == "":
		rv.epoch, rv.n = epoch, 0
	case epoch == rv.epoch && n == rv.n+1:
		rv.n = n
	}
}

// poll reads the shared revocations when they changed and applies them, or writes
// back what this replica knows when Redis lost them. Without Redis it does nothing.
func (rv *revocations) poll(ctx context.Context) error {
	if rv.rdb == nil {
		return nil
	}
	rv.syncMu.Lock()
	defer rv.syncMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	rv.mu.Lock()
	held := len(rv.known)
	rv.mu.Unlock()
	epoch := rv.epoch
	if epoch == "" && held > 0 {
		// Revocations known, of no epoch yet (made here before any poll read
		// one): the answer must say whether Redis still has them.
		epoch = "-"
	}
	res, err := pollRevokesScript.Run(ctx, rv.rdb, revokeKeys, epoch, rv.n, held).Slice()
	if err != nil {
		return err
	}
	first := !rv.read
	rv.read = true
	if len(res) < 3 {
		return nil
	}
	epoch, _ = res[0].(string)
	n, _ := res[1].(int64)
	fetched := pairs(res[2])
	// Lost: the meta hash gone, another epoch, or the hash short of the names applied
	// at this very epoch and count (evicted alone: allkeys-lru).
	lost := held > 0 && (epoch == "" || rv.epoch != "" && epoch != rv.epoch ||
		epoch == rv.epoch && n == rv.n && len(fetched) < held)
	if !lost {
		if epoch != "" {
			rv.apply(fetched, first)
		}
		rv.epoch, rv.n = epoch, n
		return nil
	}
	// Redis lost the set (or is another Redis): the union of it and what this
	// replica knows, written back.
	rv.mu.Lock()
	args := []any{newEpoch()}
	for name, r := range rv.known {
		v, _ := json.Marshal(r)
		args = append(args, name, v)
	}
	rv.mu.Unlock()
	res, err = repairScript.Run(ctx, rv.rdb, revokeKeys, args...).Slice()
	if err != nil {
		return err
	}
	rv.log.Warn("key revocations missing from Redis (its data lost, or another Redis): wrote back the ones this replica knows",
		"revocations", held)
	epoch, _ = res[0].(string)
	n, _ = res[1].(int64)
	rv.apply(pairs(res[2]), false)
	rv.epoch, rv.n = epoch, n
	return nil
}

// apply makes the shared set fetched the one this replica applies, logging each
// change (first, the replica's first read: one line for them all).
func (rv *revocations) apply(fetched map[string]*revocation, first bool) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var changed bool
	for name := range rv.known {
		if fetched[name] == nil {
			rv.setLocked(name, nil)
			changed = true
			rv.log.Info("client key restored (shared through Redis): its requests are taken again", "key", name)
		}
	}
	var added []string
	for name, r := range fetched {
		if cur := rv.known[name]; cur != nil && cur.Reason == r.Reason && cur.At.Equal(r.At) {
			continue
		}
		rv.setLocked(name, r)
		changed = true
		added = append(added, name)
		if !first {
			rv.log.Info("client key revoked (shared through Redis): its requests are refused (401 revoked_api_key)",
				"key", name, "reason", r.Reason)
		}
	}
	if first && len(added) > 0 {
		slices.Sort(added)
		rv.log.Info("key revocations read from Redis: their requests are refused (401 revoked_api_key)", "keys", added)
	}
	if changed {
		rv.publishLocked()
	}
}

// run polls the shared revocations each revokePollEvery until ctx ends.
func (rv *revocations) run(ctx context.Context) {
	if rv == nil || rv.rdb == nil {
		return
	}
	tk := time.NewTicker(revokePollEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		rv.noteFailure(rv.poll(ctx))
	}
}

// noteFailure logs a failed poll at most once per revokeLogEvery, with the
// revocations the replica keeps applying meanwhile and the polls failed, and the
// first poll that succeeds after.
func (rv *revocations) noteFailure(err error) {
	rv.syncMu.Lock()
	defer rv.syncMu.Unlock()
	now := rv.now()
	if err == nil {
		if rv.failing {
			rv.failing = false
			rv.log.Info("key revocations read from Redis again")
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	rv.missed++
	if rv.failing && now.Sub(rv.warned) < revokeLogEvery {
		return
	}
	rv.failing, rv.warned = true, now
	rv.mu.Lock()
	held := len(rv.known)
	rv.mu.Unlock()
	rv.log.Warn("key revocations not read from Redis: keeping the ones this replica knows, none dropped",
		"revocations", held, "failed_polls", rv.missed, "error", err.Error())
	rv.missed = 0
}

// close closes the Redis client, once run has returned.
func (rv *revocations) close() {
	if rv != nil && rv.rdb != nil {
		_ = rv.rdb.Close()
	}
}

var revokeKeys = []string{revokeHashKey, revokeMetaKey}

// bumpLua is the scripts' change count: the meta hash gets epoch ARGV[i] when it has
// none (the hash's first write, or its first since Redis lost it), and n one more.
const bumpLua = `
local function bump(epoch)
  if redis.call('HSETNX', KEYS[2], 'epoch', epoch) == 1 then
    redis.call('HSET', KEYS[2], 'n', 0)
  end
  return {redis.call('HGET', KEYS[2], 'epoch'), redis.call('HINCRBY', KEYS[2], 'n', 1)}
end
`

var (
	// revokeScript revokes ARGV[1] with the revocation ARGV[2]: {1, epoch, n}, or
	// {0, revocation} for a name revoked already, left as it is. It clears the name's
	// restore mark (restoreScript).
	revokeScript = redis.NewScript(bumpLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then return {0, cur} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], 'r:' .. ARGV[1])
local e = bump(ARGV[3])
return {1, e[1], e[2]}`)
	// restoreScript restores ARGV[1]: {1, epoch, n} when Redis held its revocation,
	// {0, epoch, n} when not. Either way it marks the name restored in the meta hash
	// (r:NAME) and counts a change, so that a replica writing back what it knew after
	// Redis lost its data (repairScript) does not revoke it again; but for a name Redis
	// did not hold and the caller knows nothing of (ARGV[3] not "1": neither configured
	// nor revoked on the replica), which gets {0} and leaves Redis as it was.
	restoreScript = redis.NewScript(bumpLua + `
local had = redis.call('HDEL', KEYS[1], ARGV[1])
if had == 0 and ARGV[3] ~= '1' then return {0} end
redis.call('HSET', KEYS[2], 'r:' .. ARGV[1], '1')
local e = bump(ARGV[2])
return {had, e[1], e[2]}`)
	// pollRevokesScript is {epoch, n} while they are ARGV[1] and ARGV[2] and the hash
	// holds ARGV[3] names, else {epoch, n, the hash}; epoch is "" when the meta hash is
	// missing. HLEN reads the hash each time, keeping it as recently used as the meta
	// hash under maxmemory-policy allkeys-lru, and finds it short of the names applied
	// when Redis evicted it alone.
	pollRevokesScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[2], 'epoch', 'n')
local e, n = m[1] or '', tonumber(m[2] or '0')
local size = redis.call('HLEN', KEYS[1])
if e == ARGV[1] and n == tonumber(ARGV[2]) and size == tonumber(ARGV[3]) then return {e, n} end
return {e, n, redis.call('HGETALL', KEYS[1])}`)
	// repairScript writes the revocations ARGV[2..] (name, revocation pairs) that
	// the hash lacks and no restore since marked, and counts a change: {epoch, n, the
	// hash}.
	repairScript = redis.NewScript(bumpLua + `
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], 'r:' .. ARGV[i]) == 0 then
    redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local e = bump(ARGV[1])
return {e[1], e[2], redis.call('HGETALL', KEYS[1])}`)
)

// newEpoch is a fresh epoch for the shared set's meta hash.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pairs reads an HGETALL reply: name -> revocation.
func pairs(v any) map[string]*revocation {
	flat, _ := v.([]any)
	out := make(map[string]*revocation, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		if name, ok := flat[i].(string); ok {
			out[name] = parseRevocation(flat[i+1])
		}
	}
	return out
}

// parseRevocation reads a revocation as the hash holds it. One that does not read
// (written by hand) still revokes its key, with no reason and no time.
func parseRevocation(v any) *revocation {
	s, _ := v.(string)
	r := &revocation{}
	if json.Unmarshal([]byte(s), r) != nil {
		return &revocation{}
	}
	return r
}

// revokeView is the answer to a revoke or a restore, and the revocation fields of a
// key's view (keyView).
type revokeView struct {
	Name      string  `json:"name"`
	Revoked   bool    `json:"revoked"`
	RevokedAt *string `json:"revoked_at"`
	Reason    *string `json:"reason"`
	// Scope is where the change applies: cluster (every replica sharing the Redis)
	// or replica (this one).
	Scope string `json:"scope"`
	// Changed is false for a key revoked already (its first revocation stands) or
	// restored while not revoked.
	Changed bool `json:"changed"`
}

// revokedFields are a key's revoked, revoked_at and reason as the admin API shows
// them.
func revokedFields(r *revocation) (revoked bool, at, reason *string) {
	if r == nil {
		return false, nil, nil
	}
	reason = &r.Reason
	if !r.At.IsZero() {
		t := expiryText(r.At)
		at = &t
	}
	return true, at, reason
}

// keyVerbPath reports whether path, what follows /admin/keys/, ends in /revoke or
// /restore and names no key whole: the path of a key change, whatever the method.
func keyVerbPath(rt *runtime, path string) bool {
	p := strings.TrimRight(path, "/")
	if !strings.HasSuffix(p, "/revoke") && !strings.HasSuffix(p, "/restore") {
		return false
	}
	return rt.keyNamed(path) == nil && rt.keyNamed(p) == nil
}

// serveKeyChange answers POST /admin/keys/{name}/revoke and .../restore; path is
// what follows /admin/keys/. Another method on such a path is 405, and POST on a
// key's own path too.
func (s *Server) serveKeyChange(ctx *fasthttp.RequestCtx, rt *runtime, path string) {
	if !ctx.IsPost() {
		writeError(&ctx.Response, methodNotAllowed(ctx, strPost))
		return
	}
	path = strings.TrimRight(path, "/")
	name, revoke := strings.CutSuffix(path, "/revoke")
	if !revoke {
		var restore bool
		if name, restore = strings.CutSuffix(path, "/restore"); !restore || name == "" {
			writeError(&ctx.Response, methodNotAllowed(ctx, strGetHead))
			return
		}
	} else if name == "" {
		writeError(&ctx.Response, methodNotAllowed(ctx, strGetHead))
		return
	}
	reason, e := revokeReason(ctx.PostBody(), rt)
	if e != nil {
		writeError(&ctx.Response, e)
		return
	}
	configured := rt.keyNamed(name) != nil
	rv := s.revokes
	// A name no longer configured may still be restored: its revocation stays
	// until then.
	if !configured && (revoke || rv.rdb == nil && rv.get(name) == nil) {
		writeError(&ctx.Response, &errKeyNotFound)
		return
	}
	opCtx, cancel := context.WithTimeout(context.Background(), 2*revokeTimeout)
	defer cancel()
	by := ctx.RemoteAddr().String()
	view := revokeView{Name: name, Scope: rv.scope()}
	if revoke {
		r, changed, err := rv.revoke(opCtx, name, reason)
		if err != nil {
			s.revokeFailed(ctx, "revoke", name, err)
			return
		}
		view.Changed = changed
		view.Revoked, view.RevokedAt, view.Reason = revokedFields(r)
		if changed {
			s.log.Info("client key revoked: its requests are refused (401 revoked_api_key)",
				"key", name, "reason", reason, "by", by, "scope", view.Scope)
		} else {
			s.log.Info("client key revoked already: its revocation stands", "key", name, "by", by, "scope", view.Scope)
		}
		writeJSON(ctx, 200, view)
		return
	}
	was, err := rv.restore(opCtx, name, configured)
	if err != nil {
		s.revokeFailed(ctx, "restore", name, err)
		return
	}
	if !configured && !was {
		writeError(&ctx.Response, &errKeyNotFound)
		return
	}
	view.Changed = was
	s.log.Info("client key restored: its requests are taken again", "key", name, "was_revoked", was,
		"reason", reason, "by", by, "scope", view.Scope)
	writeJSON(ctx, 200, view)
}

// errKeyNotFound is the admin API's 404 for a key name not configured (nor revoked,
// for a restore). It does not repeat the name: a key pasted in its place would come
// back in the answer.
var errKeyNotFound = apiError{404, "invalid_request_error", "key_not_found", "", "No key in auth.keys has the name this path gives; the path names a key by its name, never by the key itself."}

// revokeFailed answers 503 for a change Redis did not take; its error goes to the
// log, not the answer.
func (s *Server) revokeFailed(ctx *fasthttp.RequestCtx, op, name string, err error) {
	s.log.Warn("key "+op+" not applied: the key revocations in Redis could not be written",
		"key", name, "by", ctx.RemoteAddr().String(), "error", err.Error())
	writeError(&ctx.Response, &apiError{503, "server_error", "revocations_unavailable", "",
		"The key revocations in Redis could not be written, so nothing was changed on any replica; try again, or take the key out of auth.keys and reload every replica."})
}

// revokeReason reads a revoke's or restore's body: none, or a JSON object with at
// most "reason", a string of up to revokeReasonMax bytes that holds no secret the
// config knows (a client key, its SHA-256, the admin token): the reason is logged
// and shown.
func revokeReason(body []byte, rt *runtime) (string, *apiError) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return "", nil
	}
	var in struct {
		Reason *string `json:"reason"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	// A JSON null decodes into the struct without an error, as if no body: it is no
	// object, and a client sending one (a reason variable left unset) meant to say why.
	if body[0] != '{' || dec.Decode(&in) != nil || dec.Decode(&struct{}{}) != io.EOF {
		return "", &apiError{400, "invalid_request_error", "invalid_body", "",
			`The body must be empty or a JSON object with at most "reason", a string, e.g. {"reason": "leaked in a public repository"}.`}
	}
	if in.Reason == nil {
		return "", nil
	}
	reason := *in.Reason
	if len(reason) > revokeReasonMax {
		return "", &apiError{400, "invalid_request_error", "invalid_reason", "reason",
			"The reason is over 200 bytes."}
	}
	if holdsSecret(reason, rt) {
		return "", &apiError{400, "invalid_request_error", "invalid_reason", "reason",
			"The reason holds a secret (a client key, a key's SHA-256 or the admin token): it is logged and shown, so say why in other words."}
	}
	return reason, nil
}

// holdsSecret reports whether text holds a client key of rt's config (found by its
// hash, however it is configured: holdsKeyByHash), one's SHA-256 in hex (either case)
// or the admin token. Secrets shorter than secretMin are not looked for: they would
// match words ("tok" in "token").
func holdsSecret(text string, rt *runtime) bool {
	if holdsKeyByHash(text, rt) {
		return true
	}
	lower := strings.ToLower(text)
	if tok := rt.cfg.Server.AdminToken; len(tok) >= secretMin && strings.Contains(text, tok) {
		return true
	}
	for _, k := range rt.keys {
		if strings.Contains(lower, hex.EncodeToString(k.hash[:])) {
			return true
		}
	}
	return false
}

// holdsKeyByHash reports whether a stretch of text of secretMin bytes or more is a
// client key of rt's, found by its SHA-256 as requests are: a key configured by its
// sha256 alone is found too. At most 200 bytes: some 20,000 hashes, once per revoke.
func holdsKeyByHash(text string, rt *runtime) bool {
	b := []byte(text)
	for i := 0; i+secretMin <= len(b); i++ {
		for j := i + secretMin; j <= len(b); j++ {
			if _, ok := rt.keys[sha256.Sum256(b[i:j])]; ok {
				return true
			}
		}
	}
	return false
}
