package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/router"
	"github.com/tollgate/tollgate/tracing"
)

// runtime is one built config: everything a request needs, immutable once built. A
// reload builds a new one and swaps it in; the old one is retired when the last request
// that started on it ends.
type runtime struct {
	cfg *Config
	// trusted are server.trusted_proxies, parsed.
	trusted   trustedProxies
	endpoints map[string]*endpoint
	// aliases are the endpoints by their aliases (EndpointConfig.Aliases), looked
	// up when "model" names no endpoint.
	aliases  map[string]*endpoint
	backends map[string]*providers.Backend
	// backendList is indexed like the names router plans refer to.
	backendList []*providers.Backend
	// spend are the backends' dearest prices, their tiers' included, indexed like
	// backendList: a spend budget's estimate.
	spend   []spendPrices
	routing []*router.Endpoint
	keys    map[[sha256.Size]byte]*clientKey
	// keysByName are the keys in name order (byte order): the admin API's listing
	// and its lookup by name (keyNamed), sorted once with the config, not per call.
	keysByName []*clientKey
	authKeys   bool
	maxBody    int
	// maxBuffered is server.max_buffered_bytes: the most the request bodies and the
	// upstream answers held may take, all requests together (holdBody, HoldAnswer).
	maxBuffered int64
	// models is the /v1/models body for callers that may use every endpoint.
	models []byte
	// created is the models' "created" time: when this config was built.
	created int64
	// anthropic are the models of every endpoint in Anthropic's shape, and
	// anthropicAll the list of them all (models_anthropic.go).
	anthropic    []listedModel
	anthropicAll []*listedModel

	// series holds the metrics label sets this config uses; closing releases them,
	// which removes from /metrics those the running config does not use (the
	// running config took its own before this one retired). keepSeries, set when
	// the process stops, keeps them for its last scrapes.
	series     *metrics.Lease
	keepSeries atomic.Bool
	// unrouted is the metrics series of requests that named no endpoint.
	unrouted *metrics.Route
	// upstreamLogs throttle the warnings of failed upstream calls by backend name, ""
	// for a request that reached none; carried from the runtime a reload replaces.
	upstreamLogs map[string]*backendLogs
	attempts     map[*providers.Backend][]targetMetrics
	// respTags finds the target a response ID's tag names (responseTag); byID and
	// byIDSpecs are the metrics series and client span of the calls on a stored
	// response by backend (endpoint unknown: they name none).
	respTags map[string]respTarget
	// signer signs response IDs for keys (auth.response_secret), nil without; tagLen
	// is the length of the tag an ID gains, signature included.
	signer    *respSigner
	tagLen    int
	byID      map[*providers.Backend]*metrics.Route
	byIDSpecs map[*providers.Backend]*tracing.Spec
	// upstreamSpecs holds the client span of each (backend, kind).
	upstreamSpecs map[*providers.Backend]*[providers.KindCount]*tracing.Spec
	tr            *tracing.Tracing
	lim           *limiter.Limiter
	// trRef and limRef count the runtimes using tr and lim: a reload that leaves
	// their section alone shares them with the next runtime, and the last runtime
	// to close closes them.
	trRef, limRef *sharedRef
	// rcache is the Redis client of the endpoints whose cache says store: redis
	// (cache_redis.go), nil when none does; rcacheRef counts the runtimes using it,
	// as trRef and limRef do.
	rcache     *redisCache
	rcacheRef  *sharedRef
	limitStore string
	// ipv6Bits is how many leading bits of an IPv6 client name it in per: ip limits
	// (limiter.ipv6_prefix).
	ipv6Bits int

	refs      atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
	log       *slog.Logger
	// closing counts the server's runtimes closing in the background, for shutdown
	// to wait for; nil for a runtime no server installed.
	closing *atomic.Int64
}

// targetMetrics are the series of one target, in the backend's config order.
type targetMetrics struct {
	url string
	// label is the target's label value (targetLabels).
	label string
	a     *metrics.Attempt
	// tag marks the IDs of the Responses API's responses the target made
	// (responseTag).
	tag []byte
}

