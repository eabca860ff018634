package providers

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/internal/headerconf"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// Config is one entry of the top-level `backends:` map: one upstream API, served by one
// URL or a pool of replica URLs.
type Config struct {
	// Provider is the upstream's API: openai, azure, anthropic or mock.
	Provider string `yaml:"provider"`
	// BaseURL is the one upstream URL (for OpenAI-compatible APIs ending in /v1).
	BaseURL string `yaml:"base_url"`
	// Targets are replica URLs; a backend has BaseURL or Targets.
	Targets []string `yaml:"targets"`
	// Model is the upstream's model name that replaces the client's endpoint name.
	Model string `yaml:"model"`
	// APIKey is sent to the upstream; never logged.
	APIKey string `yaml:"api_key"`
	// Headers are extra headers sent to the upstream.
	Headers map[string]string `yaml:"headers"`
	// Pricing turns token counts into cost.
	Pricing Pricing `yaml:"pricing"`
	// Timeout bounds one attempt: the whole response, or the whole stream.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds dialing and waiting for a free connection.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxConnections caps open connections per target.
	MaxConnections int `yaml:"max_connections"`
	// IdleConnTimeout is how long a connection to a target is kept idle for the next
	// request: default 4s. It must stay under the upstream's own keep-alive timeout
	// (vLLM's uvicorn closes a connection idle for 5s), or a request may go out on a
	// connection the upstream has just closed.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
	// StreamUsage asks the upstream for a usage chunk on streams the client did not ask
	// one for (stream_options.include_usage), and hides it from the client. Default true
	// (for provider azure, only with api_version 2024-09-01-preview or later); turn off
	// for servers that reject stream_options.
	StreamUsage *bool `yaml:"stream_usage"`
	// StreamUsageContinuous asks, on a Messages API stream served through chat
	// completions (messages_api chat, or provider azure), for usage on every chunk
	// (stream_options.continuous_usage_stats, which vLLM and SGLang take) besides the
	// usage chunk, so that message_start carries the prompt's tokens. Default true for
	// openai with messages_api chat but on OpenAI's API (api.openai.com, a regional
	// host of it) or an Azure OpenAI resource's host, which refuse unknown
	// stream_options members (400 unknown_parameter), false for azure; turn off for
	// other servers that refuse it.
	// It rides on include_usage, so stream_usage false turns it off too (as does an
	// azure api_version older than stream_options, unless stream_usage is true).
	StreamUsageContinuous *bool `yaml:"stream_usage_continuous"`
	// Mock configures the built-in mock upstream (provider: mock).
	Mock MockConfig `yaml:"mock"`

	// Balance picks the target of each request: round_robin (the default), least_loaded
	// (fewest requests in flight from this gateway) or vllm_queue (the queue each vLLM
	// target reports on its metrics page, plus what was sent since it was read).
	Balance string `yaml:"balance"`
	// Affinity sends requests that share a prompt prefix to the same target.
	Affinity AffinityConfig `yaml:"affinity"`
	// Health takes failing targets out of service and brings them back.
	Health HealthConfig `yaml:"health"`
	// MaxConcurrency caps the requests in flight on each target; 0 is no cap.
	MaxConcurrency int `yaml:"max_concurrency"`
	// Queue holds requests that find their target at MaxConcurrency.
	Queue QueueConfig `yaml:"queue"`
	// FirstByteTimeout bounds the wait for the first byte of the answer once the request
	// is sent; 0 is no bound but Timeout. An answer that does not stream comes whole, so
	// for it this bounds the whole generation.
	FirstByteTimeout time.Duration `yaml:"first_byte_timeout"`
	// StreamIdleTimeout bounds the upstream's silence between two reads of an answer
	// once its first byte came: for a stream, the gap between chunks, timed from when
	// the gateway waits for the next one, so that time spent writing to a slow client
	// does not count; 0 is no bound but Timeout.
	StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout"`
	// MetricsPath is where balance vllm_queue reads each target's Prometheus metrics, on
	// the target's host: default /metrics.
	MetricsPath string `yaml:"metrics_path"`
	// MetricsInterval is how often balance vllm_queue reads them: default 1s.
	MetricsInterval time.Duration `yaml:"metrics_interval"`

	// Proxy sends the backend's connections through an egress proxy: http://host:port
	// (a CONNECT tunnel, for https and http targets alike) or socks5://host:port, with
	// user:password@ for proxies that ask for it. Empty: direct.
	Proxy string `yaml:"proxy"`
	// TLS verifies https targets against a private CA, names their certificates must
	// carry, and holds the gateway's client certificate for mutual TLS.
	TLS TLSConfig `yaml:"tls"`

	// Deployment is the Azure OpenAI deployment that serves the model (provider: azure).
	Deployment string `yaml:"deployment"`
	// APIVersion is Azure OpenAI's api-version query value (provider: azure).
	APIVersion string `yaml:"api_version"`
	// AnthropicVersion is the anthropic-version header (provider: anthropic).
	AnthropicVersion string `yaml:"anthropic_version"`
	// MaxTokens is the max_tokens sent when the client gives none (provider: anthropic,
	// whose Messages API requires one).
	MaxTokens int64 `yaml:"max_tokens"`
	// Thinking is how reasoning_effort is sent (provider: anthropic): "budget" as
	// thinking enabled with budget_tokens, "adaptive" as adaptive thinking with
	// output_config.effort; "auto" (or empty) decides from the model's version.
	Thinking string `yaml:"thinking"`
	// DropParams are top-level fields of the client's request never sent to this
	// backend (an upstream that refuses them: temperature on a reasoning model).
	DropParams []string `yaml:"drop_params"`
	// DeveloperRole is the role a chat completions call's developer messages go to
	// this backend as (provider openai or azure): developer (the default: as they
	// came) or system, for an upstream that refuses the developer role or whose
	// chat template drops it (DeepSeek's API, vLLM with Qwen3's template).
	DeveloperRole string `yaml:"developer_role"`

	// ResponsesAPI is how the backend serves OpenAI's Responses API: native (the
	// upstream's own /responses; the default for openai, and mock's only way) or
	// chat (through its chat completions API, translated by the gateway, stateless;
	// the only way for anthropic and azure, whose APIs have none). chat suits an
	// OpenAI-compatible server without /v1/responses (TGI, llama.cpp, older vLLM).
	ResponsesAPI string `yaml:"responses_api"`
	// MessagesAPI is how the backend serves Anthropic's Messages API: native (the
	// upstream's own /messages; the default, and the only way for anthropic and
	// mock) or chat (through its chat completions API, translated by the gateway;
	// the only way for azure). chat suits a server without /v1/messages (OpenAI's
	// API, TGI, older vLLM).
	MessagesAPI string `yaml:"messages_api"`

	// MaxResponseBytes bounds an answer that does not stream, which the gateway reads
	// whole before passing it on (it reads usage from it): default 64MiB, at most
	// MaxResponseBytesLimit. An answer over it gets 502 upstream_bad_response. Raise it
	// for a backend whose answers are legitimately larger: OpenAI's largest embeddings
	// answer, 2048 inputs of 3072 float dimensions, is about 80 MB.
	MaxResponseBytes Size `yaml:"max_response_bytes"`
	// MaxResponseHeaderBytes bounds an answer's header (from its status line to the
	// blank line that ends it; a chunked body's trailer too) on every call, and on the
	// backend's health checks and metrics reads: default 4KiB, MinResponseHeaderBytes
	// to MaxResponseHeaderBytesLimit. The header is read into a buffer of this size,
	// which every open upstream connection holds, a stream's for its whole length. An
	// answer whose header is over it gets 502 upstream_bad_response. Raise it for an
	// upstream whose headers are legitimately larger: a load balancer's stickiness
	// cookie, the headers a CDN or an API gateway (Azure API Management) adds.
	MaxResponseHeaderBytes Size `yaml:"max_response_header_bytes"`
	// CompletionsViaChat serves completions calls (provider openai or azure) through
	// the upstream's chat completions API: the prompt goes as one user message and the
	// answer comes back as a text_completion. MLflow AI Gateway's openai, azure and
	// mistral providers serve llm/v1/completions so, on chat models that have no
	// legacy completions; the MLflow config loader sets it, it is no YAML key.
	CompletionsViaChat bool `yaml:"-"`
	// CompletionsTemperatureScale multiplies the temperature of a completions call sent
	// through chat; 0 sends it as it came. MLflow's mistral provider halves it: MLflow's
	// temperature runs from 0 to 2, Mistral's from 0 to 1.
	CompletionsTemperatureScale float64 `yaml:"-"`
	// ChatTemperatureScale multiplies the temperature of every call an anthropic
	// backend sends, before its cap of 1; 0 sends it as it came. MLflow AI Gateway's
	// anthropic provider halves it (MLflow's temperature runs from 0 to 2,
	// Anthropic's from 0 to 1); the MLflow config loader sets it, it is no YAML key.
	ChatTemperatureScale float64 `yaml:"-"`
	// NoModel sends calls with no model member, Model being empty (provider openai
	// or azure): an upstream serving one model, or an Azure deployment, which its
	// URL names. MLflow sends the calls of an endpoint without model.name so (or with
	// "model": null, which an OpenAI-style server reads as none). Provider anthropic
	// sends "model": "" instead: its Messages API takes no call without the member.
	NoModel bool `yaml:"-"`
	// OnHealth, when set, is told of each target of the backend leaving service or
	// coming back (HealthChange), once per passage, from the goroutine that found
	// it: a request's, or the active checks'. The gateway sets it to log them; it
	// is no YAML key.
	OnHealth func(HealthChange) `yaml:"-"`

	// resolver looks up targets' host names in place of the system's resolver;
	// nil is the system's. Tests set it to answer names they control.
	resolver *net.Resolver
}

