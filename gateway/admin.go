package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/router"
)

// adminTokenOK reports whether authz is "Bearer <tok>" (the scheme in any case). The
// digests are compared, not the strings, so that the time taken says nothing of the
// token's length either.
func adminTokenOK(authz []byte, tok string) bool {
	presented, ok := bearerToken(authz)
	if !ok {
		return false
	}
	got := sha256.Sum256(presented)
	want := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// bearerSent reports whether authz holds a bearer token: the Bearer scheme (in any
// case) and a token after it.
func bearerSent(authz []byte) bool {
	tok, ok := bearerToken(authz)
	return ok && len(tok) > 0
}

// serveOperator answers /admin/...: the routing of every endpoint, canary verbs, weight
// overrides, reloads and the client keys' limits (admin_keys.go). JSON in and out; a
// configured server.admin_token is required as a bearer token.
func (s *Server) serveOperator(ctx *fasthttp.RequestCtx) {
	rt := s.rt.Load()
	if rt == nil {
		writeError(&ctx.Response, &errShuttingDown)
		return
	}
	tok := rt.cfg.Server.AdminToken
	if tok != "" && len(ctx.Request.Header.PeekAll("Authorization")) > 1 {
		// Which line counts is up to each proxy on the way: one token, once, as the
		// API refuses a key sent twice (duplicate_api_key).
		writeError(&ctx.Response, &errAdminAuthTwice)
		return
	}
	if tok != "" && !adminTokenOK(ctx.Request.Header.Peek("Authorization"), tok) {
		// RFC 9110 11.6.1: a 401 carries a challenge; RFC 6750 3.1: error only when a
		// bearer token was sent, none for no credentials or those of another scheme
		// (Basic), which the client may not know to be unsupported.
		challenge := adminChallenge
		if bearerSent(ctx.Request.Header.Peek("Authorization")) {
			challenge = adminChallengeInvalid
		}
		ctx.Response.Header.Set("WWW-Authenticate", challenge)
		writeError(&ctx.Response, &apiError{401, "authentication_error", "invalid_admin_token", "", "This admin API needs the admin token as a bearer token."})
		return
	}
	if e := s.adminOrigin(ctx, tok == ""); e != nil {
		writeError(&ctx.Response, e)
		return
	}
	op, name, verb := adminRoute(string(ctx.Path()), string(ctx.URI().PathOriginal()), func(n string) bool { return rt.endpoints[n] != nil })
	method := string(ctx.Method())
	opCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch {
	case op == adminReload:
		if method != "POST" {
			writeError(&ctx.Response, methodNotAllowed(ctx, strPost))
			return
		}
		if err := s.Reload(); err != nil {
			var ce *ConfigError
			problems := []string{err.Error()}
			if errors.As(err, &ce) {
				problems = ce.Problems
			}
			writeJSON(ctx, 422, map[string]any{"status": "error", "message": "the config was not reloaded; the running one stays", "problems": problems})
			return
		}
		writeJSON(ctx, 200, map[string]any{"status": "reloaded"})
	case op == adminList:
		if method != "GET" && method != "HEAD" {
			writeError(&ctx.Response, methodNotAllowed(ctx, strGetHead))
			return
		}
		writeJSON(ctx, 200, map[string]any{"endpoints": s.endpointViews(rt, s.router.Snapshot()), "leader": s.router.Leader()})
	case op == adminView:
		if method != "GET" && method != "HEAD" {
			writeError(&ctx.Response, methodNotAllowed(ctx, strGetHead))
			return
		}
		snap, err := s.router.EndpointSnapshot(name)
		s.writeRouting(ctx, rt, name, "", snap, err)
	case op == adminCanary:
		if method != "POST" {
			writeError(&ctx.Response, methodNotAllowed(ctx, strPost))
			return
		}
		var do func(context.Context, string) (router.EndpointSnapshot, error)
		switch verb {
		case "pause":
			do = s.router.Pause
		case "resume":
			do = s.router.Resume
		case "promote":
			do = s.router.Promote
		case "rollback":
			do = s.router.Rollback
		default:
			writeError(&ctx.Response, &apiError{404, "invalid_request_error", "unknown_verb", "", "No canary verb `" + verb + "` (for the canary of `" + name + "`): the verbs are pause, resume, promote and rollback."})
			return
		}
		snap, err := do(opCtx, name)
		if err == nil {
			s.log.Info("canary operated", "endpoint", name, "verb", verb, "state", canaryState(snap))
		}
		s.writeRouting(ctx, rt, name, verb, snap, err)
	case op == adminCache:
		s.purgeCache(ctx, rt, name)
	case op == adminKey && (method == "POST" || keyVerbPath(rt, name)):
		// POST /admin/keys/{name}/revoke and /restore (key_revoke.go).
		s.serveKeyChange(ctx, rt, name)
	case op == adminKeys, op == adminKey:
		s.serveKeys(ctx, name, op == adminKey)
	case op == adminWeights && method == "DELETE":
		before, _ := s.router.EndpointSnapshot(name)
		snap, err := s.router.ClearWeights(opCtx, name)
		if err == nil && before.Override && !snap.Override {
			s.log.Info("route weights override ended", "endpoint", name)
		}
		s.writeRouting(ctx, rt, name, "", snap, err)
	case op == adminWeights:
		if method != "PUT" && method != "POST" {
			writeError(&ctx.Response, methodNotAllowed(ctx, strPutPostDelete))
			return
		}
		if rt.endpoints[name] == nil {
			// No endpoint is the first thing wrong: weights for one, however
			// written, would not make it exist.
			writeError(&ctx.Response, s.routingError(name, "", router.ErrUnknownModel))
			return
		}
		weights, ok := parseWeights(ctx.PostBody())
		if !ok {
			writeError(&ctx.Response, &apiError{400, "invalid_request_error", "invalid_weights", "", "Invalid weights for `" + name + "`: the body must be a JSON object" + ` of route (its backend or variant name) to weight, e.g. {"stable": 90, "canary": 10}.`})
			return
		}
		snap, err := s.router.SetWeights(opCtx, name, weights)
		if err == nil {
			s.log.Info("route weights overridden", "endpoint", name, "weights", weights)
		}
		s.writeRouting(ctx, rt, name, "", snap, err)
	default:
		writeError(&ctx.Response, &errNotFound)
	}
	s.syncRouterGauges(false)
}

// The admin API's challenges on 401: without a bearer token, and with a wrong one.
const (
	adminChallenge        = `Bearer realm="tollgate-admin"`
	adminChallengeInvalid = `Bearer realm="tollgate-admin", error="invalid_token"`
)

// What an /admin/ path asks for.
const (
	adminNotFound = iota
	adminReload
	adminList
	adminView
	adminCanary
	adminWeights
	adminCache
	adminKeys
	adminKey
)

// adminRoute reads an /admin/ path: path as fasthttp normalized it (ctx.Path()), raw
// as it was sent (ctx.URI().PathOriginal()). Endpoint names may hold slashes, as a
// model's Hugging Face ID does (meta-llama/Llama-3.1-8B-Instruct, hf://org/model),
// written as they are or as %2F, so the operation is read from the end of the path: a
// path that is an endpoint's whole name shows that endpoint; one ending in /weights or
// /canary/{verb} operates on the name before it; any other is shown as a name (404 if
// none has it). The route is the normalized path's, as the API's is (pathName); below
// /admin/endpoints/ the name and the operation are read together from the path as
// sent, percent-decoded and nothing else: the normalized one has "//" collapsed (no
// "hf://org/model") and its dot segments resolved, and "chat/../x" is then that name,
// never x, nor can dots turn one operation into another ("x/canary/pause/../../weights"
// is no weights override of x). A path as sent that has no name there
// ("/admin//endpoints/x") leaves the normalized path's standing.
func adminRoute(path, raw string, isEndpoint func(string) bool) (op int, name, verb string) {
	path = strings.Trim(path, "/")
	switch path {
	case "admin/reload":
		return adminReload, "", ""
	case "admin/endpoints":
		return adminList, "", ""
	case "admin/keys":
		return adminKeys, "", ""
	}
	if name, ok := strings.CutPrefix(path, "admin/keys/"); ok {
		// A key's name as sent, percent-decoded, as an endpoint's below.
		if sent, ok := strings.CutPrefix(raw, "/admin/keys/"); ok && sent != "" {
			name = string(appendUnescaped(nil, []byte(sent)))
		}
		return adminKey, name, ""
	}
	rest, ok := strings.CutPrefix(path, "admin/endpoints/")
	if !ok {
		return adminNotFound, "", ""
	}
	if sent, ok := strings.CutPrefix(raw, "/admin/endpoints/"); ok && sent != "" {
		rest = string(appendUnescaped(nil, []byte(sent)))
		if isEndpoint(rest) {
			return adminView, rest, ""
		}
		// A slash at the end is none of the name's, as the normalized path has it.
		rest = strings.TrimRight(rest, "/")
	}
	if isEndpoint(rest) {
		return adminView, rest, ""
	}
	if n, ok := strings.CutSuffix(rest, "/weights"); ok && n != "" {
		return adminWeights, n, ""
	}
	if n, ok := strings.CutSuffix(rest, "/cache"); ok && n != "" {
		return adminCache, n, ""
	}
	if i := strings.LastIndex(rest, "/canary/"); i > 0 && !strings.Contains(rest[i+len("/canary/"):], "/") {
		return adminCanary, rest[:i], rest[i+len("/canary/"):]
	}
	return adminView, rest, ""
}

func canaryState(s router.EndpointSnapshot) string {
	if s.Canary == nil {
		return "none"
	}
	return s.Canary.State.String()
}

// endpointView is one endpoint as the admin API shows it.
type endpointView struct {
	router.EndpointSnapshot
	Type string `json:"type"`
}

func (s *Server) endpointViews(rt *runtime, snaps []router.EndpointSnapshot) []endpointView {
	out := make([]endpointView, 0, len(snaps))
	for _, sn := range snaps {
		v := endpointView{EndpointSnapshot: sn}
		if ep := rt.endpoints[sn.Name]; ep != nil {
			v.Type = ep.kind.String()
		}
		out = append(out, v)
	}
	return out
}

// writeRouting answers with endpoint name's view, or with the error an operation on it
// (verb, for a canary verb) met.
func (s *Server) writeRouting(ctx *fasthttp.RequestCtx, rt *runtime, name, verb string, snap router.EndpointSnapshot, err error) {
	if err != nil {
		writeError(&ctx.Response, s.routingError(name, verb, err))
		return
	}
	writeJSON(ctx, 200, s.endpointViews(rt, []router.EndpointSnapshot{snap})[0])
}

// routingError maps a router error to the admin API's status and code, with a message in
// the operator's terms: the endpoint, the verb and the canary state it does not fit, or
// what is wrong with the weights. Redis's own error (its address, a dial failure) and
// any unmapped error go to the log, not the answer.
func (s *Server) routingError(name, verb string, err error) *apiError {
	q := "`" + name + "`"
	switch {
	case errors.Is(err, router.ErrUnknownModel):
		return &apiError{404, "invalid_request_error", "endpoint_not_found", "", "No endpoint is named " + q + "."}
	case errors.Is(err, router.ErrNoCanary):
		return &apiError{409, "invalid_request_error", "no_canary", "", "Endpoint " + q + " has no canary."}
	case errors.Is(err, router.ErrCanaryState):
		state := router.StateNone
		if snap, e := s.router.EndpointSnapshot(name); e == nil && snap.Canary != nil {
			state = snap.Canary.State
		}
		msg := "The canary of " + q + " is " + state.String() + ": " + verb + " does not apply to it."
		switch state {
		case router.StateRolledBack:
			msg += " Resume it to step again from its first step, or promote it."
		case router.StatePromoted:
			msg += " It has all the traffic; roll it back to start over."
		}
		return &apiError{409, "invalid_request_error", "invalid_canary_state", "", msg}
	case errors.Is(err, router.ErrInvalidWeights):
		return &apiError{400, "invalid_request_error", "invalid_weights", "",
			"Invalid weights for " + q + ": " + strings.TrimPrefix(err.Error(), router.ErrInvalidWeights.Error()+": ")}
	case errors.Is(err, router.ErrUnavailable):
		s.log.Warn("admin operation not applied: shared routing state unavailable", "endpoint", name, "error", err.Error())
		return &apiError{503, "server_error", "shared_state_unavailable", "",
			"The shared routing state in Redis could not be read or written, so nothing was changed; try again."}
	}
	s.log.Error("admin operation failed", "endpoint", name, "error", err.Error())
	return &apiError{500, "server_error", "internal_error", "", "The operation failed; the gateway's log has the detail."}
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(&ctx.Response, &errInternal)
		return
	}
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	ctx.SetBody(b)
}