type endpoint struct {
	idx     int
	name    string
	kind    providers.Kind
	timeout time.Duration
	routing *router.Endpoint
	sticky  *router.Sticky
	m       *metrics.Endpoint
	attrs   *tracing.EndpointAttrs
	// scoreAttrs are a rerank endpoint's attributes for a score call (its operation
	// score), or a transcriptions endpoint's for a translation (translations); nil on
	// other endpoints.
	scoreAttrs *tracing.EndpointAttrs
	// policy holds the endpoint's limits; a key's are joined to them per request
	// (policyFor).
	policy *limiter.Policy
	// rejections counts 429s per limit of the endpoint's and the keys' policies, by
	// limit name.
	rejections       map[string]prometheus.Counter
	defaultMaxTokens int64
	// local is the series of requests the gateway answered itself.
	local *metrics.Route
	// series holds the metrics of route i served by backend j at [i*backends+j],
	// built for the backends a route can reach (its own, the fallbacks and the
	// context fallbacks).
	series   []*metrics.Route
	backends int
	// refused holds, by backend, the series of the requests that backend answered
	// without an upstream (variant none), built for the backends a route can reach.
	refused []*metrics.Route
	// cache keeps the endpoint's answers (cache.go), nil without `cache:`; set as
	// the runtime is installed (carryCaches).
	cache *answerCache
}

// seriesFor is the metrics series of an attempt planned on route by backend.
func (e *endpoint) seriesFor(route, backend int) *metrics.Route {
	if s := e.series[route*e.backends+backend]; s != nil {
		return s
	}
	return e.local
}

// refusedBy is the series of a request backend answered without an upstream.
func (e *endpoint) refusedBy(backend int) *metrics.Route {
	if s := e.refused[backend]; s != nil {
		return s
	}
	return e.local
}

// limitStoreName is the store that answers the limit checks, as their spans name it:
// the limiter keeps its buckets in memory unless the config says redis, and the
// config's defaults leave a store left out empty.
func limitStoreName(store string) string {
	if store == "" {
		return "memory"
	}
	return store
}

// clientKey is one of auth.keys, built. What it holds is its own: a key that may call
// every endpoint shares the runtime's allowed list and models body, and its policy is
// joined with an endpoint's only when a request pairs them (policyFor).
type clientKey struct {
	idx  int
	name string
	// nameBytes is name, as the response IDs answered to the key are signed for it.
	nameBytes []byte
	hash      [sha256.Size]byte
	all       bool
	allowed   []bool
	models    []byte
	// anthropic is the models the key may use, in Anthropic's shape.
	anthropic []*listedModel
	// policy holds the key's own limits.
	policy *limiter.Policy
	// series counts the key's requests, tokens and cost.
	series *metrics.Key
	// expiry is when the key stops working (auth.keys[].expires_at; key_expiry.go),
	// nil for never.
	expiry *keyExpiry
	// revoke is whether the key's name is revoked (key_revoke.go), shared with the
	// other runtimes' keys of that name; set as the runtime is installed.
	revoke *keyRevoke
	// scoreOwner owns the key's score answers in an answer cache (cacheOwner).
	scoreOwner string
	// messagesOwner owns its Messages API answers so (cacheOwner).
	messagesOwner string
}