// Size is a byte count written as 8MiB, 512KB, 1048576 …: a backend's
// max_response_bytes and max_response_header_bytes, and the gateway's
// server.max_body_bytes.
type Size int64

// UnmarshalYAML reads a size with an optional unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		return &yaml.TypeError{Errors: []string{"line " + strconv.Itoa(n.Line) + ": cannot unmarshal " + n.ShortTag() + " into providers.Size"}}
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		why := "use e.g. 8MiB, 512KB, 1048576"
		if errors.Is(err, errSizeTooLarge) {
			why = "too large: " + errSizeTooLarge.Error()
		}
		return &yaml.TypeError{Errors: []string{"line " + strconv.Itoa(n.Line) + ": cannot use `" + n.Value + "` as a size (" + why + ")"}}
	}
	*s = Size(v)
	return nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "m": 1000 * 1000, "mb": 1000 * 1000, "g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30,
}

// ParseSize reads a byte count such as 8MiB or 512kb.
func ParseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	num, unit := v[:i], strings.ToLower(strings.TrimSpace(v[i:]))
	mult, ok := sizeUnits[unit]
	var n int64
	var err error
	switch {
	case !ok:
		err = strconv.ErrSyntax
	case !strings.Contains(num, "."):
		// A whole number is read exactly: as a float64 (53 bits) 2^63 − 1 would round
		// up to 2^63, over the limit.
		n, err = strconv.ParseInt(num, 10, 64)
		if err == nil && n > math.MaxInt64/mult {
			err = strconv.ErrRange
		}
		n *= mult
	default:
		// A fraction is read exactly, as a decimal (4.1MB is 4 100 000 bytes: as a
		// float64 product it is 4099999.99…), and a part byte is left out.
		q, okNum := new(big.Rat).SetString(num)
		if !okNum || strings.Count(num, ".") > 1 {
			err = strconv.ErrSyntax
			break
		}
		q.Mul(q, new(big.Rat).SetInt64(mult))
		b := new(big.Int).Quo(q.Num(), q.Denom())
		if !b.IsInt64() {
			err = strconv.ErrRange
			break
		}
		n = b.Int64()
	}
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("size %q: %w", v, errSizeTooLarge)
	case err != nil:
		return 0, errors.New("invalid size " + strconv.Quote(v) + " (use e.g. 8MiB, 512KB, 1048576)")
	}
	return n, nil
}

