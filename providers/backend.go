package providers

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

type netConn = net.Conn

// Provider speaks one upstream API to one target.
type Provider interface {
	Send(t *Target, call *Call, out *fasthttp.Response, res *Result) error
}

// preparer is a Provider that writes the upstream's request body before a target is
// leased, so that a call its API cannot express is refused without taking one: no
// slot, no place in the queue, no trial, and nothing said about a target's health. Its
// Send reads the body from call.prepared.
type preparer interface {
	// prepare appends the upstream request body for call to dst. A call the API
	// cannot express gets its answer written to out and a *RequestError; an
	// operation the API lacks, an *UnsupportedError.
	prepare(dst []byte, call *Call, out *fasthttp.Response) ([]byte, error)
}

// Backend is one configured upstream: its API, its replica targets and their pools.
type Backend struct {
	Name    string
	Model   string
	Pricing Pricing
	cfg     Config
	targets []*Target
	next    atomic.Uint64
	p       Provider
	pp      preparer // p when it translates calls before a target is leased
	closers []func() error
	pool    pool
	// busySets holds the *targetBits Send marks busy targets in, sized to targets.
	busySets sync.Pool
	// dropsCap is set when drop_params names max_tokens or max_completion_tokens
	// (Uncapped).
	dropsCap bool
	// renamesCap is set for an OpenAI reasoning model, to which a chat call's
	// max_tokens goes as max_completion_tokens.
	renamesCap bool
	// native is set when the upstream serves the Responses API itself; without it
	// a Responses call goes through the bridge (bridge.go), as a chat call whose
	// stream asks for its usage when bridgeUsage is set.
	native, bridgeUsage bool
	// messagesChat is set when the backend serves the Messages API through its chat
	// completions API (messages_bridge.go): azure, and openai with messages_api chat;
	// messagesContinuous when such a stream asks for usage on every chunk
	// (streamUsageContinuous).
	messagesChat, messagesContinuous bool
	// quotedModel is Model as a JSON string.
	quotedModel []byte
	// noTokenizerUntil is when, in Unix nanoseconds of the pool's clock, a token
	// count through chat completions asks the upstream's tokenizer again after it
	// was found to have none (tokenizerMissing); 0 until then.
	noTokenizerUntil atomic.Int64
}

// New builds a backend from its validated config, keeping its targets' health and load
// to itself; see NewWith.
func New(name string, c Config) (*Backend, error) { return NewWith(name, c, nil) }

// build makes the backend's provider and targets, without their pool.
func build(name string, c Config, ps *Pools) (*Backend, error) {
	cfg := c.withDefaults()
	b := &Backend{Name: name, Model: cfg.Model, Pricing: cfg.Pricing, cfg: cfg, dropsCap: dropsCap(cfg.DropParams),
		renamesCap: (cfg.Provider == "openai" || cfg.Provider == "azure") && openAIReasoningModel(cfg.Model),
		native:     nativeResponses(&cfg), bridgeUsage: true, messagesChat: messagesViaChat(&cfg),
		messagesContinuous: cfg.streamUsageContinuous(), quotedModel: quoteModel(cfg.Model)}
	b.busySets.New = func() any {
		s := make(targetBits, (len(b.targets)+63)/64)
		return &s
	}
	urls := cfg.Targets
	if cfg.BaseURL != "" {
		urls = []string{cfg.BaseURL}
	}
	switch cfg.Provider {
	case "openai", "azure":
		var o *openAI
		if cfg.Provider == "openai" {
			o = newOpenAI(&cfg)
		} else {
			o = newAzure(&cfg)
		}
		// A server that refuses stream_options (stream_usage false) gets none from
		// the bridge either.
		b.bridgeUsage = o.streamUsage
		b.p, b.pp = openAIProvider(o, &cfg)
	case "anthropic":
		a := newAnthropic(&cfg)
		b.p, b.pp = a, a
	case "mock":
		t, p, closer, err := newMock(&cfg, name, ps)
		if err != nil {
			return nil, err
		}
		b.targets, b.p = []*Target{t}, p
		b.closers = append(b.closers, closer)
		return b, nil
	default:
		return nil, errors.New("backend " + name + ": unknown provider " + cfg.Provider)
	}
	tlsCfg, err := cfg.TLS.ClientConfig()
	if err != nil {
		return nil, errors.New("backend " + name + ": " + err.Error())
	}
	for i, u := range urls {
		t, err := newTarget(u, &cfg, name)
		if err != nil {
			return nil, errors.New("backend " + name + ": targets[" + strconv.Itoa(i) + "]: " + err.Error())
		}
		t.client.TLSConfig = tlsCfg
		switch cfg.Provider {
		case "azure":
			azureURLs(t, &cfg)
		case "anthropic":
			anthropicURLs(t)
		}
		b.targets = append(b.targets, t)
	}
	return b, nil
}