func buildRuntime(cfg *Config, log *slog.Logger, met *metrics.Metrics, tr *tracing.Tracing, lim *limiter.Limiter, pools *providers.Pools) (*runtime, error) {
	// Taken before the running config retires: the series this config shares with
	// it keep their counts.
	m := met.Lease()
	rt := &runtime{
		series:        m,
		cfg:           cfg,
		endpoints:     map[string]*endpoint{},
		backends:      map[string]*providers.Backend{},
		keys:          map[[sha256.Size]byte]*clientKey{},
		attempts:      map[*providers.Backend][]targetMetrics{},
		respTags:      map[string]respTarget{},
		byID:          map[*providers.Backend]*metrics.Route{},
		byIDSpecs:     map[*providers.Backend]*tracing.Spec{},
		upstreamSpecs: map[*providers.Backend]*[providers.KindCount]*tracing.Spec{},
		upstreamLogs:  map[string]*backendLogs{"": {}},
		tr:            tr,
		lim:           lim,
		limitStore:    limitStoreName(cfg.Limiter.Store),
		ipv6Bits:      cfg.Limiter.IPv6Bits(),
		authKeys:      cfg.Auth.Mode == "keys",
		tagLen:        respTagLen,
		maxBody:       int(cfg.Server.MaxBodyBytes),
		maxBuffered:   int64(cfg.Server.MaxBufferedBytes),
		log:           log,
	}
	rt.trusted, _ = parseTrustedProxies(cfg.Server.TrustedProxies)
	if cfg.Auth.ResponseSecret != "" {
		rt.signer, rt.tagLen = newRespSigner(cfg.Auth.ResponseSecret, cfg.Auth.PreviousResponseSecret), respSignedLen
	}
	names := cfg.backendNames()
	backendIdx := map[string]int{}
	for i, name := range names {
		backendIdx[name] = i
		bc := cfg.Backends[name]
		var hl *healthLog
		if log != nil {
			hl = &healthLog{log: log}
			bc.OnHealth = hl.note
		}
		b, err := providers.NewWith(name, bc, pools)
		if err != nil {
			rt.close()
			return nil, cfg.buildError("backends."+name, err)
		}
		rt.backends[name] = b
		rt.backendList = append(rt.backendList, b)
		rt.upstreamLogs[name] = &backendLogs{}
		rt.spend = append(rt.spend, spendPricesOf(&b.Pricing, cfg.Backends[name].Provider, cfg.Backends[name].DropParams))
		// A backend's replica is picked per attempt, so the spec names none:
		// send records the target each attempt went to.
		specs := &[providers.KindCount]*tracing.Spec{}
		for _, k := range []providers.Kind{providers.Chat, providers.Completions, providers.Embeddings, providers.Rerank, providers.Score, providers.CountTokens,
			providers.Tokenize, providers.Detokenize, providers.Transcription, providers.Translation} {
			specs[k] = tracing.UpstreamSpec(k.String(), bc.Provider, bc.Model, name, "")
		}
		// A Responses API call is a chat operation (gen_ai.operation.name chat).
		specs[providers.Responses] = specs[providers.Chat]
		// So is a Messages API call.
		specs[providers.Messages] = specs[providers.Chat]
		if b.NativeResponses() {
			rt.byID[b] = m.ShapedRoute(metrics.UnknownEndpoint, name, metrics.None, metrics.Shape{Codes: byIDCodes[:]})
			rt.byIDSpecs[b] = tracing.UpstreamSpec("responses", bc.Provider, bc.Model, name, "")
		}
		rt.upstreamSpecs[b] = specs
		targets := b.Targets()
		urls := make([]string, len(targets))
		for i, t := range targets {
			urls[i] = t.URL
		}
		labels := targetLabels(urls)
		if hl != nil {
			// Before the backend starts: its first health check, or request, may
			// be the first to move a target.
			hl.labels = labels
		}
		for i, label := range labels {
			tm := targetMetrics{url: urls[i], label: label, a: m.Attempt(name, label)}
			if rt.byIDSpecs[b] != nil {
				// A backend with the Responses API: the IDs of its responses are tagged.
				tag := responseTag(name, urls[i])
				tm.tag = []byte(tag)
				rt.respTags[tag] = respTarget{b: b, bi: len(rt.backendList) - 1, i: i}
			}
			rt.attempts[b] = append(rt.attempts[b], tm)
		}
	}
	rt.unrouted = m.ShapedRoute(metrics.UnknownEndpoint, metrics.None, metrics.None, metrics.Shape{Codes: unroutedCodes[:]})
	// Each key's policy is compiled once, for every endpoint it calls. A key's limits
	// can refuse a request only on the endpoints it may call (a key not allowed is
	// refused before any limit): their rejection series are those endpoints'.
	keyPolicies := make([]*limiter.Policy, len(cfg.Auth.Keys))
	keyLimits := make([][]string, len(cfg.Auth.Keys))
	for ki, kc := range cfg.Auth.Keys {
		var err error
		if keyPolicies[ki], err = limiter.NewPolicy("key:"+kc.Name, kc.Limits); err != nil {
			rt.close()
			return nil, cfg.buildError("auth.keys["+strconv.Itoa(ki)+"]", err)
		}
		for _, l := range kc.Limits {
			keyLimits[ki] = appendNew(keyLimits[ki], limitName(l))
		}
	}
	endpointIdx := make(map[string]int, len(cfg.Endpoints))
	for i, ec := range cfg.Endpoints {
		endpointIdx[ec.Name] = i
	}
	all := make([]bool, len(cfg.Endpoints))
	for i := range all {
		all[i] = true
	}
	allowed := make([][]bool, len(cfg.Auth.Keys))
	// The limit names of the keys that may call every endpoint, and by endpoint
	// those of the keys that may call it and not all: gathered per key and the
	// endpoints it names, not per key and endpoint, which thousands of keys over
	// hundreds of endpoints would make millions.
	var everyLimits []string
	endpointLimits := make([][]string, len(cfg.Endpoints))
	for ki, kc := range cfg.Auth.Keys {
		// Read only: keys that may call every endpoint share one list.
		allowed[ki] = all
		if mayCallAll(&kc) {
			everyLimits = appendNew(everyLimits, keyLimits[ki]...)
			continue
		}
		allowed[ki] = make([]bool, len(cfg.Endpoints))
		for _, name := range kc.Endpoints {
			if j, ok := endpointIdx[name]; ok {
				allowed[ki][j] = true
				endpointLimits[j] = appendNew(endpointLimits[j], keyLimits[ki]...)
			}
		}
	}
	for i, ec := range cfg.Endpoints {
		kind, _ := kindOf(ec.Type)
		ep := "endpoints[" + strconv.Itoa(i) + "]"
		re, err := router.NewEndpoint(ec.Name, ec.Config, names)
		if err != nil {
			rt.close()
			return nil, cfg.buildError(ep, err)
		}
		// The gateway's own answers on the endpoint, once it is known, and a
		// backend's refusals without an upstream count no upstream status, token
		// or stream: their label sets have only the statuses they can answer.
		e := &endpoint{idx: i, name: ec.Name, kind: kind, timeout: ec.Timeout, routing: re, sticky: re.Sticky(),
			m: m.Endpoint(ec.Name), attrs: tracing.NewEndpointAttrs(ec.Name, ec.Type),
			local: m.ShapedRoute(ec.Name, metrics.None, metrics.None, metrics.Shape{Codes: localCodes(&ec)}), backends: len(names)}
		switch kind {
		case providers.Rerank:
			e.scoreAttrs = tracing.NewEndpointAttrs(ec.Name, providers.Score.String())
		case providers.Transcription:
			e.scoreAttrs = tracing.NewEndpointAttrs(ec.Name, providers.Translation.String())
		}
		e.series = make([]*metrics.Route, len(ec.Routes)*len(names))
		e.refused = make([]*metrics.Route, len(names))
		// A fallback serves no route: its series have no variant, as its attempts
		// count toward no route's canary gates; its refusals count there too. So
		// does a context fallback.
		for _, b := range slices.Concat(ec.Fallbacks, ec.ContextFallbacks) {
			if j := backendIdx[b]; e.refused[j] == nil {
				e.refused[j] = m.ShapedRoute(ec.Name, b, metrics.None, rt.upstreamShape(b, kind))
			}
		}
		for _, r := range ec.Routes {
			if j := backendIdx[r.Backend]; e.refused[j] == nil {
				e.refused[j] = m.ShapedRoute(ec.Name, r.Backend, metrics.None, metrics.Shape{Codes: refusalCodes[:]})
			}
		}
		for ri, r := range ec.Routes {
			variant := r.Variant
			if variant == "" {
				variant = r.Backend
			}
			for _, b := range slices.Concat(ec.Fallbacks, ec.ContextFallbacks) {
				e.series[ri*len(names)+backendIdx[b]] = e.refused[backendIdx[b]]
			}
			// The route's own backend keeps the variant when it is also a fallback.
			e.series[ri*len(names)+backendIdx[r.Backend]] = m.ShapedRoute(ec.Name, r.Backend, variant, rt.upstreamShape(r.Backend, kind))
		}
		rt.routing = append(rt.routing, re)
		e.defaultMaxTokens = ec.DefaultMaxTokens
		e.rejections = map[string]prometheus.Counter{}
		if e.policy, err = limiter.NewPolicy("endpoint:"+ec.Name, ec.Limits); err != nil {
			rt.close()
			return nil, cfg.buildError(ep, err)
		}
		for _, l := range ec.Limits {
			e.rejections[limitName(l)] = m.Rejection(ec.Name, limitName(l))
		}
		// A request on the endpoint checks the key's limits with its own (policyFor):
		// together they must fit in one request. A key not allowed here is refused
		// before any limit is taken, so its limits do not count against that most.
		for ki, kp := range keyPolicies {
			if !allowed[ki][i] {
				continue
			}
			if err := limiter.CheckCombined(e.policy, kp); err != nil {
				rt.close()
				return nil, cfg.buildError("auth.keys["+strconv.Itoa(ki)+"].limits", errors.New("with endpoint "+strconv.Quote(ec.Name)+": "+err.Error()))
			}
		}
		for _, names := range [2][]string{everyLimits, endpointLimits[i]} {
			for _, name := range names {
				if e.rejections[name] == nil {
					e.rejections[name] = m.Rejection(ec.Name, name)
				}
			}
		}
		rt.endpoints[ec.Name] = e
		for _, a := range ec.Aliases {
			if rt.aliases == nil {
				rt.aliases = map[string]*endpoint{}
			}
			rt.aliases[a] = e
		}
	}
	rt.models = rt.modelsBody(all)
	rt.anthropic = rt.anthropicModels()
	rt.anthropicAll = rt.anthropicList(all)
	for ki, kc := range cfg.Auth.Keys {
		k := &clientKey{idx: ki, name: kc.Name, nameBytes: []byte(kc.Name), allowed: allowed[ki], policy: keyPolicies[ki],
			scoreOwner: scoreOwnerShared + kc.Name, messagesOwner: messagesOwnerShared + kc.Name}
		k.series = m.Key(kc.Name, cfg.keyPriced(k.allowed))
		k.expiry = newKeyExpiry(kc.ExpiresAt)
		if kc.SHA256 != "" {
			h, _ := hex.DecodeString(kc.SHA256)
			copy(k.hash[:], h)
		} else {
			k.hash = sha256.Sum256([]byte(kc.Key))
		}
		// A key that may call every endpoint lists them all: the runtime's body.
		k.all = mayCallAll(&kc)
		k.models, k.anthropic = rt.models, rt.anthropicAll
		if !k.all {
			k.models = rt.modelsBody(k.allowed)
			k.anthropic = rt.anthropicList(k.allowed)
		}
		if _, dup := rt.keys[k.hash]; dup {
			rt.close()
			return nil, cfg.buildError("auth.keys["+strconv.Itoa(ki)+"]", errors.New("same key as another entry"))
		}
		rt.keys[k.hash] = k
		rt.keysByName = append(rt.keysByName, k)
	}
	slices.SortFunc(rt.keysByName, func(a, b *clientKey) int { return strings.Compare(a.name, b.name) })
	if log != nil && rt.responsesUnsigned() {
		log.Warn(warnNoRespSecret)
	}
	return rt, nil
}