// errSizeTooLarge is ParseSize's error for a size that int64 does not hold.
var errSizeTooLarge = errors.New("at most 2^63 − 1 bytes")

// Pricing is the backend's price per million tokens, in US dollars.
type Pricing struct {
	InputPerMillion  float64 `yaml:"input_per_million"`
	OutputPerMillion float64 `yaml:"output_per_million"`
	// CachedInputPerMillion prices the prompt tokens read from the upstream's prompt
	// cache (OpenAI bills them at a half or a tenth of the input price, Anthropic at a
	// tenth); nil, the key left out, is InputPerMillion.
	CachedInputPerMillion *float64 `yaml:"cached_input_per_million"`
	// CacheWritePerMillion prices the prompt tokens written to the prompt cache
	// (Anthropic bills a 5-minute cache write at 1.25 times the input price); nil is
	// InputPerMillion.
	CacheWritePerMillion *float64 `yaml:"cache_write_per_million"`
	// CacheWrite1hPerMillion prices the cache writes of a one-hour ttl (Anthropic
	// bills them at twice the input price); nil is the cache write price.
	CacheWrite1hPerMillion *float64 `yaml:"cache_write_1h_per_million"`
	// WebSearchPerThousand prices the web searches an answer ran, per thousand
	// searches (Anthropic bills $10 per 1,000, apart from the tokens, counted in
	// usage.server_tool_use.web_search_requests). Only an anthropic backend's
	// answers count their searches: OpenAI's search models bill theirs per call,
	// but their answers say nothing of it.
	WebSearchPerThousand float64 `yaml:"web_search_per_thousand"`
	// AudioPerMinute prices the audio an audio API answer reports by its duration
	// (usage of type duration: whisper-1 at $0.006 a minute, vLLM), per minute;
	// answers that report tokens (gpt-4o-transcribe) are priced by them.
	AudioPerMinute float64 `yaml:"audio_per_minute"`
	// Tiers price the answers served in a service tier, by the name the answer gives
	// (OpenAI's service_tier: flex at half the standard price, priority at about
	// twice it). An answer naming no tier, or one not listed, is priced at the prices
	// above.
	Tiers map[string]TierPricing `yaml:"tiers"`
}

// TierPricing is the price list of one service tier, per million tokens in US
// dollars: Pricing's keys, with its defaults (the cached input and cache write
// prices default to the tier's input price, the one-hour write price to the tier's
// write price). Input and output prices are required: a tier left without one would
// price its tokens at 0, not at the top level's. The web search price defaults to
// the top level's: Anthropic's does not change with the tier.
type TierPricing struct {
	InputPerMillion        *float64 `yaml:"input_per_million"`
	OutputPerMillion       *float64 `yaml:"output_per_million"`
	CachedInputPerMillion  *float64 `yaml:"cached_input_per_million"`
	CacheWritePerMillion   *float64 `yaml:"cache_write_per_million"`
	CacheWrite1hPerMillion *float64 `yaml:"cache_write_1h_per_million"`
	WebSearchPerThousand   *float64 `yaml:"web_search_per_thousand"`
}

// pricing is t as a Pricing without tiers, for its cost; top is the top level's,
// whose web search price t may leave out.
func (t *TierPricing) pricing(top *Pricing) Pricing {
	p := Pricing{CachedInputPerMillion: t.CachedInputPerMillion, CacheWritePerMillion: t.CacheWritePerMillion, CacheWrite1hPerMillion: t.CacheWrite1hPerMillion,
		WebSearchPerThousand: top.WebSearchPerThousand, AudioPerMinute: top.AudioPerMinute}
	if t.InputPerMillion != nil {
		p.InputPerMillion = *t.InputPerMillion
	}
	if t.OutputPerMillion != nil {
		p.OutputPerMillion = *t.OutputPerMillion
	}
	if t.WebSearchPerThousand != nil {
		p.WebSearchPerThousand = *t.WebSearchPerThousand
	}
	return p
}

// Free reports whether every price of p, its tiers' included, is 0 (or unset): Cost
// is then 0 for any usage.
func (p Pricing) Free() bool {
	zero := func(v *float64) bool { return v == nil || *v == 0 }
	if p.InputPerMillion != 0 || p.OutputPerMillion != 0 || p.WebSearchPerThousand != 0 || p.AudioPerMinute != 0 ||
		!zero(p.CachedInputPerMillion) || !zero(p.CacheWritePerMillion) || !zero(p.CacheWrite1hPerMillion) {
		return false
	}
	for _, t := range p.Tiers {
		if !zero(t.InputPerMillion) || !zero(t.OutputPerMillion) || !zero(t.WebSearchPerThousand) ||
			!zero(t.CachedInputPerMillion) || !zero(t.CacheWritePerMillion) || !zero(t.CacheWrite1hPerMillion) {
			return false
		}
	}
	return true
}

