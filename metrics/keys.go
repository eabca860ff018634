package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// keyVecs are the collectors of what each client key used: a platform team's
// chargeback, by the key's name from the config (never the key itself).
type keyVecs struct {
	requests *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	cost     *prometheus.CounterVec
	// expiry is each key's expires_at (SetKeyExpiries); expiring, under Metrics.mu,
	// the names it has series of.
	expiry   *prometheus.GaugeVec
	expiring map[string]struct{}
	// revoked is 1 for each key name revoked (SetKeysRevoked); revokedNames, under
	// Metrics.mu, the names it has series of.
	revoked      *prometheus.GaugeVec
	revokedNames map[string]struct{}
}

func newKeyVecs(reg prometheus.Registerer) keyVecs {
	return keyVecs{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_key_requests_total",
			Help: "Requests made with a client key, by the key's name, whatever their answer (refusals included).",
		}, []string{"key"})),
		tokens: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_key_tokens_total",
			Help: "Tokens the answers to a client key's requests used, by the key's name and type (input or output), as tollgate_tokens_total counts them.",
		}, []string{"key", "type"})),
		cost: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_key_cost_usd_total",
			Help: "Cost in US dollars of a client key's requests, by the key's name, as tollgate_cost_usd_total counts it.",
		}, []string{"key"})),
		expiry: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_key_expiry_timestamp_seconds",
			Help: "When a client key stops working (its auth.keys expires_at), in seconds since the Unix epoch, by the key's name; only keys with an expires_at.",
		}, []string{"key"})),
		revoked: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_key_revoked",
			Help: "1 for each client key name revoked through the admin API (POST /admin/keys/{name}/revoke) and not restored, as this replica knows it, names no longer in auth.keys included; no series for a key not revoked.",
		}, []string{"key"})),
	}
}

// SetKeysRevoked replaces tollgate_key_revoked with names, the complete set of the
// key names revoked: the series of a name restored is removed at once.
func (m *Metrics) SetKeysRevoked(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &m.keys
	next := make(map[string]struct{}, len(names))
	for _, name := range names {
		next[name] = struct{}{}
		v.revoked.WithLabelValues(name).Set(1)
	}
	for name := range v.revokedNames {
		if _, ok := next[name]; !ok {
			v.revoked.DeleteLabelValues(name)
		}
	}
	v.revokedNames = next
}

// KeyExpiry is a client key's name and the instant it stops working.
type KeyExpiry struct {
	Name string
	At   time.Time
}

// SetKeyExpiries replaces tollgate_key_expiry_timestamp_seconds with keys, the
// complete set of the running config's keys that expire: the series of a key that
// is gone, or expires no more, is removed at once, unlike its request counters
// (Lease.Key), so that an alert on the gauge follows the config the gateway runs.
func (m *Metrics) SetKeyExpiries(keys []KeyExpiry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &m.keys
	next := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		next[k.Name] = struct{}{}
		v.expiry.WithLabelValues(k.Name).Set(float64(k.At.Unix()) + float64(k.At.Nanosecond())/1e9)
	}
	for name := range v.expiring {
		if _, ok := next[name]; !ok {
			v.expiry.DeleteLabelValues(name)
		}
	}
	v.expiring = next
}

// Key holds the series of one client key. Its methods do not allocate.
type Key struct {
	name                    string
	requests, input, output prometheus.Counter
	cost                    prometheus.Counter // nil when the key reaches no priced backend
	hold
}

// Key returns the series of the client key named name and holds them until
// Release: its cost series only when priced (the key reaches a backend with a
// price; asked for again priced, a key gains it).
func (l *Lease) Key(name string, priced bool) *Key {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	k := acquire(l, m.keySets, name, func() *Key {
		v := &m.keys
		return &Key{name: name, requests: v.requests.WithLabelValues(name),
			input: v.tokens.WithLabelValues(name, "input"), output: v.tokens.WithLabelValues(name, "output")}
	})
	if priced && k.cost == nil {
		k.cost = m.keys.cost.WithLabelValues(name)
	}
	return k
}

// Done counts one request of the key, with the tokens and cost of its answer.
func (k *Key) Done(inTok, outTok int64, costUSD float64) {
	k.requests.Inc()
	if inTok > 0 {
		k.input.Add(float64(inTok))
	}
	if outTok > 0 {
		k.output.Add(float64(outTok))
	}
	if costUSD > 0 && k.cost != nil {
		k.cost.Add(costUSD)
	}
}

func (k *Key) counted() bool {
	if k.cost != nil {
		return counted(k.requests, k.input, k.output, k.cost)
	}
	return counted(k.requests, k.input, k.output)
}

func (k *Key) remove(m *Metrics) {
	delete(m.keySets, k.name)
	v := &m.keys
	v.requests.DeleteLabelValues(k.name)
	v.tokens.DeleteLabelValues(k.name, "input")
	v.tokens.DeleteLabelValues(k.name, "output")
	v.cost.DeleteLabelValues(k.name)
}