// The statuses whose request counters exist at 0 on the label sets of the answers no
// upstream gave, which are all these label sets count (an upstream's answer, and the
// gateway's after an attempt, count on the series of the route or fallback tried).
var (
	// unroutedCodes are the gateway's answers before an endpoint is known (endpoint
	// "unknown"): the model list (200), a request it cannot take (400, 405, 408,
	// 413, 414, 415, 431), a missing or wrong key (401), an unknown model or path
	// (404), a drain or shutdown (503).
	unroutedCodes = [...]int{200, 400, 401, 404, 405, 408, 413, 414, 415, 431, 503}
	// byIDCodes are the answers to a call on a stored response: the upstream's found,
	// deleted and not found, the gateway's 400 to a streamed retrieval and its upstream
	// failures. Such a call counts no tokens: its series have no token counters.
	byIDCodes = [...]int{200, 400, 404, 502, 503, 504}
	// endpointCodes are its answers on an endpoint before any backend is tried:
	// the model called on another type's URL (400), a limit (429), the limiter's
	// store down or the shutdown (503).
	endpointCodes = [...]int{400, 429, 503}
	// refusalCodes are a backend's answers without an upstream: a call its API
	// cannot express (400), no target in service or free (503).
	refusalCodes = [...]int{400, 503}
)