// Cost is the price of u in US dollars, at the prices of the tier u names when p
// lists it, else at the top level's: its tokens, and its web searches.
func (p Pricing) Cost(u Usage) float64 {
	if u.Tier.n > 0 && len(p.Tiers) > 0 {
		// The lookup converts the name without allocating: a string made only to
		// index a map is not kept.
		if t, ok := p.Tiers[string(u.Tier.name[:u.Tier.n])]; ok {
			tp := t.pricing(&p)
			return tp.cost(&u)
		}
	}
	return p.cost(&u)
}

// cost is the price of u at p's own prices: its tokens', then its searches'. An
// answer without searches costs, to the bit, what it did before searches had a price.
func (p *Pricing) cost(u *Usage) float64 {
	c := p.tokenCost(u)
	if u.WebSearches > 0 {
		c += float64(u.WebSearches) * p.WebSearchPerThousand / 1e3
	}
	if u.AudioMillis > 0 {
		c += float64(u.AudioMillis) * p.AudioPerMinute / 60e3
	}
	return c
}

// tokenCost is the price of u's tokens at p's own prices. Every input token is priced
// as input, then the cached and written ones are corrected by how much their price
// differs: with those prices unset the corrections are 0 and the cost is, to the bit,
// what it was before the prompt cache had a price.
func (p *Pricing) tokenCost(u *Usage) float64 {
	c := float64(u.Input)*p.InputPerMillion + float64(u.Output)*p.OutputPerMillion
	if r := p.CachedInputPerMillion; r != nil && u.CachedInput > 0 {
		c += float64(u.CachedInput) * (*r - p.InputPerMillion)
	}
	write := p.InputPerMillion
	if w := p.CacheWritePerMillion; w != nil {
		write = *w
		if u.CacheWrite > 0 {
			c += float64(u.CacheWrite) * (write - p.InputPerMillion)
		}
	}
	if w := p.CacheWrite1hPerMillion; w != nil && u.CacheWrite1h > 0 {
		c += float64(u.CacheWrite1h) * (*w - write)
	}
	return c / 1e6
}

// MaxPrice is the highest price a pricing key takes, in US dollars a million tokens
// (or a thousand searches).
const MaxPrice = 1e9

// validatePricing reports every price that is negative, not finite or over MaxPrice,
// and every tier that is not one an answer can name with prices of its own. Written so
// that NaN (.nan in YAML) fails too; +Inf would make the cost counter infinite for good.
func (c *Config) validatePricing() []error {
	var errs []error
	check := func(key string, v *float64) { // v nil: left out, the price it defaults to
		switch {
		case v == nil:
		case !(*v >= 0 && *v <= math.MaxFloat64):
			errs = append(errs, fieldErr(key, "must be a finite number, 0 or more"))
		case *v > MaxPrice:
			// A thousand dollars a token: far above any model's price, and low enough that no
			// request's cost, nor the cost counter's sum, can overflow to +Inf.
			errs = append(errs, fieldErr(key, "must be at most 1000000000 (US dollars a million tokens, or a thousand searches)"))
		}
	}
	p := &c.Pricing
	check("pricing.input_per_million", &p.InputPerMillion)
	check("pricing.output_per_million", &p.OutputPerMillion)
	check("pricing.cached_input_per_million", p.CachedInputPerMillion)
	check("pricing.cache_write_per_million", p.CacheWritePerMillion)
	check("pricing.cache_write_1h_per_million", p.CacheWrite1hPerMillion)
	check("pricing.web_search_per_thousand", &p.WebSearchPerThousand)
	check("pricing.audio_per_minute", &p.AudioPerMinute)
	if p.AudioPerMinute != 0 && c.Provider == "anthropic" {
		errs = append(errs, fieldErr("pricing.audio_per_minute", "applies only to backends serving the audio API (openai, azure, mock); Anthropic's has none"))
	}
	searchesOnly := func(key string, v *float64) {
		// A price that nothing would ever charge: only Anthropic's answers count
		// their searches.
		if v != nil && *v != 0 && c.Provider != "anthropic" && c.Provider != "" {
			errs = append(errs, fieldErr(key, "applies only to provider anthropic, whose answers count their web searches (OpenAI's do not)"))
		}
	}
	searchesOnly("pricing.web_search_per_thousand", &p.WebSearchPerThousand)
	for _, name := range slices.Sorted(maps.Keys(p.Tiers)) {
		t := p.Tiers[name]
		key := "pricing.tiers." + name
		switch {
		case name == "":
			errs = append(errs, fieldErr("pricing.tiers", "a tier needs a name, as answers give it in service_tier"))
			continue
		case len(name) > MaxServiceTierBytes:
			errs = append(errs, fieldErr(key, "is no service tier: a tier's name is at most "+strconv.Itoa(MaxServiceTierBytes)+" bytes"))
			continue
		case name == "default":
			// OpenAI's standard tier: the prices of the answers that name no tier.
			errs = append(errs, fieldErr(key, "is priced by the top-level prices (the standard tier): write them there"))
			continue
		case name == "standard" && c.Provider == "anthropic":
			// Anthropic's, which its answers reach the gateway as default
			// (anthropicUsage.readTier): listed, it would price nothing.
			errs = append(errs, fieldErr(key, "is priced by the top-level prices (Anthropic's standard tier, default in the translated answers): write them there"))
			continue
		case t == (TierPricing{}):
			errs = append(errs, fieldErr(key, "has no prices (input_per_million and output_per_million are required)"))
			continue
		}
		if t.InputPerMillion == nil {
			errs = append(errs, fieldErr(key+".input_per_million", "is required in a tier (0 when its input is free)"))
		}
		if t.OutputPerMillion == nil {
			errs = append(errs, fieldErr(key+".output_per_million", "is required in a tier (0 when its output is free)"))
		}
		check(key+".input_per_million", t.InputPerMillion)
		check(key+".output_per_million", t.OutputPerMillion)
		check(key+".cached_input_per_million", t.CachedInputPerMillion)
		check(key+".cache_write_per_million", t.CacheWritePerMillion)
		check(key+".cache_write_1h_per_million", t.CacheWrite1hPerMillion)
		check(key+".web_search_per_thousand", t.WebSearchPerThousand)
		searchesOnly(key+".web_search_per_thousand", t.WebSearchPerThousand)
	}
	return errs
}