// parseWeights reads a weights override: one JSON object of route name to whole-number
// weight, each name once, and nothing after it. A decoder alone would take the first
// of two objects, ignore trailing bytes and keep the last of a repeated name, any of
// which could move traffic the operator did not ask to move.
func parseWeights(body []byte) (map[string]int, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	weights := map[string]int{}
	for dec.More() {
		t, err := dec.Token()
		name, isName := t.(string)
		if err != nil || !isName {
			return nil, false
		}
		if _, dup := weights[name]; dup {
			return nil, false
		}
		// A token, so that null (nil), a string or a list is told from a number.
		t, err = dec.Token()
		num, isNum := t.(json.Number)
		if err != nil || !isNum {
			return nil, false
		}
		w, ok := wholeNumber(string(num))
		if !ok {
			return nil, false
		}
		weights[name] = w
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return weights, len(weights) > 0
}

// wholeNumber reads a JSON number that is a whole number, however written: JSON has one
// number type (RFC 8259 6), and Python's json.dumps writes a weight computed by a
// division as 80.0. A fraction (80.5) is refused, and so is one written with a point or
// an exponent beyond an int32.
func wholeNumber(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, false
	}
	return int(f), true
}

var errCrossSite = apiError{403, "permission_error", "cross_site_request", "", "The admin API takes no requests from web pages of other sites."}