// upstreamShape is the shape of the series that backend's upstream answers count on,
// on an endpoint of kind: embeddings and reranks never stream, only Anthropic's usage reports
// prompt cache writes and web searches (providers/anthropic_openai.go), and a backend
// without a price costs nothing.
func (rt *runtime) upstreamShape(backend string, kind providers.Kind) metrics.Shape {
	anthropic := rt.cfg.Backends[backend].Provider == "anthropic"
	return metrics.Shape{
		Upstream:   true,
		Stream:     kind.Generates(),
		CacheWrite: anthropic,
		WebSearch:  anthropic && kind == providers.Chat,
		Cost:       !rt.backends[backend].Pricing.Free(),
	}
}

// mayCallAll reports whether the key may call every endpoint: it lists none, or "*".
func mayCallAll(kc *KeyConfig) bool {
	return len(kc.Endpoints) == 0 || slices.Contains(kc.Endpoints, "*")
}

// buildError is err, from building the runtime, as a ConfigError naming the key path
// it is about: config checks that the build finds first still name file, line and key.
func (c *Config) buildError(key string, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	return newConfigError(c.errProblems(key, err), nil)
}

// attempt finds the attempt counters of the target an attempt went to.
func (rt *runtime) attempt(b *providers.Backend, url string) *metrics.Attempt {
	if url == "" {
		// No target was tried (the pool was ejected or full): nothing to count.
		return nil
	}
	if t := rt.target(b, url); t != nil {
		return t.a
	}
	if ts := rt.attempts[b]; len(ts) > 0 {
		return ts[0].a
	}
	return nil
}