// MockConfig shapes the built-in mock upstream's answers.
type MockConfig struct {
	TTFT         time.Duration `yaml:"ttft"`
	TPOT         time.Duration `yaml:"tpot"`
	MaxTokens    int           `yaml:"max_tokens"`
	ErrorRate    float64       `yaml:"error_rate"`
	Seed         int64         `yaml:"seed"`
	EmbeddingDim int           `yaml:"embedding_dim"`
}

// validate checks every option against the bounds the mockllm engine applies when the
// backend is built, so that a bad value is reported under its key rather than as a
// failed build under mockllm's flag names.
func (m *MockConfig) validate() []error {
	var errs []error
	if m.TTFT < 0 {
		errs = append(errs, fieldErr("mock.ttft", "must not be negative"))
	}
	if m.TPOT < 0 {
		errs = append(errs, fieldErr("mock.tpot", "must not be negative"))
	}
	if m.MaxTokens < 0 {
		errs = append(errs, fieldErr("mock.max_tokens", "must not be negative"))
	}
	// Written so that NaN (.nan in YAML) fails too.
	if !(m.ErrorRate >= 0 && m.ErrorRate <= 1) {
		errs = append(errs, fieldErr("mock.error_rate", "must be between 0 and 1"))
	}
	if m.EmbeddingDim < 0 || m.EmbeddingDim > mockllm.MaxEmbeddingDim {
		errs = append(errs, fieldErr("mock.embedding_dim", "must be between 1 and "+strconv.Itoa(mockllm.MaxEmbeddingDim)))
	}
	return errs
}

// FieldError is one invalid configuration key.
type FieldError struct {
	key, problem string
	// at is the key whose line the problem is at, when that is not key: a header
	// entry that the message must not name (its name may be a secret).
	at string
}

// Key is the dotted path of the key, relative to the backend.
func (e *FieldError) Key() string { return e.key }

// At is the dotted path, relative to the backend, of the key whose line the problem
// is at: Key, or one below it that Key leaves unnamed.
func (e *FieldError) At() string {
	if e.at != "" {
		return e.at
	}
	return e.key
}

// Problem says what is wrong with it.
func (e *FieldError) Problem() string { return e.problem }

func (e *FieldError) Error() string { return e.key + ": " + e.problem }

func fieldErr(key, problem string) error { return &FieldError{key: key, problem: problem} }

// Validate reports every problem with the backend's settings.
func (c *Config) Validate() error {
	var errs []error
	switch c.Provider {
	case "openai", "mock", "azure", "anthropic":
	case "":
		errs = append(errs, fieldErr("provider", "is required (openai, azure, anthropic or mock)"))
	default:
		errs = append(errs, fieldErr("provider", "must be one of openai, azure, anthropic, mock"))
	}
	if c.Provider != "mock" {
		switch {
		case c.BaseURL == "" && len(c.Targets) == 0:
			errs = append(errs, fieldErr("base_url", "is required (or targets)"))
		case c.BaseURL != "" && len(c.Targets) > 0:
			errs = append(errs, fieldErr("targets", "give base_url or targets, not both"))
		}
		if c.BaseURL != "" {
			if err := checkURL(c.BaseURL); err != nil {
				errs = append(errs, fieldErr("base_url", err.Error()))
			}
		}
		for i, t := range c.Targets {
			if err := checkURL(t); err != nil {
				errs = append(errs, fieldErr("targets["+strconv.Itoa(i)+"]", err.Error()))
			}
		}
	}
	if c.Model == "" {
		if !c.NoModel || c.Provider != "openai" && c.Provider != "azure" && c.Provider != "anthropic" {
			errs = append(errs, fieldErr("model", "is required"))
		}
	} else if strings.ContainsFunc(c.Model, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		// It goes into JSON bodies escaped, but into an audio call's form as it is.
		errs = append(errs, fieldErr("model", "must not hold control characters (line breaks, tabs)"))
	}
	errs = append(errs, c.validatePricing()...)
	if c.Timeout < 0 {
		errs = append(errs, fieldErr("timeout", "must not be negative"))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fieldErr("connect_timeout", "must not be negative"))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fieldErr("max_connections", "must not be negative"))
	}
	if c.IdleConnTimeout < 0 {
		errs = append(errs, fieldErr("idle_conn_timeout", "must not be negative"))
	}
	switch {
	case c.MaxResponseBytes < 0:
		errs = append(errs, fieldErr("max_response_bytes", "must not be negative"))
	case c.MaxResponseBytes > MaxResponseBytesLimit:
		errs = append(errs, fieldErr("max_response_bytes", "must be at most 1GiB: the answer is held whole in memory"))
	}
	switch {
	case c.MaxResponseHeaderBytes < 0:
		errs = append(errs, fieldErr("max_response_header_bytes", "must not be negative"))
	case c.MaxResponseHeaderBytes > 0 && c.MaxResponseHeaderBytes < MinResponseHeaderBytes:
		errs = append(errs, fieldErr("max_response_header_bytes", "must be at least 1KiB: a status line and the fields an API answers with take most of that"))
	case c.MaxResponseHeaderBytes > MaxResponseHeaderBytesLimit:
		errs = append(errs, fieldErr("max_response_header_bytes", "must be at most 1MiB: every open upstream connection holds a buffer this size"))
	}
	switch {
	case c.Provider == "mock":
		// The mock answers in process: a URL given to it would never be called.
		if c.BaseURL != "" {
			errs = append(errs, fieldErr("base_url", "does not apply to provider mock, which answers in process"))
		}
		if len(c.Targets) > 0 {
			errs = append(errs, fieldErr("targets", "do not apply to provider mock, which answers in process"))
		}
	case c.Mock != (MockConfig{}):
		errs = append(errs, fieldErr("mock", "applies only to provider mock"))
	}
	if c.StreamUsage != nil && c.Provider != "openai" && c.Provider != "azure" {
		errs = append(errs, fieldErr("stream_usage", "applies only to providers openai and azure"))
	}
	errs = append(errs, c.Mock.validate()...)
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validateProxy()...)
	errs = append(errs, c.validateSecrets()...)
	errs = append(errs, c.validateAzure()...)
	errs = append(errs, c.validateAnthropic()...)
	errs = append(errs, c.validateDropParams()...)
	errs = append(errs, c.validateDeveloperRole()...)
	errs = append(errs, c.validateResponsesAPI()...)
	errs = append(errs, c.validateMessagesAPI()...)
	errs = append(errs, c.validatePool()...)
	return errors.Join(errs...)
}