// Targets are the backend's replicas.
func (b *Backend) Targets() []*Target { return b.targets }

// Send makes one attempt on a target the balance policy picks among those in service,
// and tells that target's health how it went, as res's verdict says too. The
// upstream's status, content type and body (translated to OpenAI's form where needed)
// are written into out. With no target in service it returns ErrNoHealthyTarget, with
// every one full ErrOverloaded. An attempt whose target has every connection busy
// (max_connections) is sent to another target with one free, being not yet sent.
func (b *Backend) Send(call *Call, out *fasthttp.Response, res *Result) error {
	if call.Kind == Responses && !b.native {
		return b.bridge(call, out, res)
	}
	if b.messagesChat && call.Kind.Anthropic() {
		return b.bridgeMessages(call, out, res)
	}
	if b.cfg.Provider == "azure" && call.Kind.AnyEndpoint() {
		return errAzureTokenize
	}
	if b.pp != nil {
		// The translation, or its refusal, comes before a target is leased.
		buf := bodyPool.Get().(*[]byte)
		defer putBody(buf)
		body, err := b.pp.prepare((*buf)[:0], call, out)
		*buf = body
		if err != nil {
			return err
		}
		call.prepared = body
		defer func() { call.prepared = nil }()
	}
	l, err := b.acquire(call)
	res.Queued = l.waited
	if err != nil {
		return err
	}
	// busy marks the targets whose every connection max_connections allows was found
	// busy, taken from the backend's sets at the first: the call goes to another
	// target in service with one free, and is overloaded only when none has.
	var busy *targetBits
	for tries := 1; ; tries++ {
		t := b.targets[l.i]
		if tries < len(b.targets) && call.pin != b && b.pool.states[l.i].slots.load() > int64(b.cfg.MaxConnections) && !b.connFree(l.i) {
			// Requests in flight hold its every connection: sent here, the call would
			// wait up to connect_timeout for one.
			busy = b.markBusy(busy, l.i)
			if next, ok := b.spill(call, l, *busy); ok {
				b.report(l, neutral)
				b.pool.free(l.i)
				l = next
				continue
			}
		}
		res.Target, res.Sent = t.URL, time.Now()
		err = b.p.Send(t, call, out, res)
		if err == nil && call.bridged != nil && res.Stream == nil {
			err = b.bridgeAnswer(call.bridged, out, res)
		} else if err == nil && call.messagesBridged && res.Stream == nil {
			err = b.messagesAnswer(call, out, res)
		}
		err = b.settle(l, err, res)
		if err == nil || tries >= len(b.targets) || !errors.Is(err, errConnsBusy) || call.pin == b {
			break
		}
		// Nothing was sent.
		busy = b.markBusy(busy, l.i)
		next, ok := b.spill(call, l, *busy)
		if !ok {
			break
		}
		l = next
	}
	if busy != nil {
		clear(*busy)
		b.busySets.Put(busy)
	}
	if err != nil {
		// failedOn alone marks the next attempt a retry on b, which takes no
		// last-resort trial (lastLease).
		if call.failedOn != b {
			call.failedOn, call.failed = b, targetSet{}
		}
		call.failed.add(l.i)
	}
	return err
}