// target is the metrics and tag of b's target at url, nil when b has none there.
func (rt *runtime) target(b *providers.Backend, url string) *targetMetrics {
	ts := rt.attempts[b]
	for i := range ts {
		if ts[i].url == url {
			return &ts[i]
		}
	}
	return nil
}

// targetLabel is the label of b's target at url in metrics (targetLabels), which names
// it in logs too: never its credentials nor its query. "" for no target.
func (rt *runtime) targetLabel(b *providers.Backend, url string) string {
	if url == "" {
		return ""
	}
	if t := rt.target(b, url); t != nil {
		return t.label
	}
	return targetLabels([]string{url})[0]
}

// spendPrices are a backend's dearest prices, those of its service tiers included,
// for a spend budget's estimate: in US dollars per million input, output and
// cache-written prompt tokens, and per thousand web searches.
type spendPrices struct {
	input, output, write, search float64
	// audio is the price of a minute of audio (pricing.audio_per_minute).
	audio float64
	// dropsChatSearch and dropsResponsesSearch are set when the backend's drop_params
	// keep a chat call's web_search_options, or a Responses call's tools, from its
	// upstream: such a call searches nothing there.
	dropsChatSearch, dropsResponsesSearch bool
}

// searchFor is the search price a call of kind may be charged on the backend.
func (p *spendPrices) searchFor(kind providers.Kind) float64 {
	if kind == providers.Chat && p.dropsChatSearch || kind == providers.Responses && p.dropsResponsesSearch {
		return 0
	}
	return p.search
}

// spendPricesOf are the spendPrices of p, a backend of provider's that drops the
// request fields drop. Its write price is the dearest of its cache-write prices, the
// one-hour ones included, or 0: like its search price, it counts only on an anthropic
// backend, whose answers alone report cache writes and searches (upstreamShape), so
// that only there are they ever charged.
func spendPricesOf(p *providers.Pricing, provider string, drop []string) spendPrices {
	d := spendPrices{input: p.InputPerMillion, output: p.OutputPerMillion, audio: p.AudioPerMinute,
		dropsChatSearch: dropsField(drop, "web_search_options"), dropsResponsesSearch: dropsField(drop, "tools")}
	anthropic := provider == "anthropic"
	if anthropic {
		d.write, d.search = writePrice(p.InputPerMillion, p.CacheWritePerMillion, p.CacheWrite1hPerMillion), p.WebSearchPerThousand
	}
	for _, t := range p.Tiers {
		var in float64
		if t.InputPerMillion != nil {
			in = *t.InputPerMillion
			d.input = max(d.input, in)
		}
		if t.OutputPerMillion != nil {
			d.output = max(d.output, *t.OutputPerMillion)
		}
		if anthropic {
			d.write = max(d.write, writePrice(in, t.CacheWritePerMillion, t.CacheWrite1hPerMillion))
			if t.WebSearchPerThousand != nil {
				d.search = max(d.search, *t.WebSearchPerThousand)
			}
		}
	}
	return d
}

// dropsField reports whether drop_params drop holds field, in any case as they are
// matched.
func dropsField(drop []string, field string) bool {
	return slices.ContainsFunc(drop, func(d string) bool { return strings.EqualFold(d, field) })
}

// writePrice is the dearest price of a prompt token written to the cache, per million,
// at a price list whose input price is in: its write price (in when unset) or its
// one-hour write price (the write price when unset), as Pricing.Cost charges them.
func writePrice(in float64, write, write1h *float64) float64 {
	w := in
	if write != nil {
		w = *write
	}
	if write1h != nil {
		w = max(w, *write1h)
	}
	return w
}

// limitName names a limit in metrics and errors: per, kind and window, never a subject.
func limitName(l limiter.Limit) string {
	return string(appendLimitName(nil, &l))
}