// WhitespaceProblem is the problem of a secret (a key, a header value, a token) with
// surrounding whitespace. It does not quote the value.
const WhitespaceProblem = "has leading or trailing whitespace (a trailing newline from a secret file?)"

// LineBreakProblem is the problem of a secret (a key, a header value, a token) that
// holds a line break or NUL: no HTTP header value can, and fasthttp sends each as a
// space. It does not quote the value.
const LineBreakProblem = "holds a line break or NUL (a secret file of two lines?)"

// HeaderEmptyProblem is the problem of a headers entry whose value is empty: said of
// the headers key, at the entry's line, without its name, which may be a key pasted
// where the value belongs (headerconf).
const HeaderEmptyProblem = headerconf.EmptyProblem

// validateSecrets refuses a header whose name is not a token or whose value is empty,
// and an api_key or
// header value with surrounding whitespace or a line break inside, as the gateway
// refuses a client key: sent, it works (the newline of a secret file read through
// ${VAR} goes out as a space, which the upstream strips or reads), but an upstream
// error quoting the value it read quotes the trimmed or respaced one, which is not
// the secret recorded for masking, and would reach the client as it is.
func (c *Config) validateSecrets() []error {
	var errs []error
	switch {
	case strings.TrimSpace(c.APIKey) != c.APIKey:
		errs = append(errs, fieldErr("api_key", WhitespaceProblem))
	case strings.ContainsAny(c.APIKey, "\r\n\x00"):
		errs = append(errs, fieldErr("api_key", LineBreakProblem))
	}
	names := slices.Sorted(maps.Keys(c.Headers))
	for i, k := range names {
		v := c.Headers[k]
		same := slices.IndexFunc(names[:i], func(n string) bool { return strings.EqualFold(n, k) })
		switch p := headerconf.Unquoted(k, v); {
		case p != "":
			// A name that is not a token makes every request malformed; an empty value
			// is sent as a header of no value, which selects nothing. A key pasted as a
			// name with nothing after it ({sk-…:}) reads so: the name is not quoted.
			errs = append(errs, &FieldError{key: "headers", at: "headers." + k, problem: p})
		case same >= 0:
			// One header: which value went out would change from one build of the
			// backend to the next (map order), an Authorization among them.
			errs = append(errs, fieldErr("headers."+k, "is the same header as "+names[same]+" (header names ignore case)"))
		case strings.TrimSpace(v) != v:
			errs = append(errs, fieldErr("headers."+k, WhitespaceProblem))
		case strings.ContainsAny(v, "\r\n\x00"):
			errs = append(errs, fieldErr("headers."+k, LineBreakProblem))
		}
	}
	return errs
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must start with http:// or https://")
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if u.User != nil {
		return errors.New("must not hold credentials (use api_key)")
	}
	if strings.IndexByte(raw, ' ') >= 0 {
		// url.Parse takes one in a path or query, and the request line would carry
		// it as it is ("POST /v1 /chat/completions HTTP/1.1"), malformed.
		return errors.New("holds a space, which no request line can carry (escape it as %20)")
	}
	if strings.IndexByte(raw, '#') >= 0 {
		// Never sent: operations go after the URL, so with a fragment an openai
		// backend's requests lose it and an azure one's go to the fragment's
		// host root, their paths read as part of the fragment.
		return errors.New("has a fragment (#...), which is never sent (escape a # of the path or query as %23)")
	}
	if p := URLPortProblem(u); p != "" {
		return errors.New(p)
	}
	return nil
}