// adminOrigin refuses what a web page could make a browser send to the admin API: a
// page of another site can POST a form or text/plain body without a preflight, and
// without admin_token nothing else would stop it (a browser cannot add the token's
// Authorization header). A change sent from another origin (Origin, or Sec-Fetch-Site
// other than same-origin or none) is refused; and without a token, on a loopback
// listener, so is any request whose Host is not a loopback name, which a page that
// rebinds its own domain to 127.0.0.1 would send. curl, scripts and Prometheus send
// neither header and a loopback Host.
func (s *Server) adminOrigin(ctx *fasthttp.RequestCtx, noToken bool) *apiError {
	if !ctx.IsGet() && !ctx.IsHead() {
		if site := ctx.Request.Header.Peek("Sec-Fetch-Site"); len(site) > 0 &&
			string(site) != "same-origin" && string(site) != "none" {
			return &errCrossSite
		}
		if o := ctx.Request.Header.Peek("Origin"); len(o) > 0 {
			u, err := url.Parse(string(o))
			if err != nil || !strings.EqualFold(u.Host, string(ctx.Host())) {
				return &errCrossSite
			}
		}
	}
	if noToken && loopback(s.admLn.Addr()) && !loopbackHost(string(ctx.Host())) {
		return &errCrossSite
	}
	return nil
}

// loopbackHost reports whether a Host header names this machine's loopback: localhost
// or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