// appendLimitName appends limitName(l) to dst.
func appendLimitName(dst []byte, l *limiter.Limit) []byte {
	dst = append(dst, l.Per...)
	switch {
	case l.Concurrency > 0:
		return append(dst, ":concurrency"...)
	case l.Tokens > 0:
		dst = append(dst, ":tokens:"...)
	case l.USD > 0:
		dst = append(dst, ":usd:"...)
	default:
		dst = append(dst, ":requests:"...)
	}
	return append(dst, l.Window...)
}

// policyFor is the limit policy of a request on e by key k (nil without auth): the
// endpoint's limits and the key's together. The pair's combined policy is made by the
// first request that pairs them (limiter.Policy.Joined) rather than for every key and
// endpoint at build, which held memory in keys × endpoints.
func (e *endpoint) policyFor(k *clientKey) *limiter.Policy {
	if k == nil || !k.allowed[e.idx] {
		// A key not allowed here is refused before any limit is taken.
		return e.policy
	}
	p, err := k.policy.Joined(e.policy)
	if err != nil {
		// buildRuntime refused a config whose key and endpoint limits do not fit
		// in one request together (limiter.CheckCombined).
		return e.policy
	}
	return p
}

// targetLabels are the target label values of a backend's targets, given by URL in
// config order: each one's host:port, followed by its path where a target with
// another URL shares the host:port (two deployments behind one ingress), and by its
// place in targets where that target shares the path too (only the query differs).
// Labels alike would be one series showing whichever target was written last. A label
// never holds credentials (which target URLs may not carry) or a query string (which
// may carry a signature); the same URL given twice is one target, with one label.
func targetLabels(urls []string) []string {
	hosts := make([]string, len(urls))
	withPath := make([]string, len(urls))
	for i, raw := range urls {
		hosts[i], withPath[i] = raw, raw
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			hosts[i], withPath[i] = u.Host, u.Host+u.EscapedPath()
		}
	}
	// shared reports whether a target with another URL than target i's has its value
	// in vals.
	shared := func(vals []string, i int) bool {
		for j := range urls {
			if vals[j] == vals[i] && urls[j] != urls[i] {
				return true
			}
		}
		return false
	}
	labels := make([]string, len(urls))
	for i := range urls {
		switch {
		case !shared(hosts, i):
			labels[i] = hosts[i]
		case !shared(withPath, i):
			labels[i] = withPath[i]
		default:
			labels[i] = withPath[i] + " (targets[" + strconv.Itoa(i) + "])"
		}
	}
	return labels
}

// ready reports whether every endpoint can reach at least one healthy target among
// its routes' backends and fallbacks. A route at live weight 0 in r (a rolled-back
// canary, a route an operator drained) is sent nothing, so its backend keeps no
// endpoint ready. The live weights are read as the metrics read them (Weights, in
// route order per endpoint), without a full snapshot's windows and locks per probe.
func (rt *runtime) ready(r *router.Router) bool {
	live := r.Weights()
	for i := range rt.cfg.Endpoints {
		ec := &rt.cfg.Endpoints[i]
		ok := false
		first := slices.IndexFunc(live, func(w router.RouteWeight) bool { return w.Endpoint == ec.Name })
		for j, route := range ec.Routes {
			if k := first + j; first >= 0 && k < len(live) && live[k].Endpoint == ec.Name &&
				live[k].Backend == route.Backend && live[k].Weight == 0 {
				continue
			}
			ok = ok || rt.backends[route.Backend].Healthy()
		}
		for _, f := range ec.Fallbacks {
			ok = ok || rt.backends[f].Healthy()
		}
		if !ok {
			return false
		}
	}
	return true
}

// awaitChecks waits up to d for every target of the runtime's backends to have had
// its first active health check, and reports whether they all had.
func (rt *runtime) awaitChecks(d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for _, b := range rt.backendList {
		if !b.AwaitChecks(ctx) {
			return false
		}
	}
	return true
}