// URLPortProblem says what is wrong with the port of u, "" when it has none or one
// that can be dialed. url.Parse takes any run of digits, and one over 65535 (or 0)
// fails only at the dial, on every request; a colon with no port after it would be
// dialed as host::80. It does not quote the port: in a URL whose password holds an
// unescaped '/', the "port" is part of the password.
func URLPortProblem(u *url.URL) string {
	p := u.Port()
	if p == "" {
		if strings.HasSuffix(u.Host, ":") {
			return "has no port after the colon"
		}
		return ""
	}
	if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
		return "has a port out of range: it must be 1 to 65535"
	}
	return ""
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.Timeout == 0 {
		d.Timeout = 10 * time.Minute
	}
	if d.ConnectTimeout == 0 {
		d.ConnectTimeout = 5 * time.Second
	}
	if d.MaxConnections == 0 {
		d.MaxConnections = 1024
	}
	if d.IdleConnTimeout == 0 {
		d.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if d.MaxResponseBytes == 0 {
		d.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if d.MaxResponseHeaderBytes == 0 {
		d.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	switch d.Provider {
	case "azure":
		if d.APIVersion == "" {
			d.APIVersion = defaultAzureAPIVersion
		}
	case "anthropic":
		if d.AnthropicVersion == "" {
			d.AnthropicVersion = defaultAnthropicVersion
		}
		if d.MaxTokens == 0 {
			d.MaxTokens = defaultAnthropicMaxTokens
		}
	}
	return d
}

// DefaultMaxResponseBytes is MaxResponseBytes' default: above any chat answer and
// most embeddings batches; a backend serving larger ones says so.
const DefaultMaxResponseBytes = 64 << 20

// MaxResponseBytesLimit is the largest MaxResponseBytes. The answer is held whole in
// memory (an Anthropic one twice, with its translation) for every request in flight
// that gets one, and 1GiB is over ten times the largest answer an API gives (OpenAI's
// 2048 float embeddings of 3072 dimensions, about 80 MB): a larger bound would only
// let a runaway upstream take the gateway's memory. It also keeps the bound an int
// on a 32-bit build.
const MaxResponseBytesLimit = 1 << 30

// DefaultMaxResponseHeaderBytes is MaxResponseHeaderBytes' default: above the headers
// API servers answer with, and small because every open upstream connection holds a
// read buffer this size, a stream's for as long as it runs (the gateway's memory per
// open stream, bench/RESULTS.md streams-10k, is held to a 40 KB target). nginx's
// proxy_buffer_size defaults to the same 4 KiB on x86 and refuses a larger header as
// "upstream sent too big header".
const DefaultMaxResponseHeaderBytes = 4 << 10

// MinResponseHeaderBytes is the smallest MaxResponseHeaderBytes.
const MinResponseHeaderBytes = 1 << 10

// MaxResponseHeaderBytesLimit is the largest MaxResponseHeaderBytes: far above any
// header an API answers with, while a buffer of it on each of thousands of open
// streams is already gigabytes.
const MaxResponseHeaderBytesLimit = 1 << 20

// DefaultIdleConnTimeout is IdleConnTimeout's default: under the 5s keep-alive
// timeout of uvicorn, which serves vLLM's API.
const DefaultIdleConnTimeout = 4 * time.Second

func (c *Config) streamUsage() bool { return c.StreamUsage == nil || *c.StreamUsage }

// AffinityConfig keeps requests that share a prompt prefix on one target, so that the
// target's prefix cache serves them, as long as that target is not overloaded.
type AffinityConfig struct {
	// By is what requests are grouped by: prefix (the first Bytes of the prompt).
	By string `yaml:"by"`
	// Bytes is how much of the prompt (the JSON of messages, prompt or input) is
	// hashed: default 1024.
	Bytes int `yaml:"bytes"`
	// LoadFactor bounds a target's load to this many times the average before its
	// requests spill to the next target on the ring: default 1.25.
	LoadFactor float64 `yaml:"load_factor"`
}

// HealthConfig configures active health checks and passive ejection of targets.
type HealthConfig struct {
	// Path is requested with GET on each target's host (not under its base path); setting
	// it or Interval turns active checks on. Default /health, as vLLM serves it.
	Path string `yaml:"path"`
	// Interval is the time between two checks of a target: default 5s.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one check: default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// HealthyThreshold is how many checks in a row must pass to bring a target back:
	// default 2, counted from the second check (the first decides at once).
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold is how many checks in a row must fail to take a target out:
	// default 3, counted from the second check (the first decides at once).
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
	// EjectAfter is how many failed requests in a row (unreachable, timed out, 5xx)
	// eject a target: default 5.
	EjectAfter int `yaml:"eject_after"`
	// EjectFor is how long an ejection lasts, after which one request tries the target
	// again: default 30s. It doubles with each further ejection, up to ten times
	// EjectFor, until the target stays in service that long.
	EjectFor time.Duration `yaml:"eject_for"`
}

// QueueConfig bounds the requests that wait for a target at max_concurrency.
type QueueConfig struct {
	// Size is how many requests may wait per target; 0 answers at once that the
	// backend is overloaded.
	Size int `yaml:"size"`
	// Timeout bounds the wait: default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// Fair shares the slots freed among the tenants waiting, in turn, instead of in
	// arrival order: api_key, user, endpoint (or model) or ip, as limits name them.
	Fair string `yaml:"fair"`
	// Weights give tenants, by name (a key's name, a user, an endpoint, an address),
	// a share other than 1 of the slots under Fair.
	Weights map[string]int `yaml:"weights"`
}

func (c *Config) validatePool() []error {
	var errs []error
	switch c.Balance {
	case "", "round_robin", "least_loaded":
	case "vllm_queue":
		if c.Provider != "openai" {
			errs = append(errs, fieldErr("balance", "vllm_queue reads vLLM's /metrics, so it applies only to provider openai"))
		}
	default:
		errs = append(errs, fieldErr("balance", "must be one of round_robin, least_loaded, vllm_queue"))
	}
	a := &c.Affinity
	switch a.By {
	case "prefix":
	case "":
		if a.Bytes != 0 || a.LoadFactor != 0 {
			errs = append(errs, fieldErr("affinity.by", "is required (prefix) when affinity is set"))
		}
	default:
		errs = append(errs, fieldErr("affinity.by", "must be prefix"))
	}
	if a.Bytes < 0 {
		errs = append(errs, fieldErr("affinity.bytes", "must not be negative"))
	}
	if a.LoadFactor != 0 && !(a.LoadFactor >= 1) {
		errs = append(errs, fieldErr("affinity.load_factor", "must be at least 1"))
	}
	h := &c.Health
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		errs = append(errs, fieldErr("health.path", "must start with /"))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"health.interval", h.Interval}, {"health.timeout", h.Timeout}, {"health.eject_for", h.EjectFor},
		{"queue.timeout", c.Queue.Timeout}, {"first_byte_timeout", c.FirstByteTimeout},
		{"stream_idle_timeout", c.StreamIdleTimeout}, {"metrics_interval", c.MetricsInterval},
	} {
		if d.v < 0 {
			errs = append(errs, fieldErr(d.key, "must not be negative"))
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"health.healthy_threshold", h.HealthyThreshold}, {"health.unhealthy_threshold", h.UnhealthyThreshold},
		{"health.eject_after", h.EjectAfter}, {"max_concurrency", c.MaxConcurrency}, {"queue.size", c.Queue.Size},
	} {
		if n.v < 0 {
			errs = append(errs, fieldErr(n.key, "must not be negative"))
		}
	}
	if c.MaxConcurrency == 0 && (c.Queue.Size != 0 || c.Queue.Timeout != 0 || c.Queue.Fair != "" || c.Queue.Weights != nil) {
		errs = append(errs, fieldErr("queue", "needs max_concurrency"))
	}
	if _, ok := ParseFair(c.Queue.Fair); !ok {
		errs = append(errs, fieldErr("queue.fair", "must be one of api_key, user, endpoint (or model), ip"))
	}
	if c.Queue.Weights != nil && c.Queue.Fair == "" {
		errs = append(errs, fieldErr("queue.weights", "needs queue.fair: they weigh its tenants"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Queue.Weights)) {
		if v := c.Queue.Weights[name]; v < 1 || v > MaxQueueWeight {
			errs = append(errs, fieldErr("queue.weights."+name, "must be a whole number from 1 to 1000"))
		}
		if _, ok := ipTenant(name); c.Queue.Fair == "ip" && !ok {
			errs = append(errs, fieldErr("queue.weights."+name, "is no IP address or prefix (fair: ip names tenants by address: 10.0.0.1, 2001:db8:1:2::/64)"))
		}
	}
	if c.Balance != "vllm_queue" {
		if c.MetricsPath != "" {
			errs = append(errs, fieldErr("metrics_path", "is read only with balance: vllm_queue"))
		}
		if c.MetricsInterval != 0 {
			errs = append(errs, fieldErr("metrics_interval", "is read only with balance: vllm_queue"))
		}
	}
	if c.MetricsPath != "" && !strings.HasPrefix(c.MetricsPath, "/") {
		errs = append(errs, fieldErr("metrics_path", "must start with /"))
	}
	return errs
}

// operationPaths are the paths a backend's requests add to its base_url or target,
// the longer of two that end alike first.
var operationPaths = [...]Kind{Chat, Completions, Embeddings, Responses, Rerank, Score, CountTokens, Messages, Transcription, Translation}

// URLWarnings are the backend's URLs that hold what each request adds to them, an
// operation's path or (azure) a deployment's, as an API's documentation shows a whole
// endpoint URL: every request would go to that path twice. Warnings, not errors: a
// proxy in front may map such a path on. Each is a key (base_url, targets[i]) and
// what it does; a URL that does not parse is Validate's.
func (c *Config) URLWarnings() []*FieldError {
	if c.Provider == "mock" {
		return nil
	}
	var out []*FieldError
	for i, raw := range append([]string{c.BaseURL}, c.Targets...) {
		u, err := url.Parse(raw)
		if raw == "" || err != nil {
			continue
		}
		key := "base_url"
		if i > 0 {
			key = "targets[" + strconv.Itoa(i-1) + "]"
		}
		if w := c.urlWarning(strings.TrimRight(u.Path, "/")); w != "" {
			out = append(out, &FieldError{key: key, problem: w})
		}
	}
	return out
}

// urlWarning is what a URL of the backend whose path is p (no trailing slash) does
// wrong, or "" (URLWarnings).
func (c *Config) urlWarning(p string) string {
	if c.Provider == "azure" {
		switch {
		case strings.Contains(p+"/", "/openai/deployments/"):
			return "names a deployment (/openai/deployments/…), which each request's path adds itself: give the resource's endpoint (https://RESOURCE.openai.azure.com) and the deployment in deployment"
		case strings.HasSuffix(p, "/openai/v1"):
			return "is Azure OpenAI's v1 API (/openai/v1), which provider azure does not speak (its requests go to /openai/deployments/… after it): reach it with provider openai, or give the resource's endpoint alone"
		}
	}
	for _, k := range operationPaths {
		if op := k.Path(); strings.HasSuffix(p, op) {
			base := "http://HOST:8000/v1, https://api.openai.com/v1"
			if c.Provider == "anthropic" {
				base = "https://api.anthropic.com/v1"
			} else if c.Provider == "azure" {
				base = "https://RESOURCE.openai.azure.com"
			}
			return "ends in " + op + ", a path each request adds itself (…" + op + op + "): give the API's base (" + base + ")"
		}
	}
	if c.Provider == "anthropic" && !strings.HasSuffix(p, "/v1") {
		return anthropicNoV1
	}
	return ""
}

// anthropicNoV1 warns of an anthropic backend's URL whose path does not end in /v1,
// as the Anthropic SDKs' base URL (https://api.anthropic.com) does not: the gateway
// adds /messages to it, where Anthropic's API, and the servers that speak it, answer
// under /v1/messages.
const anthropicNoV1 = "does not end in /v1: each request adds /messages to it, and Anthropic's API (and the servers that speak it) answer at …/v1/messages: give https://api.anthropic.com/v1, or the server's …/v1"