// markBusy adds target i to busy, taking a set from the backend's for the first.
func (b *Backend) markBusy(busy *targetBits, i int) *targetBits {
	if busy == nil {
		busy = b.busySets.Get().(*targetBits)
	}
	busy.add(i)
	return busy
}

// targetSet is a set of a backend's targets by index that needs no allocation: the
// first 64 are bits of low, those past them a short list. It holds the targets that
// failed one call, no more than the call's attempts on the backend (retries are at
// most 10, so 11); past maxListed of them beyond the first 64, the oldest is
// forgotten. A nil *targetSet is empty.
type targetSet struct {
	low    uint64
	listed [maxListed]int32
	n      uint8
	// but, when set, is one more than the index of the one target the set leaves
	// out: the set of every other target, which a call pinned to that target
	// avoids.
	but int32
}

// maxListed is how many targets past the first 64 a targetSet keeps: with low and n,
// a set fills one 64-byte cache line.
const maxListed = 12

func (s *targetSet) add(i int) {
	if i < 64 {
		s.low |= 1 << uint(i)
		return
	}
	if s.has(i) {
		return
	}
	if s.n == maxListed {
		copy(s.listed[:], s.listed[1:])
		s.n--
	}
	s.listed[s.n] = int32(i)
	s.n++
}

func (s *targetSet) has(i int) bool {
	if s == nil {
		return false
	}
	if s.but > 0 {
		return i != int(s.but-1)
	}
	if i < 64 {
		return s.low&(1<<uint(i)) != 0
	}
	for _, j := range s.listed[:s.n] {
		if int(j) == i {
			return true
		}
	}
	return false
}

func (s *targetSet) empty() bool { return s == nil || s.low == 0 && s.n == 0 && s.but == 0 }

// pinned reports whether s is the set of a pinned call, every target but its own.
func (s *targetSet) pinned() bool { return s != nil && s.but > 0 }

// targetBits is a set of a backend's targets as bits, one word per 64: the targets a
// call found with every connection busy, which may be all of them.
type targetBits []uint64

func (s targetBits) add(i int) { s[i>>6] |= 1 << (uint(i) & 63) }

func (s targetBits) has(i int) bool { return s[i>>6]&(1<<(uint(i)&63)) != 0 }

// connFree reports whether a connection to target i is idle or may still be opened
// under max_connections: by its client's own count, and by the target's gate, which
// counts the connections of the backends a reload replaced too.
func (b *Backend) connFree(i int) bool {
	c := b.targets[i].client
	limit := c.MaxConns
	if limit <= 0 {
		limit = fasthttp.DefaultMaxConnsPerHost
	}
	idle := c.IdleConnsCount()
	return c.ConnsCount()-idle < limit && b.pool.states[i].conns.free(idle)
}

// spill takes a slot on another target in service for a call whose target l had
// every connection busy: one not in busy, with a connection free and a slot, and that
// has not failed the call while there is such a one. The call's deadline is kept.
func (b *Backend) spill(call *Call, l lease, busy targetBits) (lease, bool) {
	if !call.Deadline.IsZero() && !time.Now().Before(call.Deadline) {
		return lease{}, false
	}
	p := &b.pool
	limit := p.limit()
	avoid := b.avoid(call)
	for {
		for j, st := range p.states {
			if j == l.i || busy.has(j) || avoid.has(j) || !st.available() || !b.connFree(j) {
				continue
			}
			if st.slots.take(limit) {
				return lease{i: j, queued: l.queued}, true
			}
		}
		if avoid == nil {
			return lease{}, false
		}
		avoid = nil
	}
}

// Close stops the backend's background work and releases its idle connections and
// in-process upstreams. Streams still open keep their connections until closed.
func (b *Backend) Close() error {
	b.stop()
	var errs []error
	for _, t := range b.targets {
		t.client.CloseIdleConnections()
	}
	for _, c := range b.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// b2s views b as a string without copying; the string must not outlive b's contents.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