// modelsBody renders OpenAI's model list for the endpoints a caller may use.
func (rt *runtime) modelsBody(allowed []bool) []byte {
	if rt.created == 0 {
		rt.created = time.Now().Unix()
	}
	b := []byte(`{"object":"list","data":[`)
	n := 0
	for i, ec := range rt.cfg.Endpoints {
		if !allowed[i] {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = rt.appendModel(b, ec.Name)
		for _, a := range ec.Aliases {
			b = rt.appendModel(append(b, ','), a)
		}
	}
	return append(b, "]}"...)
}

// appendModel appends OpenAI's model object for the endpoint name (or alias).
func (rt *runtime) appendModel(b []byte, name string) []byte {
	b = append(b, `{"id":`...)
	b = jsonscan.AppendQuote(b, name)
	b = append(b, `,"object":"model","created":`...)
	b = appendInt(b, rt.created)
	return append(b, `,"owned_by":"tollgate"}`...)
}

// endpoint is the endpoint clients name name, by its name or an alias.
func (rt *runtime) endpoint(name []byte) *endpoint {
	if ep := rt.endpoints[string(name)]; ep != nil || rt.aliases == nil {
		return ep
	}
	return rt.aliases[string(name)]
}

// lookupKey finds the client key whose SHA-256 matches the presented one. The map is
// keyed by the hash, so lookup time says nothing about the key itself; the final
// compare is constant-time.
func (rt *runtime) lookupKey(presented []byte) *clientKey {
	h := sha256.Sum256(presented)
	k, ok := rt.keys[h]
	if !ok || subtle.ConstantTimeCompare(k.hash[:], h[:]) != 1 {
		return nil
	}
	return k
}

func (rt *runtime) acquire() bool {
	rt.refs.Add(1)
	if rt.retired.Load() {
		rt.release()
		return false
	}
	return true
}

func (rt *runtime) release() {
	if rt.refs.Add(-1) == 0 && rt.retired.Load() {
		// Closing may take seconds (a tracer exports what it queued, to a
		// collector that may be down): not in the last request's handler, before
		// its answer goes out.
		rt.closeInBackground()
	}
}

// closeInBackground closes the runtime on a goroutine of its own, counted in closing
// until it is done.
func (rt *runtime) closeInBackground() {
	if rt.closing != nil {
		rt.closing.Add(1)
	}
	go rt.closeCounted()
}

func (rt *runtime) closeCounted() {
	rt.close()
	if rt.closing != nil {
		rt.closing.Add(-1)
	}
}

// retire closes the runtime once its last request ends; closing runs on its own, so
// a reload does not wait for it either.
func (rt *runtime) retire() {
	// Its backends' checks and load reads end now (a backend the new config keeps
	// had them ended by its successor's Activate): run on while a last stream ends,
	// they would go on deciding the shared state of the targets with the settings
	// the reload replaced.
	for _, b := range rt.backendList {
		b.Retire()
	}
	rt.retired.Store(true)
	if rt.refs.Load() == 0 {
		// No request can use the runtime from here (acquire sees it retired): its
		// series go now, so that the reload's caller, and the next scrape, no
		// longer see those of what it removed.
		rt.series.Release()
		rt.closeInBackground()
	}
}

// retireNow is retire for a process about to exit: with no request left on the
// runtime it closes it before returning, so what its tracer queued is exported.
func (rt *runtime) retireNow() {
	rt.keepSeries.Store(true)
	rt.retired.Store(true)
	if rt.refs.Load() == 0 {
		rt.close()
	}
}

// sharedRef counts the runtimes that use a tracer or a limiter; the last one to drop
// it closes it.
type sharedRef struct {
	users atomic.Int32
	close func()
}

func (r *sharedRef) hold() *sharedRef {
	r.users.Add(1)
	return r
}

func (r *sharedRef) drop() {
	if r != nil && r.users.Add(-1) == 0 {
		r.close()
	}
}

// tracerRef is the shared reference of a tracer: closing it exports what is queued,
// then calls closed (which folds the tracer's final counts into the metrics).
func tracerRef(tr *tracing.Tracing, log *slog.Logger, closed func()) *sharedRef {
	return &sharedRef{close: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil && log != nil {
			log.Warn("tracer shutdown", "error", err.Error())
		}
		closed()
	}}
}

// limiterRef is the shared reference of a limiter: closing it closes the limiter,
// then calls closed.
func limiterRef(lim *limiter.Limiter, log *slog.Logger, closed func()) *sharedRef {
	return &sharedRef{close: func() {
		if err := lim.Close(); err != nil && log != nil {
			log.Warn("limiter close", "error", err.Error())
		}
		closed()
	}}
}

func (rt *runtime) close() {
	rt.closeOnce.Do(func() {
		rt.limRef.drop()
		rt.trRef.drop()
		// Writes what its requests queued for the Redis answer caches first, when
		// it is the last runtime using the client.
		rt.rcacheRef.drop()
		for name, b := range rt.backends {
			if err := b.Close(); err != nil && rt.log != nil {
				rt.log.Warn("closing backend", "backend", name, "error", err.Error())
			}
		}
		if !rt.keepSeries.Load() {
			rt.series.Release()
		}
	})
}
